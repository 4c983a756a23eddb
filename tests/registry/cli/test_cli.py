"""The `registry` CLI against a real server: output, --json, exit codes, messages without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from registry.cli import main
from registry.db import Database
from tests.conftest import LiveServer, Tokens, start_server, stop_server, unique


class Cli:
    def __init__(self, server: LiveServer, token: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.server, self.token, self.capsys = server, token, capsys

    def __call__(self, *args: str, token: str | None = None) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*args, "--url", self.server.url, "--token", token or self.token])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, *args: str) -> object:
        code, out, err = self(*args, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(live_server, api_tokens.maintainer, capsys)


def _folder(tmp_path: Path, content: bytes = b"weights") -> Path:
    folder = tmp_path / "model"
    (folder / "conf").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(content)
    (folder / "conf" / "params.json").write_text('{"depth": 3}')
    return folder


def test_push_promote_show_rollback_pull(cli: Cli, tmp_path: Path) -> None:
    name = unique()
    v1 = cli.json("push", name, str(_folder(tmp_path, b"one")))
    assert v1["version"] == 1 and sorted(f["path"] for f in v1["files"]) == ["conf/params.json", "weights.bin"]
    (tmp_path / "model" / "weights.bin").write_bytes(b"two")
    assert cli.json("push", name, str(tmp_path / "model"))["version"] == 2

    assert cli("promote", name, "1", "--to", "production", "--reason", "launch")[0] == 0
    code, out, _ = cli("promote", name, "2", "--to", "production", "--reason", "better", "--expect", "1")
    assert code == 0 and "v1 → v2" in out
    shown = cli.json("versions", "show", name, "2")
    assert shown["aliases"] == ["production"]
    assert shown["promotions"][0] | {"created_at": None, "id": None} == {
        "alias": "production",
        "from_version": 1,
        "to_version": 2,
        "action": "promote",
        "actor": "test-maintainer",
        "reason": "better",
        "forced": False,
        "gate_run_id": None,
        "created_at": None,
        "id": None,
    }

    code, out, _ = cli("rollback", name, "--alias", "production")
    assert code == 0 and "v2 → v1" in out
    dest = tmp_path / "pulled"
    assert cli("pull", f"{name}@production", str(dest))[0] == 0
    assert (dest / "weights.bin").read_bytes() == b"one"
    assert (dest / "conf" / "params.json").read_text() == '{"depth": 3}'
    assert cli("pull", f"{name}/2", str(tmp_path / "v2"))[0] == 0
    assert (tmp_path / "v2" / "weights.bin").read_bytes() == b"two"

    listed = cli.json("models", "list")
    assert any(m["name"] == name and m["latest_version"] == 2 for m in listed)
    versions = cli.json("versions", "list", name)
    assert [v["version"] for v in versions] == [1, 2]
    assert set(versions[0]) >= {"version", "run_id", "source", "digest", "created_at", "created_by"}


def test_exit_codes_and_messages(cli: Cli, api_tokens: Tokens, tmp_path: Path) -> None:
    name = unique()
    cli("push", name, str(_folder(tmp_path)))
    code, _, err = cli("versions", "show", name, "9")
    assert code == 4 and "has no version 9" in err and "Traceback" not in err
    code, _, err = cli("models", "show", unique("missing"))
    assert code == 4 and "does not exist" in err
    code, _, err = cli("pull", name, str(tmp_path / "x"))
    assert code == 2 and "MODEL@ALIAS" in err
    code, _, err = cli("promote", name, "1", "--to", "latest")
    assert code == 2 and "reserved" in err
    assert cli("promote", name, "1", "--to", "staging")[0] == 0
    code, _, err = cli("promote", name, "1", "--to", "staging", "--expect", "none")
    assert code == 1 and "someone moved it" in err and "hint" in err
    code, _, err = cli("promote", name, "1", "--to", "production", token=api_tokens.writer)
    assert code == 1 and "maintainer" in err
    code, _, err = cli("models", "list", token="mk_bad_token")
    assert code == 1 and "MODELKEEP_TOKEN" in err
    assert main(["promote", name]) == 2  # missing --to: a usage error


def test_unreachable_server_is_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["models", "list", "--url", "http://127.0.0.1:9", "--token", "x"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach the registry" in err and "Traceback" not in err


def test_token_commands_use_the_database_directly(
    db: Database,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ``db``: the database a server made (migrated); the commands refuse one without the schema.
    monkeypatch.chdir(tmp_path)  # the commands below name their database: nothing may appear here
    name = unique("ci-bot")
    assert main(["token", "create", name, "--role", "writer", "--database-url", database_url, "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["role"] == "writer" and made["token"].startswith("mk_")
    assert main(["token", "list", "--database-url", database_url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert any(t["name"] == name for t in listed) and all("token" not in t for t in listed)
    assert main(["token", "revoke", name, "--database-url", database_url]) == 0
    assert main(["token", "create", unique(), "--role", "emperor", "--database-url", database_url]) == 2
    assert "unknown role" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_revoked_token_is_refused_by_the_server(
    cli: Cli, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique("short-lived")
    main(["token", "create", name, "--role", "reader", "--database-url", database_url, "--json"])
    secret = json.loads(capsys.readouterr().out)["token"]
    assert cli("models", "list", token=secret)[0] == 0
    main(["token", "revoke", name, "--database-url", database_url])
    code, _, err = cli("models", "list", token=secret)
    assert code == 1 and "revoked" in err


def test_serve_on_embedded_defaults_prints_the_admin_token_once(tmp_path: Path) -> None:
    """A fresh folder, no configuration: SQLite + local blobs under ./modelkeep-data, admin token shown once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELKEEP_")}
    port = str(__import__("tests.conftest", fromlist=["free_port"]).free_port())
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry", "serve", "--port", port],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)] if proc.stdout else []
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    token = lines[1].strip()
    assert "admin token" in lines[0] and token.startswith("mk_")
    assert (tmp_path / "modelkeep-data" / "registry.db").exists()
    again = start_server(f"sqlite:///{tmp_path / 'modelkeep-data' / 'registry.db'}", tmp_path / "modelkeep-data")
    try:
        import httpx

        response = httpx.get(f"{again.url}/api/v1/tokens", headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 200 and [t["name"] for t in response.json()] == ["admin"]
        schema = httpx.get(f"{again.url}/schema/openapi.json")
        assert schema.status_code == 200
    finally:
        stop_server(again)
    assert "admin token" not in again.log.read_text()


def test_a_bad_setting_in_the_environment_is_named_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELKEEP_LOG_LEVEL", "loud")
    monkeypatch.setenv("MODELKEEP_DB_POOL_SIZE", "many")
    assert main(["token", "list"]) == 2
    err = capsys.readouterr().err
    assert "MODELKEEP_LOG_LEVEL='loud'" in err and "MODELKEEP_DB_POOL_SIZE='many'" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []
