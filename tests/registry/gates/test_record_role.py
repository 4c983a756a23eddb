"""MODELKEEP_GATE_RECORD_ROLE: who may record the gate evidence that gate policies rely on."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from automations import signing
from registry.cli import main
from tests.automations.receivers import client, stack
from tests.conftest import unique
from tests.registry.gates.test_gate_flow import SPEC, eval_table, model_folder


def test_maintainer_only_recording(database_url: str, tmp_path: Path) -> None:
    with stack(database_url, tmp_path) as made:
        server = made.serve({"MODELKEEP_GATE_RECORD_ROLE": "maintainer"})
        model = unique("recorded")
        folder = model_folder(tmp_path, eval_table(4000, 20), "v1")
        assert main(["push", model, str(folder), "--url", server.url, "--token", made.tokens.writer]) == 0
        runs = f"/api/v1/models/{model}/versions/1/gate-runs"
        with client(server, made.tokens.writer) as writer, client(server, made.tokens.maintainer) as maintainer:
            # A writer may still evaluate (nothing stored) ...
            dry = writer.post(runs, json={"spec": SPEC})
            assert dry.status_code == 200 and dry.json()["id"] is None and dry.json()["verdict"] == "pass"
            # ... but not record, directly or through a queued automation gate run.
            refused = writer.post(runs, json={"spec": SPEC, "record": True})
            assert refused.status_code == 403, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert "maintainer" in refused.json()["detail"]
            queued = writer.post("/api/v1/hooks/gate-runs", json={"model": model, "version": 1, "spec": SPEC})
            assert queued.status_code == 403 and "maintainer" in queued.json()["detail"]
            assert writer.get(runs).json() == []

            recorded = maintainer.post(runs, json={"spec": SPEC, "record": True})
            assert recorded.status_code == 200 and recorded.json()["id"] is not None

            # A trigger is set up by a maintainer: its signed requests still queue recorded runs.
            created = maintainer.post("/api/v1/automations/triggers", json={"name": f"ci-{model}", "model": model})
            body = json.dumps({"model": model, "version": 1, "spec": SPEC}).encode()
            headers = {
                "content-type": "application/json",
                **signing.headers([created.json()["secret"]], f"msg_{model}", body),
            }
            with httpx.Client(base_url=server.url) as anon:
                assert anon.post("/api/v1/hooks/gate-runs", content=body, headers=headers).status_code == 202


@pytest.mark.parametrize("value", ["reader", "Maintainer", "admin"])
def test_record_role_is_writer_or_maintainer(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from registry.settings import Settings

    monkeypatch.setenv("MODELKEEP_GATE_RECORD_ROLE", value)
    with pytest.raises(ValidationError, match="gate_record_role"):
        Settings()
