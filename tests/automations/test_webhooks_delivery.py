"""Webhook delivery end to end: a real `registry serve` process sending to real receivers on loopback that verify
every request with the ``standardwebhooks`` library. Retries, Retry-After, dead letters, 410, redelivery,
recovery, secret rotation, filters and the test event, on SQLite and PostgreSQL."""

from __future__ import annotations

import email.utils
import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from registry.cli import main
from tests.automations.receivers import (
    Hit,
    Receiver,
    Reply,
    Stack,
    add_version,
    client,
    deliveries,
    model_with_versions,
    stack,
    subscribe,
    wait_until,
)
from tests.conftest import LiveServer, unique

SCHEDULE = [0.0, 0.2, 0.5, 1.0, 2.0]
OVERLAP_SECONDS = 7.2
ENV = {
    "MODELKEEP_WEBHOOK_RETRY_SCHEDULE": ",".join(map(str, SCHEDULE)),
    "MODELKEEP_WEBHOOK_TIMEOUT_SECONDS": "1",
    "MODELKEEP_WEBHOOK_ROTATION_OVERLAP_HOURS": str(OVERLAP_SECONDS / 3600),
}


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, LiveServer]]:
    with stack(database_url, tmp_path_factory.mktemp("delivery")) as made:
        yield made, made.serve(ENV)


@pytest.fixture
def api(env: tuple[Stack, LiveServer]) -> Iterator[httpx.Client]:
    """A maintainer's client; the test's webhooks are removed afterwards (so their retries stop)."""
    made, server = env
    with client(server, made.tokens.maintainer) as maintainer:
        yield maintainer
        for hook in maintainer.get("/api/v1/webhooks").json():
            maintainer.delete(f"/api/v1/webhooks/{hook['id']}")


def as_reader(env: tuple[Stack, LiveServer]) -> httpx.Client:
    return client(env[1], env[0].tokens.reader)


def move(api: httpx.Client, model: str, alias: str, version: int) -> dict[str, Any]:
    response = api.put(f"/api/v1/models/{model}/aliases/{alias}", json={"version": version})
    assert response.status_code == 200, response.text
    return dict(response.json())


def settled(api: httpx.Client, hook_id: int, count: int = 1, *, timeout: float = 20) -> list[dict[str, Any]]:
    """Wait until the webhook has ``count`` deliveries, none pending or in flight; oldest first."""

    def check() -> list[dict[str, Any]] | None:
        found = deliveries(api, webhook_id=hook_id)
        if len(found) >= count and all(d["status"] not in ("pending", "delivering") for d in found):
            return sorted(found, key=lambda d: d["id"])
        return None

    return list(wait_until(check, timeout=timeout, what=f"{count} settled deliveries of webhook {hook_id}"))


def parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def gaps(hits: list[Hit]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(hits)]


def test_body_headers_signature_sequence_and_latency(api: httpx.Client) -> None:
    model = unique("body")
    with Receiver() as rec:
        hook = subscribe(api, rec, ["model_version.created", "alias.moved"], model=model)
        model_with_versions(api, model, 2)
        for version in (1, 2, 1):
            move(api, model, "staging", version)
        wait_until(lambda: len(rec.ids()) == 5, what="5 events")
    events = api.get("/api/v1/events", params={"model": model, "limit": 100}).json()["items"]
    wanted = [e for e in events if e["type"] in ("model_version.created", "alias.moved")]
    hits = {h.id: h for h in rec.verified()}
    assert set(hits) == {e["id"] for e in wanted}
    for event in wanted:
        hit = hits[event["id"]]
        body = hit.payload
        assert set(body) == {"type", "timestamp", "id", "data"}
        assert body["id"] == event["id"] == hit.id and body["type"] == event["type"]
        assert body["data"] == {**event["data"], "sequence": event["seq"]}
        assert abs(parse_ts(body["timestamp"]) - parse_ts(event["created_at"])) < 0.001
        assert abs(int(hit.timestamp) - hit.at) < 5  # webhook-timestamp: when the attempt was made
        assert len(hit.signature.split(" ")) == 1 and hit.signature.startswith("v1,")
        assert hit.at - parse_ts(body["timestamp"]) < 1.0, "a healthy receiver gets each event within a second"
    moves = sorted(rec.payloads("alias.moved"), key=lambda b: b["data"]["sequence"])
    assert [(b["data"]["from_version"], b["data"]["to_version"]) for b in moves] == [(None, 1), (1, 2), (2, 1)]
    assert [b["data"]["sequence"] for b in moves] == sorted({b["data"]["sequence"] for b in moves})
    for delivery in settled(api, hook["id"], 5):
        assert delivery["status"] == "succeeded" and delivery["attempts"] == 1
        assert [a["status_code"] for a in delivery["history"]] == [200] and delivery["last_latency_ms"] is not None


def test_the_request_id_travels_from_the_api_request_to_the_delivery(api: httpx.Client) -> None:
    """The id a caller (or its load balancer) sent is stored with the event and sent as ``x-request-id`` with
    its delivery, so a webhook can be traced back to the request and its log lines; events recorded without
    a request (none here) or with an unusable id get none or a fresh one."""
    model = unique("rid")
    with Receiver() as rec:
        subscribe(api, rec, ["model.created", "model_version.created"], model=model)
        made = api.post("/api/v1/models", json={"name": model}, headers={"x-request-id": "deploy-42.build:7"})
        assert made.status_code == 201 and made.headers["x-request-id"] == "deploy-42.build:7"
        run = api.post("/api/v1/runs", json={}).json()
        assert api.put(f"/api/v1/runs/{run['id']}/artifacts/m.bin", content=b"w").status_code == 201
        changed = api.post(
            f"/api/v1/models/{model}/versions",
            json={"run_id": run["id"], "path": "m.bin"},
            headers={"x-request-id": "not ok: spaces"},
        )
        assert changed.status_code == 201
        fresh = changed.headers["x-request-id"]
        assert fresh != "not ok: spaces" and len(fresh) == 32
        wait_until(lambda: len(rec.ids()) == 2, what="2 events")
    events = {e["type"]: e for e in api.get("/api/v1/events", params={"model": model}).json()["items"]}
    assert events["model.created"]["request_id"] == "deploy-42.build:7"
    assert events["model_version.created"]["request_id"] == fresh
    by_id = {h.id: h for h in rec.verified()}
    assert by_id[events["model.created"]["id"]].request_id == "deploy-42.build:7"
    assert by_id[events["model_version.created"]["id"]].request_id == fresh


def test_500_is_retried_with_the_same_webhook_id(api: httpx.Client) -> None:
    model = unique("r500")
    with Receiver(respond=lambda hit: Reply(500) if hit.nth <= 2 else Reply(204)) as rec:
        hook = subscribe(api, rec, ["model.created"], model=model)
        api.post("/api/v1/models", json={"name": model})
        [delivery] = settled(api, hook["id"])
    hits = rec.verified()
    assert [h.status for h in hits] == [500, 500, 204] and len({h.id for h in hits}) == 1
    assert all(g >= s * 0.9 for g, s in zip(gaps(hits), SCHEDULE[1:], strict=False)), gaps(hits)
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["history"]] == [500, 500, 204]
    assert delivery["event_id"] == hits[0].id


def test_timeout_is_retried(api: httpx.Client) -> None:
    model = unique("slow")
    with Receiver(respond=lambda hit: Reply(200, delay=2.5) if hit.nth == 1 else Reply(200)) as rec:
        hook = subscribe(api, rec, ["model.created"], model=model)
        api.post("/api/v1/models", json={"name": model})
        [delivery] = settled(api, hook["id"])
    first, second = delivery["history"]
    assert first["status_code"] is None and "timeout" in first["error"] and first["duration_ms"] >= 900
    assert second["status_code"] == 200 and delivery["status"] == "succeeded"
    assert [h.nth for h in rec.verified()] == [1, 2]


def test_connection_refused_until_the_receiver_starts(api: httpx.Client) -> None:
    model = unique("refused")
    rec = Receiver()  # its port is reserved, nothing listens yet
    hook = subscribe(api, rec, ["model.created"], model=model)
    api.post("/api/v1/models", json={"name": model})

    def refused_once() -> bool:
        found = deliveries(api, webhook_id=hook["id"])
        return bool(found and found[0]["history"])

    wait_until(refused_once, timeout=3, what="a refused attempt")
    with rec:
        [delivery] = settled(api, hook["id"])
    assert delivery["status"] == "succeeded" and delivery["attempts"] >= 2
    *refused, last = delivery["history"]
    assert all(a["status_code"] is None and a["error"].startswith("connection failed") for a in refused)
    assert last["status_code"] == 200 and len(rec.verified()) == 1


def test_redirect_is_a_failure_and_never_followed(api: httpx.Client) -> None:
    model = unique("redirect")
    with Receiver(respond=lambda hit: Reply()) as target:
        target.secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

        def respond(hit: Hit) -> Reply:
            return Reply(307, {"location": target.url}) if hit.nth == 1 else Reply(200)

        with Receiver(respond=respond) as rec:
            hook = subscribe(api, rec, ["model.created"], model=model)
            api.post("/api/v1/models", json={"name": model})
            [delivery] = settled(api, hook["id"])
    assert [a["status_code"] for a in delivery["history"]] == [307, 200]
    assert target.snapshot() == [] and [h.status for h in rec.verified()] == [307, 200]


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured(api: httpx.Client, form: str) -> None:
    model = unique("later")

    def respond(hit: Hit) -> Reply:
        if hit.nth > 1:
            return Reply(200)
        wait = "2" if form == "seconds" else email.utils.formatdate(time.time() + 3, usegmt=True)
        return Reply(503, {"retry-after": wait})

    with Receiver(respond=respond) as rec:
        hook = subscribe(api, rec, ["model.created"], model=model)
        api.post("/api/v1/models", json={"name": model})
        [delivery] = settled(api, hook["id"])
    hits = rec.verified()
    assert [h.status for h in hits] == [503, 200]
    # The schedule alone would retry after 0.2 s; the receiver asked for 2 s (an HTTP date: 2-3 s, whole seconds).
    assert gaps(hits)[0] >= 2.0, gaps(hits)
    assert [a["status_code"] for a in delivery["history"]] == [503, 200]


def test_last_attempt_fails_the_delivery_and_it_is_listed_with_every_attempt(
    api: httpx.Client, env: tuple[Stack, LiveServer]
) -> None:
    model = unique("dead")
    answers = [Reply(500), Reply(200, delay=2.5), Reply(302, {"location": "http://127.0.0.1:9/"}), Reply(429)]

    def respond(hit: Hit) -> Reply:
        return answers[hit.nth - 1] if hit.nth <= len(answers) else Reply(503)

    with Receiver(respond=respond) as rec:
        hook = subscribe(api, rec, ["model.created"], model=model)
        api.post("/api/v1/models", json={"name": model})
        [delivery] = settled(api, hook["id"], timeout=30)
    assert delivery["status"] == "failed" and delivery["attempts"] == len(SCHEDULE)
    assert len(rec.verified()) == len(SCHEDULE)
    with as_reader(env) as reader:
        listed = {d["id"]: d for d in deliveries(reader, status="failed")}
    assert delivery["id"] in listed
    history = listed[delivery["id"]]["history"]
    assert [a["attempt"] for a in history] == [1, 2, 3, 4, 5]
    assert [a["status_code"] for a in history] == [500, None, 302, 429, 503]
    assert [a["error"] is None for a in history] == [True, False, True, True, True]
    assert "timeout" in history[1]["error"] and history[1]["duration_ms"] >= 900
    assert all(isinstance(a["duration_ms"], int) and a["started_at"] for a in history)
    assert listed[delivery["id"]]["next_attempt_at"] is None
    shown = api.get(f"/api/v1/webhooks/{hook['id']}").json()
    assert shown["enabled"] is True and shown["failing_since"] is not None  # one dead letter does not disable
    with as_reader(env) as reader:
        assert all(d["status"] == "succeeded" for d in deliveries(reader, status="succeeded"))


def test_410_disables_the_endpoint_with_a_reason(api: httpx.Client) -> None:
    model = unique("gone")
    with Receiver(respond=lambda hit: Reply(410)) as rec:
        hook = subscribe(api, rec, ["model.created", "model_version.created"], model=model)
        model_with_versions(api, model, 3)
        shown = wait_until(
            lambda: (h := api.get(f"/api/v1/webhooks/{hook['id']}").json())["enabled"] is False and h,
            what="the endpoint to be disabled",
        )
        assert "410" in shown["disabled_reason"]
        found = settled(api, hook["id"], 1)
        assert {d["status"] for d in found} <= {"failed", "cancelled"}
        assert any(d["status"] == "failed" and d["last_status_code"] == 410 for d in found)
        assert all(d["attempts"] <= 1 for d in found)  # a 410 is never retried
        before = len(rec.snapshot())
        add_version(api, model)
        time.sleep(0.5)
        assert len(rec.snapshot()) == before
        enabled = api.post(f"/api/v1/webhooks/{hook['id']}/enable").json()
    assert enabled["enabled"] is True and enabled["disabled_reason"] is None


def test_redeliver_sends_again_with_the_same_webhook_id(
    api: httpx.Client, env: tuple[Stack, LiveServer], capsys: pytest.CaptureFixture[str]
) -> None:
    model = unique("again")
    with Receiver() as rec:
        hook = subscribe(api, rec, ["model.created"], model=model)
        api.post("/api/v1/models", json={"name": model})
        [delivery] = settled(api, hook["id"])
        with as_reader(env) as reader:
            assert reader.post(f"/api/v1/webhooks/deliveries/{delivery['id']}/redeliver").status_code == 403
        assert api.post("/api/v1/webhooks/deliveries/999999999/redeliver").status_code == 404
        token = env[0].tokens.maintainer
        assert main(["webhooks", "redeliver", str(delivery["id"]), "--url", env[1].url, "--token", token]) == 0
        wait_until(lambda: len(rec.verified()) == 2, what="the redelivery")
        [again] = settled(api, hook["id"])
    first, second = rec.verified()
    assert first.id == second.id == delivery["event_id"] and first.body == second.body
    assert again["status"] == "succeeded" and [a["status_code"] for a in again["history"]] == [200, 200]


def test_recover_since_requeues_only_later_failures(
    api: httpx.Client, env: tuple[Stack, LiveServer], capsys: pytest.CaptureFixture[str]
) -> None:
    model = unique("recover")
    healthy = False
    with Receiver(respond=lambda hit: Reply(200 if healthy else 500)) as rec:
        hook = subscribe(api, rec, ["model.created", "model_version.created"], model=model)
        api.post("/api/v1/models", json={"name": model})
        [early] = settled(api, hook["id"], 1, timeout=30)
        since = datetime.now(UTC)
        time.sleep(0.05)
        add_version(api, model)
        add_version(api, model)
        found = settled(api, hook["id"], 3, timeout=30)
        assert [d["status"] for d in found] == ["failed"] * 3
        healthy = True
        naive = api.post(f"/api/v1/webhooks/{hook['id']}/recover", json={"since": "2026-01-01T00:00:00"})
        assert naive.status_code == 400
        token, url = env[0].tokens.maintainer, env[1].url
        capsys.readouterr()
        code = main(
            [
                "webhooks",
                "recover",
                str(hook["id"]),
                "--since",
                since.isoformat(),
                "--url",
                url,
                "--token",
                token,
                "--json",
            ]
        )
        assert code == 0 and '"requeued": 2' in capsys.readouterr().out
        wait_until(lambda: sum(1 for h in rec.verified() if h.status == 200) == 2, what="the recovered deliveries")
        after = {d["id"]: d for d in settled(api, hook["id"], 3)}
    assert after[early["id"]]["status"] == "failed"
    recovered = [d for d in after.values() if d["id"] != early["id"]]
    assert all(d["status"] == "succeeded" for d in recovered)
    for d in recovered:
        statuses = [h.status for h in rec.of(d["event_id"])]
        assert statuses == [500] * len(SCHEDULE) + [200]  # every attempt, before and after, had the same id


def test_rotation_signs_with_both_secrets_during_the_overlap(api: httpx.Client, env: tuple[Stack, LiveServer]) -> None:
    model = unique("rotate")
    with Receiver() as rec:
        hook = subscribe(api, rec, ["model_version.created", "model.created"], model=model)
        old = hook["secret"]
        api.post("/api/v1/models", json={"name": model})
        wait_until(lambda: len(rec.verified()) == 1, what="the first event")
        with as_reader(env) as reader:
            assert reader.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret").status_code == 403
            assert all(h["secret"] is None for h in reader.get("/api/v1/webhooks").json())
        rotated = api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret")
        rotated_at = time.monotonic()
        new = rotated.json()["secret"]
        assert rotated.status_code == 200 and new.startswith("whsec_") and new != old
        rec.secrets = [old, new]
        add_version(api, model)
        wait_until(lambda: len(rec.verified()) == 2, what="the event after the rotation")
        before, during = rec.verified()
        assert before.verified_with == {old} and len(before.signature.split()) == 1
        # A receiver that only knows the old secret and one that only knows the new one both accept it.
        assert during.verified_with == {old, new} and len(during.signature.split()) == 2
        for secret in (old, new):
            Webhook(secret).verify(
                during.body,
                {"webhook-id": during.id, "webhook-timestamp": during.timestamp, "webhook-signature": during.signature},
            )
        time.sleep(max(0.0, OVERLAP_SECONDS + 0.5 - (time.monotonic() - rotated_at)))
        add_version(api, model)
        wait_until(lambda: len(rec.verified()) == 3, what="the event after the overlap")
    after = rec.verified()[2]
    assert after.verified_with == {new} and len(after.signature.split()) == 1


def test_filters_by_event_type_and_model(api: httpx.Client) -> None:
    x, y = unique("fx"), unique("fy")
    with Receiver() as a, Receiver() as b, Receiver() as c:
        hook_a = subscribe(api, a, ["alias.moved"], model=x)
        hook_b = subscribe(api, b, ["model.created"])
        hook_c = subscribe(api, c, ["*"], model=y)
        model_with_versions(api, x, 2)
        move(api, x, "staging", 2)
        model_with_versions(api, y, 1)
        last = move(api, y, "staging", 1)
        wait_until(lambda: c.payloads("alias.moved"), what="the last event")
        settled(api, hook_c["id"], 3)
        got_a = [(p["type"], p["data"]["model"]) for p in a.payloads()]
        got_b = [(p["type"], p["data"]["name"]) for p in b.payloads()]
        got_c = sorted(p["type"] for p in c.payloads())
    assert got_a == [("alias.moved", x)]
    assert sorted(got_b) == sorted([("model.created", x), ("model.created", y)])
    assert got_c == ["alias.moved", "model.created", "model_version.created"]
    assert c.payloads("alias.moved")[0]["data"]["promotion_id"] == last["id"]
    for hook, count in ((hook_a, 1), (hook_b, 2), (hook_c, 3)):
        assert len(deliveries(api, webhook_id=hook["id"])) == count


def test_test_event_reaches_only_its_endpoint(api: httpx.Client, env: tuple[Stack, LiveServer]) -> None:
    with Receiver() as a, Receiver() as b:
        hook_a = subscribe(api, a, ["alias.moved"], model=unique("quiet"))
        hook_b = subscribe(api, b, ["*"])
        with as_reader(env) as reader:
            assert reader.post(f"/api/v1/webhooks/{hook_a['id']}/test").status_code == 403
        sent = api.post(f"/api/v1/webhooks/{hook_a['id']}/test")
        assert sent.status_code == 202
        [body] = wait_until(lambda: a.payloads("webhook.test"), what="the test event")
        assert body["id"] == sent.json()["event_id"] and body["data"]["webhook_id"] == hook_a["id"]
        settled(api, hook_a["id"])
        assert [d for d in deliveries(api, webhook_id=hook_b["id"]) if d["event_type"] == "webhook.test"] == []
        assert b.payloads("webhook.test") == []


def test_subscriptions_disable_enable_remove_and_roles(api: httpx.Client, env: tuple[Stack, LiveServer]) -> None:
    model = unique("manage")
    with client(env[1], env[0].tokens.writer) as writer:
        denied = writer.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["*"]})
        assert denied.status_code == 403
    bad = api.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["model.exploded"]})
    assert bad.status_code == 400 and "model.exploded" in bad.text
    with Receiver() as rec, Receiver() as sentinel:
        hook = subscribe(api, rec, ["model.created", "model_version.created"], model=model)
        subscribe(api, sentinel, ["model.created", "model_version.created"], model=model)
        with as_reader(env) as reader:
            listed = [h for h in reader.get("/api/v1/webhooks").json() if h["id"] == hook["id"]]
        assert (
            listed and listed[0]["secret"] is None and listed[0]["events"] == ["model.created", "model_version.created"]
        )
        disabled = api.post(f"/api/v1/webhooks/{hook['id']}/disable", json={"reason": "maintenance window"})
        assert disabled.json()["enabled"] is False and disabled.json()["disabled_reason"] == "maintenance window"
        model_with_versions(api, model, 1)
        wait_until(lambda: len(sentinel.ids()) == 2, what="the sentinel to see both events")
        assert rec.snapshot() == [] and deliveries(api, webhook_id=hook["id"]) == []
        assert api.post(f"/api/v1/webhooks/{hook['id']}/enable").json()["enabled"] is True
        add_version(api, model)
        wait_until(lambda: len(rec.ids()) == 1, what="delivery after enabling")
    assert api.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 200
    assert api.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404
    assert hook["id"] not in [h["id"] for h in api.get("/api/v1/webhooks").json()]


def test_disabling_an_endpoint_stops_its_retries(api: httpx.Client) -> None:
    model = unique("stop")
    with Receiver(respond=lambda hit: Reply(500)) as rec:
        hook = subscribe(api, rec, ["model.created"], model=model)
        api.post("/api/v1/models", json={"name": model})
        wait_until(lambda: rec.snapshot(), what="the first attempt")
        api.post(f"/api/v1/webhooks/{hook['id']}/disable", json={"reason": "receiver is misbehaving"})
        seen = len(rec.snapshot())
        time.sleep(sum(SCHEDULE) + 0.5)
        assert len(rec.snapshot()) == seen, "attempts arrived after the endpoint was disabled"


def test_timeout_bounds_the_whole_attempt(api: httpx.Client) -> None:
    model = unique("trickle")
    with Receiver(respond=lambda hit: Reply(200, trickle=0.8)) as rec:  # 10 bytes over 8 s; each read < 1 s
        hook = subscribe(api, rec, ["model.created"], model=model)
        api.post("/api/v1/models", json={"name": model})
        [delivery] = settled(api, hook["id"], timeout=40)
    first = delivery["history"][0]
    assert first["duration_ms"] < 2500, first
    assert first["status_code"] is None and "timeout" in first["error"]
