"""Server side, on SQLite and PostgreSQL: GitHub's webhooks (POST /api/v1/hooks/github) verified with
X-Hub-Signature-256 and deduplicated on X-GitHub-Delivery, rules that gate the version registered from a PR's head
commit, and the github_status / github_comment actions posting the result back to the fake GitHub."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.automations.receivers import Stack, client, stack, wait_until
from tests.conftest import LiveServer, unique
from tests.github.conftest import REPO, SPEC
from tests.github.fake_github import FakeGitHub
from tests.registry.gates.test_gate_flow import eval_table, model_folder

SECRET = "It's a Secret to Everybody"
HOOK = "/api/v1/hooks/github"
PUBLIC = "https://registry.example"


@dataclass
class Env:
    stack: Stack
    server: LiveServer
    fake: FakeGitHub
    folder: Path


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp("github-hooks")
    with FakeGitHub() as fake, stack(database_url, folder) as made:
        server = made.serve(
            {
                "MODELKEEP_GITHUB_API_URL": fake.api_url,
                "MODELKEEP_GITHUB_TOKENS": json.dumps({"acme": "ghs_write"}),
                "MODELKEEP_GITHUB_WEBHOOK_SECRET": SECRET,
                "MODELKEEP_PUBLIC_URL": PUBLIC,
            }
        )
        yield Env(made, server, fake, folder)


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(
    server: LiveServer,
    event: str,
    payload: dict[str, Any],
    *,
    delivery: str | None = None,
    signature: str | None = None,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {
        "content-type": "application/json",
        "user-agent": "GitHub-Hookshot/test",
        "x-github-event": event,
        "x-github-delivery": delivery or str(uuid.uuid4()),
        "x-hub-signature-256": signature if signature is not None else sign(body),
    }
    return httpx.post(server.url + HOOK, content=body, headers=headers, timeout=30)


def pull_request(sha: str, number: int, action: str = "opened") -> dict[str, Any]:
    return {
        "action": action,
        "number": number,
        "pull_request": {"number": number, "head": {"sha": sha, "ref": "feature"}, "base": {"ref": "main"}},
        "repository": {"full_name": REPO},
        "sender": {"login": "octocat"},
    }


def version_from_commit(
    env: Env, model: str, sha: str | None, *, remote: str = f"https://github.com/{REPO}.git"
) -> None:
    """v1 of ``model`` (accuracy 0.995), registered from a run that recorded ``sha`` and ``remote``, with a gate
    policy on staging."""
    from registry.cli import main

    with client(env.server, env.stack.tokens.writer) as api:
        run = api.post("/api/v1/runs", json={"git": {"commit": sha, "remote": remote, "branch": "feature"}})
        assert run.status_code == 201, run.text
    folder = model_folder(env.folder / model, eval_table(4000, 20), "v1")
    args = ["push", model, str(folder), "--run", run.json()["id"], "--url", env.server.url]
    assert main([*args, "--token", env.stack.tokens.writer]) == 0
    with client(env.server, env.stack.tokens.maintainer) as api:
        assert api.put(f"/api/v1/models/{model}/gate-policies/staging", json={"spec": SPEC}).status_code == 200


def apply(env: Env, rules: str) -> httpx.Response:
    with client(env.server, env.stack.tokens.maintainer) as api:
        return api.post("/api/v1/automations/rules", json={"yaml": rules})


def new_sha() -> str:
    return hashlib.sha1(uuid.uuid4().bytes).hexdigest()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return dict(response.json())


def test_pull_request_gates_the_version_from_its_head_and_posts_back(env: Env) -> None:
    model, sha = unique("pr"), new_sha()
    version_from_commit(env, model, sha)
    applied = apply(
        env,
        f"""
rules:
  - {{name: gate-{model}, on: github.pull_request, model: {model}, if: {{action: [opened, synchronize]}},
     action: run_gate, alias: staging}}
  - {{name: status-{model}, on: gate.completed, model: {model}, action: github_status, github_token: acme}}
  - {{name: comment-{model}, on: gate.completed, model: {model}, action: github_comment, github_token: acme}}
""",
    )
    assert applied.status_code == 200, applied.text
    assert [r.get("warnings", []) for r in applied.json()] == [[], [], []]
    env.fake.add_pull(REPO, 41, head_sha=sha)

    response = deliver(env.server, "pull_request", pull_request(sha, 41))
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted" and len(response.json()["events"]) == 1

    [status] = wait_until(lambda: [s for s in env.fake.state.statuses if s["sha"] == sha], timeout=60, what="status")
    assert status["state"] == "success" and status["context"] == f"modelkeep/registry/{model}"
    assert status["description"] == "PASS: 1 of 1 gates passed"
    gate_run_id = int(status["target_url"].rsplit("/", 1)[1])
    assert status["target_url"] == f"{PUBLIC}/api/v1/gate-runs/{gate_run_id}"
    [comment] = wait_until(lambda: env.fake.comments_on(REPO, 41), timeout=60, what="comment")
    assert comment["body"].startswith(f"<!-- modelkeep-gate:modelkeep/registry/{model} -->")
    assert f"`{model}` v1" in comment["body"] and f"gate run #{gate_run_id}" in comment["body"]
    with client(env.server, env.stack.tokens.reader) as api:
        run = api.get(f"/api/v1/gate-runs/{gate_run_id}").json()
        assert run["commit_sha"] == sha and run["actor"] == f"rule:gate-{model}" and run["origin"] == "automation"
        [event] = api.get("/api/v1/events/", params={"type": "github.pull_request", "model": model}).json()["items"]
    assert event["data"] | {"delivery": None} == {
        "model": model,
        "version": 1,
        "repository": REPO,
        "commit_sha": sha,
        "pr_number": 41,
        "action": "opened",
        "ref": "feature",
        "delivery": None,
    }
    assert event["actor"] == "github:octocat"

    def done(rule: str) -> list[dict[str, Any]]:
        with client(env.server, env.stack.tokens.reader) as api:
            jobs = api.get("/api/v1/automations/jobs", params={"status": "succeeded"}).json()
        return [j for j in jobs if j["actor"] == f"rule:{rule}-{model}"]

    [posted] = wait_until(lambda: done("status"), timeout=60, what="status job")
    assert posted["result"] == {
        "repository": REPO,
        "commit_sha": sha,
        "context": f"modelkeep/registry/{model}",
        "for_gate_run": gate_run_id,
    }
    [commented] = wait_until(lambda: done("comment"), timeout=60, what="comment job")
    assert commented["result"]["pull_requests"] == [41] and commented["result"]["comments"] == [comment["id"]]


def test_a_gate_recorded_by_a_person_shows_on_its_commit(env: Env) -> None:
    model, sha = unique("person"), new_sha()
    version_from_commit(env, model, None, remote="/srv/git/models")  # no commit; a remote naming no repository
    rules = f"""
rules:
  - {{name: status-{model}, on: gate.completed, model: {model}, action: github_status, github_token: acme,
     repository: {REPO}, context: modelkeep/person}}
"""
    assert apply(env, rules).status_code == 200
    spec = env.folder / "person.yaml"
    spec.write_text(SPEC)
    from registry.cli import main

    args = ["gate", "run", model, "1", "--spec", str(spec), "--record", "--url", env.server.url]
    assert main([*args, "--commit", sha, "--token", env.stack.tokens.writer]) == 0
    [status] = wait_until(lambda: [s for s in env.fake.state.statuses if s["sha"] == sha], timeout=60, what="status")
    assert status["context"] == "modelkeep/person" and status["state"] == "success"

    assert main([*args, "--token", env.stack.tokens.writer]) == 0  # no commit: nothing to post on

    def failed() -> list[dict[str, Any]]:
        with client(env.server, env.stack.tokens.reader) as api:
            jobs = api.get("/api/v1/automations/jobs", params={"status": "failed"}).json()
        return [j for j in jobs if j["actor"] == f"rule:status-{model}"]

    [job] = wait_until(failed, timeout=60, what="failed job")
    assert "names no commit" in job["error"]


def test_replayed_delivery_acts_once(env: Env) -> None:
    model, sha = unique("replay"), new_sha()
    version_from_commit(env, model, sha)
    payload, delivery = pull_request(sha, 52, "synchronize"), str(uuid.uuid4())
    first = deliver(env.server, "pull_request", payload, delivery=delivery)
    assert first.status_code == 202 and first.json()["duplicate"] is False
    again = deliver(env.server, "pull_request", payload, delivery=delivery)
    assert again.status_code == 200, again.text
    assert again.json() == {**first.json(), "duplicate": True}
    redelivered = str(uuid.uuid4())
    other = deliver(env.server, "pull_request", payload, delivery=redelivered)  # a new delivery is a new event
    assert other.status_code == 202
    with client(env.server, env.stack.tokens.reader) as api:
        found = api.get("/api/v1/events/", params={"type": "github.pull_request", "model": model}).json()["items"]
    assert [e["data"]["delivery"] for e in found] == [delivery, redelivered]
    assert [e["id"] for e in found] == [first.json()["events"][0], other.json()["events"][0]]


@pytest.mark.parametrize("how", ["missing", "other secret", "tampered body", "sha1 only"])
def test_bad_signature_is_401_and_records_nothing(env: Env, how: str) -> None:
    model, sha = unique("forged"), new_sha()
    version_from_commit(env, model, sha)
    payload, delivery = pull_request(sha, 60), str(uuid.uuid4())
    body = json.dumps(payload).encode()
    signature = {
        "missing": "",
        "other secret": sign(body, "not the secret"),
        "tampered body": sign(body.replace(b"opened", b"closed")),
        "sha1 only": "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest(),
    }[how]
    refused = problem(deliver(env.server, "pull_request", payload, delivery=delivery, signature=signature), 401)
    assert refused["code"] == "unauthenticated" and "X-Hub-Signature-256" in refused["detail"]
    accepted = deliver(env.server, "pull_request", payload, delivery=delivery)  # the id was not taken by the forgery
    assert accepted.status_code == 202 and accepted.json()["duplicate"] is False


def test_reference_signature_vector_is_accepted() -> None:
    from automations.github_hooks import verify

    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert verify([SECRET], b"Hello, World!", expected)
    assert verify(["previous", SECRET], b"Hello, World!", expected)  # rotation: either secret
    assert not verify([SECRET], b"Hello, World!", expected.replace("7", "8"))
    assert not verify([], b"Hello, World!", expected)


@pytest.mark.parametrize(
    ("event", "payload", "status", "reason"),
    [
        ("ping", {"zen": "Keep it logically awesome.", "hook_id": 1}, "pong", "Keep it logically awesome."),
        ("issues", {"action": "opened"}, "ignored", "'issues' event is not acted on"),
        ("pull_request", pull_request("a" * 40, 70, "closed"), "ignored", "pull_request 'closed' is not acted on"),
        (
            "push",
            {"ref": "refs/heads/x", "after": "0" * 40, "deleted": True, "repository": {"full_name": REPO}},
            "ignored",
            "deleted branch",
        ),
        (
            "push",
            {"ref": "refs/heads/main", "after": "b" * 40, "repository": {"full_name": REPO}},
            "accepted",
            "no model version was registered from commit bbbbbbbbbbbb",
        ),
    ],
)
def test_events_not_acted_on_are_answered_200(
    env: Env, event: str, payload: dict[str, Any], status: str, reason: str
) -> None:
    response = deliver(env.server, event, payload)
    assert response.status_code in (200, 202), response.text
    body = response.json()
    assert body["status"] == status and reason in body["reason"] and body["events"] == []
    assert response.status_code == (202 if status == "accepted" else 200)


def test_push_announces_the_versions_of_the_pushed_commit(env: Env) -> None:
    model, sha = unique("push"), new_sha()
    version_from_commit(env, model, sha)
    payload = {"ref": "refs/heads/main", "after": sha, "repository": {"full_name": REPO}}
    raw = urlencode({"payload": json.dumps(payload)}).encode()  # a webhook set to "application/x-www-form-urlencoded"
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-github-event": "push",
        "x-github-delivery": str(uuid.uuid4()),
        "x-hub-signature-256": sign(raw),
    }
    response = httpx.post(env.server.url + HOOK, content=raw, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    with client(env.server, env.stack.tokens.reader) as api:
        [event] = api.get("/api/v1/events/", params={"type": "github.push", "model": model}).json()["items"]
    assert event["data"]["commit_sha"] == sha and event["data"]["ref"] == "refs/heads/main"


@pytest.mark.parametrize(
    ("headers", "body", "detail"),
    [
        ({"x-github-event": ""}, b'{"zen": "x"}', "X-GitHub-Event"),
        ({"x-github-delivery": "not a/delivery"}, b'{"zen": "x"}', "X-GitHub-Delivery"),
        ({}, b"{not json", "not JSON"),
        ({}, b"[1, 2]", "not a JSON object"),
        ({"x-github-event": "pull_request"}, b'{"action": "opened", "repository": {"full_name": "a/b"}}', "head.sha"),
        ({"x-github-event": "push"}, b'{"after": "xyz", "repository": {"full_name": "a/b"}}', "hex digits"),
    ],
)
def test_malformed_deliveries_are_400(env: Env, headers: dict[str, str], body: bytes, detail: str) -> None:
    sent = {
        "content-type": "application/json",
        "x-github-event": "ping",
        "x-github-delivery": str(uuid.uuid4()),
        **headers,
        "x-hub-signature-256": sign(body),
    }
    found = problem(httpx.post(env.server.url + HOOK, content=body, headers=sent, timeout=30), 400)
    assert detail in found["detail"]


def test_server_without_a_webhook_secret_answers_404(live_server: LiveServer) -> None:
    body = b'{"zen": "x"}'
    headers = {"x-github-event": "ping", "x-github-delivery": "1", "x-hub-signature-256": sign(body)}
    found = problem(httpx.post(live_server.url + HOOK, content=body, headers=headers, timeout=30), 404)
    assert found["code"] == "github_hooks_off" and "MODELKEEP_GITHUB_WEBHOOK_SECRET" in found["detail"]


@pytest.mark.parametrize(
    ("rule", "detail"),
    [
        ("{name: r, on: gate.completed, action: github_status, github_token: ghp_abcdefghijklmnop0123}", "is a token"),
        ("{name: r, on: gate.completed, action: github_comment, github_token: github_pat_11AAA_xyz}", "is a token"),
        ("{name: r, on: gate.completed, action: github_status}", "needs `github_token`"),
        ("{name: r, on: model_version.created, action: github_status, github_token: acme}", "acts on gate.completed"),
        ("{name: r, on: gate.completed, action: github_status, github_token: acme, repository: 'a b'}", "owner/name"),
        ("{name: r, on: gate.completed, action: promote, alias: x, github_token: acme}", "only go with"),
        ("{name: r, on: github.issue, action: run_gate, alias: staging}", "is not an event type"),
    ],
)
def test_github_rules_are_checked(env: Env, rule: str, detail: str) -> None:
    found = problem(apply(env, f"rules:\n  - {rule}\n"), 400)
    assert detail in found["detail"]
    assert "ghp_abcdefghijklmnop0123" not in found["detail"] and "github_pat_11AAA_xyz" not in found["detail"]


def test_rule_naming_a_token_the_server_lacks_is_applied_with_a_warning(env: Env) -> None:
    name = unique("rule")
    applied = apply(env, f"rules:\n  - {{name: {name}, on: gate.completed, action: github_status, github_token: nope}}")
    assert applied.status_code == 200, applied.text
    [warning] = applied.json()[0]["warnings"]
    assert "'nope'" in warning and "MODELKEEP_GITHUB_TOKENS" in warning
    with client(env.server, env.stack.tokens.maintainer) as api:
        assert api.delete(f"/api/v1/automations/rules/{name}").status_code == 200
