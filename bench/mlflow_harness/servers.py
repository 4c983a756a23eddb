"""Server processes for the MLflow comparison: MLflow's own server (in its own venv), Modelkeep, a null server.

Every server runs in its own session (process group), with stdout/stderr in files under its work folder.
``Server.stop()`` sends SIGTERM to the group and to every descendant seen while it ran (MLflow's huey
consumers outlive their parent otherwise), waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil

MLFLOW_SPEC = "mlflow>=3.17,<3.18"
# PostgreSQL driver: SQLAlchemy 2.1 (what mlflow 3.17 installs) maps postgresql:// to psycopg 3
MLFLOW_EXTRA = ["psycopg[binary]>=3.2,<4"]

NULL_SERVER = r"""
import asyncio, sys
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
RESP = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nOK"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0: return
            head, self.buf = self.buf[:i], self.buf[i + 4:]
            n = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length": n = int(v)
            self.buf = self.buf[n:]
            self.t.write(RESP)
async def main():
    srv = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_mlflow_venv(venv: Path, log: callable) -> Path:  # type: ignore[valid-type]
    """Create ``venv`` with MLflow's full server package if it is missing; return its ``mlflow`` executable."""
    py = venv / "bin" / "python"
    probe = "import mlflow, psycopg; print(mlflow.__version__)"
    if py.exists():
        done = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip().startswith("3.17."):
            return venv / "bin" / "mlflow"
    log(f"creating {venv} and installing {MLFLOW_SPEC} (a few minutes, once)")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", MLFLOW_SPEC, *MLFLOW_EXTRA], check=True)
    done = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=True)
    log(f"mlflow {done.stdout.strip()} installed in {venv}")
    return venv / "bin" / "mlflow"


def mlflow_version(mlflow_bin: Path) -> str:
    py = mlflow_bin.parent / "python"
    code = "import mlflow, sqlalchemy, uvicorn; print(mlflow.__version__, sqlalchemy.__version__, uvicorn.__version__)"
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True).stdout.split()
    return f"mlflow {out[0]} (SQLAlchemy {out[1]}, uvicorn {out[2]})" if len(out) == 3 else "mlflow ?"


@dataclass
class Server:
    name: str
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    token: str | None = None
    workdir: Path | None = None
    workers: str = ""
    _seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _tree(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            self._seen.setdefault(p.pid, p)
        return procs

    def cpu_seconds(self) -> float | None:
        """user+system CPU of the live process tree (None for a reused external server)."""
        if self.proc is None:
            return None
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def rss_mb(self) -> float | None:
        if self.proc is None:
            return None
        total = 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def log_tail(self, n: int = 30) -> str:
        if self.workdir is None:
            return ""
        out = []
        for name in ("stdout.log", "stderr.log"):
            f = self.workdir / name
            if f.exists():
                out += f.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(out)

    def stop(self, grace_s: float = 15.0) -> None:
        if self.proc is None:
            return
        self._tree()
        procs = list(self._seen.values())
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None


def _spawn(cmd: list[str], workdir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=open(workdir / "stdout.log", "wb"),
        stderr=open(workdir / "stderr.log", "wb"),
        start_new_session=True,
    )


def _wait_http(server: Server, path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            with socket.create_connection((server.host, server.port), timeout=2) as s:
                s.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nConnection: close\r\n\r\n".encode()
                )
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{server.name} not ready on {server.url}{path} after {timeout_s:.0f}s:\n{server.log_tail()}")


def start_mlflow(mlflow_bin: Path, backend_uri: str, workdir: Path, workers: int | None) -> Server:
    port = free_port()
    cmd = [
        str(mlflow_bin), "server",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", str(workdir / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    if workers is not None:
        cmd += ["--workers", str(workers)]
    env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    server = Server("mlflow", "127.0.0.1", port, workdir=workdir, workers=str(workers or "4 (default)"))
    server.proc = _spawn(cmd, workdir, env)
    return server


def start_modelkeep(registry_bin: Path, database_url: str | None, workdir: Path, workers: int | None) -> Server:
    port = free_port()
    cmd = [str(registry_bin), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(workdir / "data")]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    if database_url:
        env["MODELKEEP_DATABASE_URL"] = database_url
    server = Server("modelkeep", "127.0.0.1", port, workdir=workdir, workers=str(workers or "1 (default)"))
    server.proc = _spawn(cmd, workdir, env)
    return server


def wait_ready(server: Server, timeout_s: float = 240.0) -> None:
    _wait_http(server, "/health", timeout_s)
    if server.name == "modelkeep" and server.token is None and server.workdir is not None:
        # `registry serve` prints "Created the first admin token (shown only once):" then the token
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = (server.workdir / "stdout.log").read_text(errors="replace").splitlines()
            for i, line in enumerate(lines[:-1]):
                if "admin token" in line and lines[i + 1].strip():
                    server.token = lines[i + 1].strip()
                    return
            time.sleep(0.2)
        raise RuntimeError(f"no admin token in modelkeep's stdout:\n{server.log_tail()}")


def start_null_server(workdir: Path) -> Server:
    port = free_port()
    server = Server("null", "127.0.0.1", port, workdir=workdir, workers="1")
    server.proc = _spawn([sys.executable, "-c", NULL_SERVER, str(port)], workdir, dict(os.environ))
    _wait_http(server, "/", 30)
    return server


def settle(max_wait_s: float = 30.0, idle_below: float = 15.0) -> float:
    """Wait until system CPU use (1 s samples) drops below ``idle_below`` percent; returns the last sample."""
    deadline = time.monotonic() + max_wait_s
    busy = psutil.cpu_percent(interval=1.0)
    while busy > idle_below and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=1.0)
    return busy


class Postgres:
    """Creates and drops per-server databases next to the one named in ``admin_url``."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def url_for(self, db: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + db, parts.query, ""))

    async def _exec(self, sql: str) -> None:
        import asyncpg

        dsn = self.admin_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create(self, name: str) -> str:
        asyncio.run(self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(self._exec(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return self.url_for(name)

    def drop_all(self) -> None:
        for name in self.created:
            try:
                asyncio.run(self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)
        self.created.clear()

    def server_version(self) -> str:
        async def q() -> str:
            import asyncpg

            conn = await asyncpg.connect(self.admin_url)
            try:
                return str(await conn.fetchval("SHOW server_version"))
            finally:
                await conn.close()

        try:
            return asyncio.run(q())
        except Exception:
            return "?"
