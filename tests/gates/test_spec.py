"""Spec loading: the documented example, every validation error, digests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import gates
from gates.spec import BootstrapGate, PairedGate, ProportionGate, SequentialGate


def test_example_spec_loads(example_spec_text: str) -> None:
    spec = gates.load_spec(example_spec_text)
    assert [g.id for g in spec.gates] == [
        "accuracy", "rain-recall", "per-country", "no-regression", "macro-f1", "behaviour", "canary",
    ]  # fmt: skip
    acc, rain, country, paired, f1, _, canary = spec.gates
    assert isinstance(acc, ProportionGate) and acc.threshold == 0.95 and acc.method == "clopper_pearson"
    assert isinstance(rain, ProportionGate) and rain.min_n == 200 and rain.where_ast is not None
    assert isinstance(country, ProportionGate) and country.slice_by == ("country",)
    assert isinstance(paired, PairedGate) and paired.method == "tango" and paired.margin == 0.005
    assert isinstance(f1, BootstrapGate) and f1.direction == ">=" and f1.seed == 7
    assert isinstance(canary, SequentialGate) and (canary.p0, canary.p1, canary.beta) == (0.94, 0.96, 0.1)
    assert spec.needs_baseline and len(spec.digest) == 64


def test_digest_is_canonical(example_spec_text: str) -> None:
    """Same content, different YAML formatting and key order -> same digest; any change -> new one."""
    data = yaml.safe_load(example_spec_text)
    reordered: dict[str, Any] = {"gates": [dict(reversed(list(g.items()))) for g in data["gates"]], **data}
    assert gates.load_spec(reordered).digest == gates.load_spec(example_spec_text).digest
    assert gates.load_spec(yaml.safe_dump(data, default_flow_style=False)).digest == gates.load_spec(data).digest
    data["gates"][0]["threshold"] = 0.951
    assert gates.load_spec(data).digest != gates.load_spec(example_spec_text).digest


def test_loads_from_a_path(tmp_path: Path, example_spec_text: str) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(example_spec_text)
    assert (
        gates.load_spec(path).digest == gates.load_spec(str(path)).digest == gates.load_spec(example_spec_text).digest
    )
    with pytest.raises(gates.GateSpecError, match="cannot read spec file"):
        gates.load_spec(tmp_path / "missing.yaml")


def _one(**gate: Any) -> dict[str, Any]:
    return {"version": 1, "gates": [{"id": "g", **gate}]}


PROP = {"kind": "proportion", "threshold": 0.9}


@pytest.mark.parametrize(
    ("spec", "gate_id", "field", "fragment"),
    [
        (_one(**PROP, treshold=0.9), "g", "treshold", "did you mean 'threshold'"),
        (_one(kind="proportion"), "g", "threshold", "is required"),
        (_one(**{**PROP, "threshold": 1.5}), "g", "threshold", "must be in (0, 1)"),
        (_one(**{**PROP, "threshold": "high"}), "g", "threshold", "must be a number"),
        (_one(**PROP, direction="=>"), "g", "direction", "must be one of"),
        (_one(**PROP, method="wald"), "g", "method", "must be one of"),
        (_one(**PROP, where="label = 'x'"), "g", "where", "use '=='"),
        (_one(**PROP, slice_by=[1]), "g", "slice_by", "list of column names"),
        (_one(**PROP, min_n=0), "g", "min_n", "between 1"),
        (_one(**PROP, alpha=0.7), "g", "alpha", "must be in"),
        (_one(**PROP, on_inconclusive="maybe"), "g", "on_inconclusive", "must be one of"),
        (_one(kind="kappa"), "g", "kind", "must be one of"),
        (_one(threshold=0.9), "g", "kind", "is required"),
        (_one(kind="failure_budget"), "g", "max_failure_rate", "is required"),
        (_one(kind="paired_noninferiority", margin=-0.1), "g", "margin", "must be in"),
        (_one(kind="bootstrap_threshold", threshold=0.8), "g", "metric", "is required"),
        (_one(kind="bootstrap_threshold", metric="f2", threshold=0.8), "g", "metric", "must be one of"),
        (
            _one(kind="bootstrap_threshold", metric="f1_macro", threshold=0.8, n_resamples=10),
            "g",
            "n_resamples",
            "between",
        ),
        (
            _one(kind="bootstrap_threshold", metric="f1_macro", threshold=0.8, positive_label=1),
            "g",
            "positive_label",
            "only applies",
        ),
        (_one(kind="sequential", p0=0.9), "g", "p1", "is required"),
        (_one(kind="sequential", p0=0.96, p1=0.94), "g", "p1", "greater than p0"),
        (_one(kind="sequential", p0=0.9, p1=0.95, threshold=0.9), "g", "threshold", "not allowed"),
        (_one(kind="sequential", method="confidence_sequence", threshold=0.9, p0=0.9), "g", "p0", "not allowed"),
        (_one(kind="sequential", p0=0.9, p1=0.95, slice_by=["country"]), "g", "slice_by", "not allowed"),
        ({"version": 1, "gates": [{"id": "bad id!", **PROP}]}, None, "gates[0].id", "letters, digits"),
        ({"version": 1, "gates": [{"id": "g", **PROP}, {"id": "g", **PROP}]}, "g", "id", "duplicate gate id"),
        ({"version": 2, "gates": [{"id": "g", **PROP}]}, None, "version", "unsupported version"),
        ({"gates": [{"id": "g", **PROP}]}, None, "version", "is required"),
        ({"version": 1, "gates": []}, None, "gates", "non-empty list"),
        ({"version": 1, "gates": [{"id": "g", **PROP}], "extra": 1}, None, "extra", "unknown key"),
        (
            {"version": 1, "defaults": {"alpah": 0.1}, "gates": [{"id": "g", **PROP}]},
            None,
            "defaults.alpah",
            "did you mean 'alpha'",
        ),
        (
            {"version": 1, "adaptivity": "full", "gates": [{"id": "g", **PROP}]},
            None,
            "adaptivity",
            "reveal_budget is required",
        ),
        ({"version": 1, "reveal_budget": 0, "gates": [{"id": "g", **PROP}]}, None, "reveal_budget", "between 1"),
    ],
)
def test_invalid_specs_raise_a_clear_error(
    spec: dict[str, Any], gate_id: str | None, field: str, fragment: str
) -> None:
    with pytest.raises(gates.GateSpecError) as info:
        gates.load_spec(spec)
    err = info.value
    assert (err.gate_id, err.field) == (gate_id, field)
    assert fragment in str(err)
    assert field in str(err)
    if gate_id is not None:
        assert f"gate {gate_id!r}" in str(err)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: 1\ngates: [\n", "invalid YAML at line"),
        ("version: 1\nversion: 1\ngates: []\n", "duplicate key 'version'"),
        ("- a\n- b\n", "must be a mapping"),
        ("version: 1\ngates:\n  - {id: g, kind: proportion, threshold: 0.9, description: 2024-01-01}\n", "JSON"),
    ],
)
def test_bad_yaml(text: str, fragment: str) -> None:
    with pytest.raises(gates.GateSpecError, match=fragment):
        gates.load_spec(text)


def test_defaults_flow_into_gates() -> None:
    spec = gates.load_spec(
        {
            "version": 1,
            "defaults": {"alpha": 0.01, "on_inconclusive": "warn", "on_error": "exclude", "seed": 3, "power": 0.9},
            "gates": [{"id": "a", **PROP}, {"id": "b", **PROP, "alpha": 0.1, "on_inconclusive": "pass"}],
        }
    )
    a, b = spec.gates
    assert (a.alpha, a.on_inconclusive, a.on_error, a.seed, a.power) == (0.01, "warn", "exclude", 3, 0.9)
    assert (b.alpha, b.on_inconclusive) == (0.1, "pass")
