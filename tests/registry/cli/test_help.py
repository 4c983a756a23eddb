"""`registry --version`, and help pages with readable placeholders (TEXT, PATH, N; flags take none)."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest

from registry.cli import main

PAGES = [
    [],
    ["gate", "run"],
    ["gate", "policy", "set"],
    ["pull"],
    ["push"],
    ["promote"],
    ["versions", "list"],
    ["models", "show"],
    ["webhooks", "add"],
    ["automations", "apply"],
    ["token", "create"],
    ["serve"],
    ["runs", "list"],
    ["runs", "show"],
    ["experiments", "list"],
    ["audit"],
]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"registry (modelkeep) {version('modelkeep')}\n"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: " ".join(p) or "registry")
def test_help_placeholders_are_readable(page: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*page, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Usage: registry" in text
    assert not re.search(r"<(bool|str|int|float|path|file|int range|float range)>", text), text
    assert not re.search(r"--(json|help|force|record)\s+(<\w+>|[A-Z]{2,}\b)", text), text  # flags: no placeholder
