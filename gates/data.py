"""Input tables: loading, validation, digests, and the per-table column cache the kinds read.

The input contract: one row per example, a unique non-null ``id``; ``label``/``prediction`` (and
``score`` for AUC); any outcome or slice columns; an optional ``error`` column whose non-empty
values mark rows whose evaluation raised or timed out. ``correct`` is derived as
``prediction == label`` when the table has no such column.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from gates import expr
from gates.errors import GateDataError

TableFormat = Literal["parquet", "csv"]
BoolArray = NDArray[np.bool_]


def load_table(source: str | os.PathLike[str] | bytes, format: TableFormat | None = None) -> pa.Table:
    """Read a Parquet or CSV table from a path or bytes.

    The format is ``format`` when given, else the file suffix (``.parquet``/``.pq`` or
    ``.csv``/``.csv.gz``), else Parquet's ``PAR1`` magic bytes, else CSV. Raises
    :class:`GateDataError` (field ``table``) when the source cannot be read.
    """
    name = "<bytes>"
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        name = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise GateDataError(f"cannot read {name!r}: {exc.strerror or exc}", field="table") from exc
        if format is None:
            lower = name.lower()
            if lower.endswith((".parquet", ".pq")):
                format = "parquet"
            elif lower.endswith((".csv", ".csv.gz")):
                format = "csv"
    if format is None:
        format = "parquet" if data[:4] == b"PAR1" else "csv"
    try:
        if format == "parquet":
            return pq.read_table(io.BytesIO(data))
        compression = "gzip" if data[:2] == b"\x1f\x8b" else None
        stream = pa.input_stream(pa.py_buffer(data), compression=compression)
        return pacsv.read_csv(stream)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise GateDataError(f"cannot read {name!r} as {format}: {exc}", field="table") from exc


class _HashSink:
    """A write-only file object feeding sha256, so the IPC stream is hashed as it is written
    instead of being materialised (a 1M-row table is ~50 MB of IPC)."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def table_digest(table: pa.Table) -> str:
    """sha256 of the table content: column names, types and values, independent of chunking,
    schema metadata and the file format it was read from (the Arrow IPC stream of the table
    as one record batch)."""
    clean = table.replace_schema_metadata(None).combine_chunks()
    sink = _HashSink()
    with ipc.new_stream(pa.PythonFile(sink, mode="w"), clean.schema) as writer:
        writer.write_table(clean, max_chunksize=max(1, clean.num_rows))
    return sink.hash.hexdigest()


def _ids_unique(ids: pa.ChunkedArray) -> bool:
    """Whether every id is distinct. Sorted ids (the common case) are checked in one pass;
    otherwise integers are sorted with numpy and other types hashed by Arrow."""
    flat = ids.combine_chunks()
    if len(flat) < 2:
        return True
    if pa.types.is_integer(flat.type):
        values = np.asarray(flat.to_numpy(zero_copy_only=False))
        if bool((values[1:] > values[:-1]).all()):
            return True
        ordered = np.sort(values)
        return not bool((ordered[1:] == ordered[:-1]).any())
    if pc.all(pc.less(flat.slice(0, len(flat) - 1), flat.slice(1))).as_py():
        return True
    return len(pc.unique(flat)) == len(flat)


def _numpy(col: pa.ChunkedArray | pa.Array) -> NDArray[Any]:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return np.asarray(col.to_numpy(zero_copy_only=False))


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


class TableView:
    """A validated input table with cached derived columns.

    Construction checks the table is non-empty and has unique, non-null ids (raising
    :class:`GateDataError` naming ``role``, e.g. "candidate" or "baseline").
    """

    def __init__(self, table: pa.Table, role: str) -> None:
        self.role = role
        if table.num_rows == 0:
            raise GateDataError(f"the {role} table has no rows", field="table")
        if "id" not in table.column_names:
            raise GateDataError(
                f"the {role} table has no 'id' column (columns: {', '.join(table.column_names)})", field="id"
            )
        ids = table.column("id")
        if pa.types.is_dictionary(ids.type):
            ids = ids.cast(ids.type.value_type)
        if ids.null_count:
            raise GateDataError(f"the {role} table has {ids.null_count} rows with a null id", field="id")
        if not _ids_unique(ids):
            counts = pc.value_counts(ids)
            dupes = [v["values"] for v in counts.to_pylist() if v["counts"] > 1][:5]
            raise GateDataError(f"the {role} table has duplicate ids, e.g. {dupes!r}", field="id")
        self.table = table
        self.n = table.num_rows
        self.ids = ids
        self._cache: dict[tuple[str, ...], Any] = {}
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = table_digest(self.table)
        return self._digest

    def column(self, name: str, *, gate_id: str, field: str) -> pa.ChunkedArray:
        """The named column (dictionary columns decoded); raises if absent."""
        if name not in self.table.column_names:
            raise GateDataError(
                f"column {name!r} is not in the {self.role} table (columns: {', '.join(self.table.column_names)})",
                gate_id=gate_id,
                field=field,
            )
        col = self.table.column(name)
        return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col

    def errored(self) -> BoolArray:
        """Rows whose evaluation errored: ``error`` non-null and non-empty (or true, if boolean)."""
        key = ("errored",)
        if key not in self._cache:
            if "error" not in self.table.column_names:
                self._cache[key] = np.zeros(self.n, dtype=np.bool_)
            else:
                col = self.column("error", gate_id="", field="error")
                if pa.types.is_boolean(col.type):
                    flag = pc.fill_null(col, False)
                elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                    flag = pc.fill_null(pc.greater(pc.utf8_length(col), 0), False)
                else:
                    flag = pc.is_valid(col)
                self._cache[key] = _numpy(flag).astype(np.bool_)
        result: BoolArray = self._cache[key]
        return result

    def outcome(self, name: str, *, gate_id: str, field: str = "outcome") -> tuple[BoolArray, BoolArray]:
        """``(values, valid)`` of a 0/1 outcome column; ``correct`` is derived when absent.

        Accepts boolean columns and numeric columns holding only 0 and 1. ``valid`` is False
        where the value is null; the caller decides whether that is an error.
        """
        key = ("outcome", name)
        if key not in self._cache:
            if name == "correct" and name not in self.table.column_names:
                col = self._derive_correct(gate_id)
            else:
                col = self.column(name, gate_id=gate_id, field=field)
            if _is_numeric(col.type):
                bad = pc.sum(pc.and_(pc.not_equal(col, 0), pc.not_equal(col, 1))).as_py()
                if bad:
                    raise GateDataError(
                        f"outcome column {name!r} must be boolean or 0/1; {bad} rows hold other values",
                        gate_id=gate_id,
                        field=field,
                    )
                col = pc.equal(col, 1)
            elif not pa.types.is_boolean(col.type):
                raise GateDataError(
                    f"outcome column {name!r} must be boolean or 0/1, got {col.type}", gate_id=gate_id, field=field
                )
            valid = _numpy(pc.is_valid(col)).astype(np.bool_)
            values = _numpy(pc.fill_null(col, False)).astype(np.bool_)
            self._cache[key] = (values, valid)
        result: tuple[BoolArray, BoolArray] = self._cache[key]
        return result

    def _derive_correct(self, gate_id: str) -> pa.ChunkedArray:
        label = self.column("label", gate_id=gate_id, field="outcome")
        pred = self.column("prediction", gate_id=gate_id, field="outcome")
        if label.type != pred.type and not (_is_numeric(label.type) and _is_numeric(pred.type)):
            # Mixed types (e.g. CSV inferred ints for one, strings for the other): compare as text.
            label, pred = label.cast(pa.string()), pred.cast(pa.string())
        result: pa.ChunkedArray = pc.equal(pred, label)
        return result

    def where(self, node: expr.Node | None, text: str | None, *, gate_id: str) -> BoolArray:
        """Row mask of a parsed ``where`` (all True when there is none)."""
        if node is None:
            return np.ones(self.n, dtype=np.bool_)
        key = ("where", text or "")
        if key not in self._cache:
            self._cache[key] = expr.evaluate(node, self.table, text=text or "", gate_id=gate_id)
        result: BoolArray = self._cache[key]
        return result

    def _encoded(self, name: str, *, gate_id: str) -> tuple[NDArray[np.int64], list[Any]]:
        """Dictionary codes and values of one slice column, cached: gates slicing by
        ``[country]`` and ``[country, weather]`` encode ``country`` once."""
        key = ("encoded", name)
        if key not in self._cache:
            col = self.column(name, gate_id=gate_id, field="slice_by")
            try:
                enc = col.dictionary_encode(null_encoding="encode").combine_chunks()
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise GateDataError(
                    f"cannot slice by column {name!r} of type {col.type}", gate_id=gate_id, field="slice_by"
                ) from exc
            self._cache[key] = (_numpy(enc.indices).astype(np.int64), enc.dictionary.to_pylist())
        result: tuple[NDArray[np.int64], list[Any]] = self._cache[key]
        return result

    def groups(self, columns: Sequence[str], *, gate_id: str) -> tuple[NDArray[np.int64], list[dict[str, Any]]]:
        """Group code per row for the slice columns and each group's values, groups sorted by
        their values (nulls as ``None``, sorted last) so slice order is deterministic."""
        key = ("groups", *columns)
        if key not in self._cache:
            combined = np.zeros(self.n, dtype=np.int64)
            dictionaries: list[list[Any]] = []
            for name in columns:
                codes, values = self._encoded(name, gate_id=gate_id)
                combined = combined * len(values) + codes
                dictionaries.append(values)
            size = int(np.prod([len(v) for v in dictionaries], dtype=np.float64))
            if size <= 4 * self.n + 1024:
                # Few possible combinations: find the present ones by counting, not sorting.
                present = np.flatnonzero(np.bincount(combined, minlength=size))
                compact = np.full(size, -1, dtype=np.int64)
                compact[present] = np.arange(present.size)
                inverse = compact[combined]
            else:
                present, inverse = np.unique(combined, return_inverse=True)
            labels: list[dict[str, Any]] = []
            for code in present.tolist():
                parts: list[Any] = []
                for values in reversed(dictionaries):
                    code, idx = divmod(code, len(values))
                    parts.append(values[idx])
                labels.append(dict(zip(columns, reversed(parts), strict=True)))
            order = sorted(range(len(labels)), key=lambda i: [(v is None, str(v)) for v in labels[i].values()])
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            self._cache[key] = (rank[inverse], [labels[i] for i in order])
        result: tuple[NDArray[np.int64], list[dict[str, Any]]] = self._cache[key]
        return result
