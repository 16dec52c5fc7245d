"""Ripley K/L/g of one sample under the configured edge correction, window and radius grid.

The one place that maps ``[relations] ripley_correction`` (``"translation"`` or
``"isotropic"``), ``ripley_window`` (``"mask"`` or ``"rectangle"``) and ``ripley_max_um`` (a
number, or ``"auto"``) onto the estimators of
:mod:`~metaniche.analyses.relations.pointpattern` (translation, any window) and
:mod:`~metaniche.analyses.relations.isotropic` (Ripley's isotropic correction, rectangle):

=========================  ==================================================================
``ripley_max_um``          radius grid
=========================  ==================================================================
a number                   ``step, 2·step, …, max`` (µm), shared by every pair
``"auto"``                 spatstat's default per target type b: 513 radii from 0 to
                           ``min(short side / 4, sqrt(1000 / (π λ_b)))`` of the rectangle
=========================  ==================================================================

The rectangle is the image frame ``[0, max x] × [0, max y]`` (spicyR's window,
:meth:`~metaniche.analyses.relations.isotropic.Rectangle.image_frame`); with the translation
correction it is rasterised at the tissue mask's pixel size. spicyR mode (``isotropic``,
``rectangle``, ``auto``) gives spatstat's ``Lcross(X, a, b, correction = "isotropic")`` on
spicyR's window, and ``l_minus_r_mean[a, b]`` spicyR's per-image statistic.
"""

from __future__ import annotations

import numpy as np

from metaniche.analyses.relations.isotropic import (
    Rectangle,
    ripley_cross_isotropic,
    spatstat_radii,
    spatstat_rmax,
)
from metaniche.analyses.relations.pointpattern import RipleyResult, Window, ripley_cross

__all__ = ["ripley_radii", "ripley_sample"]


def ripley_radii(max_um: float | str, step_um: float) -> np.ndarray | None:
    """The shared grid ``step, 2·step, …, max`` (µm), or ``None`` for ``max_um = "auto"``
    (spatstat's per-target grid, chosen per sample)."""
    if max_um == "auto":
        return None
    return np.arange(step_um, float(max_um) + 1e-9, step_um)


def ripley_sample(coordinates: np.ndarray, type_codes: np.ndarray, n_types: int,
                  mask: Window, *, correction: str = "translation", window: str = "mask",
                  max_um: float | str = 100.0, step_um: float = 10.0) -> RipleyResult:
    """Cross-type K, L, g of every ordered type pair of one sample (module docstring).

    Parameters
    ----------
    coordinates, type_codes, n_types
        Cells (µm), their type codes, the number of types.
    mask
        The tissue-mask window (used for ``window = "mask"``; its pixel size rasterises the
        rectangle for the translation correction).
    correction, window, max_um, step_um
        ``[relations] ripley_correction``, ``ripley_window``, ``ripley_max_um``,
        ``ripley_step_um``.

    Returns
    -------
    RipleyResult
        ``radii`` (R,) for a numeric ``max_um``, (K, 513) per target type for ``"auto"``.
    """
    radii = ripley_radii(max_um, step_um)
    xy = np.asarray(coordinates, dtype=np.float64)
    rectangle = Rectangle.image_frame(xy)
    if correction == "isotropic":
        if window != "rectangle":
            raise ValueError('the isotropic correction needs window = "rectangle".')
        return ripley_cross_isotropic(xy, type_codes, n_types, rectangle, radii)
    frame = mask if window == "mask" else Window.rectangle(
        rectangle.xmin, rectangle.ymin, rectangle.xmax - rectangle.xmin,
        rectangle.ymax - rectangle.ymin, pixel_um=mask.pixel_um)
    if radii is not None:
        return ripley_cross(xy, type_codes, n_types, radii, frame)
    return _translation_per_target(xy, np.asarray(type_codes, np.int64), n_types, frame,
                                   rectangle)


def _translation_per_target(xy: np.ndarray, codes: np.ndarray, n_types: int, frame: Window,
                            rectangle: Rectangle) -> RipleyResult:
    """Translation estimator on spatstat's per-target grids: one pass per distinct grid."""
    n_by_type = np.bincount(codes, minlength=n_types).astype(np.float64)
    rmax = spatstat_rmax(rectangle, n_by_type)
    grids = np.array([spatstat_radii(m) if np.isfinite(m) else np.zeros(513) for m in rmax])
    shape = (n_types, n_types, grids.shape[1])
    k, l_values, g = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for value in np.unique(rmax[np.isfinite(rmax)]):
        targets = np.flatnonzero(rmax == value)
        grid = spatstat_radii(value)
        part = ripley_cross(xy, codes, n_types, grid, frame)
        k[:, targets], l_values[:, targets] = part.k[:, targets], part.l[:, targets]
        g[:, targets] = part.g[:, targets]
    g[..., 0] = np.nan  # the zero-width ring at r = 0
    return RipleyResult(grids, k, l_values, g, n_by_type)
