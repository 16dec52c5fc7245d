"""Monte Carlo label permutations for neighbourhood enrichment, in parallel Numba.

Permutation ``k`` draws its labels with NumPy's own algorithm from the generator
``np.random.default_rng(SeedSequence(seed).spawn(n_permutations)[k])``: PCG64 (128-bit LCG,
XSL-RR output, buffered 32-bit draws) feeding ``Generator.permutation``'s Fisher–Yates shuffle
(``random_interval``: bounded draws by masked rejection), stratum after stratum with one
generator. The shuffled labels are therefore exactly those of
``rng.permutation(codes[members])`` in NumPy (cells are renumbered by their position in the
strata's member order, so a shuffled segment needs no scatter back to cell order, and edges are
sorted by tail for locality), while permutations run in parallel (``prange``) and each
permutation's outcome depends only on its own generator: results do not depend on the number of
threads. Each permutation recounts the directed contacts over the edge list in O(m) and records
which ``|C* − E| >= |C − E|`` (two-sided exceedance). Cost O(n + m) per permutation.

References
----------
.. [1] O'Neill M.E. (2014) PCG: a family of simple fast space-efficient statistically good
   algorithms for random number generation. HMC-CS-2014-0905.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

__all__ = ["permutation_exceedances", "permutation_states"]

_MASK32 = np.uint64(0xFFFFFFFF)
_MULT_HI = np.uint64(0x2360ED051FC65DA4)
_MULT_LO = np.uint64(0x4385DF649FCCF645)


def permutation_states(seed: int, n_permutations: int) -> np.ndarray:
    """(n_permutations, 4) uint64 PCG64 states ``(state_hi, state_lo, inc_hi, inc_lo)``."""
    states = np.empty((n_permutations, 4), dtype=np.uint64)
    mask = (1 << 64) - 1
    for k, child in enumerate(np.random.SeedSequence(seed).spawn(n_permutations)):
        state = np.random.PCG64(child).state["state"]
        states[k] = (state["state"] >> 64, state["state"] & mask, state["inc"] >> 64,
                     state["inc"] & mask)
    return states


@numba.njit(cache=True, inline="always")
def _mul_hi(a: np.uint64, b: np.uint64) -> np.uint64:  # pragma: no cover - numba
    """High 64 bits of the 128-bit product of two uint64."""
    a_lo, a_hi = a & _MASK32, a >> np.uint64(32)
    b_lo, b_hi = b & _MASK32, b >> np.uint64(32)
    lo_lo = a_lo * b_lo
    hi_lo = a_hi * b_lo
    lo_hi = a_lo * b_hi
    cross = (lo_lo >> np.uint64(32)) + (hi_lo & _MASK32) + lo_hi
    return (hi_lo >> np.uint64(32)) + (cross >> np.uint64(32)) + a_hi * b_hi


@numba.njit(cache=True, inline="always")
def _step(s_hi: np.uint64, s_lo: np.uint64, inc_hi: np.uint64,
          inc_lo: np.uint64) -> tuple[np.uint64, np.uint64, np.uint64]:  # pragma: no cover
    """One PCG64 step (state = state · mult + inc): new state and its XSL-RR output."""
    lo = s_lo * _MULT_LO
    hi = _mul_hi(s_lo, _MULT_LO) + s_hi * _MULT_LO + s_lo * _MULT_HI
    new_lo = lo + inc_lo
    new_hi = hi + inc_hi + (np.uint64(1) if new_lo < lo else np.uint64(0))
    value = new_hi ^ new_lo
    rot = new_hi >> np.uint64(58)
    return new_hi, new_lo, (value >> rot) | (value << ((np.uint64(64) - rot) & np.uint64(63)))


@numba.njit(cache=True)
def _shuffle(buffer: np.ndarray, start: int, stop: int,
             rng: np.ndarray) -> None:  # pragma: no cover - numba
    """NumPy's ``Generator.shuffle`` of ``buffer[start:stop]`` with the PCG64 state ``rng``.

    ``rng`` = (state hi, state lo, inc hi, inc lo, has_uint32, uinteger), updated in place.
    For i = n−1, …, 1: j = ``random_interval(i)`` (uniform on [0, i] by masked rejection of
    buffered 32-bit draws, 64-bit draws above 2³² − 1), swap items i and j.
    """
    s_hi, s_lo, inc_hi, inc_lo = rng[0], rng[1], rng[2], rng[3]
    has32, spare = rng[4], rng[5]
    mask = np.uint64(0)
    if stop - start > 1:  # smallest 2^k − 1 >= the first bound, then shrunk as bounds fall
        mask = np.uint64(stop - start - 1)
        for shift in (1, 2, 4, 8, 16, 32):
            mask |= mask >> np.uint64(shift)
    for q in range(stop - start - 1, 0, -1):
        bound = np.uint64(q)
        while (mask >> np.uint64(1)) >= bound:
            mask >>= np.uint64(1)
        while True:
            if bound <= _MASK32:
                if has32 != 0:
                    has32 = np.uint64(0)
                    value = spare & mask
                else:
                    s_hi, s_lo, draw = _step(s_hi, s_lo, inc_hi, inc_lo)
                    has32 = np.uint64(1)
                    spare = draw >> np.uint64(32)
                    value = draw & _MASK32 & mask
            else:
                s_hi, s_lo, draw = _step(s_hi, s_lo, inc_hi, inc_lo)
                value = draw & mask
            if value <= bound:
                break
        r = start + np.int64(value)
        swap = buffer[start + q]
        buffer[start + q] = buffer[r]
        buffer[r] = swap
    rng[0], rng[1], rng[4], rng[5] = s_hi, s_lo, has32, spare


@numba.njit(cache=True)
def _count_one_way(tails: np.ndarray, heads: np.ndarray, labels: np.ndarray,
                   n_types: int) -> np.ndarray:  # pragma: no cover - numba
    """``one_way[a·K + b]`` = #edges with labels (a, b); four interleaved accumulators."""
    k2 = n_types * n_types
    acc = np.zeros(4 * k2, dtype=np.int64)
    m = len(tails)
    stop = m - m % 4
    for e in range(0, stop, 4):
        acc[labels[tails[e]] * n_types + labels[heads[e]]] += 1
        acc[k2 + labels[tails[e + 1]] * n_types + labels[heads[e + 1]]] += 1
        acc[2 * k2 + labels[tails[e + 2]] * n_types + labels[heads[e + 2]]] += 1
        acc[3 * k2 + labels[tails[e + 3]] * n_types + labels[heads[e + 3]]] += 1
    for e in range(stop, m):
        acc[labels[tails[e]] * n_types + labels[heads[e]]] += 1
    return acc[:k2] + acc[k2:2 * k2] + acc[2 * k2:3 * k2] + acc[3 * k2:]


@numba.njit(cache=True, parallel=True)
def _exceedance_kernel(tails: np.ndarray, heads: np.ndarray, labels: np.ndarray,
                       bounds: np.ndarray, states: np.ndarray, n_types: int,
                       expected: np.ndarray,
                       deviation: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """``labels`` in stratum order (segments ``bounds``); edges as positions in that order."""
    n_perm = states.shape[0]
    exceed = np.zeros((n_perm, n_types * n_types), dtype=np.uint8)
    for p in prange(n_perm):
        rng = np.zeros(6, dtype=np.uint64)  # state hi, lo, inc hi, lo, has_uint32, uinteger
        for q in range(4):
            rng[q] = states[p, q]
        shuffled = labels.copy()
        for g in range(len(bounds) - 1):
            _shuffle(shuffled, bounds[g], bounds[g + 1], rng)
        one_way = _count_one_way(tails, heads, shuffled, n_types)
        for a in range(n_types):
            for b in range(n_types):
                count = np.float64(one_way[a * n_types + b] + one_way[b * n_types + a])
                if abs(count - expected[a, b]) >= deviation[a, b]:
                    exceed[p, a * n_types + b] = 1
    return exceed


def permutation_exceedances(edges: np.ndarray, codes: np.ndarray, n_types: int,
                            groups: list[np.ndarray], seed: int, n_permutations: int,
                            expected: np.ndarray, deviation: np.ndarray) -> np.ndarray:
    """(K, K) number of permutations with ``|C* − expected| >= deviation`` (module docstring).

    ``groups`` are the strata's member indices (labels are shuffled within each, in order);
    ``edges`` the (m, 2) undirected edges, each counted in both directions.
    """
    label_dtype = np.int8 if n_types <= 127 else np.int32 if n_types < 2**31 else np.int64
    members = np.concatenate(groups) if groups else np.empty(0, dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum([len(g) for g in groups])]).astype(np.int64)
    # relabel cells by their position in the stratum order: the shuffled segments are then the
    # labels themselves (no scatter), and edges sorted by tail position are read in order
    index_dtype = np.int32 if len(codes) < 2**31 else np.int64
    position = np.empty(len(codes), dtype=index_dtype)
    position[members] = np.arange(len(members), dtype=index_dtype)
    tails, heads = position[edges[:, 0]], position[edges[:, 1]]
    by_tail = np.argsort(tails, kind="stable")
    exceed = _exceedance_kernel(
        np.ascontiguousarray(tails[by_tail]), np.ascontiguousarray(heads[by_tail]),
        np.ascontiguousarray(np.asarray(codes)[members], dtype=label_dtype), bounds,
        permutation_states(seed, n_permutations), int(n_types),
        np.ascontiguousarray(expected, dtype=np.float64),
        np.ascontiguousarray(deviation, dtype=np.float64))
    return exceed.sum(axis=0, dtype=np.int64).reshape(n_types, n_types).astype(np.float64)
