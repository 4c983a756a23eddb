"""Alias names are case-insensitive: every route stores and finds them lower case, so `Production` is the
protected, gated `production` and not an unprotected look-alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from registry.db import Database
from registry.settings import Settings
from registry.storage.local import LocalBlobStore
from tests.conftest import Tokens, bearer, unique

SPEC = """
version: 1
gates:
  - {id: accuracy, kind: proportion, outcome: correct, threshold: 0.95}
"""


async def model_with_versions(client: httpx.AsyncClient, count: int) -> str:
    """A model with ``count`` versions registered from a run's folder."""
    name = unique("case")
    assert (await client.post("/api/v1/models", json={"name": name})).status_code == 201
    for n in range(count):
        run = (await client.post("/api/v1/runs", json={})).json()
        await client.put(f"/api/v1/runs/{run['id']}/artifacts/model/w.bin", content=f"{name}-{n}".encode())
        made = await client.post(f"/api/v1/models/{name}/versions", json={"run_id": run["id"], "path": "model"})
        assert made.status_code == 201, made.text
    return name


async def test_look_alikes_of_a_protected_alias_are_the_protected_alias(
    app_client: httpx.AsyncClient, api_tokens: Tokens
) -> None:
    name = await model_with_versions(app_client, 2)
    for spelling in ("Production", "PRODUCTION", "pRoDuCtIoN"):
        refused = await app_client.put(
            f"/api/v1/models/{name}/aliases/{spelling}", json={"version": 1}, headers=bearer(api_tokens.writer)
        )
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    moved = await app_client.put(
        f"/api/v1/models/{name}/aliases/Production", json={"version": 2}, headers=bearer(api_tokens.maintainer)
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["alias"] == "production"
    model = (await app_client.get(f"/api/v1/models/{name}")).json()
    assert [(a["alias"], a["version"]) for a in model["aliases"]] == [("production", 2)]
    for spelling in ("production", "PRODUCTION"):
        held = await app_client.get(f"/api/v1/models/{name}/aliases/{spelling}")
        assert held.status_code == 200 and held.json()["version"] == 2
    assert (await app_client.get(f"/api/v1/models/{name}/versions/2")).json()["aliases"] == ["production"]
    history = (await app_client.get(f"/api/v1/models/{name}/promotions", params={"alias": "PRODUCTION"})).json()
    assert [(p["alias"], p["to_version"]) for p in history] == [("production", 2)]

    # Writers may still use capitals for unprotected aliases; they land lower case and act as one alias.
    ok = await app_client.put(
        f"/api/v1/models/{name}/aliases/Canary", json={"version": 1}, headers=bearer(api_tokens.writer)
    )
    assert ok.status_code == 200 and ok.json()["alias"] == "canary"
    again = await app_client.put(
        f"/api/v1/models/{name}/aliases/CANARY", json={"version": 1}, headers=bearer(api_tokens.writer)
    )
    assert again.json() == {"alias": "canary", "to_version": 1, "changed": False}
    back = await app_client.post(f"/api/v1/models/{name}/aliases/canary/rollback", json={})
    assert back.status_code == 409  # one move only: nothing to roll back to
    gone = await app_client.delete(f"/api/v1/models/{name}/aliases/CaNaRy", headers=bearer(api_tokens.writer))
    assert gone.status_code == 200 and gone.json()["alias"] == "canary"
    refused = await app_client.delete(f"/api/v1/models/{name}/aliases/PRODUCTION", headers=bearer(api_tokens.writer))
    assert refused.status_code == 403


async def test_gate_policies_match_any_spelling(app_client: httpx.AsyncClient, api_tokens: Tokens) -> None:
    name = await model_with_versions(app_client, 1)
    made = await app_client.put(
        f"/api/v1/models/{name}/gate-policies/Staging", json={"spec": SPEC}, headers=bearer(api_tokens.maintainer)
    )
    assert made.status_code == 200 and made.json()["alias"] == "staging"
    listed = (await app_client.get(f"/api/v1/models/{name}/gate-policies")).json()
    assert [p["alias"] for p in listed] == ["staging"]
    for spelling in ("staging", "STAGING", "Staging"):
        blocked = await app_client.put(
            f"/api/v1/models/{name}/aliases/{spelling}", json={"version": 1}, headers=bearer(api_tokens.writer)
        )
        assert blocked.status_code == 412, blocked.text
        assert blocked.json()["code"] == "gate_policy_not_met"
    removed = await app_client.delete(
        f"/api/v1/models/{name}/gate-policies/STAGING", headers=bearer(api_tokens.maintainer)
    )
    assert removed.status_code == 200
    assert (await app_client.get(f"/api/v1/models/{name}/gate-policies")).json() == []


@pytest.fixture
async def capitalised_settings_client(
    db: Database, settings: Settings, api_tokens: Tokens
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with ``MODELKEEP_PROTECTED_ALIASES=Production,Live`` as an operator might write it."""
    from registry.api.app import create_app

    custom = settings.model_copy(update={"protected_aliases": ["Production", "Live"]})
    app = create_app(custom, db=db, store=LocalBlobStore(custom.data_dir / "blobs"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry", headers=bearer(api_tokens.admin)
    ) as c:
        yield c


async def test_protected_aliases_from_settings_match_any_spelling(
    capitalised_settings_client: httpx.AsyncClient, api_tokens: Tokens
) -> None:
    client = capitalised_settings_client
    name = await model_with_versions(client, 1)
    for spelling in ("live", "production", "LIVE"):
        refused = await client.put(
            f"/api/v1/models/{name}/aliases/{spelling}", json={"version": 1}, headers=bearer(api_tokens.writer)
        )
        assert refused.status_code == 403, (spelling, refused.text)


async def test_malformed_alias_names_are_400_with_the_rule(app_client: httpx.AsyncClient) -> None:
    name = await model_with_versions(app_client, 1)
    for bad in ("latest", "LATEST", "V3", "1abc", "a%20b", "x%0A"):
        answer = await app_client.put(f"/api/v1/models/{name}/aliases/{bad}", json={"version": 1})
        assert answer.status_code == 400, (bad, answer.text)
        assert "alias" in answer.json()["detail"]
