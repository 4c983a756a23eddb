"""monitoring: production row ids (late labels join on them), the samples a check's report is built from

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import registry.domain.base

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_rows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("model_version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("row_id", sa.String(length=256), nullable=False),
        sa.Column("bucket_start", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("prediction", sa.JSON(), nullable=True),
        sa.Column("created_at", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_monitor_rows_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_rows")),
        sa.UniqueConstraint("model_version_id", "row_id", name=op.f("uq_monitor_rows_model_version_id_row_id")),
    )
    with op.batch_alter_table("monitor_rows", schema=None) as batch_op:
        batch_op.create_index("ix_monitor_rows_version_bucket", ["model_version_id", "bucket_start"], unique=False)
    with op.batch_alter_table("monitor_checks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("report_samples", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("monitor_checks", schema=None) as batch_op:
        batch_op.drop_column("report_samples")
    with op.batch_alter_table("monitor_rows", schema=None) as batch_op:
        batch_op.drop_index("ix_monitor_rows_version_bucket")
    op.drop_table("monitor_rows")
