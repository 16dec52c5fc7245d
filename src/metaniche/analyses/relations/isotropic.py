"""Ripley's isotropic edge correction on a rectangle: spatstat's ``Kcross``/``Lcross`` and the
per-image statistic of spicyR.

Estimator (spatstat ``Kmulti`` / ``Kest`` with ``correction = "isotropic"`` [1]_ [2]_):

    K_ab(r) = |W| / (n_a · (n_b − δ_ab)) · Σ_{i∈a} Σ_{j∈b, j≠i} 1[d_ij < r] · e(x_i, d_ij)

with W the rectangle, |W| its area, and e(x, d) Ripley's weight: the reciprocal of the
fraction of the circle of radius d centred on x that lies inside W (spatstat ``edge.Ripley``,
C routine ``ripleybox``). The weight depends on the *from* point only, so K_ab ≠ K_ba in
general (spatstat's ``Lcross(X, from = a, to = b)`` is asymmetric; spicyR uses both orders).
For a = b the statistic is spatstat's ``Kest`` on the a-points (denominator n_a (n_a − 1)).

Closed form of the weight (spatstat ``edge.Ripley``, method ``"C"``): with perpendicular
distances dL, dR, dD, dU from x to the four sides, the half-angle cut by a side at distance
s < d is ``acos(s/d)``; it is capped by the angle to the adjacent corners
(``atan2(dU, dL)`` etc.), so

    ext = Σ_sides [min(a_s, β_s⁺) + min(a_s, β_s⁻)],   e = 1 / (1 − ext / 2π),

plus ``1/4`` of the circle when x lies on a corner (two of the four distances below machine
epsilon; spatstat.explore's ``ripleybox``; spatstat < 1.59 added nothing there). ``d = 0`` has
weight 1; weights are clipped to ``[1, 100]`` (spatstat's ``maxweight``). Exact for every
circle that is not entirely outside W (d below the distance to the farthest corner, always
the case on spatstat's grid); like spatstat, a circle entirely outside gets weight 1.

Radius grid and counting (spatstat's defaults, what spicyR uses): ``r = 0, rmax/512, …, rmax``
(513 values) with ``rmax = min(shorter side / 4, sqrt(1000 / (π λ_b)))`` (``rmax.rule("K")``,
λ_b = n_b / |W| the intensity of the *to* type, so the grid is per target type). The
histogram of spatstat's ``whist`` on breaks ``(−step, 0, step, …, rmax)`` counts a pair at
``r`` when ``d < r`` (strictly), and at the last radius when ``d ≤ rmax``; K(0) = 0.

Same-type pairs follow spatstat's engine exactly: for a = b, ``Kcross`` calls ``Kest``, which on
a rectangle with an evenly spaced grid runs the C engine ``Krect`` instead of the histogram
above. Krect counts a pair from the radius index ``ceil(d / step)`` (``d ≤ r``), leaves out
pairs at ``d ≥ rmax``, and adds no corner term (its ``1/4`` is an integer division in C). We do
the same for a = b on such grids (found by ``make test-r``: 55 of 8,005 melanoma image × type
values differed by up to 2·10⁻⁵ before), and use the histogram rule for a ≠ b and for
uneven grids, as spatstat does.

spicyR's statistic [3]_ (``getStat``, ``correction = "best"`` = isotropic on a rectangle) is the
mean over that grid of ``L_ab(r) − r`` with ``L = sqrt(K/π)`` (r = 0 included), on the window
``[0, max x] × [0, max y]`` of the image (``pppGenerate``); :meth:`Rectangle.image_frame`
builds it.

Cost: one pass over the ordered pairs within the largest target radius, binned on the fly by a
Numba cell-list kernel (no pair arrays), O(n + pairs) time, O(n + K²·R) memory. Blocks of cells
run in parallel into separate sums added in a fixed order, so results do not depend on the
thread count.

References
----------
.. [1] Ripley B.D. (1977) Modelling spatial patterns. J R Stat Soc B 39:172–212.
.. [2] Baddeley A., Rubak E., Turner R. (2015) Spatial Point Patterns: Methodology and
   Applications with R. CRC Press (§7.4.3 isotropic correction; ``Kcross``, ``rmax.rule``).
.. [3] Canete N.P. et al. (2022) spicyR: spatial analysis of in situ cytometry data in R.
   Bioinformatics 38:3099–3105.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from metaniche.analyses.relations.pointpattern import RipleyResult

__all__ = [
    "SPATSTAT_N_RADII",
    "Rectangle",
    "isotropic_weight",
    "ripley_cross_isotropic",
    "spatstat_radii",
    "spatstat_rmax",
]

#: Radii of spatstat's default grid for K: 512 steps from 0 to rmax (513 values).
SPATSTAT_N_RADII = 513
#: spatstat's ``edge.Ripley`` cap on a weight (``maxweight``).
MAX_WEIGHT = 100.0
_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Rectangle:
    """An axis-parallel rectangular window ``[xmin, xmax] × [ymin, ymax]`` (µm)."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float

    def __post_init__(self) -> None:
        if not (self.xmax > self.xmin and self.ymax > self.ymin):
            raise ValueError(f"a rectangle needs xmax > xmin and ymax > ymin; got "
                             f"[{self.xmin}, {self.xmax}] × [{self.ymin}, {self.ymax}].")

    @property
    def area(self) -> float:
        """|W|, µm²."""
        return (self.xmax - self.xmin) * (self.ymax - self.ymin)

    @property
    def short_side(self) -> float:
        """The shorter side, µm."""
        return min(self.xmax - self.xmin, self.ymax - self.ymin)

    @classmethod
    def image_frame(cls, coordinates: np.ndarray) -> Rectangle:
        """spicyR's window of an image: ``[0, max x] × [0, max y]`` (``pppGenerate``).

        The frame starts at the smallest coordinate instead of 0 where a coordinate is
        negative (spatstat would reject such a point).
        """
        xy = np.asarray(coordinates, dtype=np.float64)
        return cls(min(0.0, float(xy[:, 0].min())), min(0.0, float(xy[:, 1].min())),
                   float(xy[:, 0].max()), float(xy[:, 1].max()))


def isotropic_weight(x: np.ndarray, y: np.ndarray, d: np.ndarray, window: Rectangle,
                     max_weight: float = MAX_WEIGHT, corner: bool = True) -> np.ndarray:
    """Ripley's isotropic edge-correction weight e(x, d) on a rectangle, vectorised.

    The reciprocal of the fraction of the circle of radius ``d`` centred on ``(x, y)`` inside
    ``window``, by spatstat's closed form (module docstring); 1 for ``d = 0``; clipped to
    ``[1, max_weight]``. Arguments broadcast against each other.

    Parameters
    ----------
    x, y
        Circle centres, µm, inside the window.
    d
        Radii, µm (≥ 0).
    window
        The rectangle.
    max_weight
        Upper clip (spatstat's ``maxweight``, 100).
    corner
        Add the quarter circle outside W when the centre is on a corner (``edge.Ripley``);
        False gives spatstat's Krect engine, which omits it (module docstring).

    Returns
    -------
    numpy.ndarray
        Weights ≥ 1 of the broadcast shape.

    Examples
    --------
    >>> from metaniche.analyses.relations.isotropic import Rectangle, isotropic_weight
    >>> window = Rectangle(0.0, 0.0, 100.0, 60.0)
    >>> float(isotropic_weight(0.0, 30.0, 5.0, window))     # on a side: half the circle out
    2.0
    >>> float(isotropic_weight(0.0, 0.0, 5.0, window))      # on a corner: three quarters
    4.0
    """
    x, y, d = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                  np.asarray(d, np.float64))
    d_left, d_right = x - window.xmin, window.xmax - x
    d_down, d_up = y - window.ymin, window.ymax - y
    with np.errstate(divide="ignore", invalid="ignore"):
        def half(s: np.ndarray) -> np.ndarray:
            return np.where(s < d, np.arccos(np.clip(s / d, -1.0, 1.0)), 0.0)

        a_l, a_r, a_d, a_u = half(d_left), half(d_right), half(d_down), half(d_up)
    exterior = (np.minimum(a_l, np.arctan2(d_up, d_left))
                + np.minimum(a_l, np.arctan2(d_down, d_left))
                + np.minimum(a_r, np.arctan2(d_up, d_right))
                + np.minimum(a_r, np.arctan2(d_down, d_right))
                + np.minimum(a_u, np.arctan2(d_left, d_up))
                + np.minimum(a_u, np.arctan2(d_right, d_up))
                + np.minimum(a_d, np.arctan2(d_left, d_down))
                + np.minimum(a_d, np.arctan2(d_right, d_down))) / (2 * np.pi)
    on_corner = ((np.abs(d_left) < _EPS).astype(int) + (np.abs(d_right) < _EPS)
                 + (np.abs(d_down) < _EPS) + (np.abs(d_up) < _EPS)) >= 2
    exterior = exterior + np.where(on_corner & corner, 0.25, 0.0)
    with np.errstate(divide="ignore"):
        weight = np.where(d > 0, 1.0 / (1.0 - exterior), 1.0)
    return np.clip(weight, 1.0, max_weight)


def spatstat_rmax(window: Rectangle, n_to: int | np.ndarray) -> np.ndarray:
    """spatstat's default largest radius for K: ``min(short side / 4, sqrt(1000/(π λ)))``.

    ``λ = n_to / |W|`` is the intensity of the target type (``rmax.rule("K", W, lambdaJ)``;
    the second term keeps about 1000 expected neighbours per point). µm; NaN where
    ``n_to`` is 0.
    """
    n = np.asarray(n_to, dtype=np.float64)
    with np.errstate(divide="ignore"):
        crowded = np.sqrt(1000.0 / (np.pi * n / window.area))
    return np.where(n > 0, np.minimum(window.short_side / 4.0, crowded), np.nan)


def spatstat_radii(rmax: float) -> np.ndarray:
    """spatstat's default grid ``0, rmax/512, …, rmax`` (513 radii, µm)."""
    return np.linspace(0.0, float(rmax), SPATSTAT_N_RADII)


@numba.njit(cache=True, inline="always")
def _weight(x: float, y: float, d: float, xmin: float, ymin: float, xmax: float,
            ymax: float, max_weight: float, corner: bool = True
            ) -> float:  # pragma: no cover - numba
    """:func:`isotropic_weight` for one centre and radius (same formula, scalar); without the
    corner term when ``corner`` is False (spatstat's Krect engine, module docstring)."""
    if d == 0.0:
        return 1.0
    dl, dr, dd, du = x - xmin, xmax - x, y - ymin, ymax - y
    al = np.arccos(dl / d) if dl < d else 0.0
    ar = np.arccos(dr / d) if dr < d else 0.0
    ad = np.arccos(dd / d) if dd < d else 0.0
    au = np.arccos(du / d) if du < d else 0.0
    ext = (min(al, np.arctan2(du, dl)) + min(al, np.arctan2(dd, dl))
           + min(ar, np.arctan2(du, dr)) + min(ar, np.arctan2(dd, dr))
           + min(au, np.arctan2(dl, du)) + min(au, np.arctan2(dr, du))
           + min(ad, np.arctan2(dl, dd)) + min(ad, np.arctan2(dr, dd))) / (2.0 * np.pi)
    eps = 2.220446049250313e-16
    n_small = ((abs(dl) < eps) + (abs(dr) < eps) + (abs(dd) < eps) + (abs(du) < eps))
    if corner and n_small >= 2:
        ext += 0.25
    if ext == 1.0:
        return max_weight
    return min(max(1.0 / (1.0 - ext), 1.0), max_weight)  # ext > 1 (circle outside W): 1


@numba.njit(cache=True, inline="always")
def _bin_strict(grid: np.ndarray, d: float) -> int:  # pragma: no cover - numba
    """Index of the first radius with ``d < r`` (spatstat's histogram); the last radius when
    ``d == r_max``; ``len(grid)`` when ``d > r_max``."""
    n = len(grid)
    top = grid[n - 1]
    if d > top:
        return n
    guess = int(d / top * (n - 1)) if top > 0 else 0
    guess = min(max(guess, 0), n - 1)
    while guess > 0 and grid[guess - 1] > d:
        guess -= 1
    while guess < n and grid[guess] <= d:
        guess += 1
    return min(guess, n - 1)


@numba.njit(cache=True, parallel=True)
def _isotropic_kernel(x: np.ndarray, y: np.ndarray, codes: np.ndarray, n_types: int,
                      grids: np.ndarray, starts: np.ndarray, bin_x: np.ndarray,
                      bin_y: np.ndarray, n_bx: int, n_by: int, reach: int, xmin: float,
                      ymin: float, xmax: float, ymax: float, max_weight: float,
                      krect: np.ndarray, partial: np.ndarray) -> None:  # pragma: no cover
    """Weighted histograms (K, K, R) of each block of cells into ``partial`` (blocks, K, K,
    R), zeroed; cells sorted by grid bin, bin b holding ``starts[b]:starts[b+1]``;
    ``krect[b]``: pairs (b, b) counted as spatstat's Krect does. The caller allocates and
    adds the blocks (here, they slowed Numba's first compilation)."""
    n = len(x)
    n_r = grids.shape[1]
    n_blocks = partial.shape[0]
    for block in numba.prange(n_blocks):
        sums = partial[block]
        for i in range(block * n // n_blocks, (block + 1) * n // n_blocks):
            a = codes[i]
            bx, by = bin_x[i], bin_y[i]
            for ny in range(max(0, by - reach), min(n_by, by + reach + 1)):
                lo = starts[ny * n_bx + max(0, bx - reach)]
                hi = starts[ny * n_bx + min(n_bx, bx + reach + 1)]
                for j in range(lo, hi):
                    if j == i:
                        continue
                    b = codes[j]
                    grid = grids[b]
                    dx = x[j] - x[i]
                    dy = y[j] - y[i]
                    d2 = dx * dx + dy * dy
                    d = np.sqrt(d2)
                    if a == b and krect[b]:
                        top = grid[n_r - 1]
                        if d2 >= top * top:
                            continue
                        k = int(np.ceil(d / (top / (n_r - 1))))
                        sums[a, b, k] += _weight(x[i], y[i], d, xmin, ymin, xmax, ymax,
                                                 max_weight, False)
                        continue
                    k = _bin_strict(grid, d)
                    if k >= n_r:
                        continue
                    sums[a, b, k] += _weight(x[i], y[i], d, xmin, ymin, xmax, ymax, max_weight)


def ripley_cross_isotropic(coordinates: np.ndarray, type_codes: np.ndarray, n_types: int,
                           window: Rectangle, radii: np.ndarray | None = None,
                           max_weight: float = MAX_WEIGHT) -> RipleyResult:
    """Isotropic-corrected cross-type K, L, g for every ordered type pair (module docstring).

    Parameters
    ----------
    coordinates
        (n, 2) positions, µm, inside ``window``.
    type_codes
        (n,) type codes in ``[0, n_types)``.
    n_types
        K.
    window
        The rectangle (e.g. :meth:`Rectangle.image_frame`, spicyR's window).
    radii
        Ascending radii ≥ 0 (µm) shared by every pair; ``None`` (default) gives spatstat's
        default grid per target type b (:func:`spatstat_radii` of :func:`spatstat_rmax`),
        so ``result.radii`` is then (K, 513), row b the grid of pairs ``(·, b)``.
    max_weight
        Clip of the edge weights (spatstat's 100).

    Returns
    -------
    RipleyResult
        ``k[a, b]`` is spatstat's ``Kcross(X, a, b, correction = "isotropic")`` on the grid
        (``Kest`` of the a-points for a = b); ``l = sqrt(k/π)``; ``g`` the ring estimator of
        :mod:`~metaniche.analyses.relations.pointpattern` (NaN on the zero-width ring at
        r = 0); ``l_minus_r_mean[a, b]`` spicyR's statistic. NaN where a type has no cells
        (or a = b has one cell).
    """
    xy = np.asarray(coordinates, dtype=np.float64)
    codes = np.asarray(type_codes, dtype=np.int64)
    n_by_type = np.bincount(codes, minlength=n_types).astype(np.float64)
    if radii is None:
        rmax = spatstat_rmax(window, n_by_type)
        grids = np.array([spatstat_radii(m) if np.isfinite(m) else np.zeros(SPATSTAT_N_RADII)
                          for m in rmax])
        per_target = True
    else:
        grid = np.asarray(radii, dtype=np.float64)
        if grid.ndim != 1 or len(grid) == 0 or grid[0] < 0 or np.any(np.diff(grid) <= 0):
            raise ValueError("`radii` must be ascending non-negative numbers.")
        grids = np.tile(grid, (n_types, 1))
        per_target = False
    n_r = grids.shape[1]
    hist = np.zeros((n_types, n_types, n_r))
    if len(xy) > 1 and np.nanmax(grids[:, -1]) > 0:
        hist = _histograms(xy, codes, n_types, np.ascontiguousarray(grids), window, max_weight)
    sums = np.cumsum(hist, axis=-1)
    pairs = n_by_type[:, None] * (n_by_type[None, :] - np.eye(n_types))
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(pairs[..., None] > 0, window.area * sums / pairs[..., None], np.nan)
        l_values = np.sqrt(k / np.pi)
        r_grid = grids[None, :, :]
        ring = np.pi * np.diff(np.concatenate([np.zeros((1, n_types, 1)), r_grid], axis=-1)
                               ** 2, axis=-1)
        g = np.diff(np.concatenate([np.zeros((*k.shape[:2], 1)), k], axis=-1), axis=-1) / ring
        g = np.where(ring > 0, g, np.nan)
    return RipleyResult(grids if per_target else grids[0], k, l_values, g, n_by_type)


def _histograms(xy: np.ndarray, codes: np.ndarray, n_types: int, grids: np.ndarray,
                window: Rectangle, max_weight: float) -> np.ndarray:
    """Cell list of bins at least the largest radius wide; the Numba kernel over it."""
    reach_um = float(np.nanmax(grids[:, -1]))
    x, y = xy[:, 0], xy[:, 1]
    x0, y0 = float(x.min()), float(y.min())
    extent = max(float(x.max()) - x0, float(y.max()) - y0, 1e-12)
    width = max(reach_um, extent / 2048, 1e-12)
    reach = max(1, int(np.ceil(reach_um / width)))
    n_bx = int(np.floor((float(x.max()) - x0) / width)) + 1
    n_by = int(np.floor((float(y.max()) - y0) / width)) + 1
    bx = np.minimum(((x - x0) / width).astype(np.int64), n_bx - 1)
    by = np.minimum(((y - y0) / width).astype(np.int64), n_by - 1)
    cell_bin = by * n_bx + bx
    order = np.argsort(cell_bin, kind="stable")
    starts = np.zeros(n_bx * n_by + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell_bin, minlength=n_bx * n_by), out=starts[1:])
    n_blocks = int(min(64, max(1, len(x) // 256)))
    partial = np.zeros((n_blocks, n_types, n_types, grids.shape[1]))
    _isotropic_kernel(
        np.ascontiguousarray(x[order]), np.ascontiguousarray(y[order]),
        np.ascontiguousarray(codes[order]), n_types, np.nan_to_num(grids, nan=0.0), starts,
        np.ascontiguousarray(bx[order]), np.ascontiguousarray(by[order]), n_bx, n_by, reach,
        window.xmin, window.ymin, window.xmax, window.ymax, float(max_weight),
        np.array([_evenly_spaced(g) for g in grids], dtype=np.bool_), partial)
    out = np.zeros(partial.shape[1:])
    for block_sums in partial:  # fixed order: deterministic sums
        out += block_sums
    return out


def _evenly_spaced(grid: np.ndarray) -> bool:
    """True for a grid ``0, step, …, rmax`` (spatstat's ``breaks$even``: Kest takes Krect)."""
    n = len(grid)
    if n < 2 or grid[0] != 0 or not grid[-1] > 0:
        return False
    return bool(np.allclose(np.diff(grid), grid[-1] / (n - 1), rtol=1e-8, atol=0.0))
