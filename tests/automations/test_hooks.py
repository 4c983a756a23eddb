"""The inbound gate-run hook: an outside system asks for a gate run with a request signed by a trigger's secret
(Standard Webhooks) or with an API token; the run happens off the request path and is polled as a job."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from automations import signing
from registry.cli import main
from tests.automations.receivers import Receiver, Stack, client, stack, subscribe, wait_until
from tests.conftest import LiveServer, bearer, unique
from tests.registry.gates.test_gate_flow import SPEC, eval_table, model_folder

HOOK = "/api/v1/hooks/gate-runs"


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, LiveServer, str, str]]:
    """A server, a model with one version (eval table included) and a gate policy on staging, and a trigger
    scoped to that model: (stack, server, model, trigger secret)."""
    folder = tmp_path_factory.mktemp("hooks")
    with stack(database_url, folder) as made:
        server = made.serve()
        model = unique("hooked")
        assert (
            main(
                [
                    "push",
                    model,
                    str(model_folder(folder, eval_table(4000, 20), "v1")),
                    "--url",
                    server.url,
                    "--token",
                    made.tokens.writer,
                ]
            )
            == 0
        )
        with client(server, made.tokens.maintainer) as api:
            assert api.put(f"/api/v1/models/{model}/gate-policies/staging", json={"spec": SPEC}).status_code == 200
            created = api.post("/api/v1/automations/triggers", json={"name": f"ci-{model}", "model": model})
            assert created.status_code == 201, created.text
            assert created.json()["secret"].startswith("whsec_")
        yield made, server, model, created.json()["secret"]


def request_body(model: str, **extra: Any) -> bytes:
    return json.dumps({"model": model, "version": 1, "alias": "staging", **extra}).encode()


def signed(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    return {
        "content-type": "application/json",
        **signing.headers([secret], f"msg_{uuid.uuid4().hex}", body, timestamp=timestamp),
    }


def poll(api: httpx.Client, job_id: int, *, timeout: float = 30) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = api.get(f"/api/v1/automations/jobs/{job_id}").json()
        return dict(job) if job["status"] in ("succeeded", "failed") else None

    return dict(wait_until(done, timeout=timeout, what=f"job {job_id}"))


def test_signed_request_queues_a_gate_run(env: tuple[Stack, LiveServer, str, str]) -> None:
    made, server, model, secret = env
    with Receiver() as rec, client(server, made.tokens.maintainer) as api, httpx.Client(base_url=server.url) as anon:
        subscribe(api, rec, ["gate.completed"], model=model)
        body = request_body(model, commit_sha="0123abc")
        response = anon.post(HOOK, content=body, headers=signed(secret, body))
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["poll"] == f"/api/v1/automations/jobs/{accepted['job_id']}"
        job = poll(api, accepted["job_id"])
        assert job["status"] == "succeeded" and job["actor"] == f"trigger:ci-{model}" and job["kind"] == "run_gate"
        assert job["result"]["verdict"] == "pass"
        run = api.get(f"/api/v1/gate-runs/{job['result']['gate_run_id']}").json()
        assert run["actor"] == f"trigger:ci-{model}" and run["commit_sha"] == "0123abc"
        assert run["origin"] == "automation" and run["verdict"] == "pass"
        [completed] = wait_until(lambda: rec.payloads("gate.completed"), what="gate.completed")
        assert completed["data"]["gate_run_id"] == run["id"] and completed["data"]["commit_sha"] == "0123abc"
        for hook in api.get("/api/v1/webhooks").json():
            api.delete(f"/api/v1/webhooks/{hook['id']}")


def test_reference_library_signature_is_accepted(env: tuple[Stack, LiveServer, str, str]) -> None:
    made, server, model, secret = env
    body = request_body(model)
    msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
    }
    response = httpx.post(server.url + HOOK, content=body, headers=headers)
    assert response.status_code == 202, response.text
    with client(server, made.tokens.reader) as reader:
        assert poll(reader, response.json()["job_id"])["status"] == "succeeded"


@pytest.mark.parametrize(
    "how", ["unsigned", "other secret", "tampered body", "stale timestamp", "future timestamp", "no timestamp"]
)
def test_unsigned_or_badly_signed_requests_are_401(env: tuple[Stack, LiveServer, str, str], how: str) -> None:
    _, server, model, secret = env
    body = request_body(model)
    headers: dict[str, str] = {"content-type": "application/json"}
    if how == "other secret":
        headers = signed(signing.new_secret(), body)
    elif how == "tampered body":
        headers = signed(secret, body)
        body = request_body(model, commit_sha="evil")
    elif how == "stale timestamp":
        headers = signed(secret, body, timestamp=int(time.time()) - 600)
    elif how == "future timestamp":
        headers = signed(secret, body, timestamp=int(time.time()) + 600)
    elif how == "no timestamp":
        headers = signed(secret, body)
        del headers["webhook-timestamp"]
    response = httpx.post(server.url + HOOK, content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_token_authenticated_request_works_and_needs_a_writer(env: tuple[Stack, LiveServer, str, str]) -> None:
    made, server, model, _ = env
    body = request_body(model)
    json_type = {"content-type": "application/json"}
    with httpx.Client(base_url=server.url) as anon:
        assert anon.post(HOOK, content=body, headers={**bearer(made.tokens.reader), **json_type}).status_code == 403
        assert anon.post(HOOK, content=body, headers={**bearer("mk_not_a_token"), **json_type}).status_code == 401
        response = anon.post(HOOK, content=body, headers={**bearer(made.tokens.writer), **json_type})
        assert response.status_code == 202, response.text
    with client(server, made.tokens.reader) as reader:
        job = poll(reader, response.json()["job_id"])
    assert job["status"] == "succeeded" and job["actor"] == "auto-writer" and job["result"]["verdict"] == "pass"


def test_trigger_scope_inputs_and_failed_jobs(env: tuple[Stack, LiveServer, str, str]) -> None:
    made, server, model, secret = env
    with httpx.Client(base_url=server.url) as anon:
        other = request_body(unique("elsewhere"))
        assert anon.post(HOOK, content=other, headers=signed(secret, other)).status_code == 403
        garbage = b'{"model": 7'
        assert anon.post(HOOK, content=garbage, headers=signed(secret, garbage)).status_code == 400
        both = request_body(model, spec=SPEC)
        assert anon.post(HOOK, content=both, headers=signed(secret, both)).status_code == 400
        no_policy = json.dumps({"model": model, "version": 1, "alias": "production"}).encode()
        assert anon.post(HOOK, content=no_policy, headers=signed(secret, no_policy)).status_code == 404
        missing = json.dumps({"model": model, "version": 99, "spec": SPEC}).encode()
        response = anon.post(HOOK, content=missing, headers=signed(secret, missing))
        assert response.status_code == 202, response.text
    with client(server, made.tokens.reader) as reader:
        job = poll(reader, response.json()["job_id"])
    assert job["status"] == "failed" and "99" in job["error"]


def test_triggers_are_managed_by_maintainers_and_secrets_shown_once(
    env: tuple[Stack, LiveServer, str, str], tmp_path: Path
) -> None:
    made, server, model, _ = env
    name = unique("trig")
    with client(server, made.tokens.writer) as writer:
        assert writer.post("/api/v1/automations/triggers", json={"name": name}).status_code == 403
    with client(server, made.tokens.maintainer) as api:
        created = api.post("/api/v1/automations/triggers", json={"name": name})
        assert created.status_code == 201
        assert api.post("/api/v1/automations/triggers", json={"name": name}).status_code == 409
        listed = [t for t in api.get("/api/v1/automations/triggers").json() if t["name"] == name]
        assert listed and "secret" not in listed[0]
        body = request_body(model)
        ok = httpx.post(server.url + HOOK, content=body, headers=signed(created.json()["secret"], body))
        assert ok.status_code == 202  # an unscoped trigger may ask for any model
        assert api.delete(f"/api/v1/automations/triggers/{name}").status_code == 200
        gone = httpx.post(server.url + HOOK, content=body, headers=signed(created.json()["secret"], body))
        assert gone.status_code == 401


def test_replayed_signed_request_is_not_queued_twice(env: tuple[Stack, LiveServer, str, str]) -> None:
    _, server, model, secret = env
    body = request_body(model)
    headers = signed(secret, body)
    first = httpx.post(server.url + HOOK, content=body, headers=headers)
    assert first.status_code == 202
    replay = httpx.post(server.url + HOOK, content=body, headers=headers)
    assert replay.status_code == 409 or replay.json().get("job_id") == first.json()["job_id"], replay.text


def test_concurrent_copies_of_a_signed_request_queue_one_job(env: tuple[Stack, LiveServer, str, str]) -> None:
    made, server, model, secret = env
    body = request_body(model, commit_sha=uuid.uuid4().hex[:12])
    headers = signed(secret, body)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: httpx.post(server.url + HOOK, content=body, headers=headers), range(8)))
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
    assert len({a.json()["job_id"] for a in answers}) == 1
    with client(server, made.tokens.reader) as reader:
        jobs = reader.get("/api/v1/automations/jobs", params={"limit": 1000}).json()
        same = [j for j in jobs if j["params"].get("commit_sha") == json.loads(body)["commit_sha"]]
        assert [j["id"] for j in same] == [answers[0].json()["job_id"]]
        assert poll(reader, same[0]["id"])["status"] == "succeeded"


def test_the_same_webhook_id_with_another_body_or_trigger(env: tuple[Stack, LiveServer, str, str]) -> None:
    made, server, model, secret = env
    msg_id = f"msg_{uuid.uuid4().hex}"
    first, second = request_body(model), request_body(model, commit_sha="abc")
    with httpx.Client(base_url=server.url) as anon:
        one = anon.post(HOOK, content=first, headers=signing.headers([secret], msg_id, first))
        # One sender's webhook-id names one message: a different body under the same id is that message again.
        again = anon.post(HOOK, content=second, headers=signing.headers([secret], msg_id, second))
        assert one.status_code == again.status_code == 202 and one.json()["job_id"] == again.json()["job_id"]
        with client(server, made.tokens.maintainer) as api:
            other = api.post("/api/v1/automations/triggers", json={"name": unique("other"), "model": model}).json()
        theirs = anon.post(HOOK, content=first, headers=signing.headers([other["secret"]], msg_id, first))
        assert theirs.status_code == 202 and theirs.json()["job_id"] != one.json()["job_id"]  # ids are per trigger
        too_long = anon.post(HOOK, content=first, headers=signing.headers([secret], "m" * 300, first))
        assert too_long.status_code == 400 and "webhook-id" in too_long.text
        assert too_long.headers["content-type"].startswith("application/problem+json")
