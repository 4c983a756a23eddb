"""What `registry webhooks test`, `registry automations jobs` and `registry automations apply` print, against a
real server: tables for people (no Python dict reprs), JSON with ``--json``, and a warning naming the command
that creates a gate policy a rule needs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.cli import _common, main
from tests.conftest import LiveServer, Tokens, bearer, unique
from tests.registry.gates.test_gate_flow import SPEC, eval_table, model_folder


def run(server: LiveServer, token: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args, "--url", server.url, "--token", token])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def no_repr(text: str) -> None:
    assert "{'" not in text and "': " not in text, text


def test_webhooks_test_prints_a_table_or_json(
    live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str]
) -> None:
    with httpx.Client(base_url=live_server.url, headers=bearer(api_tokens.maintainer)) as api:
        hook = api.post(
            "/api/v1/webhooks",
            json={"url": "https://hooks.example.com/never", "events": ["gate_policy.set"], "model": unique("q")},
        ).json()
        try:
            code, out, _ = run(live_server, api_tokens.maintainer, capsys, "webhooks", "test", str(hook["id"]))
            assert code == 0
            no_repr(out)
            assert "event" in out and "evt_" in out and str(hook["id"]) in out
            assert f"registry webhooks deliveries --webhook {hook['id']}" in out
            code, out, _ = run(
                live_server, api_tokens.maintainer, capsys, "webhooks", "test", str(hook["id"]), "--json"
            )
            data = json.loads(out)
            assert code == 0 and data["webhook_id"] == hook["id"] and data["event_id"].startswith("evt_")
        finally:
            api.delete(f"/api/v1/webhooks/{hook['id']}")


def finished(api: httpx.Client, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = api.get(f"/api/v1/automations/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_automation_jobs_render_results_as_text_or_json(
    live_server: LiveServer,
    api_tokens: Tokens,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_common.out, "width", 240)  # a wide terminal: each job on one line
    model = unique("jobs")
    folder = model_folder(tmp_path, eval_table(4000, 20), "v1")
    assert main(["push", model, str(folder), "--url", live_server.url, "--token", api_tokens.writer]) == 0
    with httpx.Client(base_url=live_server.url, headers=bearer(api_tokens.writer)) as api:
        queued = api.post("/api/v1/hooks/gate-runs", json={"model": model, "version": 1, "spec": SPEC})
        assert queued.status_code == 202, queued.text
        job = finished(api, queued.json()["job_id"])
    assert job["status"] == "succeeded" and job["result"]["verdict"] == "pass"
    code, out, _ = run(live_server, api_tokens.reader, capsys, "automations", "jobs")
    assert code == 0
    no_repr(out)
    assert f"gate run #{job['result']['gate_run_id']}: pass" in out
    code, out, _ = run(live_server, api_tokens.reader, capsys, "automations", "jobs", "--json")
    mine = next(j for j in json.loads(out) if j["id"] == job["id"])
    assert mine["result"] == job["result"]


def test_result_text_for_each_kind_of_job() -> None:
    from registry.cli.automations import job_outcome

    assert job_outcome({"error": None, "result": {"gate_run_id": 7, "verdict": "fail"}}) == "gate run #7: fail"
    assert job_outcome({"error": None, "result": {"alias": "staging", "version": 3, "changed": True}}) == (
        "staging → v3"
    )
    assert job_outcome({"error": None, "result": {"alias": "staging", "version": 3, "changed": False}}) == (
        "staging already at v3"
    )
    assert job_outcome({"error": "rule 'x' no longer acts", "result": None}) == "rule 'x' no longer acts"
    assert job_outcome({"error": None, "result": {"other": 1, "more": "x"}}) == "other=1, more=x"
    assert job_outcome({"error": None, "result": None}) == ""


def test_apply_warns_about_a_missing_gate_policy(
    live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model, rule = unique("ungated"), unique("rule")
    with httpx.Client(base_url=live_server.url, headers=bearer(api_tokens.maintainer)) as api:
        assert api.post("/api/v1/models", json={"name": model}).status_code == 201
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            f"rules:\n  - name: {rule}\n    on: model_version.created\n    model: {model}\n"
            "    action: run_gate\n    alias: staging\n"
        )
        try:
            code, out, err = run(live_server, api_tokens.maintainer, capsys, "automations", "apply", str(rules))
            assert code == 0 and rule in out
            assert "warning" in err and f"registry gate policy set {model} --alias staging --spec gates.yaml" in err
            code, out, _ = run(live_server, api_tokens.maintainer, capsys, "automations", "apply", str(rules), "--json")
            [applied] = json.loads(out)
            assert code == 0 and "registry gate policy set" in applied["warnings"][0]

            assert api.put(f"/api/v1/models/{model}/gate-policies/staging", json={"spec": SPEC}).status_code == 200
            code, out, err = run(live_server, api_tokens.maintainer, capsys, "automations", "apply", str(rules))
            assert code == 0 and "warning" not in err
        finally:
            api.delete(f"/api/v1/automations/rules/{rule}")
