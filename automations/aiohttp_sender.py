"""``AiohttpSender``: the webhook :class:`~automations.sender.Sender` on aiohttp's client.

- One ``TCPConnector`` with ``limit_per_host``; :meth:`reserve` holds a per-destination semaphore of the same
  size, so a slow receiver queues its own deliveries and no others.
- DNS goes through :class:`PinnedResolver`, which answers only with the addresses the SSRF check approved
  for this attempt (``Target.addresses``) and never asks DNS itself; the connector's DNS cache is off, so a
  name that resolved to a public address a moment ago cannot be reused for a private one (rebinding).
- The request goes to the URL as written: ``Host``, SNI and the certificate check use the host name, and
  TLS verifies against the default trust store.
- Redirects are never followed; at most ``EXCERPT_BYTES`` of the body are read, then the connection is
  released (kept for reuse only when the body was read to its end).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from automations.sender import EXCERPT_BYTES, ConnectFailed, Reply, SendError, Target


class PinnedResolver(AbstractResolver):
    """Resolves a host only to the addresses pinned for it (the last SSRF-approved set), else fails."""

    def __init__(self) -> None:
        self._pinned: dict[str, tuple[str, ...]] = {}

    def pin(self, host: str, addresses: tuple[str, ...]) -> None:
        self._pinned[host] = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._pinned.get(host)
        if not addresses:
            raise OSError(f"{host} has no approved address")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        self._pinned.clear()


class AiohttpSender:
    """HTTP POSTs through one aiohttp session, at most ``per_host`` at once per destination."""

    def __init__(self, *, per_host: int = 32, ssl_context: ssl.SSLContext | None = None) -> None:
        self.per_host = per_host
        self._ssl = ssl_context
        self._resolver = PinnedResolver()
        self._session: aiohttp.ClientSession | None = None
        self._slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0,
                limit_per_host=self.per_host,
                resolver=self._resolver,
                use_dns_cache=False,
                ssl=self._ssl if self._ssl is not None else True,
                keepalive_timeout=5.0,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                timeout=aiohttp.ClientTimeout(total=None),  # the caller's deadline bounds each attempt
            )
        return self._session

    @asynccontextmanager
    async def reserve(self, url: str) -> AsyncIterator[None]:
        target = Target.of(url)
        key = (target.scheme, target.host, target.port)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(self.per_host)
        async with slots:
            yield

    async def post(self, target: Target, headers: Mapping[str, str], body: bytes) -> Reply:
        session = self._client()
        # An IP literal needs no resolving; a name connects only to what the SSRF check approved.
        self._resolver.pin(target.host, target.addresses or (target.host,))
        # Already percent-encoded by Target: sent exactly as it is.
        url = yarl.URL(f"{target.scheme}://{target.host_header}{target.path}", encoded=True)
        sent = {**headers, "accept-encoding": "identity"}
        for name, value in sent.items():
            if any(c in name or c in value for c in "\r\n\0"):
                raise SendError(f"header {name!r} contains a line break")
        try:
            async with session.post(url, data=body, headers=sent, allow_redirects=False) as response:
                excerpt = b""
                while len(excerpt) < EXCERPT_BYTES:
                    piece = await response.content.read(EXCERPT_BYTES - len(excerpt))
                    if not piece:
                        break
                    excerpt += piece
                if not response.content.at_eof():
                    response.close()  # a longer body: drop the connection rather than read it
                return Reply(response.status, response.headers.get("retry-after"), excerpt)
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(str(exc)) from None
        except aiohttp.ClientError as exc:
            raise SendError(_describe(exc)) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _describe(exc: aiohttp.ClientError) -> str:
    """aiohttp's failure in the words ``StreamSender`` uses, so delivery records read the same."""
    text = str(exc)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the receiver closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the receiver closed the connection in the middle of its answer ({text[:120]})"
    if "Bad status line" in text or "Expected HTTP/" in text:
        return f"not an HTTP/1.x response ({text[:120]})"
    if "Content-Length" in text:
        return f"the response has conflicting content-length headers ({text[:120]})"
    if "chunk size" in text:
        return f"invalid chunk size ({text[:120]})"
    return f"{exc.__class__.__name__}: {text[:200]}"
