"""The gate specification: typed, validated, digested.

:func:`load_spec` accepts YAML text, a path to a YAML/JSON file, or an already-parsed mapping and
returns an immutable :class:`GateSpec`. Validation is strict (unknown keys, wrong types, values
out of range and unparsable ``where`` expressions all raise :class:`GateSpecError` naming the
gate and field) so a typo never silently changes a decision. ``GateSpec.digest`` is the sha256 of
the canonical JSON of the spec *as written* (sorted keys, no whitespace), recorded in every
report so a verdict can be tied to the exact rules that produced it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gates import expr
from gates._fields import Fields
from gates.errors import GateSpecError
from gates.stats.binomial import Method
from gates.stats.bootstrap import CiMethod
from gates.stats.multiplicity import Adjustment
from gates.stats.paired import PairedMethod
from gates.stats.sequential import Boundaries

Direction = Literal[">=", "<="]
OnInconclusive = Literal["fail", "pass", "warn"]
OnError = Literal["count_as_failure", "exclude"]
Metric = Literal["accuracy", "f1_macro", "precision_macro", "recall_macro", "auc", "rmse", "mae"]
METRICS: tuple[Metric, ...] = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "auc", "rmse", "mae")
KINDS = ("proportion", "failure_budget", "paired_noninferiority", "bootstrap_threshold", "sequential")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


@dataclass(frozen=True, kw_only=True)
class Defaults:
    """Spec-wide defaults every gate may override."""

    alpha: float = 0.05
    power: float = 0.8
    seed: int = 7
    on_inconclusive: OnInconclusive = "fail"
    on_error: OnError = "count_as_failure"
    fail_side_multiplicity: Adjustment = "holm"


@dataclass(frozen=True, kw_only=True)
class Gate:
    """Fields common to every kind. ``alpha`` is the per-gate level *before* any adaptivity
    division; ``where_ast`` is the parsed ``where``."""

    id: str
    kind: str
    description: str | None = None
    where: str | None = None
    where_ast: expr.Node | None = field(default=None, compare=False, repr=False)
    slice_by: tuple[str, ...] = ()
    min_n: int = 1
    alpha: float
    power: float
    seed: int
    on_inconclusive: OnInconclusive
    on_error: OnError
    fail_side_multiplicity: Adjustment


@dataclass(frozen=True, kw_only=True)
class ProportionGate(Gate):
    """Per-example 0/1 ``outcome`` rate compared with ``threshold`` in ``direction``."""

    outcome: str = "correct"
    threshold: float
    direction: Direction = ">="
    method: Method = "clopper_pearson"


@dataclass(frozen=True, kw_only=True)
class FailureBudgetGate(Gate):
    """Rate of rows whose ``outcome`` is false must be at most ``max_failure_rate``."""

    outcome: str = "passed"
    max_failure_rate: float
    method: Method = "clopper_pearson"


@dataclass(frozen=True, kw_only=True)
class PairedGate(Gate):
    """Candidate minus baseline accuracy on the same ids must exceed ``-margin``."""

    outcome: str = "correct"
    baseline: str = "@champion"
    margin: float
    method: PairedMethod = "tango"
    unmatched: Literal["error", "drop"] = "error"


@dataclass(frozen=True, kw_only=True)
class BootstrapGate(Gate):
    """A metric without a closed-form interval compared with ``threshold`` by a BCa bootstrap."""

    metric: Metric
    threshold: float
    direction: Direction
    n_resamples: int = 5000
    ci_method: CiMethod = "bca"
    positive_label: str | int | float | bool | None = None


@dataclass(frozen=True, kw_only=True)
class SequentialGate(Gate):
    """SPRT (``p0``/``p1``/``beta``) or confidence sequence (``threshold``) along arrival order."""

    method: Literal["sprt", "confidence_sequence"] = "sprt"
    outcome: str = "correct"
    p0: float | None = None
    p1: float | None = None
    beta: float = 0.1
    boundaries: Boundaries = "wald"
    threshold: float | None = None
    max_n: int | None = None
    order_by: str | None = None


AnyGate = ProportionGate | FailureBudgetGate | PairedGate | BootstrapGate | SequentialGate


@dataclass(frozen=True)
class GateSpec:
    """A validated gate specification (see docs/gates.md for every key)."""

    version: int
    name: str | None
    defaults: Defaults
    gates: tuple[AnyGate, ...]
    reveal_budget: int | None
    adaptivity: Literal["none", "full"]
    digest: str
    source: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def needs_baseline(self) -> bool:
        """True when any gate compares with a baseline table."""
        return any(isinstance(g, PairedGate) for g in self.gates)


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last silently."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise GateSpecError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}", field=str(key))
        seen.add(key)
    return dict(loader.construct_mapping(node))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_source(text_or_path: str | os.PathLike[str] | Mapping[str, Any]) -> Any:
    if isinstance(text_or_path, Mapping):
        return text_or_path
    if isinstance(text_or_path, os.PathLike) or (
        "\n" not in text_or_path and text_or_path.strip().lower().endswith((".yml", ".yaml", ".json"))
    ):
        path = Path(text_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise GateSpecError(f"cannot read spec file {str(path)!r}: {exc.strerror or exc}") from exc
    else:
        text = text_or_path
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise GateSpecError(f"invalid YAML{where}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise GateSpecError(f"invalid YAML: {exc}") from exc


def canonical_digest(source: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON form (sorted keys, compact separators, UTF-8)."""
    try:
        text = json.dumps(source, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise GateSpecError(f"spec holds a value JSON cannot represent (quote dates and times): {exc}") from exc
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_spec(text_or_path: str | os.PathLike[str] | Mapping[str, Any]) -> GateSpec:
    """Parse and validate a gate spec from YAML text, a file path or a mapping.

    A ``str`` is read as a path when it has no newline and ends in .yml/.yaml/.json, otherwise
    as YAML text. Raises :class:`GateSpecError` for any problem, naming the gate and field.
    """
    source = _read_source(text_or_path)
    if not isinstance(source, Mapping):
        hint = ""
        if isinstance(text_or_path, str) and "\n" not in text_or_path.strip():
            hint = " (a file path must end in .yml, .yaml or .json, or be passed as a pathlib.Path)"
        raise GateSpecError(f"a spec must be a mapping with 'version' and 'gates', got {type(source).__name__}{hint}")
    digest = canonical_digest(source)
    top = Fields(source)
    version = top.integer("version", low=1)
    if version is None:
        raise top.error("version", "is required (use version: 1)")
    if version != 1:
        raise top.error("version", f"unsupported version {version}; this engine reads version 1")
    name = top.string("name")
    top.string("description")
    defaults = _defaults(Fields(top.mapping("defaults"), prefix="defaults."))
    reveal_budget = top.integer("reveal_budget", low=1)
    adaptivity: Literal["none", "full"] = top.choice("adaptivity", ("none", "full"), "none")
    if adaptivity == "full" and reveal_budget is None:
        raise top.error("adaptivity", "'full' divides alpha by 2**reveal_budget, so reveal_budget is required")
    raw_gates = top.raw("gates")
    top.finish()
    if not isinstance(raw_gates, list) or not raw_gates:
        raise GateSpecError("must be a non-empty list of gates", field="gates")
    gates: list[AnyGate] = []
    for i, raw in enumerate(raw_gates):
        if not isinstance(raw, Mapping):
            raise GateSpecError(f"must be a mapping, got {type(raw).__name__}", field=f"gates[{i}]")
        gate = _gate(raw, i, defaults)
        if any(g.id == gate.id for g in gates):
            raise GateSpecError("duplicate gate id", gate_id=gate.id, field="id")
        gates.append(gate)
    return GateSpec(
        version=version,
        name=name,
        defaults=defaults,
        gates=tuple(gates),
        reveal_budget=reveal_budget,
        adaptivity=adaptivity,
        digest=digest,
        source=source,
    )


def _defaults(f: Fields) -> Defaults:
    base = Defaults()
    out = Defaults(
        alpha=f.real("alpha", base.alpha, low=0.0, high=0.5, open_high=False),
        power=f.real("power", base.power, low=0.0, high=1.0),
        seed=f.count("seed", base.seed),
        on_inconclusive=f.choice("on_inconclusive", ("fail", "pass", "warn"), base.on_inconclusive),
        on_error=f.choice("on_error", ("count_as_failure", "exclude"), base.on_error),
        fail_side_multiplicity=f.choice(
            "fail_side_multiplicity", ("holm", "bonferroni", "none"), base.fail_side_multiplicity
        ),
    )
    f.finish()
    return out


def _common(f: Fields, gate_id: str, kind: str, d: Defaults, *, slices: bool = True) -> dict[str, Any]:
    where = f.string("where")
    out: dict[str, Any] = {
        "id": gate_id,
        "kind": kind,
        "description": f.string("description"),
        "where": where,
        "where_ast": expr.parse(where, gate_id) if where is not None else None,
        "alpha": f.real("alpha", d.alpha, low=0.0, high=0.5, open_high=False),
        "power": f.real("power", d.power, low=0.0, high=1.0),
        "seed": f.count("seed", d.seed),
        "on_inconclusive": f.choice("on_inconclusive", ("fail", "pass", "warn"), d.on_inconclusive),
        "on_error": f.choice("on_error", ("count_as_failure", "exclude"), d.on_error),
        "fail_side_multiplicity": f.choice(
            "fail_side_multiplicity", ("holm", "bonferroni", "none"), d.fail_side_multiplicity
        ),
    }
    if slices:
        out["slice_by"] = f.string_list("slice_by")
        out["min_n"] = f.count("min_n", 1, low=1)
    return out


def _gate(raw: Mapping[str, Any], index: int, d: Defaults) -> AnyGate:
    gate_id = raw.get("id")
    if not isinstance(gate_id, str) or not _ID.match(gate_id):
        raise GateSpecError(
            f"must be a string of letters, digits, '_', '.', ':' or '-' (at most 128), got {gate_id!r}",
            field=f"gates[{index}].id",
        )
    f = Fields(raw, gate_id=gate_id)
    f.string("id")
    kind = f.choice("kind", KINDS, "")
    if not kind:
        raise f.error("kind", f"is required: one of {', '.join(KINDS)}")
    if kind == "proportion":
        c = _common(f, gate_id, kind, d)
        gate: AnyGate = ProportionGate(
            **c,
            outcome=f.text("outcome", "correct"),
            threshold=f.required_number("threshold", low=0.0, high=1.0),
            direction=f.choice("direction", (">=", "<="), ">="),
            method=f.choice("method", ("clopper_pearson", "wilson"), "clopper_pearson"),
        )
    elif kind == "failure_budget":
        c = _common(f, gate_id, kind, d)
        gate = FailureBudgetGate(
            **c,
            outcome=f.text("outcome", "passed"),
            max_failure_rate=f.required_number("max_failure_rate", low=0.0, high=1.0),
            method=f.choice("method", ("clopper_pearson", "wilson"), "clopper_pearson"),
        )
    elif kind == "paired_noninferiority":
        c = _common(f, gate_id, kind, d)
        gate = PairedGate(
            **c,
            outcome=f.text("outcome", "correct"),
            baseline=f.text("baseline", "@champion"),
            margin=f.required_number("margin", low=0.0, high=1.0, open_low=False),
            method=f.choice("method", ("tango", "agresti_min"), "tango"),
            unmatched=f.choice("unmatched", ("error", "drop"), "error"),
        )
    elif kind == "bootstrap_threshold":
        gate = _bootstrap(f, _common(f, gate_id, kind, d))
    else:
        f.forbid("slice_by", "min_n", reason="a sequential gate follows one stream in arrival order")
        gate = _sequential(f, _common(f, gate_id, kind, d, slices=False))
    f.finish()
    return gate


def _bootstrap(f: Fields, c: dict[str, Any]) -> BootstrapGate:
    if not f.has("metric"):
        raise f.error("metric", f"is required: one of {', '.join(METRICS)}")
    metric = f.choice("metric", METRICS, "accuracy")
    errors_metric = metric in ("rmse", "mae")
    threshold = (
        f.required_number("threshold", low=0.0) if errors_metric else f.required_number("threshold", low=0.0, high=1.0)
    )
    positive = f.scalar("positive_label")
    if positive is not None and metric != "auc":
        raise f.error("positive_label", "only applies to metric 'auc'")
    return BootstrapGate(
        **c,
        metric=metric,
        threshold=threshold,
        direction=f.choice("direction", (">=", "<="), "<=" if errors_metric else ">="),
        n_resamples=f.count("n_resamples", 5000, low=200, high=1_000_000),
        ci_method=f.choice("ci_method", ("bca", "percentile"), "bca"),
        positive_label=positive,
    )


def _sequential(f: Fields, c: dict[str, Any]) -> SequentialGate:
    method: Literal["sprt", "confidence_sequence"] = f.choice("method", ("sprt", "confidence_sequence"), "sprt")
    common: dict[str, Any] = {
        "outcome": f.text("outcome", "correct"),
        "max_n": f.integer("max_n", None, low=1),
        "order_by": f.string("order_by"),
    }
    if method == "confidence_sequence":
        f.forbid("p0", "p1", "beta", "boundaries", reason="method 'confidence_sequence' uses 'threshold'")
        return SequentialGate(**c, **common, method=method, threshold=f.required_number("threshold", low=0.0, high=1.0))
    f.forbid("threshold", reason="method 'sprt' uses 'p0' (fail hypothesis) and 'p1' (pass hypothesis)")
    p0 = f.required_number("p0", low=0.0, high=1.0)
    p1 = f.required_number("p1", low=0.0, high=1.0)
    if p1 <= p0:
        raise f.error("p1", f"must be greater than p0 ({p0:g}), got {p1:g}")
    return SequentialGate(
        **c,
        **common,
        method=method,
        p0=p0,
        p1=p1,
        beta=f.real("beta", 0.1, low=0.0, high=0.5, open_high=False),
        boundaries=f.choice("boundaries", ("wald", "ville"), "wald"),
    )
