"""Monitor specs: parsing, every validation error naming its key, and the check they drive."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from monitoring.profile import Kind, Schema, TableProfile, profile_table
from monitoring.spec import ColumnRule, MonitorSpec, SpecError, check, load_spec, parse_window, validate_for

EXAMPLE = """\
version: 1
window: 1d
min_rows: 500
schedule: "0 * * * *"
alias: production
columns:
  amount: {method: psi, threshold: 0.2}
drift_share: 0.5
alert_on: [amount, country]
prediction: true
"""


def test_the_documented_example_loads() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.window == timedelta(days=1) and spec.min_rows == 500 and spec.schedule == "0 * * * *"
    assert spec.alias == "production" and spec.columns == {"amount": ColumnRule("psi", 0.2)}
    assert spec.drift_share == 0.5 and spec.alert_on == ("amount", "country") and spec.prediction is True
    assert spec.text == EXAMPLE and spec.digest == hashlib.sha256(EXAMPLE.encode()).hexdigest()
    assert load_spec(EXAMPLE + "\n").digest != spec.digest  # the digest is of the text as written


def test_defaults() -> None:
    for text in ("", "version: 1\n", "# nothing but a comment\n"):
        spec = load_spec(text)
        assert (spec.window, spec.min_rows, spec.schedule, spec.alias) == (timedelta(days=1), 500, None, "production")
        assert (spec.columns, spec.drift_share, spec.alert_on, spec.prediction) == ({}, 0.5, (), True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("6H", timedelta(hours=6)),
        ("1d", timedelta(days=1)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("since last check", None),
        ("  Since  Last   Check ", None),
    ],
)
def test_windows(text: str, expected: timedelta | None) -> None:
    assert parse_window(text) == expected
    assert load_spec(f"window: {text!r}\n").window == expected


@pytest.mark.parametrize("text", ["0h", "1y", "h", "1.5h", "400d", "since", "-1d", "1 day"])
def test_bad_windows_name_the_key(text: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_window(text)
    assert info.value.key == "window"


@pytest.mark.parametrize("cron", ["0 * * * *", "*/15 * * * *", "30 2 * * mon-fri", "0 0 1 * *"])
def test_schedules(cron: str) -> None:
    assert load_spec(f'schedule: "{cron}"\n').schedule == cron


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("drift_shar: 0.3\n", "drift_shar"),
        ("version: 2\n", "version"),
        ("version: true\n", "version"),
        ("window: 5\n", "window"),
        ("window: 1y\n", "window"),
        ("min_rows: 0\n", "min_rows"),
        ("min_rows: true\n", "min_rows"),
        ("min_rows: '500'\n", "min_rows"),
        ("min_rows: 10.5\n", "min_rows"),
        ("schedule: '0 * * *'\n", "schedule"),
        ("schedule: '61 * * * *'\n", "schedule"),
        ("schedule: '0 * * * * *'\n", "schedule"),
        ("schedule: 5\n", "schedule"),
        ("alias: 1production\n", "alias"),
        ("alias: [production]\n", "alias"),
        ("drift_share: 0\n", "drift_share"),
        ("drift_share: 1.5\n", "drift_share"),
        ("drift_share: half\n", "drift_share"),
        ("alert_on: amount\n", "alert_on"),
        ("alert_on: [amount, 3]\n", "alert_on"),
        ("prediction: 'yes please'\n", "prediction"),
        ("columns: [amount]\n", "columns"),
        ("columns: {amount: psi}\n", "columns.amount"),
        ("columns: {amount: {method: psi, treshold: 0.2}}\n", "columns.amount.treshold"),
        ("columns: {amount: {method: kl_div}}\n", "columns.amount.method"),
        ("columns: {amount: {method: ks, threshold: 1.5}}\n", "columns.amount.threshold"),
        ("columns: {amount: {threshold: -0.1}}\n", "columns.amount.threshold"),
        ("columns: {amount: {threshold: high}}\n", "columns.amount.threshold"),
    ],
)
def test_errors_name_the_key(text: str, key: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(text)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


@pytest.mark.parametrize("text", ["- window: 1d\n", "window: [1d\n", "just text\n"])
def test_documents_that_are_not_mappings(text: str) -> None:
    with pytest.raises(SpecError):
        load_spec(text)


# -- the check --------------------------------------------------------------------------------

SCHEMA = Schema(
    columns={
        "amount": Kind.numerical,
        "age": Kind.numerical,
        "country": Kind.categorical,
        "device": Kind.categorical,
        "score": Kind.numerical,
    },
    prediction="score",
    target="label",
)


def profiles(*, shift: dict[str, bool], empty: str | None = None) -> tuple[TableProfile, TableProfile]:
    rng = np.random.default_rng(3)

    def draw(n: int, drifted: bool) -> pa.Table:
        def moved(name: str) -> float:
            return 1.0 if drifted and shift.get(name) else 0.0

        columns = {
            "amount": rng.normal(moved("amount"), 1.0, n),
            "age": rng.normal(40 + 10 * moved("age"), 10.0, n),
            "country": rng.choice(["de", "fr", "it"], n, p=[0.2, 0.3, 0.5] if moved("country") else [0.5, 0.3, 0.2]),
            "device": rng.choice(["ios", "android"], n, p=[0.1, 0.9] if moved("device") else [0.5, 0.5]),
            "score": rng.normal(0.5 + 0.3 * moved("score"), 0.1, n),
        }
        table = pa.table(columns)
        if drifted and empty is not None:
            index = table.column_names.index(empty)
            table = table.set_column(index, empty, pa.nulls(n, table.schema.field(empty).type))
        return table

    return profile_table(draw(5000, False), SCHEMA), profile_table(draw(3000, True), SCHEMA)


def test_check_uses_the_defaults_and_the_share_rule() -> None:
    reference, current = profiles(shift={"amount": True})
    result = check(reference, current, SCHEMA, MonitorSpec())
    assert [c.column for c in result.columns] == ["amount", "age", "country", "device", "score"]
    assert [c.method for c in result.columns] == ["wasserstein"] * 2 + ["jensenshannon"] * 2 + ["wasserstein"]
    assert result.drifted == ["amount"] and result.drift_detected is False  # 1 of 5 < 0.5
    assert (result.rows, result.reference_rows) == (3000, 5000)
    assert check(reference, current, SCHEMA, load_spec("drift_share: 0.2\n")).drift_detected  # 1 of 5 >= 0.2
    assert check(reference, current, SCHEMA, load_spec("alert_on: [amount]\n")).drift_detected
    assert not check(reference, current, SCHEMA, load_spec("alert_on: [age]\n")).drift_detected
    document = result.to_dict()
    assert document["columns"][0] == result.columns[0].to_dict()
    assert set(document["columns"][0]) == {"column", "type", "method", "statistic", "threshold", "drifted"}


def test_column_rules_override_method_and_threshold() -> None:
    reference, current = profiles(shift={"amount": True})
    spec = load_spec("columns:\n  amount: {threshold: 5.0}\n  country: {method: psi}\n  age: {method: ks}\n")
    by_name = {c.column: c for c in check(reference, current, SCHEMA, spec).columns}
    amount = by_name["amount"]
    assert (amount.method, amount.threshold, amount.drifted) == ("wasserstein", 5.0, False)
    assert (by_name["country"].method, by_name["country"].threshold) == ("psi", 0.1)
    assert (by_name["age"].method, by_name["age"].threshold) == ("ks", 0.05)


def test_prediction_drift_can_be_turned_off() -> None:
    reference, current = profiles(shift={"score": True, "device": True})
    on = check(reference, current, SCHEMA, MonitorSpec())
    assert on.drifted == ["device", "score"] and not on.drift_detected  # 2 of 5
    off = check(reference, current, SCHEMA, load_spec("prediction: false\n"))
    assert [c.column for c in off.columns] == ["amount", "age", "country", "device"]
    assert off.drifted == ["device"]


def test_columns_without_values_are_skipped() -> None:
    reference, current = profiles(shift={}, empty="age")
    result = check(reference, current, SCHEMA, MonitorSpec())
    assert result.skipped == ["age"] and "age" not in [c.column for c in result.columns]


def test_validate_for_a_baseline() -> None:
    validate_for(load_spec(EXAMPLE.replace("country", "device")), SCHEMA)
    cases = [
        ("columns: {nope: {method: psi}}\n", "columns.nope"),
        ("columns: {amount: {method: chisquare}}\n", "columns.amount"),
        ("columns: {country: {method: wasserstein}}\n", "columns.country"),
        ("alert_on: [nope]\n", "alert_on"),
    ]
    for text, key in cases:
        with pytest.raises(SpecError) as info:
            validate_for(load_spec(text), SCHEMA)
        assert info.value.key == key
    reference, current = profiles(shift={})
    with pytest.raises(SpecError) as info:
        check(reference, current, SCHEMA, load_spec("columns: {country: {method: ks}}\n"))
    assert info.value.key == "columns.country"
