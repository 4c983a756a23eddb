"""Evidently HTML reports of drift checks: built on a report's first request, in a subprocess, kept in the blob
store.

A check keeps the digests of its window's bucket samples (bounded reservoir samples of the production rows, see
``monitoring.ingest``); its report compares those rows with a uniform sample of the baseline's reference file
through Evidently's ``DataDriftPreset``, with the column kinds stated (never inferred) and the methods and
thresholds the check used. The check's own verdicts come from the full profiles; the report is there to look
at the distributions.

Evidently takes seconds and hundreds of MB just to import, so neither the API process nor the CLI ever imports
it: the report is built by ``python -m monitoring.report JOB`` in a child process, which is also the only
place it is imported. A report is built once per check (concurrent first requests in one process wait for
one build) and then served from the blob store.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import select

from monitoring.domain import MonitorBaseline, MonitorCheck
from registry.db import Database
from registry.domain.artifacts import Blob
from registry.errors import NotFound, RegistryError
from registry.services import artifacts
from registry.storage import BlobStore

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from monitoring.profile import Schema

REPORT_ROWS = 5000
"""Rows per side in a report: Evidently's plots need no more, and its run time grows with them."""
BUILD_TIMEOUT = 300.0
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
    "font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "sandbox allow-scripts"
)
"""The report's scripts and styles are inline (plotly included) and may run, but load nothing and send nothing:
no requests, forms or frames, and the sandbox gives the page an origin of its own, so its scripts cannot read
the registry's cookies or storage either."""
HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "private, max-age=86400",
}
"""A report never changes once built (its digest is its identity)."""
METHODS = ("ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi")
"""Method names the check may record, which Evidently knows by the same names."""


class ReportFailed(RegistryError):
    status = 500
    kind = "report-failed"
    code = "report_failed"


@dataclass(frozen=True, slots=True)
class Built:
    digest: str
    size: int


_BUILDING: dict[int, anyio.Lock] = {}


async def _ready(db: Database, store: BlobStore, check: MonitorCheck) -> Built | None:
    if check.report_status != "ready" or check.report_digest is None:
        return None
    async with db.read() as session:
        blob = await session.get(Blob, check.report_digest)
    if blob is None or not await store.exists(blob.sha256):
        return None  # lost (a restored database without its blobs): built again
    return Built(digest=blob.sha256, size=blob.size)


async def html_report(db: Database, store: BlobStore, *, model_name: str, check_id: int, tmp_dir: Path) -> Built:
    """The check's HTML report, built now if it was not yet. NotFound for an unknown check, or one whose window
    had no production rows sampled (``no_report``); ReportFailed when the build fails (tried again on the next
    request)."""
    from monitoring import checks

    async with db.read() as session:
        _, check = await checks.get_check(session, model_name=model_name, check_id=check_id)
    found = await _ready(db, store, check)
    if found is not None:
        return found
    if not check.report_samples:
        raise NotFound(
            f"check {check_id} of {model_name} had no production rows sampled in its window: it has no report",
            code="no_report",
        )
    lock = _BUILDING.setdefault(check.id, anyio.Lock())
    try:
        async with lock:
            async with db.read() as session:  # another request may have built it meanwhile
                current = await session.get(MonitorCheck, check.id)
            found = await _ready(db, store, current) if current is not None else None
            return found or await _build(db, store, check=check, tmp_dir=tmp_dir)
    finally:
        if not lock.locked() and lock.statistics().tasks_waiting == 0:
            _BUILDING.pop(check.id, None)


async def _spool(store: BlobStore, digest: str, path: Path) -> None:
    async with await anyio.open_file(path, "wb") as out:
        async for chunk in store.stream(digest):
            await out.write(chunk)


async def _build(db: Database, store: BlobStore, *, check: MonitorCheck, tmp_dir: Path) -> Built:
    async with db.read() as session:
        baseline = await session.scalar(
            select(MonitorBaseline).where(MonitorBaseline.model_version_id == check.model_version_id)
        )
    if baseline is None:  # a check needs one, and baselines are never removed while their version lives
        raise NotFound(f"v{check.version} has no monitoring baseline", code="no_baseline")
    tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="report-") as name:
        folder = Path(name)
        reference = folder / "reference"
        await _spool(store, baseline.digest, reference)
        current = []
        for i, digest in enumerate(check.report_samples or []):
            if await store.exists(digest):
                await _spool(store, digest, folder / f"current-{i}.parquet")
                current.append(str(folder / f"current-{i}.parquet"))
        if not current:
            raise NotFound(f"the production samples of check {check.id} are gone from the blob store", code="no_report")
        out = folder / "report.html"
        job = {
            "schema": baseline.schema,
            "reference": str(reference),
            "current": current,
            "columns": check.result.get("columns", []),
            "rows": REPORT_ROWS,
            "seed": check.id,
            "title": f"{check.result.get('model')} v{check.version}, check #{check.id}",
            "window": check.result.get("window"),
            "out": str(out),
        }
        (folder / "job.json").write_text(json.dumps(job), encoding="utf-8")
        why = await _run(folder / "job.json")
        if why is not None:
            raise await _failed(db, check, why)
        data = out.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        await store.put(digest, out)  # before the row points at it
    async with db.write() as session:
        await artifacts.record_blob(session, sha256=digest, size=len(data), store=store)
        row = await session.get(MonitorCheck, check.id)
        if row is not None:
            row.report_status, row.report_digest = "ready", digest
    return Built(digest=digest, size=len(data))


async def _run(job: Path) -> str | None:
    """Run the build in a child process (the only one that imports Evidently); the reason when it fails."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    try:
        with anyio.fail_after(BUILD_TIMEOUT):
            done = await anyio.run_process([sys.executable, "-m", "monitoring.report", str(job)], check=False, env=env)
    except TimeoutError:
        return f"it took longer than {BUILD_TIMEOUT:.0f} s"
    if done.returncode == 0:
        return None
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


async def _failed(db: Database, check: MonitorCheck, why: str) -> ReportFailed:
    async with db.write() as session:
        row = await session.get(MonitorCheck, check.id)
        if row is not None:
            row.report_status = "failed"
    return ReportFailed(f"the HTML report of check {check.id} could not be built: {why}")


# -- the child process ------------------------------------------------------------------------------------
def _read_reference(path: Path) -> pa.Table:
    import pyarrow.csv
    import pyarrow.parquet

    with open(path, "rb") as handle:
        parquet = handle.read(4) == b"PAR1"
    return pyarrow.parquet.read_table(path) if parquet else pyarrow.csv.read_csv(path)


def _frame(table: pa.Table, schema: Schema, rows: int, seed: int) -> pd.DataFrame:
    """The monitored columns of a uniform sample of at most ``rows`` rows, numbers as float64 and categories as
    text: the same cast for both sides, as the profiles have it."""
    import pyarrow as pa

    from monitoring.profile import Kind, Schema, conform, reservoir

    monitored = Schema(columns=schema.columns)
    table = conform(table.select([c for c in table.column_names if c in schema.columns]), monitored)
    table = reservoir(table, rows, seed)
    arrays = [
        table.column(name).cast(pa.float64() if kind is Kind.numerical else pa.string())
        for name, kind in schema.columns.items()
    ]
    return pa.table(arrays, names=list(schema.columns)).to_pandas()


def _banner(job: dict[str, Any], reference_rows: int, current_rows: int) -> str:
    window = job.get("window") or {}
    text = (
        f"{job['title']}: window {window.get('start')} to {window.get('end')}. Built from samples: "
        f"{current_rows} production rows against {reference_rows} reference rows. The check's verdicts come "
        "from the full profiles, so a statistic here can differ a little from the check's."
    )
    style = "font-family:sans-serif;font-size:14px;padding:8px 16px;background:#f4f4f4;border-bottom:1px solid #ccc"
    return f'<div style="{style}">{html.escape(text)}</div>'


def build(job: dict[str, Any]) -> None:
    """Write the Evidently report the job describes (see ``_build``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from monitoring.profile import Kind, Schema

    schema = Schema.from_json(job["schema"])
    seed = int(job["seed"])
    reference = _frame(_read_reference(Path(job["reference"])), schema, job["rows"], seed)
    samples = [pq.read_table(path) for path in job["current"]]
    current = _frame(pa.concat_tables(samples, promote_options="permissive"), schema, job["rows"], seed)
    numerical = [c for c, k in schema.columns.items() if k is Kind.numerical]
    categorical = [c for c, k in schema.columns.items() if k is Kind.categorical]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    used = [c for c in job["columns"] if c.get("method") in METHODS and c.get("column") in schema.columns]
    preset = DataDriftPreset(
        columns=numerical + categorical,
        per_column_method={c["column"]: c["method"] for c in used} or None,
        per_column_threshold={c["column"]: float(c["threshold"]) for c in used} or None,
    )
    snapshot = Report([preset]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    out = Path(job["out"])
    snapshot.save_html(str(out))  # a path string: a file object is silently ignored
    page = out.read_text(encoding="utf-8")
    head, body, rest = page.partition("<body>")
    if body:
        page = head + body + _banner(job, len(reference), len(current)) + rest
    out.write_text(page, encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m monitoring.report JOB.json", file=sys.stderr)
        return 2
    try:
        build(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    except Exception as exc:  # the parent reports the last line
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
