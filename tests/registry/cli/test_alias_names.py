"""Alias arguments of the CLI: a malformed name is a usage error (exit 2) that states the naming rule, and any
capitalisation names the same, lower-case alias."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.cli import main
from tests.conftest import LiveServer, Tokens, unique


def _run(server: LiveServer, token: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args, "--url", server.url, "--token", token])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def pushed(live_server: LiveServer, api_tokens: Tokens, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    name = unique("names")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "w.bin").write_bytes(name.encode())
    for _ in range(2):
        assert _run(live_server, api_tokens.maintainer, capsys, "push", name, str(folder))[0] == 0
    return name


@pytest.mark.parametrize("bad", ["a/b", "../x", "", "latest", "v2", "with space", "1abc", "x" * 129])
def test_malformed_alias_is_exit_2_with_the_rule(
    live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str], pushed: str, bad: str
) -> None:
    code, _, err = _run(live_server, api_tokens.maintainer, capsys, "promote", pushed, "1", "--to", bad)
    assert code == 2, err
    assert "--to" in err and ("letter" in err or "reserved" in err)
    assert "Not Found" not in err
    code, _, err = _run(live_server, api_tokens.maintainer, capsys, "rollback", pushed, "--alias", bad)
    assert code == 2, err
    assert "--alias" in err and ("letter" in err or "reserved" in err)


def test_promote_and_rollback_in_any_case_move_the_lower_case_alias(
    live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str], pushed: str
) -> None:
    code, out, err = _run(live_server, api_tokens.maintainer, capsys, "promote", pushed, "1", "--to", "Staging")
    assert code == 0, err
    assert f"{pushed}@staging" in out
    code, out, err = _run(
        live_server, api_tokens.maintainer, capsys, "promote", pushed, "2", "--to", "STAGING", "--json"
    )
    assert code == 0 and json.loads(out)["alias"] == "staging", err
    code, out, err = _run(live_server, api_tokens.maintainer, capsys, "rollback", pushed, "--alias", "StAgInG")
    assert code == 0 and f"{pushed}@staging" in out and "→ v1" in out, err
    # A writer cannot reach the protected alias through a look-alike spelling.
    code, _, err = _run(live_server, api_tokens.writer, capsys, "promote", pushed, "2", "--to", "Production")
    assert code == 1 and "maintainer" in err
