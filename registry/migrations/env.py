"""Alembic environment: always handed a live connection by ``registry.migrations.upgrade``."""

from __future__ import annotations

from alembic import context

import automations.domain  # noqa: F401  (its tables live on the same metadata)
import monitoring.domain  # noqa: F401  (so do these)
from registry.domain import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `registry db upgrade` (it supplies the connection)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
