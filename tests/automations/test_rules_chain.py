"""Automation rules end to end on a real server: a new version is gated by a rule (off the request path, as
``rule:<name>``), a pass promotes it to staging by another rule, and a subscriber hears the alias move. A
failing candidate leaves staging where it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.cli import main
from tests.automations.receivers import Receiver, Stack, client, stack, subscribe, wait_until
from tests.conftest import LiveServer, unique
from tests.registry.gates.test_gate_flow import SPEC, eval_table, model_folder

RULES = """
rules:
  - name: evaluate-{model}
    on: model_version.created
    model: {model}
    action: run_gate
    alias: staging
  - name: stage-{model}
    on: gate.completed
    model: {model}
    if: {{verdict: pass}}
    action: promote
    alias: staging
"""


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, LiveServer]]:
    with stack(database_url, tmp_path_factory.mktemp("rules")) as made:
        yield made, made.serve()


class Gated:
    """A model with a gate policy on ``staging``, the two rules above, and a receiver of its alias moves and
    gate results."""

    def __init__(self, env: tuple[Stack, LiveServer], tmp_path: Path) -> None:
        self.made, self.server = env
        self.tmp_path = tmp_path
        self.model = unique("auto")
        self.api = client(self.server, self.made.tokens.maintainer)
        self.receiver = Receiver().start()
        assert self.api.post("/api/v1/models", json={"name": self.model}).status_code == 201
        policy = self.api.put(f"/api/v1/models/{self.model}/gate-policies/staging", json={"spec": SPEC})
        assert policy.status_code == 200, policy.text
        applied = self.api.post("/api/v1/automations/rules", json={"yaml": RULES.format(model=self.model)})
        assert applied.status_code == 200, applied.text
        self.rules = {r["name"]: r for r in applied.json()}
        subscribe(self.api, self.receiver, ["alias.moved", "gate.completed"], model=self.model)

    def push(self, wrong: int) -> None:
        folder = model_folder(self.tmp_path, eval_table(4000, wrong), unique("v"))
        code = main(["push", self.model, str(folder), "--url", self.server.url, "--token", self.made.tokens.writer])
        assert code == 0

    def jobs(self) -> list[dict[str, Any]]:
        return [j for j in self.api.get("/api/v1/automations/jobs").json() if j["params"].get("model") == self.model]

    def close(self) -> None:
        for name in self.rules:
            self.api.delete(f"/api/v1/automations/rules/{name}")
        for hook in self.api.get("/api/v1/webhooks").json():
            self.api.delete(f"/api/v1/webhooks/{hook['id']}")
        self.receiver.stop()
        self.api.close()


@pytest.fixture
def gated(env: tuple[Stack, LiveServer], tmp_path: Path) -> Iterator[Gated]:
    made = Gated(env, tmp_path)
    yield made
    made.close()


def test_passing_version_is_gated_and_promoted_by_rules(gated: Gated) -> None:
    evaluate, stage = f"evaluate-{gated.model}", f"stage-{gated.model}"
    assert gated.rules[evaluate]["role"] == "maintainer" and gated.rules[stage]["conditions"] == {"verdict": "pass"}
    gated.push(wrong=20)
    [moved] = wait_until(lambda: gated.receiver.payloads("alias.moved"), timeout=30, what="staging to move")
    assert moved["data"]["alias"] == "staging" and moved["data"]["to_version"] == 1
    assert moved["data"]["actor"] == f"rule:{stage}" and moved["data"]["forced"] is False
    [completed] = gated.receiver.payloads("gate.completed")
    assert completed["data"]["verdict"] == "pass" and completed["data"]["version"] == 1

    api = gated.api
    [run] = api.get(f"/api/v1/models/{gated.model}/versions/1/gate-runs").json()
    assert run["verdict"] == "pass" and run["actor"] == f"rule:{evaluate}" and run["origin"] == "automation"
    assert run["id"] == completed["data"]["gate_run_id"] == moved["data"]["gate_run_id"]
    assert api.get(f"/api/v1/models/{gated.model}/aliases/staging").json()["version"] == 1
    [promotion] = api.get(f"/api/v1/models/{gated.model}/promotions", params={"alias": "staging"}).json()
    assert promotion["actor"] == f"rule:{stage}" and promotion["gate_run_id"] == run["id"]
    assert promotion["to_version"] == 1
    assert promotion["reason"] == f"rule {stage} after gate.completed (gate run #{run['id']})"
    assert moved["data"]["reason"] == promotion["reason"]

    def finished() -> list[dict[str, Any]] | None:
        jobs = gated.jobs()
        return jobs if len(jobs) == 2 and all(j["status"] == "succeeded" for j in jobs) else None

    jobs = {j["kind"]: j for j in wait_until(finished, what="both jobs to succeed")}
    assert jobs["run_gate"]["actor"] == f"rule:{evaluate}"
    assert jobs["run_gate"]["result"] == {"gate_run_id": run["id"], "verdict": "pass"}
    assert jobs["promote"]["actor"] == f"rule:{stage}" and jobs["promote"]["params"]["gate_run_id"] == run["id"]
    assert jobs["promote"]["result"] == {"alias": "staging", "version": 1, "changed": True}


def test_failing_candidate_does_not_move_staging(gated: Gated) -> None:
    gated.push(wrong=20)
    wait_until(lambda: gated.receiver.payloads("alias.moved"), timeout=30, what="v1 to reach staging")
    gated.push(wrong=400)  # 90% accuracy against a 95% threshold

    def failed() -> list[dict[str, Any]]:
        return [p for p in gated.receiver.payloads("gate.completed") if p["data"]["version"] == 2]

    [completed] = wait_until(failed, timeout=30, what="v2's gate result")
    assert completed["data"]["verdict"] == "fail"
    # The gate.completed event has been fanned out (its delivery exists), so a promote job would exist by now.
    jobs = gated.jobs()
    assert not [j for j in jobs if j["kind"] == "promote" and j["params"].get("version") == 2]
    assert [j["result"]["verdict"] for j in jobs if j["kind"] == "run_gate" and j["params"]["version"] == 2] == ["fail"]
    assert gated.api.get(f"/api/v1/models/{gated.model}/aliases/staging").json()["version"] == 1
    assert len(gated.receiver.payloads("alias.moved")) == 1
    [run] = gated.api.get(f"/api/v1/models/{gated.model}/versions/2/gate-runs").json()
    assert run["verdict"] == "fail" and run["actor"] == f"rule:evaluate-{gated.model}"


def test_rules_need_a_maintainer_and_valid_yaml(env: tuple[Stack, LiveServer]) -> None:
    made, server = env
    model = unique("rules")
    text = RULES.format(model=model)
    with client(server, made.tokens.writer) as writer:
        assert writer.post("/api/v1/automations/rules", json={"yaml": text}).status_code == 403
    with client(server, made.tokens.maintainer) as api:
        for broken, hint in [
            ("rules: [{name: x, on: model.exploded, action: promote, alias: staging}]", "model.exploded"),
            ("rules: [{name: x, on: gate.completed, action: promote}]", "alias"),
            ("rules: [{name: x, on: gate.completed, action: promote, alias: staging, when: now}]", "when"),
            ("rules: [{name: x, on: gate.completed, action: run_gate, spec: {version: 1, gates: 3}}]", "spec"),
            ("rules: {}", "rules"),
            ("rules: [", "YAML"),
        ]:
            response = api.post("/api/v1/automations/rules", json={"yaml": broken})
            assert response.status_code == 400 and hint in response.json()["detail"], (broken, response.text)
        assert api.post("/api/v1/automations/rules", json={"yaml": text}).status_code == 200
        names = {r["name"] for r in api.get("/api/v1/automations/rules").json()}
        assert {f"evaluate-{model}", f"stage-{model}"} <= names
        for name in (f"evaluate-{model}", f"stage-{model}"):
            assert api.delete(f"/api/v1/automations/rules/{name}").status_code == 200
        assert api.delete(f"/api/v1/automations/rules/evaluate-{model}").status_code == 404


def test_rule_chain_ignores_other_models(gated: Gated, env: tuple[Stack, LiveServer], tmp_path: Path) -> None:
    other = unique("other")
    folder = model_folder(tmp_path, eval_table(4000, 20), "other")
    assert main(["push", other, str(folder), "--url", env[1].url, "--token", env[0].tokens.writer]) == 0
    gated.push(wrong=20)  # after the other model's version: once this is promoted, the other's event was seen
    wait_until(lambda: gated.receiver.payloads("alias.moved"), timeout=30, what="the gated model's promotion")
    assert not [j for j in gated.api.get("/api/v1/automations/jobs").json() if j["params"].get("model") == other]
    assert gated.api.get(f"/api/v1/models/{other}/aliases/staging").status_code == 404
