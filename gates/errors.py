"""The gates error hierarchy: every expected failure of a spec or an input table.

The engine never lets a bare numpy/pyarrow/yaml traceback escape for a problem the user can fix:
it raises a :class:`GateError` whose message names the gate (when there is one) and the field.
The registry maps ``GateSpecError`` and ``GateDataError`` to its own ``InvalidInput`` kind and the
CLI to exit code 2; this package imports nothing of the registry, so the mapping lives there.
"""

from __future__ import annotations


class GateError(Exception):
    """Root of every expected gates failure.

    ``gate_id`` is the offending gate (``None`` for spec- or table-wide problems) and ``field`` the
    spec key or table column at fault (``None`` when no single field is). ``message`` is the bare
    explanation; ``str(error)`` prefixes it with the gate and field so a log line is self-contained.
    """

    def __init__(self, message: str, *, gate_id: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.gate_id = gate_id
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where: list[str] = []
        if self.gate_id is not None:
            where.append(f"gate {self.gate_id!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class GateSpecError(GateError):
    """The gate specification is invalid: bad YAML, unknown or missing keys, wrong types or values,
    or a ``where`` expression that does not parse."""


class GateDataError(GateError):
    """The input table cannot be evaluated against the spec: unreadable file, empty table, missing
    or mistyped column, duplicate or unmatched ids, null outcomes."""
