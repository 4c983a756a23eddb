"""The webhook and automation routes at their edges, through the real ASGI app: out-of-range numbers and
malformed input get 4xx problems (never 500), readers do not see webhook URLs (for chat-style hooks the URL
is the credential), and applying a rule that needs a missing gate policy warns with the command to fix it."""

from __future__ import annotations

import uuid

import httpx
import pytest

from automations import signing
from tests.conftest import Tokens, bearer, unique

BIG = 2**63  # one past the largest BIGINT
PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.request.url, response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers


@pytest.mark.parametrize("limit", ["-1", "0", "1001", str(BIG), "100000000000000000000000000000"])
async def test_job_list_limit_out_of_range_is_400(app_client: httpx.AsyncClient, limit: str) -> None:
    assert_problem(await app_client.get("/api/v1/automations/jobs", params={"limit": limit}), 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/v1/automations/jobs/{BIG}"),
        ("GET", f"/api/v1/automations/jobs/{-BIG - 1}"),
        ("GET", f"/api/v1/webhooks/{BIG}"),
        ("POST", f"/api/v1/webhooks/{BIG}/disable"),
        ("POST", f"/api/v1/webhooks/{BIG}/enable"),
        ("POST", f"/api/v1/webhooks/{BIG}/rotate-secret"),
        ("POST", f"/api/v1/webhooks/{BIG}/test"),
        ("DELETE", f"/api/v1/webhooks/{BIG}"),
        ("POST", f"/api/v1/webhooks/deliveries/{BIG}/redeliver"),
    ],
)
async def test_out_of_range_ids_are_404(app_client: httpx.AsyncClient, method: str, path: str) -> None:
    assert_problem(await app_client.request(method, path), 404)


async def test_out_of_range_recover_id_is_404(app_client: httpx.AsyncClient) -> None:
    body = {"since": "2026-01-01T00:00:00Z"}
    assert_problem(await app_client.post(f"/api/v1/webhooks/{BIG}/recover", json=body), 404)


@pytest.mark.parametrize(
    "params",
    [{"webhook_id": str(BIG)}, {"before": str(BIG)}, {"before": str(-BIG - 1)}, {"limit": "-1"}, {"limit": str(BIG)}],
)
async def test_out_of_range_delivery_filters_are_400(app_client: httpx.AsyncClient, params: dict[str, str]) -> None:
    assert_problem(await app_client.get("/api/v1/webhooks/deliveries", params=params), 400)


@pytest.mark.parametrize("version", [BIG, -BIG - 1, 10**400])
async def test_out_of_range_version_in_a_gate_run_request_is_400(app_client: httpx.AsyncClient, version: int) -> None:
    body = {"model": unique("nope"), "version": version, "alias": "staging"}
    assert_problem(await app_client.post("/api/v1/hooks/gate-runs", json=body), 400)


@pytest.mark.parametrize("timestamp", ["9" * 400, "-" + "9" * 400, "1e400", " 1", ""])
async def test_unsigned_hook_request_with_a_bad_timestamp_is_401(app_client: httpx.AsyncClient, timestamp: str) -> None:
    name = unique("ci")
    trigger = await app_client.post("/api/v1/automations/triggers", json={"name": name})
    assert trigger.status_code == 201, trigger.text  # a secret to check the signature against
    body = b'{"model": "m", "version": 1, "alias": "staging"}'
    headers = {
        "authorization": "",  # the client's admin token off: this request relies on its signature alone
        "content-type": "application/json",
        "webhook-id": f"msg_{uuid.uuid4().hex}",
        "webhook-timestamp": timestamp,
        "webhook-signature": signing.sign(trigger.json()["secret"], "x", 0, body),
    }
    try:
        assert_problem(await app_client.post("/api/v1/hooks/gate-runs", content=body, headers=headers), 401)
    finally:
        assert (await app_client.delete(f"/api/v1/automations/triggers/{name}")).status_code == 200


def test_signature_check_refuses_absurd_timestamps_without_raising() -> None:
    secret, body = signing.new_secret(), b"{}"
    for timestamp in ("9" * 400, "-" + "9" * 5000, "\uff11\uff12\uff13", "\u0661\u0662\u0663", "+1", "1_000"):
        headers = {"webhook-id": "m", "webhook-timestamp": timestamp, "webhook-signature": "v1,AAAA"}
        assert signing.verify([secret], headers, body) is None
    good = signing.headers([secret], "m", body)
    assert signing.verify([secret], good, body) == "m"


@pytest.mark.parametrize(
    "url", ["https://[::1/", "https://[::1", "https://[not-an-address]/hook", "http://[::1]x/", "https://h:99999/"]
)
async def test_malformed_webhook_url_is_400(app_client: httpx.AsyncClient, url: str) -> None:
    response = await app_client.post("/api/v1/webhooks", json={"url": url, "events": ["*"]})
    assert_problem(response, 400)
    assert response.json().get("field") == "url", response.text


async def test_readers_and_writers_see_only_scheme_and_host_of_webhook_urls(
    app_client: httpx.AsyncClient, api_tokens: Tokens
) -> None:
    secret_path = f"/services/T000/B000/{uuid.uuid4().hex}"
    url = f"https://hooks.example.com:8443{secret_path}?token=abc"
    created = await app_client.post(
        "/api/v1/webhooks", json={"url": url, "events": ["gate_policy.set"], "model": unique("quiet")}
    )
    assert created.status_code == 201, created.text
    hook_id = created.json()["id"]
    assert created.json()["url"] == url
    try:
        for token in (api_tokens.reader, api_tokens.writer):
            for response in (
                await app_client.get(f"/api/v1/webhooks/{hook_id}", headers=bearer(token)),
                await app_client.get("/api/v1/webhooks", headers=bearer(token)),
            ):
                assert response.status_code == 200, response.text
                assert secret_path not in response.text and "abc" not in response.text
            shown = (await app_client.get(f"/api/v1/webhooks/{hook_id}", headers=bearer(token))).json()
            assert shown["url"] == "https://hooks.example.com:8443/***"
            assert shown["url_redacted"] is True
        for token in (api_tokens.maintainer, api_tokens.admin):
            shown = (await app_client.get(f"/api/v1/webhooks/{hook_id}", headers=bearer(token))).json()
            assert shown["url"] == url and shown["url_redacted"] is False
            listed = (await app_client.get("/api/v1/webhooks", headers=bearer(token))).json()
            assert url in [h["url"] for h in listed]
    finally:
        assert (await app_client.delete(f"/api/v1/webhooks/{hook_id}")).status_code == 200


async def test_a_url_without_a_path_is_shown_as_it_is(app_client: httpx.AsyncClient, api_tokens: Tokens) -> None:
    created = await app_client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com", "events": ["gate_policy.set"], "model": unique("quiet")},
    )
    hook_id = created.json()["id"]
    try:
        shown = (await app_client.get(f"/api/v1/webhooks/{hook_id}", headers=bearer(api_tokens.reader))).json()
        assert shown["url"] == "https://hooks.example.com" and shown["url_redacted"] is False
    finally:
        await app_client.delete(f"/api/v1/webhooks/{hook_id}")


RUN_GATE = """
rules:
  - name: {name}
    on: model_version.created
    {model}action: run_gate
    alias: {alias}
"""


async def test_applying_a_rule_whose_gate_policy_is_missing_warns(app_client: httpx.AsyncClient) -> None:
    model, alias, name = unique("ungated"), f"a-{uuid.uuid4().hex[:8]}", unique("rule")
    assert (await app_client.post("/api/v1/models", json={"name": model})).status_code == 201
    text = RUN_GATE.format(name=name, model=f"model: {model}\n    ", alias=alias)
    try:
        applied = await app_client.post("/api/v1/automations/rules", json={"yaml": text})
        assert applied.status_code == 200, applied.text
        [rule] = applied.json()
        [warning] = rule["warnings"]
        assert f"registry gate policy set {model} --alias {alias} --spec gates.yaml" in warning, warning

        every = RUN_GATE.format(name=f"{name}-all", model="", alias=alias)
        [rule] = (await app_client.post("/api/v1/automations/rules", json={"yaml": every})).json()
        [warning] = rule["warnings"]
        assert f"registry gate policy set MODEL --alias {alias} --spec gates.yaml" in warning, warning

        spec = "version: 1\ngates:\n  - {id: acc, kind: proportion, outcome: correct, threshold: 0.9}\n"
        policy = await app_client.put(f"/api/v1/models/{model}/gate-policies/{alias}", json={"spec": spec})
        assert policy.status_code == 200, policy.text
        for yaml_text in (text, every):
            [rule] = (await app_client.post("/api/v1/automations/rules", json={"yaml": yaml_text})).json()
            assert "warnings" not in rule or rule["warnings"] == []
        listed = (await app_client.get("/api/v1/automations/rules")).json()
        assert all("warnings" not in r for r in listed)
    finally:
        for rule_name in (name, f"{name}-all"):
            await app_client.delete(f"/api/v1/automations/rules/{rule_name}")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/automations/jobs?status=a%00b", None),
        ("DELETE", "/api/v1/automations/rules/a%00b", None),
        ("DELETE", "/api/v1/automations/triggers/a%00b", None),
        ("GET", "/api/v1/webhooks/deliveries?status=a%00b", None),
        ("POST", "/api/v1/automations/triggers", {"name": "a\x00b"}),
        (
            "POST",
            "/api/v1/automations/rules",
            {"yaml": 'rules: [{name: "a\\0b", on: gate.completed, action: promote, alias: s}]'},
        ),
        ("POST", "/api/v1/webhooks", {"url": "https://hooks.example.com/a\x00b", "events": ["*"]}),
        ("POST", "/api/v1/webhooks", {"url": "https://hooks.example.com/", "events": ["*"], "description": "a\x00b"}),
        ("POST", "/api/v1/webhooks", {"url": "https://hooks.example.com/", "events": ["*"], "model": "a\x00b"}),
    ],
)
async def test_nul_characters_are_never_a_500(
    app_client: httpx.AsyncClient, method: str, path: str, body: dict[str, str] | None
) -> None:
    response = await app_client.request(method, path, json=body)
    assert response.status_code < 500, (method, path, response.status_code, response.text)
    if response.status_code == 201:  # stored: then it reads back the same on both backends
        await app_client.delete(f"/api/v1/webhooks/{response.json()['id']}")
