"""Mixing scores (SPIAT, Keren et al.) and Shannon entropy of cell-type composition.

Radius boundary: a pair at distance exactly ``radius`` interacts (``<=``), as dbscan's
``frNN`` used by SPIAT. A cell never interacts with itself (index-based exclusion); a different
cell at the same position does.

Two conventions for reference–reference interactions exist and both are supported:

* ``"unordered"`` (SPIAT ≥ 1.0, default): each pair of reference cells within the radius is
  counted once. MS = RT / RR; normalised MS = MS · (n_ref − 1) / (2 · n_target), which is
  ``(RT / (n_ref·n_target)) / (RR / (n_ref (n_ref − 1) / 2))``.
* ``"ordered"`` (SPIAT 0.4, 2021): each pair counted twice (i→j and j→i). MS = RT / RR and
  normalised MS = MS · n_ref / n_target.

Keren's tumour–immune mixing score is the unordered score with immune cells as reference and
tumour cells as target: immune–tumour contacts / immune–immune contacts.

References
----------
.. [1] Keren L. et al. (2018) A structured tumor-immune microenvironment in triple negative
   breast cancer revealed by multiplexed ion beam imaging. Cell 174:1373–1387.
.. [2] Feng Y. et al. (2023) Spatial analysis with SPIAT and spaSim. Nat Commun 14:2697.
.. [3] Shannon C.E. (1948) A mathematical theory of communication. Bell Syst Tech J 27:379–423.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["MixingScore", "mixing_score", "neighbourhood_entropy", "shannon_entropy"]

CONVENTIONS = ("unordered", "ordered")


@dataclass(frozen=True)
class MixingScore:
    """Result of :func:`mixing_score`.

    Attributes
    ----------
    n_reference, n_target
        Numbers of reference and target cells.
    reference_target
        Reference–target pairs within the radius (each pair once).
    reference_reference
        Reference–reference pairs within the radius, counted per ``convention``.
    score
        ``reference_target / reference_reference`` (NaN when the denominator is 0).
    normalised
        Normalised mixing score of the convention (module docstring); NaN when undefined.
    convention
        ``"unordered"`` or ``"ordered"``.
    """

    n_reference: int
    n_target: int
    reference_target: int
    reference_reference: int
    score: float
    normalised: float
    convention: str


def mixing_score(coordinates: np.ndarray, is_reference: np.ndarray, is_target: np.ndarray,
                 radius: float, convention: str = "unordered") -> MixingScore:
    """SPIAT mixing score and normalised mixing score of reference vs target cells [1]_ [2]_.

    Parameters
    ----------
    coordinates
        (n, 2) positions.
    is_reference, is_target
        Boolean masks (disjoint) of reference and target cells.
    radius
        Interaction radius (``<=``), same unit as ``coordinates``.
    convention
        ``"unordered"`` (SPIAT ≥ 1.0) or ``"ordered"`` (SPIAT 0.4); see the module docstring.

    Notes
    -----
    Two KD-trees (reference, target), ``count_neighbors``: O(n log n + pairs).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"`convention` must be one of {CONVENTIONS}; got {convention!r}.")
    coordinates = np.asarray(coordinates, dtype=np.float64)
    reference = coordinates[np.asarray(is_reference, dtype=bool)]
    target = coordinates[np.asarray(is_target, dtype=bool)]
    n_ref, n_target = len(reference), len(target)
    nan = float("nan")
    if n_ref == 0 or n_target == 0:
        return MixingScore(n_ref, n_target, 0, 0, nan, nan, convention)
    ref_tree = cKDTree(reference)
    rt = int(ref_tree.count_neighbors(cKDTree(target), float(radius)))
    ordered = int(ref_tree.count_neighbors(ref_tree, float(radius))) - n_ref  # drop self pairs
    rr = ordered if convention == "ordered" else ordered // 2
    if rr == 0:
        return MixingScore(n_ref, n_target, rt, rr, nan, nan, convention)
    score = rt / rr
    if convention == "ordered":
        normalised = score * n_ref / n_target
    else:
        normalised = score * (n_ref - 1) / (2.0 * n_target)
    return MixingScore(n_ref, n_target, rt, rr, score, normalised, convention)


def shannon_entropy(counts: np.ndarray, base: float = 2.0, axis: int = -1) -> np.ndarray:
    """Shannon entropy ``−Σ p log_base p`` of compositions given as counts [3]_.

    ``0 log 0 = 0``; an all-zero composition has entropy 0 (SPIAT's convention). SPIAT ≥ 1.0
    ``calculate_entropy`` uses base 2, SPIAT 0.4 ``entropy`` base 10.
    """
    counts = np.moveaxis(np.asarray(counts, dtype=np.float64), axis, -1)
    if counts.shape[-1] == 0:
        return np.zeros(counts.shape[:-1])
    flat = counts.reshape(-1, counts.shape[-1])
    total = flat.sum(axis=1)
    # only the non-zero counts contribute (0 log 0 = 0): O(non-zeros) logarithms
    row, column = np.nonzero(flat)
    p = flat[row, column] / total[row]
    entropy = -np.bincount(row, weights=p * np.log(p), minlength=len(flat)) / np.log(base)
    return entropy.reshape(counts.shape[:-1])


def neighbourhood_entropy(edges: np.ndarray, type_codes: np.ndarray, n_types: int,
                          types_of_interest: Sequence[int] | None = None,
                          base: float = 2.0) -> np.ndarray:
    """Per-cell Shannon entropy of the types of its graph neighbours (itself excluded).

    Parameters
    ----------
    edges
        (m, 2) undirected edges (e.g. a radius graph: SPIAT's ``calculate_entropy`` with a
        radius counts neighbours within the radius).
    type_codes
        (n,) type code per cell.
    n_types
        Number of types.
    types_of_interest
        Only these types enter the composition (SPIAT's ``cell_types_of_interest``); default all.
    base
        Logarithm base (2 as SPIAT ≥ 1.0).

    Returns
    -------
    numpy.ndarray
        (n,) entropy; 0 for cells without neighbours of the types of interest. O(n + m).
    """
    n = len(type_codes)
    codes = np.asarray(type_codes, dtype=np.int64)
    rows = np.concatenate([edges[:, 0], edges[:, 1]]).astype(np.int64)
    cols = np.concatenate([codes[edges[:, 1]], codes[edges[:, 0]]])
    counts = np.bincount(rows * n_types + cols, minlength=n * n_types).reshape(n, n_types)
    if types_of_interest is not None:
        counts = counts[:, list(types_of_interest)]
    return shannon_entropy(counts, base=base)
