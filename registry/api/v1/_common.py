"""Shared pieces of the native API: pagination envelope, request streaming, small renderers."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from urllib.parse import unquote

import msgspec
from litestar import Request
from litestar.params import Parameter

from registry.api.errors import NESTED_TOO_DEEP
from registry.errors import InvalidInput, NotFound

T = TypeVar("T")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
"""An integer bound for a BIGINT column: out-of-range values are refused with 400 while decoding the body,
never passed on to overflow in the database driver."""
NonNegativeInt64 = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]


def int64_or_none(value: int) -> int | None:
    """``value`` if a BIGINT column can hold it, else ``None`` (an id out of range names nothing: 404)."""
    return value if INT64_MIN <= value <= INT64_MAX else None


QueryInt64 = Annotated[int, Parameter(ge=INT64_MIN, le=INT64_MAX)]
"""A query parameter compared with a BIGINT column (``after``, ``experiment_id``): 400 when out of range."""
Offset = Annotated[int, Parameter(ge=0, le=INT64_MAX)]
"""A query ``offset``: PostgreSQL refuses a negative one and SQLite ignores it, so both get 400 here."""

MIN_EPOCH_MS, MAX_EPOCH_MS = -62_135_596_800_000, 253_402_300_799_999
EpochMs = Annotated[int, msgspec.Meta(ge=MIN_EPOCH_MS, le=MAX_EPOCH_MS)]
"""Epoch milliseconds that become a stored date (run start and end): years 1 to 9999, what a datetime holds."""


def id_or_404(value: int, what: str) -> int:
    """An integer id from a path; one no BIGINT can hold names nothing, so it is NotFound, as any unknown id."""
    if int64_or_none(value) is None:
        raise NotFound(f"{what} {value} does not exist")
    return value


# A JSON ``\u0000`` escape: preceded by an even number of backslashes (``\\u0000`` is the text "\u0000").
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def check_json_text(raw: bytes) -> None:
    """Refuse a JSON body whose strings hold U+0000 (InvalidInput).

    PostgreSQL cannot store NUL in text or jsonb (the driver fails mid-statement) while SQLite stores it;
    refusing it before decoding gives one answer on both. Raw control bytes need no check: JSON forbids
    them unescaped and the decoder refuses them."""
    if b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
        raise InvalidInput("strings may not contain the NUL character (U+0000)", code="nul_character")


async def refuse_nul(request: Request[Any, Any, Any]) -> None:
    """Hook before every handler: refuse U+0000 in the decoded path or query string (InvalidInput), for the
    reason given above."""
    path = request.scope.get("path", "")
    query = request.scope.get("query_string", b"")
    if "\x00" in path or b"%00" in query or b"\x00" in query:
        raise InvalidInput("the path or query string contains the NUL character (U+0000)", code="nul_character")


class ApiRequest(Request[Any, Any, Any]):
    """The request class of every route: JSON bodies are checked for NUL, and a body nested past the
    decoder's recursion limit is a 400 like any malformed body, not a RecursionError."""

    async def json(self) -> Any:
        check_json_text(await self.body())
        try:
            return await super().json()
        except RecursionError:
            raise InvalidInput(NESTED_TOO_DEEP, code="nested_too_deep") from None


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
