"""The GitHub adapter (automations/github.py) against the fake GitHub: the wire calls, pagination, refusals,
rate limits and an unreachable GitHub, as any caller (the CLI, the server's jobs) meets them."""

from __future__ import annotations

import pytest

from automations.github import (
    Annotation,
    GitHubClient,
    GitHubRateLimited,
    GitHubRefused,
    GitHubUnreachable,
    Patience,
    repository_of,
)
from tests.github.conftest import HEAD, PR, READ, REPO, WRITE, closed_port_url
from tests.github.fake_github import BOT, FakeGitHub

MARKER = "<!-- modelkeep-gate:default -->"


def test_status_lands_on_the_commit_with_its_context(fake: FakeGitHub) -> None:
    with GitHubClient(fake.api_url, WRITE) as github:
        github.set_status(
            REPO, HEAD, state="failure", description="x" * 200, context="modelkeep/gate", target_url="https://run"
        )
    [status] = fake.state.statuses
    assert status["sha"] == HEAD and status["state"] == "failure" and status["context"] == "modelkeep/gate"
    assert status["target_url"] == "https://run" and len(status["description"]) == 140
    [post] = fake.requests("POST")
    assert post.headers["authorization"] == f"token {WRITE}"


def test_sticky_comment_is_created_once_then_edited_across_pages(fake: FakeGitHub) -> None:
    fake.page_size = 2
    fake.add_comment(REPO, PR, "first!", login=None)  # a deleted author ("ghost"): github3 4.0.1 crashes on it
    planted = fake.add_comment(REPO, PR, f"{MARKER}\nnot ours", association="CONTRIBUTOR")
    fake.add_comment(REPO, PR, "lgtm", association="MEMBER")
    with GitHubClient(fake.api_url, WRITE) as github:
        first = github.upsert_comment(REPO, PR, marker=MARKER, body=f"{MARKER}\nrun 1")
        fake.add_comment(REPO, PR, "more talk")
        second = github.upsert_comment(REPO, PR, marker=MARKER, body=f"{MARKER}\nrun 2")
    assert first.created and not second.created and first.id == second.id
    ours = [c for c in fake.comments_on(REPO, PR) if c["user"] and c["user"]["login"] == BOT]
    assert [c["body"] for c in ours] == [f"{MARKER}\nrun 2"]
    assert fake.state.comments[planted]["body"] == f"{MARKER}\nnot ours"  # an outsider's marker is not ours
    listed = fake.requests("GET", r"/issues/7/comments$")
    assert any(s.query.get("page") == ["2"] for s in listed), "ours is on page 2: found by following rel=next"


def test_check_run_carries_the_report_and_annotations(fake: FakeGitHub) -> None:
    with GitHubClient(fake.api_url, WRITE) as github:
        run_id = github.create_check_run(
            REPO,
            HEAD,
            name="modelkeep/gate",
            conclusion="failure",
            title="FAIL: accuracy 0.9 < 0.95 (lower bound)",
            summary="### report",
            details_url="https://run",
            annotations=[Annotation("gates.yaml", 4, "failure", "accuracy 0.9 < 0.95", title="FAIL: accuracy")],
        )
    [run] = fake.state.check_runs
    assert run["id"] == run_id and run["head_sha"] == HEAD and run["conclusion"] == "failure"
    assert run["status"] == "completed" and run["output"]["summary"] == "### report"
    assert run["output"]["annotations"] == [
        {
            "path": "gates.yaml",
            "start_line": 4,
            "end_line": 4,
            "annotation_level": "failure",
            "message": "accuracy 0.9 < 0.95",
            "title": "FAIL: accuracy",
        }
    ]


def test_pull_requests_of_a_commit(fake: FakeGitHub) -> None:
    fake.add_pull(REPO, 9, head_sha=HEAD)
    fake.add_pull(REPO, 3, head_sha=HEAD, state="closed")
    with GitHubClient(fake.api_url, WRITE) as github:
        assert github.pulls_for_commit(REPO, HEAD) == [9, PR]
        assert github.pulls_for_commit(REPO, "9" * 40) == []


@pytest.mark.parametrize("status", [403, 429])
def test_secondary_rate_limit_is_retried_after_the_wait_github_asks(fake: FakeGitHub, status: int) -> None:
    waits: list[float] = []
    fake.rate_limit(2, status=status, retry_after="2")
    with GitHubClient(fake.api_url, WRITE, patience=Patience(sleep=waits.append)) as github:
        github.set_status(REPO, HEAD, state="success", description="ok", context="c", target_url=None)
    assert waits == [2.0, 2.0]
    assert [s.status for s in fake.seen] == [status, status, 200, 201]
    assert len(fake.state.statuses) == 1


def test_rate_limit_longer_than_the_budget_gives_up_at_once(fake: FakeGitHub) -> None:
    waits: list[float] = []
    fake.rate_limit(1, status=429, retry_after="3600")
    with GitHubClient(fake.api_url, WRITE, patience=Patience(max_wait=60, sleep=waits.append)) as github:
        with pytest.raises(GitHubRateLimited) as caught:
            github.upsert_comment(REPO, PR, marker=MARKER, body=f"{MARKER}\nx")
    assert waits == [] and caught.value.status_code == 429 and "secondary rate limit" in caught.value.message


def test_exhausted_quota_waits_for_the_reset(fake: FakeGitHub) -> None:
    waits: list[float] = []
    fake.rate_limit(1, status=403, retry_after=None, x_ratelimit_remaining="0", x_ratelimit_reset="0")
    with GitHubClient(fake.api_url, WRITE, patience=Patience(sleep=waits.append)) as github:
        assert github.pulls_for_commit(REPO, HEAD) == [PR]
    assert waits == [0.0]


def test_read_only_token_is_refused_with_githubs_message(fake: FakeGitHub) -> None:
    with GitHubClient(fake.api_url, READ) as github:
        with pytest.raises(GitHubRefused) as caught:
            github.set_status(REPO, HEAD, state="success", description="ok", context="c", target_url=None)
    assert caught.value.status_code == 403 and "Resource not accessible by integration" in caught.value.message
    assert not isinstance(caught.value, GitHubRateLimited) and fake.state.statuses == []


def test_bad_token_is_401(fake: FakeGitHub) -> None:
    with GitHubClient(fake.api_url, "ghs_revoked") as github:
        with pytest.raises(GitHubRefused) as caught:
            github.create_check_run(
                REPO, HEAD, name="n", conclusion="success", title="t", summary="s", details_url=None, annotations=[]
            )
    assert caught.value.status_code == 401 and "Bad credentials" in caught.value.message
    assert "ghs_revoked" not in caught.value.message


@pytest.mark.parametrize("call", ["status", "pulls"])
def test_unreachable_github(call: str) -> None:
    with GitHubClient(closed_port_url(), WRITE) as github:
        with pytest.raises(GitHubUnreachable) as caught:
            if call == "status":
                github.set_status(REPO, HEAD, state="success", description="ok", context="c", target_url=None)
            else:
                github.pulls_for_commit(REPO, HEAD)
    assert "cannot reach GitHub" in caught.value.message and WRITE not in caught.value.message


def test_github_enterprise_api_root() -> None:
    with FakeGitHub(prefix="/api/v3") as enterprise:
        enterprise.add_pull(REPO, PR, head_sha=HEAD)
        with GitHubClient(enterprise.api_url, WRITE) as github:
            github.set_status(REPO, HEAD, state="success", description="ok", context="c", target_url=None)
            github.upsert_comment(REPO, PR, marker=MARKER, body=f"{MARKER}\nx")
        assert len(enterprise.state.statuses) == 1 and len(enterprise.comments_on(REPO, PR)) == 1


@pytest.mark.parametrize(
    ("remote", "repository"),
    [
        ("https://github.com/acme/models.git", "acme/models"),
        ("https://github.com/acme/models", "acme/models"),
        ("git@github.com:acme/models.git", "acme/models"),
        ("ssh://git@ghe.example.com:2222/acme/models.git", "acme/models"),
        ("https://ghe.example.com/scm/acme/models/", "acme/models"),
        ("/srv/git/models", None),
        ("https://github.com/acme", None),
        (None, None),
    ],
)
def test_repository_of_a_git_remote(remote: str | None, repository: str | None) -> None:
    assert repository_of(remote) == repository
