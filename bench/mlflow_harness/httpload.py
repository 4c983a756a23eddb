# ruff: noqa: RUF002
"""A small closed-loop HTTP/1.1 load generator over raw keep-alive connections (asyncio streams, uvloop if present).

Each of ``concurrency`` workers owns one connection and sends its next request as soon as the previous
response has been read completely, so ``concurrency`` requests are always in flight. Requests are
pre-rendered bytes (``Request.raw``); responses are framed by ``content-length`` or chunked encoding and read
in full (bodies are not parsed during timed phases). Latency = first byte written → last byte read, measured
with ``perf_counter_ns`` per request. This is several times cheaper per request than httpx, and its ceiling
(against a do-nothing server) is measured and reported with the results.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import resource
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

HEADERS = (
    # what mlflow-skinny 3.17.2 sends (see shared/reference/mlflow-client-contract.md §1)
    "User-Agent: mlflow-python-client/3.17.2\r\n"
    "X-MLflow-Client-Version: 3.17.2\r\n"
    "Accept-Encoding: gzip, deflate\r\n"
    "Connection: keep-alive\r\n"
)
REQUEST_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    raw: bytes
    body: bytes = b""


class RequestBuilder:
    """Renders requests for one server (host header, optional bearer token)."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self.host, self.port = host, port
        self._head = f"Host: {host}:{port}\r\n{HEADERS}"
        if token:
            self._head += f"Authorization: Bearer {token}\r\n"

    def get(self, path: str, query: dict[str, Any] | list[tuple[str, Any]] | None = None) -> Request:
        target = path + ("?" + urlencode(query) if query else "")  # urlencode: spaces as '+', like requests
        raw = f"GET {target} HTTP/1.1\r\n{self._head}\r\n".encode()
        return Request("GET", target, raw)

    def send(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Request:
        if body is None:
            body = json.dumps(payload, separators=(",", ":")).encode()
        raw = (
            f"{method} {path} HTTP/1.1\r\n{self._head}Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        return Request(method, path, raw, body)

    def post(self, path: str, payload: Any) -> Request:
        return self.send("POST", path, payload)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        enc = self.headers.get("content-encoding", "")
        data = self.body
        if enc == "gzip":
            data = gzip.decompress(data)
        elif enc == "deflate":
            data = zlib.decompress(data)
        return data.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.text())


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, raw: bytes, *, keep_headers: bool = False) -> Response:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        reader = self.reader
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = -1
        chunked = close = False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif lname == b"connection" and b"close" in value.lower():
                close = True
            if keep_headers:
                headers[lname.decode()] = value.strip().decode("latin-1")
        if chunked:
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0], 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    break
                parts.append(await reader.readexactly(size + 2))
            body = b"".join(p[:-2] for p in parts)
        elif length >= 0:
            body = await reader.readexactly(length) if length else b""
        else:  # no framing: body runs to EOF
            body = await reader.read()
            close = True
        if close:
            self.close()
        return Response(status, headers, body)


class Client:
    """Sequential request helper for seeding and checks (one keep-alive connection)."""

    def __init__(self, builder: RequestBuilder) -> None:
        self.b = builder
        self.conn = Connection(builder.host, builder.port)

    async def call(self, req: Request) -> Response:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await self.conn.request(req.raw, keep_headers=True)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            self.conn.close()  # one reconnect (a server may drop idle keep-alive connections)
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await self.conn.request(req.raw, keep_headers=True)

    async def ok(self, req: Request) -> Any:
        resp = await self.call(req)
        if resp.status != 200:
            raise HttpFailure(req, resp)
        text = resp.text()
        return json.loads(text) if text.strip() else {}

    def close(self) -> None:
        self.conn.close()


class HttpFailure(Exception):
    def __init__(self, req: Request, resp: Response | None, note: str = "") -> None:
        self.req, self.resp, self.note = req, resp, note
        super().__init__(describe(req, resp, note))


def describe(req: Request, resp: Response | None, note: str = "", limit: int = 600) -> str:
    body = req.body[:limit].decode("utf-8", "replace") + ("…" if len(req.body) > limit else "")
    out = f"{req.method} {req.target}" + (f" body={body}" if body else "")
    if resp is not None:
        text = resp.text()
        out += f" -> {resp.status} {text[:limit]}" + ("…" if len(text) > limit else "")
    if note:
        out += f" ({note})"
    return out


@dataclass
class PhaseResult:
    concurrency: int
    ok: int
    errors: int
    elapsed_s: float
    latencies_ms: list[float]
    error_samples: list[str] = field(default_factory=list)
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = None
    machine_busy_s: float | None = None  # all CPUs, whole machine (psutil), during the recorded phase

    @property
    def other_cpu_cores(self) -> float | None:
        """Average cores used by processes other than this client and the server under test (noise)."""
        if self.machine_busy_s is None or self.server_cpu_s is None or not self.elapsed_s:
            return None
        return max(0.0, self.machine_busy_s - self.server_cpu_s - self.client_cpu_s) / self.elapsed_s

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        # linear interpolation between closest ranks (numpy's default)
        pos = (len(data) - 1) * q / 100.0
        lo = int(pos)
        hi = min(lo + 1, len(data) - 1)
        return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _busy() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def run_phase(
    host: str,
    port: int,
    make: Callable[[int, int], Request],
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    max_requests: int | None = None,
    server_cpu: Callable[[], float | None] | None = None,
) -> PhaseResult:
    """Closed loop: ``concurrency`` connections, each sending ``make(worker, seq)`` back to back.

    A warm-up of ``warmup_s`` (not recorded) precedes ``duration_s`` of recorded requests. Requests that
    started before the deadline are completed and counted; throughput = successful responses / (last
    completion − start of the recorded phase). Non-200 answers count as errors (first few kept as samples).
    """
    conns = [Connection(host, port) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in conns))
    seq = 0
    recording = False
    stop_at = 0.0
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    ok = errors = 0
    samples: list[str] = []
    budget = max_requests if max_requests is not None else -1

    async def worker(w: int) -> None:
        nonlocal seq, ok, errors, budget
        conn = conns[w]
        mine = lat[w]
        perf = time.perf_counter_ns
        while time.monotonic() < stop_at:
            if recording and budget == 0:
                return
            if recording and budget > 0:
                budget -= 1
            seq += 1
            req = make(w, seq)
            t0 = perf()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    resp = await conn.request(req.raw, keep_headers=False)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                conn.close()
                if recording:
                    errors += 1
                    if len(samples) < 3:
                        samples.append(describe(req, None, f"{type(exc).__name__}: {exc}", limit=160))
                continue
            t1 = perf()
            if not recording:
                continue
            if resp.status == 200:
                ok += 1
                mine.append((t1 - t0) / 1e6)
            else:
                errors += 1
                if len(samples) < 3:
                    samples.append(describe(req, resp, limit=300))

    try:
        if warmup_s > 0:
            stop_at = time.monotonic() + warmup_s
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
        cpu0, scpu0, busy0 = _cpu_self(), server_cpu() if server_cpu else None, _busy()
        recording = True
        t_start = time.monotonic()
        stop_at = t_start + duration_s
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.monotonic() - t_start
        cpu1, scpu1, busy1 = _cpu_self(), server_cpu() if server_cpu else None, _busy()
    finally:
        for c in conns:
            c.close()
    flat = [x for part in lat for x in part]
    return PhaseResult(
        concurrency=concurrency,
        ok=ok,
        errors=errors,
        elapsed_s=elapsed,
        latencies_ms=flat,
        error_samples=samples,
        client_cpu_s=cpu1 - cpu0,
        server_cpu_s=(scpu1 - scpu0) if scpu0 is not None and scpu1 is not None else None,
        machine_busy_s=(busy1 - busy0) if busy0 is not None and busy1 is not None else None,
    )
