"""Request ids, /health and /metrics, JSON logs; and the start-up switches for a replicated deployment
(bucket creation, waiting for a separate migration job)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from registry.api.app import create_app
from registry.db import Database
from registry.settings import Settings
from registry.storage.local import LocalBlobStore
from tests.conftest import LiveServer, Tokens, bearer, free_port, start_server, stop_server, unique
from tests.fixtures.seaweed import S3Server

HEX32 = re.compile(r"[0-9a-f]{32}")


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """``{sorted labels: value}`` of every sample called ``name`` in a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there are none)."""
    wanted = set(labels.items())
    return sum(v for key, v in samples(text, name).items() if wanted <= set(key))


# -- request ids -----------------------------------------------------------------------------------------------


async def test_a_well_formed_request_id_is_echoed_and_any_other_replaced(app_client: httpx.AsyncClient) -> None:
    sent = await app_client.get("/api/v1/models", headers={"x-request-id": "lb-7f3a.2:1"})
    assert sent.headers["x-request-id"] == "lb-7f3a.2:1"
    seen = set()
    bad: str | bytes | None
    for bad in (None, "", "has space", "x" * 65, "semi;colon", "é".encode("latin-1")):
        headers = {"x-request-id": bad} if bad is not None else {}
        response = await app_client.get("/api/v1/models", headers=headers)
        rid = response.headers["x-request-id"]
        assert HEX32.fullmatch(rid), (bad, rid)
        seen.add(rid)
    assert len(seen) == 6, "each request gets its own id"
    # Errors carry one too, so a failed call can be found in the logs.
    missing = await app_client.get("/api/v1/models/" + unique("nope"), headers={"x-request-id": "trace-404"})
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "trace-404"


async def test_events_and_audit_entries_keep_the_request_id(app_client: httpx.AsyncClient) -> None:
    model = unique("rid")
    made = await app_client.post("/api/v1/models", json={"name": model}, headers={"x-request-id": "create-" + model})
    assert made.status_code == 201
    events = (await app_client.get("/api/v1/events", params={"model": model})).json()["items"]
    assert [(e["type"], e["request_id"]) for e in events] == [("model.created", "create-" + model)]
    token = await app_client.post(
        "/api/v1/tokens", json={"name": unique("t"), "role": "reader"}, headers={"x-request-id": "mint-" + model}
    )
    assert token.status_code == 201
    entries = (await app_client.get("/api/v1/audit", params={"limit": 1000})).json()["items"]
    assert "mint-" + model in {e["request_id"] for e in entries}


# -- /health ---------------------------------------------------------------------------------------------------


async def test_health_is_503_problem_json_while_the_database_is_unreachable(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    settings = Settings(
        data_dir=tmp_path, database_url=f"postgresql://nobody@127.0.0.1:{port}/none", metrics_public=True
    )
    app = create_app(settings, store=LocalBlobStore(tmp_path / "blobs"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as client:
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.headers["content-type"].startswith("application/problem+json")
        body = health.json()
        assert body["status"] == 503 and body["code"] == "database_unavailable"
        assert "unreachable" in body["detail"] and "nobody" not in body["detail"]
        # /metrics still answers, from this process's memory, and says the database is down.
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert value(metrics.text, "modelkeep_database_up") == 0
    await app.state.db.dispose()


async def test_health_is_200_with_the_dialect(app_client: httpx.AsyncClient, backend: str) -> None:
    health = await app_client.get("/health")
    dialect = {"postgres": "postgresql"}.get(backend, backend)
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": dialect}


# -- /metrics --------------------------------------------------------------------------------------------------


async def test_metrics_need_a_token_unless_made_public(
    app_client: httpx.AsyncClient, api_tokens: Tokens, db: Database, settings: Settings
) -> None:
    anonymous = await app_client.get("/metrics", headers={"authorization": ""})
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthenticated"
    wrong = await app_client.get("/metrics", headers=bearer("mk_nothing_like_a_token"))
    assert wrong.status_code == 401
    reader = await app_client.get("/metrics", headers=bearer(api_tokens.reader))
    assert reader.status_code == 200 and reader.headers["content-type"].startswith("text/plain")
    assert value(reader.text, "modelkeep_database_up") == 1
    # The outbox backlog is read at scrape time.
    assert samples(reader.text, "modelkeep_webhook_deliveries_pending")
    assert samples(reader.text, "modelkeep_outbox_events_unprocessed")

    public = create_app(settings.model_copy(update={"metrics_public": True}), db=db, store=LocalBlobStore(Path("/x")))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=public), base_url="http://registry") as client:
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/api/v1/models")).status_code == 401, "only /metrics is opened"


@pytest.fixture(scope="module")
def two_workers(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``registry serve --workers 2 --access-log`` with JSON log lines, on this backend's database."""
    server = start_server(
        database_url,
        tmp_path_factory.mktemp("observed"),
        extra_env={"MODELKEEP_LOG_FORMAT": "json", "MODELKEEP_METRICS_PUBLIC": "false"},
        args=("--workers", "2", "--access-log"),
    )
    yield server
    stop_server(server)


def test_metrics_add_up_every_worker_of_a_server(two_workers: LiveServer, api_tokens: Tokens) -> None:
    """Each worker keeps its own counts; a scrape, answered by either worker, must show the sum of all."""
    model = unique("metered")
    requests = 60
    with httpx.Client(base_url=two_workers.url, headers=bearer(api_tokens.admin), timeout=30) as api:
        assert api.post("/api/v1/models", json={"name": model}).status_code == 201
        before = api.get("/metrics").text
        path = "/api/v1/models/{name}"
        start = value(before, "modelkeep_http_requests_total", path=path, method="GET", status_code="200")

        # From several connections at once, so both workers take some.
        def hammer(n: int) -> None:
            with httpx.Client(base_url=two_workers.url, headers=bearer(api_tokens.admin), timeout=30) as own:
                for _ in range(n):
                    assert own.get(f"/api/v1/models/{model}").status_code == 200

        threads = [threading.Thread(target=hammer, args=(requests // 4,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        payload = os.urandom(300_000)
        digest = hashlib.sha256(payload).hexdigest()
        uploaded_before = value(before, "modelkeep_upload_bytes_total", kind="streamed")
        assert api.put(f"/api/v1/blobs/{digest}", content=payload).status_code == 201

        scrapes = [api.get("/metrics").text for _ in range(6)]  # whichever worker answers, the same totals
    for text in scrapes:
        got = value(text, "modelkeep_http_requests_total", path=path, method="GET", status_code="200")
        assert got - start == requests
        count = value(text, "modelkeep_http_request_duration_seconds_count", path=path, method="GET")
        assert count >= requests
        assert value(text, "modelkeep_upload_bytes_total", kind="streamed") - uploaded_before == len(payload)
        # Both workers' pools are counted (a PostgreSQL pool may open size + overflow connections).
        assert value(text, "modelkeep_db_pool_connections_max") >= 2


def test_json_log_lines_carry_the_request_id(two_workers: LiveServer, api_tokens: Tokens) -> None:
    with httpx.Client(base_url=two_workers.url, headers=bearer(api_tokens.admin), timeout=30) as api:
        assert api.get("/api/v1/models", headers={"x-request-id": "json-log-probe"}).status_code == 200
        assert api.get("/api/v1/models/" + unique("absent")).status_code == 404
    lines = [line for line in two_workers.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    probe = [r for r in records if r.get("request_id") == "json-log-probe"]
    assert probe and probe[0]["logger"] == "registry.access"
    assert probe[0]["message"].startswith("GET /api/v1/models 200 ")
    started = [r for r in records if r["logger"] == "registry.serve"]
    assert any("modelkeep registry on http://" in r["message"] for r in started)


# -- start-up switches -----------------------------------------------------------------------------------------


def test_the_registry_creates_its_bucket_when_asked(s3_server: S3Server, tmp_path: Path, api_tokens: Tokens) -> None:
    bucket = unique("fresh-bucket").lower().replace("_", "-")
    s3 = s3_server.client()
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_bucket(Bucket=bucket)
    database_url = f"sqlite:///{tmp_path / 'registry.db'}"
    env = {
        "MODELKEEP_BLOB_STORE_URL": f"s3://{bucket}/blobs",
        "MODELKEEP_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "MODELKEEP_S3_ACCESS_KEY_ID": s3_server.access_key,
        "MODELKEEP_S3_SECRET_ACCESS_KEY": s3_server.secret_key,
        "MODELKEEP_S3_CREATE_BUCKET": "true",
        "MODELKEEP_CREATE_ADMIN_TOKEN": "true",
    }
    server = start_server(database_url, tmp_path, extra_env=env)
    try:
        token = re.search(r"mk_[A-Za-z0-9_-]+", server.log.read_text())
        assert token is not None
        payload = b"first push to a fresh stack"
        digest = hashlib.sha256(payload).hexdigest()
        with httpx.Client(base_url=server.url, headers=bearer(token.group(0)), timeout=30) as api:
            assert api.put(f"/api/v1/blobs/{digest}", content=payload).status_code == 201
        s3.head_bucket(Bucket=bucket)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="blobs/")
        assert [o["Size"] for o in listed.get("Contents", [])] == [len(payload)]
        assert f"created the bucket {bucket}" in server.log.read_text()
    finally:
        stop_server(server)
    # A second start finds it there and says nothing about it.
    again = start_server(database_url, tmp_path, extra_env={**env, "MODELKEEP_CREATE_ADMIN_TOKEN": "false"})
    stop_server(again)
    assert again.log.read_text().count("created the bucket") == 0


def _serve(database_url: str, data_dir: Path, port: int, wait: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    env.update(
        {
            "MODELKEEP_DATABASE_URL": database_url,
            "MODELKEEP_DATA_DIR": str(data_dir),
            "MODELKEEP_MIGRATE_ON_START": "false",
            "MODELKEEP_MIGRATE_WAIT_SECONDS": wait,
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "registry", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=data_dir,
    )


def test_without_migrate_on_start_a_replica_waits_for_the_migration_job(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'registry.db'}"
    # Nobody migrates: it gives up with a message naming the fix, and creates no schema of its own.
    gave_up = _serve(database_url, tmp_path, free_port(), "1")
    out, _ = gave_up.communicate(timeout=60)
    assert gave_up.returncode == 1
    assert b"registry db upgrade" in out and b"MODELKEEP_MIGRATE_ON_START" in out

    port = free_port()
    waiting = _serve(database_url, tmp_path, port, "120")
    try:
        with pytest.raises(httpx.TransportError):  # not serving while the schema is behind
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        assert waiting.poll() is None
        upgrade = subprocess.run(
            [sys.executable, "-m", "registry", "db", "upgrade", "--database-url", database_url],
            capture_output=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        health = None
        for _ in range(600):
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                if waiting.poll() is not None:
                    break
                threading.Event().wait(0.1)
        assert health is not None and health.status_code == 200, waiting.stdout.read() if waiting.stdout else ""
    finally:
        waiting.terminate()
        waiting.wait(timeout=15)
