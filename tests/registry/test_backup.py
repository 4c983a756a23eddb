"""`registry export` / `registry import` end to end: a registry built through a live server, archived while it
runs, restored into a fresh database of the *other* engine (SQLite → PostgreSQL, PostgreSQL → SQLite) and
served again; what the API shows must be identical. Damaged archives and used targets are refused (exit 2)
with the target left as it was."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import math
import os
import subprocess
import tarfile
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import delete, func, insert, inspect, select, text
from sqlalchemy.engine import make_url

import registry.client as mk
from registry import migrations
from registry.cli import main
from registry.db import Database
from registry.domain.models import RegisteredModel
from registry.services import backup
from tests.automations.receivers import Receiver, Stack, fresh_database, stack, wait_until
from tests.conftest import PG_ENV, LiveServer, bearer, start_server, stop_server

ENGINES = ["sqlite", "postgres"]
SPEC = """
version: 1
defaults: {alpha: 0.05, on_inconclusive: fail}
gates:
  - {id: accuracy, kind: proportion, outcome: correct, threshold: 0.9}
"""


def base_url(engine: str) -> str:
    if engine == "sqlite":
        return "sqlite:///unused"
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return url


def other(engine: str) -> str:
    return "postgres" if engine == "sqlite" else "sqlite"


def git(repo: Path, *args: str) -> None:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True)


def version_folder(root: Path, name: str, wrong: int) -> Path:
    """Weights plus an evaluation table the gate reads (``wrong`` of 200 predictions miss)."""
    folder = root / name
    (folder / "eval").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(f"weights of {name}".encode() + bytes(range(256)))
    labels = [f"c{i % 3}" for i in range(200)]
    predictions = ["x" if i < wrong else label for i, label in enumerate(labels)]
    pq.write_table(
        pa.table({"id": list(range(200)), "label": labels, "prediction": predictions}),
        folder / "eval" / "results.parquet",
    )
    return folder


@dataclass
class Source:
    engine: str
    stack: Stack
    server: LiveServer
    blobs: str
    """The blob store URL the server writes to."""
    folder: Path
    runs: dict[str, str]
    """training, prep, other → run id."""
    bot_token: str
    revoked_token: str


def build(server: LiveServer, stk: Stack, folder: Path, receiver: Receiver) -> tuple[dict[str, str], str, str]:
    """Two models with versions from tracked runs (params, metrics, a dataset input, a git diff), a gate
    policy and a recorded gate run, promotions and a rollback, a webhook with deliveries, and tokens."""
    admin = stk.tokens.admin
    api = mk.RegistryClient(server.url, admin)
    repo = folder / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("lr = 0.1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "train.py").write_text("lr = 0.05\n")  # uncommitted: the run keeps the diff as a blob

    hook = api.json("POST", "/api/v1/webhooks", json={"url": receiver.url, "events": ["*"]})
    receiver.secrets = [hook["secret"]]
    runs: dict[str, str] = {}
    common: dict[str, Any] = {"client": api, "system_metrics": False, "code_dir": repo}
    with mk.start_run("etl", name="prep", **common) as prep:
        (folder / "data").mkdir()
        (folder / "data" / "train.csv").write_text("id,label\n1,a\n2,b\n")
        prep.log_artifacts(folder / "data", path="data")
    runs["prep"] = prep.id
    api.json(
        "POST", "/api/v1/artifacts", json={"name": "train-set", "kind": "dataset", "run_id": prep.id, "path": "data"}
    )
    with mk.start_run("fraud", name="train", tags={"team": "risk"}, **common) as run:
        run.log_params({"lr": 0.05, "depth": 6})
        for step in range(5):
            run.log_metric("loss", 1 / (step + 3), step=step)
        run.log_metric("auc", 0.1 + 0.2)  # not exactly 0.3: floats must survive bit for bit
        run.use_dataset("train-set", 1, context="training")
        run.log_artifact(folder / "data" / "train.csv", path="notes/copy.csv")
    runs["training"] = run.id
    with mk.start_run("other", name="beta-run", **common) as beta_run:
        beta_run.log_param("kind", "beta")
    runs["other"] = beta_run.id

    api.push("alpha", version_folder(folder, "a1", wrong=40), run_id=run.id, description="first")
    api.push("alpha", version_folder(folder, "a2", wrong=2), run_id=run.id)
    api.push("beta", version_folder(folder, "b1", wrong=0), run_id=beta_run.id)
    maintainer = mk.RegistryClient(server.url, stk.tokens.maintainer)
    maintainer.json("PUT", "/api/v1/models/alpha/gate-policies/production", json={"spec": SPEC})
    gate = api.json("POST", "/api/v1/models/alpha/versions/2/gate-runs", json={"spec": SPEC, "record": True})
    assert gate["verdict"] == "pass", gate
    api.set_alias("alpha", "staging", 1, reason="first look")
    api.set_alias("alpha", "staging", 2)
    api.rollback("alpha", "staging", reason="v2 too slow")
    maintainer.set_alias("alpha", "production", 2, reason="gate passed")
    api.set_alias("beta", "production", 1)
    bot = api.create_token("ci-bot", "writer")["token"]
    revoked = api.create_token("old-bot", "reader")["token"]
    api.revoke_token("old-bot")

    def delivered() -> bool:
        """Every event since the subscription has its delivery, and every delivery succeeded: nothing
        changes any more while the archive is written and compared."""
        events = api.json("GET", "/api/v1/events", params={"limit": 1000})["items"]
        wanted = {e["id"] for e in events if e["created_at"] >= hook["created_at"]}
        rows = api.json("GET", "/api/v1/webhooks/deliveries", params={"limit": 1000})
        return {d["event_id"] for d in rows} >= wanted and all(d["status"] == "succeeded" for d in rows)

    wait_until(delivered, timeout=20, what="every webhook delivery to succeed")
    return runs, bot, revoked


@pytest.fixture(scope="module", params=ENGINES)
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    engine = str(request.param)
    url = base_url(engine)
    folder = tmp_path_factory.mktemp(f"source-{engine}")
    with pytest.MonkeyPatch.context() as env, stack(url, folder) as stk:
        env.setenv("GIT_CONFIG_GLOBAL", str(folder / "no-global-gitconfig"))
        env.setenv("GIT_CONFIG_NOSYSTEM", "1")
        env.setenv("GIT_CEILING_DIRECTORIES", str(folder))
        server = stk.serve()
        with Receiver() as receiver:
            runs, bot, revoked = build(server, stk, folder, receiver)
        blobs = (folder / "blobs").resolve().as_uri()
        yield Source(engine, stk, server, blobs, folder, runs, bot, revoked)


# -- helpers ------------------------------------------------------------------------------------------------
def export(src: Source, archive: Path, *more: str) -> dict[str, Any]:
    """Run `registry export --json` on the source's database and blob store; returns what it printed."""
    args = ["export", str(archive), "--database-url", src.stack.database_url, "--blob-store-url", src.blobs]
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = main([*args, *more, "--json"])
    assert code == 0, printed.getvalue()
    return dict(json.loads(printed.getvalue()))


@dataclass(frozen=True)
class Target:
    url: str
    folder: Path

    @property
    def blobs(self) -> str:
        return (self.folder / "blobs").resolve().as_uri()

    def args(self) -> list[str]:
        return ["--database-url", self.url, "--blob-store-url", self.blobs, "--data-dir", str(self.folder)]


@contextmanager
def target(engine: str, folder: Path) -> Iterator[Target]:
    folder.mkdir(parents=True, exist_ok=True)
    with fresh_database(base_url(engine), folder) as url:
        yield Target(url, folder)


def import_into(tgt: Target, archive: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["import", str(archive), *tgt.args()])
    return code, capsys.readouterr().err


@contextmanager
def serving(tgt: Target) -> Iterator[LiveServer]:
    server = start_server(tgt.url, tgt.folder, extra_env={"MODELKEEP_BLOB_STORE_URL": tgt.blobs})
    try:
        yield server
    finally:
        stop_server(server)


def views(server: LiveServer, token: str, runs: dict[str, str], models: list[str]) -> dict[str, Any]:
    """What the API shows of everything the source holds, by path."""
    paths = [
        "/api/v1/models",
        "/api/v1/tokens",
        "/api/v1/webhooks",
        "/api/v1/webhooks/deliveries?limit=1000",
        "/api/v1/events?limit=1000",
        "/api/v1/audit?limit=1000",
        "/api/v1/experiments",
        "/api/v1/artifacts/train-set/versions/1",
    ]
    for name in models:
        paths += [f"/api/v1/models/{name}", f"/api/v1/models/{name}/versions", f"/api/v1/models/{name}/promotions"]
        paths += [f"/api/v1/models/{name}/gate-policies", f"/api/v1/models/{name}/aliases/production"]
        paths += [f"/api/v1/models/{name}/versions/{v}" for v in (1, 2) if name == "alpha" or v == 1]
        paths += [f"/api/v1/models/{name}/versions/{v}/gate-runs" for v in (1, 2) if name == "alpha"]
    for run_id in runs.values():
        paths += [f"/api/v1/runs/{run_id}", f"/api/v1/runs/{run_id}/artifacts/", f"/api/v1/runs/{run_id}/metrics/loss"]
    found = {}
    with httpx.Client(base_url=server.url, headers=bearer(token), timeout=30) as http:
        for path in paths:
            response = http.get(path)
            found[path] = (response.status_code, response.json())
    return found


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:*") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def rows_of(files: dict[str, bytes], table: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in files[f"tables/{table}.jsonl"].splitlines()]


def repack(archive: Path, dest: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """A copy of ``archive`` with each member's bytes passed through ``change`` (None drops the member)."""
    with tarfile.open(archive, "r:*") as tar, tarfile.open(dest, "w") as out:
        for member in tar:
            data = change(member.name, tar.extractfile(member).read())  # type: ignore[union-attr]
            if data is not None:
                member.size = len(data)
                out.addfile(member, io.BytesIO(data))
    return dest


def counts(url: str) -> dict[str, int]:
    """Rows per table (an empty dict for a SQLite file that does not exist)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(str(parsed.database)).exists():
        return {}

    async def main() -> dict[str, int]:
        db = Database(url)
        try:
            async with db.read() as session:
                names = await session.run_sync(lambda s: inspect(s.connection()).get_table_names())
                return {n: await session.scalar(text(f'SELECT count(*) FROM "{n}"')) or 0 for n in sorted(names)}
        finally:
            await db.dispose()

    return asyncio.run(main())


def migrate(url: str) -> None:
    async def main() -> None:
        db = Database(url)
        try:
            await migrations.upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(main())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the round trips --------------------------------------------------------------------------------------
def test_a_full_archive_restores_identically_on_the_other_engine(
    source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / ("all.tar.gz" if source.engine == "sqlite" else "all.tar")
    made = export(source, archive)  # the source server keeps running meanwhile
    assert made["scope"] == "all" and made["blobs"] > 0 and archive.stat().st_mode & 0o077 == 0
    files = members(archive)
    manifest = json.loads(files["manifest.json"])
    assert next(iter(files)) == "manifest.json" and manifest["schema_revision"] == backup.head_revision()
    in_db = set(counts(source.stack.database_url)) - {"alembic_version"}
    assert [t["name"] for t in manifest["tables"]] == [t.name for t in backup.tables()]
    assert {t["name"] for t in manifest["tables"]} == in_db  # every table, found from the metadata
    for name, data in files.items():
        if name != "manifest.json":
            assert manifest["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()

    with target(other(source.engine), tmp_path / "restored") as tgt:
        code, err = import_into(tgt, archive, capsys)
        assert code == 0, err
        archived = {t["name"]: t["rows"] for t in manifest["tables"]}
        assert counts(tgt.url) == archived | {"alembic_version": 1}  # every archived row, nothing else
        admin = source.stack.tokens.admin  # a token of the source authenticates against the restored registry
        before = views(source.server, admin, source.runs, ["alpha", "beta"])
        with serving(tgt) as server:
            after = views(server, admin, source.runs, ["alpha", "beta"])
            assert after == before
            run = after[f"/api/v1/runs/{source.runs['training']}"][1]
            assert run["params"] == {"lr": "0.05", "depth": "6"} and run["tags"]["team"] == "risk"
            assert {m["key"]: m["value"] for m in run["metrics"]}["auc"] == 0.1 + 0.2
            assert [i["name"] for i in run["inputs"]] == ["train-set"] and run["git"]["dirty"] is True
            assert len(after["/api/v1/models/alpha/promotions"][1]) == 4
            with httpx.Client(base_url=server.url, timeout=30) as http:
                assert http.get("/api/v1/models", headers=bearer(source.bot_token)).status_code == 200
                assert http.get("/api/v1/models", headers=bearer(source.revoked_token)).status_code == 401
            api = mk.RegistryClient(server.url, admin)
            pulled = api.pull("alpha@production", tmp_path / "pulled")
            assert {f["path"]: f["sha256"] for f in pulled["files"]} == {
                p.relative_to(source.folder / "a2").as_posix(): sha256(p)
                for p in (source.folder / "a2").rglob("*")
                if p.is_file()
            }
            assert all(sha256(tmp_path / "pulled" / f["path"]) == f["sha256"] for f in pulled["files"])
            # The restored registry carries on: ids continue past the restored ones (sequences reset).
            assert api.push("alpha", version_folder(tmp_path, "a3", wrong=1))["version"] == 3
            assert api.create_token("after-restore", "reader")["name"] == "after-restore"


def test_a_model_archive_holds_that_model_and_its_lineage_only(
    source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "alpha.tar"
    made = export(source, archive, "--model", "alpha")
    files = members(archive)
    assert json.loads(files["manifest.json"])["scope"] == {"model": "alpha"}
    assert [m["name"] for m in rows_of(files, "registered_models")] == ["alpha"]
    model_id = rows_of(files, "registered_models")[0]["id"]
    assert {v["model_id"] for v in rows_of(files, "model_versions")} == {model_id}
    assert [v["version"] for v in rows_of(files, "model_versions")] == [1, 2]
    # The run the versions came from, and the run that produced the dataset it consumed; not beta's.
    assert {r["id"] for r in rows_of(files, "runs")} == {source.runs["training"], source.runs["prep"]}
    assert {p["run_id"] for p in rows_of(files, "params")} == {source.runs["training"]}
    assert [a["name"] for a in rows_of(files, "artifact_versions")] == ["train-set"]
    assert len(rows_of(files, "promotions")) == 4 and len(rows_of(files, "gate_runs")) == 1
    for table in ("api_tokens", "webhooks", "deliveries", "events", "audit_log", "outbox_cursors"):
        assert rows_of(files, table) == [], table

    # Exactly the blobs those rows reference: version files, run files, dataset files, the git diffs.
    referenced = {f["sha256"] for t in ("version_files", "run_files", "artifact_files") for f in rows_of(files, t)}
    referenced |= {r["git_diff_sha256"] for r in rows_of(files, "runs") if r["git_diff_sha256"]}
    archived = {name.removeprefix("blobs/") for name in files if name.startswith("blobs/")}
    assert archived == referenced == {b["sha256"] for b in rows_of(files, "blobs")}
    beta_weights = sha256(source.folder / "b1" / "weights.bin")
    assert beta_weights not in archived and made["blobs"] == len(archived)

    with target(other(source.engine), tmp_path / "restored") as tgt:
        migrate(tgt.url)  # an empty registry prepared with the schema (holds only the default experiment)
        code, err = import_into(tgt, archive, capsys)
        assert code == 0, err
        capsys.readouterr()
        assert main(["token", "create", "restorer", "--role", "admin", "--database-url", tgt.url, "--json"]) == 0
        token = json.loads(capsys.readouterr().out)["token"]
        before = views(source.server, source.stack.tokens.admin, source.runs, ["alpha"])
        with serving(tgt) as server:
            after = views(server, token, {k: v for k, v in source.runs.items() if k != "other"}, ["alpha"])
            for path, shown in after.items():
                if path.startswith(("/api/v1/models/alpha", "/api/v1/runs/", "/api/v1/artifacts/")):
                    assert shown == before[path], path
            assert [m["name"] for m in after["/api/v1/models"][1]["items"]] == ["alpha"]
            with httpx.Client(base_url=server.url, headers=bearer(token), timeout=30) as http:
                assert http.get("/api/v1/models/beta").status_code == 404
                assert http.get(f"/api/v1/runs/{source.runs['other']}").status_code == 404
            pulled = mk.RegistryClient(server.url, token).pull("alpha/1", tmp_path / "pulled")
            assert all(sha256(tmp_path / "pulled" / f["path"]) == f["sha256"] for f in pulled["files"])


# -- refusals ---------------------------------------------------------------------------------------------
@pytest.fixture
def small_archive(source: Source, tmp_path: Path) -> Path:
    archive = tmp_path / "beta.tar"
    export(source, archive, "--model", "beta")
    return archive


def flip_a_blob_byte(archive: Path, folder: Path) -> Path:
    def change(name: str, data: bytes) -> bytes:
        return data[:10] + bytes([data[10] ^ 1]) + data[11:] if name.startswith("blobs/") else data

    return repack(archive, folder / "damaged.tar", change)


def change_a_row(archive: Path, folder: Path) -> Path:
    def change(name: str, data: bytes) -> bytes:
        return data.replace(b'"beta"', b'"BETA"') if name == "tables/params.jsonl" else data

    return repack(archive, folder / "damaged.tar", change)


def drop_the_last_member(archive: Path, folder: Path) -> Path:
    last = list(members(archive))[-1]
    return repack(archive, folder / "damaged.tar", lambda name, data: None if name == last else data)


def cut_short(archive: Path, folder: Path) -> Path:
    data = archive.read_bytes()
    (folder / "cut.tar").write_bytes(data[: len(data) - 3000])  # past the end marker, into the last blob
    return folder / "cut.tar"


def cut_short_gzipped(archive: Path, folder: Path) -> Path:
    data = gzip.compress(archive.read_bytes())
    (folder / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    return folder / "cut.tar.gz"


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (flip_a_blob_byte, "does not match the manifest's sha256"),
        (change_a_row, "tables/params.jsonl does not match the manifest's sha256"),
        (drop_the_last_member, "is truncated: 1 member(s) missing"),
        (cut_short, "truncated"),
        (cut_short_gzipped, "is truncated or damaged"),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
@pytest.mark.parametrize("prepared", [True, False], ids=["migrated-target", "new-target"])
def test_a_damaged_archive_is_refused_and_the_target_left_unchanged(
    source: Source,
    small_archive: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path, Path], Path],
    says: str,
    prepared: bool,
) -> None:
    damaged = damage(small_archive, tmp_path)
    with target(other(source.engine), tmp_path / "t") as tgt:
        if prepared:
            migrate(tgt.url)
        before = counts(tgt.url)
        code, err = import_into(tgt, damaged, capsys)
        assert code == 2 and says in err, err
        assert counts(tgt.url) == before  # a new SQLite target is not even created


def test_a_used_target_or_another_schema_revision_is_refused(
    source: Source, small_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with target(other(source.engine), tmp_path / "used") as tgt:
        migrate(tgt.url)
        assert main(["token", "create", "someone", "--database-url", tgt.url]) == 0
        before = counts(tgt.url)
        code, err = import_into(tgt, small_archive, capsys)
        assert code == 2 and "not empty (1 api_tokens)" in err, err
        assert counts(tgt.url) == before

    def older(name: str, data: bytes) -> bytes | None:
        if name != "manifest.json":
            return data
        return json.dumps(json.loads(data) | {"schema_revision": "0001"}).encode()

    with target(other(source.engine), tmp_path / "fresh") as tgt:
        code, err = import_into(tgt, repack(small_archive, tmp_path / "old.tar", older), capsys)
        assert code == 2 and "schema revision 0001" in err, err
        assert counts(tgt.url) == {} or set(counts(tgt.url).values()) == {0}

    (tmp_path / "not.tar").write_bytes(b"not a tar file at all")
    with target(other(source.engine), tmp_path / "junk") as tgt:
        code, err = import_into(tgt, tmp_path / "not.tar", capsys)
        assert code == 2 and "cannot read" in err, err


def test_export_refuses_unknown_models_and_existing_files(source: Source, tmp_path: Path) -> None:
    args = ["--database-url", source.stack.database_url, "--blob-store-url", source.blobs]
    assert main(["export", str(tmp_path / "x.tar"), "--model", "nope", *args]) == 4
    assert not (tmp_path / "x.tar").exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "x.tar").write_bytes(b"keep")
    assert main(["export", str(tmp_path / "x.tar"), *args]) == 2
    assert (tmp_path / "x.tar").read_bytes() == b"keep"
    assert main(["export", str(tmp_path / "y.tar"), "--database-url", f"sqlite:///{tmp_path / 'none.db'}"]) == 2


# -- the snapshot ---------------------------------------------------------------------------------------
async def test_export_reads_one_snapshot_while_others_write(source: Source, tmp_path: Path) -> None:
    """A model committed after the export's snapshot began is not in the archive, half or whole."""
    db = Database(source.stack.database_url)
    name = f"late-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    try:
        async with db.read() as session:
            await backup.pin(session)
            if db.is_postgres:
                assert await session.scalar(text("SHOW transaction_isolation")) == "repeatable read"
                assert await session.scalar(text("SHOW transaction_read_only")) == "on"
            async with db.write() as writer:
                await writer.execute(
                    insert(RegisteredModel.__table__).values(name=name, last_version=0, created_at=now, updated_at=now)
                )
            snap = await backup.snapshot(session, spool=tmp_path)
        names = [json.loads(line)["name"] for line in (tmp_path / "registered_models.jsonl").read_text().splitlines()]
        assert names == ["alpha", "beta"] and snap.tables[0].name == backup.tables()[0].name
    finally:
        async with db.write() as writer:
            await writer.execute(delete(RegisteredModel.__table__).where(RegisteredModel.name == name))
            assert await writer.scalar(select(func.count()).select_from(RegisteredModel.__table__)) == 2
        await db.dispose()


# -- values and rules -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("datetime", datetime(2024, 5, 1, 12, 0, 3, 123456, tzinfo=UTC)),
        (
            "datetime",
            datetime(2024, 5, 1, 14, 0, tzinfo=UTC).astimezone(zoneinfo.ZoneInfo("Europe/Paris")),
        ),
        ("date", date(2024, 2, 29)),
        ("interval", timedelta(days=2, microseconds=7)),
        ("bytes", bytes(range(256))),
        ("decimal", Decimal("12345678901234567890.000000001")),
        ("uuid", uuid.UUID(int=7)),
        ("plain", 0.1 + 0.2),
        ("plain", 2**62),
        ("plain", 'ünïcode \u2028 and quotes "'),
        ("json", {"nested": [1, 2.5, None, True, "x"], "empty": {}}),
        ("json", ["a list at the top"]),
    ],
)
def test_values_round_trip_exactly(kind: str, value: Any) -> None:
    line = json.dumps({"v": backup.encode_value(kind, value)})
    back = backup.decode_value(kind, json.loads(line)["v"])
    assert back == value and type(back) is type(value)
    if isinstance(value, datetime):
        assert back.utcoffset() == value.utcoffset()


def test_nan_survives_the_archive_encoding() -> None:
    assert math.isnan(backup.decode_value("plain", json.loads(json.dumps(backup.encode_value("plain", math.nan)))))


def test_the_blob_digest_rules_name_real_columns() -> None:
    by_name = {t.name: t for t in backup.tables()}
    for table, column in backup.BLOB_DIGEST_COLUMNS:
        assert column in by_name[table].c, f"{table}.{column} is gone: update BLOB_DIGEST_COLUMNS"
