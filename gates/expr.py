"""The ``where`` filter language: a small safe parser and a vectorised evaluator. Never ``eval``.

Grammar (keywords are case-insensitive)::

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | atom
    atom       := "(" expr ")" | operand [cmp operand | ["not"] "in" "[" literal ("," literal)* "]"]
    cmp        := "==" | "!=" | "<" | "<=" | ">" | ">="
    operand    := column | literal
    column     := NAME | `any text in backticks`
    literal    := 'string' | "string" | number | true | false

A bare column (``is_night``) must be boolean. Comparisons follow SQL: a null on either side makes
the comparison unknown, and rows whose filter is unknown are excluded (so ``not (x == 'a')``
does not select rows where ``x`` is null). Parsing happens when the spec is loaded
(:func:`parse`); column existence and types are checked against the table when it is evaluated
(:func:`evaluate`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from gates.errors import GateDataError, GateSpecError

_MAX_LENGTH = 10_000
_MAX_DEPTH = 64
_KEYWORDS = {"and", "or", "not", "in", "true", "false"}
_COMPARE = {"==": "equal", "!=": "not_equal", "<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal"}
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<quoted>`[^`]+`)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|!=|<=|>=|<|>)
      | (?P<punct>[()\[\],])
    """,
    re.VERBOSE,
)
_HINTS = {"=": "use '==' to compare", "&": "use 'and'", "|": "use 'or'", "!": "use 'not' or '!='"}

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Literal:
    value: Scalar


@dataclass(frozen=True)
class Compare:
    op: str
    left: Column | Literal
    right: Column | Literal


@dataclass(frozen=True)
class InList:
    operand: Column
    values: tuple[Scalar, ...]
    negate: bool


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Column | Compare | InList | BoolOp | Not


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str, gate_id: str | None) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            char = text[pos]
            hint = _HINTS.get(char, "")
            raise GateSpecError(
                f"unexpected character {char!r} at position {pos} in {text!r}" + (f" ({hint})" if hint else ""),
                gate_id=gate_id,
                field="where",
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            word = m.group()
            if kind == "name" and word.lower() in _KEYWORDS:
                kind, word = "kw", word.lower()
            out.append(_Tok(kind, word, pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text: str, gate_id: str | None) -> None:
        self.text = text
        self.gate_id = gate_id
        self.toks = _tokenize(text, gate_id)
        self.i = 0
        self.depth = 0

    def fail(self, what: str) -> GateSpecError:
        tok = self.toks[self.i]
        found = "end of expression" if tok.kind == "end" else repr(tok.text)
        return GateSpecError(
            f"{what}, found {found} at position {tok.pos} in {self.text!r}", gate_id=self.gate_id, field="where"
        )

    def peek(self, kind: str, text: str | None = None) -> bool:
        tok = self.toks[self.i]
        return tok.kind == kind and (text is None or tok.text == text)

    def take(self, kind: str, text: str | None = None) -> _Tok | None:
        if self.peek(kind, text):
            self.i += 1
            return self.toks[self.i - 1]
        return None

    def parse(self) -> Node:
        node = self.or_()
        if not self.peek("end"):
            raise self.fail("expected 'and', 'or' or the end")
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.take("kw", "or"):
            items.append(self.and_())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_(self) -> Node:
        items = [self.not_()]
        while self.take("kw", "and"):
            items.append(self.not_())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def not_(self) -> Node:
        if self.take("kw", "not"):
            return Not(self.not_())
        return self.atom()

    def atom(self) -> Node:
        if self.take("punct", "("):
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise self.fail(f"nesting deeper than {_MAX_DEPTH}")
            node = self.or_()
            if not self.take("punct", ")"):
                raise self.fail("expected ')'")
            self.depth -= 1
            return node
        left = self.operand()
        op = self.take("op")
        if op is not None:
            right = self.operand()
            if isinstance(left, Literal) and isinstance(right, Literal):
                raise GateSpecError(
                    f"comparison {op.text!r} between two literals in {self.text!r}: name a column",
                    gate_id=self.gate_id,
                    field="where",
                )
            return Compare(op.text, left, right)
        negate = self.peek("kw", "not") and self.toks[self.i + 1].kind == "kw" and self.toks[self.i + 1].text == "in"
        if negate:
            self.i += 1
        if self.take("kw", "in"):
            if not isinstance(left, Column):
                raise self.fail("'in' needs a column on its left")
            return InList(left, self.literal_list(), negate)
        if isinstance(left, Literal):
            raise self.fail("expected a comparison after a literal")
        return left

    def literal_list(self) -> tuple[Scalar, ...]:
        if not self.take("punct", "["):
            raise self.fail("expected '[' after 'in'")
        values = [self.literal()]
        while self.take("punct", ","):
            values.append(self.literal())
        if not self.take("punct", "]"):
            raise self.fail("expected ',' or ']'")
        return tuple(values)

    def operand(self) -> Column | Literal:
        if (tok := self.take("name")) is not None:
            return Column(tok.text)
        if (tok := self.take("quoted")) is not None:
            return Column(tok.text[1:-1])
        return Literal(self.literal())

    def literal(self) -> Scalar:
        if (tok := self.take("string")) is not None:
            return re.sub(r"\\(.)", r"\1", tok.text[1:-1])
        if (tok := self.take("number")) is not None:
            is_float = any(ch in tok.text for ch in ".eE")
            return float(tok.text) if is_float else int(tok.text)
        if self.take("kw", "true"):
            return True
        if self.take("kw", "false"):
            return False
        raise self.fail("expected a column name, a string, a number, true or false")


def parse(text: str, gate_id: str | None = None) -> Node:
    """Parse a ``where`` expression into an AST.

    Raises :class:`GateSpecError` (field ``where``) naming the position of a syntax error.
    """
    if not text.strip():
        raise GateSpecError("empty where expression", gate_id=gate_id, field="where")
    if len(text) > _MAX_LENGTH:
        raise GateSpecError(f"where expression longer than {_MAX_LENGTH} characters", gate_id=gate_id, field="where")
    return _Parser(text, gate_id).parse()


def columns(node: Node) -> set[str]:
    """Every column name the expression reads."""
    if isinstance(node, Column):
        return {node.name}
    if isinstance(node, Compare):
        return {x.name for x in (node.left, node.right) if isinstance(x, Column)}
    if isinstance(node, InList):
        return {node.operand.name}
    if isinstance(node, Not):
        return columns(node.item)
    return set().union(*(columns(item) for item in node.items))


def _category(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_temporal(t):
        return "temporal"
    return str(t)


def _literal_category(value: Scalar) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else "string"


class _Evaluator:
    def __init__(self, table: pa.Table, text: str, gate_id: str | None) -> None:
        self.table = table
        self.text = text
        self.gate_id = gate_id

    def error(self, message: str) -> GateDataError:
        return GateDataError(f"{message} (in {self.text!r})", gate_id=self.gate_id, field="where")

    def column(self, name: str) -> pa.ChunkedArray:
        if name not in self.table.column_names:
            raise self.error(f"column {name!r} is not in the table (columns: {', '.join(self.table.column_names)})")
        col = self.table.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        return col

    def operand(self, node: Column | Literal) -> tuple[pa.ChunkedArray | pa.Scalar, str]:
        if isinstance(node, Column):
            col = self.column(node.name)
            return col, _category(col.type)
        return pa.scalar(node.value), _literal_category(node.value)

    def coerce(self, value: pa.Scalar, kind: str, target: pa.DataType) -> pa.Scalar:
        """A string literal compared with a date/time column is parsed as that type."""
        if kind != "string":
            raise self.error(f"cannot compare {target} with {kind} {value.as_py()!r}")
        try:
            return pc.cast(value, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise self.error(f"cannot read {value.as_py()!r} as {target}") from exc

    def run(self, node: Node) -> pa.ChunkedArray | pa.Array:
        if isinstance(node, Column):
            col = self.column(node.name)
            if not pa.types.is_boolean(col.type):
                raise self.error(f"column {node.name!r} has type {col.type}; use it in a comparison")
            return col
        if isinstance(node, Not):
            return pc.invert(self.run(node.item))
        if isinstance(node, BoolOp):
            acc = self.run(node.items[0])
            combine = pc.and_kleene if node.op == "and" else pc.or_kleene
            for item in node.items[1:]:
                acc = combine(acc, self.run(item))
            return acc
        if isinstance(node, InList):
            col = self.column(node.operand.name)
            cat = _category(col.type)
            bad = [v for v in node.values if _literal_category(v) != cat and cat != "temporal"]
            if bad:
                raise self.error(f"column {node.operand.name!r} ({col.type}) compared with {bad[0]!r}")
            try:
                values = pa.array(list(node.values))
                if values.type != col.type:
                    values = pc.cast(values, col.type, safe=False)
                hit = pc.is_in(col, value_set=values, skip_nulls=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise self.error(f"cannot evaluate 'in' on column {node.operand.name!r} ({col.type}): {exc}") from exc
            # SQL semantics: a null never matches, and "not in" of a null is unknown, not true.
            hit = pc.if_else(pc.is_null(col), pa.scalar(None, pa.bool_()), hit)
            return pc.invert(hit) if node.negate else hit
        left, lcat = self.operand(node.left)
        right, rcat = self.operand(node.right)
        if isinstance(left, pa.Scalar) and rcat == "temporal":
            left, lcat = self.coerce(left, lcat, right.type), rcat
        if isinstance(right, pa.Scalar) and lcat == "temporal":
            right, rcat = self.coerce(right, rcat, left.type), lcat
        if lcat != rcat:
            raise self.error(f"cannot compare {lcat} with {rcat} using {node.op!r}")
        try:
            return getattr(pc, _COMPARE[node.op])(left, right)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise self.error(f"cannot evaluate {node.op!r}: {exc}") from exc


def evaluate(node: Node, table: pa.Table, *, text: str = "", gate_id: str | None = None) -> NDArray[np.bool_]:
    """Evaluate ``node`` on every row of ``table``; unknown (null) results are ``False``.

    Raises :class:`GateDataError` (field ``where``) for a missing column or mistyped comparison.
    """
    result = _Evaluator(table, text, gate_id).run(node)
    filled = pc.fill_null(result, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks() if filled.num_chunks != 1 else filled.chunk(0)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.bool_)
