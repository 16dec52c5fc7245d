"""Cellular neighbourhoods: window compositions by brute force, planted niches recovered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree
from sklearn.metrics import adjusted_rand_score

from metaniche.analyses.communities import (
    assign_neighbourhoods,
    fit_neighbourhoods,
    neighbourhood_composition,
    neighbourhood_tables,
    training_windows,
)

NICHES = np.array([  # type probabilities of four planted niches over five types
    [0.80, 0.10, 0.10, 0.00, 0.00],
    [0.10, 0.70, 0.00, 0.20, 0.00],
    [0.00, 0.10, 0.45, 0.00, 0.45],
    [0.05, 0.00, 0.05, 0.70, 0.20],
])
TYPES = ["A", "B", "C", "D", "E"]


def _planted(seed: int, side: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jittered lattice split into 4x4 square patches, each patch one niche (random)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2) * 15.0
    xy = grid + rng.uniform(-4, 4, grid.shape)
    patch = (grid[:, 0] // (15.0 * side / 4)).astype(int) * 4 + (
        grid[:, 1] // (15.0 * side / 4)).astype(int)
    niche_of_patch = rng.permutation(np.resize(np.arange(4), 16))
    niche = niche_of_patch[patch]
    cumulative = NICHES.cumsum(1)[niche]
    codes = (rng.random(len(xy))[:, None] >= cumulative).sum(1)
    return xy, codes, niche


def test_composition_matches_brute_force():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (60, 2))
    codes = rng.integers(0, 3, 60)
    got = neighbourhood_composition(cKDTree(xy), codes, 3, k=5)
    distance = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    nearest = np.argsort(distance, axis=1)[:, :5]  # the cell itself first (distance 0)
    expected = np.stack([np.bincount(codes[row], minlength=3) / 5 for row in nearest])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-6)


def test_small_sample_window_is_whole_sample():
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    got = neighbourhood_composition(cKDTree(xy), np.array([0, 1, 1]), 2, k=10)
    np.testing.assert_allclose(got, [[1 / 3, 2 / 3]] * 3, atol=1e-6)


@pytest.mark.parametrize("n_neighbourhoods", [4, 0])
def test_planted_niches_recovered_across_samples(n_neighbourhoods):
    samples = [_planted(seed) for seed in (1, 2)]
    parts = []
    for index, (xy, codes, _) in enumerate(samples):
        windows = neighbourhood_composition(cKDTree(xy), codes, 5, k=10)
        parts.append(training_windows(windows, TYPES, 3000, seed=index).assign(sample=f"s{index}"))
    model = fit_neighbourhoods(pd.concat(parts, ignore_index=True), n_neighbourhoods, seed=0)
    assert model.n_neighbourhoods == 4
    all_labels, all_truth = [], []
    for xy, codes, niche in samples:
        labels = assign_neighbourhoods(model, neighbourhood_composition(cKDTree(xy), codes, 5),
                                       TYPES)
        all_labels.append(labels)
        all_truth.append(niche)
        assert adjusted_rand_score(niche, labels) >= 0.8
    # one cohort model: the same niche gets the same CN in both samples
    assert adjusted_rand_score(np.concatenate(all_truth), np.concatenate(all_labels)) >= 0.8


def test_assignment_aligns_vocabularies_and_is_deterministic():
    xy, codes, _ = _planted(3, side=40)
    windows = neighbourhood_composition(cKDTree(xy), codes, 5)
    training = training_windows(windows, TYPES, 1000, seed=0).assign(sample="s")
    first = fit_neighbourhoods(training, 4, seed=7)
    second = fit_neighbourhoods(training, 4, seed=7)
    np.testing.assert_array_equal(first.centres, second.centres)
    # a sample labelled with its types in another order, plus a type unknown to the model
    order = [4, 2, 0, 1, 3]
    shuffled = np.column_stack([windows[:, order], np.zeros(len(windows))])
    labels = assign_neighbourhoods(first, shuffled, [TYPES[i] for i in order] + ["Z"])
    np.testing.assert_array_equal(labels, assign_neighbourhoods(first, windows, TYPES))
    sizes = np.bincount(assign_neighbourhoods(first, windows, TYPES))[1:]
    assert set(np.unique(labels)) <= set(range(1, 5))
    tables = neighbourhood_tables(labels, np.where(xy[:, 0] < 300, "core", "adjacent"), first)
    whole = tables["abundance"].query("compartment == 'all'")
    np.testing.assert_array_equal(whole["n_cells"], sizes)
    assert whole["fraction"].sum() == pytest.approx(1.0)
    per = tables["abundance"].query("compartment != 'all'").groupby("neighbourhood")["n_cells"]
    np.testing.assert_array_equal(per.sum().to_numpy(), sizes)
    comp = tables["composition"].groupby("neighbourhood")["fraction"].sum()
    np.testing.assert_allclose(comp, 1.0, atol=1e-6)


def test_fit_is_k_means_of_all_windows():
    """Fitted on the distinct windows weighted by their counts, the centres are a Lloyd fixed
    point of k-means on every window (brute force over all windows: each centre is the mean
    of the windows nearest to it) and reach at least mini-batch k-means' objective."""
    from sklearn.cluster import MiniBatchKMeans

    from metaniche.analyses.communities.neighbourhoods import windows_matrix

    parts = []
    for index, seed in enumerate((1, 2)):
        xy, codes, _ = _planted(seed)
        windows = neighbourhood_composition(cKDTree(xy), codes, 5, k=10)
        parts.append(training_windows(windows, TYPES, 5000, seed=index)
                     .assign(sample=f"s{index}"))
    training = pd.concat(parts, ignore_index=True)
    matrix, _ = windows_matrix(training)
    assert len(np.unique(matrix, axis=0)) < len(matrix) / 5      # many repeated windows
    model = fit_neighbourhoods(training, 6, seed=0)
    distance = ((matrix[:, None, :] - model.centres[None]) ** 2).sum(axis=2)
    nearest = distance.argmin(axis=1)
    for c in range(model.n_neighbourhoods):
        np.testing.assert_allclose(matrix[nearest == c].mean(axis=0), model.centres[c],
                                   atol=1e-9)
    inertia = distance.min(axis=1).sum()
    mini = MiniBatchKMeans(n_clusters=6, random_state=0, n_init=3, batch_size=4096).fit(matrix)
    mini_inertia = ((matrix[:, None, :] - mini.cluster_centers_[None]) ** 2).sum(axis=2)
    assert inertia <= mini_inertia.min(axis=1).sum() * (1 + 1e-9)
    # CN 1 is the most common: sizes decrease
    sizes = np.bincount(nearest, minlength=model.n_neighbourhoods)
    assert (np.diff(sizes) <= 0).all()


def test_distinct_rows_are_numpy_unique_rows_with_counts():
    from metaniche.analyses.communities.neighbourhoods import _distinct_rows

    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 4, (5000, 3)) / 4.0
    distinct, counts = _distinct_rows(matrix)
    expected, expected_counts = np.unique(matrix, axis=0, return_counts=True)
    order = np.lexsort(expected.T[::-1])               # numeric lexicographic order
    np.testing.assert_array_equal(distinct, expected[order])
    np.testing.assert_array_equal(counts, expected_counts[order])
    one, n = _distinct_rows(matrix[:, :1])
    np.testing.assert_array_equal(one[:, 0], np.unique(matrix[:, 0]))
    assert n.sum() == len(matrix)


@pytest.mark.parametrize("n_cells", [0, 1, 500])
def test_abundance_counts_and_table_equal_a_loop_over_groups(n_cells):
    from metaniche.analyses.communities import abundance_counts, abundance_table

    rng = np.random.default_rng(n_cells)
    n_cn = 6
    labels = rng.integers(1, n_cn + 1, n_cells)
    compartment = rng.choice(["core", "border", "adjacent"], n_cells)
    groups, counts = abundance_counts(labels, compartment, n_cn)
    present = sorted(set(compartment.tolist()))
    assert groups == ["all", *present]
    for g, mask in enumerate([np.ones(n_cells, bool)] + [compartment == c for c in present]):
        for cn in range(1, n_cn + 1):
            assert counts[g, cn - 1] == np.sum(labels[mask] == cn)
    table = abundance_table(groups, counts)
    assert table["compartment"].tolist() == [g for g in groups for _ in range(n_cn)]
    assert table["neighbourhood"].tolist() == list(range(1, n_cn + 1)) * len(groups)
    for g in range(len(groups)):
        rows = table.iloc[g * n_cn:(g + 1) * n_cn]
        total = counts[g].sum()
        want = counts[g] / total if total else np.full(n_cn, np.nan)
        np.testing.assert_array_equal(rows["fraction"].to_numpy(), want)
