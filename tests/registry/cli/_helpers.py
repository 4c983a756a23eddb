"""Running the real `registry` CLI in-process against a live server, capturing its output."""

from __future__ import annotations

import json
from typing import Any

import pytest

from registry.cli import main
from tests.conftest import LiveServer


class Cli:
    """``cli("push", ...)`` → (exit code, stdout, stderr), with --url and --token of the live server."""

    def __init__(self, server: LiveServer, token: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.server, self.token, self.capsys = server, token, capsys

    def __call__(self, *args: str, token: str | None = None) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*args, "--url", self.server.url, "--token", token or self.token])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, *args: str, token: str | None = None) -> Any:
        code, out, err = self(*args, "--json", token=token)
        assert code == 0, err
        return json.loads(out)

    def bare(self, *args: str) -> tuple[int, str, str]:
        """Without --url/--token (for --help, --version and offline commands)."""
        self.capsys.readouterr()
        code = main(list(args))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err
