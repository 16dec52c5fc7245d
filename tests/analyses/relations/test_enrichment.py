"""Neighbourhood enrichment: exact null moments vs permutations, planted structure, FPR."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import Delaunay, cKDTree

from metaniche.analyses.relations import (
    combine_z_stouffer,
    contact_counts,
    join_count_moments,
    neighbour_graph,
    neighbourhood_enrichment,
    stouffer_z,
)

N_PERMUTATIONS = 10_000


def _small_graph(seed: int = 1, n: int = 60):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 10, (n, 2))
    codes = rng.integers(0, 3, n)
    edges = neighbour_graph(xy, cKDTree(xy), "radius", 2.0)
    return xy, codes, edges


def _permutation_moments(edges, codes, groups, rng):
    sims = np.empty((N_PERMUTATIONS, 3, 3))
    for k in range(N_PERMUTATIONS):
        shuffled = codes.copy()
        for members in groups:
            shuffled[members] = rng.permutation(codes[members])
        sims[k] = contact_counts(edges, shuffled, 3)
    return sims.mean(axis=0), sims.var(axis=0)


@pytest.mark.parametrize("stratified", [False, True])
def test_exact_moments_match_permutations(stratified):
    xy, codes, edges = _small_graph()
    strata = (xy[:, 0] > 5).astype(int) if stratified else None
    groups = ([np.flatnonzero(strata == s) for s in (0, 1)] if stratified
              else [np.arange(len(codes))])
    mean, variance = join_count_moments(edges, codes, 3, strata)
    sim_mean, sim_var = _permutation_moments(edges, codes, groups, np.random.default_rng(7))
    # mean: within 4 Monte Carlo standard errors; variance: within 4 SE of a sample variance
    np.testing.assert_array_less(np.abs(sim_mean - mean), 4 * np.sqrt(variance / N_PERMUTATIONS))
    np.testing.assert_array_less(np.abs(sim_var - variance),
                                 4 * variance * np.sqrt(3.0 / N_PERMUTATIONS))


def test_mean_closed_form_unstratified():
    _, codes, edges = _small_graph(seed=2)
    n, m = len(codes), len(edges)
    counts = np.bincount(codes, minlength=3).astype(float)
    mean, _ = join_count_moments(edges, codes, 3)
    pairs = np.outer(counts, counts) - np.diag(counts)
    np.testing.assert_allclose(mean, 2 * m * pairs / (n * (n - 1)))


def test_observed_counts_follow_squidpy_convention():
    edges = np.array([[0, 1], [1, 2], [2, 3]])
    codes = np.array([0, 0, 1, 1])
    counts = contact_counts(edges, codes, 2)
    np.testing.assert_array_equal(counts, [[2, 1], [1, 2]])  # a–a edge counted both ways


def _planted(seed: int):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 500, (150, 2))
    attracted = a[rng.integers(0, 150, 150)] + rng.normal(0, 4, (150, 2))  # B hugs A
    candidates = rng.uniform(0, 500, (2000, 2))
    far = cKDTree(a).query(candidates)[0] > 25
    avoiding = candidates[far][:150]                                        # C avoids A
    random = rng.uniform(0, 500, (150, 2))                                  # D indifferent
    xy = np.concatenate([a, attracted, avoiding, random])
    codes = np.repeat([0, 1, 2, 3], [150, 150, len(avoiding), 150])
    return xy, codes


def test_planted_attraction_and_avoidance_detected():
    xy, codes = _planted(0)
    edges = neighbour_graph(xy, cKDTree(xy), "radius", 20.0)
    result = neighbourhood_enrichment(edges, codes, 4, n_permutations=199, seed=3)
    assert result.z[0, 1] > 5 and result.p[0, 1] < 1e-6
    assert result.z[0, 2] < -5 and result.p[0, 2] < 1e-6
    assert result.p_permutation[0, 1] == pytest.approx(1 / 200)
    assert abs(result.z[0, 3]) < 3
    np.testing.assert_allclose(result.z, result.z.T)


def test_false_positive_rate_unplanted():
    rejections, tests = 0, 0
    upper = np.triu_indices(3)
    for seed in range(200):
        rng = np.random.default_rng(seed)
        xy = rng.uniform(0, 200, (150, 2))
        codes = rng.integers(0, 3, 150)
        edges = neighbour_graph(xy, cKDTree(xy), "radius", 25.0)
        result = neighbourhood_enrichment(edges, codes, 3)
        p = result.p[upper]
        rejections += int(np.sum(p < 0.05))
        tests += len(p)
    assert rejections / tests <= 0.06


def test_within_compartment_null_removes_compartment_preference():
    # type 1 lives only in the left half, type 0 everywhere: whole-sample null sees 1–1
    # clustering; within halves the labels are exchangeable and the signal vanishes
    rng = np.random.default_rng(11)
    xy = rng.uniform(0, 400, (800, 2))
    left = xy[:, 0] < 200
    codes = np.where(left & (rng.random(800) < 0.5), 1, 0)
    edges = neighbour_graph(xy, cKDTree(xy), "radius", 20.0)
    whole = neighbourhood_enrichment(edges, codes, 2)
    within = neighbourhood_enrichment(edges, codes, 2, strata=left.astype(int))
    assert whole.z[1, 1] > 5
    assert abs(within.z[1, 1]) < 3


def test_permutations_are_seeded_and_deterministic():
    _, codes, edges = _small_graph(seed=4)
    first = neighbourhood_enrichment(edges, codes, 3, n_permutations=50, seed=9)
    second = neighbourhood_enrichment(edges, codes, 3, n_permutations=50, seed=9)
    np.testing.assert_array_equal(first.p_permutation, second.p_permutation)
    assert ((first.p_permutation >= 1 / 51) & (first.p_permutation <= 1)).all()


def test_graph_kinds():
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 100, (300, 2))
    tree = cKDTree(xy)
    knn = neighbour_graph(xy, tree, "knn", k=5)
    assert (knn[:, 0] < knn[:, 1]).all() and len(np.unique(knn, axis=0)) == len(knn)
    degree = np.bincount(knn.ravel(), minlength=300)
    assert degree.min() >= 5
    delaunay = neighbour_graph(xy, tree, "delaunay")
    hull = len(Delaunay(xy).convex_hull)
    assert len(delaunay) == 3 * 300 - 3 - hull  # Euler: edges of a triangulation
    with pytest.raises(ValueError, match="graph"):
        neighbour_graph(xy, tree, "voronoi")


def test_stouffer_per_patient():
    assert stouffer_z(np.array([1.0, 1.0, 1.0, 1.0])) == pytest.approx(2.0)
    table = pd.DataFrame({"patient": ["p1", "p1", "p2"], "type_a": "A", "type_b": "B",
                          "z": [2.0, 1.0, np.nan]})
    out = combine_z_stouffer(table).set_index("patient")
    assert out.loc["p1", "z"] == pytest.approx(3 / np.sqrt(2))
    assert out.loc["p1", "n_samples"] == 2
    assert np.isnan(out.loc["p2", "z"])
