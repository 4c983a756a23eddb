"""The local blob store and the upload spool on a real filesystem: round trips, dedupe, and that no failure
(vanished source, interrupted or oversized or mislabelled upload) leaves partial bytes behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from registry.errors import InvalidInput, PayloadTooLarge
from registry.storage import blob_key
from registry.storage.local import LocalBlobStore
from registry.storage.spool import FLUSH_BYTES, spool

MiB = 1024 * 1024


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def write_blob(folder: Path, data: bytes, name: str = "upload.part") -> tuple[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (path := folder / name).write_bytes(data)
    return hashlib.sha256(data).hexdigest(), path


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(store: LocalBlobStore, digest: str, *, chunk_size: int = MiB) -> list[bytes]:
    return [chunk async for chunk in store.stream(digest, chunk_size=chunk_size)]


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


async def test_put_exists_stream_delete(store: LocalBlobStore, tmp_path: Path) -> None:
    data = os.urandom(2500)
    digest, source = write_blob(tmp_path / "spool", data)
    assert not await store.exists(digest)
    await store.put(digest, source)
    assert not source.exists()
    assert files_under(store.root) == [store.root / blob_key(digest)]
    assert await store.exists(digest)
    chunks = await read_all(store, digest, chunk_size=1000)
    assert [len(c) for c in chunks] == [1000, 1000, 500] and b"".join(chunks) == data
    await store.delete(digest)
    assert not await store.exists(digest) and files_under(store.root) == []
    await store.delete(digest)


async def test_identical_content_is_stored_once(store: LocalBlobStore, tmp_path: Path) -> None:
    digest, first = write_blob(tmp_path / "spool", b"weights" * 100, "a.part")
    await store.put(digest, first)
    stored = store.path_of(digest)
    inode = stored.stat().st_ino
    _, second = write_blob(tmp_path / "spool", b"weights" * 100, "b.part")
    await store.put(digest, second)
    assert not second.exists() and files_under(tmp_path / "spool") == []
    assert files_under(store.root) == [stored] and stored.stat().st_ino == inode  # the first copy is kept


async def test_streaming_a_missing_blob_raises_file_not_found(store: LocalBlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        await read_all(store, hashlib.sha256(b"never stored").hexdigest())


async def test_put_of_a_vanished_source_raises_and_leaves_nothing(store: LocalBlobStore, tmp_path: Path) -> None:
    # A crash between spool and put: the spooled file is gone by the time the store runs.
    digest, source = write_blob(tmp_path / "spool", b"lost in a crash")
    source.unlink()
    with pytest.raises(FileNotFoundError):
        await store.put(digest, source)
    assert not store.path_of(digest).exists() and files_under(store.root) == []
    assert not await store.exists(digest)


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A folder on a different filesystem than ``tmp_path`` (tmpfs), to exercise the copy-then-rename path."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a different filesystem than the test folder")
    folder = Path(tempfile.mkdtemp(prefix="modelkeep-", dir=shm))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def test_put_across_filesystems_copies_then_renames(store: LocalBlobStore, other_filesystem: Path) -> None:
    data = os.urandom(3 * MiB)
    digest, source = write_blob(other_filesystem, data)
    await store.put(digest, source)
    assert not source.exists()
    # Only the final name: no ".part" staging file left beside it.
    assert files_under(store.root) == [store.path_of(digest)]
    assert b"".join(await read_all(store, digest)) == data


async def test_spool_hashes_and_sizes_a_multi_flush_upload(tmp_path: Path) -> None:
    data = os.urandom(FLUSH_BYTES * 2 + 17)
    spooled = await spool(chunks_of(data, 64 * 1024), tmp_dir=tmp_path / "tmp", max_bytes=len(data))
    assert spooled.sha256 == hashlib.sha256(data).hexdigest() and spooled.size == len(data)
    assert spooled.path.read_bytes() == data and spooled.path.parent == tmp_path / "tmp"


async def test_interrupted_spool_removes_its_temp_file(tmp_path: Path) -> None:
    async def hangs_up_midway() -> AsyncIterator[bytes]:
        # Past one flush, so bytes have already reached the temp file when the client goes away.
        yield os.urandom(FLUSH_BYTES + 1)
        yield b"more"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await spool(hangs_up_midway(), tmp_dir=tmp_path / "tmp", max_bytes=1 << 30)
    assert files_under(tmp_path / "tmp") == []


async def test_oversized_and_mislabelled_uploads_leave_no_temp_file(tmp_path: Path) -> None:
    data = b"x" * 5000
    with pytest.raises(PayloadTooLarge):
        await spool(chunks_of(data, 1000), tmp_dir=tmp_path / "tmp", max_bytes=4999)
    with pytest.raises(InvalidInput):
        await spool(chunks_of(data, 1000), tmp_dir=tmp_path / "tmp", max_bytes=5000, expected_sha256="0" * 64)
    assert files_under(tmp_path / "tmp") == []
