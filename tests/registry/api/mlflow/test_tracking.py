"""Unmodified MLflow tracking code against `registry serve`, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import Tokens, bearer, unique


def test_fluent_run_logging_roundtrip(mlflow_env: str, tmp_path: Path, api_tokens: Tokens) -> None:
    import mlflow
    from mlflow import MlflowClient

    experiment = mlflow.set_experiment(unique("exp"))
    assert experiment.lifecycle_stage == "active"
    with mlflow.start_run(run_name="train-v1") as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"epochs": 100, "optimizer": "adam"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"accuracy": 0.9, "f1": 0.8}, step=5)
        mlflow.set_tag("stage", "experiment")
        mlflow.set_tags({"team": "risk", "dataset": "v3"})
        (tmp_path / "notes.txt").write_text("trained on v3")
        mlflow.log_artifact(str(tmp_path / "notes.txt"))
        extras = tmp_path / "extras"
        (extras / "deep").mkdir(parents=True)
        (extras / "deep" / "a.bin").write_bytes(b"\x00\x01\x02")
        (extras / "empty.txt").write_bytes(b"")
        mlflow.log_artifacts(str(extras), artifact_path="extras")
        mlflow.log_dict({"depth": 3}, "config/params.json")
    client = MlflowClient()
    got = client.get_run(run.info.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "train-v1"
    assert got.data.params == {"lr": "0.01", "epochs": "100", "optimizer": "adam"}
    assert got.data.metrics == {"loss": pytest.approx(0.2), "accuracy": 0.9, "f1": 0.8}
    assert got.data.tags["team"] == "risk" and got.data.tags["stage"] == "experiment"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, pytest.approx(1.0 / (s + 1))) for s in range(5)]
    listed = {f.path: f for f in client.list_artifacts(run.info.run_id)}
    assert set(listed) == {"notes.txt", "extras", "config"} and listed["extras"].is_dir
    assert [f.path for f in client.list_artifacts(run.info.run_id, "extras")] == ["extras/deep", "extras/empty.txt"]
    local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / "dl")))
    assert (local / "notes.txt").read_text() == "trained on v3"
    assert (local / "extras" / "deep" / "a.bin").read_bytes() == b"\x00\x01\x02"
    assert (local / "extras" / "empty.txt").read_bytes() == b""
    assert mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/config/params.json") == {"depth": 3}

    # The same data through the native API (what `registry` shows).
    native = httpx.get(f"{mlflow_env}/api/v1/runs/{run.info.run_id}", headers=bearer(api_tokens.reader)).json()
    assert native["params"] == got.data.params and native["status"] == "FINISHED"
    assert {m["key"] for m in native["metrics"]} == {"loss", "accuracy", "f1"}


def test_search_runs_filters_order_and_pages(mlflow_env: str) -> None:
    import mlflow
    from mlflow import MlflowClient

    experiment_id = mlflow.set_experiment(unique("search")).experiment_id
    for i in range(7):
        with mlflow.start_run(run_name=f"r{i}"):
            mlflow.log_param("optimizer", "adam" if i % 2 == 0 else "sgd")
            mlflow.log_metric("loss", float(i))
            mlflow.set_tag("group.name", "even" if i % 2 == 0 else "odd")
    client = MlflowClient()
    adam = client.search_runs(
        [experiment_id], "params.optimizer = 'adam' and metrics.loss < 5", order_by=["metrics.loss DESC"]
    )
    assert [r.data.metrics["loss"] for r in adam] == [4.0, 2.0, 0.0]
    odd = client.search_runs([experiment_id], "tags.`group.name` = 'odd'")
    assert sorted(r.info.run_name for r in odd) == ["r1", "r3", "r5"]
    seen, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], "", max_results=3, page_token=token, order_by=["attributes.start_time ASC"]
        )
        seen += [r.info.run_name for r in page]
        token = page.token
        if not token:
            break
    assert seen == [f"r{i}" for i in range(7)]


def test_tracking_error_codes(mlflow_env: str) -> None:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    assert mlflow.get_experiment_by_name(unique("missing")) is None  # needs RESOURCE_DOES_NOT_EXIST
    name = unique("dup")
    client.create_experiment(name)
    with pytest.raises(MlflowException) as caught:
        client.create_experiment(name)
    assert caught.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with mlflow.start_run() as run:
        mlflow.log_param("lr", "0.01")
        mlflow.log_param("lr", "0.01")  # same value again: fine
        with pytest.raises(MlflowException) as caught:
            mlflow.log_param("lr", "0.02")
        assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as caught:
        client.get_run("0" * 32)
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as caught:
        client.search_runs([run.info.experiment_id], "params.lr === 'x'")
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_unknown_routes_and_auth_speak_mlflow(mlflow_env: str, api_tokens: Tokens) -> None:
    unknown = httpx.get(f"{mlflow_env}/api/2.0/mlflow/no/such/thing", headers=bearer(api_tokens.reader))
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    anonymous = httpx.get(f"{mlflow_env}/api/2.0/mlflow/experiments/get?experiment_id=0")
    assert anonymous.status_code == 401 and anonymous.json()["error_code"] == "UNAUTHENTICATED"
    reader_write = httpx.post(
        f"{mlflow_env}/api/2.0/mlflow/experiments/create", json={"name": unique()}, headers=bearer(api_tokens.reader)
    )
    assert reader_write.status_code == 403 and reader_write.json()["error_code"] == "PERMISSION_DENIED"
    bad_type = httpx.post(
        f"{mlflow_env}/api/2.0/mlflow/runs/log-metric",
        headers=bearer(api_tokens.writer),
        json={"run_id": "x", "key": "k", "value": "not-a-number"},
    )
    assert bad_type.status_code == 400 and bad_type.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_opaque_page_tokens_for_history_and_experiments(mlflow_env: str, api_tokens: Tokens) -> None:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_experiment(unique("pages"))
    with mlflow.start_run() as run:
        for step in range(5):
            mlflow.log_metric("m", float(step), step=step)
    headers = bearer(api_tokens.reader)
    steps, token = [], None
    while True:
        params = {"run_id": run.info.run_id, "metric_key": "m", "max_results": 2}
        if token:
            params["page_token"] = token
        page = httpx.get(f"{mlflow_env}/api/2.0/mlflow/metrics/get-history", params=params, headers=headers).json()
        steps += [m["step"] for m in page["metrics"]]
        token = page.get("next_page_token")
        if not token:
            break
        assert not token.isdigit()  # opaque, not a bare offset
    assert steps == [0, 1, 2, 3, 4]
    bad = httpx.get(
        f"{mlflow_env}/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run.info.run_id, "metric_key": "m", "page_token": "garbage!"},
        headers=headers,
    )
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    names = [e.name for e in MlflowClient().search_experiments(max_results=1)]
    assert len(names) == 1
