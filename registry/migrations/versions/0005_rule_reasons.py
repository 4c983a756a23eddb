"""automation rules remember their author's token; readable reasons for automated promotions

A rule acts only while the token that applied it is current, so rules record that token. Existing rules get
the token of whoever applied them last, read from the audit log (rules are applied only through the API, by
a token); a rule whose author cannot be found keeps none and stops acting until a maintainer re-applies it.

Promotions made by rules stored the acting object's repr as their reason
(``Actor(name='rule:stage', role=<Role.admin: 4>, token_id=None) after gate.completed (gate run #3)``).
Those reasons are rewritten to what rules write now (``rule stage after gate.completed (gate run #3)``), in the
promotion history and in the copies kept by the ``alias.moved`` event and the audit entry of the same move.
The rewrite is not undone by a downgrade: the old text carried nothing more.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import ast
import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The repr of registry.services.auth.Actor for a rule, then what followed it. The name is a Python string
# literal: single-quoted, or double-quoted when the name holds a single quote.
_OLD_REASON = re.compile(
    r"""^Actor\(name=(?P<name>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"), role=<Role\.\w+: \d+>, token_id=(?:None|\d+)\)"""
    r"(?P<rest> .*)?$",
    re.DOTALL,
)


def readable_reason(reason: Any) -> str | None:
    """The reason a rule writes now, for a reason stored in the old shape; None for any other reason."""
    if not isinstance(reason, str) or (found := _OLD_REASON.match(reason)) is None:
        return None
    try:
        actor = ast.literal_eval(found["name"])
    except (ValueError, SyntaxError):
        return None
    if not isinstance(actor, str):
        return None
    return f"rule {actor.removeprefix('rule:')}{found['rest'] or ''}"


_promotions = sa.table("promotions", sa.column("id", sa.BigInteger), sa.column("reason", sa.Text))
_events = sa.table("events", sa.column("seq", sa.BigInteger), sa.column("actor", sa.String), sa.column("data", sa.JSON))
_audit = sa.table(
    "audit_log",
    sa.column("id", sa.BigInteger),
    sa.column("action", sa.String),
    sa.column("actor", sa.String),
    sa.column("details", sa.JSON),
)
_rules = sa.table(
    "automation_rules",
    sa.column("id", sa.BigInteger),
    sa.column("name", sa.String),
    sa.column("token_id", sa.BigInteger),
)
_tokens = sa.table("api_tokens", sa.column("id", sa.BigInteger), sa.column("name", sa.String))


def _rewrite_reasons(bind: sa.Connection) -> None:
    for row_id, reason in bind.execute(
        sa.select(_promotions.c.id, _promotions.c.reason).where(_promotions.c.reason.like("Actor(%"))
    ).all():
        if (new := readable_reason(reason)) is not None:
            bind.execute(sa.update(_promotions).where(_promotions.c.id == row_id).values(reason=new))
    # The copies of the move: the event a webhook receiver gets on redelivery, and the audit entry.
    for table, key, column in ((_events, "seq", "data"), (_audit, "id", "details")):
        rows = bind.execute(sa.select(table.c[key], table.c[column]).where(table.c.actor.like("rule:%"))).all()
        for row_id, data in rows:
            if isinstance(data, dict) and (new := readable_reason(data.get("reason"))) is not None:
                bind.execute(sa.update(table).where(table.c[key] == row_id).values({column: {**data, "reason": new}}))


def _backfill_authors(bind: sa.Connection) -> None:
    applied_by: dict[str, str] = {}
    entries = bind.execute(
        sa.select(_audit.c.actor, _audit.c.details)
        .where(_audit.c.action == "automation_rules.applied")
        .order_by(_audit.c.id)
    ).all()
    for actor, details in entries:
        for name in (details or {}).get("rules", []) if isinstance(details, dict) else []:
            applied_by[str(name)] = actor  # the latest apply wins
    token_ids = {name: token_id for token_id, name in bind.execute(sa.select(_tokens.c.id, _tokens.c.name)).all()}
    for rule_id, name in bind.execute(sa.select(_rules.c.id, _rules.c.name)).all():
        token_id = token_ids.get(applied_by.get(name, ""))
        if token_id is not None:
            bind.execute(sa.update(_rules).where(_rules.c.id == rule_id).values(token_id=token_id))


def upgrade() -> None:
    with op.batch_alter_table("automation_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_id", sa.BigInteger(), nullable=True))
    bind = op.get_bind()
    _backfill_authors(bind)
    _rewrite_reasons(bind)


def downgrade() -> None:
    with op.batch_alter_table("automation_rules", schema=None) as batch_op:
        batch_op.drop_column("token_id")
