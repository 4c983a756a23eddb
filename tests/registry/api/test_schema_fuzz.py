"""Every operation of the published OpenAPI schema, fed generated requests (schemathesis) against a real server
on a fresh database: valid and invalid input, never a 5xx, and every error is ``application/problem+json``.

Bounded and derandomized so CI sees the same requests on every run; set ``MODELKEEP_FUZZ_EXAMPLES`` (default 20
per operation and mode) and ``MODELKEEP_FUZZ_RANDOM=1`` for a deeper, randomized local run."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hyp_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from sqlalchemy.engine import make_url

from registry import migrations
from registry.db import Database
from registry.domain.auth import Role
from registry.services import tokens
from registry.services.auth import Actor
from tests.conftest import PG_ENV, LiveServer, _pg_admin, start_server, stop_server

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("MODELKEEP_FUZZ_EXAMPLES", "20"))
RANDOM = os.environ.get("MODELKEEP_FUZZ_RANDOM") == "1"

# Operations that would lock the fuzzer out of the rest of the run (revoking its own token).
EXCLUDED = [("DELETE", "/api/v1/tokens/{name}")]


async def _admin_token(database_url: str) -> str:
    database = Database(database_url)
    try:
        await migrations.upgrade(database)
        async with database.write() as session:
            made = await tokens.create(session, name="fuzz-admin", role=Role.admin, actor=Actor("fuzz", Role.admin))
        return made.secret
    finally:
        await database.dispose()


@pytest.fixture(scope="module")
def fuzz_server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A server of its own on a fresh database: generated writes must not leak into other tests' data."""
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    admin_url = os.environ.get(PG_ENV, "")
    pg_name = ""
    if backend == "sqlite":
        url = f"sqlite:///{data_dir / 'registry.db'}"
    else:
        pg_name = f"mk_fuzz_{uuid.uuid4().hex[:12]}"
        asyncio.run(_pg_admin(admin_url, f'CREATE DATABASE "{pg_name}"'))
        url = make_url(admin_url).set(database=pg_name).render_as_string(hide_password=False)
    try:
        token = asyncio.run(_admin_token(url))
        server = start_server(url, data_dir)
        try:
            yield server, token
        finally:
            stop_server(server)
    finally:
        if pg_name:
            asyncio.run(_pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


@dataclass
class Findings:
    problems: dict[tuple[str, str], str] = field(default_factory=dict)
    requests: int = 0

    def note(self, label: str, what: str, example: str) -> None:
        self.problems.setdefault((label, what), example)


def _exercise(
    operation: schemathesis.APIOperation, mode: GenerationMode, url: str, token: str, found: Findings
) -> None:
    http = requests.Session()

    @hyp_settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"}, session=http, timeout=60)
        found.requests += 1
        example = (
            f"path={case.path_parameters} query={case.query} body={str(case.body)[:300]!s} -> "
            f"{response.status_code} {response.text[:300]}"
        )
        if response.status_code >= 500:
            found.note(operation.label, f"status {response.status_code}", example)
        elif response.status_code >= 400 and response.request.method != "HEAD":
            kind = (response.headers.get("content-type") or [""])[0]
            if not kind.startswith("application/problem+json"):
                found.note(operation.label, f"{response.status_code} as {kind!r}", example)

    try:
        run()
    except Unsatisfiable:
        # Negative mode has nothing to break in an operation without parameters or body (GET /health).
        if mode is not GenerationMode.NEGATIVE:
            raise


def test_generated_requests_never_get_a_server_error(fuzz_server: tuple[LiveServer, str]) -> None:
    server, token = fuzz_server
    schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
    for method, path in EXCLUDED:
        schema = schema.exclude(method=method, path=path)
    found = Findings()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50, "the schema lost its operations"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _exercise(operation, mode, server.url, token, found)
    assert found.requests > len(operations) * 2
    report = "\n".join(f"{label}: {what}\n    {example}" for (label, what), example in sorted(found.problems.items()))
    assert not found.problems, f"{len(found.problems)} problem(s) in {found.requests} requests:\n{report}"
    assert "Traceback" not in server.log.read_text()
