"""How uvicorn hands request bodies to the app: the pieces as they came off the socket, not copied twice.

Since 0.42, uvicorn's httptools protocol appends every body piece to a per-request ``bytearray`` and makes
``bytes`` of it for each ``http.request`` message: two more copies of every uploaded byte, allocated and
faulted in on the event loop, the thread that also parses, schedules and answers. :class:`HttpProtocol`
keeps the pieces in a list instead; a message carries the piece itself when one arrived since the last
``receive()`` (the usual case: uvicorn pauses reading as soon as 64 KiB wait) and one joined copy when
several did. On 1 GiB uploads that took the server from ~1.4 to ~1.2 CPU-s per GB (docs/benchmarks.md).
Everything else (parsing, flow control, keep-alive, pipelining) is uvicorn's own.

It leans on how uvicorn's request cycle holds the body, which is not public: :func:`http_protocol` checks
that shape and picks uvicorn's own protocol where it differs (uvicorn before 0.42 copies nothing anyway),
so a uvicorn release that changes it costs the saving, never a request.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

HTTP_PROTOCOL = "registry.api.server:HttpProtocol"


@functools.cache
def http_protocol() -> str:
    """What ``registry serve`` passes as uvicorn's ``http``: :class:`HttpProtocol` where uvicorn's request
    cycle has the shape it was written for (a ``bytearray`` body turned into ``bytes`` per message), else
    uvicorn's own choice."""
    try:
        source = inspect.getsource(RequestResponseCycle)
    except (OSError, TypeError):  # no source shipped: do not guess
        return "auto"
    if "self.body = bytearray()" in source and '"body": bytes(self.body)' in source:
        return HTTP_PROTOCOL
    return "auto"


class BodyPieces:
    """Stands in for the cycle's ``bytearray``: ``+=`` keeps a reference, ``bytes()`` joins at most once."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

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
    def on_body(self, body: bytes) -> None:
        cycle: Any = self.cycle  # its ``body`` is declared a bytearray
        # uvicorn starts each request, and each receive(), with an empty bytearray (only this method fills
        # it): swap in a list of pieces once per message.
        if type(cycle.body) is bytearray and not cycle.body:
            cycle.body = BodyPieces()
        super().on_body(body)
