"""One small error hierarchy, mapped once to HTTP (problem+json), MLflow error codes and CLI exit codes.

Services raise these; nothing else decides how a failure looks to a client.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RegistryError(Exception):
    """Root of every expected failure. ``code`` is stable and machine-readable."""

    status: ClassVar[int] = 400
    kind: ClassVar[str] = "invalid-input"
    code: str = "invalid_input"

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra = extra


class InvalidInput(RegistryError):
    status = 400
    kind = "invalid-input"
    code = "invalid_input"


class Unauthenticated(RegistryError):
    status = 401
    kind = "unauthenticated"
    code = "unauthenticated"


class Forbidden(RegistryError):
    status = 403
    kind = "forbidden"
    code = "forbidden"


class NotFound(RegistryError):
    status = 404
    kind = "not-found"
    code = "not_found"


class Conflict(RegistryError):
    status = 409
    kind = "conflict"
    code = "conflict"


class AlreadyExists(Conflict):
    code = "already_exists"


class PreconditionFailed(RegistryError):
    status = 412
    kind = "precondition-failed"
    code = "precondition_failed"


class PayloadTooLarge(RegistryError):
    status = 413
    kind = "payload-too-large"
    code = "payload_too_large"


class Unavailable(RegistryError):
    """A dependency (the database) cannot answer now; trying again later may work."""

    status = 503
    kind = "unavailable"
    code = "unavailable"
