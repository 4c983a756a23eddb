"""Run, model and version search on SQLite and PostgreSQL: filters, LIKE case rules, `!=`, ordering, pages."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from registry.db import Database
from registry.domain.models import ModelVersion, RegisteredModel
from registry.domain.runs import Run
from registry.errors import InvalidInput
from registry.services import experiments, models, runs, versions
from registry.services.artifacts import ManifestEntry
from registry.services.runs import MetricPoint
from registry.services.search import search_models, search_runs, search_versions, sqlite_like
from tests.conftest import unique
from tests.factories.artifacts import create_blob
from tests.factories.models import create_model
from tests.factories.runs import WRITER, create_run

T0 = 1_700_000_000_000  # epoch ms


async def new_experiment(session: AsyncSession) -> int:
    return (await experiments.create(session, name=unique("exp"), actor=WRITER)).id


async def run_in(
    session: AsyncSession,
    exp: int,
    name: str,
    *,
    start: int,
    metrics: dict[str, float] | None = None,
    params: dict[str, str] | None = None,
    **kw: object,
) -> Run:
    run = await create_run(session, experiment_id=exp, name=name, start_time=start, **kw)
    points = [MetricPoint(k, v, timestamp=start, step=0) for k, v in (metrics or {}).items()]
    await runs.log_batch(session, run_id=run.id, metrics=points, params=list((params or {}).items()))
    return run


async def names(session: AsyncSession, exp: int, filter: str = "", **kw: object) -> list[str]:
    found, _ = await search_runs(session, experiment_ids=[exp], filter=filter, **kw)  # type: ignore[arg-type]
    return [r.name for r in found]


@pytest.fixture
async def exp(session: AsyncSession) -> int:
    """Five runs: a..e, started one second apart (e newest)."""
    exp = await new_experiment(session)
    await run_in(session, exp, "a", start=T0, metrics={"loss": 0.9, "acc": 0.5}, params={"opt": "adam"})
    await run_in(session, exp, "b", start=T0 + 1000, metrics={"loss": 0.2}, params={"opt": "sgd"}, tags={"t": "x"})
    await run_in(session, exp, "c", start=T0 + 2000, metrics={"loss": 0.5, "acc": 0.9}, tags={"t": "y"})
    await run_in(session, exp, "d", start=T0 + 3000, params={"opt": "Adam"}, user="alice")
    await run_in(session, exp, "e", start=T0 + 4000, metrics={"acc": 0.7}, tags={"t": "x", "team": "Risk"})
    return exp


# ------------------------------------------------------------------------------------------------ runs


async def test_default_order_is_newest_first(session: AsyncSession, exp: int) -> None:
    assert await names(session, exp) == ["e", "d", "c", "b", "a"]


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ("metrics.loss < 0.6", ["c", "b"]),
        ("metrics.loss >= 0.5", ["c", "a"]),
        ("metrics.loss = 0.2", ["b"]),
        ("metric.loss != 0.2", ["c", "a"]),  # a run without the metric never matches
        ("metrics.acc > 0.6 AND metrics.loss < 1", ["c"]),
        ("metrics.acc <= 0.5", ["a"]),
        ("params.opt = 'adam'", ["a"]),
        ("params.opt != 'adam'", ["d", "b"]),  # runs must have the param
        ("params.opt IS NULL", ["e", "c"]),
        ("param.opt IS NOT NULL", ["d", "b", "a"]),
        ("tags.t = 'x'", ["e", "b"]),
        ("tags.t != 'x'", ["c"]),
        ("tags.t IS NULL", ["d", "a"]),
        ("tags.team LIKE 'R%' and tags.t = 'x'", ["e"]),
        ("run_name = 'c'", ["c"]),
        ("\"run name\" IN ('a', 'e', 'zz')", ["e", "a"]),
        ("attributes.run_name NOT IN ('a', 'e')", ["d", "c", "b"]),
        ("user_id = 'alice'", ["d"]),
        ("attr.user_id != 'alice'", ["e", "c", "b", "a"]),
        ("status = 'RUNNING'", ["e", "d", "c", "b", "a"]),
        ("status IN ('FINISHED')", []),
        (f"start_time >= {T0 + 2000}", ["e", "d", "c"]),
        (f"created < {T0 + 2000}", ["b", "a"]),
        (f"start_time = {T0 + 1000}", ["b"]),
        (f"start_time != {T0 + 1000}", ["e", "d", "c", "a"]),
        (f"start_time <= {T0 + 1000}.5", ["b", "a"]),
        (f"start_time > {T0 + 999}.5", ["e", "d", "c", "b"]),
        (f"start_time = {T0 + 1000}.5", []),
        ("start_time > 1e999", []),
        ("start_time > -1e999", ["e", "d", "c", "b", "a"]),
        ("end_time > 0", []),
        ("metrics.loss > 0 and params.opt = 'adam' and tags.t IS NULL and run_name LIKE 'a'", ["a"]),
    ],
)
async def test_run_filters(session: AsyncSession, exp: int, filter: str, expected: list[str]) -> None:
    assert await names(session, exp, filter) == expected


async def test_metric_filters_use_the_latest_value(session: AsyncSession) -> None:
    exp = await new_experiment(session)
    run = await run_in(session, exp, "r", start=T0)
    history = [
        MetricPoint("loss", 0.01, T0, 0),
        MetricPoint("loss", 0.8, T0 + 1, 5),
        MetricPoint("loss", 0.3, T0 + 2, 2),
    ]
    await runs.log_batch(session, run_id=run.id, metrics=history)
    assert await names(session, exp, "metrics.loss = 0.8") == ["r"]
    assert await names(session, exp, "metrics.loss < 0.5") == []


async def test_attribute_filters_on_ids_uris_and_end_time(session: AsyncSession, exp: int) -> None:
    found, _ = await search_runs(session, experiment_ids=[exp], filter="run_name = 'b'")
    run_id = found[0].id
    assert await names(session, exp, f"run_id = '{run_id}'") == ["b"]
    assert await names(session, exp, f"attributes.run_id IN ('{run_id}', 'nope')") == ["b"]
    uri = f"mlflow-artifacts:/{exp}/{run_id}/artifacts"
    assert await names(session, exp, f"artifact_uri = '{uri}'") == ["b"]
    assert await names(session, exp, f"artifact_uri LIKE 'mlflow-artifacts:/{exp}/%'") == ["e", "d", "c", "b", "a"]
    await runs.update(session, run_id=run_id, actor=WRITER, status="FINISHED", end_time=T0 + 60_000)
    assert await names(session, exp, f"end_time = {T0 + 60_000}") == ["b"]
    assert await names(session, exp, f"end_time != {T0}") == ["b"]  # NULL end_time matches nothing
    assert await names(session, exp, "status = 'FINISHED'") == ["b"]


async def test_millisecond_equality_ignores_sub_millisecond_storage(session: AsyncSession) -> None:
    exp = await new_experiment(session)
    run = await create_run(session, experiment_id=exp, name="precise")
    run.start_time = datetime(2024, 5, 1, 12, 0, 0, 123_789, tzinfo=UTC)  # shown as ...123 ms
    await session.flush()
    shown = int(run.start_time.timestamp() * 1000)
    assert await names(session, exp, f"start_time = {shown}") == ["precise"]
    assert await names(session, exp, f"start_time > {shown}") == []
    assert await names(session, exp, f"start_time <= {shown} and start_time >= {shown}") == ["precise"]


async def test_like_is_case_sensitive_and_ilike_is_not(session: AsyncSession) -> None:
    exp = await new_experiment(session)
    for i, value in enumerate(["alpha", "Alpha", "ALPHA_x", "alphabet", "al%ha", "a_b"]):
        await run_in(session, exp, value, start=T0 + i, params={"p": value}, tags={"t": value})
    for field in ("params.p", "tags.t", "run_name"):
        assert await names(session, exp, f"{field} LIKE 'alpha'") == ["alpha"]
        assert await names(session, exp, f"{field} LIKE 'Alpha%'") == ["Alpha"]
        assert sorted(await names(session, exp, f"{field} ILIKE 'alpha'")) == ["Alpha", "alpha"]
        assert sorted(await names(session, exp, f"{field} ILIKE 'ALPHA%'")) == ["ALPHA_x", "Alpha", "alpha", "alphabet"]
        assert await names(session, exp, f"{field} LIKE '%\\_%'") == ["a_b", "ALPHA_x"]
        assert await names(session, exp, f"{field} LIKE 'al\\%ha'") == ["al%ha"]
        assert sorted(await names(session, exp, f"{field} LIKE 'al_ha'")) == ["al%ha", "alpha"]
        assert await names(session, exp, f"{field} ILIKE '%X'") == ["ALPHA_x"]
    assert await names(session, exp, "run_name = 'ALPHA'") == []  # equality is case-sensitive too


async def test_views(session: AsyncSession, exp: int) -> None:
    found, _ = await search_runs(session, experiment_ids=[exp], filter="run_name IN ('a', 'c')")
    for run in found:
        run.lifecycle_stage = "deleted"
    await session.flush()
    assert await names(session, exp) == ["e", "d", "b"]
    assert await names(session, exp, view="DELETED_ONLY") == ["c", "a"]
    assert await names(session, exp, view="ALL") == ["e", "d", "c", "b", "a"]
    with pytest.raises(InvalidInput, match="unknown run view"):
        await names(session, exp, view="SOME")


async def test_experiment_scope(session: AsyncSession, exp: int) -> None:
    other = await new_experiment(session)
    await run_in(session, other, "z", start=T0 + 10_000)
    found, _ = await search_runs(session, experiment_ids=[exp, other], max_results=2)
    assert [r.name for r in found] == ["z", "e"]
    assert await search_runs(session, experiment_ids=[]) == ([], None)


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        (["metrics.loss"], ["b", "c", "a", "e", "d"]),  # no loss: last, newest first among them
        (["metrics.loss DESC"], ["a", "c", "b", "e", "d"]),
        (["metrics.acc DESC", "metrics.loss"], ["c", "e", "a", "b", "d"]),
        (["params.opt"], ["d", "a", "b", "e", "c"]),  # 'Adam' < 'adam' < 'sgd': code-point order
        (["params.opt DESC"], ["b", "a", "d", "e", "c"]),
        (["tags.t DESC"], ["c", "e", "b", "d", "a"]),
        (["attributes.start_time ASC"], ["a", "b", "c", "d", "e"]),
        (["created"], ["a", "b", "c", "d", "e"]),
        (["run_name DESC"], ["e", "d", "c", "b", "a"]),
        (["user_id"], ["d", "e", "c", "b", "a"]),  # 'alice' < 'factory'
        (["status", "end_time"], ["e", "d", "c", "b", "a"]),
    ],
)
async def test_run_ordering(session: AsyncSession, exp: int, order_by: list[str], expected: list[str]) -> None:
    assert await names(session, exp, order_by=order_by) == expected


async def test_run_pages_yield_every_row_once_with_stable_tokens(session: AsyncSession) -> None:
    exp = await new_experiment(session)
    for i in range(11):  # equal start times: only the id tie-breaker orders them
        await run_in(session, exp, f"r{i}", start=T0, metrics={"m": float(i % 3)} if i % 4 else {})
    for order_by in (None, ["metrics.m DESC"], ["params.none"]):
        seen: list[str] = []
        token: str | None = None
        pages = 0
        while True:
            page, next_token = await search_runs(
                session, experiment_ids=[exp], order_by=order_by, max_results=4, page_token=token
            )
            again, same_token = await search_runs(
                session, experiment_ids=[exp], order_by=order_by, max_results=4, page_token=token
            )
            assert [r.id for r in again] == [r.id for r in page] and same_token == next_token
            seen += [r.name for r in page]
            pages += 1
            if next_token is None:
                break
            assert re.fullmatch(r"[A-Za-z0-9_-]+", next_token)
            token = next_token
        assert pages == 3 and sorted(seen) == sorted(f"r{i}" for i in range(11)) and len(seen) == 11


async def test_exact_fit_has_no_next_page(session: AsyncSession, exp: int) -> None:
    page, token = await search_runs(session, experiment_ids=[exp], max_results=5)
    assert len(page) == 5 and token is None


@pytest.mark.parametrize(
    "token",
    [
        "not base64!",
        "e30",  # {}
        base64.urlsafe_b64encode(b"[1]").decode(),
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(json.dumps({"offset": -1, "q": "x"}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"offset": "3", "q": "x"}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"offset": 2**80, "q": "x"}).encode()).decode(),
        base64.b64encode(json.dumps({"offset": 1}).encode()).decode(),  # MLflow's own shape
        "A" * 600,
        "é",
    ],
)
async def test_malformed_page_tokens_are_rejected(session: AsyncSession, exp: int, token: str) -> None:
    with pytest.raises(InvalidInput, match="invalid page_token") as caught:
        await search_runs(session, experiment_ids=[exp], page_token=token)
    assert caught.value.extra["field"] == "page_token"


async def test_a_token_only_works_for_its_own_query(session: AsyncSession, exp: int) -> None:
    _, token = await search_runs(session, experiment_ids=[exp], max_results=2)
    assert token is not None
    with pytest.raises(InvalidInput, match="another filter"):
        await search_runs(session, experiment_ids=[exp], max_results=2, page_token=token, filter="metrics.loss > 0")
    with pytest.raises(InvalidInput, match="another filter"):
        await search_runs(session, experiment_ids=[exp], max_results=2, page_token=token, order_by=["run_name"])
    page, _ = await search_runs(session, experiment_ids=[exp], max_results=3, page_token=token)
    assert [r.name for r in page] == ["c", "b", "a"]  # page size may change between pages


@pytest.mark.parametrize("bad", [0, -1, 50_001, True])
async def test_max_results_bounds(session: AsyncSession, bad: int) -> None:
    with pytest.raises(InvalidInput, match="max_results must be between 1 and"):
        await search_runs(session, experiment_ids=[1], max_results=bad)


async def test_like_works_on_fresh_read_connections(db: Database) -> None:
    for _ in range(3):  # the function is registered once per pooled connection, then reused
        async with db.read() as s:
            assert await search_models(s, filter="name LIKE 'no-such-%' AND tags.a ILIKE 'x'") == ([], None)


async def test_out_of_range_experiment_ids_match_nothing(session: AsyncSession, exp: int) -> None:
    assert await search_runs(session, experiment_ids=[2**70]) == ([], None)
    found, _ = await search_runs(session, experiment_ids=[exp, -(2**70)])
    assert [r.name for r in found] == ["e", "d", "c", "b", "a"]


async def test_max_results_bounds_for_models_and_versions(session: AsyncSession) -> None:
    assert (await search_models(session, filter="name = 'x'", max_results=1000))[1] is None
    assert (await search_versions(session, filter="name = 'x'", max_results=200_000))[1] is None
    with pytest.raises(InvalidInput, match="between 1 and 1000"):
        await search_models(session, max_results=1001)
    with pytest.raises(InvalidInput, match="between 1 and 200000"):
        await search_versions(session, max_results=200_001)


async def test_bad_filters_surface_as_invalid_input(session: AsyncSession) -> None:
    with pytest.raises(InvalidInput, match="column"):
        await search_runs(session, experiment_ids=[1], filter="metrics.a = 'x'")
    with pytest.raises(InvalidInput, match=r"cannot order registered models by tags\.a"):
        await search_models(session, order_by=["tags.a"])
    with pytest.raises(InvalidInput, match="integer"):
        await search_versions(session, filter="version_number > 1.5")


# ---------------------------------------------------------------------------------------------- models


@pytest.fixture
async def zoo(session: AsyncSession) -> str:
    """Models <p>-apple, <p>-Banana, <p>-cherry (tagged), <p>-prompt (a prompt); returns the prefix."""
    prefix = unique("zoo")
    await create_model(session, name=f"{prefix}-apple", tags={"team": "fruit", "stage": "prod"})
    await create_model(session, name=f"{prefix}-Banana", tags={"team": "Fruit"})
    await create_model(session, name=f"{prefix}-cherry", tags={"mlflow.prompt.is_prompt": "false"})
    await create_model(session, name=f"{prefix}-prompt", tags={"mlflow.prompt.is_prompt": "true"})
    return prefix


async def model_names(session: AsyncSession, prefix: str, filter: str = "", **kw: object) -> list[str]:
    scoped = f"name LIKE '{prefix}-%'" + (f" AND {filter}" if filter else "")
    found, _ = await search_models(session, filter=scoped, **kw)  # type: ignore[arg-type]
    return [m.name.removeprefix(prefix + "-") for m in found]


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ("", ["Banana", "apple", "cherry", "prompt"]),
        ("tag.`mlflow.prompt.is_prompt` != 'true'", ["Banana", "apple", "cherry"]),  # lacking the tag matches
        ("tags.`mlflow.prompt.is_prompt` = 'true'", ["prompt"]),
        ("tags.team = 'fruit'", ["apple"]),
        ("tags.team != 'fruit'", ["Banana", "cherry", "prompt"]),
        ("tags.team ILIKE 'FRUIT'", ["Banana", "apple"]),
        ("tags.team LIKE 'F%'", ["Banana"]),
        ("tags.team IS NULL", ["cherry", "prompt"]),
        ("tags.stage IS NOT NULL", ["apple"]),
        ("tags.team = 'fruit' and tags.stage = 'prod'", ["apple"]),
        ("name ILIKE '%-banana'", ["Banana"]),
        ("name LIKE '%-banana'", []),
        ("name != '{p}-apple'", ["Banana", "cherry", "prompt"]),
        ("name IN ('{p}-apple', '{p}-cherry')", ["apple", "cherry"]),
        ("name NOT IN ('{p}-apple')", ["Banana", "cherry", "prompt"]),
    ],
)
async def test_model_filters(session: AsyncSession, zoo: str, filter: str, expected: list[str]) -> None:
    assert await model_names(session, zoo, filter.replace("{p}", zoo)) == expected


async def test_model_search_as_the_mlflow_client_sends_it(session: AsyncSession, zoo: str) -> None:
    found, token = await search_models(
        session, filter=f"name LIKE '{zoo}-%' AND tag.`mlflow.prompt.is_prompt` != 'true'", max_results=100
    )
    assert [m.name for m in found] == [f"{zoo}-Banana", f"{zoo}-apple", f"{zoo}-cherry"] and token is None


async def test_model_ordering_and_pages(session: AsyncSession, zoo: str) -> None:
    by_name = {m: await models.get(session, name=f"{zoo}-{m}") for m in ("apple", "Banana", "cherry", "prompt")}
    for i, name in enumerate(("cherry", "apple", "prompt", "Banana")):
        by_name[name].created_at = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=i)
        by_name[name].updated_at = datetime(2024, 6, 1, tzinfo=UTC) - timedelta(days=i)
    await session.flush()
    assert await model_names(session, zoo, order_by=["name DESC"]) == ["prompt", "cherry", "apple", "Banana"]
    assert await model_names(session, zoo, order_by=["creation_timestamp"]) == ["cherry", "apple", "prompt", "Banana"]
    assert await model_names(session, zoo, order_by=["timestamp DESC"]) == ["Banana", "prompt", "apple", "cherry"]
    assert await model_names(session, zoo, order_by=["last_updated_timestamp"]) == [
        "Banana",
        "prompt",
        "apple",
        "cherry",
    ]
    seen: list[str] = []
    token: str | None = None
    while True:
        page, token = await search_models(session, filter=f"name LIKE '{zoo}-%'", max_results=3, page_token=token)
        seen += [m.name for m in page]
        if token is None:
            break
    assert seen == [f"{zoo}-{n}" for n in ("Banana", "apple", "cherry", "prompt")]


# -------------------------------------------------------------------------------------------- versions


async def add_version(
    session: AsyncSession, model: RegisteredModel, *, run: Run | None = None, **kw: object
) -> ModelVersion:
    blob = await create_blob(session, unique("bytes").encode())
    return await versions.create(
        session,
        model_name=model.name,
        actor=WRITER,
        run_id=run.id if run else None,
        entries=[ManifestEntry(path="model.bin", sha256=blob.sha256, size=blob.size)],
        **kw,  # type: ignore[arg-type]
    )


async def test_version_search(session: AsyncSession) -> None:
    prefix = unique("vs")
    m = await create_model(session, name=f"{prefix}-m")
    other = await create_model(session, name=f"{prefix}-a")
    run = await create_run(session)
    v1 = await add_version(session, m, run=run, source="s3://bucket/one")
    await add_version(session, m, tags={"validation": "passed"})
    await add_version(session, m, run=run, tags={"validation": "failed"})
    await add_version(session, other, source="s3://bucket/other", tags={"validation": "passed"})

    async def find(filter: str, **kw: object) -> list[tuple[str, int]]:
        found, _ = await search_versions(session, filter=filter, **kw)  # type: ignore[arg-type]
        return [(row.name.removeprefix(prefix + "-"), row.version) for row in found]

    assert await find(f"name = '{m.name}'") == [("m", 3), ("m", 2), ("m", 1)]
    assert await find(f"name = '{m.name}' and run_id = '{run.id}'") == [("m", 3), ("m", 1)]
    assert await find(f"name = '{m.name}' and tag.validation = 'passed'") == [("m", 2)]
    assert await find(f"name = '{m.name}' and tags.validation != 'passed'") == [("m", 3), ("m", 1)]
    assert await find(f"name = '{m.name}' and run_id != '{run.id}'") == []  # NULL run_id matches nothing
    assert await find(f"name LIKE '{prefix}-%' and version_number >= 2") == [("m", 3), ("m", 2)]
    assert await find(f"name LIKE '{prefix}-%' and version_number = 1") == [("a", 1), ("m", 1)]
    assert await find(f"name LIKE '{prefix}-%' and version_number < {2**70}") == [
        ("a", 1),
        ("m", 3),
        ("m", 2),
        ("m", 1),
    ]
    assert await find(f"name LIKE '{prefix}-%' and version_number = {2**70}") == []
    assert await find(f"name LIKE '{prefix}-%' and source_path LIKE 's3://bucket/%'") == [("a", 1), ("m", 1)]
    assert await find(f"name LIKE '{prefix}-%' and source_path = '{v1.source}'") == [("m", 1)]
    assert await find(f"name IN ('{m.name}') and run_id IN ('{run.id}', 'x')") == [("m", 3), ("m", 1)]
    assert await find(f"name LIKE '{prefix}-%'", order_by=["version_number DESC"]) == [
        ("m", 3),
        ("m", 2),
        ("a", 1),
        ("m", 1),
    ]
    assert await find(f"name LIKE '{prefix}-%'", order_by=["name DESC", "version_number"]) == [
        ("m", 1),
        ("m", 2),
        ("m", 3),
        ("a", 1),
    ]
    assert await find(f"name LIKE '{prefix}-%'", order_by=["creation_timestamp DESC"])  # orders without error

    seen: list[tuple[str, int]] = []
    token: str | None = None
    while True:
        page, token = await search_versions(session, filter=f"name LIKE '{prefix}-%'", max_results=3, page_token=token)
        seen += [(row.name.removeprefix(prefix + "-"), row.version) for row in page]
        if token is None:
            break
    assert seen == [("a", 1), ("m", 3), ("m", 2), ("m", 1)]


# --------------------------------------------------------------------------------- the SQLite LIKE function


def _reference_like(value: str, pattern: str, insensitive: bool) -> bool:
    regex, i = "", 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            regex, i = regex + re.escape(pattern[i + 1]), i + 2
            continue
        regex += {"%": ".*", "_": "."}.get(pattern[i], re.escape(pattern[i]))
        i += 1
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if insensitive else 0)) is not None


@settings(max_examples=800, deadline=None)
@given(st.text("aAbB%_\\\n", max_size=10), st.text("aAbB%_\\\n", max_size=8), st.booleans())
def test_sqlite_like_agrees_with_a_regex_reference(value: str, pattern: str, insensitive: bool) -> None:
    assert sqlite_like(value, pattern, insensitive) == int(_reference_like(value, pattern, insensitive))


def test_sqlite_like_is_linear_enough_for_hostile_patterns() -> None:
    assert sqlite_like("a" * 5000, "%a" * 200 + "%b", 0) == 0
    assert sqlite_like(None, "%", 0) is None
