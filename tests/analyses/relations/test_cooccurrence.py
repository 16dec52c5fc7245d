"""Co-occurrence ratio: squidpy's definition re-implemented by brute force on small inputs."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from metaniche.analyses.relations import co_occurrence, co_occurrence_table


def _squidpy_brute_force(xy, codes, k, interval, cumulative=True):
    """squidpy >= 1.6 `_co_occurrence_helper` written out with a full distance matrix."""
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    n_r = len(interval) - 1
    counts = np.zeros((k, k, n_r))
    for r in range(n_r):
        inside = d <= interval[r + 1]
        if not cumulative:
            inside &= d > interval[r]
        for a in range(k):
            for b in range(k):
                counts[a, b, r] = inside[np.ix_(codes == a, codes == b)].sum()
    occ = np.zeros_like(counts)
    row_sums = counts.sum(axis=0)
    totals = row_sums.sum(axis=0)
    for r in range(n_r):
        probs = row_sums[:, r] / totals[r]
        for c in range(k):
            for i in range(k):
                if probs[i] != 0 and row_sums[c, r] != 0:
                    occ[i, c, r] = (counts[c, i, r] / row_sums[c, r]) / probs[i]
    return occ, counts


@pytest.mark.parametrize("cumulative", [True, False])
def test_matches_brute_force(cumulative):
    rng = np.random.default_rng(0)
    xy = np.round(rng.uniform(0, 100, (300, 2)))  # integer coordinates: ties at thresholds
    codes = rng.integers(0, 4, 300)
    interval = np.linspace(0, 40, 9)
    ratio, counts = co_occurrence(xy, codes, 4, interval, cumulative=cumulative, chunk_size=70)
    expected_ratio, expected_counts = _squidpy_brute_force(xy, codes, 4, interval, cumulative)
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_allclose(ratio, expected_ratio, rtol=1e-12, atol=1e-12)


def test_random_labels_give_ratio_near_one_and_table():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 1000, (4000, 2))
    codes = rng.integers(0, 2, 4000)
    interval = np.linspace(0, 100, 6)
    ratio, _ = co_occurrence(xy, codes, 2, interval)
    assert np.all(np.abs(ratio[..., -1] - 1) < 0.05)
    table = co_occurrence_table(ratio, interval, ["A", "B"])
    assert len(table) == 2 * 2 * 5 and (table["bin_start_um"] == 0).all()


@pytest.mark.skipif(importlib.util.find_spec("squidpy") is None,
                    reason="squidpy not installed (make test-peers)")
def test_agrees_with_squidpy():  # pragma: no cover - runs only with the peer installed
    import anndata
    import pandas as pd
    import squidpy as sq

    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 500, (2000, 2)).astype(np.float32).astype(np.float64)
    codes = rng.integers(0, 3, 2000)
    adata = anndata.AnnData(np.zeros((2000, 1), dtype=np.float32))
    adata.obsm["spatial"] = xy
    adata.obs["type"] = pd.Categorical(codes.astype(str))
    interval = np.linspace(0, 100, 11)
    expected, _ = sq.gr.co_occurrence(adata, cluster_key="type", interval=interval, copy=True)
    ratio, _ = co_occurrence(xy, codes, 3, interval)
    np.testing.assert_allclose(ratio, expected, atol=1e-6)
