"""Gate policies, gate runs and the promotion rule they enforce.

A policy ``(model, alias) → spec`` means: the alias may only move to a version that has a recorded
*passing* gate run for exactly that spec (by digest). ``evaluate_version`` is the use case that produces
such a run from the version's stored evaluation table; it owns its transactions (read, evaluate outside
any transaction, write) so a slow evaluation never holds the database.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.db import Database
from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.domain.gates import GatePolicy, GateRun
from registry.domain.models import ModelVersion, RegisteredModel
from registry.errors import InvalidInput, NotFound, PreconditionFailed
from registry.services import aliases, audit, events, models, names, versions
from registry.services.artifacts import ManifestEntry
from registry.services.auth import Actor, require
from registry.storage import BlobStore

if TYPE_CHECKING:
    # The engine pulls in numpy, scipy and pyarrow (~100 MB of RSS): imported where gates are parsed or
    # evaluated, so an API process that never evaluates one stays small.
    import pyarrow as pa

    import gates

EVAL_FOLDER = "eval"
EVAL_SUFFIXES = (".parquet", ".csv")
PASSING = ("pass", "warn")
"""Verdicts that satisfy a policy: ``warn`` is a pass with a caveat (e.g. an exhausted reveal budget)."""


def load_spec(text: str) -> gates.GateSpec:
    """Parse a gate spec; the gates package's errors become InvalidInput naming the gate and field."""
    import gates

    try:
        return gates.load_spec(text)
    except gates.GateError as exc:
        raise InvalidInput(f"gate spec: {exc}", field="spec") from None


def testset_digest(table: pa.Table) -> str:
    """Identity of the examples (ids and labels, order-free), shared by every candidate scored on them."""
    import gates

    columns = [c for c in ("id", "label") if c in table.column_names]
    if not columns:
        return gates.table_digest(table)
    return gates.table_digest(table.select(columns).sort_by([(c, "ascending") for c in columns]))


def eval_entry(files: list[ManifestEntry], *, path: str | None = None) -> ManifestEntry:
    """The version's evaluation table: ``path`` if given, else the one .parquet/.csv file under ``eval/``."""
    if path is not None:
        wanted = names.artifact_path(path)
        for entry in files:
            if entry.path == wanted:
                return entry
        raise NotFound(f"the version has no file {wanted!r}")
    found = [f for f in files if f.path.startswith(EVAL_FOLDER + "/") and f.path.endswith(EVAL_SUFFIXES)]
    if len(found) != 1:
        listed = ", ".join(f.path for f in found) or "none"
        raise NotFound(
            f"expected exactly one evaluation table under {EVAL_FOLDER}/ (.parquet or .csv), found {listed}; "
            "push it with the version or name it with eval_path",
            code="eval_not_found",
        )
    return found[0]


def baseline_alias(spec: gates.GateSpec) -> str | None:
    """The alias paired gates compare against (``baseline: "@champion"``); one per spec."""
    from gates.spec import PairedGate

    wanted = {g.baseline for g in spec.gates if isinstance(g, PairedGate)}
    if not wanted:
        return None
    if len(wanted) > 1:
        raise InvalidInput(f"paired gates name different baselines ({', '.join(sorted(wanted))}); use one")
    ref = wanted.pop()
    if not ref.startswith("@"):
        raise InvalidInput(f"baseline {ref!r} must be an alias reference such as '@champion'", field="baseline")
    return names.alias(ref[1:])


# -- policies -------------------------------------------------------------------------------------------
async def set_policy(session: AsyncSession, *, model_name: str, alias: str, spec_text: str, actor: Actor) -> GatePolicy:
    """Require ``spec`` for moves of ``alias``. Maintainers only; audited."""
    require(actor, Role.maintainer, action="setting a gate policy")
    alias = names.alias(alias)
    spec = load_spec(spec_text)
    model = await models.lock(session, name=model_name)
    policy = await session.scalar(select(GatePolicy).where(GatePolicy.model_id == model.id, GatePolicy.alias == alias))
    if policy is None:
        policy = GatePolicy(
            model_id=model.id, alias=alias, spec=spec_text, spec_digest=spec.digest, created_by=actor.name
        )
        session.add(policy)
    else:
        policy.spec, policy.spec_digest, policy.updated_at = spec_text, spec.digest, utcnow()
    await session.flush()
    data = {"model": model.name, "alias": alias, "spec_digest": spec.digest}
    await audit.log(session, action="gate_policy.set", actor=actor.name, target=f"{model.name}@{alias}", details=data)
    await events.record(
        session,
        type="gate_policy.set",
        subject=f"models/{model.name}/gate-policies/{alias}",
        actor=actor.name,
        model=model.name,
        data=data,
    )
    return policy


async def get_policy(session: AsyncSession, *, model: RegisteredModel, alias: str) -> GatePolicy | None:
    alias = names.alias(alias)
    return await session.scalar(select(GatePolicy).where(GatePolicy.model_id == model.id, GatePolicy.alias == alias))


async def list_policies(session: AsyncSession, *, model_name: str) -> list[GatePolicy]:
    model = await models.get(session, name=model_name)
    return list(
        await session.scalars(select(GatePolicy).where(GatePolicy.model_id == model.id).order_by(GatePolicy.alias))
    )


async def delete_policy(session: AsyncSession, *, model_name: str, alias: str, actor: Actor) -> None:
    require(actor, Role.maintainer, action="removing a gate policy")
    alias = names.alias(alias)
    model = await models.lock(session, name=model_name)
    result = await session.execute(delete(GatePolicy).where(GatePolicy.model_id == model.id, GatePolicy.alias == alias))
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"{model.name}@{alias} has no gate policy")
    data = {"model": model.name, "alias": alias}
    await audit.log(
        session, action="gate_policy.removed", actor=actor.name, target=f"{model.name}@{alias}", details=data
    )
    await events.record(
        session,
        type="gate_policy.removed",
        subject=f"models/{model.name}/gate-policies/{alias}",
        actor=actor.name,
        model=model.name,
        data=data,
    )


async def passing_run(session: AsyncSession, *, model: RegisteredModel, alias: str, version: int) -> GateRun | None:
    """The promotion rule. With no policy: None (nothing required). With one: the newest passing run of
    ``version`` for the policy's spec digest, or PreconditionFailed naming what failed."""
    policy = await get_policy(session, model=model, alias=alias)
    if policy is None:
        return None
    latest = await session.scalar(
        select(GateRun)
        .where(GateRun.model_id == model.id, GateRun.version == version, GateRun.spec_digest == policy.spec_digest)
        .order_by(GateRun.id.desc())
        .limit(1)
    )
    if latest is not None and latest.verdict in PASSING:
        return latest
    if latest is None:
        why = "has no recorded gate run for the current policy spec"
    else:
        failing = [g["gate_id"] for g in latest.report.get("gates", []) if g.get("effective") != "pass"]
        why = f"failed gate run #{latest.id} ({latest.verdict}: {', '.join(failing) or 'see the report'})"
    raise PreconditionFailed(
        f"{model.name} v{version} {why}; {model.name}@{alias} requires a pass of spec {policy.spec_digest[:12]} "
        f"(run `registry gate run {model.name} {version} --spec ... --record`, or --force with a reason)",
        code="gate_policy_not_met",
        failing_run=latest.id if latest else None,
    )


# -- runs -----------------------------------------------------------------------------------------------
async def reveals(session: AsyncSession, *, testset_digest: str) -> int:
    """How many verdicts were already revealed on this test set (recorded runs)."""
    return int(
        await session.scalar(select(func.count()).select_from(GateRun).where(GateRun.testset_digest == testset_digest))
        or 0
    )


async def record(
    session: AsyncSession,
    *,
    model: RegisteredModel,
    version: ModelVersion,
    baseline: ModelVersion | None,
    spec: gates.GateSpec,
    spec_text: str,
    report: dict[str, Any],
    testset: str,
    commit_sha: str | None,
    origin: str,
    actor: Actor,
) -> GateRun:
    """Store a gate run and emit ``gate.completed``."""
    run = GateRun(
        model_id=model.id,
        version=version.version,
        baseline_version=baseline.version if baseline else None,
        spec_digest=spec.digest,
        spec=spec_text,
        data_digest=str(report.get("data_digest") or ""),
        testset_digest=testset,
        reveal=await reveals(session, testset_digest=testset) + 1,
        verdict=str(report["verdict"]),
        report=report,
        commit_sha=commit_sha,
        origin=origin,
        actor=actor.name,
    )
    session.add(run)
    await session.flush()
    await events.record(
        session,
        type="gate.completed",
        subject=f"models/{model.name}/versions/{version.version}/gate-runs/{run.id}",
        actor=actor.name,
        model=model.name,
        data={
            "model": model.name,
            "version": version.version,
            "gate_run_id": run.id,
            "verdict": run.verdict,
            "spec_digest": spec.digest,
            "baseline_version": run.baseline_version,
            "commit_sha": commit_sha,
        },
    )
    return run


async def list_runs(
    session: AsyncSession, *, model: RegisteredModel, version: int | None = None, limit: int = 50
) -> list[GateRun]:
    query = select(GateRun).where(GateRun.model_id == model.id).order_by(GateRun.id.desc()).limit(limit)
    if version is not None:
        query = query.where(GateRun.version == version)
    return list(await session.scalars(query))


async def get_run(session: AsyncSession, *, run_id: int) -> tuple[RegisteredModel, GateRun]:
    run = await session.get(GateRun, run_id)
    if run is None:
        raise NotFound(f"gate run {run_id} does not exist")
    model = await session.get(RegisteredModel, run.model_id)
    assert model is not None
    return model, run


@dataclass(frozen=True, slots=True)
class Evaluation:
    report: dict[str, Any]
    run: GateRun | None
    """Set when the evaluation was recorded."""


async def _load_table(store: BlobStore, entry: ManifestEntry, folder: Path) -> pa.Table:
    import gates

    folder.mkdir(parents=True, exist_ok=True)
    local = folder / Path(entry.path).name
    async with await anyio.open_file(local, "wb") as out:
        async for chunk in store.stream(entry.sha256):
            await out.write(chunk)
    try:
        return await anyio.to_thread.run_sync(gates.load_table, str(local))
    except gates.GateError as exc:
        raise InvalidInput(f"evaluation table {entry.path}: {exc}", field="eval") from None


async def evaluate_version(
    db: Database,
    store: BlobStore,
    *,
    model_name: str,
    version: int,
    spec_text: str,
    actor: Actor,
    record_run: bool = False,
    commit_sha: str | None = None,
    eval_path: str | None = None,
    origin: str = "api",
    tmp_dir: Path | None = None,
) -> Evaluation:
    """Evaluate ``version``'s evaluation table (and the baseline alias holder's) against ``spec_text``."""
    import gates

    spec = load_spec(spec_text)
    alias = baseline_alias(spec)
    async with db.read() as session:
        view = await versions.view(session, model_name=model_name, version=version)
        candidate = eval_entry(view.files, path=eval_path)
        baseline_version: ModelVersion | None = None
        baseline: ManifestEntry | None = None
        if alias is not None:
            try:
                _, baseline_version = await aliases.resolve(session, model_name=model_name, alias=alias)
            except NotFound:
                raise PreconditionFailed(
                    f"the spec compares with @{alias}, but {model_name}@{alias} is not set", code="no_baseline"
                ) from None
            baseline = eval_entry(await versions.files_of(session, version_id=baseline_version.id), path=eval_path)
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="gate-") as folder:
        candidate_table = await _load_table(store, candidate, Path(folder) / "candidate")
        baseline_table = await _load_table(store, baseline, Path(folder) / "baseline") if baseline else None
    testset = testset_digest(candidate_table)
    async with db.read() as session:
        seen = await reveals(session, testset_digest=testset)
    try:
        report = await anyio.to_thread.run_sync(
            lambda: gates.evaluate(spec, candidate_table, baseline_table, reveals_so_far=seen)
        )
    except gates.GateError as exc:
        raise InvalidInput(f"gate evaluation: {exc}") from None
    payload = report.to_dict()
    if not record_run:
        return Evaluation(report=payload, run=None)
    async with db.write() as session:
        model = await models.get(session, name=model_name)
        found = await versions.get(session, model=model, version=version)
        run = await record(
            session,
            model=model,
            version=found,
            baseline=baseline_version,
            spec=spec,
            spec_text=spec_text,
            report=payload,
            testset=testset,
            commit_sha=commit_sha,
            origin=origin,
            actor=actor,
        )
    return Evaluation(report=payload, run=run)
