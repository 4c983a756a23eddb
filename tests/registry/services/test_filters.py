"""The search filter grammar: every identifier and operator form, quoting, numbers, and the errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.errors import InvalidInput
from registry.services.filters import (
    MODELS,
    RUNS,
    VERSIONS,
    Comparison,
    Field,
    Kind,
    Op,
    OrderBy,
    parse_filter,
    parse_order_by,
)

METRIC, PARAM, TAG, ATTR = Kind.METRIC, Kind.PARAM, Kind.TAG, Kind.ATTRIBUTE


def one(text: str, schema: object = RUNS) -> tuple[Field, Op, object]:
    [c] = parse_filter(text, schema)  # type: ignore[arg-type]
    return c.field, c.op, c.value


@pytest.mark.parametrize("text", ["", None, "   ", "\n\t"])
def test_empty_filter_has_no_conditions(text: str | None) -> None:
    assert parse_filter(text, RUNS) == []


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("metrics.acc > 1", Field(METRIC, "acc")),
        ("metric.acc > 1", Field(METRIC, "acc")),
        ("params.lr = 'x'", Field(PARAM, "lr")),
        ("param.lr = 'x'", Field(PARAM, "lr")),
        ("parameters.lr = 'x'", Field(PARAM, "lr")),
        ("parameter.lr = 'x'", Field(PARAM, "lr")),
        ("tags.team = 'x'", Field(TAG, "team")),
        ("tag.team = 'x'", Field(TAG, "team")),
        ("tags.mlflow.runName = 'x'", Field(TAG, "mlflow.runName")),
        ("attributes.status = 'x'", Field(ATTR, "status")),
        ("attribute.status = 'x'", Field(ATTR, "status")),
        ("attr.status = 'x'", Field(ATTR, "status")),
        ("run.status = 'x'", Field(ATTR, "status")),
        ("status = 'x'", Field(ATTR, "status")),
        ("run_id = 'x'", Field(ATTR, "run_id")),
        ("run_name = 'x'", Field(ATTR, "run_name")),
        ("\"run name\" = 'x'", Field(ATTR, "run_name")),
        ("`Run Name` = 'x'", Field(ATTR, "run_name")),
        ("user_id = 'x'", Field(ATTR, "user_id")),
        ("artifact_uri = 'x'", Field(ATTR, "artifact_uri")),
        ("start_time > 1", Field(ATTR, "start_time")),
        ("created > 1", Field(ATTR, "start_time")),
        ("attributes.created > 1", Field(ATTR, "start_time")),
        ("end_time > 1", Field(ATTR, "end_time")),
        ("METRICS.acc > 1", Field(METRIC, "acc")),
    ],
)
def test_run_identifiers_and_aliases(text: str, field: Field) -> None:
    assert one(text)[0] == field


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("tags.`a.b` = 'x'", "a.b"),
        ("tags.`mlflow.prompt.is_prompt` != 'true'", "mlflow.prompt.is_prompt"),
        ('metrics."my key" > 1', "my key"),
        ("params.`with space` = 'x'", "with space"),
        ("tags.`back``tick` = 'x'", "back`tick"),
        ("`tags`.plain = 'x'", "plain"),
        ("`tags`.`both.quoted` = 'x'", "both.quoted"),
        ("metrics.val/loss > 1", "val/loss"),
        ("metrics.train-loss > 1", "train-loss"),
        ("metrics.Acc > 1", "Acc"),
        ("tags.é = 'x'", "é"),
    ],
)
def test_quoted_and_special_keys(text: str, key: str) -> None:
    assert one(text)[0].key == key


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ("metrics.m = 1", Op.EQ, 1),
        ("metrics.m != 1", Op.NE, 1),
        ("metrics.m < 1", Op.LT, 1),
        ("metrics.m <= 1", Op.LE, 1),
        ("metrics.m > 1", Op.GT, 1),
        ("metrics.m >= 1", Op.GE, 1),
        ("metrics.m>=1", Op.GE, 1),
        ("params.p LIKE 'a%'", Op.LIKE, "a%"),
        ("params.p like 'a%'", Op.LIKE, "a%"),
        ("params.p ILIKE 'a%'", Op.ILIKE, "a%"),
        ("params.p IS NULL", Op.IS_NULL, None),
        ("params.p is not null", Op.IS_NOT_NULL, None),
        ("tags.t IS NULL", Op.IS_NULL, None),
        ("tags.t != 'x'", Op.NE, "x"),
        ("status IN ('A', 'B')", Op.IN, ("A", "B")),
        ("status in ('A')", Op.IN, ("A",)),
        ("status NOT IN ('A','B',\"C\")", Op.NOT_IN, ("A", "B", "C")),
        ("status not  in ('A')", Op.NOT_IN, ("A",)),
        ("run_name ILIKE '%x%'", Op.ILIKE, "%x%"),
        ("end_time <= 5", Op.LE, 5),
    ],
)
def test_operators(text: str, op: Op, value: object) -> None:
    _, got_op, got_value = one(text)
    assert (got_op, got_value) == (op, value)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("+3", 3),
        ("0.5", 0.5),
        (".5", 0.5),
        ("-.25", -0.25),
        ("1e3", 1000.0),
        ("1E-3", 0.001),
        ("2.5e+2", 250.0),
        ("1.", 1.0),
    ],
)
def test_numbers(literal: str, value: float) -> None:
    got = one(f"metrics.m > {literal}")[2]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'plain'", "plain"),
        ('"double"', "double"),
        ("''", ""),
        ("'it''s'", "it's"),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ('"a\'b"', "a'b"),
        ("'back\\\\slash'", "back\\slash"),
        ("'a\\_b%'", "a\\_b%"),
        ("'C:\\models'", "C:\\models"),
        ("'  spaced  '", "  spaced  "),
        ("'AND'", "AND"),
        ("'ünï'", "ünï"),
    ],
)
def test_strings_and_escapes(literal: str, value: str) -> None:
    assert one(f"params.p = {literal}")[2] == value


def test_and_is_case_insensitive_and_positions_are_reported() -> None:
    parsed = parse_filter("metrics.a > 1 and params.b = 'x' AND tags.c != 'y' aNd status IN ('X')", RUNS)
    assert [c.field.kind for c in parsed] == [METRIC, PARAM, TAG, ATTR]
    assert [c.column for c in parsed] == [1, 19, 38, 56]
    assert parsed[0] == Comparison(Field(METRIC, "a"), Op.GT, 1, 1)


def test_model_and_version_fields() -> None:
    assert one("name = 'm'", MODELS) == (Field(ATTR, "name"), Op.EQ, "m")
    assert one("attributes.name IN ('a', 'b')", MODELS)[2] == ("a", "b")
    assert one("tag.`mlflow.prompt.is_prompt` != 'true'", MODELS)[0] == Field(TAG, "mlflow.prompt.is_prompt")
    parsed = parse_filter("name = 'm' and run_id = 'abc' and source_path LIKE 's3://%'", VERSIONS)
    assert [c.field.key for c in parsed] == ["name", "run_id", "source_path"]
    assert one("version_number >= 2", VERSIONS) == (Field(ATTR, "version_number"), Op.GE, 2)
    assert one("tags.validation = 'passed'", VERSIONS)[0] == Field(TAG, "validation")


def test_order_by() -> None:
    assert parse_order_by(None, RUNS) == []
    assert parse_order_by(["metrics.loss DESC", "attributes.start_time asc", "tags.`a b`", "created"], RUNS) == [
        OrderBy(Field(METRIC, "loss"), False),
        OrderBy(Field(ATTR, "start_time"), True),
        OrderBy(Field(TAG, "a b"), True),
        OrderBy(Field(ATTR, "start_time"), True),
    ]
    assert parse_order_by(["params.lr Desc", "run_name"], RUNS)[0] == OrderBy(Field(PARAM, "lr"), False)
    assert parse_order_by(["name DESC", "creation_timestamp", "timestamp", "last_updated_timestamp"], MODELS)[2] == (
        OrderBy(Field(ATTR, "creation_timestamp"), True)
    )
    assert parse_order_by(["version_number DESC"], VERSIONS) == [OrderBy(Field(ATTR, "version_number"), False)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metrics.a = 'x'", "metric 'a' compares with a number, found \"'x'\" at column 13"),
        ("params.a > '1'", "operator > is not supported for param 'a'"),
        ("metrics.a IS NULL", "operator IS NULL is not supported for metric 'a'"),
        ("tags.a IN ('x')", "operator IN is not supported for tag 'a'"),
        ("start_time LIKE '1%'", "operator LIKE is not supported for start_time"),
        ("status > 'a'", "operator > is not supported for status"),
        ("tags.a = 1", "tag 'a' compares with a quoted string"),
        ("created = '2020'", "start_time compares with a number"),
        ("status = `a`", "status compares with a quoted string"),
        ("status = 'a' OR status = 'b'", "OR is not supported: combine conditions with AND at column 14"),
        ("(status = 'a')", "parentheses are not supported"),
        ("tags. = 'x'", "missing key after 'tags.' at column 1"),
        ("foo.x = 1", "unknown entity 'foo' in runs search"),
        ("datasets.name = 'x'", "unknown entity 'datasets'"),
        ("name = 'x'", "cannot filter runs by 'name'"),
        ("status LIKE", "found end of input at column 12"),
        ("status IN ()", "expected a quoted string in the list, found ')' at column 12"),
        ("status IN ('a',)", "expected a quoted string in the list, found ')'"),
        ("status IN ('a' 'b')", "expected ',' or ')' in the list, found \"'b'\""),
        ("status IN 'a'", "expected a parenthesised list"),
        ("status IN (1)", "expected a quoted string in the list, found '1'"),
        ("metrics.a = 1e", "malformed number '1e' (exponent needs digits) at column 13"),
        ("metrics.a = 12abc", "malformed number"),
        ("metrics.a = 1.2.3", "malformed number"),
        ("metrics.a > " + "9" * 80, "number longer than 64 characters"),
        ("status = 'abc", "unterminated string: no closing ' found at column 10"),
        ("tags.`abc = 'x'", "unterminated back-quoted name"),
        ("status <> 'a'", "operator '<>' is not supported (use '!=')"),
        ("status == 'a'", "operator '==' is not supported (use '=')"),
        ("status ! 'a'", "'!' must be followed by '='"),
        ("status = 'a' and", "expected a field name, found end of input at column 17"),
        ("status = 'a' AND AND status = 'b'", "expected a field name"),
        ("tags.x IS NOT 'x'", "expected NULL after IS NOT"),
        ("tags.x IS", "expected NULL after IS"),
        ("status NOT LIKE 'x'", "expected IN after NOT"),
        ("status 'a'", "expected an operator after status, found \"'a'\""),
        ("status", "expected an operator after status, found end of input"),
        ("status = 'a' status = 'b'", "expected AND or end of input, found 'status' at column 14"),
        ("status LIKE 'a\\\\'", "LIKE pattern ends with an unescaped backslash"),
        ("= 'a'", "expected a field name (e.g. metrics.loss), found '='"),
        ("'status' = 'a'", "expected a field name"),
        ("status = 'a';", "unexpected character ';' at column 13"),
        ("status§ = 'a'", "unexpected character '§'"),
        ("status = 'a\x00'", "NUL character at column 12"),
        ("status = '\ud800'", "text is not valid Unicode at column 11"),
        ("tags.a\"b\" = 'x'", 'unexpected "b" in field name at column 7'),
        ("tags.`a` `b` = 'x'", "expected an operator after tag 'a', found '`b`'"),
    ],
)
def test_malformed_filters_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_filter(text, RUNS)
    error = caught.value
    assert message in error.message and error.message.startswith("invalid filter: ")
    assert error.extra["field"] == "filter" and isinstance(error.extra.get("column"), int)


@pytest.mark.parametrize(
    ("schema", "text", "message"),
    [
        (MODELS, "run_id = 'x'", "cannot filter registered models by 'run_id'"),
        (MODELS, "metrics.a > 1", "unknown entity 'metrics'"),
        (MODELS, "name > 'a'", "operator > is not supported for name"),
        (VERSIONS, "version_number = 1.5", "version_number compares with an integer, found '1.5'"),
        (VERSIONS, "version_number = '1'", "version_number compares with a number"),
        (VERSIONS, "params.a = 'x'", "unknown entity 'params'"),
    ],
)
def test_schema_specific_errors(schema: object, text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match="invalid filter") as caught:
        parse_filter(text, schema)  # type: ignore[arg-type]
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("schema", "items", "message"),
    [
        (RUNS, ["metrics.loss UP"], "expected ASC, DESC or end of input, found 'UP' at column 14"),
        (RUNS, ["metrics.loss DESC ASC"], "expected ASC, DESC or end of input"),
        (RUNS, [""], "empty or non-text item"),
        (RUNS, ["nope"], "cannot order runs by 'nope'"),
        (MODELS, ["tags.x"], "cannot order registered models by tags.x"),
        (MODELS, ["run_id"], "cannot order registered models by 'run_id'"),
        (VERSIONS, ["source_path"], "cannot order model versions by 'source_path'"),
    ],
)
def test_malformed_order_by(schema: object, items: list[str], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_order_by(items, schema)  # type: ignore[arg-type]
    assert message in caught.value.message and caught.value.extra["field"] == "order_by"


# --------------------------------------------------------------------------------------------- properties

_keys = st.text(st.characters(codec="utf-8", exclude_characters="`\x00"), min_size=1, max_size=20)
_values = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["params", "tags"]), _keys, st.sampled_from(["=", "!=", "LIKE", "ILIKE"]), _values),
        min_size=1,
        max_size=4,
    )
)
def test_rendered_filters_round_trip(conditions: list[tuple[str, str, str, str]]) -> None:
    text = " AND ".join(f"{entity}.`{key}` {op} {_quote(value)}" for entity, key, op, value in conditions)
    try:
        parsed = parse_filter(text, RUNS)
    except InvalidInput as error:  # only a LIKE pattern ending in a lone backslash may be refused
        assert "unescaped backslash" in error.message
        return
    assert [(c.field.key, c.op.value, c.value) for c in parsed] == [(k, op, v) for _, k, op, v in conditions]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**18), 10**18), min_size=1, max_size=3)
)
def test_numbers_round_trip(numbers: list[float]) -> None:
    text = " and ".join(f"metrics.m{i} <= {n!r}" for i, n in enumerate(numbers))
    assert [c.value for c in parse_filter(text, RUNS)] == numbers


_CHARS = "abcAB_.-/:`'\"\\ \t()=,!<>%é§0123456789+"
_WORDS = ["AND", "and", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "metrics.", "tags.", "params.", "status", "1e", ".5"]
_ALPHABET = st.sampled_from([*_CHARS, *_WORDS])


@settings(max_examples=600, deadline=None)
@given(st.lists(_ALPHABET, max_size=30).map("".join) | st.text(max_size=40))
def test_fuzz_parser_raises_nothing_but_invalid_input(text: str) -> None:
    for schema in (RUNS, MODELS, VERSIONS):
        try:
            parse_filter(text, schema)
        except InvalidInput:
            pass
        try:
            parse_order_by([text], schema)
        except InvalidInput:
            pass
