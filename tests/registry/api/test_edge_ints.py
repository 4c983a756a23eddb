"""Integers a BIGINT column cannot hold are refused at the edge on both databases: 400 in bodies and queries,
404 for ids in paths; never the driver's overflow as a 500."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from registry.db import Database
from tests.conftest import unique

BIG = 2**63  # one past the largest BIGINT
SMALL = -(2**63) - 1
MLFLOW = "/api/2.0/mlflow"


@dataclass(frozen=True)
class World:
    run: str
    artifact: str
    model: str


@pytest.fixture(scope="module")
async def world(app_client: httpx.AsyncClient) -> World:
    run = (await app_client.post("/api/v1/runs", json={"name": "ints"})).json()["id"]
    assert (await app_client.put(f"/api/v1/runs/{run}/artifacts/data/a.csv", content=b"x\n")).status_code == 201
    artifact = unique("ds")
    made = await app_client.post("/api/v1/artifacts", json={"name": artifact, "run_id": run, "path": "data"})
    assert made.status_code == 201, made.text
    model = unique()
    assert (await app_client.post("/api/v1/models", json={"name": model})).status_code == 201
    return World(run=run, artifact=artifact, model=model)


# (method, path, json body, expected status); {run}/{artifact}/{model} are filled in from the world.
NATIVE: list[tuple[str, str, Any, int]] = [
    ("GET", f"/api/v1/events?after={BIG}", None, 400),
    ("GET", f"/api/v1/events?after={SMALL}", None, 400),
    ("GET", f"/api/v1/audit?after={BIG}", None, 400),
    ("GET", f"/api/v1/experiments?after={BIG}", None, 400),
    ("GET", f"/api/v1/experiments/{BIG}", None, 404),
    ("GET", f"/api/v1/experiments/{SMALL}", None, 404),
    ("GET", f"/api/v1/runs?experiment_id={BIG}", None, 400),
    ("GET", f"/api/v1/runs?offset={BIG}", None, 400),
    ("GET", "/api/v1/runs?offset=-1", None, 400),
    ("GET", f"/api/v1/runs/{{run}}/metrics/loss?offset={BIG}", None, 400),
    ("GET", "/api/v1/runs/{run}/metrics/loss?offset=-1", None, 400),
    ("POST", "/api/v1/runs", {"experiment_id": BIG}, 400),
    ("POST", "/api/v1/runs", {"start_time": BIG}, 400),
    ("POST", "/api/v1/runs", {"start_time": 2**62}, 400),  # fits a BIGINT, but no date is that late
    ("PATCH", "/api/v1/runs/{run}", {"end_time": BIG}, 400),
    ("POST", "/api/v1/runs/{run}/log-batch", {"metrics": [{"key": "loss", "value": 1, "step": BIG}]}, 400),
    ("POST", "/api/v1/runs/{run}/log-batch", {"metrics": [{"key": "loss", "value": 1, "step": SMALL}]}, 400),
    ("POST", "/api/v1/runs/{run}/log-batch", {"metrics": [{"key": "loss", "value": 1, "timestamp": BIG}]}, 400),
    ("POST", "/api/v1/runs/{run}/inputs", {"artifact": "{artifact}", "version": BIG}, 400),
    ("GET", f"/api/v1/artifacts/{{artifact}}/versions/{BIG}", None, 404),
    ("POST", "/api/v1/tokens", {"name": "t-{run}", "expires_in_days": 2147483648}, 400),
    ("POST", "/api/v1/tokens", {"name": "t-{run}", "expires_in_days": 1e300}, 400),
    ("POST", "/api/v1/tokens", {"name": "t-{run}", "expires_in_days": 1e999}, 400),
]

MLFLOW_CASES: list[tuple[str, str, Any, int]] = [
    ("GET", f"{MLFLOW}/experiments/get?experiment_id={BIG}", None, 404),
    ("POST", f"{MLFLOW}/runs/create", {"experiment_id": str(BIG)}, 404),
    ("POST", f"{MLFLOW}/runs/create", {"experiment_id": "0", "start_time": BIG}, 400),
    ("POST", f"{MLFLOW}/runs/update", {"run_id": "{run}", "end_time": BIG}, 400),
    ("POST", f"{MLFLOW}/runs/log-metric", {"run_id": "{run}", "key": "m", "value": 1, "timestamp": BIG}, 400),
    ("POST", f"{MLFLOW}/runs/log-metric", {"run_id": "{run}", "key": "m", "value": 1, "step": str(BIG)}, 400),
    ("POST", f"{MLFLOW}/runs/log-batch", {"run_id": "{run}", "metrics": [{"key": "m", "value": 1, "step": BIG}]}, 400),
    ("POST", f"{MLFLOW}/runs/search", {"experiment_ids": [str(BIG)]}, 400),
    ("POST", f"{MLFLOW}/runs/search", {"experiment_ids": ["0"], "max_results": BIG}, 400),
    ("POST", f"{MLFLOW}/experiments/search", {"max_results": BIG}, 400),
    ("POST", f"{MLFLOW}/experiments/search", {"max_results": -5}, 400),
    ("GET", f"{MLFLOW}/metrics/get-history?run_id={{run}}&metric_key=m&max_results=-1", None, 400),
    ("GET", f"{MLFLOW}/metrics/get-history?run_id={{run}}&metric_key=m&max_results={BIG}", None, 400),
    ("GET", f"{MLFLOW}/model-versions/get?name={{model}}&version={BIG}", None, 400),
    ("GET", f"{MLFLOW}/registered-models/search?max_results={BIG}", None, 400),
]


def _fill(value: Any, world: World) -> Any:
    if isinstance(value, str):
        return value.replace("{run}", world.run).replace("{artifact}", world.artifact).replace("{model}", world.model)
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, world) for v in value]
    return value


async def _send(client: httpx.AsyncClient, method: str, path: str, body: Any, world: World) -> httpx.Response:
    url = _fill(path, world)
    if body is None:
        return await client.request(method, url)
    # 1e999 is no JSON number Python's json module writes (it writes Infinity): send the text as a client could.
    text = json.dumps(_fill(body, world)).replace("Infinity", "1e999")
    return await client.request(method, url, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(("method", "path", "body", "status"), NATIVE)
async def test_native_routes_refuse_out_of_range_integers(
    app_client: httpx.AsyncClient, world: World, method: str, path: str, body: Any, status: int
) -> None:
    response = await _send(app_client, method, path, body, world)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["detail"]
    assert problem["code"] != "value_out_of_range", "refused by the database, not checked at the edge"


@pytest.mark.parametrize(("method", "path", "body", "status"), MLFLOW_CASES)
async def test_mlflow_routes_refuse_out_of_range_integers(
    app_client: httpx.AsyncClient, world: World, method: str, path: str, body: Any, status: int
) -> None:
    response = await _send(app_client, method, path, body, world)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error_code"] == ("RESOURCE_DOES_NOT_EXIST" if status == 404 else "INVALID_PARAMETER_VALUE")
    assert "out of range for the registry" not in error["message"], "refused by the database, not at the edge"


async def test_extreme_but_valid_integers_still_work(app_client: httpx.AsyncClient, world: World) -> None:
    top = 2**63 - 1
    logged = await app_client.post(
        f"/api/v1/runs/{world.run}/log-batch", json={"metrics": [{"key": "edge", "value": 1.5, "step": top}]}
    )
    assert logged.status_code == 200, logged.text
    history = (await app_client.get(f"/api/v1/runs/{world.run}/metrics/edge")).json()["items"]
    assert [m["step"] for m in history] == [top]
    assert (await app_client.get(f"/api/v1/events?after={top}")).json()["items"] == []
    assert (await app_client.get(f"/api/v1/experiments/{top}")).status_code == 404


async def test_a_value_the_database_refuses_is_a_400_without_driver_text(
    app_client: httpx.AsyncClient, db: Database, backend: str
) -> None:
    """Behind the edge checks: whatever PostgreSQL refuses as a data error (SQLSTATE class 22) is the caller's
    error, answered without the driver's text."""
    if backend != "postgres":
        pytest.skip("SQLSTATE data errors are PostgreSQL's")
    statements = (
        "CREATE FUNCTION mk_test_range() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'driver-text' USING ERRCODE = 'numeric_value_out_of_range'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER mk_test_range BEFORE INSERT ON experiments FOR EACH ROW EXECUTE FUNCTION mk_test_range()",
    )
    async with db.write() as session:
        for statement in statements:
            await session.execute(text(statement))
    try:
        response = await app_client.post("/api/v1/experiments", json={"name": unique("exp")})
    finally:
        async with db.write() as session:
            await session.execute(text("DROP TRIGGER IF EXISTS mk_test_range ON experiments"))
            await session.execute(text("DROP FUNCTION IF EXISTS mk_test_range()"))
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "value_out_of_range"
    assert "driver-text" not in response.text and "asyncpg" not in response.text
