"""Git and environment capture on real repositories made with `git init` in temporary folders."""

from __future__ import annotations

import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

import pytest

from registry.client import capture

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git executable")


def git(repo: Path, *args: str) -> bytes:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True).stdout


@pytest.fixture(autouse=True)
def hermetic_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own ~/.gitconfig must not change what these tests see; nor may a repo above tmp."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("lr = 0.1\nepochs = 3\n")
    (root / "README.md").write_text("# churn\n")
    (root / ".gitignore").write_text("*.ckpt\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_clean_repository(repo: Path) -> None:
    state = capture.git_state(repo)
    assert state is not None
    assert state.root == repo.resolve()
    assert state.commit == git(repo, "rev-parse", "HEAD").decode().strip()
    assert state.branch == "main"
    assert state.remote is None
    assert (state.dirty, state.diff, state.untracked, state.problems) == (False, b"", [], [])


def test_found_from_a_subfolder(repo: Path) -> None:
    (repo / "src" / "pkg").mkdir(parents=True)
    state = capture.git_state(repo / "src" / "pkg")
    assert state is not None and state.root == repo.resolve() and state.branch == "main"


def test_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert capture.git_state(plain) is None


def test_remote_credentials_are_stripped(repo: Path) -> None:
    git(repo, "remote", "add", "origin", "https://alice:s3cret-token@github.com/acme/churn.git")
    state = capture.git_state(repo)
    assert state is not None and state.remote == "https://github.com/acme/churn.git"


def test_first_remote_when_there_is_no_origin(repo: Path) -> None:
    git(repo, "remote", "add", "upstream", "ssh://git:hunter2@git.example.com:2222/acme/churn.git")
    state = capture.git_state(repo)
    assert state is not None and state.remote == "ssh://git@git.example.com:2222/acme/churn.git"


@pytest.mark.parametrize(
    ("remote", "clean"),
    [
        ("https://github.com/acme/churn.git", "https://github.com/acme/churn.git"),
        ("https://ghp_abc123@github.com/acme/churn.git", "https://github.com/acme/churn.git"),
        ("https://oauth2:glpat-x@gitlab.example.com:8443/a/b.git", "https://gitlab.example.com:8443/a/b.git"),
        ("http://u:p@[::1]:8080/r.git?private_token=x#frag", "http://[::1]:8080/r.git"),
        ("ssh://git@github.com/acme/churn.git", "ssh://git@github.com/acme/churn.git"),
        ("git@github.com:acme/churn.git", "git@github.com:acme/churn.git"),
        ("/srv/git/churn.git", "/srv/git/churn.git"),
        ("file:///srv/git/churn.git", "file:///srv/git/churn.git"),
    ],
)
def test_strip_credentials(remote: str, clean: str) -> None:
    assert capture.strip_credentials(remote) == clean


def test_dirty_tree_diff_and_untracked_files(repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text("lr = 0.05\nepochs = 3\n")  # unstaged change
    (repo / "features.py").write_text("COLUMNS = ['tenure']\n")
    git(repo, "add", "features.py")  # staged new file
    (repo / "notes.txt").write_text("try lr 0.01\n")
    (repo / "data").mkdir()
    (repo / "data" / "sample.csv").write_text("a,b\n1,2\n")
    (repo / "model.ckpt").write_bytes(b"ignored")

    state = capture.git_state(repo)

    assert state is not None and state.dirty is True and not state.diff_truncated
    assert state.diff == git(repo, "diff", "HEAD")
    assert b"+lr = 0.05" in state.diff and b"+COLUMNS" in state.diff
    assert sorted(state.untracked) == ["data/sample.csv", "notes.txt"]
    # What is stored is a patch: applied to a clean checkout of the commit it rebuilds the tracked tree.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", state.commit or "")
    subprocess.run(["git", "apply", "--index", "-"], cwd=clone, input=state.diff, check=True)
    assert (clone / "train.py").read_text() == "lr = 0.05\nepochs = 3\n"
    assert (clone / "features.py").read_text() == "COLUMNS = ['tenure']\n"


def test_diff_ignores_the_users_diff_settings(repo: Path, tmp_path: Path) -> None:
    git(repo, "config", "diff.noprefix", "true")
    git(repo, "config", "color.ui", "always")
    (repo / "train.py").write_text("lr = 1\n")
    state = capture.git_state(repo)
    assert state is not None
    assert b"--- a/train.py\n+++ b/train.py\n" in state.diff and b"\x1b[" not in state.diff


def test_untracked_files_alone_are_not_dirty(repo: Path) -> None:
    (repo / "scratch.py").write_text("print()\n")
    state = capture.git_state(repo)
    assert state is not None and state.dirty is False and state.diff == b"" and state.untracked == ["scratch.py"]


def test_detached_head_has_no_branch(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    state = capture.git_state(repo)
    assert state is not None and state.branch is None and state.commit


def test_branch_without_commits(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q", "-b", "exp")
    (root / "train.py").write_text("x = 1\n")
    git(root, "add", "train.py")
    state = capture.git_state(root)
    assert state is not None
    assert (state.commit, state.branch, state.dirty) == (None, "exp", True)
    assert b"new file mode" in state.diff and b"+x = 1" in state.diff


def test_large_diff_keeps_whole_files_only(repo: Path) -> None:
    (repo / "README.md").write_text("# churn model\n")
    (repo / "train.py").write_text("".join(f"line {i}\n" for i in range(5000)))
    readme_diff = git(repo, "diff", "HEAD", "--", "README.md")
    full = git(repo, "diff", "HEAD")
    assert full.startswith(readme_diff)  # git orders files by path

    state = capture.git_state(repo, max_diff_bytes=len(readme_diff) + 100)
    assert state is not None and state.dirty is True and state.diff_truncated
    assert state.diff == readme_diff

    state = capture.git_state(repo, max_diff_bytes=len(readme_diff) // 2)
    assert state is not None and state.dirty is True and state.diff_truncated and state.diff == b""


def test_untracked_list_is_capped(repo: Path) -> None:
    for i in range(5):
        (repo / f"out-{i}.txt").write_text(str(i))
    state = capture.git_state(repo, max_untracked=3)
    assert state is not None and len(state.untracked) == 3 and state.untracked_truncated


def test_broken_repository_reports_what_it_could_not_capture(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").decode().strip()
    (repo / ".git" / "objects" / head[:2] / head[2:]).unlink()  # the commit object is gone
    state = capture.git_state(repo)
    assert state is not None and state.commit == head and state.branch == "main"
    assert state.dirty is None and state.diff == b""
    assert len(state.problems) == 1 and "uncommitted diff not captured" in state.problems[0]


def test_environment_describes_this_interpreter() -> None:
    env = capture.environment()
    assert env["python"] == platform.python_version()
    assert env["platform"] == platform.platform()
    assert env["packages"]["httpx"] == metadata.version("httpx")
    assert env["packages"]["psutil"] == metadata.version("psutil")
    assert "packages_truncated" not in env


def test_environment_package_list_is_capped() -> None:
    env = capture.environment(max_packages=3)
    assert len(env["packages"]) == 3 and env["packages_truncated"] is True


def test_a_git_command_that_hangs_is_cut_off(repo: Path) -> None:
    started = time.monotonic()
    with pytest.raises(capture.CaptureError, match=r"took longer than 0\.5 s"):
        capture._git_capped(repo, "-c", "alias.hang=!sleep 30", "hang", max_bytes=1024, timeout=0.5)
    assert time.monotonic() - started < 10
