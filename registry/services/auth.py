"""Who is acting, and what their role allows. Role checks live here so every face applies the same ones."""

from __future__ import annotations

from dataclasses import dataclass

from registry.domain.auth import Role
from registry.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    role: Role
    token_id: int | None = None

    def allows(self, role: Role) -> bool:
        return self.role >= role


SYSTEM = Actor(name="system", role=Role.admin)


def require(actor: Actor, role: Role, *, action: str) -> None:
    """Raise Forbidden unless ``actor`` holds at least ``role``."""
    if not actor.allows(role):
        raise Forbidden(
            f"{action} needs the {role.name} role; token {actor.name!r} has {actor.role.name}",
            required_role=role.name,
        )
