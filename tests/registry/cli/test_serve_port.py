"""`registry serve` as a process: a port in use is refused before anything else happens, and
``--access-log`` prints one line per request (with several workers on the socket it bound itself)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}


def test_a_port_in_use_fails_first(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "registry", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"port {port} is in use; pass --port" in output
    # Before the banner, the migrations and the first admin token: nothing was started or created.
    assert "modelkeep registry on" not in output and "admin token" not in output and "Traceback" not in output
    assert not (tmp_path / "modelkeep-data").exists()


def test_a_host_that_cannot_be_bound_is_named(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "registry", "serve", "--host", "192.0.2.1", "--port", str(free_port())],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "cannot listen on 192.0.2.1:" in output and "Traceback" not in output
    assert not (tmp_path / "modelkeep-data").exists()


def serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry", "serve", "--port", str(port), *args],
            cwd=tmp_path,
            env=clean_env() | {"MODELKEEP_CREATE_ADMIN_TOKEN": "false"},
            stdout=sink,
            stderr=sink,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url, log
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(log.read_text())


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=20)


def test_access_log_prints_a_line_per_request(tmp_path: Path) -> None:
    proc, url, log = serve(tmp_path, "--access-log", "--workers", "2")
    try:
        for _ in range(4):  # two workers share the socket: whichever answers logs
            assert httpx.get(f"{url}/api/v1/models?limit=5").status_code == 401
        assert httpx.get(f"{url}/no%0D%0Asuch").status_code == 404
        deadline = time.monotonic() + 5
        while log.read_text().count("GET /api/v1/models 401") < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop(proc)
    text = log.read_text()
    assert len(re.findall(r"GET /api/v1/models 401 \d+\.\d ms", text)) == 4, text
    assert re.search(r"GET /health 200 \d+\.\d ms", text), text
    # Control characters in a path are logged escaped: one request, one line.
    assert "GET /no%0D%0Asuch 404" in text, text


def test_no_access_log_by_default(tmp_path: Path) -> None:
    proc, url, log = serve(tmp_path)
    try:
        assert httpx.get(f"{url}/api/v1/models").status_code == 401
    finally:
        stop(proc)
    assert "/api/v1/models" not in log.read_text()
