"""The monitor spec (YAML) and the check it drives.

A spec says which window a check reads, how many rows it needs, when it runs, and how column
verdicts become a dataset verdict. Validation is strict: an unknown key or a bad value raises
:class:`SpecError` naming the key, so a typo (``drift_shar``) never silently falls back to a
default. ``digest`` is the sha256 of the text as written, stored with every check so a verdict
can be traced to the rules that produced it.

:func:`check` is pure: profiles in, verdicts out. The caller decides what "not enough rows"
means (``min_rows``) before calling it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml

from monitoring.drift import ALLOWED, METHODS, P_VALUE_METHODS, ColumnDrift, DriftError, column_drift
from monitoring.profile import Schema, TableProfile

SINCE_LAST_CHECK = "since last check"
_WINDOW = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_MAX_WINDOW = timedelta(days=366)
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,127}$")  # the registry's alias rule
_KEYS = {"version", "window", "min_rows", "schedule", "alias", "columns", "drift_share", "alert_on", "prediction"}
_RULE_KEYS = {"method", "threshold"}


class SpecError(ValueError):
    """An invalid monitor spec. ``key`` is the dotted path of the offending key (``columns.amount.method``)."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


@dataclass(frozen=True)
class ColumnRule:
    """A per-column override; None keeps Evidently's default for that part."""

    method: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class MonitorSpec:
    window: timedelta | None = timedelta(days=1)  # None: since the last check
    min_rows: int = 500
    schedule: str | None = None  # 5-field cron, UTC; None: checks run only on demand
    alias: str = "production"
    columns: dict[str, ColumnRule] = field(default_factory=dict)
    drift_share: float = 0.5
    alert_on: tuple[str, ...] = ()
    prediction: bool = True  # only matters when the baseline names a prediction column
    text: str = ""
    digest: str = hashlib.sha256(b"").hexdigest()


def parse_window(text: str) -> timedelta | None:
    """``30m``, ``1h``, ``6h``, ``1d``, ``7d``, ``2w`` (up to 366 days); ``since last check`` is None."""
    if " ".join(text.lower().split()) == SINCE_LAST_CHECK:
        return None
    match = _WINDOW.match(text.lower())
    if match is None:
        raise SpecError(f"{text!r} is not a window: use 30m, 1h, 1d, 7d ... or 'since last check'", key="window")
    window = int(match.group(1)) * _UNITS[match.group(2)]
    if not timedelta(0) < window <= _MAX_WINDOW:
        raise SpecError(f"{text!r} must be longer than zero and at most 366 days", key="window")
    return window


def check_cron(expression: str) -> str:
    """Validate a 5-field cron expression (UTC) with the scheduler that will run it."""
    from apscheduler.triggers.cron import CronTrigger  # the scheduler's own parser: same rules when it fires

    try:
        CronTrigger.from_crontab(expression, timezone="UTC")
    except ValueError as exc:
        raise SpecError(f"{expression!r} is not a 5-field cron expression: {exc}", key="schedule") from None
    return expression


def load_spec(text: str) -> MonitorSpec:
    """Parse and validate a monitor spec. Raises :class:`SpecError` naming the offending key."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML: {exc}") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, Mapping):
        raise SpecError("a monitor spec is a YAML mapping (window: 1d, ...)")
    unknown = sorted(str(k) for k in doc if k not in _KEYS)
    if unknown:
        raise SpecError(f"unknown key (known: {', '.join(sorted(_KEYS))})", key=unknown[0])
    if doc.get("version", 1) != 1 or isinstance(doc.get("version"), bool):
        raise SpecError("only version 1 exists", key="version")
    window = doc.get("window", "1d")
    if not isinstance(window, str):
        raise SpecError("a window is text such as 1h, 1d or 'since last check'", key="window")
    schedule = doc.get("schedule")
    if schedule is not None and not isinstance(schedule, str):
        raise SpecError("a schedule is a cron expression in quotes, such as '0 * * * *'", key="schedule")
    alias = doc.get("alias", "production")
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise SpecError(f"{alias!r} is not an alias name", key="alias")
    prediction = doc.get("prediction", True)
    if not isinstance(prediction, bool):
        raise SpecError("true or false", key="prediction")
    return MonitorSpec(
        window=parse_window(window),
        min_rows=_int(doc.get("min_rows", 500), "min_rows"),
        schedule=None if schedule is None else check_cron(schedule),
        alias=alias.lower(),
        columns=_rules(doc.get("columns", {})),
        drift_share=_share(doc.get("drift_share", 0.5)),
        alert_on=_names(doc.get("alert_on", []), "alert_on"),
        prediction=prediction,
        text=text,
        digest=hashlib.sha256(text.encode()).hexdigest(),
    )


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"a whole number of at least 1, not {value!r}", key=key)
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"a number, not {value!r}", key=key)
    return float(value)


def _share(value: Any) -> float:
    share = _number(value, "drift_share")
    if not 0 < share <= 1:
        raise SpecError(f"a share in (0, 1], not {value!r}", key="drift_share")
    return share


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SpecError("a list of column names", key=key)
    return tuple(value)


def _rules(value: Any) -> dict[str, ColumnRule]:
    if not isinstance(value, Mapping):
        raise SpecError("a mapping of column name to {method, threshold}", key="columns")
    rules: dict[str, ColumnRule] = {}
    for name, rule in value.items():
        key = f"columns.{name}"
        if not isinstance(rule, Mapping):
            raise SpecError("a mapping such as {method: psi, threshold: 0.2}", key=key)
        unknown = sorted(str(k) for k in rule if k not in _RULE_KEYS)
        if unknown:
            raise SpecError("unknown key (known: method, threshold)", key=f"{key}.{unknown[0]}")
        method = rule.get("method")
        if method is not None and method not in METHODS:
            raise SpecError(f"{method!r} is not a method (one of {', '.join(METHODS)})", key=f"{key}.method")
        threshold = rule.get("threshold")
        if threshold is not None:
            threshold = _number(threshold, f"{key}.threshold")
            if threshold <= 0 or (method in P_VALUE_METHODS and threshold >= 1):
                raise SpecError(f"{threshold!r} is out of range", key=f"{key}.threshold")
        rules[str(name)] = ColumnRule(method, threshold)
    return rules


def validate_for(spec: MonitorSpec, schema: Schema) -> None:
    """Check a spec against a baseline's schema: every named column exists and every method fits
    its column's kind. Raises :class:`SpecError` naming the key. :func:`check` itself tolerates
    names a version does not have, since one spec serves all versions of a model."""
    for name, rule in spec.columns.items():
        if name not in schema.columns:
            raise SpecError(f"no monitored column {name!r} in the baseline", key=f"columns.{name}")
        kind = schema.columns[name].value
        if rule.method is not None and rule.method not in ALLOWED[kind]:
            allowed = ", ".join(ALLOWED[kind])
            raise SpecError(f"{rule.method!r} does not apply to a {kind} column ({allowed})", key=f"columns.{name}")
    for name in spec.alert_on:
        if name not in schema.columns:
            raise SpecError(f"no monitored column {name!r} in the baseline", key="alert_on")


@dataclass(frozen=True)
class CheckResult:
    """Column verdicts and the dataset verdict. ``skipped`` lists columns without values on a side."""

    rows: int
    reference_rows: int
    columns: list[ColumnDrift]
    drift_detected: bool
    drifted: list[str]
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "reference_rows": self.reference_rows,
            "drift_detected": self.drift_detected,
            "drifted": list(self.drifted),
            "skipped": list(self.skipped),
            "columns": [c.to_dict() for c in self.columns],
        }


def monitored(schema: Schema, spec: MonitorSpec) -> list[str]:
    """The columns a check tests: the schema's, less the prediction when the spec turns it off."""
    return [c for c in schema.columns if spec.prediction or c != schema.prediction]


def check(reference: TableProfile, current: TableProfile, schema: Schema, spec: MonitorSpec) -> CheckResult:
    """Test every monitored column and decide the dataset verdict.

    Drift is detected when the share of drifted columns reaches ``drift_share`` (Evidently's rule:
    share >= drift_share) or when any ``alert_on`` column drifts. A column without values on one
    side is skipped (listed, not tested). Raises :class:`SpecError` when a column rule's method
    does not fit the column's kind.
    """
    results: list[ColumnDrift] = []
    skipped: list[str] = []
    for name in monitored(schema, spec):
        ref, cur = reference.columns[name], current.columns[name]
        if ref.count == 0 or cur.count == 0:
            skipped.append(name)
            continue
        rule = spec.columns.get(name, ColumnRule())
        try:
            results.append(column_drift(name, ref, cur, method=rule.method, threshold=rule.threshold))
        except DriftError as exc:
            raise SpecError(str(exc), key=f"columns.{name}") from None
    drifted = [r.column for r in results if r.drifted]
    share = len(drifted) / len(results) if results else 0.0
    detected = bool(results) and (share >= spec.drift_share or any(c in spec.alert_on for c in drifted))
    return CheckResult(current.rows, reference.rows, results, detected, drifted, skipped)
