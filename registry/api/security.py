"""Bearer-token authentication and role guards for route handlers."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from registry.db import Database
from registry.domain.auth import Role
from registry.errors import Unauthenticated
from registry.services import tokens
from registry.services.auth import Actor, require


class TokenCache:
    """Recently verified tokens, so a busy client does not cost a token lookup per request.

    Entries live ``ttl`` seconds (``MODELKEEP_AUTH_CACHE_SECONDS``; 0 disables the cache) and never past the
    token's own expiry. A revocation made through this process clears the cache at once; one made elsewhere
    (another replica, `registry token revoke` on the database) takes effect within ``ttl``.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[Actor, float]] = {}

    def get(self, raw: str) -> Actor | None:
        found = self._entries.get(raw)
        if found is None:
            return None
        if found[1] <= time.monotonic():
            self._entries.pop(raw, None)
            return None
        return found[0]

    def put(self, raw: str, actor: Actor, expires_in: float | None) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        ttl = self.ttl if expires_in is None else min(self.ttl, expires_in)
        self._entries[raw] = (actor, time.monotonic() + ttl)

    def clear(self) -> None:
        self._entries.clear()


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: resolve ``Authorization: Bearer <token>`` to an Actor stored on the connection state."""
    header = connection.headers.get("authorization")
    if not header:
        raise Unauthenticated("missing token: send 'Authorization: Bearer <token>' (see `registry token create`)")
    scheme, _sep, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise Unauthenticated("expected 'Authorization: Bearer <token>'")
    cache: TokenCache = connection.app.state.token_cache
    actor = cache.get(raw)
    if actor is None:
        db: Database = connection.app.state.db
        async with db.read(short=True) as session:
            actor, expires_in = await tokens.authenticate_with_expiry(session, raw)
        cache.put(raw, actor, expires_in)
    connection.state.actor = actor


Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Coroutine[Any, Any, None]]

ROLE_GUARDS: dict[Guard, Role] = {}
"""Each guard ``requires`` made, with its role: the OpenAPI schema lists 403 where one of them applies."""


def requires(role: Role) -> Guard:
    """Guard factory: the authenticated actor needs at least ``role``.

    The guard is a coroutine function although it never awaits: Litestar calls those directly, where a
    plain function would be sent through a worker thread on every request.
    """

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        actor: Actor = connection.state.actor
        require(actor, role, action=f"{connection.scope.get('method', 'GET')} {connection.url.path}")

    ROLE_GUARDS[guard] = role
    return guard


def current_actor(request: ASGIConnection[Any, Any, Any, Any]) -> Actor:
    actor: Actor = request.state.actor
    return actor


WRITER = [requires(Role.writer)]
MAINTAINER = [requires(Role.maintainer)]
ADMIN = [requires(Role.admin)]
