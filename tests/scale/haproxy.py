"""A real HAProxy in front of `registry serve` replicas on loopback: round robin, HTTP health checks on
``/health``, and a CSV stats page the tests read to see which replicas it routes to.

The ``haproxy`` binary is a test dependency (Debian: ``apt-get install haproxy``); without it the tests that
need it fail and say so, since a skip would hide that the multi-replica proof never ran.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

BACKEND = "registry"
START_TIMEOUT_S = 30
# Health checks every 200 ms, two failures to go down and two successes to come back: a killed replica
# leaves the rotation within about half a second, and one slow answer under load never takes one out.
CHECK = "inter 200ms fastinter 100ms downinter 200ms fall 2 rise 2"


def haproxy_binary() -> str:
    """The ``haproxy`` on PATH (or in /usr/sbin), failing the test with the fix when it is missing."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail(
            "the `haproxy` binary is missing: the load-balanced replica tests need it "
            "(Debian/Ubuntu: `apt-get install -y haproxy`)",
            pytrace=False,
        )
    return found


def config(port: int, stats_port: int, servers: Mapping[str, str]) -> str:
    """HAProxy configuration: ``servers`` maps a replica's name to its ``host:port``."""
    lines = [
        "global",
        "    maxconn 512",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout check 5s",
        # A connection refused by a dead replica (before any byte of the request left) is tried again on
        # another one; a request that was already sent is never replayed (it may have been a write).
        "    retries 3",
        "    option redispatch",
        "    retry-on conn-failure",
        "    option forwardfor",
        # A new server connection per request: no idle connection is reused just as uvicorn closes it (its
        # keep-alive timeout is 5 s), which would turn a healthy replica's race into a 502.
        "    option http-server-close",
        f"frontend {BACKEND}-in",
        f"    bind 127.0.0.1:{port}",
        f"    default_backend {BACKEND}",
        f"backend {BACKEND}",
        "    balance roundrobin",
        "    option httpchk",
        "    http-check send meth GET uri /health",
        "    http-check expect status 200",
        f"    default-server {CHECK}",
        *(f"    server {name} {address} check" for name, address in servers.items()),
        "listen stats",
        f"    bind 127.0.0.1:{stats_port}",
        "    stats enable",
        "    stats uri /stats",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Balancer:
    url: str
    stats_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stats(self) -> dict[str, dict[str, str]]:
        """The backend's servers by name: HAProxy's CSV row for each (``status``: UP, DOWN ...; ``stot``:
        sessions it has routed there)."""
        text = httpx.get(f"{self.stats_url};csv", timeout=5).text.lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row for row in rows if row["pxname"] == BACKEND and row["svname"] not in ("BACKEND", "")}

    def status(self) -> dict[str, str]:
        return {name: row["status"] for name, row in self.stats().items()}

    def routed(self) -> dict[str, int]:
        """Sessions routed to each server so far (health checks not counted)."""
        return {name: int(row["stot"] or 0) for name, row in self.stats().items()}

    def wait_for(self, wanted: Mapping[str, str], *, timeout: float = 20.0) -> None:
        """Until each named server has the wanted status (``UP`` / ``DOWN``), or fail with what it had."""
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"haproxy exited ({self.process.returncode}):\n{self.log.read_text()}")
            seen = self.status()
            if all(seen.get(name) == state for name, state in wanted.items()):
                return
            time.sleep(0.05)
        raise AssertionError(f"haproxy servers did not reach {dict(wanted)} in {timeout:g}s: {seen}")


@contextmanager
def balancer(folder: Path, servers: Mapping[str, str]) -> Iterator[Balancer]:
    """HAProxy on a free loopback port in front of ``servers`` (name: ``host:port``), all of them UP when it is
    handed over, stopped afterwards whatever happened."""
    binary = haproxy_binary()
    port, stats_port = free_port(), free_port()
    cfg = folder / "haproxy.cfg"
    cfg.write_text(config(port, stats_port, servers))
    checked = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True)
    if checked.returncode != 0:
        raise AssertionError(f"haproxy rejected {cfg}:\n{checked.stdout}{checked.stderr}\n{cfg.read_text()}")
    log = folder / "haproxy.log"
    with open(log, "wb") as sink:
        # -db: stay in the foreground, not a daemon, so this process owns it; its own process group for teardown.
        process = subprocess.Popen(
            [binary, "-db", "-f", str(cfg)], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    made = Balancer(
        url=f"http://127.0.0.1:{port}", stats_url=f"http://127.0.0.1:{stats_port}/stats", process=process, log=log
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise AssertionError(f"haproxy exited ({process.returncode}):\n{log.read_text()}")
            try:
                made.stats()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"haproxy did not listen in {START_TIMEOUT_S}s:\n{log.read_text()}") from None
                time.sleep(0.05)
        made.wait_for(dict.fromkeys(servers, "UP"))
        yield made
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM the process's group; SIGKILL it if the process is still there after ``grace`` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
        return
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)
