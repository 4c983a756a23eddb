"""Migration 0006 on a database written before it: alias and gate-policy names fold to lower case, look-alikes
are renamed without losing what they pointed at, promotion rows stay as written, and MLflow stages come to
agree with the `production`/`staging` aliases (a stage without its alias is carried over to one)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from registry import migrations
from registry.db import Database
from registry.domain.auth import AuditEntry
from registry.domain.base import utcnow
from registry.domain.gates import GatePolicy
from registry.domain.models import Alias, ModelVersion, Promotion, RegisteredModel
from registry.services import aliases
from tests.automations.receivers import fresh_database

# model id → (name, number of versions)
MODELS = {1: ("clash", 3), 2: ("no-lower", 2), 3: ("plain", 2), 4: ("legacy-stages", 4)}
# (model id, alias, version) as the earlier code let writers store them
ALIASES = [
    (1, "production", 1),
    (1, "Production", 2),  # a look-alike of the protected alias
    (1, "Staging", 3),
    (2, "Production", 1),
    (2, "PRODUCTION", 2),  # no lower-case spelling: the first in code-point order keeps the name
    (3, "Champion", 2),
    (4, "staging", 2),
]
POLICIES = [(1, "Production", "d-look"), (1, "production", "d-real"), (3, "CHAMPION", "d-champ")]
# (model id, alias, from, to) already in the history
PROMOTIONS = [
    (1, "production", None, 1),
    (1, "Production", None, 1),
    (1, "Production", 1, 2),
    (3, "Champion", None, 1),
    (3, "Champion", 1, 2),
]
# MLflow stages the old transition-stage wrote, disagreeing with the aliases
STAGES = {(1, 2): "Production", (4, 1): "Production", (4, 3): "Production", (4, 4): "Staging"}


async def seed(db: Database) -> None:
    now = utcnow()
    async with db.write() as s:
        for model_id, (name, count) in MODELS.items():
            s.add(RegisteredModel(id=model_id, name=name, last_version=count, created_by="w"))
            await s.flush()
            for n in range(1, count + 1):
                stage = STAGES.get((model_id, n), "None")
                s.add(ModelVersion(model_id=model_id, version=n, stage=stage, digest="0" * 64, created_by="w"))
        await s.flush()
        for model_id, name, version in ALIASES:
            s.add(Alias(model_id=model_id, name=name, version=version, updated_by="w", updated_at=now))
        for model_id, alias, digest in POLICIES:
            s.add(GatePolicy(model_id=model_id, alias=alias, spec="version: 1", spec_digest=digest, created_by="m"))
        for model_id, alias, before, after in PROMOTIONS:
            s.add(
                Promotion(
                    model_id=model_id,
                    alias=alias,
                    from_version=before,
                    to_version=after,
                    action="promote",
                    actor="w",
                    forced=False,
                )
            )


async def state(db: Database) -> dict[str, Any]:
    async with db.read() as s:
        return {
            "aliases": sorted((await s.execute(sa.select(Alias.model_id, Alias.name, Alias.version))).all()),
            "policies": sorted(
                (await s.execute(sa.select(GatePolicy.model_id, GatePolicy.alias, GatePolicy.spec_digest))).all()
            ),
            "stages": {
                (m, v): stage
                for m, v, stage in (
                    await s.execute(sa.select(ModelVersion.model_id, ModelVersion.version, ModelVersion.stage))
                ).all()
            },
            "promotions": list(
                (
                    await s.execute(
                        sa.select(
                            Promotion.model_id,
                            Promotion.alias,
                            Promotion.from_version,
                            Promotion.to_version,
                            Promotion.action,
                            Promotion.actor,
                        ).order_by(Promotion.id)
                    )
                ).all()
            ),
            "audit": sorted(
                (a, t, d.get("from"))
                for a, t, d in (
                    await s.execute(sa.select(AuditEntry.action, AuditEntry.target, AuditEntry.details))
                ).all()
            ),
        }


EXPECTED_ALIASES = [
    (1, "production", 1),
    (1, "production-case-conflict-1", 2),
    (1, "staging", 3),
    (2, "production", 2),
    (2, "production-case-conflict-1", 1),
    (3, "champion", 2),
    (4, "production", 3),  # carried over from the newest version in Production
    (4, "staging", 2),
]
EXPECTED_POLICIES = [
    (1, "production", "d-real"),
    (1, "production-case-conflict-1", "d-look"),
    (3, "champion", "d-champ"),
]
EXPECTED_STAGES = {
    (1, 1): "Production",
    (1, 2): "Archived",  # it was in Production, but `production` points at v1
    (1, 3): "Staging",
    (2, 1): "None",
    (2, 2): "Production",
    (3, 1): "None",
    (3, 2): "None",
    (4, 1): "Archived",
    (4, 2): "Staging",
    (4, 3): "Production",
    (4, 4): "Archived",  # `staging` already pointed at v2
}
ADDED_PROMOTIONS = [
    (1, "Production", 2, None, "rename", "migration 0006"),
    (1, "production-case-conflict-1", None, 2, "rename", "migration 0006"),
    (2, "Production", 1, None, "rename", "migration 0006"),
    (2, "production-case-conflict-1", None, 1, "rename", "migration 0006"),
    (4, "production", None, 3, "promote", "migration 0006"),
]
EXPECTED_AUDIT = sorted(
    [
        ("alias.renamed", "clash@production-case-conflict-1", "Production"),
        ("alias.renamed", "no-lower@production-case-conflict-1", "Production"),
        ("gate_policy.renamed", "clash@production-case-conflict-1", "Production"),
        ("gate_policy.renamed", "plain@champion", "CHAMPION"),
        ("alias.carried_over", "legacy-stages@production", None),
    ]
)


async def history(db: Database, model: str, alias: str) -> list[tuple[str, int | None, int | None, str]]:
    async with db.read() as s:
        rows = await aliases.history(s, model_name=model, alias=alias)
    return [(p.alias, p.from_version, p.to_version, p.action) for p in rows]


async def migrate(url: str) -> None:
    db = Database(url)
    try:
        await migrations.upgrade(db, "0005")
        await seed(db)
        await migrations.upgrade(db, "0006")
        after = await state(db)
        assert after["aliases"] == EXPECTED_ALIASES
        assert after["policies"] == EXPECTED_POLICIES
        assert after["stages"] == EXPECTED_STAGES
        written = [(m, a, f, t, "promote", "w") for m, a, f, t in PROMOTIONS]
        assert after["promotions"] == written + ADDED_PROMOTIONS  # old rows untouched, new ones appended
        assert after["audit"] == EXPECTED_AUDIT

        # History folds the spelling, and leaves out the look-alike's rows.
        assert await history(db, "clash", "production") == [("production", None, 1, "promote")]
        assert await history(db, "clash", "PRODUCTION-CASE-CONFLICT-1") == [
            ("production-case-conflict-1", None, 2, "rename")
        ]
        assert await history(db, "plain", "champion") == [
            ("Champion", 1, 2, "promote"),
            ("Champion", None, 1, "promote"),
        ]
        await migrations.upgrade(db)  # on to head (the rollback below writes rows of today's schema)
        # ... so a rollback of the folded alias finds the move that brought its holder in.
        from registry.domain.auth import Role
        from registry.services.auth import Actor

        async with db.write() as s:
            back = await aliases.rollback(
                s, model_name="plain", alias="champion", actor=Actor(name="m", role=Role.maintainer),
                protected=frozenset({"production"}),
            )  # fmt: skip
        assert back.version == 1

        assert (await state(db))["aliases"][:2] == [(1, "production", 1), (1, "production-case-conflict-1", 2)]
    finally:
        await db.dispose()


def test_0006_folds_alias_names_and_makes_stages_follow_the_aliases(database_url: str, tmp_path: Path) -> None:
    with fresh_database(database_url, tmp_path) as url:
        asyncio.run(migrate(url))


def test_conflict_names_stay_valid_aliases() -> None:
    import importlib

    module = importlib.import_module("registry.migrations.versions.0006_alias_case")
    from registry.services import names

    long = "a" * 128
    renamed = module.conflict_name(long, {long})
    assert len(renamed) == 128 and names.alias(renamed) == renamed
    plan = module.plan_renames
    assert plan(["X", "x", "Y", "z"]) == [("X", "x-case-conflict-1", True), ("Y", "y", False)]
    assert plan(["Ab", "AB", "ab-case-conflict-1"]) == [("Ab", "ab-case-conflict-2", True), ("AB", "ab", False)]
    # The earlier check let a trailing newline and, so, `Latest\n` through.
    assert plan(["a\n", "b\n", "b", "Latest\n"]) == [
        ("b\n", "b-case-conflict-1", True),
        ("Latest\n", "latest-case-conflict-1", True),
        ("a\n", "a", False),
    ]
