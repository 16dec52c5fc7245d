"""Co-occurrence ratio of cell types over distance, with squidpy's definition, without N×N.

squidpy (``squidpy.gr.co_occurrence``, ≥ 1.6) counts, for thresholds ``t_r = interval[r + 1]``,
ordered pairs of distinct cells ``(i, j)`` with ``d_ij ≤ t_r`` (cumulative discs, not shells;
``interval[0]`` is unused), giving counts ``N[a, b, r]``. With ``S[b, r] = Σ_a N[a, b, r]`` and
``p(a, r) = S[a, r] / Σ_b S[b, r]`` the ratio is

    ratio[a, b, r] = (N[b, a, r] / S[b, r]) / p(a, r),

i.e. p(a | b within t_r) / p(a), set to 0 where ``p(a) = 0`` or ``S[b] = 0``. Because ``N`` is
symmetric the ratio is symmetric in (a, b). ``cumulative=False`` counts shells
``t_{r−1} < d ≤ t_r`` (with ``t_{−1} = interval[0]``) instead, the definition of squidpy ≤ 1.2.

Here the pairs are binned on the fly up to ``max(interval)`` by a Numba cell-list kernel
(O(pairs) time, O(n) memory, no pair arrays), where squidpy compares every pair of cells.

References
----------
.. [1] Palla G. et al. (2022) Squidpy: a scalable framework for spatial omics analysis.
   Nat Methods 19:171–178.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.spatial import cKDTree

from metaniche.analyses.relations._graph import PairChunks
from metaniche.analyses.relations._pairbins import bin_pair_chunks, bin_pairs_within

__all__ = ["co_occurrence", "co_occurrence_table"]


def co_occurrence(coordinates: np.ndarray, type_codes: np.ndarray, n_types: int,
                  interval: npt.ArrayLike, tree: cKDTree | None = None,
                  cumulative: bool = True, chunk_size: int = 50_000,
                  pairs: PairChunks | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Co-occurrence ratio (K, K, len(interval) − 1) and the pair counts behind it.

    Parameters
    ----------
    coordinates
        (n, 2) positions.
    type_codes
        (n,) type codes.
    n_types
        K.
    interval
        Sorted distance thresholds (≥ 2 values), as squidpy's ``interval`` array.
    tree
        Unused; kept for compatibility (pairs are binned on the fly by a Numba cell-list
        kernel, :mod:`metaniche.analyses.relations._pairbins`).
    cumulative
        squidpy ≥ 1.6 discs (default) or shells (module docstring).
    chunk_size
        Unused; kept for compatibility.
    pairs
        Optional precomputed directed pair chunks covering at least ``max(interval)``.

    Returns
    -------
    (ratio, counts)
        Both (K, K, R) with R = len(interval) − 1.
    """
    edges = np.sort(np.asarray(interval, dtype=np.float64))
    if len(edges) < 2:
        raise ValueError(f"`interval` needs at least 2 values; got {len(edges)}.")
    codes = np.asarray(type_codes, dtype=np.int64)
    thresholds = edges[1:]
    n_r = len(thresholds)
    lower = -np.inf if cumulative else float(edges[0])
    if pairs is not None:
        flat = bin_pair_chunks(pairs, np.zeros((len(codes), 2)), codes, n_types, thresholds,
                               lower)
    else:
        flat = bin_pairs_within(coordinates, codes, n_types, thresholds, lower)
    counts = flat.reshape(n_types, n_types, n_r)
    if cumulative:
        counts = np.cumsum(counts, axis=-1)
    column_sums = counts.sum(axis=0)                 # S[b, r]
    totals = column_sums.sum(axis=0)                 # (R,)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = column_sums / totals                     # p(a, r)
        conditional = np.transpose(counts, (1, 0, 2)) / column_sums[None, :, :]
        ratio = conditional / p[:, None, :]
    valid = (p[:, None, :] > 0) & (column_sums[None, :, :] > 0)
    ratio = np.where(valid, ratio, 0.0)
    return ratio, counts


def co_occurrence_table(ratio: np.ndarray, interval: npt.ArrayLike, cell_types: Sequence[str],
                        cumulative: bool = True) -> pd.DataFrame:
    """Long table ``type_a, type_b, bin_start_um, bin_end_um, ratio``.

    For cumulative (squidpy) counts ``bin_start_um`` is 0: the ratio covers all pairs with
    ``0 ≤ d ≤ bin_end_um``.
    """
    edges = np.sort(np.asarray(interval, dtype=np.float64))
    n_types, _, n_r = ratio.shape
    a, b, r = np.meshgrid(np.arange(n_types), np.arange(n_types), np.arange(n_r),
                          indexing="ij")
    labels = np.asarray(cell_types, dtype=object)
    start = np.zeros(n_r) if cumulative else edges[:-1]
    return pd.DataFrame({
        "type_a": labels[a.ravel()], "type_b": labels[b.ravel()],
        "bin_start_um": start[r.ravel()], "bin_end_um": edges[1:][r.ravel()],
        "ratio": ratio.ravel(),
    })
