"""The dispatcher's HTTP/1.1 sender against real loopback servers that answer in the ways receivers do: keep-alive
reuse, chunked and over-long bodies, interim responses, idle connections the server closed, per-destination
connection limits, TLS verified against the URL's name while connecting to a pinned address."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from automations.sender import EXCERPT_BYTES, ConnectFailed, Reply, SendError, StreamSender, Target
from tests.automations.receivers import Receiver

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]
"""Answers one request (its body already read); returns whether to keep the connection open."""


class RawServer:
    """An HTTP/1.1 server on loopback that reads each request and lets ``answer`` write the response bytes."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.in_flight = self.most_in_flight = 0
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                self.requests.append(head + await reader.readexactly(length))
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                try:
                    keep = await self.answer(reader, writer, len(self.requests))
                finally:
                    self.in_flight -= 1
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(answer: Handler, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[RawServer]:
    made = RawServer(answer)
    server = await asyncio.start_server(made._handle, "127.0.0.1", 0, ssl=tls)
    made.port = server.sockets[0].getsockname()[1]
    try:
        yield made
    finally:
        server.close()


def reply(raw: bytes, *, keep: bool = True) -> Handler:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(raw)
        return keep

    return answer


def target(server: RawServer, path: str = "/hook", *, host: str = "127.0.0.1", scheme: str = "http") -> Target:
    return Target.of(f"{scheme}://{host}:{server.port}{path}", ("127.0.0.1",) if host != "127.0.0.1" else ())


HEADERS = {"content-type": "application/json", "webhook-id": "evt_1"}
SenderClass = type[StreamSender]


@pytest.fixture
def make() -> SenderClass:
    return StreamSender


async def test_keep_alive_connections_are_reused(make: SenderClass) -> None:
    async with serving(reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")) as server:
        sender = make()
        for _ in range(5):
            got = await sender.post(target(server), HEADERS, b"{}")
            assert (got.status, got.excerpt) == (200, b"ok")
        await sender.aclose()
    assert server.connections == 1 and len(server.requests) == 5
    first = server.requests[0].decode()
    assert first.startswith("POST /hook HTTP/1.1\r\n") and f"host: 127.0.0.1:{server.port}\r\n" in first.lower()
    assert "content-length: 2\r\n" in first.lower() and first.endswith("\r\n\r\n{}")


async def test_chunked_body_interim_response_and_retry_after(make: SenderClass) -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nbusy \r\n4;ext=1\r\nnow!\r\n0\r\nx-trailer: 1\r\n\r\n"
    )
    async with serving(reply(raw)) as server:
        sender = make()
        got = await sender.post(target(server), HEADERS, b"{}")
        again = await sender.post(target(server), HEADERS, b"{}")
        await sender.aclose()
    assert (got.status, got.retry_after, got.excerpt) == (503, "7", b"busy now!")
    assert again.status == 503 and server.connections == 1  # read to its end: the connection was kept


@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
async def test_long_bodies_are_cut_to_the_excerpt_and_the_connection_dropped(make: SenderClass, framing: str) -> None:
    body = b"x" * (EXCERPT_BYTES * 8)
    if framing == "content-length":
        raw = b"HTTP/1.1 500 Oops\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        raw = b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n" * 1
        raw = raw + (b"400\r\n" + b"x" * 1024 + b"\r\n") * 15 + b"0\r\n\r\n"
    else:
        raw = b"HTTP/1.1 500 Oops\r\n\r\n" + body
    async with serving(reply(raw, keep=framing != "until-close")) as server:
        sender = make()
        for _ in range(2):
            got = await sender.post(target(server), HEADERS, b"{}")
            assert got.status == 500 and got.excerpt == b"x" * EXCERPT_BYTES
        await sender.aclose()
    assert server.connections == 2


async def test_a_connection_closed_while_idle_is_replaced_transparently(make: SenderClass) -> None:
    async with serving(reply(b"HTTP/1.1 204 No Content\r\n\r\n", keep=False)) as server:
        sender = make()
        for _ in range(3):
            assert (await sender.post(target(server), HEADERS, b"{}")).status == 204
            await asyncio.sleep(0.05)  # the server's close arrives
        await sender.aclose()
    assert server.connections == 3 and len(server.requests) == 3


async def test_http_1_0_and_connection_close_are_honoured(make: SenderClass) -> None:
    for raw in (
        b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
    ):
        async with serving(reply(raw)) as server:  # the server would keep the connection; the answer says not to
            sender = make()
            for _ in range(2):
                assert (await sender.post(target(server), HEADERS, b"{}")).status == 200
            await sender.aclose()
        assert server.connections == 2


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x response"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", "in the middle of its answer"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nok", "conflicting content-length"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (b"", "closed the connection without answering"),
    ],
)
async def test_broken_answers_are_send_errors(make: SenderClass, raw: bytes, message: str) -> None:
    async with serving(reply(raw, keep=False)) as server:
        sender = make()
        with pytest.raises(SendError, match=message):
            await sender.post(target(server), HEADERS, b"{}")
        await sender.aclose()


async def test_no_more_than_per_host_connections_to_one_destination(make: SenderClass) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        return True

    async with serving(slow) as server:
        sender = make(per_host=3)

        async def one() -> Reply:
            async with sender.reserve(f"http://127.0.0.1:{server.port}/hook"):
                return await sender.post(target(server), HEADERS, b"{}")

        replies = await asyncio.gather(*(one() for _ in range(12)))
        await sender.aclose()
    assert {r.status for r in replies} == {200} and server.most_in_flight == 3 and server.connections == 3


async def test_a_burst_does_not_overflow_a_small_listen_backlog(make: SenderClass) -> None:
    """A threaded receiver with Python's default backlog of 5: opening dozens of connections at once would
    have the kernel drop some, and TCP retries those only after a second."""
    with Receiver() as receiver:
        sender = make(per_host=32)

        async def one() -> float:
            async with sender.reserve(receiver.url):
                started = time.perf_counter()
                reply = await sender.post(Target.of(receiver.url), HEADERS, b"{}")
                assert reply.status == 401  # unsigned: answered all the same
                return time.perf_counter() - started

        took = await asyncio.gather(*(one() for _ in range(64)))
        await sender.aclose()
    assert max(took) < 0.9, sorted(took)[-5:]
    assert len(receiver.snapshot()) == 64


async def test_a_receiver_that_answers_slowly_still_gets_its_connections(make: SenderClass) -> None:
    release, all_held = asyncio.Event(), asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 12:
            all_held.set()
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        return True

    async with serving(held) as server:
        sender = make(per_host=32)
        sends = [asyncio.create_task(sender.post(target(server), HEADERS, b"{}")) for _ in range(12)]
        async with asyncio.timeout(3):  # none answered yet, all twelve sent: 40 new connections a second
            await all_held.wait()
        assert server.in_flight == server.connections == 12
        release.set()
        assert {r.status for r in await asyncio.gather(*sends)} == {200}
        await sender.aclose()


async def test_line_breaks_in_headers_are_refused_and_the_path_is_encoded(make: SenderClass) -> None:
    async with serving(reply(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")) as server:
        sender = make()
        with pytest.raises(SendError, match="line break"):
            await sender.post(target(server), {"x-evil": "a\r\nhost: elsewhere"}, b"{}")
        await sender.post(target(server, "/a b/ü?q=1 2"), HEADERS, b"{}")
        await sender.aclose()
    assert server.requests[-1].startswith(b"POST /a%20b/%C3%BC?q=1%202 HTTP/1.1\r\n")


async def test_refused_connection_is_connect_failed(make: SenderClass) -> None:
    async with serving(reply(b"")) as server:
        port = server.port
    with pytest.raises(ConnectFailed):
        await make().post(Target.of(f"http://127.0.0.1:{port}/"), HEADERS, b"{}")


# -- TLS: connect to the pinned address, verify the certificate against the URL's name --------------------------
def _certificates(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context for receiver.test, client context trusting only its own CA)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test ca"))
        .issuer_name(name("test ca"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("receiver.test"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("receiver.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "leaf.pem").write_bytes(
        leaf.public_bytes(pem) + key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "leaf.pem")
    client = ssl.create_default_context(cadata=ca.public_bytes(pem).decode())
    return server, client


async def test_tls_is_verified_against_the_name_while_connecting_to_the_pinned_address(
    make: SenderClass, tmp_path: Path
) -> None:
    server_tls, client_tls = _certificates(tmp_path)
    async with serving(reply(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), tls=server_tls) as server:
        sender = make(ssl_context=client_tls)
        # receiver.test resolves nowhere: the connection goes to the pinned 127.0.0.1, SNI and Host say the name.
        ok = await sender.post(target(server, host="receiver.test", scheme="https"), HEADERS, b"{}")
        assert ok.status == 200 and f"host: receiver.test:{server.port}\r\n".encode() in server.requests[0].lower()
        with pytest.raises(ConnectFailed, match="certificate"):
            await sender.post(target(server, host="other.test", scheme="https"), HEADERS, b"{}")
        await sender.aclose()
