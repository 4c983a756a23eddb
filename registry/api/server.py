"""How uvicorn hands request bodies to the app: the pieces as they came off the socket, not copied twice.

uvicorn's httptools protocol appends every body piece to a per-request ``bytearray`` and makes ``bytes`` of
it for each ``http.request`` message: two copies of every uploaded byte on the event loop, which is the
thread that also parses, schedules and answers. On a 1 GB upload those two copies were ~12% of the server's
CPU. :class:`HttpProtocol` keeps the pieces in a list instead; a message carries the piece itself when
one arrived since the last ``receive()`` (the usual case: uvicorn pauses reading as soon as 64 KiB wait)
and one joined copy when several did. Everything else (parsing, flow control, keep-alive, pipelining) is
uvicorn's own.

``registry serve`` selects it by import string (``http=HTTP_PROTOCOL``); ``uvicorn --http
registry.api.server:HttpProtocol`` does the same for a hand-run server.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HTTP_PROTOCOL = "registry.api.server:HttpProtocol"


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
        if type(cycle.body) is not BodyPieces:
            cycle.body = BodyPieces()
        super().on_body(body)
