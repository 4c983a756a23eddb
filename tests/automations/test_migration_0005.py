"""Migration 0005 on a database holding data written before it: rules get the token of whoever applied them
last (from the audit log), and the reasons rules stored as an object's repr become readable, in the
promotion history and in the event and audit copies of the same move. Nothing else is touched."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command

from registry import migrations
from registry.db import Database
from registry.domain.auth import Role
from registry.domain.base import UTCDateTime, utcnow
from registry.services.auth import Actor
from tests.automations.receivers import fresh_database


def old_reason(rule: str, rest: str) -> str:
    """What automations.actions stored before: the acting object formatted into the text."""
    return f"{Actor(name=f'rule:{rule}', role=Role.admin)}{rest}"


def table(name: str, *columns: tuple[str, Any]) -> sa.TableClause:
    return sa.table(name, *(sa.column(c, t) for c, t in columns))


TOKENS = table("api_tokens", ("id", sa.BigInteger), ("name", sa.String), ("role", sa.String), ("prefix", sa.String),
               ("token_hash", sa.String), ("created_by", sa.String), ("created_at", UTCDateTime()))  # fmt: skip
AUDIT = table("audit_log", ("id", sa.BigInteger), ("action", sa.String), ("actor", sa.String), ("target", sa.Text),
              ("details", sa.JSON), ("created_at", UTCDateTime()))  # fmt: skip
RULES = table("automation_rules", ("id", sa.BigInteger), ("name", sa.String), ("on_event", sa.String),
              ("model", sa.String), ("conditions", sa.JSON), ("action", sa.String), ("params", sa.JSON),
              ("role", sa.String), ("enabled", sa.Boolean), ("created_by", sa.String),
              ("created_at", UTCDateTime()), ("updated_at", UTCDateTime()))  # fmt: skip
MODELS = table("registered_models", ("id", sa.BigInteger), ("name", sa.String), ("last_version", sa.BigInteger),
               ("created_by", sa.String), ("created_at", UTCDateTime()), ("updated_at", UTCDateTime()))  # fmt: skip
PROMOTIONS = table("promotions", ("id", sa.BigInteger), ("model_id", sa.BigInteger), ("alias", sa.String),
                   ("to_version", sa.BigInteger), ("action", sa.String), ("actor", sa.String), ("reason", sa.Text),
                   ("forced", sa.Boolean), ("created_at", UTCDateTime()))  # fmt: skip
EVENTS = table("events", ("seq", sa.BigInteger), ("id", sa.String), ("type", sa.String), ("subject", sa.String),
               ("actor", sa.String), ("data", sa.JSON), ("created_at", UTCDateTime()))  # fmt: skip

QUOTED = "it's-staging"  # its repr is double-quoted
STORED = {
    1: ("rule:stage", old_reason("stage", " after gate.completed (gate run #3)")),
    2: (f"rule:{QUOTED}", old_reason(QUOTED, " after gate.completed")),
    3: ("alice", "weekly release"),
    4: ("alice", "Actor(name='rule:x') is what the log said"),
    5: ("rule:stage", None),
}
READABLE = {
    1: "rule stage after gate.completed (gate run #3)",
    2: f"rule {QUOTED} after gate.completed",
    3: "weekly release",
    4: "Actor(name='rule:x') is what the log said",
    5: None,
}


async def seed(db: Database) -> None:
    now = utcnow()
    async with db.write() as s:
        for i, name in enumerate(["alice", "bob"], start=1):
            token = {"id": i, "name": name, "role": "maintainer", "prefix": f"p{i}", "token_hash": "0" * 64}
            await s.execute(sa.insert(TOKENS).values(**token, created_by="admin", created_at=now))
        for actor, names in [("alice", ["stage", "evaluate"]), ("bob", ["stage"]), ("ghost", ["orphan"])]:
            await s.execute(sa.insert(AUDIT).values(action="automation_rules.applied", actor=actor, target="rules",
                                                    details={"rules": names}, created_at=now))  # fmt: skip
        for i, name in enumerate(["stage", "evaluate", "orphan", "unaudited"], start=1):
            await s.execute(sa.insert(RULES).values(id=i, name=name, on_event="gate.completed", model=None,
                                                    conditions={}, action="promote", params={"alias": "staging"},
                                                    role="maintainer", enabled=True, created_by="alice",
                                                    created_at=now, updated_at=now))  # fmt: skip
        await s.execute(sa.insert(MODELS).values(id=1, name="churn", last_version=2, created_by="alice",
                                                 created_at=now, updated_at=now))  # fmt: skip
        for i, (actor, reason) in STORED.items():
            await s.execute(sa.insert(PROMOTIONS).values(id=i, model_id=1, alias="staging", to_version=1,
                                                         action="promote", actor=actor, reason=reason, forced=False,
                                                         created_at=now))  # fmt: skip
            data = {"model": "churn", "alias": "staging", "to_version": 1, "reason": reason, "promotion_id": i}
            await s.execute(sa.insert(EVENTS).values(seq=i, id=f"evt_{i}", type="alias.moved", actor=actor,
                                                     subject="models/churn/aliases/staging", data=data,
                                                     created_at=now))  # fmt: skip
            await s.execute(sa.insert(AUDIT).values(action="protected_alias.moved", actor=actor, target="churn@staging",
                                                    details=data, created_at=now))  # fmt: skip


async def check(db: Database) -> None:
    async with db.read() as s:
        authors: dict[str, int | None] = dict(
            (await s.execute(sa.text("SELECT name, token_id FROM automation_rules"))).all()
        )
        reasons = dict((await s.execute(sa.select(PROMOTIONS.c.id, PROMOTIONS.c.reason))).all())
        events = {seq: data for seq, data in (await s.execute(sa.select(EVENTS.c.seq, EVENTS.c.data))).all()}
        audited = [
            details
            for details in (
                await s.scalars(sa.select(AUDIT.c.details).where(AUDIT.c.action == "protected_alias.moved"))
            ).all()
        ]
    assert authors == {"stage": 2, "evaluate": 1, "orphan": None, "unaudited": None}
    assert reasons == READABLE
    for seq, data in events.items():
        assert data == {"model": "churn", "alias": "staging", "to_version": 1, "reason": READABLE[seq],
                        "promotion_id": seq}  # fmt: skip
    assert sorted((d["promotion_id"], d["reason"]) for d in audited) == [(i, READABLE[i]) for i in sorted(READABLE)]


def columns(conn: sa.Connection) -> list[Any]:
    return list(sa.inspect(conn).get_columns("automation_rules"))


async def migrate(url: str) -> None:
    db = Database(url)
    try:
        await migrations.upgrade(db, "0004")
        await seed(db)
        await migrations.upgrade(db, "0005")
        await check(db)
        async with db.write_engine.begin() as conn:  # and back, and up again
            await conn.run_sync(lambda c: command.downgrade(migrations.alembic_config(c), "0004"))
            assert "token_id" not in {c["name"] for c in await conn.run_sync(columns)}
        await migrations.upgrade(db, "0005")
        async with db.read() as s:
            authors = await s.execute(sa.text("SELECT name, token_id FROM automation_rules"))
            assert dict(authors.all()) == {"stage": 2, "evaluate": 1, "orphan": None, "unaudited": None}
            assert dict((await s.execute(sa.select(PROMOTIONS.c.id, PROMOTIONS.c.reason))).all()) == READABLE
    finally:
        await db.dispose()


def test_0005_backfills_rule_authors_and_rewrites_old_reasons(database_url: str, tmp_path: Path) -> None:
    with fresh_database(database_url, tmp_path) as url:
        asyncio.run(migrate(url))
