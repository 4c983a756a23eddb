"""inbound hook messages (webhook-id per trigger), so a replayed signed request queues no second job

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import registry.domain.base

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hook_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("trigger_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.String(length=256), nullable=False),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("received_at", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["automation_jobs.id"], name=op.f("fk_hook_messages_job_id_automation_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["trigger_id"],
            ["hook_triggers.id"],
            name=op.f("fk_hook_messages_trigger_id_hook_triggers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hook_messages")),
        sa.UniqueConstraint("trigger_id", "message_id", name=op.f("uq_hook_messages_trigger_id_message_id")),
    )
    with op.batch_alter_table("hook_messages", schema=None) as batch_op:
        batch_op.create_index("ix_hook_messages_received_at", ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hook_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_hook_messages_received_at")

    op.drop_table("hook_messages")
