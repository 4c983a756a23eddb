"""Gate runs (evaluate a version against a spec, optionally recording the evidence) and gate policies."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, delete, get, post, put

from registry.api.security import MAINTAINER, WRITER
from registry.api.v1._common import int64_or_none, iso
from registry.api.v1.models import version_number
from registry.db import Database
from registry.domain.auth import Role
from registry.domain.gates import GatePolicy, GateRun
from registry.errors import NotFound
from registry.services import gates, models
from registry.services.auth import Actor, require
from registry.settings import Settings
from registry.storage import BlobStore


class GateRunIn(msgspec.Struct, forbid_unknown_fields=True):
    spec: str
    """The gate spec (YAML text)."""
    record: bool = False
    commit_sha: str | None = None
    eval_path: str | None = None


class GateRunOut(msgspec.Struct):
    id: int | None
    model: str
    version: int
    baseline_version: int | None
    verdict: str
    spec_digest: str
    testset_digest: str | None
    reveal: int | None
    commit_sha: str | None
    origin: str | None
    actor: str | None
    created_at: str | None
    report: dict[str, Any]


class PolicyIn(msgspec.Struct, forbid_unknown_fields=True):
    spec: str


class PolicyOut(msgspec.Struct):
    model: str
    alias: str
    spec: str
    spec_digest: str
    created_by: str
    created_at: str | None
    updated_at: str | None


def render_run(model_name: str, run: GateRun) -> GateRunOut:
    return GateRunOut(
        id=run.id,
        model=model_name,
        version=run.version,
        baseline_version=run.baseline_version,
        verdict=run.verdict,
        spec_digest=run.spec_digest,
        testset_digest=run.testset_digest,
        reveal=run.reveal,
        commit_sha=run.commit_sha,
        origin=run.origin,
        actor=run.actor,
        created_at=iso(run.created_at),
        report=run.report,
    )


def render_policy(model_name: str, policy: GatePolicy) -> PolicyOut:
    return PolicyOut(
        model=model_name,
        alias=policy.alias,
        spec=policy.spec,
        spec_digest=policy.spec_digest,
        created_by=policy.created_by,
        created_at=iso(policy.created_at),
        updated_at=iso(policy.updated_at),
    )


class GatesController(Controller):
    path = "/"

    @post("/models/{name:str}/versions/{version:int}/gate-runs", guards=WRITER, status_code=200)
    async def run_gates(
        self, name: str, version: int, data: GateRunIn, db: Database, store: BlobStore, settings: Settings, actor: Actor
    ) -> GateRunOut:
        """Evaluate the version's evaluation table (``eval/*.parquet|csv``) against ``spec``; with ``record`` the
        run is stored (it then counts for gate policies and test-set reuse); recording needs the role named by
        ``MODELKEEP_GATE_RECORD_ROLE`` (writer unless set)."""
        if data.record:
            require(actor, Role[settings.gate_record_role], action="recording a gate run")
        result = await gates.evaluate_version(
            db,
            store,
            model_name=name,
            version=version_number(name, version),
            spec_text=data.spec,
            actor=actor,
            record_run=data.record,
            commit_sha=data.commit_sha,
            eval_path=data.eval_path,
            tmp_dir=settings.tmp_dir,
        )
        if result.run is not None:
            return render_run(name, result.run)
        report = result.report
        return GateRunOut(
            id=None,
            model=name,
            version=version,
            baseline_version=None,
            verdict=report["verdict"],
            spec_digest=report["spec_digest"],
            testset_digest=None,
            reveal=report["reveals"]["used"],
            commit_sha=data.commit_sha,
            origin=None,
            actor=actor.name,
            created_at=None,
            report=report,
        )

    @get("/models/{name:str}/versions/{version:int}/gate-runs")
    async def list_runs(self, name: str, version: int, db: Database) -> list[GateRunOut]:
        async with db.read() as session:
            model = await models.get(session, name=name)
            number = version_number(name, version)
            return [render_run(name, r) for r in await gates.list_runs(session, model=model, version=number)]

    @get("/gate-runs/{run_id:int}")
    async def get_run(self, run_id: int, db: Database) -> GateRunOut:
        if int64_or_none(run_id) is None:
            raise NotFound(f"gate run {run_id} does not exist")
        async with db.read() as session:
            model, run = await gates.get_run(session, run_id=run_id)
            return render_run(model.name, run)

    @put("/models/{name:str}/gate-policies/{alias:str}", guards=MAINTAINER, status_code=200)
    async def set_policy(self, name: str, alias: str, data: PolicyIn, db: Database, actor: Actor) -> PolicyOut:
        async with db.write() as session:
            policy = await gates.set_policy(session, model_name=name, alias=alias, spec_text=data.spec, actor=actor)
            return render_policy(name, policy)

    @get("/models/{name:str}/gate-policies")
    async def list_policies(self, name: str, db: Database) -> list[PolicyOut]:
        async with db.read() as session:
            return [render_policy(name, p) for p in await gates.list_policies(session, model_name=name)]

    @delete("/models/{name:str}/gate-policies/{alias:str}", guards=MAINTAINER, status_code=200)
    async def delete_policy(self, name: str, alias: str, db: Database, actor: Actor) -> dict[str, Any]:
        async with db.write() as session:
            await gates.delete_policy(session, model_name=name, alias=alias, actor=actor)
        return {"model": name, "alias": alias.lower(), "deleted": True}
