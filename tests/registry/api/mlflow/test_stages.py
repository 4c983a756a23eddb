"""MLflow's stages are the aliases of the same name: `transition_model_version_stage` to Production moves the
`production` alias through the same rules as `registry promote` (role, gate policy, history, audit, event),
and `models:/name/Production` loads the alias holder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Tokens, bearer, unique

# MLflow deprecates stages; this module tests them on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:.*stages.*:FutureWarning")

SPEC = """
version: 1
gates:
  - {id: accuracy, kind: proportion, outcome: correct, threshold: 0.95}
"""


def _register(name: str, tmp_path: Path, contents: list[bytes]) -> None:
    """Register one version per content, each from its own run (an MLmodel file + weights)."""
    import mlflow

    mlflow.set_experiment(unique("stages"))
    for content in contents:
        folder = tmp_path / f"model-{unique()}"
        (folder / "data").mkdir(parents=True)
        (folder / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
        (folder / "data" / "weights.bin").write_bytes(content)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(folder), artifact_path="model")
        mlflow.register_model(f"runs:/{run.info.run_id}/model", name)


def _weights(uri: str, dst: Path) -> bytes:
    import mlflow

    return (Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(dst))) / "data" / "weights.bin").read_bytes()


def _audit(url: str, tokens: Tokens, target: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = "0"
    while True:
        page = httpx.get(
            f"{url}/api/v1/audit", params={"after": after, "limit": 1000}, headers=bearer(tokens.admin)
        ).json()
        found += [e for e in page["items"] if e["target"] == target]
        if not page.get("next"):
            return found
        after = page["next"]


def _promotions(url: str, tokens: Tokens, name: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/models/{name}/promotions", headers=bearer(tokens.reader))
    return list(answer.json())


@pytest.fixture
def as_token(mlflow_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Switch the MLflow client's token (MLflow reads MLFLOW_TRACKING_TOKEN on every request)."""

    def use(token: str) -> Any:
        from mlflow import MlflowClient

        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
        return MlflowClient()

    yield use


def test_production_stage_is_the_protected_production_alias(
    mlflow_env: str, as_token: Any, api_tokens: Tokens, tmp_path: Path
) -> None:
    from mlflow.exceptions import MlflowException

    name = unique("staged")
    as_token(api_tokens.maintainer)
    _register(name, tmp_path, [b"weights-1", b"weights-2"])

    writer = as_token(api_tokens.writer)
    with pytest.raises(MlflowException) as caught:
        writer.transition_model_version_stage(name, "2", "Production", archive_existing_versions=True)
    assert caught.value.error_code == "PERMISSION_DENIED"
    assert writer.get_latest_versions(name, stages=["Production"]) == []
    assert writer.get_model_version(name, "2").current_stage == "None"
    assert "production" not in writer.get_registered_model(name).aliases
    with pytest.raises(MlflowException):
        _weights(f"models:/{name}/Production", tmp_path / "none")

    maintainer = as_token(api_tokens.maintainer)
    moved = maintainer.transition_model_version_stage(name, "1", "production")
    assert moved.current_stage == "Production"
    assert maintainer.get_model_version_by_alias(name, "production").version == "1"
    assert _weights(f"models:/{name}/Production", tmp_path / "p1") == b"weights-1"
    history = _promotions(mlflow_env, api_tokens, name)
    assert [(p["alias"], p["from_version"], p["to_version"], p["actor"]) for p in history] == [
        ("production", None, 1, "test-maintainer")
    ]
    audit = _audit(mlflow_env, api_tokens, f"{name}@production")
    assert [(a["action"], a["actor"], a["details"]["to_version"]) for a in audit] == [
        ("protected_alias.moved", "test-maintainer", 1)
    ]

    # The alias moved natively is the stage MLflow sees: one truth.
    promoted = httpx.put(
        f"{mlflow_env}/api/v1/models/{name}/aliases/production",
        json={"version": 2, "reason": "better"},
        headers=bearer(api_tokens.maintainer),
    )
    assert promoted.status_code == 200, promoted.text
    assert [v.version for v in maintainer.get_latest_versions(name, stages=["Production"])] == ["2"]
    assert _weights(f"models:/{name}/Production", tmp_path / "p2") == b"weights-2"
    assert maintainer.get_model_version(name, "1").current_stage == "None"

    # archive_existing_versions: the version that leaves the stage is marked Archived.
    maintainer.transition_model_version_stage(name, "1", "Production", archive_existing_versions=True)
    assert maintainer.get_model_version(name, "2").current_stage == "Archived"
    assert maintainer.get_model_version(name, "1").current_stage == "Production"
    assert _weights(f"models:/{name}/Production", tmp_path / "p3") == b"weights-1"

    # Archiving the holder gives up the alias, under the same protection.
    with pytest.raises(MlflowException) as caught:
        as_token(api_tokens.writer).transition_model_version_stage(name, "1", "Archived")
    assert caught.value.error_code == "PERMISSION_DENIED"
    archived = as_token(api_tokens.maintainer).transition_model_version_stage(name, "1", "Archived")
    assert archived.current_stage == "Archived"
    assert maintainer.get_latest_versions(name, stages=["Production"]) == []
    assert "production" not in maintainer.get_registered_model(name).aliases
    assert _promotions(mlflow_env, api_tokens, name)[0]["action"] == "remove"
    assert [a["action"] for a in _audit(mlflow_env, api_tokens, f"{name}@production")][-1] == "protected_alias.removed"


def test_staging_is_an_ordinary_alias_for_writers(
    mlflow_env: str, as_token: Any, api_tokens: Tokens, tmp_path: Path
) -> None:
    name = unique("staging")
    as_token(api_tokens.maintainer)
    _register(name, tmp_path, [b"s-1", b"s-2"])
    writer = as_token(api_tokens.writer)
    assert writer.transition_model_version_stage(name, "1", "Staging").current_stage == "Staging"
    assert writer.get_model_version_by_alias(name, "staging").version == "1"
    assert writer.transition_model_version_stage(name, "2", "staging").current_stage == "Staging"
    assert writer.get_model_version(name, "1").current_stage == "None"
    assert [v.version for v in writer.get_latest_versions(name, stages=["Staging"])] == ["2"]
    assert _weights(f"models:/{name}/Staging", tmp_path / "s") == b"s-2"
    # Moving the alias back to None clears the stage; the history has every step.
    assert writer.transition_model_version_stage(name, "2", "None").current_stage == "None"
    assert writer.get_latest_versions(name, stages=["Staging"]) == []
    history = _promotions(mlflow_env, api_tokens, name)
    assert [(p["action"], p["from_version"], p["to_version"]) for p in history] == [
        ("remove", 2, None),
        ("promote", 1, 2),
        ("promote", None, 1),
    ]
    moved = httpx.get(
        f"{mlflow_env}/api/v1/events", params={"model": name, "type": "alias.moved"}, headers=bearer(api_tokens.reader)
    ).json()["items"]
    assert [e["data"]["to_version"] for e in moved] == [1, 2]


def test_a_gate_policy_on_production_blocks_an_ungated_transition(
    mlflow_env: str, as_token: Any, api_tokens: Tokens, tmp_path: Path
) -> None:
    from mlflow.exceptions import MlflowException

    name = unique("gated-stage")
    maintainer = as_token(api_tokens.maintainer)
    _register(name, tmp_path, [b"g-1"])
    policy = httpx.put(
        f"{mlflow_env}/api/v1/models/{name}/gate-policies/production",
        json={"spec": SPEC},
        headers=bearer(api_tokens.maintainer),
    )
    assert policy.status_code == 200, policy.text
    with pytest.raises(MlflowException) as caught:
        maintainer.transition_model_version_stage(name, "1", "Production")
    assert caught.value.error_code == "INVALID_STATE" and "gate" in caught.value.message
    assert maintainer.get_model_version(name, "1").current_stage == "None"
    assert maintainer.get_latest_versions(name, stages=["Production"]) == []
    assert _promotions(mlflow_env, api_tokens, name) == []
