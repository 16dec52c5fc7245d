"""Cell-list pair binning (Ripley / co-occurrence kernel) against brute force over all pairs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from metaniche.analyses.relations import Window, iter_pairs_within
from metaniche.analyses.relations._pairbins import bin_pair_chunks, bin_pairs_within


def _brute(xy, codes, n_types, edges, lower=-np.inf, window=None):
    delta = xy[None, :, :] - xy[:, None, :]              # x_j − x_i at [i, j]
    d = np.hypot(delta[..., 0], delta[..., 1])
    i, j = np.nonzero((d <= edges[-1]) & ~np.eye(len(xy), dtype=bool) & (d > lower))
    bins = np.searchsorted(edges, d[i, j], side="left")
    weights = None
    if window is not None:
        weights = window.area / window.set_covariance(delta[i, j, 0], delta[i, j, 1])
    keys = (codes[i] * n_types + codes[j]) * len(edges) + bins
    return np.bincount(keys, weights=weights, minlength=n_types * n_types * len(edges))


def _points(seed=0, n=400, side=300.0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, side, (n, 2))
    # boundary cases: a pair exactly at a bin edge (10 µm, counts in that bin: <=), a pair
    # exactly at the outer radius (counts), one just beyond it and two coincident cells
    xy[:6] = [[50, 50], [60, 50], [150, 150], [150, 180], [200, 20], [200, 20]]
    xy[6:8] = [[250, 250], [250, 280.000001]]
    return xy, rng.integers(0, 3, n)


@pytest.mark.parametrize("lower", [-np.inf, 0.0, 10.0])
def test_counts_equal_brute_force(lower):
    xy, codes = _points()
    edges = np.array([10.0, 20.0, 30.0])
    expected = _brute(xy, codes, 3, edges, lower)
    np.testing.assert_array_equal(bin_pairs_within(xy, codes, 3, edges, lower), expected)
    if lower < 10.0:
        assert expected[(codes[0] * 3 + codes[1]) * 3 + 0] >= 1  # the 10 µm pair is in bin 0


def test_translation_weights_equal_brute_force_and_chunk_path():
    xy, codes = _points(1)
    window = Window.rectangle(0, 0, 300, 300, pixel_um=2.0)
    covariance = (window._cov, *window._cov_centre, window._cov_pixel, window.area)
    edges = np.array([5.0, 15.0, 30.0])
    expected = _brute(xy, codes, 3, edges, window=window)
    np.testing.assert_allclose(bin_pairs_within(xy, codes, 3, edges, covariance=covariance),
                               expected, rtol=1e-12)
    chunks = list(iter_pairs_within(cKDTree(xy), 40.0, chunk_size=50))
    np.testing.assert_allclose(bin_pair_chunks(chunks, xy, codes, 3, edges,
                                               covariance=covariance), expected, rtol=1e-12)


def test_small_radius_on_wide_extent():
    """Grid bins are capped at 2048 a side, so bins can be much wider than the radius."""
    rng = np.random.default_rng(2)
    xy = np.concatenate([rng.uniform(0, 30, (300, 2)), [[1e6, 1e6]]])
    codes = rng.integers(0, 2, len(xy))
    edges = np.array([500.0, 1000.0])
    np.testing.assert_array_equal(bin_pairs_within(xy, codes, 2, np.array([1.0, 3.0])),
                                  _brute(xy, codes, 2, np.array([1.0, 3.0])))
    np.testing.assert_array_equal(bin_pairs_within(xy, codes, 2, edges),
                                  _brute(xy, codes, 2, edges))
