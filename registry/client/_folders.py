"""Local folders for ``pull``: checked destinations, a staging folder beside them, and the swap into place."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from registry import errors

log = logging.getLogger(__name__)


def check_destination(dest: Path, *, force: bool) -> bool:
    """Whether ``dest`` already holds files. Raises InvalidInput when it is not a folder, or holds files
    and ``force`` is false (``destination_not_empty``): mixing a version with other files would leave a
    folder that equals no version."""
    if dest.exists() and not dest.is_dir():
        raise errors.InvalidInput(f"{dest} exists and is not a folder", code="destination_not_a_folder")
    occupied = dest.is_dir() and any(dest.iterdir())
    if occupied and not force:
        raise errors.InvalidInput(
            f"{dest} is not empty: pulling into it would mix the version with the files already there "
            "(force replaces them)",
            code="destination_not_empty",
        )
    return occupied


def relative_paths(paths: Iterable[str], root: Path) -> list[PurePosixPath]:
    """The stored paths as safe relative paths; raises InvalidInput for one that would land outside ``root``."""
    safe: list[PurePosixPath] = []
    for path in paths:
        rel = PurePosixPath(path)
        if not rel.parts or rel.is_absolute() or ".." in rel.parts:
            raise errors.InvalidInput(f"refusing to write {path!r} outside {root}")
        safe.append(rel)
    return safe


def make_staging(dest: Path) -> Path:
    """A new hidden folder beside ``dest``: same filesystem, so the final renames are atomic."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    while True:
        staging = dest.with_name(f".{dest.name}.pull-{secrets.token_hex(4)}")
        try:
            staging.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:  # named after dest: the staging folder is ours, not the caller's
            raise OSError(exc.errno, f"cannot create a folder beside it: {exc.strerror}", str(dest)) from exc
        return staging


def swap_in(staging: Path, dest: Path) -> None:
    """Put the complete ``staging`` folder at ``dest``, replacing what is there.

    A missing or empty ``dest`` is a single rename. A full one is renamed away first, then ``staging``
    renamed into place, then the old folder removed: a reader of ``dest`` sees the old version or the new
    one, never a mix of files, and for at most the moment between two renames no folder at all. The folder
    keeps the permissions ``dest`` had."""
    if not dest.exists():
        os.rename(staging, dest)
        return
    shutil.copymode(dest, staging)
    if not any(dest.iterdir()):
        os.replace(staging, dest)  # POSIX rename replaces an empty directory in one step
        return
    old = dest.with_name(f".{dest.name}.old-{secrets.token_hex(4)}")
    os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except OSError:
        os.rename(old, dest)
        raise
    try:
        shutil.rmtree(old)
    except OSError as exc:  # the new version is in place: a leftover old folder is garbage, not a failed pull
        log.warning("pulled into %s, but could not remove the old contents at %s: %s", dest, old, exc)
