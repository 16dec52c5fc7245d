"""Cross-type Ripley K, Besag L and pair correlation g on the tissue-mask window.

Estimator (translation edge correction, Ohser & Stoyan [1]_, spatstat's ``"translate"``):

    K_ab(r) = |W| / (n_a · (n_b − δ_ab)) · Σ_{i∈a} Σ_{j∈b, j≠i} 1[d_ij ≤ r] · |W| / γ_W(x_j − x_i)

with W the tissue mask (not the bounding box), |W| its area and γ_W(h) = |W ∩ (W + h)| its set
covariance. γ_W is computed once per sample by FFT autocorrelation of the mask raster (coarsened
by block averaging to at most ``max_side`` pixels a side, so the FFT stays small on whole
slides) and read off by bilinear interpolation at each pair's displacement. Boundary: a pair at
exactly ``r`` counts (``≤``). Ripley's isotropic correction on a rectangle (spatstat's
``Lcross``, spicyR's statistic) is :mod:`metaniche.analyses.relations.isotropic`.

``L(r) = sqrt(K(r)/π)`` (Besag) and ``g`` is the ring estimator
``g(r_k) = (K(r_k) − K(r_{k−1})) / (π (r_k² − r_{k−1}²))`` on the ring ``(r_{k−1}, r_k]``
(``r_0 = 0``). Under complete spatial randomness K(r) = πr², L(r) = r, g = 1. The per-sample
summary used by spicyR [3]_ is ``mean_r (L(r) − r)`` over the radius grid.

CSR envelopes: ``n_simulations`` patterns with the same type counts, uniform in the mask
(uniform pixel by area, then uniform within the pixel), seeded; pointwise min/max.

Cost: one pass over directed pairs within ``max(radii)``, O(pairs), binned on the fly by a Numba
cell-list kernel (no pair arrays); memory O(n).

References
----------
.. [1] Ohser J., Stoyan D. (1981) On the second-order and orientation analysis of planar
   stationary point processes. Biometrical J 23:523–533.
.. [2] Baddeley A., Rubak E., Turner R. (2015) Spatial Point Patterns: Methodology and
   Applications with R. CRC Press (ch. 7, ``Kcross``, ``pcf``).
.. [3] Canete N.P. et al. (2022) spicyR: spatial analysis of in situ cytometry data in R.
   Bioinformatics 38:3099–3105.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import signal
from scipy.spatial import cKDTree

from metaniche.analyses.relations._graph import PairChunks
from metaniche.analyses.relations._pairbins import bin_pair_chunks, bin_pairs_within

__all__ = ["RipleyResult", "Window", "ripley_cross", "ripley_envelope", "ripley_table"]


@dataclass
class Window:
    """Observation window given as a boolean raster.

    Attributes
    ----------
    mask
        Boolean raster (rows = y, cols = x).
    x0, y0
        Lower-left corner of pixel (0, 0) in µm.
    pixel_um
        Pixel size, µm.
    """

    mask: np.ndarray
    x0: float
    y0: float
    pixel_um: float
    max_side: int = 1024

    def __post_init__(self) -> None:
        self.mask = np.asarray(self.mask, dtype=bool)
        self.area = float(self.mask.sum()) * self.pixel_um**2
        factor = max(1, int(np.ceil(max(self.mask.shape) / self.max_side)))
        fraction = _block_mean(self.mask.astype(np.float64), factor)
        self._cov_pixel = self.pixel_um * factor
        self._cov = signal.fftconvolve(fraction, fraction[::-1, ::-1]) * self._cov_pixel**2
        self._cov_centre = (fraction.shape[0] - 1, fraction.shape[1] - 1)

    def set_covariance(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """γ_W at displacements (dx, dy) µm (bilinear; floored at one coarse pixel's area)."""
        rows = self._cov_centre[0] + np.asarray(dy, dtype=np.float64) / self._cov_pixel
        cols = self._cov_centre[1] + np.asarray(dx, dtype=np.float64) / self._cov_pixel
        n_rows, n_cols = self._cov.shape
        rows = np.clip(rows, 0, n_rows - 1)
        cols = np.clip(cols, 0, n_cols - 1)
        r0 = np.minimum(rows.astype(np.int64), n_rows - 2)
        c0 = np.minimum(cols.astype(np.int64), n_cols - 2)
        fr, fc = rows - r0, cols - c0
        cov = self._cov
        values = ((1 - fr) * ((1 - fc) * cov[r0, c0] + fc * cov[r0, c0 + 1])
                  + fr * ((1 - fc) * cov[r0 + 1, c0] + fc * cov[r0 + 1, c0 + 1]))
        return np.maximum(values, self._cov_pixel**2)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether points fall in a window pixel."""
        col = np.floor((np.asarray(x) - self.x0) / self.pixel_um).astype(np.int64)
        row = np.floor((np.asarray(y) - self.y0) / self.pixel_um).astype(np.int64)
        inside = (row >= 0) & (row < self.mask.shape[0]) & (col >= 0) & (col < self.mask.shape[1])
        out = np.zeros(len(col), dtype=bool)
        out[inside] = self.mask[row[inside], col[inside]]
        return out

    def sample_uniform(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n points uniform in the window, (n, 2)."""
        pixels = np.flatnonzero(self.mask.ravel())
        chosen = pixels[rng.integers(0, len(pixels), n)]
        row, col = np.divmod(chosen, self.mask.shape[1])
        x = self.x0 + (col + rng.random(n)) * self.pixel_um
        y = self.y0 + (row + rng.random(n)) * self.pixel_um
        return np.column_stack([x, y])

    @classmethod
    def rectangle(cls, x0: float, y0: float, width: float, height: float,
                  pixel_um: float = 1.0) -> Window:
        """A rectangular window rasterised at ``pixel_um``."""
        shape = (round(height / pixel_um), round(width / pixel_um))
        return cls(np.ones(shape, dtype=bool), x0, y0, pixel_um)


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return image
    rows = -(-image.shape[0] // factor) * factor
    cols = -(-image.shape[1] // factor) * factor
    padded = np.zeros((rows, cols))
    padded[:image.shape[0], :image.shape[1]] = image
    return padded.reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))


@dataclass(frozen=True)
class RipleyResult:
    """Cross-type K, L and g on a radius grid.

    Attributes
    ----------
    radii
        (R,) radii, µm (ascending), shared by every pair; or (K, R), row b the grid of the
        pairs ``(·, b)`` (spatstat's per-target default grid, see
        :mod:`~metaniche.analyses.relations.isotropic`).
    k, l, g
        (K, K, R) arrays; ``[a, b]`` is the a→b function (symmetric with translation weights;
        asymmetric with the isotropic correction).
    n_by_type
        (K,) number of cells of each type.
    """

    radii: np.ndarray
    k: np.ndarray
    l: np.ndarray  # noqa: E741 - Besag's L
    g: np.ndarray
    n_by_type: np.ndarray

    @property
    def l_minus_r_mean(self) -> np.ndarray:
        """(K, K) spicyR summary: mean over the grid of ``L(r) − r`` (µm)."""
        return np.mean(self.l - self.radius_grid, axis=-1)

    @property
    def radius_grid(self) -> np.ndarray:
        """(K, K, R) or broadcastable radii of every pair ``[a, b]`` (µm)."""
        radii = np.asarray(self.radii)
        return radii if radii.ndim == 1 else radii[None, :, :]


def ripley_cross(coordinates: np.ndarray, type_codes: np.ndarray, n_types: int,
                 radii: np.ndarray, window: Window, tree: cKDTree | None = None,
                 chunk_size: int = 50_000, pairs: PairChunks | None = None) -> RipleyResult:
    """Translation-corrected cross-type K, L, g for every ordered type pair (module docstring).

    Parameters
    ----------
    coordinates
        (n, 2) positions, µm, inside ``window``.
    type_codes
        (n,) type codes.
    n_types
        K.
    radii
        Ascending positive radii, µm.
    window
        The observation window (tissue mask).
    tree, chunk_size
        Unused; kept for compatibility. Pairs are binned on the fly by a Numba cell-list
        kernel (:mod:`metaniche.analyses.relations._pairbins`), O(n) memory, no pair arrays.
    pairs
        Optional precomputed directed pair chunks ``(i, j, d)`` covering at least
        ``max(radii)`` (pairs beyond it are ignored), to share one pair pass between statistics.
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    codes = np.asarray(type_codes, dtype=np.int64)
    radii = np.asarray(radii, dtype=np.float64)
    n_r = len(radii)
    covariance = (window._cov, *window._cov_centre, window._cov_pixel, window.area)
    if pairs is not None:
        sums = bin_pair_chunks(pairs, coordinates, codes, n_types, radii,
                               covariance=covariance)
    else:
        sums = bin_pairs_within(coordinates, codes, n_types, radii, covariance=covariance)
    sums = np.cumsum(sums.reshape(n_types, n_types, n_r), axis=-1)
    n_by_type = np.bincount(codes, minlength=n_types).astype(np.float64)
    pairs = n_by_type[:, None] * (n_by_type[None, :] - np.eye(n_types))
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(pairs[..., None] > 0, window.area * sums / pairs[..., None], np.nan)
        l_values = np.sqrt(k / np.pi)
        ring = np.pi * np.diff(np.concatenate([[0.0], radii]) ** 2)
        g = np.diff(np.concatenate([np.zeros((*k.shape[:2], 1)), k], axis=-1), axis=-1) / ring
    return RipleyResult(radii, k, l_values, g, n_by_type)


def ripley_envelope(window: Window, n_a: int, n_b: int, radii: np.ndarray,
                    same_type: bool = False, n_simulations: int = 39,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Pointwise CSR envelopes of K, L and g for a type pair inside ``window``.

    Each simulation draws ``n_a`` (and, for ``same_type=False``, an independent ``n_b``) points
    uniformly in the window and recomputes the statistic. Simulation ``s`` uses generator
    ``SeedSequence(seed).spawn(n_simulations)[s]``. With 39 simulations the min/max envelope
    is a pointwise two-sided test at α = 0.05.

    Returns
    -------
    dict
        ``k_lo, k_hi, l_lo, l_hi, g_lo, g_hi`` arrays of shape (R,) (pointwise envelopes) and
        the simulated curves ``k, l, g`` of shape (n_simulations, R), e.g. for a global
        maximum-absolute-deviation envelope test.
    """
    radii = np.asarray(radii, dtype=np.float64)
    ks, gs = [], []
    for child in np.random.SeedSequence(seed).spawn(n_simulations):
        rng = np.random.default_rng(child)
        if same_type:
            points = window.sample_uniform(n_a, rng)
            codes = np.zeros(n_a, dtype=np.int64)
            result = ripley_cross(points, codes, 1, radii, window)
            ks.append(result.k[0, 0])
            gs.append(result.g[0, 0])
        else:
            points = np.concatenate([window.sample_uniform(n_a, rng),
                                     window.sample_uniform(n_b, rng)])
            codes = np.repeat([0, 1], [n_a, n_b])
            result = ripley_cross(points, codes, 2, radii, window)
            ks.append(result.k[0, 1])
            gs.append(result.g[0, 1])
    k_sims, g_sims = np.array(ks), np.array(gs)
    l_sims = np.sqrt(k_sims / np.pi)
    return {"k_lo": k_sims.min(0), "k_hi": k_sims.max(0), "l_lo": l_sims.min(0),
            "l_hi": l_sims.max(0), "g_lo": g_sims.min(0), "g_hi": g_sims.max(0),
            "k": k_sims, "l": l_sims, "g": g_sims}


def ripley_table(result: RipleyResult, cell_types: list[str]) -> pd.DataFrame:
    """Long table ``type_a, type_b, r_um, k_um2, l_um, l_minus_r_um, g`` (pairs with cells)."""
    n_types, _, n_r = result.k.shape
    a, b, _ = np.meshgrid(np.arange(n_types), np.arange(n_types), np.arange(n_r),
                          indexing="ij")
    labels = np.asarray(cell_types, dtype=object)
    radii = np.broadcast_to(result.radius_grid, result.k.shape)
    table = pd.DataFrame({
        "type_a": labels[a.ravel()], "type_b": labels[b.ravel()],
        "r_um": radii.ravel(), "k_um2": result.k.ravel(), "l_um": result.l.ravel(),
        "l_minus_r_um": (result.l - radii).ravel(), "g": result.g.ravel(),
    })
    return table[np.isfinite(table["k_um2"])].reset_index(drop=True)
