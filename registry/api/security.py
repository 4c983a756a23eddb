"""Bearer-token authentication and role guards for route handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from registry.db import Database
from registry.domain.auth import Role
from registry.errors import Unauthenticated
from registry.services import tokens
from registry.services.auth import Actor, require


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: resolve ``Authorization: Bearer <token>`` to an Actor stored on the connection state."""
    header = connection.headers.get("authorization")
    if not header:
        raise Unauthenticated("missing token: send 'Authorization: Bearer <token>' (see `registry token create`)")
    scheme, _sep, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise Unauthenticated("expected 'Authorization: Bearer <token>'")
    db: Database = connection.app.state.db
    async with db.read() as session:
        connection.state.actor = await tokens.authenticate(session, raw.strip())


def requires(role: Role) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    """Guard factory: the authenticated actor needs at least ``role``."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        actor: Actor = connection.state.actor
        require(actor, role, action=f"{connection.scope.get('method', 'GET')} {connection.url.path}")

    return guard


def current_actor(request: ASGIConnection[Any, Any, Any, Any]) -> Actor:
    actor: Actor = request.state.actor
    return actor


WRITER = [requires(Role.writer)]
MAINTAINER = [requires(Role.maintainer)]
ADMIN = [requires(Role.admin)]
