"""`registry pull` refuses a non-empty folder; `--force` makes the folder exactly the version, swapped in whole."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.conftest import LiveServer, Tokens, unique
from tests.registry.cli._helpers import Cli


@pytest.fixture
def cli(live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(live_server, api_tokens.writer, capsys)


def _push(cli: Cli, tmp_path: Path, files: dict[str, bytes]) -> str:
    name = unique()
    folder = tmp_path / f"src-{name}"
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    code, _, err = cli("push", name, str(folder))
    assert code == 0, err
    return name


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_non_empty_folder_needs_force_and_force_leaves_exactly_the_version(cli: Cli, tmp_path: Path) -> None:
    version = {"weights.bin": unique("w").encode(), "conf/params.json": b'{"depth": 3}'}
    name = _push(cli, tmp_path, version)
    dest = tmp_path / "serving" / "model"
    dest.mkdir(parents=True)
    (dest / "stale.bin").write_bytes(b"from an older version")
    (dest / "conf").mkdir()
    (dest / "conf" / "old.json").write_text("{}")
    dest.chmod(0o750)

    code, _, err = cli("pull", f"{name}/1", str(dest))
    assert code == 2 and "--force" in err and "Traceback" not in err, err
    assert _tree(dest) == {"stale.bin": b"from an older version", "conf/old.json": b"{}"}

    code, out, err = cli("pull", f"{name}/1", str(dest), "--force")
    assert code == 0 and "pulled" in out, err
    assert _tree(dest) == version
    assert stat.S_IMODE(dest.stat().st_mode) == 0o750
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model"]  # no staging or old folder left beside it


def test_an_empty_or_missing_folder_needs_no_force(cli: Cli, tmp_path: Path) -> None:
    version = {"weights.bin": unique("w").encode()}
    name = _push(cli, tmp_path, version)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("pull", f"{name}/1", str(empty))[0] == 0
    assert _tree(empty) == version
    assert cli("pull", f"{name}/1", str(tmp_path / "new" / "deeper"))[0] == 0
    assert _tree(tmp_path / "new" / "deeper") == version


def test_a_failed_forced_pull_leaves_the_old_folder_whole(cli: Cli, tmp_path: Path, live_server: LiveServer) -> None:
    content = unique("weights").encode() * 1000
    name = _push(cli, tmp_path, {"weights.bin": content, "small.txt": b"s"})
    import hashlib

    # Corrupt the stored blob in place (same size): the download no longer matches its sha256.
    digest = hashlib.sha256(content).hexdigest()
    (blob,) = [p for p in live_server.data_dir.rglob(digest) if p.is_file()]
    blob.chmod(0o600)
    blob.write_bytes(b"x" * len(content))
    dest = tmp_path / "serving"
    dest.mkdir()
    (dest / "weights.bin").write_bytes(b"the model being served")

    code, _, err = cli("pull", f"{name}/1", str(dest), "--force")
    assert code == 1 and "sha256" in err and "Traceback" not in err, err
    assert _tree(dest) == {"weights.bin": b"the model being served"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
