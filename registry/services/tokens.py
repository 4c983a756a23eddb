"""API tokens: random secrets shown once, stored as sha256 digests, findable by a public prefix.

A token looks like ``mk_<prefix>_<secret>``. The secret has 256 bits of entropy, so a plain sha256 is a
sufficient hash (slow password hashes protect low-entropy secrets; they would only add latency here).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.domain.auth import ApiToken, Role
from registry.domain.base import utcnow
from registry.errors import AlreadyExists, InvalidInput, NotFound, Unauthenticated
from registry.services import audit, events, names
from registry.services.auth import Actor

TOKEN_PREFIX = "mk_"


@dataclass(frozen=True, slots=True)
class NewToken:
    token: ApiToken
    secret: str
    """The full token text; never stored, shown once."""


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def parse_role(value: str) -> Role:
    try:
        return Role[value]
    except KeyError:
        raise InvalidInput(
            f"unknown role {value!r}: use one of {', '.join(r.name for r in Role)}", field="role"
        ) from None


async def count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(ApiToken)) or 0)


async def create(
    session: AsyncSession,
    *,
    name: str,
    role: Role,
    actor: Actor,
    expires_in: timedelta | None = None,
) -> NewToken:
    """Create a token. Raises AlreadyExists if the name is taken. Audited and evented."""
    names.label(name, what="token name", field="name", max_length=128)
    if await session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise AlreadyExists(f"a token named {name!r} already exists", field="name")
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInput("expiry must be in the future", field="expires_in")
    prefix = secrets.token_hex(6)
    secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        name=name,
        role=role.name,
        prefix=prefix,
        token_hash=_digest(secret),
        created_by=actor.name,
        expires_at=utcnow() + expires_in if expires_in else None,
    )
    session.add(token)
    await session.flush()
    details = {"role": role.name, "expires_at": token.expires_at.isoformat() if token.expires_at else None}
    await audit.log(session, action="token.created", actor=actor.name, target=name, details=details)
    await events.record(
        session,
        type="token.created",
        subject=f"tokens/{token.id}",
        actor=actor.name,
        data={"name": name, **details},
    )
    return NewToken(token=token, secret=secret)


async def list_tokens(session: AsyncSession) -> list[ApiToken]:
    return list(await session.scalars(select(ApiToken).order_by(ApiToken.id)))


async def revoke(session: AsyncSession, *, name: str, actor: Actor) -> ApiToken:
    """Revoke by name (idempotent). Raises NotFound."""
    token = await session.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None:
        raise NotFound(f"no token named {name!r}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        await audit.log(session, action="token.revoked", actor=actor.name, target=name)
        await events.record(
            session,
            type="token.revoked",
            subject=f"tokens/{token.id}",
            actor=actor.name,
            data={"name": name},
        )
        await session.flush()
    return token


async def authenticate(session: AsyncSession, raw: str, *, now: datetime | None = None) -> Actor:
    """Resolve a bearer token to its actor. Raises Unauthenticated for unknown/revoked/expired tokens."""
    return (await authenticate_with_expiry(session, raw, now=now))[0]


async def authenticate_with_expiry(
    session: AsyncSession, raw: str, *, now: datetime | None = None
) -> tuple[Actor, float | None]:
    """Like ``authenticate``, plus the seconds until the token expires (None: never)."""
    parts = raw.split("_")
    if len(parts) < 3 or not raw.startswith(TOKEN_PREFIX):
        raise Unauthenticated("malformed token: expected mk_<prefix>_<secret>")
    token = await session.scalar(select(ApiToken).where(ApiToken.prefix == parts[1]))
    if token is None or not hmac.compare_digest(token.token_hash, _digest(raw)):
        raise Unauthenticated("unknown token")
    return _still_valid(token, now)


async def by_id(
    session: AsyncSession, *, token_id: int, now: datetime | None = None
) -> tuple[ApiToken, Actor, float | None]:
    """A token that is still valid, by id (a signed-in web session names its token this way), with its actor
    and the seconds until it expires. Raises Unauthenticated for an unknown, revoked or expired token."""
    token = await session.get(ApiToken, token_id)
    if token is None:
        raise Unauthenticated("unknown token")
    actor, expires_in = _still_valid(token, now)
    return token, actor, expires_in


def _still_valid(token: ApiToken, now: datetime | None) -> tuple[Actor, float | None]:
    if token.revoked_at is not None:
        raise Unauthenticated(f"token {token.name!r} was revoked")
    current = now or utcnow()
    if token.expires_at is not None and token.expires_at <= current:
        raise Unauthenticated(f"token {token.name!r} expired at {token.expires_at.isoformat()}")
    expires_in = (token.expires_at - current).total_seconds() if token.expires_at is not None else None
    return Actor(name=token.name, role=Role[token.role], token_id=token.id), expires_in


async def bootstrap_admin(session: AsyncSession, *, name: str = "admin") -> NewToken | None:
    """First start: with no tokens at all, create an admin token (the caller prints it once)."""
    if await count(session) > 0:
        return None
    return await create(session, name=name, role=Role.admin, actor=Actor(name="bootstrap", role=Role.admin))
