"""Grid nearest-neighbour distances: bit for bit cKDTree's k=2 query (what median_nn used)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from metaniche.analyses._nearest import nearest_other_distance
from metaniche.analyses.compartments import median_nn_distance


def _cases():
    rng = np.random.default_rng(0)
    for trial in range(120):
        n = int(rng.integers(2, 400))
        kind = trial % 4
        if kind == 0:                                   # spread out
            yield rng.random(n) * 1000, rng.random(n) * 1000
        elif kind == 1:                                 # on a lattice, with duplicates
            yield (rng.integers(0, 20, n).astype(float), rng.integers(0, 20, n).astype(float))
        elif kind == 2:                                 # a thin line
            yield rng.normal(0, 1, n), rng.normal(0, 1e-3, n)
        else:                                           # one far outlier
            yield (np.r_[rng.random(n - 1) * 10, 1e6], np.r_[rng.random(n - 1) * 10, -5e5])


def test_equals_kdtree_bit_for_bit():
    for x, y in _cases():
        points = np.column_stack([x, y])
        queries = np.arange(0, len(x), 3)
        expected = cKDTree(points).query(points[queries], k=2)[0][:, 1]
        np.testing.assert_array_equal(nearest_other_distance(x, y, queries), expected)


def test_median_nn_distance_subset_and_fallbacks():
    rng = np.random.default_rng(1)
    x, y = rng.random(5000) * 2000, rng.random(5000) * 2000
    points = np.column_stack([x, y])
    expected = np.median(cKDTree(points).query(points[::10], k=2)[0][:, 1])
    assert median_nn_distance(x, y, max_queries=500) == expected
    assert median_nn_distance(np.zeros(1), np.zeros(1)) == 20.0
    assert median_nn_distance(np.zeros(4), np.ones(4)) == 10.0        # all coincident
