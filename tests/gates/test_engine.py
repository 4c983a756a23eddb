"""End-to-end: gates.evaluate on tables, decisions, policies, errors and the report contract."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import gates
from gates.stats import binomial, paired

from .conftest import binary_table, make_table


def spec_of(*gate_defs: dict[str, Any], **top: Any) -> gates.GateSpec:
    return gates.load_spec({"version": 1, "gates": list(gate_defs), **top})


def prop(gate_id: str = "acc", **kw: Any) -> dict[str, Any]:
    return {"id": gate_id, "kind": "proportion", "threshold": 0.95, **kw}


def outcomes(k: int, n: int, seed: int = 0) -> np.ndarray[Any, Any]:
    x = np.zeros(n, dtype=bool)
    x[:k] = True
    return np.random.default_rng(seed).permutation(x)


def test_example_spec_end_to_end(example_spec_text: str) -> None:
    cand = make_table(20_000, 0.97, seed=1)
    rng = np.random.default_rng(2)
    base = make_table(20_000, 0.965, seed=1).take(pa.array(rng.permutation(20_000)))  # same ids, other order
    spec = gates.load_spec(example_spec_text)
    report = gates.evaluate(spec, cand, base)
    by_gate = {g.gate_id: g for g in report.gates}
    assert by_gate["accuracy"].status == "PASS"
    assert by_gate["rain-recall"].status == "FAIL"  # 0.97 is far below 0.99
    assert by_gate["per-country"].status == "PASS" and by_gate["per-country"].slices == 4
    assert by_gate["macro-f1"].status == "PASS"
    assert by_gate["behaviour"].status == "PASS"
    assert by_gate["canary"].status == "PASS"
    assert report.verdict == "fail" and report.exit_code == 1
    assert report.baseline_digest is not None and report.data_digest == gates.table_digest(cand)
    for r in report.results:
        assert r.spec_digest == spec.digest and r.data_digest == report.data_digest
        assert r.interval.level == pytest.approx(0.95)
        assert r.alpha == pytest.approx(0.05)
    assert next(r for r in report.results if r.gate_id == "macro-f1").seed == 7


def test_report_dict_is_strict_json_with_stable_keys(example_spec_text: str) -> None:
    report = gates.evaluate(gates.load_spec(example_spec_text), make_table(3000, 0.97), make_table(3000, 0.96))
    data = report.to_dict()
    json.dumps(data, allow_nan=False)
    assert list(data) == [
        "verdict", "exit_code", "spec_digest", "data_digest", "baseline_digest", "reveals", "warnings", "gates",
        "results",
    ]  # fmt: skip
    assert set(data["results"][0]) >= {
        "gate_id", "label", "kind", "slice", "status", "estimate", "interval", "threshold", "direction",
        "p_value", "p_value_fail", "p_value_fail_adjusted", "n", "failures", "errors", "n_needed",
        "n_needed_toward", "n_additional", "alpha", "seed", "spec_digest", "data_digest", "notes", "details",
    }  # fmt: skip
    assert set(data["results"][0]["interval"]) == {"lower", "upper", "level", "sided", "method"}


def test_verified_vector_through_the_engine() -> None:
    table = binary_table(outcomes(9950, 10_000))
    r = gates.evaluate(spec_of(prop(threshold=0.994)), table).results[0]
    assert r.status == "INCONCLUSIVE"
    assert (r.interval.lower, r.interval.upper) == pytest.approx((0.993676, 0.996102), abs=5e-7)
    assert (r.p_value, r.p_value_fail) == pytest.approx((0.107, 0.916), abs=5e-4)
    assert (r.n, r.failures, r.errors) == (10_000, 50, 0)
    assert r.n_needed == binomial.exact_plan(0.994, 0.995, 0.05, 0.8)[0] and r.n_needed_toward == "pass"
    assert r.n_additional == r.n_needed - 10_000


@pytest.mark.parametrize(
    ("k", "policy", "verdict", "exit_code"),
    [
        (9990, "fail", "pass", 0),
        (9000, "fail", "fail", 1),
        (9520, "fail", "fail", 1),
        (9520, "pass", "warn", 0),
        (9520, "warn", "inconclusive", 3),
    ],
)
def test_verdict_and_exit_codes(k: int, policy: str, verdict: str, exit_code: int) -> None:
    report = gates.evaluate(spec_of(prop(on_inconclusive=policy)), binary_table(outcomes(k, 10_000)))
    assert (report.verdict, report.exit_code) == (verdict, exit_code)
    if verdict == "warn":
        assert any("on_inconclusive: pass" in w for w in report.warnings)


def test_fail_side_uses_holm_across_slices() -> None:
    """Two slices just below the bar: raw p_fail < alpha, but not after Holm across 8 slices."""
    parts, slices = [], []
    for i in range(8):
        k = 1880 if i < 2 else 1990  # 0.94 vs 0.95: p_fail ~ 0.03; others clearly fine
        parts.append(outcomes(k, 2000, seed=i))
        slices += [f"s{i}"] * 2000
    table = binary_table(np.concatenate(parts), region=slices)
    raw = binomial.clopper_pearson(1880, 2000, 0.95, 0.05).p_less
    assert raw < 0.05 < 8 * raw
    holm = gates.evaluate(spec_of(prop(slice_by=["region"])), table)
    none = gates.evaluate(spec_of(prop(slice_by=["region"], fail_side_multiplicity="none")), table)
    assert [r.status for r in holm.results[:2]] == ["INCONCLUSIVE"] * 2
    assert [r.status for r in none.results[:2]] == ["FAIL"] * 2
    assert holm.results[0].p_value_fail_adjusted == pytest.approx(min(1.0, 8 * raw))
    assert [r.slice for r in holm.results][:2] == [{"region": "s0"}, {"region": "s1"}]
    assert holm.gates[0].status == "INCONCLUSIVE" and none.gates[0].status == "FAIL"


def test_errors_count_as_failures_or_are_excluded() -> None:
    x = np.ones(1000, dtype=bool)
    err = np.array(["timeout" if i < 100 else "" for i in range(1000)])
    table = binary_table(x, error=err, bad=~x)
    counted = gates.evaluate(spec_of(prop(threshold=0.5)), table).results[0]
    assert (counted.n, counted.failures, counted.errors, counted.estimate) == (1000, 100, 100, 0.9)
    excluded = gates.evaluate(spec_of(prop(threshold=0.5, on_error="exclude")), table).results[0]
    assert (excluded.n, excluded.failures, excluded.errors, excluded.estimate) == (900, 0, 100, 1.0)
    # For an error-rate outcome ("<="), an errored row is an unfavourable event.
    rate = gates.evaluate(spec_of(prop(outcome="bad", threshold=0.5, direction="<=")), table).results[0]
    assert (rate.estimate, rate.failures) == (0.1, 100)
    budget = {"id": "b", "kind": "failure_budget", "outcome": "bad", "max_failure_rate": 0.5}
    assert gates.evaluate(spec_of(budget), table).results[0].failures == 1000  # "bad" is never a pass


def test_failure_budget_is_the_mirror_of_proportion() -> None:
    passed = outcomes(493, 500)
    table = binary_table(passed, passed=passed)
    budget = gates.evaluate(spec_of({"id": "b", "kind": "failure_budget", "max_failure_rate": 0.03}), table)
    mirror = gates.evaluate(spec_of(prop(outcome="passed", threshold=0.97)), table)
    b, m = budget.results[0], mirror.results[0]
    assert b.status == m.status == "PASS"
    assert b.p_value == pytest.approx(0.0168, abs=5e-5) == m.p_value
    assert (b.interval.lower, b.interval.upper) == pytest.approx((1 - m.interval.upper, 1 - m.interval.lower))


def test_min_n_and_empty_where_are_inconclusive() -> None:
    table = binary_table(np.ones(150, dtype=bool), weather=["rain"] * 150)
    few = gates.evaluate(spec_of(prop(threshold=0.9, min_n=200)), table).results[0]
    assert few.status == "INCONCLUSIVE" and "below min_n" in few.notes[0]
    assert few.p_value is not None and few.p_value < 0.05  # statistics still shown
    none = gates.evaluate(spec_of(prop(where="weather == 'snow'")), table).results[0]
    assert none.status == "INCONCLUSIVE" and none.n == 0 and none.notes == ("no rows to evaluate",)


@pytest.mark.parametrize(
    ("gate", "field", "fragment"),
    [
        (prop(outcome="is_right"), "outcome", "column 'is_right' is not in the candidate table"),
        (prop(where="weather == 'rain'"), "where", "column 'weather' is not in the table"),
        (prop(slice_by=["country"]), "slice_by", "column 'country'"),
        ({"id": "acc", "kind": "paired_noninferiority", "margin": 0.01}, "baseline", "no baseline table"),
        ({"id": "acc", "kind": "sequential", "p0": 0.9, "p1": 0.95, "order_by": "ts"}, "order_by", "'ts'"),
        ({"id": "acc", "kind": "bootstrap_threshold", "metric": "auc", "threshold": 0.7}, "metric", "'label'"),
    ],
)
def test_missing_columns_name_gate_and_field(gate: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(gates.GateDataError) as info:
        gates.evaluate(spec_of(gate), binary_table(outcomes(90, 100)))
    assert (info.value.gate_id, info.value.field) == ("acc", field)
    assert fragment in str(info.value) and "'acc'" in str(info.value)


def test_null_outcome_without_error_is_a_data_error() -> None:
    table = pa.table({"id": [1, 2, 3], "correct": [True, None, False], "error": ["", "", ""]})
    with pytest.raises(gates.GateDataError, match="null 'correct' and no error"):
        gates.evaluate(spec_of(prop()), table)
    marked = table.set_column(2, "error", pa.array(["", "crash", ""]))
    assert gates.evaluate(spec_of(prop()), marked).results[0].errors == 1


def _paired_tables(b: int, c: int, n: int, *, shuffle: bool = True) -> tuple[pa.Table, pa.Table]:
    """n pairs with exactly b (baseline right, candidate wrong) and c (the reverse) discordant."""
    base = np.ones(n, dtype=bool)
    cand = np.ones(n, dtype=bool)
    cand[:b] = False
    base[b : b + c] = False
    ids = np.arange(n)
    order = np.random.default_rng(0).permutation(n) if shuffle else ids
    return pa.table({"id": ids, "correct": cand}), pa.table({"id": ids[order], "correct": base[order]})


@pytest.mark.parametrize("method", ["tango", "agresti_min"])
def test_paired_gate_joins_on_id(method: str) -> None:
    cand, base = _paired_tables(30, 12, 1000)
    gate = {"id": "nr", "kind": "paired_noninferiority", "margin": 0.005, "method": method}
    r = gates.evaluate(spec_of(gate), cand, base).results[0]
    ref = paired.difference_bounds(30, 12, 1000, 0.005, 0.05, method)  # type: ignore[arg-type]
    assert r.status == "FAIL"
    assert (r.estimate, r.interval.lower, r.interval.upper) == pytest.approx((-0.018, ref.lower, ref.upper))
    assert (r.details["b"], r.details["c"]) == (30, 12)
    assert r.details["mcnemar_p"] == pytest.approx(0.007916, abs=5e-7)
    assert r.details["candidate_accuracy"] == pytest.approx(0.97)
    assert r.details["baseline_accuracy"] == pytest.approx(0.988)


def test_paired_unmatched_ids_error_or_drop() -> None:
    cand, base = _paired_tables(10, 10, 500)
    base = base.filter(pa.compute.not_equal(base.column("id"), 7))
    gate = {"id": "nr", "kind": "paired_noninferiority", "margin": 0.05}
    with pytest.raises(gates.GateDataError, match=r"1 candidate ids have no baseline row \(e.g. \[7\]\)") as info:
        gates.evaluate(spec_of(gate), cand, base)
    assert info.value.field == "id"
    r = gates.evaluate(spec_of({**gate, "unmatched": "drop"}), cand, base).results[0]
    assert r.n == 499 and "shared ids" in r.notes[0]


def test_bootstrap_gate_through_the_engine() -> None:
    table = make_table(5000, 0.9, seed=3)
    gate = {"id": "f1", "kind": "bootstrap_threshold", "metric": "f1_macro", "threshold": 0.85, "n_resamples": 1000}
    one = gates.evaluate(spec_of(gate), table).results[0]
    again = gates.evaluate(spec_of(gate), table).results[0]
    other = gates.evaluate(spec_of({**gate, "seed": 8}), table).results[0]
    assert one.status == "PASS" and one.to_dict() == again.to_dict()
    assert other.interval.lower != one.interval.lower
    assert one.failures == int(np.sum(np.array(table["label"]) != np.array(table["prediction"])))


def test_bootstrap_auc_rmse_and_degenerate_cases() -> None:
    rng = np.random.default_rng(4)
    n = 3000
    y = rng.random(n) < 0.4
    table = pa.table(
        {
            "id": np.arange(n),
            "label": np.where(y, "spam", "ham"),
            "score": rng.normal(y * 1.5, 1.0),
            "error": np.where(np.arange(n) < 3, "oom", ""),
        }
    )
    auc = {"id": "auc", "kind": "bootstrap_threshold", "metric": "auc", "threshold": 0.75, "n_resamples": 1000}
    with pytest.raises(gates.GateDataError, match="set positive_label"):
        gates.evaluate(spec_of(auc), table)
    r = gates.evaluate(spec_of({**auc, "positive_label": "spam"}), table).results[0]
    assert r.status == "PASS" and r.errors == 3 and r.failures is None
    numeric = pa.table({"id": np.arange(n), "label": rng.normal(0, 1, n), "error": table["error"]})
    numeric = numeric.append_column("prediction", pa.array(numeric["label"].to_numpy() + rng.normal(0, 0.5, n)))
    rmse = {"id": "rmse", "kind": "bootstrap_threshold", "metric": "rmse", "threshold": 0.6, "n_resamples": 1000}
    with pytest.raises(gates.GateDataError, match="set on_error: exclude") as info:
        gates.evaluate(spec_of(rmse), numeric)
    assert info.value.field == "on_error"
    r = gates.evaluate(spec_of({**rmse, "on_error": "exclude"}), numeric).results[0]
    assert r.direction == "<=" and r.status == "PASS" and r.n == n - 3
    perfect = pa.table({"id": np.arange(500), "label": ["a", "b"] * 250, "prediction": ["a", "b"] * 250})
    acc = {"id": "acc", "kind": "bootstrap_threshold", "metric": "accuracy", "threshold": 0.9, "n_resamples": 500}
    r = gates.evaluate(spec_of(acc), perfect).results[0]
    assert r.status == "INCONCLUSIVE" and "degenerate" in r.notes[-1]


def test_sequential_gate_is_stable_when_rechecked() -> None:
    stream = np.random.default_rng(5).random(5000) < 0.97
    gate = {"id": "canary", "kind": "sequential", "p0": 0.94, "p1": 0.96, "beta": 0.1}
    full = gates.evaluate(spec_of(gate), binary_table(stream)).results[0]
    assert full.status == "PASS" and full.n < 5000 and "later rows do not change" in full.notes[0]
    for cut in range(full.n, 5000, 700):
        again = gates.evaluate(spec_of(gate), binary_table(stream[:cut])).results[0]
        assert (again.status, again.n) == (full.status, full.n)
    early = gates.evaluate(spec_of(gate), binary_table(stream[:50])).results[0]
    assert early.status == "INCONCLUSIVE" and early.n_needed is not None and early.n_needed > 50
    capped = gates.evaluate(spec_of({**gate, "max_n": 40}), binary_table(stream)).results[0]
    assert capped.n == 40 and "max_n = 40 reached" in capped.notes[0]


def test_sequential_order_by_reorders_the_stream() -> None:
    x = np.array([False] * 20 + [True] * 200)
    table = binary_table(x, ts=np.arange(220)[::-1])  # reversed: successes arrive first
    gate = {"id": "c", "kind": "sequential", "p0": 0.5, "p1": 0.9}
    assert gates.evaluate(spec_of(gate), table).results[0].status == "FAIL"
    assert gates.evaluate(spec_of({**gate, "order_by": "ts"}), table).results[0].status == "PASS"
    cs = {"id": "c", "kind": "sequential", "method": "confidence_sequence", "threshold": 0.5, "order_by": "ts"}
    assert gates.evaluate(spec_of(cs), table).results[0].status == "PASS"


def test_reveal_budget_and_adaptivity() -> None:
    table = binary_table(outcomes(9990, 10_000))
    spec = spec_of(prop(), reveal_budget=3)
    fresh = gates.evaluate(spec, table, reveals_so_far=2)
    assert fresh.verdict == "pass" and not fresh.reveals.exhausted and fresh.reveals.used == 3
    spent = gates.evaluate(spec, table, reveals_so_far=3)
    assert spent.reveals.exhausted and spent.verdict == "warn" and "reveal budget exhausted" in spent.warnings[0]
    full = gates.evaluate(spec_of(prop(), reveal_budget=10, adaptivity="full"), table)
    assert full.results[0].alpha == pytest.approx(0.05 / 1024) and full.reveals.alpha_divisor == 1024
    assert full.results[0].interval.level == pytest.approx(1 - 0.05 / 1024)
    with pytest.raises(gates.GateDataError, match="reveals_so_far"):
        gates.evaluate(spec, table, reveals_so_far=-1)


def test_markdown_table(example_spec_text: str) -> None:
    report = gates.evaluate(gates.load_spec(example_spec_text), make_table(3000, 0.97), make_table(3000, 0.96))
    md = gates.to_markdown(report)
    assert md.startswith("### Model gates: **FAIL**")
    assert "| `per-country[country=DE]` | ✅ PASS |" in md
    assert md.count("\n| `") == len(report.results)
    assert report.spec_digest[:12] in md and "reveal 1/∞" in md


def test_report_round_trips_through_its_dict(example_spec_text: str) -> None:
    """Stored reports (``to_dict``) can be rebuilt for rendering without re-evaluating."""
    from gates.report import report_from_dict

    report = gates.evaluate(gates.load_spec(example_spec_text), make_table(3000, 0.97), make_table(3000, 0.96))
    rebuilt = report_from_dict(json.loads(json.dumps(report.to_dict())))
    assert rebuilt.to_dict() == report.to_dict()
    assert gates.to_markdown(rebuilt) == gates.to_markdown(report)


def test_slice_values_of_any_type_serialise() -> None:
    import datetime as dt

    day = [dt.date(2024, 1, 1 + i % 3) for i in range(300)]
    table = binary_table(np.ones(300, dtype=bool), day=pa.array(day))
    report = gates.evaluate(spec_of(prop(threshold=0.5, slice_by=["day"])), table)
    assert [r["slice"] for r in report.to_dict()["results"]] == [{"day": f"2024-01-0{i}"} for i in (1, 2, 3)]
    json.dumps(report.to_dict(), allow_nan=False)
