"""The shell and Python examples in README.md and docs/*.md, run as a reader would run them, against a real
server, so the documentation cannot drift from the product.

A fenced ``bash``/``sh``/``python`` block preceded by ``<!-- run -->`` is an example: every marked block of one
document runs in order, in one bash script (``set -euo pipefail``: any failing command fails the test), in a
scratch folder holding the small files the docs refer to (see ``_sandbox``), with ``registry`` on PATH and
``MODELKEEP_URL``/``MODELKEEP_TOKEN`` set for an admin, as after the README's quick start. Python blocks run
with the project's interpreter. Every other ``bash``/``sh`` block must say why it is not run, with
``<!-- norun: reason -->`` (installing, starting servers, placeholders for the reader's own values)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from registry import migrations
from registry.db import Database
from registry.domain.auth import Role
from registry.services import tokens
from registry.services.auth import Actor
from tests.conftest import ROOT, LiveServer, start_server, stop_server

pytestmark = pytest.mark.slow

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
MARK = re.compile(r"^<!--\s*(?P<kind>run|norun)(?::\s*(?P<why>.*?))?\s*-->\s*$")
SHELLS = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    lang: str
    text: str
    mark: str | None
    """``run``, ``norun`` or ``None`` (no marker on the line before the fence)."""


def blocks(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening["fence"], opening["lang"].lower()
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        previous = lines[i - 1] if i > 0 else ""
        mark = MARK.match(previous)
        found.append(Block(doc, i + 1, lang, "\n".join(lines[i + 1 : end]), mark["kind"] if mark else None))
        i = end + 1
    return found


def script_for(doc: Path) -> str:
    parts = ["set -euo pipefail"]
    for block in blocks(doc):
        if block.mark != "run":
            continue
        where = f"{block.doc.relative_to(ROOT) if block.doc.is_relative_to(ROOT) else block.doc.name}:{block.line}"
        parts.append(f"echo '>>> {where}' >&2")
        if block.lang == "python":
            parts.append(f"python - <<'MODELKEEP_DOCS_PY'\n{block.text}\nMODELKEEP_DOCS_PY")
        else:
            parts.append(block.text)
    return "\n".join(parts) + "\n"


def test_every_shell_block_is_run_or_says_why_not() -> None:
    unmarked = [
        f"{b.doc.relative_to(ROOT)}:{b.line}" for doc in DOCS for b in blocks(doc) if b.lang in SHELLS and not b.mark
    ]
    assert not unmarked, "mark these blocks <!-- run --> or <!-- norun: why -->:\n" + "\n".join(unmarked)
    assert sum(1 for doc in DOCS for b in blocks(doc) if b.mark == "run") >= 8


def test_the_block_parser_reads_markers(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "# t\n<!-- run -->\n```bash\necho one\n```\n\n<!-- norun: installs -->\n```sh\npip x\n```\n```\nplain\n```\n"
    )
    found = blocks(doc)
    assert [(b.lang, b.mark, b.text) for b in found] == [
        ("bash", "run", "echo one"),
        ("sh", "norun", "pip x"),
        ("", None, "plain"),
    ]
    assert "echo one" in script_for(doc) and "pip x" not in script_for(doc)


# --------------------------------------------------------------------------------------------------- the run


async def _admin_token(database_url: str) -> str:
    database = Database(database_url)
    try:
        await migrations.upgrade(database)
        async with database.write() as session:
            made = await tokens.create(session, name="docs-admin", role=Role.admin, actor=Actor("docs", Role.admin))
        return made.secret
    finally:
        await database.dispose()


def _sandbox(folder: Path) -> None:
    """The reader's own files that the examples name: a trained model folder with its evaluation table, a gate
    file, the champion's evaluation table and an automation rules file."""
    rng = np.random.default_rng(7)
    n = 2000
    labels = rng.integers(0, 2, n)
    candidate = np.where(rng.random(n) < 0.97, labels, 1 - labels)
    champion = np.where(rng.random(n) < 0.96, labels, 1 - labels)
    model = folder / "artifacts" / "model"
    (model / "eval").mkdir(parents=True)
    (model / "weights.bin").write_bytes(rng.bytes(4096))
    (model / "config.json").write_text(json.dumps({"layers": 2, "threshold": 0.5}))
    for table, predictions in ((model / "eval" / "results.parquet", candidate), (folder / "eval.parquet", candidate)):
        pq.write_table(pa.table({"id": np.arange(n), "label": labels, "prediction": predictions}), table)
    pq.write_table(pa.table({"id": np.arange(n), "label": labels, "prediction": champion}), folder / "champion.parquet")
    (folder / "gates.yaml").write_text(
        "version: 1\n"
        "defaults: {alpha: 0.05, on_inconclusive: fail}\n"
        "gates:\n"
        "  - {id: accuracy, kind: proportion, outcome: correct, threshold: 0.95}\n"
    )


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    data_dir = tmp_path_factory.mktemp("docs-server")
    url = f"sqlite:///{data_dir / 'registry.db'}"
    token = asyncio.run(_admin_token(url))
    server = start_server(url, data_dir, extra_env={"MODELKEEP_WEBHOOK_ALLOW_HOSTS": "127.0.0.1,localhost"})
    yield server, token
    stop_server(server)


@pytest.mark.parametrize(
    "doc", [d for d in DOCS if any(b.mark == "run" for b in blocks(d))], ids=lambda d: d.relative_to(ROOT).as_posix()
)
def test_documented_examples_run(doc: Path, docs_server: tuple[LiveServer, str], tmp_path: Path) -> None:
    server, token = docs_server
    _sandbox(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELKEEP_", "MLFLOW_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "MODELKEEP_URL": server.url,
            "MODELKEEP_TOKEN": token,
            "MODELKEEP_DISABLE_SYSTEM_METRICS": "1",
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
    )
    done = subprocess.run(
        ["bash", "-c", script_for(doc)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (
        f"an example in {doc.relative_to(ROOT)} failed (exit {done.returncode})\n"
        f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-6000:]}"
    )
