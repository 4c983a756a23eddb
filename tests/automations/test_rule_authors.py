"""A rule acts only while the token that applied it is current: once that token is revoked or has expired, the
rule's jobs fail and say why, until a maintainer with a current token applies the rule again. Promotions made
by rules say which rule made them in a readable reason."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from automations import rules
from registry.cli import main
from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.errors import Forbidden
from registry.services import tokens
from registry.services.auth import Actor
from tests.automations.receivers import Stack, client, stack, wait_until
from tests.automations.test_rules_chain import RULES
from tests.conftest import LiveServer, unique
from tests.registry.gates.test_gate_flow import SPEC, eval_table, model_folder


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, LiveServer]]:
    with stack(database_url, tmp_path_factory.mktemp("authors")) as made:
        yield made, made.serve()


class Model:
    """A model with a gate policy on staging, and helpers to push versions and read its rule jobs."""

    def __init__(self, env: tuple[Stack, LiveServer], tmp_path: Path) -> None:
        self.made, self.server = env
        self.tmp_path, self.name = tmp_path, unique("authored")
        self.api = client(self.server, self.made.tokens.maintainer)
        self.admin = client(self.server, self.made.tokens.admin)
        assert self.api.post("/api/v1/models", json={"name": self.name}).status_code == 201
        assert self.api.put(f"/api/v1/models/{self.name}/gate-policies/staging", json={"spec": SPEC}).status_code == 200

    def author(self, **token: Any) -> tuple[str, str]:
        """A new maintainer token (its name and secret)."""
        name = unique("author")
        created = self.admin.post("/api/v1/tokens", json={"name": name, "role": "maintainer", **token})
        assert created.status_code == 201, created.text
        return name, str(created.json()["token"])

    def apply(self, token: str) -> None:
        with client(self.server, token) as api:
            applied = api.post("/api/v1/automations/rules", json={"yaml": RULES.format(model=self.name)})
        assert applied.status_code == 200, applied.text

    def push(self) -> int:
        folder = model_folder(self.tmp_path, eval_table(4000, 20), unique("v"))
        args = ["push", self.name, str(folder), "--url", self.server.url, "--token", self.made.tokens.writer]
        assert main(args) == 0
        versions = self.api.get(f"/api/v1/models/{self.name}/versions").json()["items"]
        return max(int(v["version"]) for v in versions)

    def finished_jobs(self, version: int, count: int) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            jobs = [
                j
                for j in self.api.get("/api/v1/automations/jobs").json()
                if j["params"].get("model") == self.name and j["params"].get("version") == version
            ]
            return jobs if len(jobs) >= count and all(j["status"] in ("succeeded", "failed") for j in jobs) else None

        return list(wait_until(done, timeout=30, what=f"the rule jobs of v{version}"))

    def close(self) -> None:
        for name in (f"evaluate-{self.name}", f"stage-{self.name}"):
            self.api.delete(f"/api/v1/automations/rules/{name}")
        self.api.close()
        self.admin.close()


@pytest.fixture
def model(env: tuple[Stack, LiveServer], tmp_path: Path) -> Iterator[Model]:
    made = Model(env, tmp_path)
    yield made
    made.close()


def gate_runs(api: httpx.Client, model: str, version: int) -> list[dict[str, Any]]:
    return list(api.get(f"/api/v1/models/{model}/versions/{version}/gate-runs").json())


def test_rule_of_a_revoked_author_stops_acting_until_reapplied(model: Model) -> None:
    author, secret = model.author()
    model.apply(secret)
    assert model.admin.delete(f"/api/v1/tokens/{author}").status_code == 200

    version = model.push()
    [job] = model.finished_jobs(version, 1)
    assert job["status"] == "failed" and job["kind"] == "run_gate", job
    assert f"evaluate-{model.name}" in job["error"] and author in job["error"] and "revoked" in job["error"], job
    assert "re-appl" in job["error"]
    assert gate_runs(model.api, model.name, version) == []

    model.apply(model.made.tokens.maintainer)  # a current maintainer takes the rules over
    version = model.push()
    jobs = {j["kind"]: j for j in model.finished_jobs(version, 2)}
    assert jobs["run_gate"]["status"] == jobs["promote"]["status"] == "succeeded", jobs
    [run] = gate_runs(model.api, model.name, version)
    [promotion] = model.api.get(f"/api/v1/models/{model.name}/promotions", params={"alias": "staging"}).json()
    assert promotion["actor"] == f"rule:stage-{model.name}"
    assert promotion["reason"] == f"rule stage-{model.name} after gate.completed (gate run #{run['id']})"


def test_rule_of_an_expired_author_stops_acting(model: Model) -> None:
    lifetime = 3.0
    _author, secret = model.author(expires_in_days=lifetime / 86400)
    applied_at = time.monotonic()
    model.apply(secret)
    time.sleep(max(0.0, lifetime + 0.5 - (time.monotonic() - applied_at)))

    version = model.push()
    [job] = model.finished_jobs(version, 1)
    assert job["status"] == "failed" and "expired" in job["error"] and "re-appl" in job["error"], job
    assert gate_runs(model.api, model.name, version) == []


async def test_author_check_names_each_reason(session: AsyncSession) -> None:
    admin = Actor(name="tests", role=Role.admin)
    made = await tokens.create(session, name=unique("author"), role=Role.maintainer, actor=admin)
    author = Actor(name=made.token.name, role=Role.maintainer, token_id=made.token.id)
    [spec] = rules.parse(f"rules: [{{name: {unique('r')}, on: model_version.created, action: run_gate, alias: s}}]")
    [rule] = await rules.apply(session, specs=[spec], actor=author)
    assert rule.token_id == made.token.id
    await rules.require_current_author(session, rule_id=rule.id)  # current: acts

    made.token.expires_at = utcnow() - timedelta(seconds=1)
    with pytest.raises(Forbidden, match=r"expired at .*re-apply"):
        await rules.require_current_author(session, rule_id=rule.id)
    made.token.expires_at = None
    await tokens.revoke(session, name=made.token.name, actor=admin)
    with pytest.raises(Forbidden, match=r"revoked at .*re-apply"):
        await rules.require_current_author(session, rule_id=rule.id)

    [rule] = await rules.apply(session, specs=[spec], actor=admin)  # no token behind this actor
    with pytest.raises(Forbidden, match="no API token"):
        await rules.require_current_author(session, rule_id=rule.id)
    with pytest.raises(Forbidden, match="removed"):
        await rules.require_current_author(session, rule_id=None)
