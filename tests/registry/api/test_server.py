"""The HTTP protocol `registry serve` runs: request bodies reach the app as the pieces that came off the
socket, not copied into and out of a bytearray (the live uploads in test_uploads.py run through it)."""

from __future__ import annotations

import os

import uvicorn

from registry.api.server import HTTP_PROTOCOL, BodyPieces, HttpProtocol, http_protocol


def test_serve_runs_the_protocol_on_the_installed_uvicorn() -> None:
    # Fails when a uvicorn release changes how its request cycle holds the body: the server then falls
    # back to uvicorn's own protocol (correct, but the saving is gone), and this module needs a look.
    assert http_protocol() == HTTP_PROTOCOL

    async def app(scope: object, receive: object, send: object) -> None:  # pragma: no cover - never served
        pass

    config = uvicorn.Config(app, http=http_protocol(), lifespan="off")
    config.load()
    assert config.http_protocol_class is HttpProtocol


def test_one_piece_is_handed_over_as_it_is() -> None:
    piece = os.urandom(70_000)
    pieces = BodyPieces()
    pieces += piece
    assert len(pieces) == 70_000 and bytes(pieces) is piece


def test_several_pieces_are_joined_once_in_order() -> None:
    pieces = BodyPieces()
    for part in (b"ab", b"", b"cde"):
        pieces += part
    assert len(pieces) == 5 and bytes(pieces) == b"abcde"
