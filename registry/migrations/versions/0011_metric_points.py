"""latest_metrics.points: how many points each metric's history holds (kept by every log-batch)

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("latest_metrics", schema=None) as batch_op:
        batch_op.add_column(sa.Column("points", sa.BigInteger(), server_default="0", nullable=False))
    op.execute(
        "UPDATE latest_metrics SET points = (SELECT count(*) FROM metrics"
        " WHERE metrics.run_id = latest_metrics.run_id AND metrics.key = latest_metrics.key)"
    )


def downgrade() -> None:
    with op.batch_alter_table("latest_metrics", schema=None) as batch_op:
        batch_op.drop_column("points")
