"""monitoring: baselines, hourly production profiles, monitor specs, drift checks, late labels

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import registry.domain.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_specs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name=op.f("fk_monitor_specs_model_id_registered_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_specs")),
        sa.UniqueConstraint("model_id", name=op.f("uq_monitor_specs_model_id")),
    )
    op.create_table(
        "monitor_baselines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("model_version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("profile", sa.LargeBinary(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("options_digest", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_monitor_baselines_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_baselines")),
        sa.UniqueConstraint("model_version_id", name=op.f("uq_monitor_baselines_model_version_id")),
    )
    op.create_table(
        "monitor_buckets",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("model_version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("bucket_start", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("profile", sa.LargeBinary(), nullable=False),
        sa.Column("sample_digest", sa.String(length=64), nullable=True),
        sa.Column("batches", sa.BigInteger(), nullable=False),
        sa.Column("created_at", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_monitor_buckets_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_buckets")),
        sa.UniqueConstraint(
            "model_version_id", "bucket_start", name=op.f("uq_monitor_buckets_model_version_id_bucket_start")
        ),
    )
    op.create_table(
        "monitor_checks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("model_version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("alias", sa.String(length=128), nullable=True),
        sa.Column("window_start", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("window_end", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("reference_rows", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("drift_detected", sa.Boolean(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("spec_digest", sa.String(length=64), nullable=True),
        sa.Column("alert", sa.String(length=32), nullable=True),
        sa.Column("report_status", sa.String(length=16), nullable=True),
        sa.Column("report_digest", sa.String(length=64), nullable=True),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("created_at", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name=op.f("fk_monitor_checks_model_id_registered_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_monitor_checks_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_checks")),
    )
    with op.batch_alter_table("monitor_checks", schema=None) as batch_op:
        batch_op.create_index("ix_monitor_checks_model_alias", ["model_id", "alias", "id"], unique=False)
        batch_op.create_index("ix_monitor_checks_version", ["model_version_id", "id"], unique=False)

    op.create_table(
        "monitor_labels",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("model_version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("row_id", sa.String(length=256), nullable=False),
        sa.Column("label", sa.JSON(), nullable=False),
        sa.Column("created_at", registry.domain.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_monitor_labels_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_labels")),
        sa.UniqueConstraint("model_version_id", "row_id", name=op.f("uq_monitor_labels_model_version_id_row_id")),
    )


def downgrade() -> None:
    op.drop_table("monitor_labels")
    with op.batch_alter_table("monitor_checks", schema=None) as batch_op:
        batch_op.drop_index("ix_monitor_checks_version")
        batch_op.drop_index("ix_monitor_checks_model_alias")

    op.drop_table("monitor_checks")
    op.drop_table("monitor_buckets")
    op.drop_table("monitor_baselines")
    op.drop_table("monitor_specs")
