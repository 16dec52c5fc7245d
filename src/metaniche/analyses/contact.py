"""Does proximity change state? The effect of contact with type B on a marker or state of A.

For every focus type A, outcome m (a marker intensity or a cell state) and partner type B ≠ A,
the cells of A are regressed on their exposure to B, adjusted for *place*, so that an effect
that is really the tissue region's (at the invasive border macrophages are dense *and* T
cells are exhausted) is not reported as a contact effect.

Model
-----
For the n cells i of type A with a finite outcome::

    y_i = b0 + β·e_i + Σ_c γ_c·[compartment_i = c] + f(d_i) + Σ_l λ_l·[lesion_i = l]
          + δ·ρ_i + ε_i                                                    (intensities)
    logit P(y_i = 1) = the same right-hand side without ε                  (states)

- ``y_i``: the marker, transformed by ``transform`` (``log1p``: log(1 + value), the default;
  ``none``), or the 0/1 state call;
- ``e_i`` the **exposure**: ``count`` (default) = number of B cells at distance ``0 < d <=
  radius_um`` from cell i (the cell itself excluded); or ``log_distance`` = natural log of the
  distance (µm) to the nearest B cell, floored at 1 µm;
- ``compartment`` (core / border / adjacent; treatment coding, the first present level is the
  reference), ``f(d)`` a natural (restricted) cubic spline of the signed distance to the
  tumour boundary d (µm, negative inside) with ``spline_knots`` knots at Harrell's quantiles
  of the A cells' distances (linear beyond the outer knots) [3]_, ``lesion`` indicators (the
  lesion containing the cell, or the nearest one), and ``ρ_i`` the local density of all cells
  (cells/mm² within ``density_radius_um``, the cell itself excluded). Terms that do not vary
  in a sample (one compartment, one lesion, no tumour so no distance) are left out and the
  ``adjusted_for`` column says which were used. ``adjust=False`` fits ``y ~ e`` alone.

``β`` (column ``effect``) is the change in the transformed marker (or the log odds ratio of the
state) per additional B cell within the radius (``count``) or per e-fold increase of the
distance to the nearest B (``log_distance``; negative = higher near B).

Standard errors are **cluster-robust** with clusters = square spatial blocks of ``block_um``
(default 200 µm), since neighbouring cells share unmeasured microenvironment [1]_.
Intensities: OLS with the CR1 sandwich ``V = c·(X'X)⁻¹(Σ_g X_g'u_g u_g'X_g)(X'X)⁻¹``,
``c = G/(G−1)·(N−1)/(N−K)`` (statsmodels ``cov_type="cluster"``), computed for β alone by the
Frisch–Waugh–Lovell theorem (the place design is shared by every outcome and partner); Wald t
on G − 1 degrees of freedom (Cameron & Miller 2015 §VI [1]_), interval β ± t_{G−1} se.
States: binomial GLM (logit) fitted by statsmodels with ``cov_type="cluster"`` on the same
blocks; Wald z with its normal interval.

Nulls that respect tissue structure
-----------------------------------
Two Monte Carlo nulls, each with ``n_permutations`` draws, reported beside the model p; their
statistic is β of the place-adjusted linear fit (for states: the linear-probability model), so
that a batch of draws is three matrix products rather than a GLM fit or a sandwich per draw;
the null distribution is generated for each pair, so the statistic need not be studentised.
Two-sided: ``p = (1 + #{|β*| >= |β|}) / (1 + n)``.

1. ``p_perm`` — **stratified label shuffle**: the labels of the cells not of type A are
   permuted within strata of compartment × signed-distance band (``band_um`` wide), so every
   stratum keeps its number of B cells (B stays dense where it is dense) while its position
   relative to the A cells within the stratum is randomised; exposures are recounted. Draw k
   shuffles the labels of *all* cells within every stratum once (Fisher–Yates over the cells
   in (stratum, y, x) order, so independent of the input's row order); for focus type A the
   cells not of type A take, in that order, the draw's labels other than A — within a stratum
   a uniformly random permutation of their own labels, A cells untouched — so one shuffle
   serves every focus type.
2. ``p_shift`` — **toroidal shift**: the whole pattern of partner cells is translated by a
   random vector on the torus of the sample's bounding box (wrapping around), so B keeps its
   own clustering but loses its alignment with the A cells (and with place) [4]_; the shift is
   at least ``2·radius_um`` long. Applied only where the tissue allows: when it covers at
   least :data:`MIN_SHIFT_OCCUPANCY` of its bounding box (share of ``band_um`` squares
   holding a cell), else NaN with a warning.

Draw k of a null uses its own generator ``SeedSequence(seed, spawn_key=(null, 0, k))``
(null 0 = shuffle, 1 = shift; one shuffle and one shift per k for every A), so the result of
a pair depends neither on the other pairs analysed nor on how draws are split into blocks or
threads (draws run on Numba's thread count, each draw whole on one thread).

Cost per draw, with n_A focus cells, P partners, M outcomes and K place columns: the shuffle
is O(n) once plus, per focus type, O(n + neighbour pairs of the A cells + n_A·P·(M + K)); the
shift scans, per focus type, the partner cells in the bins within ``radius_um`` of every
translated A cell, O(n_A·(ρ_B·(2·⌈r/w⌉ + 1)²·w² + P·(M + K))) for the density ρ_B of all
partner cells and cell-list bin width w ≥ r.

Pairs with B = A are not tested (the shuffle cannot move A's own labels without changing the
cells analysed). ``q`` is the Benjamini–Hochberg adjustment of ``p`` over every row of the
sample. Compared with Statial's ``calcStateChanges`` [2]_, which regresses a marker on the
distance to or abundance of another type without a region adjustment, this adds place and
clustered standard errors.

References
----------
.. [1] Cameron A.C., Miller D.L. (2015) A practitioner's guide to cluster-robust inference.
   J Hum Resour 50:317–372.
.. [2] Ameen F., et al. (2024) Statial: spatial state changes of cells (Bioconductor package
   Statial, ``calcStateChanges``).
.. [3] Harrell F.E. (2015) Regression Modeling Strategies, 2nd ed., §2.4.5 (restricted cubic
   splines). Springer.
.. [4] Lotwick H.W., Silverman B.W. (1982) Methods for analysing spatial processes of several
   types of points. J R Stat Soc B 44:406–413 (toroidal shift test).
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd
from numba import prange
from scipy import stats
from scipy.linalg import qr
from scipy.spatial import cKDTree
from threadpoolctl import threadpool_limits

from metaniche._multitest import benjamini_hochberg
from metaniche.analyses.compartments import COMPARTMENTS
from metaniche.analyses.relations._grid import CellGrid
from metaniche.config import CONTACT_EXPOSURES, ContactParams

__all__ = [
    "CONTACT_COLUMNS",
    "MIN_SHIFT_OCCUPANCY",
    "PROFILE_COLUMNS",
    "ContactResult",
    "contact_effects",
    "counts_within",
    "natural_spline_basis",
    "spatial_blocks",
]

#: Columns of the ``state_changes`` table (``sample`` is prepended when written).
CONTACT_COLUMNS = ["cell_type", "marker", "partner_type", "exposure", "n_cells", "n_exposed",
                   "effect", "ci_low", "ci_high", "p", "p_perm", "q", "adjusted_for",
                   "p_shift", "model", "statistic", "n_clusters"]
#: Columns of the ``state_change_profiles`` table (mean outcome by exposure count).
PROFILE_COLUMNS = ["cell_type", "marker", "partner_type", "compartment", "n_partners",
                   "n_cells", "mean"]
#: Least share of the bounding box (``band_um`` squares holding a cell) for the shift null.
MIN_SHIFT_OCCUPANCY = 0.75
#: Distances below this (µm) count as this in the ``log_distance`` exposure.
LOG_DISTANCE_FLOOR_UM = 1.0
#: Exposure counts shown in the profiles: 0, 1, 2 and "3 or more" (n_partners = 3).
_PROFILE_TOP = 3
_NULL_SHUFFLE, _NULL_SHIFT = 0, 1


@dataclass
class ContactResult:
    """Output of :func:`contact_effects`.

    Attributes
    ----------
    table
        One row per tested (cell_type, marker, partner_type): :data:`CONTACT_COLUMNS`.
    profiles
        For the ``top_profiles`` rows of smallest p: mean outcome (transformed; fraction for a
        state) of the A cells by number of B cells within the radius (3 = three or more) in
        each compartment: :data:`PROFILE_COLUMNS`.
    warnings
        Why a requested pair or a null was not computed, and the fix.
    """

    table: pd.DataFrame
    profiles: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


# --- neighbour counts -------------------------------------------------------------------------

def _counts_body(qx: np.ndarray, qy: np.ndarray, qself: np.ndarray, x: np.ndarray,
                   y: np.ndarray, codes: np.ndarray, order: np.ndarray, starts: np.ndarray,
                   n_bx: int, n_by: int, x0: float, y0: float, width: float, radius: float,
                   periodic: bool, out: np.ndarray) -> None:  # pragma: no cover - numba
    """Per query point, cells of each code at ``d <= radius`` (the query's own cell excluded),
    added to ``out`` (n_query, n_types) int32, zeroed by the caller (an allocation here
    slowed the parallel kernel's first compilation)."""
    n_q = len(qx)
    r2 = radius * radius
    reach = int(np.ceil(radius / width))
    period_x = n_bx * width
    period_y = n_by * width
    for i in prange(n_q):
        xi = qx[i]
        yi = qy[i]
        bx = min(max(int((xi - x0) / width), 0), n_bx - 1)
        by = min(max(int((yi - y0) / width), 0), n_by - 1)
        for oy in range(-reach, reach + 1):
            cy = by + oy
            if periodic:
                cy = cy % n_by
            elif cy < 0 or cy >= n_by:
                continue
            for ox in range(-reach, reach + 1):
                cx = bx + ox
                if periodic:
                    cx = cx % n_bx
                elif cx < 0 or cx >= n_bx:
                    continue
                b = cy * n_bx + cx
                for j in range(starts[b], starts[b + 1]):
                    if order[j] == qself[i]:
                        continue
                    dx = xi - x[j]
                    dy = yi - y[j]
                    if periodic:
                        dx -= period_x * np.floor(dx / period_x + 0.5)
                        dy -= period_y * np.floor(dy / period_y + 0.5)
                    if dx * dx + dy * dy <= r2:
                        out[i, codes[j]] += 1


#: The kernel over threads (Numba ``prange``) for many query points, serial for few (thread
#: start-up costs more than a few hundred queries); each row depends only on the input, so
#: both give identical counts.
_counts_parallel = numba.njit(cache=True, parallel=True)(_counts_body)
_counts_serial = numba.njit(cache=True)(_counts_body)
#: Fewest query points for the threaded kernel.
_PARALLEL_MIN_QUERIES = 2_000_000


@numba.njit(cache=True, parallel=True)
def _totals_sorted(x: np.ndarray, y: np.ndarray, starts: np.ndarray, n_bx: int, n_by: int,
                   x0: float, y0: float, width: float, radius: float,
                   out: np.ndarray) -> None:  # pragma: no cover - numba
    """Per sorted cell, the other cells at ``d <= radius`` (the test of :func:`_counts_body`),
    in the cell list's order, into ``out`` (allocated by the caller: an allocation in the
    parallel kernel slowed its first compilation)."""
    n = len(x)
    r2 = radius * radius
    reach = int(np.ceil(radius / width))
    for i in prange(n):
        xi = x[i]
        yi = y[i]
        bx = min(max(int((xi - x0) / width), 0), n_bx - 1)
        by = min(max(int((yi - y0) / width), 0), n_by - 1)
        count = 0
        for cy in range(max(by - reach, 0), min(by + reach, n_by - 1) + 1):
            row = cy * n_bx
            for j in range(starts[row + max(bx - reach, 0)],
                           starts[row + min(bx + reach, n_bx - 1) + 1]):
                dx = xi - x[j]
                dy = yi - y[j]
                count += dx * dx + dy * dy <= r2
        out[i] = count - 1                                   # the cell itself



def _neighbours_body(qx: np.ndarray, qy: np.ndarray, qself: np.ndarray, x: np.ndarray,
                     y: np.ndarray, order: np.ndarray, starts: np.ndarray, n_bx: int, n_by: int,
                     x0: float, y0: float, width: float, radius: float, ptr: np.ndarray,
                     out: np.ndarray, fill: bool) -> None:  # pragma: no cover - numba
    """Sorted index of every cell at ``d <= radius`` from each query point (its own cell
    excluded; the test of :func:`_counts_body`): ``fill`` writes them to ``out[ptr[i]:ptr[i +
    1]]`` (in bin order), else the number of them to ``ptr[i + 1]``."""
    n_q = len(qx)
    r2 = radius * radius
    reach = int(np.ceil(radius / width))
    for i in prange(n_q):
        xi = qx[i]
        yi = qy[i]
        bx = min(max(int((xi - x0) / width), 0), n_bx - 1)
        by = min(max(int((yi - y0) / width), 0), n_by - 1)
        at = ptr[i] if fill else 0
        for oy in range(-reach, reach + 1):
            cy = by + oy
            if cy < 0 or cy >= n_by:
                continue
            for ox in range(-reach, reach + 1):
                cx = bx + ox
                if cx < 0 or cx >= n_bx:
                    continue
                b = cy * n_bx + cx
                for j in range(starts[b], starts[b + 1]):
                    if order[j] == qself[i]:
                        continue
                    dx = xi - x[j]
                    dy = yi - y[j]
                    if dx * dx + dy * dy <= r2:
                        if fill:
                            out[at] = j
                        at += 1
        if not fill:
            ptr[i + 1] = at


_neighbours_parallel = numba.njit(cache=True, parallel=True)(_neighbours_body)


@numba.njit(cache=True, nogil=True)
def _shuffle_fill(shuffled: np.ndarray, a_code: int, ptr: np.ndarray,
                  neighbour_slot: np.ndarray, partner_of: np.ndarray, out: np.ndarray,
                  squares: np.ndarray) -> None:  # pragma: no cover - numba
    """Exposures of one stratified shuffle for focus type A.

    ``shuffled`` holds the draw's labels of all cells in canonical order; its labels other
    than ``a_code``, in order, are the labels of the cells not of type A in canonical order
    (within every stratum the number of such labels equals the number of such cells).
    ``out[i, p]`` is the number of row i's neighbours (indices ``neighbour_slot[ptr[i]:ptr[i
    + 1]]`` into those cells) whose label maps to partner p (``partner_of``; ``out.shape[1]`` =
    none, not counted); ``squares[p]`` = Σ_i out[i, p]².
    """
    values = np.empty(len(shuffled), dtype=shuffled.dtype)
    n_values = 0
    for t in range(len(shuffled)):
        label = shuffled[t]
        values[n_values] = label
        n_values += label != a_code
    n_pairs = out.shape[1]
    counts = np.zeros(n_pairs + 1, dtype=np.int64)
    total = np.zeros(n_pairs, dtype=np.int64)
    for i in range(len(ptr) - 1):
        for t in range(ptr[i], ptr[i + 1]):
            counts[partner_of[values[neighbour_slot[t]]]] += 1
        for p in range(n_pairs):
            out[i, p] = counts[p]
            total[p] += counts[p] * counts[p]
            counts[p] = 0
        counts[n_pairs] = 0
    for p in range(n_pairs):  # loops, not slice assignments: those cost Numba 1.5 s to compile
        squares[p] = total[p]


@numba.njit(cache=True, nogil=True)
def _shuffle_segments(uniforms: np.ndarray, values: np.ndarray,
                      bounds: np.ndarray) -> None:  # pragma: no cover - numba
    """Fisher–Yates shuffle of ``values[bounds[s]:bounds[s + 1]]`` for every segment s, in
    order, i from the segment's end down to its second element, swapping values[i] with
    ``values[lo + ⌊u·(i − lo + 1)⌋]`` for the next uniform u."""
    at = 0
    for s in range(len(bounds) - 1):
        lo = bounds[s]
        for i in range(bounds[s + 1] - 1, lo, -1):
            j = lo + int(uniforms[at] * (i - lo + 1))
            at += 1
            values[i], values[j] = values[j], values[i]


@numba.njit(cache=True, nogil=True)
def _shift_fill(qx: np.ndarray, qy: np.ndarray, vx: float, vy: float, cells: np.ndarray,
                starts: np.ndarray, n_bx: int, n_by: int, x0: float, y0: float, width: float,
                radius: float, out: np.ndarray,
                squares: np.ndarray) -> None:  # pragma: no cover - numba
    """One toroidal shift v: ``out[i, p]`` = partner-p cells within ``radius`` (``<=``,
    minimum-image distance) of query point i translated by −v on the torus of whole bins;
    ``squares[p]`` = Σ_i out[i, p]².

    ``cells`` (m, 3) holds x, y and the partner index (as a float; ``out.shape[1]`` = none,
    not counted) of the cells of a cell list, bin b being ``starts[b]:starts[b + 1]``. A
    point whose scanned bins do not wrap, on a torus wider than twice the scanned reach, has
    minimum-image differences equal to the plain ones, so it scans each row of bins as one
    contiguous range without wrapping (the same decisions as the general path).
    """
    n_pairs = out.shape[1]
    r2 = radius * radius
    reach = int(np.ceil(radius / width))
    period_x = n_bx * width
    period_y = n_by * width
    half_x = period_x / 2
    half_y = period_y / 2
    plain = n_bx > 2 * (reach + 1) and n_by > 2 * (reach + 1)
    counts = np.zeros(n_pairs + 1, dtype=np.int64)
    total = np.zeros(n_pairs, dtype=np.int64)
    for i in range(len(qx)):
        px = qx[i] - vx - x0
        py = qy[i] - vy - y0
        turns = px / period_x                      # px − period·⌊px/period⌋, ⌊⌋ = 0 skipped
        if turns < 0.0 or turns >= 1.0:
            px -= period_x * np.floor(turns)
        turns = py / period_y
        if turns < 0.0 or turns >= 1.0:
            py -= period_y * np.floor(turns)
        bx = min(int(px / width), n_bx - 1)
        by = min(int(py / width), n_by - 1)
        px += x0
        py += y0
        if plain and reach <= bx < n_bx - reach and reach <= by < n_by - reach:
            for cy in range(by - reach, by + reach + 1):
                row = cy * n_bx
                for j in range(starts[row + bx - reach], starts[row + bx + reach + 1]):
                    dx = px - cells[j, 0]
                    dy = py - cells[j, 1]
                    counts[int(cells[j, 2])] += dx * dx + dy * dy <= r2
        else:
            for oy in range(-reach, reach + 1):
                cy = (by + oy) % n_by
                for ox in range(-reach, reach + 1):
                    b = cy * n_bx + (bx + ox) % n_bx
                    for j in range(starts[b], starts[b + 1]):
                        dx = px - cells[j, 0]
                        dy = py - cells[j, 1]
                        if dx > half_x:
                            dx -= period_x
                        elif dx < -half_x:
                            dx += period_x
                        if dy > half_y:
                            dy -= period_y
                        elif dy < -half_y:
                            dy += period_y
                        counts[int(cells[j, 2])] += dx * dx + dy * dy <= r2
        for p in range(n_pairs):
            out[i, p] = counts[p]
            total[p] += counts[p] * counts[p]
            counts[p] = 0
        counts[n_pairs] = 0
    for p in range(n_pairs):  # loops, not slice assignments: those cost Numba 1.5 s to compile
        squares[p] = total[p]


class _Counter:
    """Counts of each code within a radius around query points, on one cell grid."""

    def __init__(self, coordinates: np.ndarray, radius_um: float) -> None:
        n = len(coordinates)
        self.grid = CellGrid(coordinates, radius_um, max_bins=4 * n + 16)
        self.radius = float(radius_um)
        self.reach = math.ceil(self.radius / self.grid.width)

    @property
    def periods(self) -> tuple[float, float]:
        """Torus side lengths (µm): whole bins covering the bounding box."""
        return self.grid.n_bx * self.grid.width, self.grid.n_by * self.grid.width

    def can_wrap(self) -> bool:
        """Whether the torus is wide enough that no bin is scanned twice."""
        side = 2 * self.reach + 1
        return self.grid.n_bx >= side and self.grid.n_by >= side

    def counts(self, query: np.ndarray, query_self: np.ndarray, codes: np.ndarray,
               n_types: int, periodic: bool = False) -> np.ndarray:
        """(n_query, n_types) int32 counts at ``d <= radius`` (cell ``query_self[i]`` excluded)."""
        sorted_codes = np.asarray(codes, np.int64)[self.grid.order]
        return self.counts_sorted(query, query_self, sorted_codes, n_types, periodic)

    def totals(self) -> np.ndarray:
        """(n,) other cells at ``d <= radius`` of every cell (input order)."""
        grid = self.grid
        in_grid_order = np.empty(len(grid.order), dtype=np.int64)
        _totals_sorted(grid.x, grid.y, grid.starts, grid.n_bx, grid.n_by, grid.x0, grid.y0,
                       grid.width, self.radius, in_grid_order)
        out = np.empty(len(grid.order), dtype=np.int64)
        out[grid.order] = in_grid_order
        return out

    def neighbours(self, query: np.ndarray, query_self: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Cells at ``d <= radius`` of each query point (cell ``query_self[i]`` excluded) as a
        compressed row list: sorted-cell indices ``index[ptr[i]:ptr[i + 1]]`` (bin order)."""
        grid = self.grid
        qx = np.ascontiguousarray(query[:, 0], dtype=np.float64)
        qy = np.ascontiguousarray(query[:, 1], dtype=np.float64)
        qself = np.ascontiguousarray(query_self, dtype=np.int64)
        ptr = np.zeros(len(qx) + 1, dtype=np.int64)
        args = (qx, qy, qself, grid.x, grid.y, grid.order, grid.starts, grid.n_bx, grid.n_by,
                grid.x0, grid.y0, grid.width, self.radius, ptr)
        _neighbours_parallel(*args, np.zeros(0, dtype=np.int64), False)
        np.cumsum(ptr, out=ptr)
        index = np.empty(int(ptr[-1]), dtype=np.int64)
        _neighbours_parallel(*args, index, True)
        return ptr, index

    def counts_sorted(self, query: np.ndarray, query_self: np.ndarray, sorted_codes: np.ndarray,
                      n_types: int, periodic: bool = False) -> np.ndarray:
        """:meth:`counts` with the codes already in the cell list's order."""
        grid = self.grid
        sorted_codes = np.ascontiguousarray(sorted_codes, dtype=np.int64)
        kernel = _counts_parallel if len(query) >= _PARALLEL_MIN_QUERIES else _counts_serial
        out = np.zeros((len(query), int(n_types)), dtype=np.int32)
        kernel(np.ascontiguousarray(query[:, 0], dtype=np.float64),
               np.ascontiguousarray(query[:, 1], dtype=np.float64),
               np.ascontiguousarray(query_self, dtype=np.int64), grid.x, grid.y, sorted_codes,
               grid.order, grid.starts, grid.n_bx, grid.n_by, grid.x0, grid.y0, grid.width,
               self.radius, bool(periodic), out)
        return out


def counts_within(coordinates: np.ndarray, codes: np.ndarray, n_types: int, radius_um: float,
                  rows: np.ndarray | None = None) -> np.ndarray:
    """Number of cells of each type at distance ``0 < d <= radius_um`` … of each (row) cell.

    The cell itself is excluded; a coincident other cell (d = 0) counts. Distances as
    ``cKDTree`` computes them. O(n + candidate pairs) with a Numba cell list.

    Parameters
    ----------
    coordinates
        (n, 2) µm.
    codes
        (n,) type codes in ``[0, n_types)``.
    n_types
        Number of codes.
    radius_um
        Radius (µm, inclusive).
    rows
        Cells to count around (default all).

    Returns
    -------
    numpy.ndarray
        (len(rows), n_types) int32.
    """
    coordinates = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    rows = np.arange(len(coordinates)) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(coordinates) == 0:
        return np.zeros((len(rows), n_types), dtype=np.int32)
    counter = _Counter(coordinates, radius_um)
    return counter.counts(coordinates[rows], rows, codes, n_types)


# --- design -----------------------------------------------------------------------------------

def natural_spline_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Restricted (natural) cubic spline basis of ``x`` without the intercept.

    Columns ``x`` and, for j = 1 … K − 2, ``[(x − t_j)³₊ − (x − t_{K−1})³₊ (t_K − t_j) /
    (t_K − t_{K−1}) + (x − t_K)³₊ (t_{K−1} − t_j) / (t_K − t_{K−1})] / (t_K − t_1)²``
    (Harrell 2015 §2.4.5): cubic between the knots, linear beyond the outer ones. K − 1
    columns for K distinct knots (just ``x`` for fewer than 3).
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.unique(np.asarray(knots, dtype=np.float64))
    columns = [x]
    k = len(t)
    if k >= 3:
        scale = (t[-1] - t[0]) ** 2

        def cube(v: np.ndarray) -> np.ndarray:
            return np.maximum(v, 0.0) ** 3

        tail_a = cube(x - t[-2])
        tail_b = cube(x - t[-1])
        for j in range(k - 2):
            columns.append((cube(x - t[j]) - tail_a * (t[-1] - t[j]) / (t[-1] - t[-2])
                            + tail_b * (t[-2] - t[j]) / (t[-1] - t[-2])) / scale)
    return np.column_stack(columns)


def _harrell_knots(x: np.ndarray, n_knots: int) -> np.ndarray:
    """Knot positions at Harrell's default quantiles (3–7 knots; equally spaced otherwise)."""
    table = {3: (10, 50, 90), 4: (5, 35, 65, 95), 5: (5, 27.5, 50, 72.5, 95),
             6: (5, 23, 41, 59, 77, 95), 7: (2.5, 18.33, 34.17, 50, 65.83, 81.67, 97.5)}
    levels = table.get(n_knots, tuple(np.linspace(5, 95, max(n_knots, 2))))
    return np.percentile(x, levels)


def spatial_blocks(coordinates: np.ndarray, block_um: float) -> np.ndarray:
    """Square block of each cell: ``floor((x − x_min) / b)``, ``floor((y − y_min) / b)`` → id."""
    xy = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    if len(xy) == 0:
        return np.zeros(0, dtype=np.int64)
    cell = np.floor((xy - xy.min(axis=0)) / float(block_um)).astype(np.int64)
    _, ids = np.unique(cell[:, 0] * (cell[:, 1].max() + 1) + cell[:, 1], return_inverse=True)
    return ids.astype(np.int64)


@dataclass
class _Place:
    """The place design of one focus type: orthonormal basis, raw columns, names."""

    q: np.ndarray          # (n, rank) orthonormal basis of the design's column space
    design: np.ndarray     # (n, rank) independent raw columns (intercept first)
    terms: list[str]       # adjustment terms used (for adjusted_for)


def _place_design(signed: np.ndarray, compartment: np.ndarray, lesion: np.ndarray,
                  density: np.ndarray, n_knots: int, density_radius_um: float,
                  adjust: bool) -> _Place:
    n = len(signed)
    columns = [np.ones(n)]
    terms: list[str] = []
    if adjust:
        levels = [c for c in COMPARTMENTS if np.any(compartment == c)]
        if len(levels) > 1:
            columns.extend((compartment == c).astype(np.float64) for c in levels[1:])
            terms.append("compartment")
        finite = np.isfinite(signed)
        if finite.all() and np.ptp(signed) > 0:
            knots = _harrell_knots(signed, n_knots)
            spread = np.ptp(signed)
            columns.extend(natural_spline_basis(signed / spread, knots / spread).T)
            terms.append(f"spline(signed_distance_um, {len(np.unique(knots))} knots)")
        ids = np.unique(lesion)
        if len(ids) > 1:
            columns.extend((lesion == v).astype(np.float64) for v in ids[1:])
            terms.append("lesion")
        if np.ptp(density) > 0:
            columns.append(density / max(float(np.std(density)), 1e-12))
            terms.append(f"density_{_fmt(density_radius_um)}um")
    design = np.column_stack(columns)
    q, r, pivot = qr(design, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int(np.sum(diag > diag[0] * 1e-9)) if len(diag) else 0
    keep = np.sort(pivot[:rank])
    return _Place(q[:, :rank], design[:, keep], terms)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# --- the linear (Frisch–Waugh–Lovell) statistics -------------------------------------------

@dataclass
class _Fit:
    beta: np.ndarray   # (P, M)
    se: np.ndarray     # (P, M)
    t: np.ndarray      # (P, M)


def _residualise(q: np.ndarray, values: np.ndarray) -> np.ndarray:
    return values - q @ (q.T @ values)


def _fwl(q: np.ndarray, y_res: np.ndarray, exposure: np.ndarray, starts: np.ndarray) -> _Fit:
    """β, its CR1 cluster-robust se and t for every exposure column × outcome column.

    ``y_res`` (n, M) are the outcomes residualised on the place basis ``q`` (n, rank);
    ``exposure`` (n, P) raw; rows sorted by cluster, cluster c being rows ``starts[c]:
    starts[c + 1]``. By Frisch–Waugh–Lovell, with ẽ the residualised exposure and
    u = ỹ − β ẽ the full model's residuals, β = ẽ'ỹ / ẽ'ẽ and
    V(β) = c Σ_g (Σ_{i∈g} ẽ_i u_i)² / (ẽ'ẽ)², c = G/(G−1)·(N−1)/(N−K), K = rank + 1 —
    the (β, β) element of the full model's CR1 sandwich.
    """
    e_res = _residualise(q, exposure.astype(np.float64))
    n, rank = q.shape
    n_clusters = len(starts)
    n_exp, n_out = e_res.shape[1], y_res.shape[1]
    ee = np.einsum("ij,ij->j", e_res, e_res)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = (e_res.T @ y_res) / ee[:, None]
        e2_sum = np.add.reduceat(e_res * e_res, starts, axis=0)              # (G, P)
        var = np.empty((n_exp, n_out))
        step = max(1, _CHUNK_ELEMENTS // max(n * n_exp, 1))
        for m0 in range(0, n_out, step):
            part = y_res[:, m0:m0 + step]
            cross = np.add.reduceat(e_res[:, :, None] * part[:, None, :], starts, axis=0)
            scores = cross - e2_sum[:, :, None] * beta[None, :, m0:m0 + step]
            var[:, m0:m0 + step] = np.einsum("gpm,gpm->pm", scores, scores)
        k = rank + 1
        correction = (n_clusters / max(n_clusters - 1, 1)) * ((n - 1) / max(n - k, 1))
        se = np.sqrt(correction * var) / ee[:, None]
        t = beta / se
    bad = ~(ee > 1e-12 * max(n, 1))
    beta[bad] = np.nan
    se[bad] = np.nan
    t[bad] = np.nan
    return _Fit(beta, se, t)


#: Largest temporary (elements) of the cluster sums; bounds memory on large samples.
_CHUNK_ELEMENTS = 4_000_000


def _cluster_starts(sorted_ids: np.ndarray) -> np.ndarray:
    """First row of every cluster of rows sorted by cluster id."""
    if len(sorted_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([[0], np.flatnonzero(np.diff(sorted_ids)) + 1]).astype(np.int64)


def _null_beta(q: np.ndarray, y_res: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """β (P, M) of every exposure column × outcome: ẽ'ỹ / ẽ'ẽ (three matrix products)."""
    exposure = exposure.astype(np.float64)
    projected = q.T @ exposure                       # ẽ'ẽ = e'e − (q'e)'(q'e), q orthonormal
    ee = np.einsum("ij,ij->j", exposure, exposure) - np.einsum("ij,ij->j", projected, projected)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = (exposure.T @ y_res) / ee[:, None]    # ẽ'ỹ = e'ỹ since ỹ ⟂ q
    beta[~(ee > 1e-12 * max(len(q), 1))] = np.nan
    return beta


def _batched_beta(q: np.ndarray, y_res: np.ndarray, n_pairs: int, n_draws: int,
                  exposure_of) -> np.ndarray:
    """β (n_draws, P, M) of draws whose exposures ``exposure_of(k)`` (n, P) are fitted in
    batches of draws (one set of matrix products per batch)."""
    n = len(q)
    batch = max(1, min(n_draws, _CHUNK_ELEMENTS // max(n * n_pairs, 1)))
    out = np.empty((n_draws, n_pairs, y_res.shape[1]))
    for k0 in range(0, n_draws, batch):
        draws = range(k0, min(n_draws, k0 + batch))
        stacked = np.concatenate([exposure_of(k) for k in draws], axis=1)
        out[k0:k0 + len(draws)] = _null_beta(q, y_res, stacked).reshape(len(draws), n_pairs,
                                                                         -1)
    return out


# --- the main function -----------------------------------------------------------------------

def contact_effects(
    coordinates: np.ndarray,
    labels: np.ndarray,
    outcomes: pd.DataFrame,
    signed_distance_um: np.ndarray,
    compartment: np.ndarray,
    lesion_id: np.ndarray,
    *,
    state_types: Mapping[str, Sequence[str] | None] | None = None,
    cell_types: Sequence[str] = ContactParams.cell_types,
    partner_types: Sequence[str] = ContactParams.partner_types,
    radius_um: float = 30.0,
    exposure: str = ContactParams.exposure,
    transform: str = ContactParams.transform,
    adjust: bool = ContactParams.adjust,
    spline_knots: int = ContactParams.spline_knots,
    density_radius_um: float = ContactParams.density_radius_um,
    block_um: float = ContactParams.block_um,
    band_um: float = ContactParams.band_um,
    min_cells: int = ContactParams.min_cells,
    min_exposed: int = ContactParams.min_exposed,
    n_permutations: int = ContactParams.n_permutations,
    seed: int = ContactParams.seed,
    confidence: float = 0.95,
    top_profiles: int = ContactParams.top_profiles,
) -> ContactResult:
    """Contact effects of every (focus type, outcome, partner type) of one sample.

    See the module docstring for the model, the standard errors and the two nulls.

    Parameters
    ----------
    coordinates
        (n, 2) cell positions, µm.
    labels
        (n,) cell-type label of each cell.
    outcomes
        n rows: one column per outcome. Boolean columns are states (logistic model), numeric
        columns marker intensities (linear model on ``transform``-ed values; NaN cells are
        left out of that outcome's fit).
    signed_distance_um, compartment, lesion_id
        Per cell: signed distance to the tumour boundary (µm, negative inside; NaN without
        tumour), compartment name and lesion id (:mod:`metaniche.analyses.compartments`).
    state_types
        State column → the labels that may carry it (None = every label); focus types outside
        it are not tested for that state.
    cell_types, partner_types
        Focus (A) and partner (B) labels; empty (default) = every label with at least
        ``min_cells`` cells.
    radius_um
        Contact radius (µm, ``<=``); the pipeline's default is ``[relations]
        contact_radius_um`` (30 µm).
    exposure
        ``"count"`` (B cells within the radius) or ``"log_distance"`` (log µm to the nearest B).
    transform
        Intensity transform: ``"log1p"`` (default) or ``"none"``.
    adjust
        Adjust for place (default True); False fits ``y ~ exposure`` (for contrast only).
    spline_knots
        Knots of the natural cubic spline of the signed distance (default 5).
    density_radius_um
        Radius (µm) of the local density covariate (default 50).
    block_um
        Side (µm) of the square spatial blocks clustering the standard errors (default 200).
    band_um
        Width (µm) of the signed-distance bands of the shuffle strata, and of the squares that
        measure tissue occupancy for the shift null (default 50).
    min_cells
        Fewest cells of a focus type (with a finite outcome) and of a partner type (default 30).
    min_exposed
        Fewest A cells with at least one B within the radius for a pair to be tested
        (default 10).
    n_permutations
        Draws of each null (default 99; 0 = no nulls, p_perm and p_shift NaN).
    seed
        Seed of the nulls (see the module docstring for the streams).
    confidence
        Level of the interval of β.
    top_profiles
        Pairs (smallest p) whose exposure profiles go to ``profiles``.

    Returns
    -------
    ContactResult

    Notes
    -----
    One cell-list pass for the density of every cell, one cell-list neighbour list of every
    focus cell, one QR of each focus type's place design, then matrix products: O(n_A (K +
    P·M)) per focus type (P partners, M outcomes, K design columns); the logistic fits are
    statsmodels GLMs, one per (A, state, B). Each null draw costs what the module docstring
    says; draws run on Numba's thread count (:func:`numba.set_num_threads`), and the result
    does not depend on the number of threads. BLAS runs single-threaded throughout
    (threadpoolctl): the products here are thin, (P, n)·(n, K), for which multithreaded
    OpenBLAS was slower.
    """
    # single-threaded BLAS (see Notes); null draws on worker threads, which run while the
    # next focus type's model is fitted
    workers = _n_workers() if n_permutations > 0 else 1
    with threadpool_limits(1), ThreadPoolExecutor(max_workers=workers) as executor:
        return _contact_effects(
            coordinates, labels, outcomes, signed_distance_um, compartment, lesion_id,
            state_types=state_types,
            cell_types=cell_types,
            partner_types=partner_types,
            radius_um=radius_um,
            exposure=exposure,
            transform=transform,
            adjust=adjust,
            spline_knots=spline_knots,
            density_radius_um=density_radius_um,
            block_um=block_um,
            band_um=band_um,
            min_cells=min_cells,
            min_exposed=min_exposed,
            n_permutations=n_permutations,
            seed=seed,
            confidence=confidence,
            top_profiles=top_profiles,
            executor=executor if workers > 1 else None,
        )


def _contact_effects(
    coordinates: np.ndarray,
    labels: np.ndarray,
    outcomes: pd.DataFrame,
    signed_distance_um: np.ndarray,
    compartment: np.ndarray,
    lesion_id: np.ndarray,
    *,
    state_types: Mapping[str, Sequence[str] | None] | None = None,
    cell_types: Sequence[str] = ContactParams.cell_types,
    partner_types: Sequence[str] = ContactParams.partner_types,
    radius_um: float = 30.0,
    exposure: str = ContactParams.exposure,
    transform: str = ContactParams.transform,
    adjust: bool = ContactParams.adjust,
    spline_knots: int = ContactParams.spline_knots,
    density_radius_um: float = ContactParams.density_radius_um,
    block_um: float = ContactParams.block_um,
    band_um: float = ContactParams.band_um,
    min_cells: int = ContactParams.min_cells,
    min_exposed: int = ContactParams.min_exposed,
    n_permutations: int = ContactParams.n_permutations,
    seed: int = ContactParams.seed,
    confidence: float = 0.95,
    top_profiles: int = ContactParams.top_profiles,
    executor: ThreadPoolExecutor | None = None,
) -> ContactResult:
    """:func:`contact_effects` inside its BLAS limit, null draws on ``executor``'s threads."""
    coordinates = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels).astype(str)
    n = len(labels)
    signed = np.asarray(signed_distance_um, dtype=np.float64)
    compartment = np.asarray(compartment).astype(str)
    lesion = np.asarray(lesion_id)
    if exposure not in CONTACT_EXPOSURES:
        raise ValueError(f"`exposure` must be one of {', '.join(CONTACT_EXPOSURES)}; "
                         f"got {exposure!r}.")
    state_types = dict(state_types or {})
    unique, codes = np.unique(labels, return_inverse=True)
    names = [str(v) for v in unique]
    counts = np.bincount(codes, minlength=len(names))
    enough = [t for t, c in zip(names, counts, strict=True) if c >= min_cells]
    notes: list[str] = []
    focus = _chosen(cell_types, names, enough, "cell_types", min_cells, counts, notes)
    partners = _chosen(partner_types, names, enough, "partner_types", min_cells, counts, notes)
    partner_codes = np.array([names.index(t) for t in partners], dtype=np.int64)
    n_types = len(names)

    counter = _Counter(coordinates, radius_um) if n else None
    density_all: np.ndarray | None = None       # made when the first focus type needs it
    blocks = spatial_blocks(coordinates, block_um)
    band = np.where(np.isfinite(signed), np.floor(signed / band_um), -(2**40)).astype(np.int64)
    strata = _strata(compartment, band)
    position = np.empty(n, dtype=np.int64)          # place of every cell in the cell list
    if counter is not None:
        position[counter.grid.order] = np.arange(n)
    shift_ok, shift_note = _shift_allowed(coordinates, counter, band_um, radius_um)
    if shift_note and n_permutations > 0 and focus and partners:
        notes.append(shift_note)
    shifts = (_draw_shifts(counter, n_permutations, seed, radius_um)
              if shift_ok and counter is not None and n_permutations > 0 else None)

    shuffles: _Shuffles | None = None           # made when the first shuffle null needs it
    deferred: list[tuple[dict[str, Callable[[], np.ndarray]], np.ndarray,
                         list[tuple[dict, int, int]]]] = []
    rows: list[dict] = []
    profiles: list[pd.DataFrame] = []
    exposure_name = (f"count_within_{_fmt(radius_um)}um" if exposure == "count"
                     else "log_nearest_distance_um")
    for a in focus:
        a_code = names.index(a)
        members = np.flatnonzero(codes == a_code)
        members = members[np.argsort(blocks[members], kind="stable")]  # rows by cluster
        pair_codes = partner_codes[partner_codes != a_code]
        if len(pair_codes) == 0 or len(members) < min_cells:
            continue
        wanted = [c for c in outcomes.columns
                  if not _is_state(outcomes[c]) or (types := state_types.get(c)) is None
                  or a in types]
        if not wanted:
            continue
        assert counter is not None  # members: n > 0
        if density_all is None:
            density_all = _density(coordinates, density_radius_um)
        density = density_all[members]
        # neighbour lists of the members in the cell list's order (for locality)
        in_grid = np.argsort(position[members], kind="stable")
        neighbours = counter.neighbours(coordinates[members[in_grid]], members[in_grid])
        within = np.empty((len(members), len(pair_codes)), dtype=np.int64)
        within[in_grid] = _partner_counts(neighbours, codes[counter.grid.order], pair_codes,
                                          n_types)
        row_in_grid = np.empty(len(members), dtype=np.int64)
        row_in_grid[in_grid] = np.arange(len(members))
        observed = (within if exposure == "count"
                    else _log_nearest(coordinates, codes, members, pair_codes, None))
        values = _outcome_matrix(outcomes, wanted, members, transform)
        # one fit per set of cells with finite outcomes (normally one set for all outcomes)
        finite = np.isfinite(values)
        patterns, pattern_of = _finite_patterns(finite)
        for p_index in range(patterns.shape[1]):
            keep = patterns[:, p_index]
            columns_here = np.flatnonzero(pattern_of == p_index)
            if keep.sum() < min_cells:
                notes.extend(f"'{wanted[j]}' is finite in {int(keep.sum())} {a} cells, fewer "
                             f"than [contact] min_cells = {min_cells}; not tested."
                             for j in columns_here)
                continue
            sub = members[keep]
            place = _place_design(signed[sub], compartment[sub], lesion[sub], density[keep],
                                  spline_knots, density_radius_um, adjust)
            starts = _cluster_starts(blocks[sub])
            n_clusters = len(starts)
            y = values[keep][:, columns_here]
            y_res = _residualise(place.q, y)
            fit = _fwl(place.q, y_res, observed[keep], starts)
            n_exposed = (within[keep] > 0).sum(axis=0)
            tested = n_exposed >= min_exposed
            null_beta: dict[str, Callable[[], np.ndarray]] = {}
            if n_permutations > 0 and tested.any() and n_clusters > 1:
                _resolve(deferred)      # one fit's draws in flight at a time (bounds memory)
                order = np.argsort(position[sub], kind="stable")    # the cell list's order
                if shuffles is None:
                    shuffles = _Shuffles(coordinates, codes, strata, n_types, n_permutations,
                                         seed)
                null_beta["p_perm"] = _shuffle_null(
                    coordinates, codes, sub, a_code, pair_codes, shuffles, counter, exposure,
                    place.q, y_res, n_types,
                    _csr_rows(*neighbours, row_in_grid[np.flatnonzero(keep)[order]]), order,
                    executor)
                if shifts is not None:
                    null_beta["p_shift"] = _shift_null(
                        coordinates, codes, sub, pair_codes, counter, exposure, place.q, y_res,
                        shifts, n_types, order, executor)
            waiting: list[tuple[dict, int, int]] = []
            adjusted_for = " + ".join(place.terms) if place.terms else "none"
            df = n_clusters - 1
            t_crit = stats.t.ppf(0.5 + confidence / 2, df) if df > 0 else np.nan
            p_model = (2 * stats.t.sf(np.abs(fit.t), df) if df > 0
                       else np.full(fit.t.shape, np.nan))
            for m_local, m_global in enumerate(columns_here):
                marker = wanted[m_global]
                state = _is_state(outcomes[marker])
                for p_local, b_code in enumerate(pair_codes):
                    if not tested[p_local]:
                        continue
                    row = {"cell_type": a, "marker": marker, "partner_type": names[b_code],
                           "exposure": exposure_name, "n_cells": int(keep.sum()),
                           "n_exposed": int(n_exposed[p_local]), "adjusted_for": adjusted_for,
                           "n_clusters": int(n_clusters)}
                    t_obs = fit.t[p_local, m_local]
                    waiting.append((row, p_local, m_local))
                    if state:
                        row |= _logistic(place.design, y[:, m_local],
                                         observed[keep][:, p_local], blocks[sub], confidence)
                    else:
                        beta, se = fit.beta[p_local, m_local], fit.se[p_local, m_local]
                        row |= {"model": "linear", "effect": beta, "statistic": t_obs,
                                "ci_low": beta - t_crit * se, "ci_high": beta + t_crit * se,
                                "p": float(p_model[p_local, m_local])}
                    rows.append(row)
            if null_beta:
                deferred.append((null_beta, fit.beta, waiting))
            profiles.append(_profiles(a, [wanted[j] for j in columns_here], y,
                                      within[keep], [names[c] for c in pair_codes],
                                      compartment[sub]))
    _resolve(deferred)
    table = pd.DataFrame(rows)
    for column in CONTACT_COLUMNS:
        if column not in table.columns:
            table[column] = pd.Series(dtype=np.float64 if column not in (
                "cell_type", "marker", "partner_type", "exposure", "adjusted_for", "model")
                else object)
    table["q"] = benjamini_hochberg(table["p"].to_numpy(np.float64)) if len(table) else []
    table = table[CONTACT_COLUMNS].reset_index(drop=True)
    return ContactResult(table, _top_profiles(table, profiles, top_profiles), notes)


def _resolve(deferred: list) -> None:
    """Wait for the null draws of every deferred fit and write its rows' Monte Carlo p."""
    for null_beta, beta, waiting in deferred:
        for key, pending in null_beta.items():
            draws = pending()
            for row, p_local, m_local in waiting:
                row[key] = _monte_carlo_p(beta[p_local, m_local], draws[:, p_local, m_local])
    deferred.clear()


def _strata(compartment: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Stratum id of every cell: rank of (compartment, band) in lexicographic order."""
    _, comp = np.unique(compartment, return_inverse=True)
    _, level = np.unique(band, return_inverse=True)
    _, strata = np.unique(comp.ravel() * (int(level.max(initial=0)) + 1) + level.ravel(),
                          return_inverse=True)
    return strata.ravel().astype(np.int64)


def _finite_patterns(finite: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct columns of the (n, M) mask ``finite`` (lexicographic order, False < True) and
    the pattern of every column, as ``np.unique(finite, axis=1, return_inverse=True)``."""
    keys = [np.packbits(finite[:, j]).tobytes() for j in range(finite.shape[1])]
    distinct = sorted(set(keys))
    pattern_of = np.array([distinct.index(k) for k in keys], dtype=np.int64)
    first = [keys.index(k) for k in distinct]
    return finite[:, first], pattern_of


def _partner_counts(neighbours: tuple[np.ndarray, np.ndarray], sorted_codes: np.ndarray,
                    pair_codes: np.ndarray, n_types: int) -> np.ndarray:
    """(n_rows, P) neighbours of each partner code per row of a compressed row list."""
    ptr, index = neighbours
    n_rows, n_pairs = len(ptr) - 1, len(pair_codes)
    partner_of = np.full(n_types, -1, dtype=np.int64)
    partner_of[pair_codes] = np.arange(n_pairs)
    partner = partner_of[sorted_codes[index]]
    use = partner >= 0
    row = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(ptr))[use]
    return np.bincount(row * n_pairs + partner[use],
                       minlength=n_rows * n_pairs).reshape(n_rows, n_pairs)


def _chosen(wanted: Sequence[str], names: list[str], enough: list[str], key: str,
            min_cells: int, counts: np.ndarray, notes: list[str]) -> list[str]:
    if not wanted:
        return list(enough)
    chosen = []
    for label in wanted:
        if label not in names:
            notes.append(f"[contact] {key} names '{label}', which is not a label of this sample "
                         f"(labels: {', '.join(names[:12])}); check the spelling.")
        elif counts[names.index(label)] < min_cells:
            notes.append(f"[contact] {key}: '{label}' has {int(counts[names.index(label)])} "
                         f"cells, fewer than [contact] min_cells = {min_cells}; not tested.")
        else:
            chosen.append(label)
    return chosen


def _is_state(column: pd.Series) -> bool:
    return pd.api.types.is_bool_dtype(column)


def _outcome_matrix(outcomes: pd.DataFrame, wanted: list[str], members: np.ndarray,
                    transform: str) -> np.ndarray:
    out = np.empty((len(members), len(wanted)))
    for j, name in enumerate(wanted):
        column = outcomes[name]
        values = column.to_numpy()[members]
        if _is_state(column):
            out[:, j] = values.astype(np.float64)
            continue
        values = values.astype(np.float64)
        if transform == "log1p":
            with np.errstate(invalid="ignore", divide="ignore"):
                values = np.log1p(values)
        values[~np.isfinite(values)] = np.nan
        out[:, j] = values
    return out


def _density(coordinates: np.ndarray, radius_um: float) -> np.ndarray:
    """Cells per mm² within ``radius_um`` (``<=``) of every cell (the cell itself excluded)."""
    counts = _Counter(coordinates, radius_um).totals()
    return counts / (math.pi * radius_um**2 / 1e6)


def _log_nearest(coordinates: np.ndarray, codes: np.ndarray, members: np.ndarray,
                 pair_codes: np.ndarray, shift: tuple[np.ndarray, tuple[float, float]] | None,
                 ) -> np.ndarray:
    """log(max(distance to the nearest cell of each partner code, floor)) for ``members``.

    ``shift`` = (vector, periods): partner cells translated on the torus.
    """
    out = np.full((len(members), len(pair_codes)), np.nan)
    query = coordinates[members]
    for j, b in enumerate(pair_codes):
        cells = np.flatnonzero(codes == b)
        if len(cells) == 0:
            continue
        points = coordinates[cells]
        if shift is None:
            tree = cKDTree(points)
            distance = tree.query(query, k=1)[0]
        else:
            vector, periods = shift
            origin = coordinates.min(axis=0)
            box = np.asarray(periods)
            moved = np.mod(points - origin + vector, box)
            tree = cKDTree(moved, boxsize=box)
            distance = tree.query(np.mod(query - origin, box), k=1)[0]
        out[:, j] = np.log(np.maximum(distance, LOG_DISTANCE_FLOOR_UM))
    return out


def _stream(null: int, key: int, draw: int, seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(null, key, draw)))


def _n_workers() -> int:
    """Threads filling null draws: Numba's thread count (``NUMBA_NUM_THREADS``,
    :func:`numba.set_num_threads`)."""
    return max(1, int(numba.get_num_threads()))


#: Null draws filled and fitted together by one thread (one product for all of them: the
#: weights are read once); fixed, so the results do not depend on the number of threads.
_DRAWS_PER_TASK = 4


def _threaded_beta(q: np.ndarray, y_res: np.ndarray, n_pairs: int, n_draws: int, fill,
                   order: np.ndarray,
                   executor: ThreadPoolExecutor | None) -> Callable[[], np.ndarray]:
    """β (n_draws, P, M) of draws whose exposures ``fill(k, e, s)`` writes into ``e`` (n, P),
    row t of ``e`` being row ``order[t]`` of ``q`` and ``y_res``, with ``s`` (P,) = e'e;
    returned as a function that waits for the draws.

    Draws ``[j·D, (j + 1)·D)`` (D = :data:`_DRAWS_PER_TASK`) are filled and fitted by one task
    on ``executor``'s threads (the kernels and BLAS release the GIL; without an executor, at
    once in this thread), each draw from its own generator: β = e'ỹ / (e'e − ‖q'e‖²) (= ẽ'ỹ /
    ẽ'ẽ, as ỹ ⟂ q and q is orthonormal), one (D·P, n)·(n, M + rank) product per task, NaN
    where ẽ'ẽ vanishes (as in :func:`_fwl`). The result does not depend on the number of
    threads.
    """
    n, n_out = len(q), y_res.shape[1]
    weights = np.ascontiguousarray(np.hstack([y_res, q])[order])
    out = np.empty((n_draws, n_pairs, n_out))
    local = threading.local()
    size = _DRAWS_PER_TASK

    def task(j: int) -> None:
        if getattr(local, "exposure", None) is None:
            local.exposure = np.empty((n, size * n_pairs))
            local.squares = np.empty(size * n_pairs)
        draws = range(j * size, min(n_draws, (j + 1) * size))
        width = len(draws) * n_pairs
        for at, k in enumerate(draws):
            block = slice(at * n_pairs, (at + 1) * n_pairs)
            fill(k, local.exposure[:, block], local.squares[block])
        products = local.exposure[:, :width].T @ weights
        projected = products[:, n_out:]
        denominator = local.squares[:width] - np.einsum("pr,pr->p", projected, projected)
        with np.errstate(invalid="ignore", divide="ignore"):
            beta = products[:, :n_out] / denominator[:, None]
        beta[~(denominator > 1e-12 * max(n, 1))] = np.nan
        out[draws.start:draws.stop] = beta.reshape(len(draws), n_pairs, n_out)

    n_tasks = -(-n_draws // size)
    if executor is None:
        for j in range(n_tasks):
            task(j)
        return lambda: out
    futures = [executor.submit(task, j) for j in range(n_tasks)]

    def result() -> np.ndarray:
        for future in futures:
            future.result()
        return out

    return result


def _run_threaded(one, n_tasks: int) -> None:
    """``one(j)`` for j = 0 … n_tasks − 1 on :func:`_n_workers` threads."""
    workers = min(_n_workers(), n_tasks)
    if workers <= 1:
        for j in range(n_tasks):
            one(j)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(n_tasks)))


def _csr_rows(ptr: np.ndarray, index: np.ndarray, rows: np.ndarray,
              ) -> tuple[np.ndarray, np.ndarray]:
    """The rows ``rows`` of a compressed row list."""
    if len(rows) == len(ptr) - 1 and np.array_equal(rows, np.arange(len(rows))):
        return ptr, index
    lengths = np.diff(ptr)[rows]
    new_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_ptr[1:])
    starts = np.repeat(ptr[rows] - new_ptr[:-1], lengths)
    return new_ptr, index[np.arange(int(new_ptr[-1]), dtype=np.int64) + starts]


#: Largest cache (bytes) of every draw's shuffled labels, shared by the focus types; a larger
#: sample reshuffles per focus type (the same draws, only slower).
_SHUFFLE_CACHE_BYTES = 512_000_000


class _Shuffles:
    """The stratified label shuffles of one sample, shared by every focus type.

    Draw k permutes the labels of all cells within each stratum: a Fisher–Yates shuffle
    (:func:`_shuffle_segments`) of the cells in canonical order (stratum, y, x; ties by row),
    so it does not depend on the input's row order, with the uniforms of its own generator
    ``SeedSequence(seed, spawn_key=(0, 0, k))``.
    """

    def __init__(self, coordinates: np.ndarray, codes: np.ndarray, strata: np.ndarray,
                 n_types: int, n_draws: int, seed: int) -> None:
        self.canonical = np.lexsort((coordinates[:, 0], coordinates[:, 1], strata))
        dtype = np.uint8 if n_types <= 255 else np.int32
        self.labels = np.ascontiguousarray(codes[self.canonical], dtype=dtype)
        ordered = strata[self.canonical]
        self.bounds = np.concatenate([[0], np.flatnonzero(np.diff(ordered)) + 1,
                                      [len(ordered)]]).astype(np.int64)
        self.n_steps = len(ordered) - (len(self.bounds) - 1)
        self.n_draws, self.seed = n_draws, seed
        self._cache: np.ndarray | None = None
        if n_draws * self.labels.nbytes <= _SHUFFLE_CACHE_BYTES:
            cache = np.empty((n_draws, len(self.labels)), dtype=dtype)

            def one(k: int) -> None:
                cache[k] = self._shuffle(k)

            _run_threaded(one, n_draws)
            self._cache = cache

    def _shuffle(self, k: int) -> np.ndarray:
        values = self.labels.copy()
        uniforms = _stream(_NULL_SHUFFLE, 0, k, self.seed).random(self.n_steps)
        _shuffle_segments(uniforms, values, self.bounds)
        return values

    def draw(self, k: int) -> np.ndarray:
        """Labels of all cells in canonical order after draw k."""
        return self._cache[k] if self._cache is not None else self._shuffle(k)


def _shuffle_null(coordinates, codes, sub, a_code, pair_codes, shuffles, counter, exposure, q,
                  y_res, n_types, neighbours, order, executor=None):
    """β (n_draws, P, M) of every (partner, outcome) under the stratified label shuffles, as a
    function that waits for the draws (:func:`_threaded_beta`).

    For focus type A, draw k gives the cells not of type A the labels other than A of the
    draw's shuffled labels, in canonical order (:class:`_Shuffles`); within every stratum this
    is a uniformly random permutation of their labels, A cells and their labels fixed.
    ``count``: the neighbours of every A cell are fixed (``neighbours``, the compressed row
    list of :meth:`_Counter.neighbours`), so a draw only relabels them
    (:func:`_shuffle_fill`), O(cells + pairs + n_A·P·(M + rank)) per draw.
    """
    n_pairs = len(pair_codes)
    eligible = shuffles.canonical[codes[shuffles.canonical] != a_code]
    if exposure == "count":
        grid = counter.grid
        ptr, index = neighbours
        slot_of = np.full(len(codes), -1, dtype=np.int64)
        slot_of[eligible] = np.arange(len(eligible))
        neighbour_slot = slot_of[grid.order[index]]
        # neighbours of type A keep their label, and A is never a partner: leave them out
        movable = neighbour_slot >= 0
        row_of = np.repeat(np.arange(len(sub)), np.diff(ptr))
        moved_ptr = np.zeros(len(sub) + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of[movable], minlength=len(sub)), out=moved_ptr[1:])
        neighbour_slot = np.ascontiguousarray(neighbour_slot[movable])
        partner_of = np.full(n_types, n_pairs, dtype=np.int64)   # n_pairs: not a partner
        partner_of[pair_codes] = np.arange(n_pairs)

        def fill(k: int, out: np.ndarray, squares: np.ndarray) -> None:
            _shuffle_fill(shuffles.draw(k), a_code, moved_ptr, neighbour_slot, partner_of, out,
                          squares)

        return _threaded_beta(q, y_res, n_pairs, shuffles.n_draws, fill, order, executor)

    def exposure_of(k: int) -> np.ndarray:
        labels = shuffles.draw(k)
        permuted = np.asarray(codes, np.int64).copy()
        permuted[eligible] = labels[labels != a_code]
        return _log_nearest(coordinates, permuted, sub, pair_codes, None)

    draws = _batched_beta(q, y_res, n_pairs, shuffles.n_draws, exposure_of)
    return lambda: draws


def _shift_allowed(coordinates: np.ndarray, counter: _Counter | None, band_um: float,
                   radius_um: float) -> tuple[bool, str]:
    if counter is None or len(coordinates) == 0:
        return False, ""
    if not counter.can_wrap():
        return False, (f"the tissue is narrower than {_fmt(3 * radius_um)} µm, so the toroidal "
                       "shift null is not computed (p_shift NaN).")
    cell = np.floor((coordinates - coordinates.min(axis=0)) / band_um).astype(np.int64)
    side = cell.max(axis=0) + 1
    occupied = len(np.unique(cell[:, 0] * side[1] + cell[:, 1])) / float(side[0] * side[1])
    if occupied < MIN_SHIFT_OCCUPANCY:
        return False, (f"the tissue covers {occupied:.0%} of its bounding box (less than "
                       f"{MIN_SHIFT_OCCUPANCY:.0%}), so a toroidal shift would move partner "
                       "cells into empty space; p_shift is NaN (p_perm, the stratified "
                       "shuffle, still applies).")
    return True, ""


def _draw_shifts(counter: _Counter, n_draws: int, seed: int,
                 radius_um: float) -> list[np.ndarray]:
    """One torus translation per draw, its minimum-image length at least 2·radius."""
    periods = np.asarray(counter.periods)
    shifts = []
    for k in range(n_draws):
        rng = _stream(_NULL_SHIFT, 0, k, seed)
        for _ in range(1000):
            vector = rng.random(2) * periods
            image = vector - periods * np.round(vector / periods)
            if np.hypot(*image) >= 2 * radius_um:
                break
        shifts.append(vector)
    return shifts


def _shift_null(coordinates, codes, sub, pair_codes, counter, exposure, q, y_res, shifts,
                n_types, order, executor=None):
    """β (n_draws, P, M) of every (partner, outcome) with the partner pattern translated on the
    torus, as a function that waits for the draws (:func:`_threaded_beta`).

    Counting partners translated by +v around a cell equals counting the original partners
    around the cell translated by −v (wrapped), so one cell list of the partner cells (the
    sample's bins) serves every draw; a draw is one pass of :func:`_shift_fill` over the A
    cells (in the cell list's order, for locality) and one (P, n_A)·(n_A, M + rank) product,
    O(n_A·(partner candidates + P·(M + rank))).
    """
    n_pairs = len(pair_codes)
    if exposure != "count":
        periods = tuple(counter.periods)

        def exposure_of(k: int) -> np.ndarray:
            return _log_nearest(coordinates, codes, sub, pair_codes, (shifts[k], periods))

        draws = _batched_beta(q, y_res, n_pairs, len(shifts), exposure_of)
        return lambda: draws
    grid = counter.grid
    remap = np.full(n_types, -1, dtype=np.int64)
    remap[pair_codes] = np.arange(n_pairs)
    partner = remap[np.asarray(codes, np.int64)[grid.order]]
    # the cell list of the partner cells only (same bins, same order): other cells never count
    keep = partner >= 0
    bins = np.repeat(np.arange(len(grid.starts) - 1), np.diff(grid.starts))[keep]
    starts = np.zeros(len(grid.starts), dtype=np.int64)
    np.cumsum(np.bincount(bins, minlength=len(grid.starts) - 1), out=starts[1:])
    cells = np.column_stack([grid.x[keep], grid.y[keep], partner[keep]])
    qx = np.ascontiguousarray(coordinates[sub[order], 0])
    qy = np.ascontiguousarray(coordinates[sub[order], 1])

    def fill(k: int, out: np.ndarray, squares: np.ndarray) -> None:
        vx, vy = (float(v) for v in shifts[k])
        _shift_fill(qx, qy, vx, vy, cells, starts, grid.n_bx, grid.n_by, grid.x0, grid.y0,
                    grid.width, counter.radius, out, squares)

    return _threaded_beta(q, y_res, n_pairs, len(shifts), fill, order, executor)


def _monte_carlo_p(observed: float, draws: np.ndarray) -> float:
    """Two-sided Monte Carlo p: (1 + #{|β*| >= |β|}) / (1 + n); NaN draws count as extreme."""
    if not np.isfinite(observed):
        return math.nan
    extreme = ~(np.abs(draws) < abs(observed))
    return float((1 + extreme.sum()) / (1 + len(draws)))


def _logistic(design: np.ndarray, y: np.ndarray, e: np.ndarray, blocks: np.ndarray,
              confidence: float) -> dict:
    """Binomial GLM (logit) of the state on exposure + place, cluster-robust (statsmodels)."""
    import statsmodels.api as sm

    empty = {"model": "logistic", "effect": np.nan, "statistic": np.nan, "ci_low": np.nan,
             "ci_high": np.nan, "p": np.nan}
    if y.min() == y.max():
        return empty
    exog = np.column_stack([e.astype(np.float64), design])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.GLM(y, exog, family=sm.families.Binomial()).fit(
                cov_type="cluster", cov_kwds={"groups": blocks})
        beta, se = float(fit.params[0]), float(fit.bse[0])
    except (np.linalg.LinAlgError, ValueError):
        return empty
    if not (np.isfinite(beta) and np.isfinite(se) and se > 0):
        return empty
    z = beta / se
    crit = stats.norm.ppf(0.5 + confidence / 2)
    return {"model": "logistic", "effect": beta, "statistic": z, "ci_low": beta - crit * se,
            "ci_high": beta + crit * se, "p": float(2 * stats.norm.sf(abs(z)))}


def _profiles(a: str, markers: list[str], y: np.ndarray, within: np.ndarray,
              partners: list[str], compartment: np.ndarray) -> pd.DataFrame:
    """Mean outcome by capped exposure count, per compartment, for every pair of one fit."""
    n_levels = _PROFILE_TOP + 1
    n_comp = len(COMPARTMENTS)
    comp_code = np.full(len(compartment), -1)
    for j, name in enumerate(COMPARTMENTS):
        comp_code[compartment == name] = j
    known = comp_code >= 0
    cap = np.minimum(within[known], _PROFILE_TOP)
    n_pairs = len(partners)
    flat = (np.arange(n_pairs)[None, :] * (n_comp * n_levels)
            + comp_code[known][:, None] * n_levels + cap).ravel()
    size = n_pairs * n_comp * n_levels
    n_cells = np.bincount(flat, minlength=size)
    present = np.flatnonzero(n_cells > 0)
    if len(present) == 0:
        return pd.DataFrame(columns=PROFILE_COLUMNS)
    pair, rest = np.divmod(present, n_comp * n_levels)
    comp, level = np.divmod(rest, n_levels)
    parts = []
    for m, marker in enumerate(markers):
        sums = np.bincount(flat, weights=np.repeat(y[known, m], n_pairs), minlength=size)
        parts.append(pd.DataFrame({
            "cell_type": a, "marker": marker,
            "partner_type": np.asarray(partners, dtype=object)[pair],
            "compartment": np.asarray(COMPARTMENTS, dtype=object)[comp],
            "n_partners": level.astype(np.int64), "n_cells": n_cells[present].astype(np.int64),
            "mean": sums[present] / n_cells[present]}))
    return pd.concat(parts, ignore_index=True)


def _top_profiles(table: pd.DataFrame, profiles: list[pd.DataFrame], top: int) -> pd.DataFrame:
    if not profiles or table.empty or top <= 0:
        return pd.DataFrame(columns=PROFILE_COLUMNS)
    best = table.dropna(subset=["p"]).nsmallest(top, "p")[["cell_type", "marker",
                                                            "partner_type"]]
    every = pd.concat(profiles, ignore_index=True)
    kept = every.merge(best, on=["cell_type", "marker", "partner_type"])
    return kept[PROFILE_COLUMNS].reset_index(drop=True)
