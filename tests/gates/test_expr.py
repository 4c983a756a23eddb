"""The ``where`` language: grammar, SQL null semantics, type errors, and that it cannot run code."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gates import expr
from gates.errors import GateDataError, GateError, GateSpecError

TABLE = pa.table(
    {
        "label": ["pedestrian", "car", None, "pedestrian", "bike"],
        "weather": ["rain", "rain", "rain", "sun", "snow"],
        "x": [1, 2, 3, None, 5],
        "score": [0.1, 0.5, 0.9, 0.2, 0.7],
        "night": [True, False, None, True, False],
        "odd name": ["a", "b", "c", "d", "e"],
        "ts": pa.array([dt.datetime(2024, m, 1) for m in (1, 3, 5, 7, 9)]),
    }
)


def run(text: str) -> list[bool]:
    return expr.evaluate(expr.parse(text, "g"), TABLE, text=text, gate_id="g").tolist()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("label == 'pedestrian' and weather == 'rain'", [True, False, False, False, False]),
        ("weather != 'rain'", [False, False, False, True, True]),
        ('label == "car" or x >= 5', [False, True, False, False, True]),
        ("x < 3", [True, True, False, False, False]),
        ("x <= 3 and score > 0.4", [False, True, True, False, False]),
        ("not (x == 2)", [True, False, True, False, True]),  # null x: unknown, excluded
        ("label in ['car', 'bike']", [False, True, False, False, True]),
        ("label not in ['car', 'bike']", [True, False, False, True, False]),  # null label excluded
        ("night", [True, False, False, True, False]),
        ("not night", [False, True, False, False, True]),
        ("night == true", [True, False, False, True, False]),
        ("`odd name` in ['a', 'e']", [True, False, False, False, True]),
        ("ts >= '2024-05-01'", [False, False, True, True, True]),
        ("x > -1.5e0", [True, True, True, False, True]),
        ("(label == 'car' or label == 'bike') AND NOT weather == 'snow'", [False, True, False, False, False]),
        ("score >= x", [False, False, False, False, False]),
        ("'rain' == weather", [True, True, True, False, False]),
    ],
)
def test_evaluates(text: str, expected: list[bool]) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x = 2", "use '=='"),
        ("x == 1 && x == 2", "use 'and'"),
        ("x ==", "expected a column name"),
        ("(x == 1", "expected ')'"),
        ("x in 3", "expected '['"),
        ("x in [1, 2", "expected ',' or ']'"),
        ("1 == 2", "two literals"),
        ("'a'", "comparison after a literal"),
        ("x == 1 y", "expected 'and', 'or' or the end"),
        ("__import__('os').system('true')", "unexpected"),
        ("label == 'a' ; drop", "unexpected character ';'"),
        ("   ", "empty"),
        ("(" * 70 + "x == 1" + ")" * 70, "nesting deeper"),
    ],
)
def test_syntax_errors_name_the_gate_field_and_position(text: str, fragment: str) -> None:
    with pytest.raises(GateSpecError) as info:
        expr.parse(text, "rain-recall")
    assert info.value.gate_id == "rain-recall" and info.value.field == "where"
    assert fragment in str(info.value) and "rain-recall" in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("weather_typo == 'rain'", "column 'weather_typo' is not in the table"),
        ("label == 3", "cannot compare string with number"),
        ("x == true", "cannot compare number with bool"),
        ("label in [1, 2]", "compared with 1"),
        ("x", "use it in a comparison"),
        ("ts > 'not a date'", "cannot read 'not a date'"),
    ],
)
def test_data_errors(text: str, fragment: str) -> None:
    with pytest.raises(GateDataError) as info:
        run(text)
    assert info.value.field == "where" and fragment in str(info.value)


def test_columns_lists_every_reference() -> None:
    node = expr.parse("a == 1 and (b in ['x'] or not c) and d < e")
    assert expr.columns(node) == {"a", "b", "c", "d", "e"}


@given(st.text(max_size=60))
def test_arbitrary_text_never_escapes_the_error_type(text: str) -> None:
    """Fuzz: any input either parses or raises GateSpecError; evaluation raises only GateError."""
    try:
        node = expr.parse(text)
    except GateSpecError:
        return
    try:
        out = expr.evaluate(node, TABLE, text=text)
    except GateError:
        return
    assert out.dtype == np.bool_ and out.shape == (TABLE.num_rows,)


def test_chunked_columns_evaluate_like_contiguous_ones() -> None:
    chunked = pa.concat_tables([TABLE.slice(0, 2), TABLE.slice(2)])
    node = expr.parse("label == 'pedestrian' or x > 2")
    assert expr.evaluate(node, chunked).tolist() == expr.evaluate(node, TABLE).tolist()
