"""The run page: params, tags, inputs, provenance (git, the uncommitted diff, the environment), and metric charts
fed by a downsampled series endpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get
from litestar.response import Stream, Template

from registry.api._bytes import blob_response
from registry.db import Database
from registry.errors import NotFound
from registry.services import experiments, names, runs
from registry.storage import BlobStore
from registry.ui import sessions
from registry.ui._render import page

log = logging.getLogger("registry.ui")
MAX_POINTS = 5_000
"""A series longer than this reaches the browser reduced to at most this many points (min-max per step range,
in the database): a chart is at most a few thousand pixels wide, and a million points would cost seconds to
read, send and draw."""
SYSTEM_PREFIX = "system/"
DIFF_SHOWN = 256 * 1024
"""Bytes of the uncommitted diff drawn on the page; a longer diff is cut there (the whole is a download)."""


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str
    """``file`` (a file header), ``hunk`` (``@@``), ``add``, ``del`` or ``ctx``."""
    text: str


@dataclass(frozen=True, slots=True)
class Diff:
    lines: list[DiffLine]
    size: int
    cut: bool
    files: int
    added: int
    removed: int


def diff_lines(text: str) -> list[DiffLine]:
    """A unified diff (``git diff`` output) as classified lines. File headers are told from added and removed
    lines by position: ``---``/``+++`` count as headers only right after a ``diff``/``index`` line, so a removed
    line that reads ``-- x`` stays a removal."""
    found: list[DiffLine] = []
    in_header = False
    # Only "\n" ends a line in a diff (str.splitlines() would also cut at form feeds, U+2028 and others).
    for line in text.removesuffix("\n").split("\n") if text else []:
        line = line.removesuffix("\r")
        if line.startswith(("diff ", "index ", "new file mode", "deleted file mode", "similarity ", "rename ")):
            in_header = True
            found.append(DiffLine("file", line))
        elif in_header and line.startswith(("--- ", "+++ ", "old mode", "new mode", "Binary files")):
            found.append(DiffLine("file", line))
        elif line.startswith("@@"):
            in_header = False
            found.append(DiffLine("hunk", line))
        elif line.startswith("+"):
            found.append(DiffLine("add", line))
        elif line.startswith("-"):
            found.append(DiffLine("del", line))
        else:
            found.append(DiffLine("ctx", line))
    return found


async def read_diff(store: BlobStore, digest: str, size: int) -> Diff:
    chunks: list[bytes] = []
    got = 0
    stream = store.stream(digest, chunk_size=DIFF_SHOWN)
    try:
        async for chunk in stream:
            chunks.append(chunk)
            got += len(chunk)
            if got >= DIFF_SHOWN:
                break
    finally:
        closing = getattr(stream, "aclose", None)
        if closing is not None:
            await closing()
    data = b"".join(chunks)[:DIFF_SHOWN]
    cut = size > len(data)
    text = data.decode("utf-8", errors="replace")
    if cut and "\n" in text:
        text = text[: text.rindex("\n")]  # never draw half a line
    lines = diff_lines(text)
    return Diff(
        lines=lines,
        size=size,
        cut=cut,
        files=sum(1 for line in lines if line.kind == "file" and line.text.startswith("diff ")),
        added=sum(1 for line in lines if line.kind == "add"),
        removed=sum(1 for line in lines if line.kind == "del"),
    )


def environment_of(captured: Any) -> dict[str, Any]:
    """The run's environment as the page shows it. The API takes any JSON object, so a field the SDK writes as
    an object (``packages``) may arrive as something else: then it is shown as text, never trusted."""
    env = dict(captured) if isinstance(captured, dict) else {}
    packages = env.get("packages")
    if packages is not None and not isinstance(packages, dict):
        env["packages"] = {}
        env["packages_text"] = str(packages)[:2000]
    return env


def series_body(key: str, found: runs.SeriesForChart) -> dict[str, Any]:
    """What the series endpoint answers (the charts read it; ``bench/bench_ui.py`` times its encoding)."""
    return {
        "key": key,
        "total": found.total,
        "reduced": found.reduced,
        "steps": found.steps,
        "times": found.timestamps,
        "values": found.values,
    }


class RunPages(Controller):
    path = "/ui/runs"
    guards = [sessions.signed_in]
    include_in_schema = False

    @get("/{run_id:str}")
    async def run(self, request: Request[Any, Any, Any], run_id: str, db: Database, store: BlobStore) -> Template:
        async with db.read() as session:
            view = await runs.view(session, run_id=run_id)
            experiment = await experiments.get(session, experiment_id=view.run.experiment_id)
            produced = await runs.versions_of(session, run_id=run_id)
            diff_size = await runs.diff_size(session, run=view.run)
        diff, diff_missing = None, False
        if view.run.git_diff_sha256 and diff_size is not None:
            try:
                diff = await read_diff(store, view.run.git_diff_sha256, diff_size)
            except FileNotFoundError:  # the blob's bytes are gone from the store: the rest of the page still shows
                log.warning("run %s: diff blob %s is missing from the store", run_id, view.run.git_diff_sha256)
                diff_missing = True
        training = [m for m in view.metrics if not m.key.startswith(SYSTEM_PREFIX)]
        system = [m for m in view.metrics if m.key.startswith(SYSTEM_PREFIX)]
        return page(
            request,
            "run.html",
            view=view,
            experiment=experiment,
            training=training,
            system=system,
            diff=diff,
            diff_missing=diff_missing,
            produced=produced,
            env=environment_of(view.run.environment),
        )

    @get("/{run_id:str}/diff")
    async def diff(self, run_id: str, db: Database, store: BlobStore) -> Stream:
        """The run's whole uncommitted diff, as a download."""
        async with db.read() as session:
            view = await runs.view(session, run_id=run_id)
            size = await runs.diff_size(session, run=view.run)
        if not view.run.git_diff_sha256 or size is None:
            raise NotFound(f"run {run_id} has no uncommitted diff")
        return await blob_response(store, view.run.git_diff_sha256, size, filename=f"{run_id}.diff")

    @get("/{run_id:str}/series")
    async def series(self, run_id: str, key: str, db: Database) -> dict[str, Any]:
        """One metric of the run for a chart: ``steps``, ``times`` (ms since the epoch) and ``values``, every
        point up to ``MAX_POINTS``, past that each of ``MAX_POINTS / 2`` step ranges as its lowest and highest
        value (reduced in the database); ``total`` is the number of points stored, ``reduced`` says which."""
        names.key(key, what="metric key")
        async with db.read() as session:
            found = await runs.series_for_chart(session, run_id=run_id, key=key, limit=MAX_POINTS)
        return series_body(key, found)
