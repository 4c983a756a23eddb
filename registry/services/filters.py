"""MLflow's search filter and ``order_by`` grammar: a tokenizer and a recursive-descent parser (no SQL here).

Grammar (keywords are case-insensitive)::

    filter     := [ comparison ( AND comparison )* ]
    comparison := field ( cmp value | LIKE string | ILIKE string | [NOT] IN list | IS [NOT] NULL )
    cmp        := = | != | < | <= | > | >=
    value      := string | number
    list       := ( string ( , string )* )
    field      := [ entity . ] key        pieces written without spaces between them
    order_item := field [ ASC | DESC ]

* A field is ``entity.key`` or a bare attribute name. The key is one bare word (letters, digits,
  ``_ . - / :``) or one ```back-quoted``` / ``"double-quoted"`` piece written right after the dot:
  ``params.lr``, ``tags.mlflow.runName`` (key ``mlflow.runName``), ``tags.`a.b` ``, ``metrics."my key"``,
  ``"run name"``. The entity is the text before the first dot (``metrics``/``metric``, ``params``/``param``/
  ``parameters``/``parameter``, ``tags``/``tag``, ``attributes``/``attribute``/``attr``/``run``).
* Strings are single- or double-quoted. ``\\'`` / ``\\"`` (or a doubled quote) is a quote and ``\\\\`` a backslash;
  any other backslash is kept, so LIKE escapes such as ``'a\\_%'`` reach the pattern unchanged (in LIKE
  patterns a backslash escapes the next character, as PostgreSQL does).
* Numbers: ``3``, ``-2``, ``0.5``, ``.5``, ``1e-3``. Integer literals stay ``int``.
* ``OR`` and parentheses are refused, as MLflow does. Operators are checked per field kind (see ``Schema``);
  model and version tags also take ``IS NULL``/``IS NOT NULL``, a superset of MLflow.

Every malformed input raises :class:`~registry.errors.InvalidInput` naming the problem and the column
(1-based) where it was found; nothing else escapes :func:`parse_filter` or :func:`parse_order_by`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum

from registry.errors import InvalidInput

MAX_FILTER_LENGTH = 100_000
_MAX_NUMBER_LENGTH = 64
_WORD_CHARS = frozenset("_.-/:")
_ESCAPE = "\\"
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "ASC", "DESC"})


class Kind(StrEnum):
    METRIC = "metric"
    PARAM = "param"
    TAG = "tag"
    ATTRIBUTE = "attribute"


class Op(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    LIKE = "LIKE"
    ILIKE = "ILIKE"
    IN = "IN"
    NOT_IN = "NOT IN"
    IS_NULL = "IS NULL"
    IS_NOT_NULL = "IS NOT NULL"


NUMERIC_OPS = frozenset({Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE})
STRING_OPS = frozenset({Op.EQ, Op.NE, Op.LIKE, Op.ILIKE, Op.IN, Op.NOT_IN})
KEYED_OPS = frozenset({Op.EQ, Op.NE, Op.LIKE, Op.ILIKE, Op.IS_NULL, Op.IS_NOT_NULL})
_CMP_OPS = {"=": Op.EQ, "!=": Op.NE, "<": Op.LT, "<=": Op.LE, ">": Op.GT, ">=": Op.GE}

Value = str | int | float | tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Field:
    """What a condition or ordering is about. Attribute keys are canonical (``created`` → ``start_time``)."""

    kind: Kind
    key: str


@dataclass(frozen=True, slots=True)
class Comparison:
    field: Field
    op: Op
    value: Value
    """``str`` for string operators, ``int | float`` for numeric ones, a tuple for IN, None for IS [NOT] NULL."""
    column: int
    """1-based column of the field in the filter string."""


@dataclass(frozen=True, slots=True)
class OrderBy:
    field: Field
    ascending: bool = True


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    numeric: bool = False
    integer: bool = False
    """Numeric attributes that only take integer literals (version numbers)."""


@dataclass(frozen=True, slots=True)
class Schema:
    """What one search accepts: entity prefixes, attribute names (aliases included) and operators per kind."""

    name: str
    prefixes: Mapping[str, Kind]
    attributes: Mapping[str, Attribute]
    orderable: Mapping[str, Attribute]
    ops: Mapping[Kind, frozenset[Op]]
    orderable_kinds: frozenset[Kind] = frozenset({Kind.ATTRIBUTE})


def _attrs(*items: tuple[Sequence[str], Attribute]) -> dict[str, Attribute]:
    return {alias: attribute for aliases, attribute in items for alias in aliases}


_RUN_ATTRIBUTES = _attrs(
    (("run_id",), Attribute("run_id")),
    (("run_name", "run name"), Attribute("run_name")),
    (("status",), Attribute("status")),
    (("user_id",), Attribute("user_id")),
    (("artifact_uri",), Attribute("artifact_uri")),
    (("start_time", "created"), Attribute("start_time", numeric=True)),
    (("end_time",), Attribute("end_time", numeric=True)),
)
_ATTRIBUTE_PREFIXES = {p: Kind.ATTRIBUTE for p in ("attributes", "attribute", "attr", "run")}
_TAG_PREFIXES = {"tags": Kind.TAG, "tag": Kind.TAG}

RUNS = Schema(
    name="runs",
    prefixes={
        **{p: Kind.METRIC for p in ("metrics", "metric")},
        **{p: Kind.PARAM for p in ("params", "param", "parameters", "parameter")},
        **_TAG_PREFIXES,
        **_ATTRIBUTE_PREFIXES,
    },
    attributes=_RUN_ATTRIBUTES,
    orderable=_RUN_ATTRIBUTES,
    ops={Kind.METRIC: NUMERIC_OPS, Kind.PARAM: KEYED_OPS, Kind.TAG: KEYED_OPS},
    orderable_kinds=frozenset(Kind),
)
_TIMESTAMPS = _attrs(
    (("creation_timestamp", "timestamp"), Attribute("creation_timestamp", numeric=True)),
    (("last_updated_timestamp",), Attribute("last_updated_timestamp", numeric=True)),
)
MODELS = Schema(
    name="registered models",
    prefixes={**_TAG_PREFIXES, **_ATTRIBUTE_PREFIXES},
    attributes=_attrs((("name",), Attribute("name"))),
    orderable={**_attrs((("name",), Attribute("name"))), **_TIMESTAMPS},
    ops={Kind.TAG: KEYED_OPS},
)
_VERSION_NUMBER = Attribute("version_number", numeric=True, integer=True)
VERSIONS = Schema(
    name="model versions",
    prefixes={**_TAG_PREFIXES, **_ATTRIBUTE_PREFIXES},
    attributes=_attrs(
        (("name",), Attribute("name")),
        (("run_id",), Attribute("run_id")),
        (("source_path",), Attribute("source_path")),
        (("version_number",), _VERSION_NUMBER),
    ),
    orderable={**_attrs((("name",), Attribute("name")), (("version_number",), _VERSION_NUMBER)), **_TIMESTAMPS},
    ops={Kind.TAG: KEYED_OPS},
)


# ---------------------------------------------------------------------------------------------- tokens


class Tok(Enum):
    WORD = "word"
    STRING = "string"
    NUMBER = "number"
    OP = "operator"
    LPAREN = "'('"
    RPAREN = "')'"
    COMMA = "','"
    END = "end of input"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Tok
    text: str
    """Source text exactly as written."""
    value: str
    """Decoded text: quotes removed and escapes resolved for strings; the same as ``text`` otherwise."""
    column: int
    glued: bool
    """No whitespace between this token and the previous one (field pieces must be glued)."""
    quote: str = ""


def _fail(message: str, column: int, what: str) -> InvalidInput:
    return InvalidInput(f"invalid {what}: {message} at column {column}", field=what, column=column)


def _is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"  # str.isdigit() accepts '²', which int() rejects


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch in _WORD_CHARS


def tokenize(text: str, *, what: str = "filter") -> list[Token]:
    """Split ``text`` into tokens; the last one is always ``END``."""
    tokens: list[Token] = []
    i, n, glued = 0, len(text), False
    while i < n:
        ch = text[i]
        if ch.isspace():
            i, glued = i + 1, False
            continue
        start = i
        if ch in "'\"`":
            value, i = _read_quoted(text, i, what)
            tokens.append(Token(Tok.STRING, text[start:i], value, start + 1, glued, quote=ch))
        elif ch == "." and glued and tokens[-1].kind is Tok.STRING:  # the '.x' of `tags`.x
            i += 1
            while i < n and _is_word_char(text[i]):
                i += 1
            tokens.append(Token(Tok.WORD, text[start:i], text[start:i], start + 1, glued))
        elif _is_digit(ch) or (ch in "+-." and _starts_number(text, i)):
            i = _read_number(text, i, what)
            tokens.append(Token(Tok.NUMBER, text[start:i], text[start:i], start + 1, glued))
        elif ch.isalpha() or ch == "_":
            while i < n and _is_word_char(text[i]):
                i += 1
            tokens.append(Token(Tok.WORD, text[start:i], text[start:i], start + 1, glued))
        elif ch in "=!<>":
            op = text[i : i + 2] if text[i : i + 2] in ("!=", "<=", ">=", "<>", "==") else ch
            if op in ("<>", "=="):
                raise _fail(f"operator {op!r} is not supported (use {'!=' if op == '<>' else '='!r})", start + 1, what)
            if op == "!":
                raise _fail("'!' must be followed by '=' ('!=')", start + 1, what)
            i += len(op)
            tokens.append(Token(Tok.OP, op, op, start + 1, glued))
        elif ch in "(),":
            kind = {"(": Tok.LPAREN, ")": Tok.RPAREN, ",": Tok.COMMA}[ch]
            i += 1
            tokens.append(Token(kind, ch, ch, start + 1, glued))
        else:
            raise _fail(f"unexpected character {ch!r}", start + 1, what)
        glued = True
    tokens.append(Token(Tok.END, "", "", n + 1, False))
    return tokens


def _read_quoted(text: str, start: int, what: str) -> tuple[str, int]:
    """Read the quoted token at ``start``; return its decoded value and the index after the closing quote."""
    quote, out, i, n = text[start], [], start + 1, len(text)
    while i < n:
        ch = text[i]
        if ch == quote:
            if i + 1 < n and text[i + 1] == quote:  # a doubled quote stands for one (SQL style)
                out.append(quote)
                i += 2
                continue
            return "".join(out), i + 1
        if ch == _ESCAPE and quote != "`" and i + 1 < n and text[i + 1] in (quote, _ESCAPE):
            out.append(text[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    kind = "back-quoted name" if quote == "`" else "string"
    raise _fail(f"unterminated {kind}: no closing {quote} found", start + 1, what)


def _starts_number(text: str, i: int) -> bool:
    j = i + 1 if text[i] in "+-" else i
    if j < len(text) and _is_digit(text[j]):
        return True
    return j + 1 < len(text) and text[j] == "." and _is_digit(text[j + 1])


def _read_number(text: str, start: int, what: str) -> int:
    i, n = start, len(text)
    if text[i] in "+-":
        i += 1
    while i < n and _is_digit(text[i]):
        i += 1
    if i < n and text[i] == ".":
        i += 1
        while i < n and _is_digit(text[i]):
            i += 1
    if i < n and text[i] in "eE":
        j = i + 1
        if j < n and text[j] in "+-":
            j += 1
        if not (j < n and _is_digit(text[j])):
            raise _fail(f"malformed number {text[start : j + 1]!r} (exponent needs digits)", start + 1, what)
        i = j
        while i < n and _is_digit(text[i]):
            i += 1
    if i < n and (_is_word_char(text[i]) or text[i] in "'\"`"):
        raise _fail(f"malformed number {text[start : i + 1]!r}", start + 1, what)
    if i - start > _MAX_NUMBER_LENGTH:
        raise _fail(f"number longer than {_MAX_NUMBER_LENGTH} characters", start + 1, what)
    return i


def _number(token: Token) -> int | float:
    text = token.text
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


# ---------------------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str, schema: Schema, what: str) -> None:
        if len(text) > MAX_FILTER_LENGTH:
            raise InvalidInput(f"invalid {what}: longer than {MAX_FILTER_LENGTH} characters", field=what)
        if "\x00" in text:
            raise _fail("NUL character", text.index("\x00") + 1, what)
        try:
            text.encode()
        except UnicodeEncodeError as error:  # a lone surrogate: no database could store or compare it
            raise _fail("text is not valid Unicode", error.start + 1, what) from None
        self.schema = schema
        self.what = what
        self.tokens = tokenize(text, what=what)
        self.i = 0

    # -- token helpers
    def peek(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        if token.kind is not Tok.END:
            self.i += 1
        return token

    def is_keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind is Tok.WORD and token.value.upper() == word

    def fail(self, message: str, token: Token | None = None) -> InvalidInput:
        return _fail(message, (token or self.peek()).column, self.what)

    def found(self, token: Token) -> str:
        return "end of input" if token.kind is Tok.END else repr(token.text)

    # -- grammar
    def filter(self) -> list[Comparison]:
        if self.peek().kind is Tok.END:
            return []
        comparisons = [self.comparison()]
        while self.is_keyword("AND"):
            self.advance()
            comparisons.append(self.comparison())
        token = self.peek()
        if token.kind is not Tok.END:
            if self.is_keyword("OR"):
                raise self.fail("OR is not supported: combine conditions with AND")
            raise self.fail(f"expected AND or end of input, found {self.found(token)}")
        return comparisons

    def order_item(self) -> OrderBy:
        field = self.field(orderable=True)
        ascending = True
        if self.is_keyword("ASC") or self.is_keyword("DESC"):
            ascending = self.advance().value.upper() == "ASC"
        token = self.peek()
        if token.kind is not Tok.END:
            raise self.fail(f"expected ASC, DESC or end of input, found {self.found(token)}")
        return OrderBy(field=field, ascending=ascending)

    def comparison(self) -> Comparison:
        start = self.peek()
        if start.kind is Tok.LPAREN:
            raise self.fail("parentheses are not supported: write 'a = 1 AND b = 2' without grouping")
        field = self.field(orderable=False)
        op = self.operator(field)
        allowed = self.allowed_ops(field)
        if op not in allowed:
            names = ", ".join(sorted(o.value for o in allowed))
            raise self.fail(f"operator {op.value} is not supported for {self.describe(field)} (use {names})", start)
        value = self.value(field, op)
        return Comparison(field=field, op=op, value=value, column=start.column)

    def field(self, *, orderable: bool) -> Field:
        first = self.advance()
        if first.kind is Tok.END:
            raise self.fail("expected a field name, found end of input", first)
        if not (first.kind is Tok.WORD or (first.kind is Tok.STRING and first.quote in '`"')):
            raise self.fail(f"expected a field name (e.g. metrics.loss), found {self.found(first)}", first)
        if first.kind is Tok.WORD and first.value.upper() in _KEYWORDS:
            raise self.fail(f"expected a field name, found keyword {first.text}", first)
        pieces = [first]
        while self.peek().glued and (
            self.peek().kind is Tok.WORD or (self.peek().kind is Tok.STRING and self.peek().quote in '`"')
        ):
            pieces.append(self.advance())
        entity, key = self.split(pieces)
        if entity is None:
            return self.attribute(key, first, orderable=orderable)
        kind = self.schema.prefixes.get(entity.lower())
        if kind is None:
            valid = ", ".join(sorted(self.schema.prefixes))
            raise self.fail(f"unknown entity {entity!r} in {self.schema.name} search (use {valid})", first)
        if kind is Kind.ATTRIBUTE:
            return self.attribute(key, first, orderable=orderable)
        if orderable and kind not in self.schema.orderable_kinds:
            raise self.fail(f"cannot order {self.schema.name} by {entity}.{key}", first)
        return Field(kind=kind, key=key)

    def split(self, pieces: list[Token]) -> tuple[str | None, str]:
        """``tags.`a.b``` → (tags, a.b); ``name`` → (None, name); ```tags`.x`` → (tags, x)."""
        first, rest = pieces[0], pieces[1:]
        if first.kind is Tok.WORD and "." in first.value:
            entity, head = first.value.split(".", 1)
        elif not rest:
            return None, first.value
        elif rest[0].kind is Tok.WORD and rest[0].value.startswith("."):
            entity, head, rest = first.value, rest[0].value[1:], rest[1:]
        else:
            raise self.fail(f"expected '.' between {first.text} and {rest[0].text}", rest[0])
        if not entity:
            raise self.fail("missing entity before '.'", first)
        # The key is one bare word or one quoted piece: tags.a"b" is a typo, not the key 'ab'.
        if (head and rest) or len(rest) > 1:
            raise self.fail(f"unexpected {rest[-1].text} in field name", rest[-1])
        key = head or (rest[0].value if rest else "")
        if not key:
            raise self.fail(f"missing key after '{entity}.'", first)
        return entity, key

    def attribute(self, key: str, token: Token, *, orderable: bool) -> Field:
        table = self.schema.orderable if orderable else self.schema.attributes
        attribute = table.get(key.lower())
        if attribute is None:
            valid = ", ".join(sorted({a.name for a in table.values()}))
            doing = "order" if orderable else "filter"
            raise self.fail(f"cannot {doing} {self.schema.name} by {key!r} (attributes: {valid})", token)
        return Field(kind=Kind.ATTRIBUTE, key=attribute.name)

    def operator(self, field: Field) -> Op:
        token = self.advance()
        if token.kind is Tok.OP:
            return _CMP_OPS[token.value]
        word = token.value.upper() if token.kind is Tok.WORD else ""
        if word in ("LIKE", "ILIKE", "IN"):
            return Op(word)
        if word == "NOT":
            if not self.is_keyword("IN"):
                raise self.fail(f"expected IN after NOT, found {self.found(self.peek())}")
            self.advance()
            return Op.NOT_IN
        if word == "IS":
            negate = self.is_keyword("NOT")
            if negate:
                self.advance()
            if not self.is_keyword("NULL"):
                raise self.fail(f"expected NULL after {token.text}{' NOT' if negate else ''}")
            self.advance()
            return Op.IS_NOT_NULL if negate else Op.IS_NULL
        raise self.fail(f"expected an operator after {self.describe(field)}, found {self.found(token)}", token)

    def allowed_ops(self, field: Field) -> frozenset[Op]:
        if field.kind is Kind.ATTRIBUTE:
            return NUMERIC_OPS if self.schema.attributes[field.key].numeric else STRING_OPS
        return self.schema.ops[field.kind]

    def describe(self, field: Field) -> str:
        return field.key if field.kind is Kind.ATTRIBUTE else f"{field.kind.value} {field.key!r}"

    def value(self, field: Field, op: Op) -> Value:
        if op in (Op.IS_NULL, Op.IS_NOT_NULL):
            return None
        if op in (Op.IN, Op.NOT_IN):
            return self.string_list(field)
        token = self.advance()
        numeric = field.kind is Kind.METRIC or (
            field.kind is Kind.ATTRIBUTE and self.schema.attributes[field.key].numeric
        )
        if numeric:
            if token.kind is not Tok.NUMBER:
                raise self.fail(f"{self.describe(field)} compares with a number, found {self.found(token)}", token)
            number = _number(token)
            if field.kind is Kind.ATTRIBUTE and self.schema.attributes[field.key].integer and isinstance(number, float):
                raise self.fail(f"{field.key} compares with an integer, found {token.text!r}", token)
            return number
        if token.kind is not Tok.STRING or token.quote == "`":
            raise self.fail(
                f"{self.describe(field)} compares with a quoted string (e.g. 'value'), found {self.found(token)}", token
            )
        if op in (Op.LIKE, Op.ILIKE):
            trailing = len(token.value) - len(token.value.rstrip(_ESCAPE))
            if trailing % 2:
                raise self.fail(f"{op.value} pattern ends with an unescaped backslash", token)
        return token.value

    def string_list(self, field: Field) -> tuple[str, ...]:
        opening = self.advance()
        if opening.kind is not Tok.LPAREN:
            raise self.fail(f"expected a parenthesised list like ('a', 'b'), found {self.found(opening)}", opening)
        items: list[str] = []
        while True:
            token = self.advance()
            if token.kind is not Tok.STRING or token.quote == "`":
                raise self.fail(f"expected a quoted string in the list, found {self.found(token)}", token)
            items.append(token.value)
            separator = self.advance()
            if separator.kind is Tok.RPAREN:
                return tuple(items)
            if separator.kind is not Tok.COMMA:
                raise self.fail(f"expected ',' or ')' in the list, found {self.found(separator)}", separator)


def parse_filter(text: str | None, schema: Schema) -> list[Comparison]:
    """Parse a filter for ``schema`` (:data:`RUNS`, :data:`MODELS`, :data:`VERSIONS`); empty → no conditions.

    Raises InvalidInput for any malformed filter, with the column of the problem.
    """
    return _Parser(text or "", schema, "filter").filter()


def parse_order_by(items: Sequence[str] | None, schema: Schema) -> list[OrderBy]:
    """Parse ``order_by`` items (``<field> [ASC|DESC]``). Raises InvalidInput for a malformed item."""
    result: list[OrderBy] = []
    for item in items or []:
        if not isinstance(item, str) or not item.strip():
            raise InvalidInput(f"invalid order_by: empty or non-text item {item!r}", field="order_by")
        result.append(_Parser(item, schema, "order_by").order_item())
    return result
