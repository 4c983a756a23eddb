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
      - name: gate-pull-requests
        on: github.pull_request       # GitHub's webhook (POST /api/v1/hooks/github), per version from the head SHA
        model: churn
        action: run_gate
        alias: staging
      - name: status-back
        on: gate.completed
        action: github_status         # or github_comment: the report on the commit's open pull requests
        github_token: acme            # the name of a server-side token (MODELKEEP_GITHUB_TOKENS), never a token
        repository: acme/churn        # optional: else the repository of the version's run's git remote
        context: modelkeep/churn      # optional: default modelkeep/registry/<model>

A rule acts as ``rule:<name>`` with the role of whoever applied it, through the same services as a person,
so gate policies and protected aliases apply to it too. It acts only while the API token that applied it last
is current: once that token is revoked or expired, the rule's jobs fail (saying why) until a maintainer applies
the rule again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from automations import github_hooks
from automations.domain import AutomationRule
from automations.github import REPOSITORY
from automations.github_results import ACTIONS as GITHUB_ACTIONS
from automations.webhooks import EVENT_TYPES
from registry.domain.auth import ApiToken, Role
from registry.domain.base import utcnow
from registry.domain.gates import GatePolicy
from registry.domain.models import RegisteredModel
from registry.errors import Forbidden, InvalidInput, NotFound
from registry.services import audit, gates, names
from registry.services.auth import Actor, require

ACTIONS = ("run_gate", "promote", *GITHUB_ACTIONS)
RULE_EVENTS = (*EVENT_TYPES, *github_hooks.EVENT_TYPES)
_KEYS = {"name", "on", "model", "if", "action", "alias", "spec", "enabled", "reason"}
_KEYS |= {"github_token", "repository", "context"}  # github_status / github_comment
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOKEN_SHAPE = re.compile(r"^(gh[pousr]_|github_pat_)|^[0-9a-f]{40}$")
"""What GitHub's tokens look like (classic and fine-grained personal, OAuth, App, Actions): never in a rule."""
_CONTEXT = re.compile(r"^[A-Za-z0-9_./@:-]{1,100}$")


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
    if on_event not in RULE_EVENTS:
        raise InvalidInput(f"{where}.on: {on_event!r} is not an event type ({', '.join(RULE_EVENTS)})")
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
    params |= _github_params(raw, where, action=str(action), on_event=str(on_event))
    return RuleSpec(
        name=name,
        on_event=on_event,
        action=action,
        model=model,
        conditions=conditions,
        params=params,
        enabled=bool(raw.get("enabled", True)),
    )


def _github_params(raw: dict[str, Any], where: str, *, action: str, on_event: str) -> dict[str, Any]:
    """``github_token`` (a name), ``repository`` and ``context`` of a github_status / github_comment rule."""
    given = {key for key in ("github_token", "repository", "context") if raw.get(key) is not None}
    if action not in GITHUB_ACTIONS:
        if given:
            raise InvalidInput(f"{where}: {', '.join(sorted(given))} only go with {' or '.join(GITHUB_ACTIONS)}")
        return {}
    if on_event != "gate.completed":
        raise InvalidInput(f"{where}: a {action} rule acts on gate.completed (it posts that gate run's result)")
    token = raw.get("github_token")
    if not isinstance(token, str) or not token:
        raise InvalidInput(f"{where}: a {action} rule needs `github_token`, the name of a server-side token")
    if _TOKEN_SHAPE.match(token):
        # Said without echoing it: the value is a credential, and error messages end up in logs.
        raise InvalidInput(
            f"{where}.github_token: that is a token, not a name. Put the token in the server's "
            'MODELKEEP_GITHUB_TOKENS (e.g. {"acme": "<token>"}), name it here (github_token: acme), '
            "and revoke the one written in the rule file"
        )
    if not _TOKEN_NAME.match(token):
        raise InvalidInput(f"{where}.github_token: {token!r} is not a token name (1-64 letters, digits, '_-.')")
    params: dict[str, Any] = {"github_token": token}
    repository = raw.get("repository")
    if repository is not None:
        if not isinstance(repository, str) or not REPOSITORY.match(repository):
            raise InvalidInput(f"{where}.repository: {repository!r} is not owner/name")
        params["repository"] = repository
    context = raw.get("context")
    if context is not None:
        if not isinstance(context, str) or not _CONTEXT.match(context):
            raise InvalidInput(f"{where}.context: {context!r} is not a status context (1-100 of [A-Za-z0-9_./@:-])")
        params["context"] = context
    return params


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


async def warnings_for(
    session: AsyncSession, spec: RuleSpec, *, github_tokens: list[str] | None = None, github_hooks_on: bool = True
) -> list[str]:
    """What would make the rule fail once its event arrives, although it is valid: a ``run_gate`` rule that
    evaluates against an alias' gate policy that does not exist (yet); a GitHub rule naming a token this server
    does not have (``github_tokens``: the names it has, None: not checked); a rule on GitHub's webhooks while the
    server has no webhook secret. Each names what fixes it."""
    found = []
    if spec.action in GITHUB_ACTIONS and github_tokens is not None and spec.params["github_token"] not in github_tokens:
        found.append(
            f"rule {spec.name!r} posts with the GitHub token {spec.params['github_token']!r}, which this server "
            "does not have: its jobs fail until it is added to MODELKEEP_GITHUB_TOKENS"
        )
    if spec.on_event in github_hooks.EVENT_TYPES and not github_hooks_on:
        found.append(
            f"rule {spec.name!r} waits for GitHub's webhooks, which this server does not accept: set "
            "MODELKEEP_GITHUB_WEBHOOK_SECRET and point the repository's webhook at /api/v1/hooks/github"
        )
    return found + await _policy_warnings(session, spec)


async def _policy_warnings(session: AsyncSession, spec: RuleSpec) -> list[str]:
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
