"""The action queue: gate runs, promotions and GitHub write-backs requested by rules or inbound hooks, run off
the request path.

Jobs are claimed with a lease like deliveries; a job whose worker died is picked up again when the lease
expires. Running one twice is safe: a gate run is evidence (a second identical record is harmless), a
promotion to the version the alias already holds changes nothing, and GitHub keeps one status per context and
one comment per marker (``github_results``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from automations import github_results, rules, triggers
from automations.domain import AutomationJob
from registry.db import Database
from registry.domain.auth import Role
from registry.domain.base import utcnow
from registry.errors import InvalidInput, NotFound, RegistryError
from registry.services import aliases, gates, models
from registry.services._sql import dialect
from registry.services.auth import Actor
from registry.settings import Settings
from registry.storage import BlobStore


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    kind: str
    params: dict[str, Any]
    actor: Actor
    rule_id: int | None = None
    from_rule: bool = False
    """Queued by a rule for an event (the rule may have been removed since: then ``rule_id`` is None)."""


async def enqueue_gate_run(
    session: AsyncSession,
    *,
    model: str,
    version: int,
    actor: Actor,
    alias: str | None = None,
    spec: str | None = None,
    commit_sha: str | None = None,
    message: triggers.InboundMessage | None = None,
) -> AutomationJob:
    """Ask for a gate run of ``model`` v``version`` against ``spec`` or the gate policy of ``alias``.

    ``message``: the signed request this comes from. Its ``webhook-id`` is remembered per trigger, and the
    same id again (a replayed request, or the sender retrying) returns the job the first one queued."""
    if message is not None and (earlier := await triggers.job_for(session, message)) is not None:
        return earlier
    if (alias is None) == (spec is None):
        raise InvalidInput("give either `alias` (use its gate policy) or `spec`", field="alias")
    if spec is not None:
        gates.load_spec(spec)
    found = await models.get(session, name=model)
    if alias is not None and await gates.get_policy(session, model=found, alias=alias) is None:
        raise NotFound(f"{model}@{alias} has no gate policy to evaluate against")
    params: dict[str, Any] = {
        "model": model,
        "version": version,
        "alias": alias,
        "spec": spec,
        "commit_sha": commit_sha,
    }
    job = AutomationJob(
        kind="run_gate", params=params, actor=actor.name, role=actor.role.name, next_attempt_at=utcnow()
    )
    session.add(job)
    await session.flush()
    if message is not None:
        job = await triggers.remember(session, message, job=job)
    return job


async def get(session: AsyncSession, *, job_id: int) -> AutomationJob:
    job = await session.get(AutomationJob, job_id)
    if job is None:
        raise NotFound(f"automation job {job_id} does not exist")
    return job


async def list_jobs(session: AsyncSession, *, status: str | None = None, limit: int = 100) -> list[AutomationJob]:
    query = select(AutomationJob).order_by(AutomationJob.id.desc()).limit(limit)
    if status:
        query = query.where(AutomationJob.status == status)
    return list(await session.scalars(query))


async def claim(session: AsyncSession, *, me: str, limit: int, lock: timedelta) -> list[ClaimedJob]:
    now = utcnow()
    due = (
        select(AutomationJob.id)
        .where(AutomationJob.status == "pending", AutomationJob.next_attempt_at <= now)
        .order_by(AutomationJob.id)
        .limit(limit)
    )
    if dialect(session) == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = await session.execute(
        update(AutomationJob)
        .where(AutomationJob.id.in_(due.scalar_subquery()))
        .values(
            status="running", locked_by=me, locked_until=now + lock, attempts=AutomationJob.attempts + 1, updated_at=now
        )
        .returning(
            AutomationJob.id,
            AutomationJob.kind,
            AutomationJob.params,
            AutomationJob.actor,
            AutomationJob.role,
            AutomationJob.rule_id,
            AutomationJob.event_seq,
        )
    )
    return [
        ClaimedJob(id=i, kind=k, params=p, actor=Actor(name=a, role=Role[r]), rule_id=rule, from_rule=seq is not None)
        for i, k, p, a, r, rule, seq in rows.all()
    ]


async def _spec_for(db: Database, params: dict[str, Any]) -> str:
    if params.get("spec"):
        return str(params["spec"])
    async with db.read() as session:
        model = await models.get(session, name=params["model"])
        policy = await gates.get_policy(session, model=model, alias=params["alias"])
    if policy is None:
        raise NotFound(f"{params['model']}@{params['alias']} has no gate policy to evaluate against")
    return policy.spec


def promotion_reason(actor: Actor, params: dict[str, Any]) -> str:
    """What the promotion history says about a move made by a job: the rule's own ``reason``, or which rule
    moved the alias after which event (and on which gate run)."""
    if params.get("reason"):
        return str(params["reason"])
    who = f"rule {actor.name.removeprefix('rule:')}" if actor.name.startswith("rule:") else actor.name
    event = params.get("event") or {}
    gate_run = params.get("gate_run_id")
    return f"{who} after {event.get('type', 'an event')}" + (f" (gate run #{gate_run})" if gate_run else "")


async def execute(db: Database, store: BlobStore, settings: Settings, job: ClaimedJob) -> dict[str, Any]:
    """Run one job; expected failures raise RegistryError (recorded on the job). A rule's job first needs the
    rule's author to be current (Forbidden otherwise, see ``rules.require_current_author``)."""
    params = job.params
    if job.from_rule:
        async with db.read() as session:
            await rules.require_current_author(session, rule_id=job.rule_id)
    if not params.get("model") or not params.get("version"):
        raise InvalidInput("the triggering event carries no model version")
    if job.kind == "run_gate":
        result = await gates.evaluate_version(
            db,
            store,
            model_name=params["model"],
            version=int(params["version"]),
            spec_text=await _spec_for(db, params),
            actor=job.actor,
            record_run=True,
            commit_sha=params.get("commit_sha"),
            origin="automation",
            tmp_dir=settings.tmp_dir,
        )
        assert result.run is not None
        return {"gate_run_id": result.run.id, "verdict": result.run.verdict}
    if job.kind in github_results.ACTIONS:
        return await github_results.post(db, settings, kind=job.kind, params=params)
    if job.kind == "promote":
        reason = promotion_reason(job.actor, params)
        async with db.write() as session:
            move = await aliases.set_alias(
                session,
                model_name=params["model"],
                alias=params["alias"],
                version=int(params["version"]),
                actor=job.actor,
                protected=frozenset(settings.protected_aliases),
                reason=reason,
            )
        return {"alias": params["alias"], "version": move.version, "changed": move.promotion is not None}
    raise InvalidInput(f"unknown job kind {job.kind!r}")


async def finish(
    session: AsyncSession, *, job_id: int, me: str, result: dict[str, Any] | None, error: RegistryError | None
) -> None:
    job = await session.get(AutomationJob, job_id, populate_existing=True)
    if job is None or job.locked_by != me or job.status != "running":
        return
    job.status = "failed" if error is not None else "succeeded"
    job.result, job.error = result, (error.message if error is not None else None)
    job.locked_by = job.locked_until = None
    job.updated_at = utcnow()
    await session.flush()


async def reap(session: AsyncSession) -> int:
    now = utcnow()
    result = await session.execute(
        update(AutomationJob)
        .where(AutomationJob.status == "running", AutomationJob.locked_until < now)
        .values(status="pending", locked_by=None, locked_until=None, next_attempt_at=now, updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
