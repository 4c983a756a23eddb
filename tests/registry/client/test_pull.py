"""``RegistryClient.pull`` against a live server: refuses a non-empty folder unless ``force``, then swaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import errors
from registry.client import RegistryClient
from tests.conftest import LiveServer, Tokens, unique


def test_pull_refuses_a_non_empty_folder_and_force_replaces_it(
    live_server: LiveServer, api_tokens: Tokens, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "weights.bin").write_bytes(unique("w").encode())
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "stale.bin").write_bytes(b"old")
    with RegistryClient(live_server.url, api_tokens.writer) as api:
        name = unique()
        api.push(name, source)
        with pytest.raises(errors.InvalidInput, match="force"):
            api.pull(f"{name}/1", dest)
        assert [p.name for p in dest.iterdir()] == ["stale.bin"]
        with pytest.raises(errors.InvalidInput, match="not a folder"):
            api.pull(f"{name}/1", dest / "stale.bin")
        version = api.pull(f"{name}/1", dest, force=True)
    assert version["version"] == 1
    assert [p.name for p in dest.iterdir()] == ["weights.bin"]
    assert (dest / "weights.bin").read_bytes() == (source / "weights.bin").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "source"]
