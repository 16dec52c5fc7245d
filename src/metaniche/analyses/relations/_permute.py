"""Monte Carlo label permutations for neighbourhood enrichment, in parallel Numba.

Generator. Permutation ``k`` has its own SplitMix64 stream [1]_ seeded with word ``k`` of
``SeedSequence(seed).generate_state(n_permutations, uint64)``; each 64-bit output gives two
32-bit draws, turned into unbiased bounded integers by Lemire's multiply-and-reject method [2]_.
Within each stratum the cells of the non-dominant types (below) are placed one by one at
uniformly random cells not yet taken (rejection), every other cell gets the dominant type: a
uniform draw among the stratum's label arrangements, at about one bounded draw per
non-dominant cell when the dominant type is common. A permutation's outcome depends only on
its own stream, so results do not depend on blocking or the number of threads. (SplitMix64
passes BigCrush; the streams are offsets in one 2⁶⁴ cycle, and with ≤ 10⁴ permutations of
≤ 10⁶ draws the chance that any two overlap is < 10⁻⁵.)

Counting. Cells are renumbered by their position in the strata's member order (a shuffled
segment then needs no scatter back), and every undirected edge is stored once, at its lower
position, in a CSR list. The most frequent type ``H`` (hepatocytes in liver, tumour cells in
most lesions) is never counted edge by edge: for the other types ``a, b`` the kernel counts
``C[a, b]`` over the edges of cells labelled ``a`` only, and ``D_a``, the degree sum of the cells
labelled ``a``; the rows of ``C`` sum to the degree sums, so ``C[a, H] = D_a − Σ_{b≠H} C[a, b]``
and ``C[H, H] = D_H − Σ_{a≠H} C[a, H]`` exactly. Cost per permutation O(n + m · (1 − f_H)) for
n cells, m edges and the dominant type's fraction f_H, instead of O(n + m). Each permutation
records which ``|C* − E| >= |C − E|`` (two-sided exceedance).

References
----------
.. [1] Steele G.L., Lea D., Flood C.H. (2014) Fast splittable pseudorandom number generators.
   OOPSLA '14, 453–472.
.. [2] Lemire D. (2019) Fast random integer generation in an interval. ACM Trans Model Comput
   Simul 29(1):3.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import prange

__all__ = ["permutation_exceedances", "permutation_seeds"]

_MASK32 = np.uint64(0xFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def permutation_seeds(seed: int, n_permutations: int) -> np.ndarray:
    """(n_permutations,) uint64 SplitMix64 starting states, one per permutation."""
    return np.random.SeedSequence(seed).generate_state(n_permutations, dtype=np.uint64)


@numba.njit(cache=True, inline="always")
def _splitmix64(state: np.uint64) -> tuple[np.uint64, np.uint64]:  # pragma: no cover - numba
    """Next SplitMix64 state and its 64-bit output."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return state, z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def _bounded(bound: np.uint64, rng: np.ndarray) -> np.int64:  # pragma: no cover - numba
    """Uniform integer on [0, bound) from the stream ``rng`` (updated in place).

    ``rng`` = (SplitMix64 state, has spare 32-bit draw, spare draw). Lemire's multiply-and-
    reject on 32 bits (the 2³² mod bound lowest residues are rejected, so the draw is exactly
    uniform); 64-bit modulo rejection above 2³².
    """
    if bound <= _MASK32 + np.uint64(1):
        while True:
            if rng[1] != 0:
                rng[1] = np.uint64(0)
                draw32 = rng[2]
            else:
                state, draw = _splitmix64(rng[0])
                rng[0], rng[1], rng[2] = state, np.uint64(1), draw >> np.uint64(32)
                draw32 = draw & _MASK32
            product = draw32 * bound
            low = product & _MASK32
            if low >= bound or low >= ((_MASK32 + np.uint64(1) - bound) % bound):
                return np.int64(product >> np.uint64(32))
    threshold = (np.uint64(0) - bound) % bound
    while True:
        state, draw = _splitmix64(rng[0])
        rng[0] = state
        if draw >= threshold:
            return np.int64(draw % bound)


@numba.njit(cache=True)
def _permuted_labels(bounds: np.ndarray, minor_bounds: np.ndarray, minor_labels: np.ndarray,
                     dominant: int, rng: np.ndarray,
                     labels: np.ndarray) -> None:  # pragma: no cover - numba
    """Write one uniform relabelling within strata into ``labels`` (n,).

    Every cell starts as ``dominant``; in stratum g (cells ``bounds[g]:bounds[g+1]``) the
    stratum's other labels ``minor_labels[minor_bounds[g]:minor_bounds[g+1]]`` are placed one by
    one at a uniformly random cell still holding ``dominant`` (rejection), which gives a uniform
    draw among the stratum's arrangements. Expected draws per stratum of n cells with k minor
    cells: n · (H_n − H_{n−k}) ≈ n · ln(n / (n − k)) ≤ n · ln K for K types.
    """
    for i in range(len(labels)):  # a loop: slice assignments are slow for Numba to compile
        labels[i] = dominant
    for g in range(len(bounds) - 1):
        start, size = bounds[g], np.uint64(bounds[g + 1] - bounds[g])
        for i in range(minor_bounds[g], minor_bounds[g + 1]):
            while True:
                pick = start + _bounded(size, rng)
                if labels[pick] == dominant:
                    labels[pick] = minor_labels[i]
                    break


@numba.njit(cache=True)
def _contacts(indptr: np.ndarray, heads: np.ndarray, degree: np.ndarray, labels: np.ndarray,
              n_types: int, dominant: int, total_degree: int,
              minor: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """(K, K) directed contact counts C of ``labels`` (module docstring: dominant-type trick).

    ``minor`` (n,) is a work buffer for the positions of the non-dominant cells, collected in
    increasing order so the CSR rows are read front to back.
    """
    n_minor = 0
    for i in range(len(labels)):
        minor[n_minor] = i
        n_minor += labels[i] != dominant
    # two copies, alternated within a row (fewer memory-dependence stalls); the dominant
    # column gets counted too but is rebuilt from the degree sums below
    stride = n_types * n_types
    one_way = np.zeros(2 * stride, dtype=np.int64)
    degree_sum = np.zeros(n_types, dtype=np.int64)
    for t in range(n_minor):
        i = minor[t]
        row = np.intp(labels[i]) * n_types
        degree_sum[labels[i]] += degree[i]
        e, stop = indptr[i], indptr[i + 1]
        while e + 1 < stop:
            one_way[row + labels[heads[e]]] += 1
            one_way[stride + row + labels[heads[e + 1]]] += 1
            e += 2
        if e < stop:
            one_way[row + labels[heads[e]]] += 1
    # plain loops, not array expressions (slices, .T, .sum()): the same integers, and 0.3 s
    # less for Numba to compile (0.8 → 0.5 s)
    counts = np.empty((n_types, n_types), dtype=np.int64)
    minor_degree = 0
    for a in range(n_types):
        if a != dominant:
            minor_degree += degree_sum[a]
        for b in range(n_types):
            ab, ba = a * n_types + b, b * n_types + a
            counts[a, b] = (one_way[ab] + one_way[stride + ab]) + (one_way[ba]
                                                                   + one_way[stride + ba])
    degree_sum[dominant] = total_degree - minor_degree
    for a in range(n_types):
        counts[a, dominant] = 0
        counts[dominant, a] = 0
    for a in range(n_types):
        if a != dominant:
            total = 0
            for b in range(n_types):
                total += counts[a, b]
            counts[a, dominant] = degree_sum[a] - total
            counts[dominant, a] = counts[a, dominant]
    total = 0
    for b in range(n_types):
        total += counts[dominant, b]
    counts[dominant, dominant] = degree_sum[dominant] - total
    return counts


@numba.njit(cache=True, parallel=True)
def _exceedance_kernel(indptr: np.ndarray, heads: np.ndarray, degree: np.ndarray,
                       bounds: np.ndarray, minor_bounds: np.ndarray, minor_labels: np.ndarray,
                       seeds: np.ndarray, n_types: int, dominant: int, total_degree: int,
                       expected: np.ndarray, deviation: np.ndarray, labels: np.ndarray,
                       minor: np.ndarray, rng: np.ndarray,
                       exceed: np.ndarray) -> None:  # pragma: no cover - numba
    """Exceedance flags into ``exceed`` (n_perm, K, K), zeroed; cells and edges as positions
    in stratum order.

    Permutations run in a fixed number of blocks, block b using row b of the work buffers
    ``labels`` and ``minor`` (blocks, n) and ``rng`` (blocks, 3); each permutation depends
    only on its own seed, so neither blocks nor threads change results. The buffers are
    allocated by the caller: allocated here, the kernel took 2.5 s to compile on first use
    (1.3 s without them).
    """
    n_perm = seeds.shape[0]
    n_blocks = labels.shape[0]
    for block in prange(n_blocks):
        block_labels = labels[block]
        block_minor = minor[block]
        block_rng = rng[block]
        for p in range(block * n_perm // n_blocks, (block + 1) * n_perm // n_blocks):
            block_rng[0] = seeds[p]
            block_rng[1] = 0
            block_rng[2] = 0
            _permuted_labels(bounds, minor_bounds, minor_labels, dominant, block_rng,
                             block_labels)
            counts = _contacts(indptr, heads, degree, block_labels, n_types, dominant,
                               total_degree, block_minor)
            for a in range(n_types):
                for b in range(n_types):
                    if abs(np.float64(counts[a, b]) - expected[a, b]) >= deviation[a, b]:
                        exceed[p, a, b] = 1


class _Layout(NamedTuple):
    indptr: np.ndarray        # one-way CSR by lower position
    heads: np.ndarray
    degree: np.ndarray        # undirected degree per position
    labels: np.ndarray        # observed labels in stratum order
    bounds: np.ndarray        # stratum segments of positions
    minor_bounds: np.ndarray  # stratum segments of minor_labels
    minor_labels: np.ndarray  # each stratum's non-dominant labels
    dominant: int


def _layout(edges: np.ndarray, codes: np.ndarray, n_types: int,
            groups: list[np.ndarray]) -> _Layout:
    """Cells renumbered by position in stratum order; edges once, at their lower position."""
    label_dtype = np.int8 if n_types <= 127 else np.int32 if n_types < 2**31 else np.int64
    members = np.concatenate(groups) if groups else np.empty(0, dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum([len(g) for g in groups])]).astype(np.int64)
    position = np.empty(len(codes), dtype=np.int64)
    position[members] = np.arange(len(members))
    ends = position[np.asarray(edges, dtype=np.int64)].reshape(-1, 2)
    tails, heads = ends.min(axis=1), ends.max(axis=1)
    indptr = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(np.bincount(tails, minlength=len(codes)), out=indptr[1:])
    degree = np.bincount(ends.ravel(), minlength=len(codes)).astype(np.int64)
    labels = np.asarray(codes)[members].astype(label_dtype)
    dominant = int(np.argmax(np.bincount(labels, minlength=n_types))) if len(labels) else 0
    minor = labels != dominant
    stratum = np.repeat(np.arange(len(groups)), np.diff(bounds))
    minor_counts = np.bincount(stratum[minor], minlength=len(groups))
    minor_bounds = np.concatenate([[0], np.cumsum(minor_counts)]).astype(np.int64)
    heads = heads[np.argsort(tails, kind="stable")].astype(np.int32 if len(codes) < 2**31
                                                           else np.int64)
    return _Layout(indptr, heads, degree, labels, bounds, minor_bounds, labels[minor], dominant)


def permutation_exceedances(edges: np.ndarray, codes: np.ndarray, n_types: int,
                            groups: list[np.ndarray], seed: int, n_permutations: int,
                            expected: np.ndarray, deviation: np.ndarray) -> np.ndarray:
    """(K, K) number of permutations with ``|C* − expected| >= deviation`` (module docstring).

    ``groups`` are the strata's member indices (labels are shuffled within each, in order);
    ``edges`` the (m, 2) undirected edges (no self-loops), each counted in both directions.
    """
    layout = _layout(edges, codes, n_types, groups)
    n = len(layout.degree)
    n_blocks = min(n_permutations, 64)
    exceed = np.zeros((n_permutations, n_types, n_types), dtype=np.uint8)
    _exceedance_kernel(
        layout.indptr, layout.heads, layout.degree, layout.bounds, layout.minor_bounds,
        layout.minor_labels, permutation_seeds(seed, n_permutations), int(n_types),
        layout.dominant, int(layout.degree.sum()),
        np.ascontiguousarray(expected, dtype=np.float64),
        np.ascontiguousarray(deviation, dtype=np.float64),
        np.empty((n_blocks, n), dtype=layout.minor_labels.dtype),
        np.empty((n_blocks, n), dtype=layout.heads.dtype),
        np.zeros((n_blocks, 3), dtype=np.uint64), exceed)
    return exceed.sum(axis=0, dtype=np.int64).astype(np.float64)
