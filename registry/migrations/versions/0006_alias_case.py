"""alias names are lower case; MLflow's stages are the aliases of the same name

Aliases are now case-insensitive (stored lower case), so ``Production`` can no longer be an unprotected,
ungated look-alike of ``production``. Stored names are folded:

- aliases and gate policies: a name with capitals becomes its lower-case form. Where two spellings of one
  name exist for a model (``production`` and ``Production``), the lower-case one keeps the name (or, when
  none is lower case, the first in code-point order); each other spelling is renamed to
  ``<name>-case-conflict-<n>``, keeping what it pointed at or required, so nothing is lost. Every such
  rename, and every folded gate-policy name (it starts guarding the alias it spells), is written to the audit
  log; an alias rename also as two ``rename`` rows in the promotion history: one closing the old spelling (no
  ``to_version``), one opening the new name. A trailing newline that the earlier check let through is
  dropped the same way.
- promotion history rows are not edited: they are append-only, and the spelling in them is what was typed
  at the time. History queries fold the spelling instead, and leave out the rows of a spelling that was
  renamed away (``registry.services.aliases._history_of``).

MLflow's stages (the ``stage`` column) now follow the ``production`` and ``staging`` aliases. So that
``models:/name/Production`` keeps loading what it loaded before the upgrade, a model with versions in a stage
but no alias of that name gets the alias, pointing at the newest version in the stage (what
``get-latest-versions`` returned), recorded as a promotion and in the audit log. Then every stage is made
to agree with the aliases: the holder of ``production`` is in Production, else the holder of ``staging`` in
Staging; a version that was in a stage whose alias another version holds becomes Archived.

No events are written: webhooks announce changes people make, not this one-time housekeeping. A downgrade
leaves the data as it is: lower-case names and consistent stages are valid for the earlier code too.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import op

from registry.domain.base import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ACTOR = "migration 0006"
MAX_ALIAS = 128
STAGES = {"production": "Production", "staging": "Staging"}  # alias → stage; Production wins

_models = sa.table("registered_models", sa.column("id", sa.BigInteger), sa.column("name", sa.String))
_aliases = sa.table(
    "aliases",
    sa.column("model_id", sa.BigInteger),
    sa.column("name", sa.String),
    sa.column("version", sa.BigInteger),
    sa.column("updated_by", sa.String),
    sa.column("updated_at", UTCDateTime()),
)
_policies = sa.table(
    "gate_policies",
    sa.column("id", sa.BigInteger),
    sa.column("model_id", sa.BigInteger),
    sa.column("alias", sa.String),
    sa.column("spec_digest", sa.String),
)
_promotions = sa.table(
    "promotions",
    sa.column("model_id", sa.BigInteger),
    sa.column("alias", sa.String),
    sa.column("from_version", sa.BigInteger),
    sa.column("to_version", sa.BigInteger),
    sa.column("action", sa.String),
    sa.column("actor", sa.String),
    sa.column("reason", sa.Text),
    sa.column("forced", sa.Boolean),
    sa.column("created_at", UTCDateTime()),
)
_versions = sa.table(
    "model_versions",
    sa.column("id", sa.BigInteger),
    sa.column("model_id", sa.BigInteger),
    sa.column("version", sa.BigInteger),
    sa.column("stage", sa.String),
)
_audit = sa.table(
    "audit_log",
    sa.column("action", sa.String),
    sa.column("actor", sa.String),
    sa.column("target", sa.Text),
    sa.column("details", sa.JSON),
    sa.column("created_at", UTCDateTime()),
)


def conflict_name(lowered: str, taken: set[str]) -> str:
    """``<name>-case-conflict-<n>``: a valid alias name (at most 128 characters) not in ``taken``."""
    n = 1
    while True:
        suffix = f"-case-conflict-{n}"
        candidate = lowered[: MAX_ALIAS - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        n += 1


def stored_form(name: str) -> str:
    """The name as it is stored now. The earlier check (``re.match`` with ``$``) also let one trailing newline
    through, which the name never meant to hold."""
    return name.lower().removesuffix("\n")


class Rename(NamedTuple):
    old: str
    new: str
    look_alike: bool
    """True: another spelling kept the name, so this one became a different alias. False: the same alias,
    spelled as it is stored now."""


def plan_renames(spellings: list[str]) -> list[Rename]:
    """The renames of one model's names in one table, look-alikes first (they move to free names, which
    frees nothing a kept name needs). Names already in their stored form are left out."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in spellings:
        groups[stored_form(name)].append(name)
    taken = set(groups)
    look_alikes: list[Rename] = []
    kept: list[Rename] = []
    for lowered, group in sorted(groups.items()):
        # ``Latest`` passed the earlier check but reads as a version reference now: it keeps no name.
        keeper = None if lowered == "latest" else lowered if lowered in group else sorted(group)[0]
        for spelling in sorted(group):
            if spelling != keeper:
                new = conflict_name(lowered, taken)
                taken.add(new)
                look_alikes.append(Rename(spelling, new, look_alike=True))
        if keeper is not None and keeper != lowered:
            kept.append(Rename(keeper, lowered, look_alike=False))
    return look_alikes + kept


class _Writer:
    def __init__(self, bind: sa.Connection) -> None:
        self.bind = bind
        self.now = datetime.now(UTC)
        self.model_names = dict(bind.execute(sa.select(_models.c.id, _models.c.name)).all())

    def audit(self, action: str, model_id: int, alias: str, details: dict[str, Any]) -> None:
        model = self.model_names.get(model_id, str(model_id))
        self.bind.execute(
            sa.insert(_audit).values(
                action=action,
                actor=ACTOR,
                target=f"{model}@{alias}",
                details={"model": model, **details},
                created_at=self.now,
            )
        )

    def promotion(
        self, model_id: int, alias: str, before: int | None, after: int | None, action: str, why: str
    ) -> None:
        self.bind.execute(
            sa.insert(_promotions).values(
                model_id=model_id,
                alias=alias,
                from_version=before,
                to_version=after,
                action=action,
                actor=ACTOR,
                reason=why,
                forced=False,
                created_at=self.now,
            )
        )


def _fold_aliases(w: _Writer) -> None:
    rows = w.bind.execute(sa.select(_aliases.c.model_id, _aliases.c.name, _aliases.c.version)).all()
    per_model: dict[int, dict[str, int]] = defaultdict(dict)
    for model_id, name, version in rows:
        per_model[model_id][name] = version
    for model_id, held in per_model.items():
        for old, new, look_alike in plan_renames(list(held)):
            where = (_aliases.c.model_id == model_id) & (_aliases.c.name == old)
            w.bind.execute(sa.update(_aliases).where(where).values(name=new))
            if not look_alike:
                continue  # the same alias, spelled as it is stored now: its history folds the spelling
            version, spelled = held[old], stored_form(old)
            w.promotion(
                model_id,
                old,
                version,
                None,
                "rename",
                f"renamed to {new!r}: alias names are lower case now and {spelled!r} is another alias",
            )
            w.promotion(model_id, new, None, version, "rename", f"renamed from {old!r} (a look-alike of {spelled!r})")
            w.audit("alias.renamed", model_id, new, {"from": old, "to": new, "version": version})


def _fold_policies(w: _Writer) -> None:
    rows = w.bind.execute(sa.select(_policies.c.id, _policies.c.model_id, _policies.c.alias)).all()
    per_model: dict[int, dict[str, int]] = defaultdict(dict)
    for policy_id, model_id, alias in rows:
        per_model[model_id][alias] = policy_id
    for model_id, policies in per_model.items():
        for old, new, _ in plan_renames(list(policies)):
            w.bind.execute(sa.update(_policies).where(_policies.c.id == policies[old]).values(alias=new))
            # Every policy rename is audited: a folded name starts guarding the alias it spells.
            w.audit("gate_policy.renamed", model_id, new, {"from": old, "to": new})


def _stages_follow_aliases(w: _Writer) -> None:
    holders: dict[tuple[int, str], int] = {
        (model_id, name): version
        for model_id, name, version in w.bind.execute(
            sa.select(_aliases.c.model_id, _aliases.c.name, _aliases.c.version).where(_aliases.c.name.in_(STAGES))
        ).all()
    }
    staged = w.bind.execute(
        sa.select(_versions.c.model_id, _versions.c.version, _versions.c.stage).where(
            _versions.c.stage.in_(STAGES.values())
        )
    ).all()
    newest: dict[tuple[int, str], int] = {}
    for model_id, version, stage in staged:
        key = (model_id, stage.lower())
        newest[key] = max(version, newest.get(key, version))
    for (model_id, alias), version in sorted(newest.items()):
        if (model_id, alias) in holders:
            continue
        w.bind.execute(
            sa.insert(_aliases).values(
                model_id=model_id, name=alias, version=version, updated_by=ACTOR, updated_at=w.now
            )
        )
        holders[(model_id, alias)] = version
        stage = STAGES[alias]
        w.promotion(
            model_id,
            alias,
            None,
            version,
            "promote",
            f"carried over from the MLflow stage {stage}: stages are the aliases of the same name now",
        )
        w.audit("alias.carried_over", model_id, alias, {"alias": alias, "to_version": version, "stage": stage})
    # Every version in a stage, or holding a stage alias, gets the stage the aliases give it.
    held_by: dict[tuple[int, int], set[str]] = defaultdict(set)
    for (model_id, alias), version in holders.items():
        held_by[(model_id, version)].add(alias)
    touched = {(model_id, version) for model_id, version, _ in staged} | set(held_by)
    for model_id, version in sorted(touched):
        held = held_by.get((model_id, version), set())
        wanted = next((s for a, s in STAGES.items() if a in held), "Archived")
        where = (_versions.c.model_id == model_id) & (_versions.c.version == version)
        w.bind.execute(sa.update(_versions).where(where, _versions.c.stage != wanted).values(stage=wanted))


def upgrade() -> None:
    writer = _Writer(op.get_bind())
    _fold_aliases(writer)
    _fold_policies(writer)
    _stages_follow_aliases(writer)


def downgrade() -> None:
    pass
