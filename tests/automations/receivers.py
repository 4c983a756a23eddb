"""Loopback webhook receivers and the harness around them, for the automations tests.

A ``Receiver`` is a real HTTP server on 127.0.0.1 in a thread of the test process. It verifies every request
with the ``standardwebhooks`` reference library (not with our own ``automations.signing``), records what
arrived, and answers whatever its ``respond`` callback says (a status, headers, a delay before answering).
``Stack`` is a fresh database (SQLite file or PostgreSQL database), API tokens in it, and helpers to start
real ``registry serve`` processes on it, so these tests never share a database with a server that other
tests started with different settings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url
from standardwebhooks import Webhook, WebhookVerificationError

from tests.conftest import PG_ENV, LiveServer, Tokens, _pg_admin, bearer, free_port, start_server, stop_server

FAST_ENV = {
    "MODELKEEP_WEBHOOK_ALLOW_HOSTS": "127.0.0.1,localhost",
    "MODELKEEP_WEBHOOK_RETRY_SCHEDULE": "0,0.3,0.6",
    "MODELKEEP_WEBHOOK_TIMEOUT_SECONDS": "1",
    "MODELKEEP_WEBHOOK_LOCK_SECONDS": "5",
    "MODELKEEP_REAP_INTERVAL_SECONDS": "1",
    "MODELKEEP_DISPATCHER_POLL_SECONDS": "0.1",
}
"""Server settings for delivery tests: loopback receivers allowed, three attempts within a second."""


# -- receivers ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (past the server's timeout: it gives up first)."""
    hold: threading.Event | None = None
    """Answer only once this is set (or after 30 s)."""
    trickle: float = 0.0
    """Send the status line and headers at once, then the 10-byte body one byte every ``trickle`` seconds."""


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    """``webhook-id``: the event id, the receiver's idempotency key."""
    timestamp: str
    signature: str
    body: bytes
    verified_with: frozenset[str]
    """The receiver's secrets that verified this request with ``standardwebhooks`` (empty: rejected)."""
    nth: int
    """1 for the first request with this ``webhook-id``, 2 for the second ..."""
    at: float
    """time.time() when the request arrived."""
    status: int
    request_id: str = ""
    """``x-request-id``: the API request that recorded the event, if one did."""

    @property
    def verified(self) -> bool:
        return bool(self.verified_with)

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


Responder = Callable[[Hit], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler sleeping past the sender's timeout must not block shutdown
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a sender that timed out or was killed resets its connection: expected here, not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the dispatcher's connection pool expects
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        reply = self.server.receiver._handle(dict(self.headers.items()), body)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.hold is not None:
            reply.hold.wait(timeout=30)
        payload = b"x" * 10 if reply.trickle else b"ok"
        try:
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            if not reply.trickle:
                self.wfile.write(payload)
            for byte in payload if reply.trickle else b"":
                self.wfile.flush()
                time.sleep(reply.trickle)
                self.wfile.write(bytes([byte]))
        except OSError:  # the sender gave up (timeout) and closed the connection
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Receiver:
    """A webhook receiver on ``127.0.0.1:port``; verifies with ``standardwebhooks`` against ``secrets``.

    Unverified requests are answered 401 (so the sender retries them, visibly); verified ones get
    ``respond(hit)`` (default 200). ``start()`` may come later than construction: the port is fixed
    up front, so a subscription can point at a receiver that is not listening yet (connection refused).
    """

    def __init__(
        self, secrets: list[str] | None = None, *, respond: Responder | None = None, port: int | None = None
    ) -> None:
        self.secrets: list[str] = list(secrets or [])
        self.respond: Responder = respond or (lambda hit: Reply())
        self.port = port or free_port()
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.receiver = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Receiver:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, headers: dict[str, str], body: bytes) -> Reply:
        verified: set[str] = set()
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            verified.add(secret)
        lower = {k.lower(): v for k, v in headers.items()}
        msg_id = lower.get("webhook-id", "")
        with self._lock:
            nth = 1 + sum(1 for h in self.hits if h.id == msg_id)
            hit = Hit(
                id=msg_id,
                timestamp=lower.get("webhook-timestamp", ""),
                signature=lower.get("webhook-signature", ""),
                body=body,
                verified_with=frozenset(verified),
                nth=nth,
                at=time.time(),
                status=0,
                request_id=lower.get("x-request-id", ""),
            )
            reply = self.respond(hit) if verified else Reply(status=401)
            self.hits.append(_with_status(hit, reply.status))
        return reply

    # -- reading what arrived ---------------------------------------------------------------------------
    def snapshot(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def verified(self) -> list[Hit]:
        return [h for h in self.snapshot() if h.verified]

    def ids(self) -> Counter[str]:
        """How many verified requests arrived per ``webhook-id``."""
        return Counter(h.id for h in self.verified())

    def of(self, event_id: str) -> list[Hit]:
        return [h for h in self.snapshot() if h.id == event_id]

    def payloads(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Bodies of verified requests, first arrival of each id, in arrival order."""
        seen: set[str] = set()
        found = []
        for hit in self.verified():
            if hit.id not in seen:
                seen.add(hit.id)
                body = hit.payload
                if type_ is None or body["type"] == type_:
                    found.append(body)
        return found


def _with_status(hit: Hit, status: int) -> Hit:
    return dataclasses.replace(hit, status=status)


# -- waiting ----------------------------------------------------------------------------------------------
def wait_until(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or check}")
        time.sleep(interval)


# -- a fresh database with tokens, and servers on it ------------------------------------------------------
@contextmanager
def fresh_database(database_url: str, folder: Path) -> Iterator[str]:
    """A new empty database on the same backend as ``database_url`` (dropped afterwards on PostgreSQL)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{folder / f'auto-{uuid.uuid4().hex[:8]}.db'}"
        return
    admin_url = os.environ[PG_ENV]
    name = f"mk_auto_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def migrate_and_make_tokens(database_url: str) -> Tokens:
    """Apply the migrations and create one token per role (the server would migrate too; tokens need it first)."""
    from registry import migrations
    from registry.db import Database
    from registry.domain.auth import Role
    from registry.services import tokens
    from registry.services.auth import Actor

    async def main() -> Tokens:
        db = Database(database_url)
        try:
            await migrations.upgrade(db)
            made: dict[str, str] = {}
            actor = Actor(name="tests", role=Role.admin)
            async with db.write() as session:
                for role in Role:
                    created = await tokens.create(session, name=f"auto-{role.name}", role=role, actor=actor)
                    made[role.name] = created.secret
            return Tokens(**made)
        finally:
            await db.dispose()

    return asyncio.run(main())


@dataclass
class Stack:
    """A fresh database, its tokens, and the servers started on it (stopped by ``close``)."""

    database_url: str
    folder: Path
    tokens: Tokens
    servers: list[LiveServer] = field(default_factory=list)

    @property
    def backend(self) -> str:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgres"

    def serve(self, env: dict[str, str] | None = None, *, name: str | None = None) -> LiveServer:
        data_dir = self.folder / (name or f"server-{len(self.servers)}")
        data_dir.mkdir(parents=True, exist_ok=True)
        extra = {**FAST_ENV, **(env or {})}
        if name:
            extra.setdefault("MODELKEEP_INSTANCE_NAME", name)
        # Blobs must be shared by every server of the stack (a version pushed through one is read by another).
        extra.setdefault("MODELKEEP_BLOB_STORE_URL", (self.folder / "blobs").resolve().as_uri())
        server = start_server(self.database_url, data_dir, extra_env=extra)
        self.servers.append(server)
        return server

    def stop(self, server: LiveServer) -> None:
        stop_server(server)
        self.servers.remove(server)

    def close(self) -> None:
        for server in list(self.servers):
            self.stop(server)


@contextmanager
def stack(database_url: str, folder: Path) -> Iterator[Stack]:
    with fresh_database(database_url, folder) as url:
        made = Stack(database_url=url, folder=folder, tokens=migrate_and_make_tokens(url))
        try:
            yield made
        finally:
            made.close()


# -- API helpers ------------------------------------------------------------------------------------------
def client(server: LiveServer, token: str, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=bearer(token), timeout=30, **kwargs)


def subscribe(api: httpx.Client, receiver: Receiver, events: list[str], *, model: str | None = None) -> dict[str, Any]:
    """Subscribe ``receiver`` and give it the secret (shown once, in this response)."""
    response = api.post("/api/v1/webhooks", json={"url": receiver.url, "events": events, "model": model})
    assert response.status_code == 201, response.text
    hook = dict(response.json())
    assert hook["secret"].startswith("whsec_")
    receiver.secrets = [hook["secret"]]
    return hook


def deliveries(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/api/v1/webhooks/deliveries", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    return list(response.json())


def add_version(api: httpx.Client, model: str) -> int:
    """Register the next version of ``model`` (one small file, from a new run); returns its number."""
    run = api.post("/api/v1/runs", json={}).json()
    assert api.put(f"/api/v1/runs/{run['id']}/artifacts/model.bin", content=b"weights").status_code == 201
    created = api.post(f"/api/v1/models/{model}/versions", json={"run_id": run["id"], "path": "model.bin"})
    assert created.status_code == 201, created.text
    return int(created.json()["version"])


def model_with_versions(api: httpx.Client, name: str, count: int = 2) -> None:
    """A new model with ``count`` versions."""
    assert api.post("/api/v1/models", json={"name": name}).status_code == 201
    for _ in range(count):
        add_version(api, name)
