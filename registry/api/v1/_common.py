"""Shared pieces of the native API: pagination envelope, request streaming, small renderers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import unquote

import msgspec
from litestar import Request

from registry.errors import InvalidInput

T = TypeVar("T")


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next: str | None = None
    """Pass as ``after`` to get the next page; absent on the last page."""


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def clamp_limit(limit: int, *, maximum: int = 1000) -> int:
    if limit < 1 or limit > maximum:
        raise InvalidInput(f"limit must be between 1 and {maximum}", field="limit")
    return limit


def path_param(value: str) -> str:
    """Litestar's ``{x:path}`` parameters start with the separating '/'; drop exactly that one."""
    return value[1:] if value.startswith("/") else value


def raw_tail(request: Request[Any, Any, Any], marker: str, parsed: str) -> str:
    """The part of the *undecoded* request path after ``marker``, percent-decoded once.

    Routers normalise paths (``//`` collapses), which would turn an encoded absolute path such as
    ``%2Fetc/passwd`` into a harmless-looking relative one; validating the raw form refuses it instead."""
    raw = request.scope.get("raw_path") or b""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    index = text.find(marker)
    if index < 0:
        return path_param(parsed)
    return unquote(text[index + len(marker) :])
