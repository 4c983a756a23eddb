"""Count-based bootstrap: metric values against direct computations, the count bootstrap against
row resampling and scipy's BCa, the bound/p-value duality, and seeding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from gates.stats import bootstrap, metrics

ALPHA = 0.05


def _macro_reference(metric: str, y: np.ndarray, p: np.ndarray, classes: np.ndarray | None = None) -> float:
    """scikit-learn's macro averages (zero_division=0), by default over the union of labels and
    predictions; ``p == -1`` is "no prediction"."""
    classes = np.union1d(y, p[p >= 0]) if classes is None else classes
    scores = []
    for k in classes:
        tp = np.sum((y == k) & (p == k))
        pred, true = np.sum(p == k), np.sum(y == k)
        prec = tp / pred if pred else 0.0
        rec = tp / true if true else 0.0
        f1 = 2 * tp / (pred + true) if pred + true else 0.0
        scores.append({"precision_macro": prec, "recall_macro": rec, "f1_macro": f1}[metric])
    return float(np.mean(scores))


@given(
    n=st.integers(5, 400),
    k=st.integers(2, 6),
    seed=st.integers(0, 2**31),
    metric=st.sampled_from(["f1_macro", "precision_macro", "recall_macro", "accuracy"]),
)
def test_confusion_metrics_match_direct_computation(n: int, k: int, seed: int, metric: str) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n))
    p[rng.random(n) < 0.05] = k  # errored rows: "no prediction"
    model = metrics.confusion_model(metric, y, p, k)  # type: ignore[arg-type]
    no_pred = np.where(p == k, -1, p)
    expected = float(np.mean(y == p)) if metric == "accuracy" else _macro_reference(metric, y, no_pred, np.arange(k))
    assert model.estimate == pytest.approx(expected, abs=1e-12)
    assert model.counts.sum() == n


@pytest.mark.parametrize("distinct", [50, 5000])
def test_auc_estimate_is_exact_mann_whitney(distinct: int) -> None:
    rng = np.random.default_rng(1)
    n = 6000
    y = rng.random(n) < 0.3
    scores = np.round(rng.normal(y * 0.8, 1.0), 0) if distinct == 50 else rng.normal(y * 0.8, 1.0)
    u = stats.mannwhitneyu(scores[y], scores[~y]).statistic
    model = metrics.auc_model(y, scores)
    assert model.estimate == pytest.approx(u / (y.sum() * (~y).sum()), abs=1e-12)


def test_error_metrics_estimates() -> None:
    rng = np.random.default_rng(2)
    e = rng.normal(0, 2, 10_000)
    assert metrics.error_model("rmse", e).estimate == pytest.approx(np.sqrt(np.mean(e**2)), rel=1e-12)
    assert metrics.error_model("mae", e).estimate == pytest.approx(np.mean(np.abs(e)), rel=1e-12)


def test_count_bootstrap_matches_row_bootstrap_for_macro_f1() -> None:
    """Multinomial over cells is the row bootstrap in law: compare mean and spread of replicates."""
    rng = np.random.default_rng(3)
    n, k = 2000, 4
    y = rng.integers(0, k, n)
    p = np.where(rng.random(n) < 0.8, y, rng.integers(0, k, n))
    model = metrics.confusion_model("f1_macro", y, p, k)
    counted = bootstrap.replicates(model, 4000, seed=11)
    rows = rng.integers(0, n, size=(1500, n))
    by_rows = np.array([_macro_reference("f1_macro", y[r], p[r]) for r in rows])
    assert counted.mean() == pytest.approx(by_rows.mean(), abs=0.002)
    assert counted.std() == pytest.approx(by_rows.std(), rel=0.08)


def test_bca_matches_scipy_for_a_mean() -> None:
    rng = np.random.default_rng(4)
    x = rng.exponential(1.0, 300)  # skewed, so BCa's corrections matter
    model = metrics.error_model("mae", x)
    ours = bootstrap.bca_bounds(model, 1.0, ALPHA, 20_000, seed=5)
    ref = stats.bootstrap(
        (x,), np.mean, confidence_level=1 - 2 * ALPHA, method="BCa", n_resamples=20_000, random_state=1
    )
    se = ref.standard_error
    assert ours.lower == pytest.approx(
        ref.confidence_interval.low, abs=0.1 * se
    )  # Monte Carlo noise of two independent runs
    assert ours.upper == pytest.approx(
        ref.confidence_interval.high, abs=0.1 * se
    )  # Monte Carlo noise of two independent runs
    assert ours.std_error == pytest.approx(se, rel=0.03)
    assert ours.acceleration != 0.0


def test_binned_error_model_keeps_the_spread() -> None:
    """>4,096 distinct values are binned; the within-bin noise keeps the bootstrap spread right."""
    rng = np.random.default_rng(7)
    e = rng.standard_t(3, 20_000)  # heavy tails: the hardest case for binning
    model = metrics.error_model("rmse", e)
    assert model.counts.size <= metrics.ERROR_BINS
    reps = bootstrap.replicates(model, 2000, seed=1)
    rows = np.array([np.sqrt(np.mean(e[rng.integers(0, e.size, e.size)] ** 2)) for _ in range(500)])
    assert reps.mean() == pytest.approx(rows.mean(), rel=0.01)
    assert reps.std() == pytest.approx(rows.std(), rel=0.12)


def test_binned_auc_keeps_the_spread() -> None:
    rng = np.random.default_rng(8)
    n = 8_000
    y = rng.random(n) < 0.4
    s = rng.normal(y * 1.0, 1.0)
    model = metrics.auc_model(y, s)
    assert model.counts.size <= 2 * metrics.AUC_BINS
    reps = bootstrap.replicates(model, 2000, seed=2)

    def auc(idx: np.ndarray) -> float:
        yy, ss = y[idx], s[idx]
        return float(stats.mannwhitneyu(ss[yy], ss[~yy]).statistic / (yy.sum() * (~yy).sum()))

    rows = np.array([auc(rng.integers(0, n, n)) for _ in range(400)])
    assert reps.mean() == pytest.approx(model.estimate, abs=0.002)
    assert reps.std() == pytest.approx(rows.std(), rel=0.15)


@given(seed=st.integers(0, 2**31), data=st.data())
def test_bootstrap_p_value_and_bound_are_dual(seed: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 300)
    p = np.where(rng.random(300) < 0.75, y, rng.integers(0, 3, 300))
    model = metrics.confusion_model("f1_macro", y, p, 3)
    reps = np.sort(bootstrap.replicates(model, 500, seed=seed))
    tau = float(data.draw(st.sampled_from([*reps[::25].tolist(), float(reps.mean())])))
    method = data.draw(st.sampled_from(["bca", "percentile"]))
    b = bootstrap.bca_bounds(model, tau, ALPHA, 500, seed=seed, method=method)
    assert (b.p_greater <= ALPHA) == (b.lower >= tau)
    assert (b.p_less <= ALPHA) == (b.upper <= tau)


@given(seed=st.integers(0, 2**31))
def test_deterministic_under_a_seed(seed: int) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 500)
    p = np.where(rng.random(500) < 0.8, y, rng.integers(0, 4, 500))
    model = metrics.confusion_model("f1_macro", y, p, 4)
    one = bootstrap.bca_bounds(model, 0.7, ALPHA, 1000, seed=seed)
    two = bootstrap.bca_bounds(model, 0.7, ALPHA, 1000, seed=seed)
    assert one == two
    assert bootstrap.bca_bounds(model, 0.7, ALPHA, 1000, seed=seed + 1) != one


def test_unresolvable_alpha_is_flagged() -> None:
    y = np.arange(1000) % 3
    model = metrics.confusion_model("accuracy", y, y.copy(), 3)
    tiny = bootstrap.bca_bounds(model, 0.5, 1e-6, 500, seed=1)
    assert not tiny.lower_resolved and not tiny.upper_resolved
    assert bootstrap.bca_bounds(model, 0.5, 0.05, 500, seed=1).lower_resolved
