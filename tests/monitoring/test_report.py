"""The Evidently HTML report of a check: built on its first request (in a child process), kept in the blob
store, served with a Content-Security-Policy; through the real ASGI app and the CLI, on SQLite and PostgreSQL.
And Evidently is never imported by the API or the CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from monitoring.domain import MonitorCheck
from monitoring.report import CONTENT_SECURITY_POLICY
from registry.db import Database
from tests.automations.receivers import model_with_versions
from tests.conftest import LiveServer, Tokens, bearer, unique
from tests.monitoring.monitor_helpers import HOUR, frame, ingest, last_full_hour, new_model, promote, set_baseline
from tests.registry.cli._helpers import Cli

SPEC = "version: 1\nmin_rows: 100\n"
DRIFTED = {"shift": 2.0, "weights": (0.2, 0.3, 0.5)}


async def test_the_report_is_built_once_and_served_with_its_csp(app_client: httpx.AsyncClient, db: Database) -> None:
    model = await new_model(app_client)
    await set_baseline(app_client, model, 1, frame(600, seed=1))
    await promote(app_client, model, 1)
    assert (await app_client.put(f"/api/v1/models/{model}/monitor", json={"spec": SPEC})).status_code == 200
    hour = last_full_hour()
    assert (await ingest(app_client, model, frame(300, seed=41, start=hour, **DRIFTED))).status_code == 200
    done = await app_client.post(
        f"/api/v1/models/{model}/monitor/checks",
        params={"alias": "production", "window": "1h", "end": (hour + HOUR).isoformat()},
    )
    check = done.json()
    assert check["drift_detected"] is True and "amount" in check["drifted"]
    assert check["report_status"] == "pending"
    assert check["report_url"] == f"/api/v1/models/{model}/monitor/checks/{check['id']}/report.html"

    served = await app_client.get(check["report_url"])
    assert served.status_code == 200, served.text
    assert served.headers["content-type"].startswith("text/html")
    assert served.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "connect-src 'none'" in CONTENT_SECURITY_POLICY and "sandbox allow-scripts" in CONTENT_SECURITY_POLICY
    assert served.headers["x-content-type-options"] == "nosniff"
    page = served.text
    assert page.lstrip().lower().startswith("<!doctype html") and "amount" in page
    assert "Built from samples: 300 production rows against 600 reference rows" in page
    digest = hashlib.sha256(served.content).hexdigest()
    assert served.headers["x-content-sha256"] == digest

    async with db.read() as session:
        stored = await session.get(MonitorCheck, check["id"])
    assert stored is not None and (stored.report_status, stored.report_digest) == ("ready", digest)
    again = await app_client.get(check["report_url"])  # from the blob store, not built again
    assert again.status_code == 200 and again.content == served.content
    listed = (await app_client.get(f"/api/v1/models/{model}/monitor/checks/{check['id']}")).json()
    assert listed["report_status"] == "ready"

    # A window without rows has nothing to report.
    empty = await app_client.post(
        f"/api/v1/models/{model}/monitor/checks",
        params={"alias": "production", "window": "1h", "end": (hour - 5 * HOUR).isoformat()},
    )
    assert empty.json()["status"] == "insufficient_data" and empty.json()["report_url"] is None
    refused = await app_client.get(f"/api/v1/models/{model}/monitor/checks/{empty.json()['id']}/report.html")
    assert refused.status_code == 404 and refused.json()["code"] == "no_report"
    assert (await app_client.get(f"/api/v1/models/{model}/monitor/checks/999999999/report.html")).status_code == 404


def test_the_api_and_the_cli_never_import_evidently() -> None:
    code = (
        "import sys\n"
        "import registry.api.app, registry.cli, registry.cli.monitor, monitoring.report, monitoring.checks\n"
        "import monitoring.labels, monitoring.ingest, monitoring.jobs\n"
        "from registry.cli import main\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'evidently'], 'evidently was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


# -- the CLI ----------------------------------------------------------------------------------------------
@pytest.fixture
def cli(live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(live_server, api_tokens.admin, capsys)


@pytest.fixture
def api(live_server: LiveServer, api_tokens: Tokens) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, headers=bearer(api_tokens.admin), timeout=30) as client:
        yield client


def test_registry_monitor_check_downloads_the_html_report(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    model = unique("cli-report")
    model_with_versions(api, model, 1)
    reference = tmp_path / "ref.parquet"
    pq.write_table(frame(600, seed=1), reference)
    code, _, err = cli("monitor", "baseline", "set", model, "1", "--data", str(reference), "--timestamp", "ts")
    assert code == 0, err
    assert api.put(f"/api/v1/models/{model}/aliases/production", json={"version": 1}).status_code == 200
    assert api.put(f"/api/v1/models/{model}/monitor", json={"spec": SPEC}).status_code == 200
    hour = last_full_hour()
    batch = tmp_path / "batch.parquet"
    pq.write_table(frame(300, seed=42, start=hour, **DRIFTED), batch)
    assert cli("monitor", "ingest", f"{model}@production", "--data", str(batch))[0] == 0

    page = tmp_path / "report.html"
    end = (hour + HOUR).isoformat()
    code, _, err = cli(
        "monitor", "check", f"{model}@production", "--window", "1h", "--end", end, "--report-html", str(page)
    )
    assert code == 1, err  # drift
    assert "amount" in page.read_text(encoding="utf-8") and not (tmp_path / "report.html.part").exists()

    nothing = tmp_path / "none.html"
    end = (hour - 5 * HOUR).isoformat()
    code, _, err = cli("monitor", "check", f"{model}@production", "--end", end, "--report-html", str(nothing))
    assert code == 3 and "no HTML report" in err and not nothing.exists()
    code, _, err = cli("monitor", "check", f"{model}@production", "--report-html", str(tmp_path / "no" / "r.html"))
    assert code == 2 and "does not exist" in err
