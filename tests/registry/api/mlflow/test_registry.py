"""Unmodified MLflow model-registry code against `registry serve`, sharing rules with the native API/CLI."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import httpx
import pytest

from registry.cli import main
from tests.conftest import Tokens, bearer, unique


def _log_model_dir(tmp_path: Path, content: bytes) -> str:
    """A run with a plain-directory model (an MLmodel file + weights), as `register_model` needs."""
    import mlflow

    model = tmp_path / f"model-{unique()}"
    (model / "data").mkdir(parents=True)
    (model / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    (model / "data" / "weights.bin").write_bytes(content)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(model), artifact_path="model")
    return str(run.info.run_id)


def _same_tree(left: Path, right: Path) -> None:
    cmp = filecmp.dircmp(left, right, ignore=["registered_model_meta"])
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files, cmp.report()
    for sub in cmp.common_dirs:
        _same_tree(left / sub, right / sub)


def test_register_alias_stage_search_download(mlflow_env: str, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_experiment(unique("reg"))
    client = MlflowClient()
    name = unique("model")
    run1 = _log_model_dir(tmp_path, b"weights-1")
    v1 = mlflow.register_model(f"runs:/{run1}/model", name)
    assert v1.version == "1" and v1.status == "READY" and v1.run_id == run1
    run2 = _log_model_dir(tmp_path, b"weights-2")
    v2 = client.create_model_version(name, f"runs:/{run2}/model", run_id=run2)
    assert v2.version == "2"
    with pytest.raises(MlflowException) as caught:
        client.create_registered_model(name)
    assert caught.value.error_code == "RESOURCE_ALREADY_EXISTS"

    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    model = client.get_registered_model(name)
    assert model.aliases == {"champion": "1", "challenger": "2"}
    client.delete_registered_model_alias(name, "challenger")
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(name, "challenger")

    client.set_model_version_tag(name, "2", "validation", "passed")
    assert client.get_model_version(name, "2").tags == {"validation": "passed"}
    tagged = client.search_model_versions(f"name = '{name}' and tag.validation = 'passed'")
    assert [v.version for v in tagged] == ["2"]
    # A search renders its rows by a path of its own: the same version reads the same as through get.
    alone = client.get_model_version(name, "2")
    assert {k: v for k, v in vars(tagged[0]).items() if k != "_aliases"} == {
        k: v for k, v in vars(alone).items() if k != "_aliases"
    }
    assert tagged[0].creation_timestamp > 1_600_000_000_000 and tagged[0].tags == {"validation": "passed"}
    by_run = client.search_model_versions(f"name = '{name}' and run_id = '{run1}'")
    assert [v.version for v in by_run] == ["1"]
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["2", "1"]
    ordered = client.search_model_versions(f"name = '{name}'", order_by=["version_number ASC"])
    assert [v.version for v in ordered] == ["1", "2"]
    found = client.search_registered_models(f"name LIKE '{name[:12]}%'")
    assert name in [m.name for m in found]

    uri = client.get_model_version_download_uri(name, "2")
    assert uri.startswith("mlflow-artifacts:/") and uri.endswith("/2")
    assert uri != client.get_model_version_download_uri(name, "1")
    with pytest.raises(MlflowException) as caught:
        client.get_model_version_download_uri(name, "99")
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    staged = client.transition_model_version_stage(name, "1", "staging")
    assert staged.current_stage == "Staging"
    assert [v.version for v in client.get_latest_versions(name, stages=["Staging"])] == ["1"]
    assert {v.version for v in client.get_latest_versions(name)} == {"1", "2"}

    by_alias = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=str(tmp_path / "a")))
    assert (by_alias / "data" / "weights.bin").read_bytes() == b"weights-1"
    by_number = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/2", dst_path=str(tmp_path / "b")))
    assert (by_number / "data" / "weights.bin").read_bytes() == b"weights-2"
    original = Path(
        mlflow.artifacts.download_artifacts(run_id=run2, artifact_path="model", dst_path=str(tmp_path / "c"))
    )
    _same_tree(original, by_number)

    v3 = client.create_model_version(name, f"runs:/{run2}/model", run_id=run2)
    client.delete_model_version(name, v3.version)
    with pytest.raises(MlflowException) as caught:
        client.get_model_version(name, v3.version)
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert client.create_model_version(name, f"runs:/{run2}/model", run_id=run2).version == "4"
    with pytest.raises(MlflowException) as caught:
        client.get_registered_model(unique("missing"))
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_version_is_a_snapshot_of_the_run(mlflow_env: str, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_experiment(unique("snap"))
    run_id = _log_model_dir(tmp_path, b"before")
    name = unique("model")
    mlflow.register_model(f"runs:/{run_id}/model", name)
    (tmp_path / "w.bin").write_bytes(b"after")
    MlflowClient().log_artifact(run_id, str(tmp_path / "w.bin"), artifact_path="model/data")
    got = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "v")))
    assert not (got / "data" / "w.bin").exists() and (got / "data" / "weights.bin").read_bytes() == b"before"


def test_both_faces_share_versions_aliases_and_rules(
    mlflow_env: str,
    tmp_path: Path,
    api_tokens: Tokens,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    name = unique("shared")
    folder = tmp_path / "pushed"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"onnx-bytes")
    cli = ["--url", mlflow_env, "--token", api_tokens.maintainer]
    assert main(["push", name, str(folder), *cli]) == 0
    fetched = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "f")))
    assert (fetched / "model.onnx").read_bytes() == b"onnx-bytes"

    assert main(["promote", name, "1", "--to", "staging", "--reason", "cli", *cli]) == 0
    assert client.get_model_version_by_alias(name, "staging").version == "1"

    assert main(["push", name, str(folder), *cli]) == 0
    client.set_registered_model_alias(name, "staging", "2")  # token: the maintainer's
    capsys.readouterr()
    assert main(["versions", "show", name, "2", "--json", *cli]) == 0
    history = json.loads(capsys.readouterr().out)["promotions"]
    assert history[0]["actor"] == "test-maintainer" and (history[0]["from_version"], history[0]["to_version"]) == (1, 2)

    # Protected aliases: a writer may not move `production` through MLflow either.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", api_tokens.writer)
    with pytest.raises(MlflowException) as caught:
        MlflowClient().set_registered_model_alias(name, "production", "2")
    assert caught.value.error_code == "PERMISSION_DENIED"
    moved = httpx.get(
        f"{mlflow_env}/api/v1/events", params={"model": name, "type": "alias.moved"}, headers=bearer(api_tokens.reader)
    ).json()["items"]
    assert [e["data"]["to_version"] for e in moved] == [1, 2]
