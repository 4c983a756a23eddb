"""Automation rules, declared in YAML (``registry automations apply rules.yaml``)::

    rules:
      - name: evaluate-new-versions
        on: model_version.created
        model: churn                  # optional: every model when absent
        action: run_gate
        alias: staging                # use the gate policy of churn@staging (or give `spec:` inline)
      - name: stage-on-pass
        on: gate.completed
        model: churn
        if: {verdict: pass}           # event data must match (a list means any of)
        action: promote
        alias: staging

A rule acts as ``rule:<name>`` with the role of whoever applied it, through the same services as a person,
so gate policies and protected aliases apply to it too. It acts only while the API token that applied it last
is current: once that token is revoked or expired, the rule's jobs fail (saying why) until a maintainer applies
the rule again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from automations.domain import AutomationRule
from automations.webhooks import EVENT_TYPES
from registry.domain.auth import ApiToken, Role
from registry.domain.base import utcnow
from registry.domain.gates import GatePolicy
from registry.domain.models import RegisteredModel
from registry.errors import Forbidden, InvalidInput, NotFound
from registry.services import audit, gates, names
from registry.services.auth import Actor, require

ACTIONS = ("run_gate", "promote")
_KEYS = {"name", "on", "model", "if", "action", "alias", "spec", "enabled", "reason"}


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: str
    on_event: str
    action: str
    model: str | None = None
    conditions: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True


def _rule(raw: Any, index: int) -> RuleSpec:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: each rule is a mapping")
    # YAML 1.1 reads a bare `on:` key as the boolean True; take it back as the word users wrote.
    raw = {("on" if key is True else str(key)): value for key, value in raw.items()}
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise InvalidInput(f"{where}.name: a non-empty name (≤ 128 characters) is required")
    where = f"rule {name!r}"
    on_event, action = raw.get("on"), raw.get("action")
    if on_event not in EVENT_TYPES:
        raise InvalidInput(f"{where}.on: {on_event!r} is not an event type ({', '.join(EVENT_TYPES)})")
    if action not in ACTIONS:
        raise InvalidInput(f"{where}.action: {action!r} is not one of {', '.join(ACTIONS)}")
    model = raw.get("model")
    if model is not None:
        names.model_name(str(model))
    conditions = raw.get("if") or {}
    if not isinstance(conditions, dict):
        raise InvalidInput(f"{where}.if: a mapping of event data fields to required values")
    params: dict[str, Any] = {}
    alias, spec = raw.get("alias"), raw.get("spec")
    if alias is not None:
        params["alias"] = names.alias(str(alias))
    if spec is not None:
        text = spec if isinstance(spec, str) else yaml.safe_dump(spec)
        gates.load_spec(text)  # fail now, not when the event arrives
        params["spec"] = text
    if action == "promote" and "alias" not in params:
        raise InvalidInput(f"{where}: a promote rule needs `alias`")
    if action == "run_gate" and not params:
        raise InvalidInput(f"{where}: a run_gate rule needs `alias` (its gate policy) or `spec`")
    if raw.get("reason"):
        params["reason"] = str(raw["reason"])
    return RuleSpec(
        name=name,
        on_event=on_event,
        action=action,
        model=model,
        conditions=conditions,
        params=params,
        enabled=bool(raw.get("enabled", True)),
    )


def parse(text: str) -> list[RuleSpec]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"rules file is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise InvalidInput("a rules file is a mapping with a `rules:` list")
    specs = [_rule(raw, i) for i, raw in enumerate(data["rules"])]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise InvalidInput(f"rule {spec.name!r} is declared twice")
        seen.add(spec.name)
    return specs


async def apply(session: AsyncSession, *, specs: list[RuleSpec], actor: Actor) -> list[AutomationRule]:
    """Create or replace rules by name (others are left alone). Maintainers only; audited."""
    require(actor, Role.maintainer, action="applying automation rules")
    stored: list[AutomationRule] = []
    for spec in specs:
        rule = await session.scalar(select(AutomationRule).where(AutomationRule.name == spec.name))
        if rule is None:
            rule = AutomationRule(
                name=spec.name, created_by=actor.name, on_event=spec.on_event, action=spec.action, role=actor.role.name
            )
            session.add(rule)
        rule.on_event, rule.model, rule.conditions = spec.on_event, spec.model, spec.conditions
        rule.action, rule.params, rule.enabled, rule.role = spec.action, spec.params, spec.enabled, actor.role.name
        rule.token_id = actor.token_id
        rule.updated_at = utcnow()
        stored.append(rule)
    await session.flush()
    await audit.log(
        session,
        action="automation_rules.applied",
        actor=actor.name,
        target="automation rules",
        details={"rules": [s.name for s in specs]},
    )
    return stored


async def warnings_for(session: AsyncSession, spec: RuleSpec) -> list[str]:
    """What would make the rule fail once its event arrives, although it is valid: a ``run_gate`` rule that
    evaluates against an alias' gate policy that does not exist (yet). Each names the command that fixes it."""
    alias = spec.params.get("alias")
    if spec.action != "run_gate" or "spec" in spec.params or alias is None:
        return []
    policies = select(GatePolicy.id).join(RegisteredModel, RegisteredModel.id == GatePolicy.model_id)
    policies = policies.where(GatePolicy.alias == alias)
    if spec.model is not None:
        if await session.scalar(policies.where(RegisteredModel.name == spec.model).limit(1)) is not None:
            return []
        return [
            f"rule {spec.name!r} runs the gate policy of {spec.model}@{alias}, which does not exist: its jobs fail "
            f"until you create it with `registry gate policy set {spec.model} --alias {alias} --spec gates.yaml`"
        ]
    if await session.scalar(policies.limit(1)) is not None:
        return []
    return [
        f"rule {spec.name!r} runs each model's gate policy on {alias!r}, and no model has one: its jobs fail until "
        f"you create them with `registry gate policy set MODEL --alias {alias} --spec gates.yaml`"
    ]


async def list_rules(session: AsyncSession) -> list[AutomationRule]:
    return list(await session.scalars(select(AutomationRule).order_by(AutomationRule.name)))


async def remove(session: AsyncSession, *, name: str, actor: Actor) -> None:
    require(actor, Role.maintainer, action="removing an automation rule")
    result = await session.execute(delete(AutomationRule).where(AutomationRule.name == name))
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"no automation rule named {name!r}")
    await audit.log(session, action="automation_rule.removed", actor=actor.name, target=name)


async def require_current_author(session: AsyncSession, *, rule_id: int | None) -> None:
    """Raise Forbidden unless the rule still exists and the token that applied it last is neither revoked nor
    expired. Checked when each of the rule's jobs runs, not when it is queued: a revocation also stops jobs
    already waiting, and the rule's role is only ever that of a token someone can still use."""
    rule = await session.get(AutomationRule, rule_id) if rule_id is not None else None
    if rule is None:
        raise Forbidden("the rule that queued this job has been removed")
    token = await session.get(ApiToken, rule.token_id) if rule.token_id is not None else None
    if token is None:
        why = "no API token on record applied it"
    elif token.revoked_at is not None:
        why = f"the token {token.name!r} that applied it was revoked at {token.revoked_at.isoformat()}"
    elif token.expires_at is not None and token.expires_at <= utcnow():
        why = f"the token {token.name!r} that applied it expired at {token.expires_at.isoformat()}"
    else:
        return
    raise Forbidden(
        f"rule {rule.name!r} no longer acts: {why}; a maintainer must re-apply it (`registry automations apply`)",
        code="rule_author_not_current",
    )
