"""Token management (admin only)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post

from registry.api.security import ADMIN
from registry.api.v1._common import iso
from registry.db import Database
from registry.domain.auth import ApiToken
from registry.services import tokens
from registry.services.auth import Actor

MAX_EXPIRY_DAYS = 36_525
"""A century: beyond it an expiry means nothing, and a timedelta or date overflows not far past it."""


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    role: str = "reader"
    expires_in_days: Annotated[float, msgspec.Meta(le=MAX_EXPIRY_DAYS)] | None = None


class TokenOut(msgspec.Struct):
    id: int
    name: str
    role: str
    prefix: str
    created_by: str
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    token: str | None = None
    """Only in the response to create; never retrievable again."""


def render(token: ApiToken, secret: str | None = None) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        role=token.role,
        prefix=token.prefix,
        created_by=token.created_by,
        created_at=iso(token.created_at),
        expires_at=iso(token.expires_at),
        revoked_at=iso(token.revoked_at),
        token=secret,
    )


class TokensController(Controller):
    path = "/tokens"
    guards = ADMIN

    @post("/", status_code=201)
    async def create_token(self, data: TokenIn, db: Database, actor: Actor) -> TokenOut:
        expires = timedelta(days=data.expires_in_days) if data.expires_in_days is not None else None
        async with db.write() as session:
            new = await tokens.create(
                session, name=data.name, role=tokens.parse_role(data.role), actor=actor, expires_in=expires
            )
            return render(new.token, new.secret)

    @get("/")
    async def list_tokens(self, db: Database) -> list[TokenOut]:
        async with db.read() as session:
            return [render(t) for t in await tokens.list_tokens(session)]

    @delete("/{name:str}", status_code=200)
    async def revoke_token(self, name: str, db: Database, actor: Actor, request: Request[Any, Any, Any]) -> TokenOut:
        async with db.write() as session:
            revoked = render(await tokens.revoke(session, name=name, actor=actor))
        request.app.state.token_cache.clear()  # revocation is immediate in this process
        return revoked
