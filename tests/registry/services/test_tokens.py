from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.auth import ApiToken, AuditEntry, Role
from registry.domain.base import utcnow
from registry.errors import AlreadyExists, Unauthenticated
from registry.services import tokens
from registry.services.auth import Actor
from tests.conftest import unique

ADMIN = Actor(name="root", role=Role.admin)


async def test_token_is_stored_hashed_and_authenticates(session: AsyncSession) -> None:
    name = unique("tok")
    new = await tokens.create(session, name=name, role=Role.writer, actor=ADMIN)
    row = await session.scalar(select(ApiToken).where(ApiToken.name == name))
    assert row is not None and new.secret not in (row.token_hash, row.prefix)
    secret_part = new.secret.split("_", 2)[2]
    assert len(secret_part) >= 40 and secret_part not in row.token_hash
    actor = await tokens.authenticate(session, new.secret)
    assert (actor.name, actor.role) == (name, Role.writer)
    with pytest.raises(Unauthenticated):
        await tokens.authenticate(session, new.secret[:-1] + ("A" if new.secret[-1] != "A" else "B"))
    with pytest.raises(AlreadyExists):
        await tokens.create(session, name=name, role=Role.reader, actor=ADMIN)


async def test_revoked_and_expired_tokens_fail(session: AsyncSession) -> None:
    revoked = await tokens.create(session, name=unique("tok"), role=Role.reader, actor=ADMIN)
    await tokens.revoke(session, name=revoked.token.name, actor=ADMIN)
    with pytest.raises(Unauthenticated, match="revoked"):
        await tokens.authenticate(session, revoked.secret)
    expiring = await tokens.create(
        session, name=unique("tok"), role=Role.reader, actor=ADMIN, expires_in=timedelta(hours=1)
    )
    await tokens.authenticate(session, expiring.secret)
    with pytest.raises(Unauthenticated, match="expired"):
        await tokens.authenticate(session, expiring.secret, now=utcnow() + timedelta(hours=2))
    actions = (
        await session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.target.in_([revoked.token.name, expiring.token.name]))
            .order_by(AuditEntry.id)
        )
    ).all()
    assert actions == ["token.created", "token.revoked", "token.created"]


async def test_malformed_tokens(session: AsyncSession) -> None:
    for raw in ("", "nope", "mk_", "Bearer x"):
        with pytest.raises(Unauthenticated):
            await tokens.authenticate(session, raw)
