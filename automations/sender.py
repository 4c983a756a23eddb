"""How a webhook request goes out: POST one body, read the status, ``Retry-After`` and at most
``EXCERPT_BYTES`` of the response body, never follow a redirect.

``StreamSender`` is the dispatcher's: a small HTTP/1.1 client on asyncio streams with keep-alive connections
pooled per destination, and ``reserve`` lets at most ``per_host`` requests at once go to one destination, so
one slow receiver cannot take every connection. A general-purpose client costs several milliseconds of CPU
per request in its pool bookkeeping, which capped delivery at ~200/s on two cores
(bench/results/webhooks.md); a webhook needs only this much of HTTP. ``HttpxSender`` adapts an
``httpx.AsyncClient`` (custom transports, tests).

StreamSender stays, against aiohttp's client, on measurement. ``AiohttpSender`` (commit 7faf4a8: a
``TCPConnector`` with ``limit_per_host``, a resolver answering only the SSRF-approved addresses, TLS checked
against the host name, excerpt reads) was run against it in one interleaved run on PostgreSQL
(bench/results/webhooks-aiohttp-ab.md, 2,000 events x 4 receivers, twice each): drained 681 and 749
deliveries/s against 648 and 976 for this one, live p99 173 and 230 ms against 226 and 163 ms. It reached
neither target set for replacing this sender (>= 1,000/s drained, live p99 < 100 ms), and it failed this
module's tests in one way that matters: a burst of 64 deliveries to a receiver with Python's default listen
backlog of 5 took up to 1.9 s (SYNs dropped and retried after a second), because aiohttp opens every
allowed connection at once where ``_acquire`` paces openings per destination.

Both connect to ``Target.addresses`` (the addresses the SSRF check approved) when there are any, never to the
name again, and still send the name in ``Host`` and verify TLS certificates against it (SNI). Deadlines are
the caller's (``delivery.send`` bounds the whole attempt).
"""

from __future__ import annotations

import asyncio
import ssl
import string
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlsplit

import httpx

EXCERPT_BYTES = 2048
KEEPALIVE_SECONDS = 5.0
"""An idle connection is closed after this long (receivers close theirs too; reusing one they just closed
costs a failed write)."""
OPENING_PER_HOST = 2
OPENING_GRACE_SECONDS = 0.05
"""At most OPENING_PER_HOST new connections to one destination count as being opened at a time: each until
its first answer, or for OPENING_GRACE_SECONDS after its handshake if the receiver takes longer to answer
(see _acquire)."""
HEAD_LIMIT = 64 * 1024
"""Longest response head (status line and headers) accepted."""
_TARGET_SAFE = "".join(c for c in string.printable if not c.isspace())


class SendError(Exception):
    """No complete response: the message says what went wrong."""


class ConnectFailed(SendError):
    """No connection (refused, unreachable, TLS handshake or certificate failure)."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    """The URL's host: sent in ``Host``, used for SNI and checked against the TLS certificate."""
    port: int
    path: str
    """The request target (path and query), percent-encoded."""
    addresses: tuple[str, ...] = ()
    """Connect to one of these, in order (addresses the SSRF check approved); empty: connect by name."""

    @classmethod
    def of(cls, url: str, addresses: tuple[str, ...] = ()) -> Target:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, host, port, quote(path, safe=_TARGET_SAFE), addresses)

    @property
    def https(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.https else 80) else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    retry_after: str | None
    excerpt: bytes
    """At most EXCERPT_BYTES of the body, as received (no content decoding is asked for)."""


class Sender(Protocol):
    def reserve(self, url: str) -> AbstractAsyncContextManager[None]:
        """Wait for the right to send to ``url``'s destination (a per-destination limit, if the sender has one).

        Kept apart from ``post`` so that waiting here is not part of the attempt's deadline: the deadline
        measures the receiver, not this process's queue."""
        ...

    async def post(self, target: Target, headers: Mapping[str, str], body: bytes) -> Reply:
        """POST ``body``; raises SendError (or OSError/TimeoutError from below) when no response came."""
        ...

    async def aclose(self) -> None: ...


# -- the lean HTTP/1.1 client ---------------------------------------------------------------------------------
class _Stale(Exception):
    """A reused keep-alive connection was closed by the receiver before it answered."""


class _Connection:
    __slots__ = ("address", "idle_since", "opening", "proven", "reader", "writer")

    def __init__(self, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.address, self.reader, self.writer = address, reader, writer
        self.idle_since = time.monotonic()
        self.proven = False
        """The receiver has answered on it (so it accepted the connection)."""
        self.opening = True
        """Counted in its pool's ``opening`` (until it is proven or closed)."""

    def reusable(self, now: float) -> bool:
        return now - self.idle_since < KEEPALIVE_SECONDS and not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class _Pool:
    """Connections to one destination: idle ones, how many are being opened, who waits for one, and a
    semaphore bounding how many requests are reserved at once."""

    __slots__ = ("idle", "opening", "slots", "users", "waiters")

    def __init__(self, limit: int) -> None:
        self.idle: list[_Connection] = []
        self.opening = 0
        self.slots = asyncio.Semaphore(limit)
        self.users = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def take(self, addresses: tuple[str, ...]) -> _Connection | None:
        """An idle connection to one of ``addresses`` (any, when empty); idle connections to addresses no
        longer approved, or kept too long, are closed on the way."""
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()  # the most recently used: the least likely to have been closed
            if conn.reusable(now) and (not addresses or conn.address in addresses):
                return conn
            conn.close()
        return None

    async def changed(self) -> None:
        """Wait until a connection comes back or an opening one is answered (or fails)."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.wake_one()  # woken and cancelled at once: pass the news on
            raise

    def wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def settle(self, conn: _Connection) -> None:
        """``conn`` got an answer, or was closed before one: it no longer counts as being opened."""
        if conn.opening:
            conn.opening = False
            self.opening -= 1
            self.wake_one()


_PoolKey = tuple[str, str, int]


class StreamSender:
    """HTTP/1.1 POSTs over pooled keep-alive connections, at most ``per_host`` at once per destination."""

    def __init__(self, *, per_host: int = 32, ssl_context: ssl.SSLContext | None = None) -> None:
        self.per_host = per_host
        self._ssl = ssl_context
        self._pools: dict[_PoolKey, _Pool] = {}
        self._pruned = time.monotonic()

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            # The same trust store httpx uses (certifi, or SSL_CERT_FILE / SSL_CERT_DIR).
            self._ssl = httpx.create_ssl_context()
            self._ssl.set_alpn_protocols(["http/1.1"])
        return self._ssl

    def _pool(self, target: Target) -> _Pool:
        key = (target.scheme, target.host, target.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(self.per_host)
        return pool

    @asynccontextmanager
    async def reserve(self, url: str) -> AsyncIterator[None]:
        """At most ``per_host`` reservations per destination at once (``post`` itself does not wait)."""
        pool = self._pool(Target.of(url))
        pool.users += 1
        try:
            async with pool.slots:
                yield
        finally:
            pool.users -= 1
            self._prune()

    async def post(self, target: Target, headers: Mapping[str, str], body: bytes) -> Reply:
        pool = self._pool(target)
        pool.users += 1
        try:
            while True:
                conn = await self._acquire(pool, target)
                try:
                    return await self._exchange(pool, conn, target, headers, body)
                except _Stale:
                    if not conn.proven:
                        raise SendError("the receiver closed the connection without answering") from None
                    # It answered before and closed while idle: send again on another connection.
        finally:
            pool.users -= 1

    async def _acquire(self, pool: _Pool, target: Target) -> _Connection:
        """An idle connection, else a new one, opened at a pace the receiver can take.

        Opening dozens of connections at once overflows a small listen backlog (Python's http.server has 5),
        and TCP retries the dropped attempts only a second later, past short deadlines. So at most
        OPENING_PER_HOST connections to a destination are being opened at a time, each counted until the
        receiver first answers on it (the handshake alone proves nothing: the kernel completes it before
        the receiver accepts), or for OPENING_GRACE_SECONDS, so a receiver that answers slowly still gets
        its connections, 40 a second."""
        while True:
            conn = pool.take(target.addresses)
            if conn is not None:
                return conn
            if pool.opening < OPENING_PER_HOST:
                pool.opening += 1
                try:
                    conn = await self._connect(target)
                except BaseException:
                    pool.opening -= 1
                    pool.wake_one()
                    raise
                asyncio.get_running_loop().call_later(OPENING_GRACE_SECONDS, pool.settle, conn)
                return conn
            await pool.changed()

    async def _connect(self, target: Target) -> _Connection:
        failures = []
        for address in target.addresses or (target.host,):
            try:
                reader, writer = await asyncio.open_connection(
                    address,
                    target.port,
                    ssl=self.ssl_context if target.https else None,
                    server_hostname=target.host if target.https else None,
                    limit=HEAD_LIMIT,
                )
            except OSError as exc:
                failures.append(f"{address}: {exc}" if target.addresses else str(exc))
                continue
            return _Connection(address, reader, writer)
        raise ConnectFailed("; ".join(failures))

    async def _exchange(
        self, pool: _Pool, conn: _Connection, target: Target, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        """One request/response on ``conn``; the connection goes back to ``pool`` only after a clean finish
        (an error or a cancellation, such as the caller's deadline, leaves it in an unknown state: closed)."""
        keep = False
        try:
            lines = [f"POST {target.path} HTTP/1.1", f"host: {target.host_header}"]
            for name, value in headers.items():
                if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                    raise SendError(f"header {name!r} contains a line break")
                lines.append(f"{name}: {value}")
            lines.append(f"content-length: {len(body)}\r\n\r\n")
            try:
                conn.writer.write("\r\n".join(lines).encode("latin-1") + body)
                await conn.writer.drain()
                status, fields = await _read_head(conn.reader)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise SendError("the receiver closed the connection in the middle of its answer") from None
                raise _Stale from None
            conn.proven = True
            pool.settle(conn)
            try:
                excerpt, complete = await _read_excerpt(conn.reader, status, fields)
            except (ConnectionError, asyncio.IncompleteReadError):
                raise SendError("the receiver closed the connection in the middle of its answer") from None
            except asyncio.LimitOverrunError:
                raise SendError("the response body is not valid chunked encoding") from None
            keep = complete and "close" not in fields.get("connection", "").lower()
            return Reply(status, fields.get("retry-after"), excerpt)
        finally:
            if keep:
                conn.idle_since = time.monotonic()
                pool.idle.append(conn)
                pool.wake_one()
            else:
                conn.close()
                pool.settle(conn)

    def _prune(self) -> None:
        """Close connections idle for too long and forget destinations nobody uses (at most once a second)."""
        now = time.monotonic()
        if now - self._pruned < 1.0:
            return
        self._pruned = now
        for key, pool in list(self._pools.items()):
            fresh = [c for c in pool.idle if c.reusable(now)]
            for conn in pool.idle:
                if conn not in fresh:
                    conn.close()
            pool.idle = fresh
            if not fresh and not pool.users:
                del self._pools[key]

    async def aclose(self) -> None:
        for pool in self._pools.values():
            for conn in pool.idle:
                conn.close()
        self._pools.clear()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and header fields (lower-case names) of the final response, skipping 1xx interim ones."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise SendError(f"the response head is longer than {HEAD_LIMIT} bytes") from None
        status_line, *field_lines = head.decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise SendError(f"not an HTTP/1.x response: {status_line[:80]!r}")
        fields: dict[str, str] = {}
        for line in field_lines:
            name, sep, value = line.partition(":")
            if sep:
                name = name.strip().lower()
                value = value.strip()
                if name in fields and name == "content-length" and fields[name] != value:
                    raise SendError("the response has conflicting content-length headers")
                fields[name] = f"{fields[name]}, {value}" if name in fields and name != "content-length" else value
        status = int(code)
        if version == "HTTP/1.0" and "keep-alive" not in fields.get("connection", "").lower():
            fields["connection"] = "close"
        if status < 200 and status != 101:
            continue  # 100 Continue, 103 Early Hints: the real answer follows
        return status, fields


async def _read_excerpt(reader: asyncio.StreamReader, status: int, fields: Mapping[str, str]) -> tuple[bytes, bool]:
    """Up to EXCERPT_BYTES of the body, and whether the body was read to its end (the connection can be
    reused). A longer body is not drained: the connection is closed instead."""
    if status < 200:
        return b"", False  # 101: the connection speaks another protocol now
    if status in (204, 304):
        return b"", True
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    length_text = fields.get("content-length")
    if length_text is not None:
        if not length_text.isdigit():
            raise SendError(f"invalid content-length {length_text[:40]!r}")
        length = int(length_text)
        excerpt = await reader.readexactly(min(length, EXCERPT_BYTES))
        return excerpt, length <= EXCERPT_BYTES
    excerpt = b""  # the body runs until the receiver closes the connection
    while len(excerpt) < EXCERPT_BYTES and (more := await reader.read(EXCERPT_BYTES - len(excerpt))):
        excerpt += more
    return excerpt, False


async def _read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    excerpt = b""
    while len(excerpt) < EXCERPT_BYTES:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise SendError(f"invalid chunk size {size_line[:40]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields
            return excerpt, True
        if len(excerpt) + size > EXCERPT_BYTES:
            return excerpt + await reader.readexactly(EXCERPT_BYTES - len(excerpt)), False
        excerpt += await reader.readexactly(size)
        await reader.readexactly(2)
    return excerpt, False


# -- an httpx client as a sender --------------------------------------------------------------------------------
class HttpxSender:
    """Send through an ``httpx.AsyncClient`` (owned by the caller), with the same rules."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    def reserve(self, url: str) -> AbstractAsyncContextManager[None]:
        return nullcontext()  # the client's own pool limits apply

    async def post(self, target: Target, headers: Mapping[str, str], body: bytes) -> Reply:
        sent = {**headers, "host": target.host_header, "accept-encoding": "identity"}
        failures = []
        for address in target.addresses or (target.host,):
            netloc = f"[{address}]" if ":" in address else address
            extensions = {"sni_hostname": target.host} if target.https and target.addresses else {}
            try:
                async with self.client.stream(
                    "POST",
                    f"{target.scheme}://{netloc}:{target.port}{target.path}",
                    content=body,
                    headers=sent,
                    follow_redirects=False,
                    extensions=extensions,
                ) as response:
                    excerpt = b""
                    async for chunk in response.aiter_raw():
                        excerpt += chunk
                        if len(excerpt) >= EXCERPT_BYTES:
                            break
                    return Reply(response.status_code, response.headers.get("retry-after"), excerpt[:EXCERPT_BYTES])
            except httpx.TimeoutException:
                raise TimeoutError from None
            except httpx.ConnectError as exc:
                failures.append(f"{address}: {exc}" if target.addresses else str(exc))
            except httpx.HTTPError as exc:
                raise SendError(f"{exc.__class__.__name__}: {exc}") from None
        raise ConnectFailed("; ".join(failures))

    async def aclose(self) -> None:
        await self.client.aclose()
