"""The HTTP protocol `registry serve` runs: request bodies reach the app as the pieces that came off the
socket, in helpings of up to ~1 MiB, and only on the uvicorn code it was written against (the live uploads
in test_uploads.py run through it too)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from registry.api.server import HIGH_WATER_BYTES, HTTP_PROTOCOL, BodyPieces, HttpProtocol, choose, http_protocol


def test_serve_runs_the_protocol_on_the_installed_uvicorn() -> None:
    # Fails when a uvicorn release changes the functions it stands in for or relies on: the server then
    # falls back to uvicorn's own protocol (correct, but the saving is gone) and this module needs a look.
    assert http_protocol() == HTTP_PROTOCOL

    async def app(scope: object, receive: object, send: object) -> None:  # pragma: no cover - never served
        pass

    config = uvicorn.Config(app, http=http_protocol(), lifespan="off")
    config.load()
    assert config.http_protocol_class is HttpProtocol


def test_other_uvicorn_code_gets_uvicorn_own_protocol() -> None:
    def on_body(self: object, body: bytes) -> None:  # pragma: no cover - only its source is read
        pass

    assert choose(HttpToolsProtocol.on_body, RequestResponseCycle.receive) == HTTP_PROTOCOL
    assert choose(on_body, RequestResponseCycle.receive) == "auto"
    assert choose(HttpToolsProtocol.on_body, len) == "auto"  # no source at all


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


@pytest.fixture
def slow_reader() -> Iterator[tuple[str, list[int]]]:
    """uvicorn with HttpProtocol on loopback, serving an app that takes its body slowly and notes the size of
    every ``http.request`` message."""
    sizes: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = 0
        while True:
            await asyncio.sleep(0.02)  # a slow consumer: the socket keeps delivering meanwhile
            message = await receive()
            sizes.append(len(message["body"]))
            body += len(message["body"])
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(body).encode()})

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, http=HttpProtocol, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", sizes
    server.should_exit = True
    thread.join(timeout=10)


def test_reading_pauses_past_the_high_water_mark_not_at_64_kib(slow_reader: tuple[str, list[int]]) -> None:
    url, sizes = slow_reader
    data = os.urandom(8 * 1024 * 1024)
    answer = httpx.post(url, content=data, timeout=30)
    assert answer.text == str(len(data))
    # Before the app has taken any of the body, uvicorn's 64 KiB mark holds: a request answered without
    # reading its body pins no more than under uvicorn (the mark plus the socket read that crossed it).
    assert sizes[0] <= 512 * 1024
    # Once it reads: uvicorn's own protocol would stop at 64 KiB plus one socket read every time.
    assert max(sizes) > 512 * 1024
    # Reading paused once past the mark: a message holds at most the mark plus the read that crossed it.
    assert max(sizes) <= HIGH_WATER_BYTES + 1024 * 1024
