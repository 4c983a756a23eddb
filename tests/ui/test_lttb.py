"""LTTB downsampling: the size asked for, both ends kept, extremes kept."""

from __future__ import annotations

import math

import numpy as np
import pytest

from registry.ui.lttb import downsample, lttb_indices


def test_short_series_are_returned_whole() -> None:
    assert lttb_indices([0, 1, 2], [5, 6, 7], 10).tolist() == [0, 1, 2]
    assert downsample([0, 1, 2], [5.0, 6.0, 7.0], 3) == ([0, 1, 2], [5.0, 6.0, 7.0])


@pytest.mark.parametrize(("n", "n_out"), [(10, 3), (1_000, 100), (12_345, 5_000), (1_000_000, 2_000)])
def test_output_has_the_size_asked_for_and_keeps_both_ends(n: int, n_out: int) -> None:
    x = np.arange(n, dtype=float)
    y = np.random.default_rng(n).normal(size=n)
    kept = lttb_indices(x, y, n_out)
    assert kept.size == n_out
    assert kept[0] == 0 and kept[-1] == n - 1
    assert np.all(np.diff(kept) > 0), "indices ascend, one per bucket"


def test_a_spike_on_a_flat_line_is_kept() -> None:
    y = np.zeros(1_000)
    y[437], y[812] = 9.0, -4.0
    kept = lttb_indices(np.arange(1_000), y, 20)
    assert 437 in kept and 812 in kept


def test_the_peaks_and_troughs_of_a_sine_are_kept() -> None:
    x = np.linspace(0, 4 * math.pi, 4_001)
    xs, ys = downsample(x.tolist(), np.sin(x).tolist(), 200)
    assert len(xs) == len(ys) == 200
    assert max(ys) > 0.999 and min(ys) < -0.999
    assert xs[0] == 0.0 and xs[-1] == pytest.approx(4 * math.pi)


def test_known_vector() -> None:
    # Buckets of the 6 inner points: [1, 2, 3] and [4, 5, 6]; the largest triangles are at the extremes.
    y = [0.0, 1.0, 5.0, 1.0, 0.0, -6.0, 0.0, 0.0]
    assert lttb_indices(list(range(8)), y, 4).tolist() == [0, 2, 5, 7]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_out"):
        lttb_indices([0, 1, 2, 3], [0, 1, 2, 3], 2)
    with pytest.raises(ValueError, match="same length"):
        lttb_indices([0, 1, 2], [0, 1], 3)
