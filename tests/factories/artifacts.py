"""Blob and run-file factories (bytes go to a real blob store when one is given)."""

from __future__ import annotations

import hashlib

from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.artifacts import RunFile
from registry.services import artifacts
from registry.services.artifacts import ManifestEntry


async def create_blob(session: AsyncSession, content: bytes) -> ManifestEntry:
    sha = hashlib.sha256(content).hexdigest()
    await artifacts.record_blob(session, sha256=sha, size=len(content))
    return ManifestEntry(path="", sha256=sha, size=len(content))


async def create_run_file(session: AsyncSession, *, run_id: str, path: str, content: bytes) -> RunFile:
    blob = await create_blob(session, content)
    return await artifacts.put_run_file(session, run_id=run_id, path=path, sha256=blob.sha256, size=blob.size)
