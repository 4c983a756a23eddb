"""gate policies and gate runs

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import registry.domain.base

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gate_policies",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("alias", sa.String(length=128), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("spec_digest", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name=op.f("fk_gate_policies_model_id_registered_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_policies")),
        sa.UniqueConstraint("model_id", "alias", name=op.f("uq_gate_policies_model_id_alias")),
    )
    op.create_table(
        "gate_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("baseline_version", sa.BigInteger(), nullable=True),
        sa.Column("spec_digest", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("data_digest", sa.String(length=64), nullable=False),
        sa.Column("testset_digest", sa.String(length=64), nullable=False),
        sa.Column("reveal", sa.BigInteger(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("commit_sha", sa.String(length=64), nullable=True),
        sa.Column("origin", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("created_at", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name=op.f("fk_gate_runs_model_id_registered_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_runs")),
    )
    with op.batch_alter_table("gate_runs", schema=None) as batch_op:
        batch_op.create_index("ix_gate_runs_model_version", ["model_id", "version"], unique=False)
        batch_op.create_index("ix_gate_runs_testset", ["testset_digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gate_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_gate_runs_testset")
        batch_op.drop_index("ix_gate_runs_model_version")

    op.drop_table("gate_runs")
    op.drop_table("gate_policies")
