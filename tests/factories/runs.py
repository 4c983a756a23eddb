"""Run factories: build missing parents, flush, return the row."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.auth import Role
from registry.domain.runs import Run
from registry.services import runs
from registry.services.auth import Actor

WRITER = Actor(name="factory", role=Role.writer)


async def create_run(session: AsyncSession, **overrides: Any) -> Run:
    return await runs.create(session, actor=overrides.pop("actor", WRITER), **overrides)
