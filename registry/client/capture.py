"""Passive capture for tracked runs: the code (git) and the environment (Python, platform, packages).

Pure functions of the folder they are given: nothing here talks to the registry. ``tracking`` calls them,
uploads the diff and turns any failure into a warning, so a broken capture never stops training.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MAX_DIFF_BYTES = 10 * 1024 * 1024
"""The uncommitted diff is kept up to this size, cut at a file boundary (whole files' changes only)."""
MAX_UNTRACKED = 1000
"""At most this many untracked paths are listed (their contents are never captured)."""
MAX_PACKAGES = 5000
"""At most this many installed packages are recorded (a normal environment has a few hundred)."""
GIT_TIMEOUT = 15.0
"""Seconds any one git command may take; a huge working tree must not hold training up."""

# git status/diff would otherwise refresh and rewrite the index, taking .git/index.lock: a training job
# must never make the user's concurrent `git commit` fail. No prompt may ever wait for a password either.
_GIT_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
_DIFF_HEADER = b"\ndiff --git "


class CaptureError(Exception):
    """Git is present but could not tell us the essentials (commit, branch, remote)."""


@dataclass(frozen=True, slots=True)
class GitState:
    """What code a run ran: the commit plus the uncommitted changes on top of it."""

    root: Path
    commit: str | None
    """None on a branch with no commits yet."""
    branch: str | None
    """None on a detached HEAD."""
    remote: str | None
    """``origin`` (or the first remote) with any credentials removed."""
    dirty: bool | None
    """Tracked files differ from HEAD (staged or not). Untracked files do not count. None if unknown."""
    diff: bytes = b""
    """``git diff HEAD`` (text changes, a/ b/ prefixes: applies with ``git apply``), at most the cap."""
    diff_truncated: bool = False
    untracked: list[str] = field(default_factory=list)
    """Untracked, not ignored files, relative to ``root``, at most ``MAX_UNTRACKED``."""
    untracked_truncated: bool = False
    problems: list[str] = field(default_factory=list)
    """Parts that could not be captured (a diff that timed out ...): the rest is still valid."""


def _git(root: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", *args],
        cwd=root,
        env={**os.environ, **_GIT_ENV},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def _text(result: subprocess.CompletedProcess[bytes]) -> str | None:
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", "replace").strip() or None


def _first_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[0] if lines else "no message"


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if os.name == "posix":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    else:
        proc.kill()


def _git_capped(root: Path, *args: str, max_bytes: int, timeout: float) -> tuple[bytes, bool]:
    """Run git and read at most ``max_bytes`` of its output (+ whether there was more).

    A tracked multi-gigabyte text file must cost neither memory, disk nor forever: we stop reading at the
    cap and kill git, and a watchdog kills it after ``timeout``. Raises CaptureError if git fails or times
    out before reaching the cap.
    """
    with tempfile.TemporaryFile() as stderr:
        # stderr to a file, not a pipe: a warning per file could fill a pipe that nobody reads yet.
        proc = subprocess.Popen(
            ["git", *args],
            cwd=root,
            env={**os.environ, **_GIT_ENV},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            # Its own process group, so a kill also reaches what git started (hooks, aliases): they would
            # otherwise hold the pipe open and keep our read waiting.
            start_new_session=os.name == "posix",
        )
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _kill(proc)

        # A watchdog rather than communicate(timeout=...): we stop reading at the cap, never wait for the rest.
        watchdog = threading.Timer(timeout, expire)
        watchdog.start()
        try:
            assert proc.stdout is not None
            with proc.stdout:
                data = proc.stdout.read(max_bytes + 1)
                if len(data) > max_bytes:
                    _kill(proc)
            code = proc.wait()
        except BaseException:
            _kill(proc)
            proc.wait()
            raise
        finally:
            watchdog.cancel()
        if len(data) > max_bytes:
            return data[:max_bytes], True
        if expired.is_set():
            raise CaptureError(f"git {args[0]} took longer than {timeout:g} s")
        if code != 0:
            stderr.seek(0)
            raise CaptureError(f"git {args[0]} failed: {_first_line(stderr.read(4096))}")
    return data, False


def strip_credentials(remote: str) -> str:
    """Remove secrets from a remote URL: user and password of http(s) URLs (tokens often sit in the user
    part: ``https://ghp_x@github.com/...``), the password of other URLs, and any query or fragment.
    scp-like ``git@host:path`` and local paths carry no secret and are returned unchanged."""
    if "://" not in remote:
        return remote
    parts = urlsplit(remote)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    if parts.username and parts.scheme not in ("http", "https", "ftp", "ftps"):
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _remote(root: Path, timeout: float) -> str | None:
    url = _text(_git(root, "remote", "get-url", "origin", timeout=timeout))
    if url is None:
        names = _text(_git(root, "remote", timeout=timeout))
        if names:
            url = _text(_git(root, "remote", "get-url", names.splitlines()[0], timeout=timeout))
    return strip_credentials(url) if url else None


def _cut_diff(diff: bytes, truncated: bool) -> bytes:
    """Keep whole files' changes only, so what is stored is still a patch ``git apply`` accepts."""
    if not truncated:
        return diff
    cut = diff.rfind(_DIFF_HEADER)
    return diff[: cut + 1] if cut >= 0 else b""


def _untracked(root: Path, *, max_untracked: int, timeout: float) -> tuple[list[str], bool]:
    # ~4 KiB per path is far more than any real path needs; it only bounds what we read back.
    out, more = _git_capped(
        root, "ls-files", "--others", "--exclude-standard", "-z", max_bytes=max_untracked * 4096, timeout=timeout
    )
    paths = [p.decode("utf-8", "replace") for p in out.split(b"\0") if p]
    if more:
        paths = paths[:-1]  # the last one may be cut short
    return paths[:max_untracked], more or len(paths) > max_untracked


def git_state(
    cwd: Path,
    *,
    max_diff_bytes: int = MAX_DIFF_BYTES,
    max_untracked: int = MAX_UNTRACKED,
    timeout: float = GIT_TIMEOUT,
) -> GitState | None:
    """The git state of the repository holding ``cwd``; None if it is not in one (or git is not installed).

    Raises CaptureError if git fails on the essentials. A diff or untracked listing that fails or times
    out is reported in ``problems`` and left empty instead.
    """
    try:
        top = _git(Path(cwd), "rev-parse", "--show-toplevel", timeout=timeout)
    except FileNotFoundError:  # no git executable
        return None
    if top.returncode != 0:
        if b"not a git repository" in top.stderr:
            return None
        raise CaptureError(f"git rev-parse failed in {cwd}: {_first_line(top.stderr)}")
    root = Path(top.stdout.decode("utf-8", "replace").strip())
    commit = _text(_git(root, "rev-parse", "--verify", "-q", "HEAD", timeout=timeout))
    branch = _text(_git(root, "symbolic-ref", "--short", "-q", "HEAD", timeout=timeout))
    remote = _remote(root, timeout)
    problems: list[str] = []

    # Against HEAD: staged and unstaged changes of tracked files together. With no commit yet, against
    # the empty tree (every file git knows about is new). Fixed prefixes and no colour/external tools, so
    # a user's diff.noprefix or difftool settings cannot make the patch unappliable.
    base = commit or _text(_git(root, "hash-object", "-t", "tree", os.devnull, timeout=timeout)) or "HEAD"
    diff_args = ("diff", base, "--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/")
    dirty: bool | None = None
    diff, diff_truncated = b"", False
    try:
        raw, diff_truncated = _git_capped(root, *diff_args, max_bytes=max_diff_bytes, timeout=timeout)
        dirty = bool(raw)
        diff = _cut_diff(raw, diff_truncated)
    except CaptureError as exc:
        problems.append(f"uncommitted diff not captured: {exc}")

    untracked: list[str] = []
    untracked_truncated = False
    try:
        untracked, untracked_truncated = _untracked(root, max_untracked=max_untracked, timeout=timeout)
    except CaptureError as exc:
        problems.append(f"untracked files not listed: {exc}")

    return GitState(
        root=root,
        commit=commit,
        branch=branch,
        remote=remote,
        dirty=dirty,
        diff=diff,
        diff_truncated=diff_truncated,
        untracked=untracked,
        untracked_truncated=untracked_truncated,
        problems=problems,
    )


def packages(*, max_packages: int = MAX_PACKAGES) -> dict[str, str]:
    """Installed distributions, name → version, as ``importlib.metadata`` sees them from this process.

    When a name is installed twice on ``sys.path``, the first one (the one ``import`` finds) wins.
    """
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name and name not in found and len(found) < max_packages:
            found[name] = dist.version
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def environment(*, max_packages: int = MAX_PACKAGES) -> dict[str, Any]:
    """Python version, platform and installed packages of the current process, as a JSON object."""
    installed = packages(max_packages=max_packages + 1)
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": dict(list(installed.items())[:max_packages]),
    }
    if len(installed) > max_packages:
        env["packages_truncated"] = True
    return env
