"""Late labels: joined by id to the production rows of the version that served them, through the real ASGI app
and the CLI, on SQLite and PostgreSQL; bad input stores nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from monitoring.domain import MonitorLabel, MonitorRow
from registry.db import Database
from registry.domain.models import ModelVersion, RegisteredModel
from tests.automations.receivers import model_with_versions
from tests.conftest import LiveServer, Tokens, bearer, unique
from tests.monitoring.monitor_helpers import (
    CSV,
    JSONL,
    PARQUET,
    csv,
    frame,
    ingest,
    jsonl,
    last_full_hour,
    new_model,
    parquet,
    promote,
    set_baseline,
)
from tests.registry.cli._helpers import Cli


def _labels(ids: list[str], labels: list[Any], *, id_column: str = "id", target: str = "label") -> pa.Table:
    return pa.table({id_column: ids, target: labels})


async def _send(api: httpx.AsyncClient, model: str, table: pa.Table, **params: Any) -> httpx.Response:
    return await api.post(
        f"/api/v1/models/{model}/monitor/labels", content=parquet(table), headers=PARQUET, params=params
    )


async def _stored(db: Database, model: str, table: type[MonitorLabel] | type[MonitorRow]) -> dict[int, int]:
    """Rows of ``table`` per version number of ``model``."""
    async with db.read() as session:
        found = await session.execute(
            select(ModelVersion.version, func.count())
            .select_from(table)
            .join(ModelVersion, ModelVersion.id == table.model_version_id)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(RegisteredModel.name == model)
            .group_by(ModelVersion.version)
        )
        return {int(version): int(count) for version, count in found}


async def _label_of(db: Database, model: str, row_id: str) -> Any:
    async with db.read() as session:
        return await session.scalar(
            select(MonitorLabel.label)
            .join(ModelVersion, ModelVersion.id == MonitorLabel.model_version_id)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(RegisteredModel.name == model, MonitorLabel.row_id == row_id)
        )


async def _monitored(api: httpx.AsyncClient, versions: int = 1, **options: Any) -> str:
    model = await new_model(api, versions=versions)
    for version in range(1, versions + 1):
        await set_baseline(api, model, version, frame(300, seed=version), **options)
    await promote(api, model, 1)
    return model


async def test_labels_join_the_rows_by_id_and_a_label_sent_again_replaces_the_first(
    app_client: httpx.AsyncClient, db: Database
) -> None:
    model = await _monitored(app_client)
    batch = frame(120, seed=21, start=last_full_hour())
    assert (await ingest(app_client, model, batch)).status_code == 200
    assert await _stored(db, model, MonitorRow) == {1: 120}
    async with db.read() as session:
        # Row ids are the caller's: other tests' models may carry the same ones.
        kept = await session.scalar(
            select(MonitorRow)
            .join(ModelVersion, ModelVersion.id == MonitorRow.model_version_id)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(RegisteredModel.name == model, MonitorRow.row_id == "r21-7")
        )
    assert kept is not None and kept.prediction == pytest.approx(batch.column("score")[7].as_py())
    assert kept.bucket_start == last_full_hour()

    ids = batch.column("id").to_pylist()[:50]
    sent = await _send(app_client, model, _labels(ids, [1] * 50))
    assert sent.status_code == 200, sent.text
    assert sent.json() == {
        "model": model,
        "rows": 50,
        "id": "id",
        "target": "label",
        "versions": [{"version": 1, "labels": 50}],
    }
    assert await _stored(db, model, MonitorLabel) == {1: 50}

    # CSV and JSON lines as well; a label sent again for an id replaces the earlier one.
    again = _labels(ids[:10], [0] * 10)
    assert (
        await app_client.post(f"/api/v1/models/{model}/monitor/labels", content=csv(again), headers=CSV)
    ).status_code == 200
    more = _labels(batch.column("id").to_pylist()[50:60], ["yes"] * 10)
    as_jsonl = await app_client.post(f"/api/v1/models/{model}/monitor/labels", content=jsonl(more), headers=JSONL)
    assert as_jsonl.status_code == 200, as_jsonl.text
    assert await _stored(db, model, MonitorLabel) == {1: 60}
    assert await _label_of(db, model, ids[0]) == 0 and await _label_of(db, model, ids[20]) == 1
    assert await _label_of(db, model, batch.column("id")[55].as_py()) == "yes"

    # Other column names, named by the request.
    renamed = _labels(ids[:3], [1, 1, 1], id_column="key", target="truth")
    assert (await _send(app_client, model, renamed, id="key", target="truth")).status_code == 200


async def test_an_id_that_rows_of_two_versions_carry_is_labelled_for_both(
    app_client: httpx.AsyncClient, db: Database
) -> None:
    model = await _monitored(app_client, versions=2)
    batch = frame(40, seed=22, start=last_full_hour())
    assert (await ingest(app_client, model, batch, version=1)).status_code == 200
    assert (await ingest(app_client, model, batch.slice(0, 10), version=2)).status_code == 200
    sent = await _send(app_client, model, _labels(batch.column("id").to_pylist()[:20], [1] * 20))
    assert sent.status_code == 200, sent.text
    assert sent.json()["versions"] == [{"version": 1, "labels": 20}, {"version": 2, "labels": 10}]
    assert await _stored(db, model, MonitorLabel) == {1: 20, 2: 10}


async def test_bad_labels_are_refused_naming_the_id_or_column_and_store_nothing(
    app_client: httpx.AsyncClient, db: Database, api_tokens: Tokens
) -> None:
    model = await _monitored(app_client)
    batch = frame(30, seed=23, start=last_full_hour())
    assert (await ingest(app_client, model, batch)).status_code == 200
    ids = batch.column("id").to_pylist()

    unknown = await _send(app_client, model, _labels([*ids[:5], "nobody", "r0-1"], [1] * 7))
    assert unknown.status_code == 400
    problem = unknown.json()
    assert problem["code"] == "unknown_id" and problem["row"] == 5 and problem["row_id"] == "nobody"
    assert "'nobody'" in problem["detail"] and problem["field"] == "id"

    cases: list[tuple[bytes, dict[str, str], dict[str, str], str]] = [
        (parquet(pa.table({"id": ids[:3]})), PARQUET, {}, "label"),  # the label column is missing
        (parquet(pa.table({"label": [1, 0]})), PARQUET, {}, "'id'"),  # the id column is missing
        (parquet(_labels([ids[0], ids[1], ids[0]], [1, 0, 1])), PARQUET, {}, "labelled twice"),
        (parquet(_labels([ids[0], None], [1, 0])), PARQUET, {}, "row 1: the id is empty"),
        (parquet(_labels(ids[:2], [1, None])), PARQUET, {}, "row 1"),
        (parquet(_labels(ids[:2], [1, 0])), {"content-type": "application/json"}, {}, "content type"),
        (b"", PARQUET, {}, "empty"),
        (b"not parquet", PARQUET, {}, "Parquet"),
        (parquet(pa.table({"id": [1.5], "label": [1]})), PARQUET, {}, "integers or text"),
        (parquet(_labels(ids[:2], [1, 0])), PARQUET, {"id": "key"}, "'key'"),
    ]
    for body, headers, params, said in cases:
        refused = await app_client.post(
            f"/api/v1/models/{model}/monitor/labels", content=body, headers=headers, params=params
        )
        assert refused.status_code == 400, (said, refused.text)
        assert said in refused.json()["detail"], refused.json()
    assert await _stored(db, model, MonitorLabel) == {}

    as_reader = await app_client.post(
        f"/api/v1/models/{model}/monitor/labels",
        content=parquet(_labels(ids[:2], [1, 0])),
        headers={**PARQUET, **bearer(api_tokens.reader)},
    )
    assert as_reader.status_code == 403
    missing = await _send(app_client, unique("nobody"), _labels(ids[:2], [1, 0]))
    assert missing.status_code == 404


async def test_without_an_id_column_in_the_baseline_labels_must_name_theirs(
    app_client: httpx.AsyncClient, db: Database
) -> None:
    model = await new_model(app_client)
    made = await app_client.put(
        f"/api/v1/models/{model}/versions/1/monitor/baseline",
        content=parquet(frame(300, seed=1).drop_columns(["id"])),
        headers=PARQUET,
        params={"prediction": "score", "target": "label", "timestamp": "ts"},
    )
    assert made.status_code == 200, made.text
    await promote(app_client, model, 1)
    sent = await ingest(app_client, model, frame(20, seed=24, start=last_full_hour()).drop_columns(["id"]))
    assert sent.status_code == 200, sent.text
    assert await _stored(db, model, MonitorRow) == {}  # no id column: no row is kept
    refused = await _send(app_client, model, _labels(["r24-1"], [1]))
    assert refused.status_code == 400 and "names the id column" in refused.json()["detail"]
    assert refused.json()["field"] == "id"
    named = await _send(app_client, model, _labels(["r24-1"], [1]), id="id")
    assert named.status_code == 400 and named.json()["code"] == "unknown_id"


# -- the CLI ----------------------------------------------------------------------------------------------
@pytest.fixture
def cli(live_server: LiveServer, api_tokens: Tokens, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(live_server, api_tokens.admin, capsys)


@pytest.fixture
def api(live_server: LiveServer, api_tokens: Tokens) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, headers=bearer(api_tokens.admin), timeout=30) as client:
        yield client


def test_registry_monitor_labels(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    model = unique("cli-labels")
    model_with_versions(api, model, 1)
    reference = tmp_path / "ref.parquet"
    pq.write_table(frame(300, seed=1), reference)
    code, _, err = cli(
        "monitor", "baseline", "set", model, "1", "--data", str(reference),
        "--prediction", "score", "--target", "label", "--id", "id", "--timestamp", "ts",
    )  # fmt: skip
    assert code == 0, err
    assert api.put(f"/api/v1/models/{model}/aliases/production", json={"version": 1}).status_code == 200
    batch = tmp_path / "batch.parquet"
    pq.write_table(frame(40, seed=25, start=last_full_hour()), batch)
    assert cli("monitor", "ingest", f"{model}@production", "--data", str(batch))[0] == 0

    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"r25-{i},{i % 2}\n" for i in range(30)))
    code, out, err = cli("monitor", "labels", model, "--data", str(labels))
    assert code == 0, err
    assert f"30 labels for {model} (v1: 30)" in out
    done = cli.json("monitor", "labels", model, "--data", str(labels))
    assert done["versions"] == [{"version": 1, "labels": 30}]

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("id,label\nr25-1,1\nr99-1,0\n")
    code, _, err = cli("monitor", "labels", model, "--data", str(unknown))
    assert code == 2 and "r99-1" in err and "row 1" in err
    assert cli("monitor", "labels", "no-such-model", "--data", str(labels))[0] == 4
    assert cli("monitor", "labels", model, "--data", str(tmp_path / "missing.csv"))[0] == 2
