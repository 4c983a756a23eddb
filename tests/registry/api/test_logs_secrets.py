"""No secret reaches the log: not a token, not its digest, not a webhook signing secret, even with SQL
statement logging on and a write that the database refuses mid-statement (whose error names the statement)."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy import text

from registry.api.app import OWN_LOGGERS, QUIET_LOGGERS, configure_logging
from registry.db import Database
from tests.conftest import unique

REFUSAL = "refused-by-this-test"


@pytest.fixture
def verbose_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything at DEBUG, as a deployment debugging the registry might run it, with SQL statement logging
    on (what ``echo=True`` does); only the libraries the server always quiets stay quiet."""
    names = (*OWN_LOGGERS, *QUIET_LOGGERS, "sqlalchemy.engine")
    before = {name: logging.getLogger(name).level for name in names}
    caplog.set_level(logging.DEBUG)  # the root logger and the capturing handler
    configure_logging("DEBUG")  # as the server sets up its loggers with MODELKEEP_LOG_LEVEL=DEBUG
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
    try:
        yield caplog
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture
async def refusing_inserts(db: Database, backend: str) -> AsyncIterator[None]:
    """A trigger that makes the database refuse every new webhook and token, removed afterwards."""
    if backend == "postgres":
        create = [
            f"CREATE FUNCTION mk_test_refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION '{REFUSAL}'; END $$ "
            "LANGUAGE plpgsql",
            *(
                f"CREATE TRIGGER mk_test_refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION mk_test_refuse()"
                for table in ("webhooks", "api_tokens")
            ),
        ]
        drop = [
            "DROP TRIGGER IF EXISTS mk_test_refuse ON webhooks",
            "DROP TRIGGER IF EXISTS mk_test_refuse ON api_tokens",
            "DROP FUNCTION IF EXISTS mk_test_refuse()",
        ]
    else:
        create = [
            f"CREATE TRIGGER mk_test_refuse_{table} BEFORE INSERT ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
            for table in ("webhooks", "api_tokens")
        ]
        drop = [f"DROP TRIGGER IF EXISTS mk_test_refuse_{table}" for table in ("webhooks", "api_tokens")]
    async with db.write() as session:
        for statement in create:
            await session.execute(text(statement))
    try:
        yield
    finally:
        async with db.write() as session:
            for statement in drop:
                await session.execute(text(statement))


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as a handler would write it, tracebacks included."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


async def test_a_new_token_and_its_digest_stay_out_of_the_log(
    app_client: httpx.AsyncClient, verbose_logs: pytest.LogCaptureFixture
) -> None:
    created = await app_client.post("/api/v1/tokens", json={"name": unique("tok"), "role": "reader"})
    assert created.status_code == 201, created.text
    secret = created.json()["token"]
    used = await app_client.get("/api/v1/models", headers={"authorization": f"Bearer {secret}"})
    assert used.status_code == 200
    wrong = secret[:-4] + "AAAA"
    assert (await app_client.get("/api/v1/models", headers={"authorization": f"Bearer {wrong}"})).status_code == 401
    logged = _logged(verbose_logs)
    assert "INSERT INTO api_tokens" in logged, "statement logging was not on: the test proves nothing"
    for value in (
        secret,
        hashlib.sha256(secret.encode()).hexdigest(),
        wrong,
        hashlib.sha256(wrong.encode()).hexdigest(),
    ):
        assert value not in logged


@pytest.mark.usefixtures("refusing_inserts")
async def test_a_refused_write_logs_no_bound_values_and_answers_without_driver_text(
    app_client: httpx.AsyncClient, verbose_logs: pytest.LogCaptureFixture
) -> None:
    hook = await app_client.post(
        "/api/v1/webhooks", json={"url": "https://hooks.example.com/T000/B000/XXXX", "events": ["*"]}
    )
    token = await app_client.post("/api/v1/tokens", json={"name": unique("tok")})
    for response in (hook, token):
        assert response.status_code == 500, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.text
        for leak in (REFUSAL, "INSERT", "whsec_", "sqlalchemy", "asyncpg", "sqlite3", "Traceback"):
            assert leak not in body, body
    logged = _logged(verbose_logs)
    assert REFUSAL in logged, "the refused statement was not logged: the test proves nothing"
    assert "whsec_" not in logged
    assert not re.search(r"\b[0-9a-f]{64}\b", logged), "a token digest was logged"
    assert "hooks.example.com/T000" not in logged.replace("/api/v1/webhooks", "")
