"""How uvicorn hands request bodies to the app: the pieces as they came off the socket, in larger helpings.

Since 0.42, uvicorn's httptools protocol appends every body piece to a per-request ``bytearray`` and makes
``bytes`` of it for each ``http.request`` message (two more copies of every uploaded byte, allocated and
faulted in on the event loop, the thread that also parses, schedules and answers), and it pauses reading
the socket as soon as 64 KiB wait, so a large upload stops and starts every 256 KiB socket read.
:class:`HttpProtocol` keeps the pieces in a list instead: a message carries the piece itself when one
arrived since the last ``receive()`` and one joined copy when several did, and once the app reads the
body, reading pauses only past 1 MiB. Interleaved against plain uvicorn on 1 GiB uploads, the pieces took
the server's CPU from 1.39 to 1.27 s/GB and the 1 MiB mark to 1.23, uploads going from 864 to 922 to
979 MB/s (docs/benchmarks.md). Measured again against uvicorn 0.55 and Granian 2.8 (the maintained
alternative; bench/results/upload-protocol-ab.md): 2.60 s/GB against 3.00 for plain uvicorn and 2.78 for
Granian, a 13% saving no other server gave, so it stays. Parsing, keep-alive, pipelining and the rest are
uvicorn's own.

It replaces one method of uvicorn's protocol and leans on how its request cycle holds the body, neither of
which is public: :func:`http_protocol` fingerprints those two functions and picks uvicorn's own protocol
unless they are the ones this was written against (uvicorn 0.42 to 0.54), so a uvicorn release that
changes them costs the saving, never a request. A hand-run uvicorn takes it with
``--http registry.api.server:HttpProtocol``.

``registry serve --access-log`` serves :func:`access_logged_app`: the app behind :class:`AccessLog`, one
line per request with its duration (uvicorn's own access line has none).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import textwrap
import time
from collections.abc import Callable
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

HTTP_PROTOCOL = "registry.api.server:HttpProtocol"
ACCESS_LOGGED_APP = "registry.api.server:access_logged_app"
ACCESS_LOGGER = "registry.access"
REQUEST_ID = b"x-request-id"  # set on every response by the app (registry.api.app)
HIGH_WATER_BYTES = 1024 * 1024  # body bytes waiting for the app before reading the socket pauses

# sha256 (first 16 hex digits) of the dedented source of the uvicorn functions this module stands in for or
# relies on, as reviewed: HttpToolsProtocol.on_body (unchanged from 0.41 to 0.54) and
# RequestResponseCycle.receive (the bytearray-to-bytes form, 0.42 to 0.54).
REVIEWED = {"on_body": "415b4cef19fba083", "receive": "817bd782de41bd0a"}


def fingerprint(function: Callable[..., Any]) -> str:
    return hashlib.sha256(textwrap.dedent(inspect.getsource(function)).encode()).hexdigest()[:16]


@functools.cache
def http_protocol() -> str:
    """What ``registry serve`` passes as uvicorn's ``http``: :class:`HttpProtocol` where uvicorn's code is
    the reviewed one, else ``auto`` (uvicorn's own choice)."""
    return choose(HttpToolsProtocol.on_body, RequestResponseCycle.receive)


def choose(on_body: Callable[..., Any], receive: Callable[..., Any]) -> str:
    try:
        seen = {"on_body": fingerprint(on_body), "receive": fingerprint(receive)}
    except (OSError, TypeError):  # no source to read: do not guess
        return "auto"
    return HTTP_PROTOCOL if seen == REVIEWED else "auto"


class BodyPieces:
    """Stands in for the cycle's ``bytearray``: ``+=`` keeps a reference, ``bytes()`` joins at most once."""

    __slots__ = ("high_water", "parts", "size")

    def __init__(self, high_water: int = HIGH_WATER_BYTES) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.high_water = high_water  # reading the socket pauses once more than this waits

    def __iadd__(self, piece: bytes) -> BodyPieces:
        self.parts.append(piece)
        self.size += len(piece)
        return self

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        if len(self.parts) == 1:
            return self.parts[0]  # httptools made this object for us: no copy needed
        return b"".join(self.parts)


class HttpProtocol(HttpToolsProtocol):
    # The request whose body this connection last handed over: until the app has taken a first message of a
    # body, uvicorn's own 64 KiB mark holds, so a request answered without reading its body (401, 413, ...)
    # pins no more memory than under uvicorn.
    _reading: Any = None

    def on_body(self, body: bytes) -> None:
        # uvicorn's on_body, with the body kept as pieces and a higher mark once the app reads the body.
        cycle: Any = self.cycle  # its ``body`` is declared a bytearray
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        # uvicorn starts each request, and each receive(), with an empty bytearray (only this method fills
        # it): swap in a list of pieces once per message.
        if type(cycle.body) is bytearray and not cycle.body:
            cycle.body = BodyPieces(HIGH_WATER_BYTES if self._reading is cycle else HIGH_WATER_LIMIT)
            self._reading = cycle
        cycle.body += body
        if len(cycle.body) > cycle.body.high_water:
            self.flow.pause_reading()
        cycle.message_event.set()


class AccessLog:
    """ASGI middleware: after each HTTP request, one INFO line ``METHOD PATH STATUS DURATION ms`` on
    ``registry.access``. The path is logged as sent (percent-encoded, no query string, which may carry
    names but is not needed to follow traffic), with anything unprintable escaped, so one request is one line.
    The duration runs until the app has sent its last byte; the status is ``-`` when none was sent.
    """

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:  # a str enum: equal to the server's plain "http"
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None
        rid: str | None = None

        async def sending(message: Message) -> None:
            nonlocal status, rid
            if message["type"] == "http.response.start":
                status = int(message["status"])
                rid = next((v.decode("latin-1") for k, v in message.get("headers", ()) if k == REQUEST_ID), None)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            took = (time.perf_counter() - started) * 1000
            self.logger.info(
                "%s %s %s %.1f ms",
                scope["method"],
                logged_path(scope),
                status or "-",
                took,
                extra={"request_id": rid},
            )


def logged_path(scope: HTTPScope) -> str:
    raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    return "".join(chr(b) if 0x21 <= b <= 0x7E else f"%{b:02X}" for b in bytes(raw))


def access_logged_app() -> ASGIApp:
    """``registry.api.app:from_env`` with an access log (factory for ``registry serve --access-log``)."""
    from registry.api.app import from_env

    app = from_env()
    # Asked for explicitly: shown whatever MODELKEEP_LOG_LEVEL says for the rest of Modelkeep's lines.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    return AccessLog(app)
