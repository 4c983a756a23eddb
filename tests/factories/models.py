"""Model and version factories."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.models import ModelVersion, RegisteredModel
from registry.services import models, versions
from registry.services.artifacts import ManifestEntry
from tests.factories.artifacts import create_blob
from tests.factories.runs import WRITER


async def create_model(session: AsyncSession, **overrides: Any) -> RegisteredModel:
    name = overrides.pop("name", f"model-{uuid.uuid4().hex[:10]}")
    return await models.create(session, name=name, actor=overrides.pop("actor", WRITER), **overrides)


async def create_version(
    session: AsyncSession, *, model: RegisteredModel | None = None, **overrides: Any
) -> ModelVersion:
    model = model or await create_model(session)
    if "entries" not in overrides and "run_id" not in overrides:
        blob = await create_blob(session, uuid.uuid4().bytes)
        overrides["entries"] = [ManifestEntry(path="model.bin", sha256=blob.sha256, size=blob.size)]
    return await versions.create(session, model_name=model.name, actor=overrides.pop("actor", WRITER), **overrides)
