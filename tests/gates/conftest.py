"""Shared helpers for the gates tests: small table builders and the example spec from the docs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import settings

# Property tests run a bounded number of examples so the suite stays well under a minute on 2 cores.
settings.register_profile("gates", max_examples=60, deadline=None)
settings.load_profile("gates")

EXAMPLE_SPEC = """\
version: 1
defaults: {alpha: 0.05, on_inconclusive: fail, on_error: count_as_failure, power: 0.8, seed: 7}
gates:
  - {id: accuracy, kind: proportion, outcome: correct, threshold: 0.95, direction: ">="}
  - {id: rain-recall, kind: proportion, outcome: correct, where: "label == 'pedestrian' and weather == 'rain'",
     threshold: 0.99, min_n: 200}
  - {id: per-country, kind: proportion, outcome: correct, slice_by: [country], threshold: 0.9}
  - {id: no-regression, kind: paired_noninferiority, baseline: "@champion", outcome: correct, margin: 0.005}
  - {id: macro-f1, kind: bootstrap_threshold, metric: f1_macro, threshold: 0.8, n_resamples: 5000}
  - {id: behaviour, kind: failure_budget, outcome: passed, max_failure_rate: 0.02}
  - {id: canary, kind: sequential, method: sprt, outcome: correct, p0: 0.94, p1: 0.96, beta: 0.1}
"""

CLASSES = np.array(["pedestrian", "car", "bike", "truck", "bus"])
COUNTRIES = np.array(["DE", "FR", "US", "JP"])


def make_table(n: int, accuracy: float, *, seed: int = 0, **extra: Any) -> pa.Table:
    """A candidate-like table: ids 0..n-1, string labels/predictions with the given accuracy,
    a country and weather column and a ``passed`` column (99 % true)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES.size, n)
    wrong = (labels + rng.integers(1, CLASSES.size, n)) % CLASSES.size
    pred = np.where(rng.random(n) < accuracy, labels, wrong)
    cols: dict[str, Any] = {
        "id": np.arange(n),
        "label": CLASSES[labels],
        "prediction": CLASSES[pred],
        "country": COUNTRIES[rng.integers(0, COUNTRIES.size, n)],
        "weather": np.array(["rain", "sun"])[rng.integers(0, 2, n)],
        "passed": rng.random(n) < 0.99,
    }
    cols.update(extra)
    return pa.table(cols)


def binary_table(outcomes: np.ndarray[Any, Any], **extra: Any) -> pa.Table:
    """A table with ids and a ``correct`` column given directly."""
    return pa.table({"id": np.arange(outcomes.size), "correct": outcomes.astype(bool), **extra})


@pytest.fixture
def example_spec_text() -> str:
    return EXAMPLE_SPEC
