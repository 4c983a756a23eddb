"""A new user's first steps: what `registry serve` leaves on disk (owner-only: the database holds webhook and
trigger secrets), and `registry token` run away from the server's folder (refused, never a new empty
database) or through the API with an admin token."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from registry.cli import main
from registry.db import Database
from tests.conftest import (
    PG_ENV,
    LiveServer,
    Tokens,
    _pg_admin,
    bearer,
    free_port,
    start_server,
    stop_server,
    unique,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}


def loose_umask() -> None:
    os.umask(0o022)  # the usual default: what `registry serve` must not rely on


def wait_healthy(url: str, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"server did not start:\n{log.read_text()}")


def test_first_start_leaves_only_owner_only_files(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "stderr.log"
    with open(log, "w") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            preexec_fn=loose_umask,
        )
    try:
        assert proc.stdout is not None
        token = [proc.stdout.readline() for _ in range(2)][1].strip()
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log)
        data = os.urandom(1000)
        digest = hashlib.sha256(data).hexdigest()
        put = httpx.put(f"{url}/api/v1/blobs/{digest}", content=data, headers=bearer(token))
        assert put.status_code in (200, 201), put.text
        home = tmp_path / "modelkeep-data"
        # While the server runs: the WAL and shared-memory files exist too.
        db_files = ["registry.db", "registry.db-wal", "registry.db-shm", "registry.db.write-lock"]
        assert {name: oct(mode(home / name)) for name in db_files} == {name: "0o600" for name in db_files}
        folders = [
            home,
            home / "blobs",
            home / "tmp",
            home / "blobs" / digest[:2],
            home / "blobs" / digest[:2] / digest[2:4],
        ]
        assert {str(f): oct(mode(f)) for f in folders} == {str(f): "0o700" for f in folders}
        assert oct(mode(home / "blobs" / digest[:2] / digest[2:4] / digest)) == "0o600"
        # Nothing anywhere in the data folder is readable by group or others.
        loose = [p for p in home.rglob("*") if mode(p) & 0o077]
        assert loose == []
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_warns_about_a_database_others_can_read(tmp_path: Path) -> None:
    """An existing folder or database keeps the mode its owner gave it; the start says what others can read."""
    home = tmp_path / "data"
    assert main(["token", "create", "first", "--role", "admin", "--data-dir", str(home), "--init", "--json"]) == 0
    os.chmod(home / "registry.db", 0o644)
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry", "serve", "--port", str(port), "--data-dir", str(home)],
            env=clean_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    text = log.read_text()
    assert f"{home / 'registry.db'} is readable by others (mode 0644)" in text and "chmod 600" in text
    assert oct(mode(home / "registry.db")) == "0o644"  # warned, not changed


def test_token_create_away_from_the_server_refuses_instead_of_creating_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [k for k in os.environ if k.startswith("MODELKEEP_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    assert main(["token", "create", "ci-bot", "--role", "writer"]) == 2
    err = capsys.readouterr().err
    expected = tmp_path / "modelkeep-data" / "registry.db"
    assert f"no database at {expected}" in err.replace("\n", "")
    assert "--data-dir" in err and "MODELKEEP_DATABASE_URL" in err and "--url" in err and "--init" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []
    assert main(["token", "list", "--data-dir", str(tmp_path / "elsewhere")]) == 2
    assert list(tmp_path.iterdir()) == []


def test_token_create_init_makes_a_private_database_on_purpose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "fresh"
    assert main(["token", "create", "first", "--role", "admin", "--data-dir", str(home), "--init", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["token"].startswith("mk_")
    assert oct(mode(home)) == "0o700" and oct(mode(home / "registry.db")) == "0o600"
    assert oct(mode(home / "registry.db.write-lock")) == "0o600"
    # Now it exists: no --init needed.
    assert main(["token", "list", "--data-dir", str(home), "--json"]) == 0
    assert [t["name"] for t in json.loads(capsys.readouterr().out)] == ["first"]


def test_database_creates_sqlite_files_owner_only(tmp_path: Path) -> None:
    async def go() -> None:
        db = Database(f"sqlite:///{tmp_path / 'x.db'}")
        try:
            async with db.write() as session:
                from sqlalchemy import text

                await session.execute(text("CREATE TABLE t (x INTEGER)"))
            for name in ("x.db", "x.db-wal", "x.db-shm", "x.db.write-lock"):
                assert oct(mode(tmp_path / name)) == "0o600", name
        finally:
            await db.dispose()

    old = os.umask(0o022)
    try:
        asyncio.run(go())
    finally:
        os.umask(old)


@pytest.fixture(params=["sqlite", "postgres"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An existing database without Modelkeep's schema (an empty SQLite file; a new PostgreSQL database)."""
    if request.param == "sqlite":
        path = tmp_path / "other.db"
        path.touch()
        yield f"sqlite:///{path}"
        return
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
    name = f"mk_empty_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_token_commands_refuse_a_database_without_the_schema(
    unmigrated_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "create", "ci-bot", "--database-url", unmigrated_url]) == 2
    err = capsys.readouterr().err
    assert "has no Modelkeep schema" in err and "registry db upgrade" in err and "Traceback" not in err
    shown = make_url(unmigrated_url).render_as_string(hide_password=True)
    assert shown in err.replace("\n", "")
    # --init migrates it on purpose.
    assert main(["token", "create", "ci-bot", "--database-url", unmigrated_url, "--init", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "ci-bot"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def live_server(database_url: str, api_tokens: Tokens, tmp_path: Path) -> Iterator[LiveServer]:
    (tmp_path / "server-data").mkdir()
    server = start_server(database_url, tmp_path / "server-data")
    yield server
    stop_server(server)


def test_token_commands_through_the_api(
    live_server: LiveServer,
    api_tokens: Tokens,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tmp_path = tmp_path / "elsewhere"
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)  # no database here: the commands below must not need one
    for name in [k for k in os.environ if k.startswith("MODELKEEP_")]:
        monkeypatch.delenv(name)
    name = unique("api-bot")
    code, out, err = run_cli(
        capsys, "token", "create", name, "--role", "writer", "--url", live_server.url, "--token", api_tokens.admin,
        "--json",
    )  # fmt: skip
    assert code == 0, err
    made = json.loads(out)
    assert made["role"] == "writer" and made["token"].startswith("mk_")
    assert httpx.get(f"{live_server.url}/api/v1/models", headers=bearer(made["token"])).status_code == 200

    # MODELKEEP_URL and MODELKEEP_TOKEN, like every other command.
    monkeypatch.setenv("MODELKEEP_URL", live_server.url)
    monkeypatch.setenv("MODELKEEP_TOKEN", api_tokens.admin)
    code, out, err = run_cli(capsys, "token", "list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert any(t["name"] == name for t in listed) and all(not t.get("token") for t in listed)
    code, out, err = run_cli(capsys, "token", "revoke", name)
    assert code == 0 and f"revoked token {name}" in out, err
    assert httpx.get(f"{live_server.url}/api/v1/models", headers=bearer(made["token"])).status_code == 401

    # Not an admin: refused with the server's word, no traceback.
    code, _, err = run_cli(capsys, "token", "create", unique(), "--token", api_tokens.writer)
    assert code == 1 and "Traceback" not in err and "higher role" in err
    # A database and a server at once is a usage error.
    code, _, err = run_cli(capsys, "token", "list", "--url", live_server.url, "--data-dir", str(tmp_path))
    assert code == 2 and "either" in err
    assert list(tmp_path.iterdir()) == []
