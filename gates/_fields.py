"""Strict, typed reading of one mapping of a YAML spec, with errors that name gate and field.

A :class:`Fields` wraps one mapping (the top level, ``defaults``, or one gate); each accessor
pops a key, checks its type and range, and :meth:`Fields.finish` rejects whatever is left, with a
did-you-mean suggestion, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from gates.errors import GateSpecError

T = TypeVar("T", bound=str)


class Fields:
    """Accessors over a copy of ``data``; ``prefix`` is prepended to field names in errors."""

    def __init__(self, data: Mapping[str, Any], *, gate_id: str | None = None, prefix: str = "") -> None:
        self.data = dict(data)
        self.gate_id = gate_id
        self.prefix = prefix
        self.known: set[str] = set()

    def error(self, key: str, message: str) -> GateSpecError:
        return GateSpecError(message, gate_id=self.gate_id, field=self.prefix + key)

    def raw(self, key: str) -> Any:
        """Pop ``key`` unchecked (``None`` when absent); the caller validates it."""
        self.known.add(key)
        return self.data.pop(key, None)

    def has(self, key: str) -> bool:
        return key in self.data

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value

    def text(self, key: str, default: str) -> str:
        """Like :meth:`string` with a default, so never ``None``."""
        value = self.string(key, default)
        return default if value is None else value

    def required_string(self, key: str) -> str:
        value = self.string(key, required=True)
        assert value is not None  # required=True raised otherwise
        return value

    def choice(self, key: str, options: Sequence[T], default: T) -> T:
        value = self.raw(key)
        if value is None:
            return default
        for option in options:
            if value == option:
                return option
        raise self.error(key, f"must be one of {', '.join(map(repr, options))}, got {value!r}")

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        required: bool = False,
        low: float | None = None,
        high: float | None = None,
        open_low: bool = True,
        open_high: bool = True,
    ) -> float | None:
        """A finite real in the given range (open or closed ends)."""
        value = self.raw(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(key, f"must be a number, got {value!r}")
        value = float(value)
        below = low is not None and (value <= low if open_low else value < low)
        above = high is not None and (value >= high if open_high else value > high)
        if below or above:
            lo = "" if low is None else ("(" if open_low else "[") + f"{low:g}"
            hi = "" if high is None else f"{high:g}" + (")" if open_high else "]")
            raise self.error(key, f"must be in {lo or '(-inf'}, {hi or 'inf)'}, got {value:g}")
        return value

    def real(self, key: str, default: float, **bounds: Any) -> float:
        """Like :meth:`number` with a default, so never ``None``."""
        value = self.number(key, default, **bounds)
        return default if value is None else value

    def count(self, key: str, default: int, *, low: int = 0, high: int | None = None) -> int:
        """Like :meth:`integer` with a default, so never ``None``."""
        value = self.integer(key, default, low=low, high=high)
        return default if value is None else value

    def required_number(self, key: str, **bounds: Any) -> float:
        value = self.number(key, required=True, **bounds)
        assert value is not None  # required=True raised otherwise
        return value

    def integer(self, key: str, default: int | None = None, *, low: int = 0, high: int | None = None) -> int | None:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            raise self.error(key, f"must be between {low} and {high if high is not None else 'inf'}, got {value}")
        return value

    def string_list(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, f"must be a list of column names, got {value!r}")
        if len(set(value)) != len(value):
            raise self.error(key, f"lists a column twice: {value!r}")
        return tuple(value)

    def scalar(self, key: str) -> str | int | float | bool | None:
        value = self.raw(key)
        if value is not None and not isinstance(value, str | int | float | bool):
            raise self.error(key, f"must be a string, number or boolean, got {value!r}")
        return value

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a mapping, got {type(value).__name__}")
        return value

    def forbid(self, *keys: str, reason: str) -> None:
        """Reject keys that exist for other kinds or methods, saying why."""
        for key in keys:
            if key in self.data:
                raise self.error(key, f"is not allowed here: {reason}")

    def finish(self) -> None:
        """Raise for the first key no accessor consumed, suggesting the closest known key."""
        for key in self.data:
            close = difflib.get_close_matches(str(key), sorted(self.known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = ", ".join(sorted(self.known))
            raise self.error(str(key), f"unknown key{hint}; allowed here: {allowed}")
