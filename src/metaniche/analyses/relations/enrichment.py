"""Neighbourhood enrichment: contact counts between cell types against a relabelling null.

Observed statistic (squidpy's convention): on an undirected contact graph, ``C[a, b]`` counts
*directed* edges ``i → j`` with ``type(i) = a`` and ``type(j) = b``, each undirected edge
contributing both directions. So ``C`` is symmetric, ``C[a, b]`` (a ≠ b) is the number of a–b
edges and ``C[a, a]`` is twice the number of a–a edges.

Null: the type labels are randomly permuted among the cells (the counts of each type fixed),
either over the whole sample or only within strata such as compartments (so that a type's
preference for the tumour border does not masquerade as attraction between cells).

Exact moments: mean and variance of ``C[a, b]`` under this null are computed in closed form
(join-count statistics for sampling without replacement, Cliff & Ord [1]_, generalised to
strata) in O(n · S² + m + S⁴ · K²) for n cells, m edges, S strata and K types: the second moment
sums, over pairs of directed edges, the probability that their endpoints carry the requested
labels, grouped by how the two edges share vertices (same edge, reversed edge, a shared vertex
in four positions, or four distinct vertices) and by the strata of the distinct vertices. The
z-score is ``(C − E) / sqrt(Var)``; its p-value is two-sided under the normal approximation,
``2 · Φ(−|z|)``.

Monte Carlo (optional): labels are permuted (within strata) and ``C`` recounted over the edge
list, O(n + m) per permutation (less when one type dominates), permutations in parallel
in Numba (:mod:`metaniche.analyses.relations._permute`); the two-sided p-value is
``(#{|C* − E| ≥ |C − E|} + 1) / (n_perm + 1)`` with E the exact mean. Permutation ``k`` has
its own seeded stream, so results do not depend on blocking or the number of threads.

References
----------
.. [1] Cliff A.D., Ord J.K. (1981) Spatial Processes: Models and Applications. Pion, London.
.. [2] Palla G. et al. (2022) Squidpy: a scalable framework for spatial omics analysis.
   Nat Methods 19:171–178 (``nhood_enrichment``).
.. [3] Stouffer S.A. et al. (1949) The American Soldier, vol. 1. Princeton University Press.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from metaniche.analyses.relations._permute import permutation_exceedances
from metaniche.config import RelationsParams

__all__ = ["EnrichmentResult", "combine_z_stouffer", "contact_counts", "enrichment_table",
           "join_count_moments", "neighbourhood_enrichment", "stouffer_z"]


@dataclass(frozen=True)
class EnrichmentResult:
    """Neighbourhood-enrichment matrices (K × K, symmetric).

    Attributes
    ----------
    observed, expected, variance
        Directed contact counts, their exact null mean and variance.
    z, p
        ``(observed − expected) / sqrt(variance)``; two-sided normal p-value (NaN if var = 0).
    p_permutation
        Monte Carlo two-sided p-value, or None without permutations.
    n_permutations
        Number of permutations used (0 for analytic only).
    """

    observed: np.ndarray
    expected: np.ndarray
    variance: np.ndarray
    z: np.ndarray
    p: np.ndarray
    p_permutation: np.ndarray | None
    n_permutations: int


def contact_counts(edges: np.ndarray, type_codes: np.ndarray, n_types: int) -> np.ndarray:
    """Directed contact-count matrix ``C`` (see module docstring) in O(m)."""
    codes = np.asarray(type_codes, dtype=np.int64)
    one_way = np.bincount(codes[edges[:, 0]] * n_types + codes[edges[:, 1]],
                          minlength=n_types * n_types).reshape(n_types, n_types)
    return (one_way + one_way.T).astype(np.float64)


def join_count_moments(edges: np.ndarray, type_codes: np.ndarray, n_types: int,
                       strata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and variance of every ``C[a, b]`` under random relabelling (within strata).

    Parameters
    ----------
    edges
        (m, 2) undirected edges without duplicates or self loops.
    type_codes
        (n,) type code per cell.
    n_types
        K.
    strata
        Optional (n,) integer stratum per cell; labels are permuted only within a stratum.

    Returns
    -------
    (mean, variance)
        K × K arrays. See the module docstring for the method.
    """
    codes = np.asarray(type_codes, dtype=np.int64)
    n = len(codes)
    if strata is None:
        strata = np.zeros(n, dtype=np.int64)
    _, strata = np.unique(np.asarray(strata), return_inverse=True)
    n_strata = int(strata.max()) + 1 if n else 1
    counts = np.bincount(codes * n_strata + strata,
                         minlength=n_types * n_strata).reshape(n_types, n_strata).astype(float)
    sizes = counts.sum(axis=0)

    i, j = edges[:, 0], edges[:, 1]
    # directed edge counts by (stratum of tail, stratum of head)
    e2 = np.bincount(strata[i] * n_strata + strata[j],
                     minlength=n_strata * n_strata).reshape(n_strata, n_strata).astype(float)
    e2 = e2 + e2.T
    # neighbour counts per cell and stratum, then ordered pairs of distinct neighbours by strata
    deg = (np.bincount(i * n_strata + strata[j], minlength=n * n_strata)
           + np.bincount(j * n_strata + strata[i], minlength=n * n_strata)
           ).reshape(n, n_strata).astype(float)
    p3 = np.zeros((n_strata, n_strata, n_strata))
    for c in range(n_strata):
        members = deg[strata == c]
        p3[c] = members.T @ members - np.diag(members.sum(axis=0))

    prob = _LabelProbability(counts, sizes)
    eq = np.eye(n_types)
    mean = np.zeros((n_types, n_types))
    second = np.zeros((n_types, n_types))
    quads = np.einsum("ab,cd->abcd", e2, e2)
    for s, t in itertools.product(range(n_strata), repeat=2):
        if e2[s, t] == 0:
            continue
        mean += e2[s, t] * prob((s, 0), (t, 1))
        second += e2[s, t] * prob((s, 0), (t, 1))                  # same directed edge
        second += e2[s, t] * prob((s, 0), (t, 0)) * eq            # reversed edge (a = b)
        quads[s, t, s, t] -= e2[s, t]
        quads[s, t, t, s] -= e2[s, t]
    for c, t1, t2 in itertools.product(range(n_strata), repeat=3):
        w = p3[c, t1, t2]
        if w == 0:
            continue
        second += w * prob((c, 0), (t1, 1), (t2, 1))              # shared tail
        second += w * prob((c, 1), (t1, 0), (t2, 0))              # shared head
        second += 2 * w * prob((c, 0), (t1, 0), (t2, 0)) * eq     # tail = head (a = b)
        quads[c, t1, c, t2] -= w
        quads[t1, c, t2, c] -= w
        quads[c, t1, t2, c] -= w
        quads[t1, c, c, t2] -= w
    for s1, s2, s3, s4 in itertools.product(range(n_strata), repeat=4):
        w = quads[s1, s2, s3, s4]
        if w <= 0:
            continue
        second += w * prob((s1, 0), (s2, 1), (s3, 0), (s4, 1))
    variance = np.maximum(second - mean**2, 0.0)
    return mean, variance


class _LabelProbability:
    """P(distinct cells in given strata carry labels a / b), as K × K arrays over (a, b).

    A demand ``(s, 0)`` asks for label a in stratum s, ``(s, 1)`` for label b. Within a
    stratum labels are drawn without replacement (falling factorials).
    """

    def __init__(self, counts: np.ndarray, sizes: np.ndarray) -> None:
        k = counts.shape[0]
        self.counts = counts
        self.sizes = sizes
        self.eq = np.eye(k)
        self.cache: dict[tuple, np.ndarray] = {}

    def __call__(self, *demands: tuple[int, int]) -> np.ndarray:
        key = demands
        if key in self.cache:
            return self.cache[key]
        k = self.counts.shape[0]
        result = np.ones((k, k))
        taken: dict[int, list[int]] = {}
        for stratum, symbol in demands:
            same, other = taken.setdefault(stratum, [0, 0])[symbol], taken[stratum][1 - symbol]
            available = (self.counts[:, stratum][:, None] if symbol == 0
                         else self.counts[:, stratum][None, :])
            numerator = np.maximum(available - same - other * self.eq, 0.0)
            denominator = self.sizes[stratum] - same - other
            result = result * (numerator / denominator if denominator > 0 else 0.0)
            taken[stratum][symbol] += 1
        self.cache[key] = result
        return result


def neighbourhood_enrichment(edges: np.ndarray, type_codes: np.ndarray, n_types: int,
                             strata: np.ndarray | None = None,
                             n_permutations: int = RelationsParams.n_permutations,
                             seed: int = RelationsParams.seed) -> EnrichmentResult:
    """Observed contacts, exact null moments, z, p and optional Monte Carlo p-values.

    Parameters
    ----------
    edges
        (m, 2) undirected contact edges (e.g. :func:`~metaniche.analyses.relations._graph.
        radius_edges` at 30 µm).
    type_codes
        (n,) type code per cell.
    n_types
        K.
    strata
        Optional (n,) stratum per cell (e.g. compartment): within-stratum null.
    n_permutations
        Monte Carlo permutations (0: analytic only, the default).
    seed
        Seed of the permutations.

    Returns
    -------
    EnrichmentResult
    """
    codes = np.asarray(type_codes, dtype=np.int64)
    observed = contact_counts(edges, codes, n_types)
    expected, variance = join_count_moments(edges, codes, n_types, strata)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(variance > 0, (observed - expected) / np.sqrt(variance), np.nan)
    p = 2.0 * stats.norm.sf(np.abs(z))
    p_perm = None
    if n_permutations > 0:
        deviation = np.abs(observed - expected) * (1 - 1e-12)
        groups = _strata_members(strata, len(codes))
        exceed = permutation_exceedances(edges, codes, n_types, groups, seed,
                                         int(n_permutations), expected, deviation)
        p_perm = (exceed + 1.0) / (n_permutations + 1.0)
    return EnrichmentResult(observed, expected, variance, z, p, p_perm, int(n_permutations))


def _strata_members(strata: np.ndarray | None, n: int) -> list[np.ndarray]:
    if strata is None:
        return [np.arange(n)]
    _, inverse = np.unique(np.asarray(strata), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, bounds)


def enrichment_table(result: EnrichmentResult, cell_types: Sequence[str]) -> pd.DataFrame:
    """Long table ``type_a, type_b, observed, expected, variance, z, p[, p_permutation]``."""
    k = len(cell_types)
    a, b = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    labels = np.asarray(cell_types, dtype=object)
    table = pd.DataFrame({
        "type_a": labels[a.ravel()], "type_b": labels[b.ravel()],
        "observed": result.observed.ravel(), "expected": result.expected.ravel(),
        "variance": result.variance.ravel(), "z": result.z.ravel(), "p": result.p.ravel(),
    })
    if result.p_permutation is not None:
        table["p_permutation"] = result.p_permutation.ravel()
    return table


def stouffer_z(z: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Stouffer's combined z: ``Σ w z / sqrt(Σ w²)`` over the finite z values [3]_."""
    z = np.asarray(z, dtype=np.float64)
    w = np.ones_like(z) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = np.isfinite(z) & np.isfinite(w)
    if not keep.any():
        return float("nan")
    return float(np.sum(w[keep] * z[keep]) / np.sqrt(np.sum(w[keep] ** 2)))


def combine_z_stouffer(table: pd.DataFrame, by: Sequence[str] = ("patient",),
                       pair: Sequence[str] = ("type_a", "type_b"),
                       z_column: str = "z") -> pd.DataFrame:
    """Combine per-sample enrichment z-scores per group (e.g. patient) with Stouffer's method.

    Never averages p-values: the combined ``z`` is :func:`stouffer_z` (equal weights) over the
    group's samples, and ``p = 2 Φ(−|z|)`` two-sided. Returns ``*by, *pair, n_samples, z, p``.
    """
    keys = [*by, *pair]
    grouped = table.groupby(keys, sort=True)[z_column]
    out = grouped.agg(n_samples=lambda s: int(np.isfinite(s).sum()),
                      z=lambda s: stouffer_z(s.to_numpy())).reset_index()
    out["p"] = 2.0 * stats.norm.sf(np.abs(out["z"]))
    return out
