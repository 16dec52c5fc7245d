"""Monte Carlo permutations of neighbourhood enrichment: generator reference values, exact
uniformity of the relabelling, the dominant-type contact counter against direct counting, and
p-values equal to a plain loop for any thread count."""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest
from scipy import stats
from scipy.spatial import cKDTree

from metaniche.analyses.relations import (
    contact_counts,
    join_count_moments,
    neighbour_graph,
    neighbourhood_enrichment,
)
from metaniche.analyses.relations._permute import (
    _bounded,
    _contacts,
    _layout,
    _permuted_labels,
    _splitmix64,
    permutation_seeds,
)
from metaniche.analyses.relations.enrichment import _strata_members


@numba.njit
def _stream(seed, n):
    out = np.empty(n, dtype=np.uint64)
    state = np.uint64(seed)
    for i in range(n):
        state, out[i] = _splitmix64(state)
    return out


@numba.njit
def _draws(bound, n, seed):
    rng = np.zeros(3, dtype=np.uint64)
    rng[0] = seed
    return np.array([_bounded(np.uint64(bound), rng) for _ in range(n)])


def test_splitmix64_reference_outputs():
    # Steele, Lea & Flood's SplitMix64 from state 0 (the published reference sequence)
    np.testing.assert_array_equal(_stream(0, 4), np.array(
        [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, 0xF88BB8A8724C81EC],
        dtype=np.uint64))


@pytest.mark.parametrize("bound", [1, 3, 7, 1000, 2**31 + 11, 2**32, 2**32 + 5])
def test_bounded_draws_are_in_range_and_uniform(bound):
    draws = _draws(bound, 30_000, 12345)
    assert draws.min() >= 0 and draws.max() < bound
    if bound == 1:
        return
    # uniform: 10 equal-width bins (exactly equal mass when bound is small: use bound itself)
    n_bins = min(bound, 10)
    if bound <= 10:
        observed = np.bincount(draws, minlength=bound)
        expected = np.full(bound, len(draws) / bound)
    else:
        observed = np.bincount(draws * n_bins // bound, minlength=n_bins)
        edges = np.arange(n_bins + 1) * bound
        expected = np.diff(-(-edges // n_bins)) * len(draws) / bound
    assert stats.chisquare(observed, expected).pvalue > 1e-4


def _relabel(codes, groups, seed, n_types):
    layout = _layout(np.zeros((0, 2), dtype=np.int64), codes, n_types, groups)
    members = np.concatenate(groups)
    rng = np.zeros(3, dtype=np.uint64)
    rng[0] = seed
    labels = np.empty(len(codes), dtype=layout.labels.dtype)
    _permuted_labels(layout.bounds, layout.minor_bounds, layout.minor_labels, layout.dominant,
                     rng, labels)
    shuffled = np.empty(len(codes), dtype=np.int64)
    shuffled[members] = labels
    return shuffled


def test_relabelling_is_uniform_over_all_arrangements():
    codes = np.array([0, 0, 0, 1, 1, 2])            # 6! / (3! 2! 1!) = 60 arrangements
    arrangements = sorted(set(itertools.permutations(codes.tolist())))
    index = {a: i for i, a in enumerate(arrangements)}
    seeds = permutation_seeds(7, 30_000)
    counts = np.zeros(len(arrangements))
    for seed in seeds:
        counts[index[tuple(_relabel(codes, [np.arange(6)], seed, 3).tolist())]] += 1
    assert len(arrangements) == 60 and counts.min() > 0
    assert stats.chisquare(counts).pvalue > 1e-4


def test_relabelling_keeps_strata_and_is_uniform_within_each():
    codes = np.array([2, 0, 2, 2, 1, 1, 1, 0])
    strata = np.array([0, 0, 1, 0, 1, 1, 0, 1])
    groups = _strata_members(strata, len(codes))
    position_counts = np.zeros((len(codes), 3))
    n = 20_000
    for seed in permutation_seeds(3, n):
        shuffled = _relabel(codes, groups, seed, 3)
        for members in groups:
            np.testing.assert_array_equal(np.sort(shuffled[members]), np.sort(codes[members]))
        position_counts[np.arange(len(codes)), shuffled] += 1
    # each cell carries type t with probability (#t in its stratum) / (stratum size)
    for members in groups:
        share = np.bincount(codes[members], minlength=3) / len(members)
        for cell in members:
            expected = share * n
            keep = expected > 0
            assert np.all(position_counts[cell, ~keep] == 0)
            assert stats.chisquare(position_counts[cell, keep], expected[keep]).pvalue > 1e-4


@pytest.mark.parametrize("seed", range(6))
def test_dominant_type_counter_equals_direct_counts(seed):
    rng = np.random.default_rng(seed)
    n, n_types = 400, 4
    xy = rng.uniform(0, 100, (n, 2))
    codes = rng.choice(n_types, n, p=[0.1, 0.6, 0.2, 0.1] if seed % 2 else None)
    if seed == 5:
        codes[:] = 2                                    # one type only
    edges = neighbour_graph(xy, cKDTree(xy), "radius", 9.0)
    strata = rng.integers(0, 3, n) if seed % 3 == 0 else None
    layout = _layout(edges, codes, n_types, _strata_members(strata, n))
    counts = _contacts(layout.indptr, layout.heads, layout.degree, layout.labels, n_types,
                       layout.dominant, int(layout.degree.sum()),
                       np.empty(n, dtype=layout.heads.dtype))
    np.testing.assert_array_equal(counts, contact_counts(edges, codes, n_types))


def _reference_p_permutation(edges, codes, n_types, strata, n_permutations, seed):
    """Plain loop: the same relabellings, counted directly over the edge list."""
    observed = contact_counts(edges, codes, n_types)
    expected, _ = join_count_moments(edges, codes, n_types, strata)
    deviation = np.abs(observed - expected) * (1 - 1e-12)
    groups = _strata_members(strata, len(codes))
    exceed = np.zeros((n_types, n_types))
    for generator_seed in permutation_seeds(seed, n_permutations):
        shuffled = _relabel(codes, groups, generator_seed, n_types)
        exceed += np.abs(contact_counts(edges, shuffled, n_types) - expected) >= deviation
    return (exceed + 1.0) / (n_permutations + 1.0)


@pytest.mark.parametrize("stratified", [False, True])
def test_parallel_permutations_equal_plain_loop_for_any_thread_count(stratified):
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 200, (600, 2))
    codes = rng.integers(0, 4, 600)
    codes[:60] = 0
    strata = rng.integers(0, 3, 600) if stratified else None
    edges = neighbour_graph(xy, cKDTree(xy), "radius", 15.0)
    expected = _reference_p_permutation(edges, codes, 4, strata, 150, seed=5)
    threads = numba.get_num_threads()
    try:
        for n_threads in sorted({1, threads}):
            numba.set_num_threads(n_threads)
            result = neighbourhood_enrichment(edges, codes, 4, strata=strata,
                                              n_permutations=150, seed=5)
            np.testing.assert_array_equal(result.p_permutation, expected)
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize("stratified", [False, True])
def test_relabellings_reproduce_exact_null_moments(stratified):
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 10, (60, 2))
    codes = rng.choice(3, 60, p=[0.6, 0.25, 0.15])
    edges = neighbour_graph(xy, cKDTree(xy), "radius", 2.0)
    strata = (xy[:, 0] > 5).astype(int) if stratified else None
    groups = _strata_members(strata, len(codes))
    mean, variance = join_count_moments(edges, codes, 3, strata)
    n = 10_000
    sims = np.array([contact_counts(edges, _relabel(codes, groups, seed, 3), 3)
                     for seed in permutation_seeds(11, n)])
    np.testing.assert_array_less(np.abs(sims.mean(axis=0) - mean), 4 * np.sqrt(variance / n))
    np.testing.assert_array_less(np.abs(sims.var(axis=0) - variance),
                                 4 * variance * np.sqrt(3.0 / n))
