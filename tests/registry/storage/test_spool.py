"""The upload spool's writer on a real filesystem: every size around the block and batch boundaries, in
``O_DIRECT`` and in buffered mode, arrives whole, hashed and durable; and ``O_DIRECT`` is really used."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import random
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from registry.errors import PayloadTooLarge
from registry.storage.spool import FLUSH_BYTES, _enable_direct, _Sink, spool

BLOCK = _Sink.BLOCK
SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, FLUSH_BYTES - 1, FLUSH_BYTES, FLUSH_BYTES + 1, 2 * FLUSH_BYTES + 12_345]


async def ragged(data: bytes, seed: int) -> AsyncIterator[bytes]:
    """``data`` in pieces of uneven sizes (1 byte to ~300 KiB), as a socket hands them over."""
    rng = random.Random(seed)
    start = 0
    while start < len(data):
        size = rng.choice([1, 7, BLOCK - 3, 65_536, 65_536 + 11, 300_001])
        yield data[start : start + size]
        start += size


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
@pytest.mark.parametrize("size", SIZES)
async def test_every_size_arrives_whole(tmp_path: Path, size: int, direct: bool) -> None:
    data = os.urandom(size)
    spooled = await spool(ragged(data, size), tmp_dir=tmp_path, max_bytes=1 << 30, direct=direct)
    assert spooled.size == size and spooled.sha256 == hashlib.sha256(data).hexdigest()
    assert spooled.path.stat().st_size == size  # the padded last block was cut back
    assert spooled.path.read_bytes() == data


def direct_refused(folder: Path) -> bool:
    fd, name = tempfile.mkstemp(dir=folder)
    try:
        return not _enable_direct(fd)
    finally:
        os.close(fd)
        os.unlink(name)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="O_DIRECT is Linux's")
def test_the_sink_writes_around_the_page_cache_where_it_can(tmp_path: Path) -> None:
    if direct_refused(tmp_path):
        pytest.skip(f"the filesystem of {tmp_path} refuses O_DIRECT")
    fd, name = tempfile.mkstemp(dir=tmp_path)
    sink = _Sink(fd)
    try:
        assert sink.direct
        assert int(Path(f"/proc/self/fdinfo/{fd}").read_text().split("flags:")[1].split()[0], 8) & os.O_DIRECT
        data = os.urandom(3 * FLUSH_BYTES // 2 + 5)
        sink.write([data[:1000], data[1000:]])
        # Whole blocks went to the file; less than a block waits in the aligned buffer for the next batch.
        assert os.fstat(fd).st_size == len(data) - len(data) % BLOCK and sink.held == len(data) % BLOCK
        sink.finish()
    finally:
        sink.close()
    assert Path(name).read_bytes() == data


def test_a_buffered_sink_writes_as_it_goes(tmp_path: Path) -> None:
    fd, name = tempfile.mkstemp(dir=tmp_path)
    sink = _Sink(fd, direct=False)
    assert not sink.direct and sink.buffer is None
    sink.write([b"abc", b"defg"])
    assert os.fstat(fd).st_size == 7
    sink.finish()
    assert Path(name).read_bytes() == b"abcdefg" and sink.fd == -1


async def test_an_upload_cut_off_while_batches_are_in_flight_leaves_nothing(tmp_path: Path) -> None:
    """The limit is crossed with batches still being hashed and written: they finish, the file goes."""
    data = os.urandom(5 * FLUSH_BYTES)
    with pytest.raises(PayloadTooLarge):
        await spool(ragged(data, 1), tmp_dir=tmp_path, max_bytes=4 * FLUSH_BYTES + 3)
    assert list(tmp_path.iterdir()) == []


async def test_a_cancelled_upload_waits_for_its_workers_then_leaves_nothing(tmp_path: Path) -> None:
    """A request task cancelled (client gone, server stopping) with batches in flight: no file, no error left."""
    reached = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(FLUSH_BYTES)
        reached.set()
        await asyncio.Event().wait()  # the rest never comes
        yield b""  # pragma: no cover

    task = asyncio.create_task(spool(stalls(), tmp_dir=tmp_path, max_bytes=1 << 30))
    await reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(tmp_path.iterdir()) == []


async def test_a_second_cancellation_still_leaves_nothing(tmp_path: Path) -> None:
    reached = asyncio.Event()
    before = open_fds()

    async def stalls() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(FLUSH_BYTES)
        reached.set()
        await asyncio.Event().wait()
        yield b""  # pragma: no cover

    task = asyncio.create_task(spool(stalls(), tmp_dir=tmp_path, max_bytes=1 << 30))
    await reached.wait()
    task.cancel()
    await asyncio.sleep(0)  # the spool is now waiting for its threads...
    task.cancel()  # ...and is cancelled again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(tmp_path.iterdir()) == [] and open_fds() == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="O_DIRECT is Linux's")
async def test_a_filesystem_that_refuses_direct_writes_gets_buffered_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some filesystems accept O_DIRECT at fcntl and refuse the writes (EINVAL); none is at hand here, so the
    refusal is injected for descriptors that carry the flag."""
    if direct_refused(tmp_path):
        pytest.skip(f"the filesystem of {tmp_path} refuses O_DIRECT already")
    real_pwrite = os.pwrite
    refused = []

    def pwrite(fd: int, data: Any, offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    data = os.urandom(2 * FLUSH_BYTES + 4097)
    spooled = await spool(ragged(data, 7), tmp_dir=tmp_path, max_bytes=1 << 30)
    assert refused == [0]  # refused once, at the first write; everything after went through the page cache
    assert spooled.sha256 == hashlib.sha256(data).hexdigest() and spooled.path.read_bytes() == data


async def test_a_full_disk_fails_the_upload_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_pwrite = os.pwrite
    written = 0

    def pwrite(fd: int, data: Any, offset: int) -> int:
        nonlocal written
        if written >= FLUSH_BYTES:
            raise OSError(errno.ENOSPC, "No space left on device")
        done = real_pwrite(fd, data, offset)
        written += done
        return done

    monkeypatch.setattr(os, "pwrite", pwrite)
    before = open_fds()
    with pytest.raises(OSError) as caught:
        await spool(ragged(os.urandom(4 * FLUSH_BYTES), 3), tmp_dir=tmp_path, max_bytes=1 << 30)
    assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == [] and open_fds() == before
