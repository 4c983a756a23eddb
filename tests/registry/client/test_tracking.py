"""``start_run`` against a real `registry serve` on loopback (SQLite and PostgreSQL): what training code logs
and what the SDK captures by itself all reach the server, and ending/failing a run is recorded."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import registry.client as mk
from registry import errors
from registry.client import RegistryClient
from registry.client.sysmetrics import GpuReading
from tests.conftest import LiveServer, Tokens, unique
from tests.registry.client.test_capture import git
from tests.registry.client.test_sysmetrics import NO_GPU, FakeGpus

HOST_KEYS = {"system/cpu_utilization_percentage", "system/memory_usage_megabytes", "system/memory_usage_percentage"}


class CountingTransport(httpx.HTTPTransport):
    """The real network path, with a record of the requests made (and, on demand, a flaky link)."""

    def __init__(self, fail_batches: int = 0) -> None:
        super().__init__()
        self.requests: list[str] = []
        self.fail_batches = fail_batches

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/log-batch") and self.fail_batches > 0:
            self.fail_batches -= 1
            raise httpx.ConnectError("link down", request=request)
        self.requests.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)

    def count(self, suffix: str) -> int:
        return sum(1 for r in self.requests if r.endswith(suffix))


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("MODELKEEP_DISABLE_SYSTEM_METRICS", raising=False)
    yield
    # Every run's threads are gone once it has ended.
    assert not [t.name for t in threading.enumerate() if t.name.startswith("modelkeep-") and t.is_alive()]


@pytest.fixture
def transport() -> CountingTransport:
    return CountingTransport()


@pytest.fixture
def client(live_server: LiveServer, api_tokens: Tokens, transport: CountingTransport) -> Iterator[RegistryClient]:
    with RegistryClient(live_server.url, api_tokens.writer, transport=transport) as c:
        yield c


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with a commit, a remote holding a token, uncommitted changes and an untracked file."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("lr = 0.1\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    git(root, "remote", "add", "origin", "https://bob:ghp_secret@github.com/acme/churn.git")
    (root / "train.py").write_text("lr = 0.05\n")
    (root / "notes.txt").write_text("next: try 0.01\n")
    return root


@pytest.fixture
def plain_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "not-a-repo"
    folder.mkdir()
    return folder


def make_dataset(client: RegistryClient, tmp_path: Path) -> tuple[str, int]:
    producer = client.create_run(experiment=unique("etl"))
    csv = tmp_path / "customers.csv"
    csv.write_text("id,tenure\n1,12\n")
    client.upload_artifact(producer["id"], "data/customers.csv", csv)
    body = {"name": unique("customers"), "kind": "dataset", "run_id": producer["id"], "path": "data"}
    version = client.json("POST", "/api/v1/artifacts", json=body)
    return version["name"], version["version"]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_tracked_run_records_everything(
    client: RegistryClient, transport: CountingTransport, repo: Path, tmp_path: Path
) -> None:
    dataset, dataset_version = make_dataset(client, tmp_path)
    (tmp_path / "model.pkl").write_bytes(b"\x80weights")
    outdir = tmp_path / "out"
    (outdir / "sub").mkdir(parents=True)
    (outdir / "metrics.json").write_text('{"auc": 0.9}')
    (outdir / "sub" / "schema.json").write_text("{}")
    experiment = unique("churn")
    before = len(transport.requests)

    with mk.start_run(experiment=experiment, name="lr-0.1", client=client, code_dir=repo, system_metrics=0.05) as run:
        run.log_params({"lr": 0.1, "epochs": 3})
        for step in range(3000):
            run.log_metric("loss", 1 / (step + 1), step=step)
        run.log_metric("accuracy", 0.5)
        run.log_metric("accuracy", 0.75)  # steps default to 0, 1 ...
        run.set_tags({"team": "growth"})
        run.log_artifact(tmp_path / "model.pkl", path="model/model.pkl")
        run.log_artifacts(outdir, path="model")
        run.use_dataset(dataset, dataset_version)
        time.sleep(0.2)  # a few system samples

    got = client.get_run(run.id)
    assert (got["status"], got["name"], got["end_time"] is not None) == ("FINISHED", "lr-0.1", True)
    assert client.json("GET", f"/api/v1/experiments/{got['experiment_id']}")["name"] == experiment
    assert got["params"] == {"lr": "0.1", "epochs": "3"}
    assert got["tags"]["team"] == "growth"
    assert [(i["name"], i["version"]) for i in got["inputs"]] == [(dataset, dataset_version)]
    assert sorted(f["path"] for f in client.list_artifacts(run.id)) == [
        "model/metrics.json",
        "model/model.pkl",
        "model/sub/schema.json",
    ]

    # Metrics: the whole history, in few requests (3,000+ points plus system samples). The flusher wakes at
    # 1,000 waiting points but sends up to MAX_POINTS_PER_REQUEST at once, so how many requests it takes
    # depends on how fast the loop outruns it: at least one, never one per point.
    history = client.metric_history(run.id, "loss")
    assert [(p["step"], p["value"]) for p in history] == [(s, 1 / (s + 1)) for s in range(3000)]
    assert [(p["step"], p["value"]) for p in client.metric_history(run.id, "accuracy")] == [(0, 0.5), (1, 0.75)]
    metric_batches = run.metric_requests
    assert 1 <= metric_batches <= 10
    assert transport.count("/log-batch") == metric_batches + 2  # + params, + tags
    assert len(transport.requests) - before < 30

    # Code: commit, branch, remote without the token, dirty, untracked, and the diff as a blob.
    diff = git(repo, "diff", "HEAD")
    assert got["git"] == {
        "commit": git(repo, "rev-parse", "HEAD").decode().strip(),
        "branch": "main",
        "remote": "https://github.com/acme/churn.git",
        "dirty": True,
        "diff_sha256": hashlib.sha256(diff).hexdigest(),
        "untracked": ["notes.txt"],
    }
    blob = httpx.get(
        f"{client.url}/api/v1/blobs/{got['git']['diff_sha256']}", headers={"authorization": f"Bearer {client.token}"}
    )
    assert blob.status_code == 200 and blob.content == diff and b"+lr = 0.05" in diff

    # Environment and system metrics.
    env = got["environment"]
    assert env["python"].count(".") == 2 and env["platform"] and env["packages"]["httpx"] == httpx.__version__
    latest = {m["key"] for m in got["metrics"]}
    assert HOST_KEYS <= latest
    assert len(client.metric_history(run.id, "system/memory_usage_megabytes")) >= 2
    if NO_GPU is not None:
        assert got["tags"]["modelkeep.system.gpu"] == f"unavailable: {NO_GPU}"
        assert not any(k.startswith("system/gpu_") for k in latest)
    else:
        assert "system/gpu_0_utilization_percentage" in latest


def test_an_exception_fails_the_run_and_is_reraised(client: RegistryClient, plain_dir: Path) -> None:
    with pytest.raises(ValueError, match="diverged"):
        with mk.start_run(experiment=unique("exp"), client=client, code_dir=plain_dir) as run:
            for step in range(10):
                run.log_metric("loss", float(step), step=step)
            raise ValueError("loss diverged")
    got = client.get_run(run.id)
    assert got["status"] == "FAILED" and got["end_time"] is not None
    assert got["tags"]["modelkeep.error"] == "ValueError: loss diverged"
    assert len(client.metric_history(run.id, "loss")) == 10  # what was logged before the failure is kept


def test_ctrl_c_kills_the_run(client: RegistryClient, plain_dir: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with mk.start_run(experiment=unique("exp"), client=client, code_dir=plain_dir, system_metrics=False) as run:
            raise KeyboardInterrupt
    assert client.get_run(run.id)["status"] == "KILLED"


def test_outside_a_repository_git_is_empty_and_nothing_fails(client: RegistryClient, plain_dir: Path) -> None:
    with mk.start_run(experiment=unique("exp"), client=client, code_dir=plain_dir, system_metrics=False) as run:
        run.log_metric("loss", 1.0)
    got = client.get_run(run.id)
    assert set(got["git"].values()) == {None}
    assert got["status"] == "FINISHED" and got["environment"]["packages"]


def test_no_gpu_is_a_tag_not_an_error(client: RegistryClient, plain_dir: Path) -> None:
    if NO_GPU is None:
        pytest.skip("an NVIDIA driver is present")
    with mk.start_run(experiment=unique("exp"), client=client, code_dir=plain_dir, system_metrics=30) as run:
        pass
    got = client.get_run(run.id)
    assert got["status"] == "FINISHED"
    assert got["tags"]["modelkeep.system.gpu"].startswith("unavailable: ")
    assert {m["key"] for m in got["metrics"]} == HOST_KEYS  # the final sample, even for a short run


def test_gpu_metrics_through_a_gpu_reader(client: RegistryClient, plain_dir: Path) -> None:
    gpus = FakeGpus([GpuReading(utilization_percent=93.0, memory_used_bytes=4 * 10**9, memory_total_bytes=8 * 10**9)])
    with mk.start_run(experiment=unique("exp"), client=client, code_dir=plain_dir, gpu_reader=gpus) as run:
        pass
    got = client.get_run(run.id)
    assert got["tags"]["modelkeep.system.gpu"] == "1 x Fake GPU" and gpus.closed
    latest = {m["key"]: m["value"] for m in got["metrics"]}
    assert latest["system/gpu_0_utilization_percentage"] == 93.0
    assert latest["system/gpu_0_memory_usage_megabytes"] == 4000.0
    assert latest["system/gpu_0_memory_usage_percentage"] == 50.0


@pytest.mark.parametrize("via_env", [False, True])
def test_every_capture_can_be_switched_off(
    client: RegistryClient, repo: Path, monkeypatch: pytest.MonkeyPatch, via_env: bool
) -> None:
    options: dict[str, Any] = {"capture_git": False, "capture_env": False}
    if via_env:
        monkeypatch.setenv("MODELKEEP_DISABLE_SYSTEM_METRICS", "1")
    else:
        options["system_metrics"] = False
    with mk.start_run(experiment=unique("exp"), client=client, code_dir=repo, **options) as run:
        run.log_metric("loss", 0.5)
    got = client.get_run(run.id)
    assert set(got["git"].values()) == {None} and got["environment"] is None
    assert [m["key"] for m in got["metrics"]] == ["loss"]
    assert "modelkeep.system.gpu" not in got["tags"]


def test_url_and_token_come_from_the_environment(
    live_server: LiveServer, api_tokens: Tokens, plain_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELKEEP_URL", live_server.url)
    monkeypatch.setenv("MODELKEEP_TOKEN", api_tokens.writer)
    with mk.start_run(experiment=unique("exp"), code_dir=plain_dir, system_metrics=False) as run:
        run.log_param("seed", 7)
    with RegistryClient(live_server.url, api_tokens.reader) as reader:
        got = reader.get_run(run.id)
    assert got["params"] == {"seed": "7"} and got["status"] == "FINISHED"


def test_metrics_are_flushed_on_time_while_the_run_goes_on(client: RegistryClient, plain_dir: Path) -> None:
    with mk.start_run(
        experiment=unique("exp"), client=client, code_dir=plain_dir, system_metrics=False, flush_interval=0.2
    ) as run:
        for step in range(10):
            run.log_metric("loss", 0.1 * step, step=step)
        assert wait_for(lambda: len(client.metric_history(run.id, "loss")) == 10, timeout=5)


def test_metrics_are_flushed_on_size_while_the_run_goes_on(client: RegistryClient, plain_dir: Path) -> None:
    with mk.start_run(
        experiment=unique("exp"), client=client, code_dir=plain_dir, system_metrics=False, flush_interval=600
    ) as run:
        for step in range(2500):
            run.log_metric("loss", float(step), step=step)
        assert wait_for(lambda: len(client.metric_history(run.id, "loss")) >= 2000, timeout=10)
    assert len(client.metric_history(run.id, "loss")) == 2500  # the rest on exit


def test_points_survive_a_flaky_link(live_server: LiveServer, api_tokens: Tokens, plain_dir: Path) -> None:
    flaky = CountingTransport(fail_batches=2)
    with RegistryClient(live_server.url, api_tokens.writer, transport=flaky) as client:
        with mk.start_run(
            experiment=unique("exp"), client=client, code_dir=plain_dir, system_metrics=False, flush_interval=0.1
        ) as run:
            for step in range(1500):
                run.log_metric("loss", float(step), step=step)
        assert flaky.fail_batches == 0  # both failures happened
        assert [p["step"] for p in client.metric_history(run.id, "loss")] == list(range(1500))


def test_bad_input_fails_at_the_call_and_nan_is_skipped(
    client: RegistryClient, plain_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="registry.client.tracking"):
        with mk.start_run(experiment=unique("exp"), client=client, code_dir=plain_dir, system_metrics=False) as run:
            with pytest.raises(errors.InvalidInput, match="metric key"):
                run.log_metric("bad key!", 1.0)
            run.log_metric("loss", float("nan"))
            run.log_metric("loss", float("inf"))
            run.log_metric("loss", 0.25)
            run.log_param("lr", 0.1)
            with pytest.raises(errors.Conflict, match="immutable"):
                run.log_param("lr", 0.2)
    assert [(p["step"], p["value"]) for p in client.metric_history(run.id, "loss")] == [(2, 0.25)]
    assert sum("non-finite" in r.getMessage() for r in caplog.records) == 1
    assert client.get_run(run.id)["status"] == "FINISHED"
    with pytest.raises(errors.Conflict, match="has ended"):
        run.log_metric("loss", 1.0)


def test_a_broken_capture_only_warns(client: RegistryClient, repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    head = git(repo, "rev-parse", "HEAD").decode().strip()
    (repo / ".git" / "objects" / head[:2] / head[2:]).unlink()  # git diff HEAD now fails
    with caplog.at_level(logging.WARNING, logger="registry.client.tracking"):
        with mk.start_run(experiment=unique("exp"), client=client, code_dir=repo, system_metrics=False) as run:
            run.log_metric("loss", 1.0)
    got = client.get_run(run.id)
    assert got["status"] == "FINISHED"
    assert (got["git"]["commit"], got["git"]["diff_sha256"], got["git"]["dirty"]) == (head, None, None)
    assert any("uncommitted diff not captured" in r.getMessage() for r in caplog.records)


def test_unreachable_registry_fails_at_start(plain_dir: Path) -> None:
    from tests.conftest import free_port

    with pytest.raises(errors.RegistryError, match="cannot reach"):
        mk.start_run(url=f"http://127.0.0.1:{free_port()}", token="x", code_dir=plain_dir)


def test_end_without_with(client: RegistryClient, plain_dir: Path) -> None:
    run = mk.start_run(experiment=unique("exp"), client=client, code_dir=plain_dir, system_metrics=False)
    run.log_metrics({"loss": 0.5, "auc": 0.8}, step=3)
    run.end()
    run.end()  # idempotent
    got = client.get_run(run.id)
    assert got["status"] == "FINISHED"
    assert {(m["key"], m["step"]) for m in got["metrics"]} == {("loss", 3), ("auc", 3)}


def test_points_that_cannot_be_sent_are_reported_at_the_end(
    live_server: LiveServer, api_tokens: Tokens, plain_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = CountingTransport(fail_batches=10**6)  # metric batches never get through; everything else does
    with RegistryClient(live_server.url, api_tokens.writer, transport=down) as client:
        # A normal exit raises: the user must learn that points were not stored. The status is still set.
        with pytest.raises(errors.RegistryError, match="cannot reach"):
            with mk.start_run(experiment=unique("exp"), client=client, code_dir=plain_dir, system_metrics=False) as run:
                run.log_metric("loss", 1.0)
        assert client.get_run(run.id)["status"] == "FINISHED"
        assert any("1 metric points" in r.getMessage() for r in caplog.records)

        # When the block itself raised, that exception is the one the user sees.
        with pytest.raises(ValueError, match="boom"):
            with mk.start_run(experiment=unique("exp"), client=client, code_dir=plain_dir, system_metrics=False) as run:
                run.log_metric("loss", 1.0)
                raise ValueError("boom")
        assert client.get_run(run.id)["status"] == "FAILED"
