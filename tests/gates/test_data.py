"""Input tables: formats, digests and the validation errors for unusable data."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import gates
from gates.data import TableView

from .conftest import make_table


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _csv_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(table, buf)
    return buf.getvalue()


def test_load_parquet_and_csv_from_paths_and_bytes(tmp_path: Path) -> None:
    table = make_table(200, 0.9)
    (tmp_path / "r.parquet").write_bytes(_parquet_bytes(table))
    (tmp_path / "r.csv").write_bytes(_csv_bytes(table))
    (tmp_path / "r.csv.gz").write_bytes(gzip.compress(_csv_bytes(table)))
    (tmp_path / "noext").write_bytes(_parquet_bytes(table))
    for source in (
        tmp_path / "r.parquet",
        str(tmp_path / "r.csv"),
        tmp_path / "r.csv.gz",
        tmp_path / "noext",
        _parquet_bytes(table),
        _csv_bytes(table),
    ):
        loaded = gates.load_table(source)
        assert loaded.num_rows == 200
        assert loaded.column("label").to_pylist() == table.column("label").to_pylist()
    assert gates.load_table(_csv_bytes(table), format="csv").num_rows == 200


def test_unreadable_sources_raise_gate_data_error(tmp_path: Path) -> None:
    with pytest.raises(gates.GateDataError, match="cannot read") as info:
        gates.load_table(tmp_path / "missing.parquet")
    assert info.value.field == "table"
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(gates.GateDataError, match="as parquet"):
        gates.load_table(tmp_path / "bad.parquet")
    with pytest.raises(gates.GateDataError, match="as csv"):
        gates.load_table(b"a,b\n1,2,3\n", format="csv")


def test_digest_ignores_chunking_metadata_and_file_format() -> None:
    table = make_table(500, 0.9)
    base = gates.table_digest(table)
    assert gates.table_digest(pa.concat_tables([table.slice(0, 100), table.slice(100)])) == base
    assert gates.table_digest(table.replace_schema_metadata({"pandas": "x"})) == base
    assert gates.table_digest(pq.read_table(io.BytesIO(_parquet_bytes(table)))) == base
    changed = table.set_column(1, "label", pa.array(["zebra", *table.column("label").to_pylist()[1:]]))
    assert gates.table_digest(changed) != base
    assert len(base) == 64


@pytest.mark.parametrize(
    ("table", "field", "fragment"),
    [
        (pa.table({"id": pa.array([], pa.int64()), "correct": pa.array([], pa.bool_())}), "table", "no rows"),
        (pa.table({"key": [1, 2], "correct": [True, False]}), "id", "no 'id' column"),
        (pa.table({"id": [1, None], "correct": [True, False]}), "id", "null id"),
        (pa.table({"id": [3, 1, 3], "correct": [True, False, True]}), "id", "duplicate ids, e.g. [3]"),
        (pa.table({"id": ["a", "b", "a"], "correct": [True, False, True]}), "id", "duplicate ids, e.g. ['a']"),
    ],
)
def test_bad_tables(table: pa.Table, field: str, fragment: str) -> None:
    with pytest.raises(gates.GateDataError) as info:
        TableView(table, "candidate")
    assert info.value.field == field and fragment in str(info.value)
    spec = gates.load_spec({"version": 1, "gates": [{"id": "g", "kind": "proportion", "threshold": 0.5}]})
    with pytest.raises(gates.GateDataError):
        gates.evaluate(spec, table)


def test_sorted_and_unsorted_unique_ids_are_accepted() -> None:
    for ids in ([1, 2, 3], [3, 1, 2], ["b", "a", "c"], ["a", "b", "c"]):
        assert TableView(pa.table({"id": ids}), "candidate").n == 3


def test_correct_is_derived_and_mixed_types_compare_as_text() -> None:
    view = TableView(pa.table({"id": [1, 2, 3], "label": [1, 2, 3], "prediction": ["1", "2", "x"]}), "candidate")
    values, valid = view.outcome("correct", gate_id="g")
    assert values.tolist() == [True, True, False] and valid.all()


@pytest.mark.parametrize(
    ("column", "fragment"),
    [
        (pa.array([0, 1, 2]), "rows hold other values"),
        (pa.array(["yes", "no", "yes"]), "must be boolean or 0/1"),
    ],
)
def test_outcome_must_be_binary(column: pa.Array, fragment: str) -> None:
    view = TableView(pa.table({"id": [1, 2, 3], "ok": column}), "candidate")
    with pytest.raises(gates.GateDataError, match=fragment) as info:
        view.outcome("ok", gate_id="g")
    assert (info.value.gate_id, info.value.field) == ("g", "outcome")


def test_numeric_outcome_and_error_flags() -> None:
    table = pa.table(
        {
            "id": np.arange(5),
            "ok": [1, 0, 1, 1, None],
            "error": ["", None, "timeout", "", "boom"],
        }
    )
    view = TableView(table, "candidate")
    values, valid = view.outcome("ok", gate_id="g")
    assert values.tolist() == [True, False, True, True, False]
    assert valid.tolist() == [True, True, True, True, False]
    assert view.errored().tolist() == [False, False, True, False, True]


def test_groups_are_sorted_with_nulls_last() -> None:
    view = TableView(pa.table({"id": [1, 2, 3, 4], "c": ["b", None, "a", "b"], "d": [1, 1, 2, 1]}), "candidate")
    codes, labels = view.groups(("c", "d"), gate_id="g")
    assert labels == [{"c": "a", "d": 2}, {"c": "b", "d": 1}, {"c": None, "d": 1}]
    assert codes.tolist() == [1, 2, 0, 1]
