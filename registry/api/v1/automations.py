"""Automation rules, the action queue, inbound triggers, the signed inbound gate-run hook, and GitHub's webhooks."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import msgspec
from litestar import Controller, Request, Response, Router, delete, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from automations import actions, github_hooks, rules, triggers
from automations.domain import AutomationJob, AutomationRule
from registry.api.security import MAINTAINER, authenticate
from registry.api.v1._common import Int64, check_json_text, clamp_limit, int64_or_none, iso
from registry.db import Database
from registry.domain.auth import Role
from registry.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from registry.services.auth import Actor, require
from registry.settings import Settings


class RulesIn(msgspec.Struct, forbid_unknown_fields=True):
    yaml: str
    """The rules file's text."""


class RuleOut(msgspec.Struct, omit_defaults=True):
    name: str
    on: str
    model: str | None
    conditions: dict[str, Any]
    action: str
    params: dict[str, Any]
    role: str
    enabled: bool
    created_by: str
    updated_at: str | None
    warnings: list[str] = []
    """Only when applied: what would make the rule's jobs fail (a missing gate policy), with the fix."""


class JobOut(msgspec.Struct):
    id: int
    kind: str
    status: str
    params: dict[str, Any]
    actor: str
    attempts: int
    result: dict[str, Any] | None
    error: str | None
    created_at: str | None
    updated_at: str | None


class TriggerIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    model: str | None = None


class GateRunRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    version: Int64
    alias: str | None = None
    spec: str | None = None
    commit_sha: str | None = None


def render_rule(r: AutomationRule, warnings: list[str] | None = None) -> RuleOut:
    return RuleOut(
        name=r.name,
        on=r.on_event,
        model=r.model,
        conditions=r.conditions,
        action=r.action,
        params=r.params,
        role=r.role,
        enabled=r.enabled,
        created_by=r.created_by,
        updated_at=iso(r.updated_at),
        warnings=warnings or [],
    )


def render_job(j: AutomationJob) -> JobOut:
    return JobOut(
        id=j.id,
        kind=j.kind,
        status=j.status,
        params=j.params,
        actor=j.actor,
        attempts=j.attempts,
        result=j.result,
        error=j.error,
        created_at=iso(j.created_at),
        updated_at=iso(j.updated_at),
    )


class AutomationsController(Controller):
    path = "/automations"

    @post("/rules", guards=MAINTAINER, status_code=200)
    async def apply(self, data: RulesIn, db: Database, actor: Actor, settings: Settings) -> list[RuleOut]:
        specs = rules.parse(data.yaml)
        try:
            tokens: list[str] | None = settings.github_token_names()
        except ValueError:
            tokens = []  # unreadable: every GitHub rule is warned about (the jobs' errors say why)
        hooks_on = bool(settings.github_webhook_secrets)
        async with db.write() as session:
            applied = await rules.apply(session, specs=specs, actor=actor)
            return [
                render_rule(r, await rules.warnings_for(session, spec, github_tokens=tokens, github_hooks_on=hooks_on))
                for r, spec in zip(applied, specs, strict=True)
            ]

    @get("/rules")
    async def list_rules(self, db: Database) -> list[RuleOut]:
        async with db.read() as session:
            return [render_rule(r) for r in await rules.list_rules(session)]

    @delete("/rules/{name:str}", guards=MAINTAINER, status_code=200)
    async def remove_rule(self, name: str, db: Database, actor: Actor) -> dict[str, Any]:
        async with db.write() as session:
            await rules.remove(session, name=name, actor=actor)
        return {"name": name, "removed": True}

    @get("/jobs")
    async def list_jobs(self, db: Database, status: str | None = None, limit: int = 100) -> list[JobOut]:
        async with db.read() as session:
            return [render_job(j) for j in await actions.list_jobs(session, status=status, limit=clamp_limit(limit))]

    @get("/jobs/{job_id:int}")
    async def get_job(self, job_id: int, db: Database) -> JobOut:
        if int64_or_none(job_id) is None:
            raise NotFound(f"automation job {job_id} does not exist")
        async with db.read() as session:
            return render_job(await actions.get(session, job_id=job_id))

    @post("/triggers", guards=MAINTAINER, status_code=201)
    async def create_trigger(self, data: TriggerIn, db: Database, actor: Actor) -> dict[str, Any]:
        async with db.write() as session:
            trigger, secret = await triggers.create(session, name=data.name, model=data.model, actor=actor)
        return {"name": trigger.name, "model": trigger.model, "secret": secret}

    @get("/triggers")
    async def list_triggers(self, db: Database) -> list[dict[str, Any]]:
        async with db.read() as session:
            return [
                {
                    "name": t.name,
                    "model": t.model,
                    "enabled": t.enabled,
                    "created_by": t.created_by,
                    "created_at": iso(t.created_at),
                }
                for t in await triggers.list_triggers(session)
            ]

    @delete("/triggers/{name:str}", guards=MAINTAINER, status_code=200)
    async def remove_trigger(self, name: str, db: Database, actor: Actor) -> dict[str, Any]:
        async with db.write() as session:
            await triggers.remove(session, name=name, actor=actor)
        return {"name": name, "removed": True}


async def token_or_signature(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: a bearer token (writer), or a Standard Webhooks signature by an inbound trigger's secret."""
    if connection.headers.get("authorization"):
        await authenticate(connection, handler)
        # An automation gate run is always recorded: the token needs the role that may record one.
        role = Role[connection.app.state.settings.gate_record_role]
        require(connection.state.actor, max(role, Role.writer), action="requesting a recorded gate run")
        return
    if not connection.headers.get("webhook-signature"):
        raise Unauthenticated("send a bearer token, or sign the request with a trigger secret (Standard Webhooks)")
    body = await Request(connection.scope, connection.receive).body()
    db: Database = connection.app.state.db
    async with db.read() as session:
        trigger = await triggers.verify(session, headers=dict(connection.headers), body=body)
    if trigger is None:
        raise Unauthenticated("the signature matches no trigger secret, or its timestamp is too old")
    connection.state.actor = Actor(name=f"trigger:{trigger.name}", role=Role.writer)
    connection.state.trigger_model = trigger.model
    connection.state.hook_message = triggers.InboundMessage.of(trigger, connection.headers["webhook-id"])


@post("/gate-runs", guards=[token_or_signature], status_code=202)
async def request_gate_run(request: Request[Any, Any, Any], db: Database) -> dict[str, Any]:
    """Queue a gate run of a version (against an alias' gate policy or an inline spec); poll the job.
    A signed request whose ``webhook-id`` this trigger already sent gets the job it queued then."""
    raw = await request.body()
    check_json_text(raw)
    try:
        data = msgspec.json.decode(raw, type=GateRunRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidInput(f"invalid request: {exc}") from None
    actor: Actor = request.state.actor
    scoped = getattr(request.state, "trigger_model", None)
    if scoped is not None and scoped != data.model:
        raise Forbidden(f"this trigger may only request gate runs for {scoped!r}")
    async with db.write() as session:
        job = await actions.enqueue_gate_run(
            session,
            model=data.model,
            version=data.version,
            actor=actor,
            alias=data.alias,
            spec=data.spec,
            commit_sha=data.commit_sha,
            message=getattr(request.state, "hook_message", None),
        )
    return {"job_id": job.id, "status": job.status, "poll": f"/api/v1/automations/jobs/{job.id}"}


async def github_signature(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: the body is signed with the server's GitHub webhook secret (``X-Hub-Signature-256``).
    404 while no secret is set, so a server that takes no GitHub webhooks does not seem to have the route."""
    settings: Settings = connection.app.state.settings
    secrets = settings.github_webhook_secrets
    if not secrets:
        raise NotFound(
            "this server does not accept GitHub webhooks (set MODELKEEP_GITHUB_WEBHOOK_SECRET)", code="github_hooks_off"
        )
    body = await Request(connection.scope, connection.receive).body()
    if not github_hooks.verify(secrets, body, connection.headers.get("x-hub-signature-256")):
        raise Unauthenticated("X-Hub-Signature-256 is missing or does not match the webhook secret")


@post("/github", guards=[github_signature], status_code=202)
async def github_webhook(request: Request[Any, Any, Any], db: Database) -> Response[dict[str, Any]]:
    """A webhook from GitHub (a repository's or an App's), signed with ``X-Hub-Signature-256``.

    ``pull_request`` (opened, synchronize, reopened) and ``push`` record an event for each version registered
    from the named commit, for rules to act on (202). ``ping`` and events not acted on are answered 200, so
    GitHub shows them delivered. A delivery id seen before records nothing again and gets the first answer, with
    ``duplicate: true`` (200). 401: signature missing or wrong; 404: this server has no webhook secret."""
    raw = await request.body()
    event, delivery = request.headers.get("x-github-event"), request.headers.get("x-github-delivery")
    if not event or not delivery:
        raise InvalidInput("a GitHub webhook carries X-GitHub-Event and X-GitHub-Delivery", field="X-GitHub-Event")
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        # A webhook may be set to send its JSON as the form field `payload`; the signature covers the form.
        raw = (parse_qs(raw.decode("utf-8", errors="replace")).get("payload") or [""])[0].encode()
    check_json_text(raw)
    try:
        payload = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise InvalidInput("the payload is not JSON") from None
    async with db.write() as session:
        outcome = await github_hooks.receive(session, delivery=delivery, event=event, payload=payload)
    accepted = outcome.status == "accepted" and not outcome.duplicate
    return Response(outcome.to_dict(), status_code=202 if accepted else 200)


hooks_router = Router(path="/api/v1/hooks", route_handlers=[request_gate_run, github_webhook])
