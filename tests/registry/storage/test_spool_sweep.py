"""Unfinished uploads in the spool: a part file is locked while its upload lives, so a starting server
removes the ones a killed server left and never one that another live process is still writing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from registry.cli import main
from registry.storage.spool import spool, sweep
from tests.conftest import LiveServer, bearer, start_server, stop_server

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("upload-*.part"))


def test_sweep_removes_abandoned_part_files_and_keeps_held_ones(tmp_path: Path) -> None:
    abandoned = tmp_path / "upload-dead.part"
    abandoned.write_bytes(b"x" * 100)
    held = tmp_path / "upload-live.part"
    other = tmp_path / "gate-keep"  # not an upload part: not ours to judge
    other.write_bytes(b"y")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(held)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert sweep(tmp_path) == 1
        assert not abandoned.exists() and held.exists() and other.exists()
    finally:
        holder.kill()
        holder.wait()
    assert sweep(tmp_path) == 1 and not held.exists()  # its process is gone: now it is abandoned
    assert sweep(tmp_path / "missing") == 0


async def test_a_part_file_stays_locked_until_it_is_consumed(tmp_path: Path) -> None:
    go_on, started = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        started.set()  # asked for the second piece: the part file exists and holds the first
        await go_on.wait()
        yield b"b" * 1000

    task = asyncio.create_task(spool(slow(), tmp_dir=tmp_path, max_bytes=1 << 20))
    await started.wait()
    assert len(parts(tmp_path)) == 1
    assert await asyncio.to_thread(sweep, tmp_path) == 0  # being written
    go_on.set()
    spooled = await task
    assert await asyncio.to_thread(sweep, tmp_path) == 0  # written, not yet handed to a store
    assert spooled.path.read_bytes() == b"a" * 1000 + b"b" * 1000
    spooled.discard()
    assert parts(tmp_path) == [] and await asyncio.to_thread(sweep, tmp_path) == 0


async def test_a_sweep_between_creation_and_lock_cannot_take_the_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep that removed a new part file before its writer locked it: the writer starts a new one."""
    import tempfile

    real = tempfile.mkstemp
    calls = 0

    def racing_mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        nonlocal calls
        calls += 1
        fd, name = real(*args, **kwargs)  # type: ignore[call-overload]
        if calls == 1:
            assert sweep(tmp_path) == 1  # another process's sweep wins the race for this one
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", racing_mkstemp)

    async def body() -> AsyncIterator[bytes]:
        yield b"z" * 5000

    spooled = await spool(body(), tmp_dir=tmp_path, max_bytes=1 << 20)
    assert calls == 2 and spooled.path.read_bytes() == b"z" * 5000
    spooled.discard()


# -- real servers on one data folder -------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Path, str, str]]:
    """A data folder with a SQLite database and a writer token."""
    data = tmp_path / "data"
    assert main(["token", "create", "up", "--role", "writer", "--data-dir", str(data), "--init", "--json"]) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    yield data, f"sqlite:///{data / 'registry.db'}", token


class PausedUpload:
    """A streamed PUT of a blob that sends 1 MiB and then waits until ``finish()``."""

    def __init__(self, server: LiveServer, token: str) -> None:
        self.first, self.rest = os.urandom(1 << 20), os.urandom(1 << 20)
        self.digest = hashlib.sha256(self.first + self.rest).hexdigest()
        self.release = threading.Event()
        self.result: httpx.Response | Exception | None = None

        def body() -> Iterator[bytes]:
            yield self.first
            self.release.wait(30)
            yield self.rest

        def run() -> None:
            try:
                self.result = httpx.put(
                    f"{server.url}/api/v1/blobs/{self.digest}", content=body(), headers=bearer(token), timeout=30
                )
            except httpx.HTTPError as exc:
                self.result = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self) -> httpx.Response | Exception | None:
        self.release.set()
        self.thread.join(30)
        return self.result


def wait_for_part(folder: Path) -> Path:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if found := parts(folder):
            time.sleep(0.2)  # the first bytes land
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no part file in {folder}")


def test_a_killed_server_leaves_a_part_file_that_the_next_start_removes(home: tuple[Path, str, str]) -> None:
    data, url, token = home
    server = start_server(url, data)
    upload = PausedUpload(server, token)
    try:
        part = wait_for_part(data / "tmp")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
    finally:
        upload.finish()
    assert part.exists()  # nobody cleaned up after the killed process
    again = start_server(url, data)
    try:
        assert not part.exists() and parts(data / "tmp") == []
    finally:
        stop_server(again)


def test_a_second_server_on_the_same_folder_keeps_a_live_upload(home: tuple[Path, str, str]) -> None:
    data, url, token = home
    first = start_server(url, data)
    try:
        upload = PausedUpload(first, token)
        part = wait_for_part(data / "tmp")
        second = start_server(url, data)  # sweeps the spool at start
        try:
            assert part.exists()
            result = upload.finish()
            assert isinstance(result, httpx.Response) and result.status_code == 201, result
            got = httpx.get(f"{second.url}/api/v1/blobs/{upload.digest}", headers=bearer(token), timeout=30)
            assert got.status_code == 200 and got.content == upload.first + upload.rest
        finally:
            stop_server(second)
    finally:
        stop_server(first)
