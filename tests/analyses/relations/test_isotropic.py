"""Ripley's isotropic correction on a rectangle (spatstat ``edge.Ripley`` / ``Kcross``).

Checked against an independent exact arc computation, a direct numeric integral over the
circle, a brute-force all-pairs estimator with spatstat's counting rule, CSR closed forms,
and on real images of the melanoma cohort (brute force, every ordered pair).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from metaniche.analyses.relations.isotropic import (
    SPATSTAT_N_RADII,
    Rectangle,
    isotropic_weight,
    ripley_cross_isotropic,
    spatstat_radii,
    spatstat_rmax,
)

WINDOW = Rectangle(0.0, 0.0, 100.0, 60.0)


def _inside_fraction_exact(x: float, y: float, d: float, w: Rectangle) -> float:
    """Fraction of the circle inside ``w``: every crossing angle with the four side lines,
    sorted; each arc between crossings is in or out as its midpoint is (no closed form)."""
    if d == 0:
        return 1.0
    angles = [0.0, 2 * np.pi]
    for centre, line, cos_axis in ((x, w.xmin, True), (x, w.xmax, True),
                                   (y, w.ymin, False), (y, w.ymax, False)):
        s = (line - centre) / d
        if abs(s) <= 1:
            base = np.arccos(s) if cos_axis else np.arcsin(s)
            for a in ((base, -base) if cos_axis else (base, np.pi - base)):
                angles.append(a % (2 * np.pi))
    angles = np.sort(angles)
    mid = (angles[:-1] + angles[1:]) / 2
    px, py = x + d * np.cos(mid), y + d * np.sin(mid)
    inside = (px >= w.xmin) & (px <= w.xmax) & (py >= w.ymin) & (py <= w.ymax)
    return float(np.sum(np.diff(angles)[inside]) / (2 * np.pi))


def test_weight_equals_exact_arc_fraction():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0, 100, 300), [0.0, 100.0, 0.0, 50.0, 100.0]])
    y = np.concatenate([rng.uniform(0, 60, 300), [30.0, 60.0, 0.0, 0.0, 13.0]])
    # radii up to 58 µm < half the diagonal: no circle lies entirely outside the window
    d = np.concatenate([rng.uniform(0, 58, 300), [5.0, 7.0, 20.0, 58.0, 57.0]])
    weight = isotropic_weight(x, y, d, WINDOW)
    exact = np.array([_inside_fraction_exact(*v, WINDOW) for v in zip(x, y, d, strict=True)])
    expected = np.clip(1 / exact, 1, 100)
    np.testing.assert_allclose(weight, expected, rtol=1e-10)
    # on a side half the circle is outside (weight 2); on a corner three quarters (weight 4)
    assert isotropic_weight(0.0, 30.0, 5.0, WINDOW) == pytest.approx(2.0)
    assert isotropic_weight(100.0, 60.0, 5.0, WINDOW) == pytest.approx(4.0)
    assert isotropic_weight(50.0, 30.0, 0.0, WINDOW) == 1.0


def test_weight_equals_numeric_integral():
    rng = np.random.default_rng(1)
    x, y, d = rng.uniform(0, 100, 100), rng.uniform(0, 60, 100), rng.uniform(0.5, 40, 100)
    theta = np.linspace(0, 2 * np.pi, 400_001)[:-1]
    px = x[:, None] + d[:, None] * np.cos(theta)
    py = y[:, None] + d[:, None] * np.sin(theta)
    fraction = ((px >= 0) & (px <= 100) & (py >= 0) & (py <= 60)).mean(axis=1)
    np.testing.assert_allclose(isotropic_weight(x, y, d, WINDOW), 1 / fraction, rtol=2e-5)


def _brute_force_k(xy, codes, n_types, window, grids):
    """All pairs, numpy: K_ab(r) = |W| / (n_a (n_b − δ)) Σ 1[d < r or d = r = r_max] e; for
    a = b on an even grid spatstat's Krect: Σ 1[ceil(d / step) ≤ k, d < r_max] e without the
    corner term."""
    n_r = grids.shape[1]
    k = np.full((n_types, n_types, n_r), np.nan)
    counts = np.bincount(codes, minlength=n_types)
    distance = cdist(xy, xy)
    for a in range(n_types):
        for b in range(n_types):
            ia, ib = np.flatnonzero(codes == a), np.flatnonzero(codes == b)
            pairs = counts[a] * (counts[b] - (a == b))
            if pairs == 0:
                continue
            d = distance[np.ix_(ia, ib)]
            grid = grids[b]
            step = grid[-1] / (len(grid) - 1)
            krect = a == b and np.allclose(np.diff(grid), step) and grid[0] == 0
            w = isotropic_weight(xy[ia, 0][:, None], xy[ia, 1][:, None], d, window,
                                 corner=not krect)
            keep = ia[:, None] != ib[None, :]
            if krect:
                keep &= d < grid[-1]
                index = np.ceil(d[keep] / step).astype(int)
                sums = np.bincount(index, weights=w[keep], minlength=len(grid))
                k[a, b] = window.area * np.cumsum(sums) / pairs
                continue
            order = np.argsort(d[keep])
            d_sorted, w_cum = d[keep][order], np.concatenate([[0], np.cumsum(w[keep][order])])
            below = np.searchsorted(d_sorted, grid, side="left")            # d < r
            below[-1] = np.searchsorted(d_sorted, grid[-1], side="right")    # d <= r_max
            k[a, b] = window.area * w_cum[below] / pairs
    return k


def test_kernel_equals_brute_force_with_ties_and_edges():
    rng = np.random.default_rng(2)
    # points on a 0.5 µm lattice (exact ties at grid radii), some on the sides and corners
    xy = np.round(rng.uniform(0, 100, (400, 2)) * 2) / 2
    xy[:, 1] = np.minimum(xy[:, 1], 60.0)
    xy[:5] = [[0, 0], [100, 60], [0, 30], [50, 60], [100, 0]]
    codes = rng.integers(0, 3, len(xy))
    codes[:3] = 3   # a rare type (3 cells)
    result = ripley_cross_isotropic(xy, codes, 5, WINDOW)   # type 4 absent
    assert result.radii.shape == (5, SPATSTAT_N_RADII)
    expected = _brute_force_k(xy, codes, 5, WINDOW, np.nan_to_num(result.radii))
    np.testing.assert_allclose(result.k, expected, rtol=1e-10, equal_nan=True)
    assert np.isnan(result.k[4]).all() and np.isnan(result.k[:, 4]).all()
    shared = np.arange(0.0, 30.1, 2.5)  # a shared grid with exact ties (lattice distances)
    result = ripley_cross_isotropic(xy, codes, 5, WINDOW, radii=shared)
    expected = _brute_force_k(xy, codes, 5, WINDOW, np.tile(shared, (5, 1)))
    np.testing.assert_allclose(result.k, expected, rtol=1e-10, equal_nan=True)


def test_grid_is_spatstats_default():
    counts = np.array([10, 50_000, 0])
    rmax = spatstat_rmax(WINDOW, counts)
    assert rmax[0] == pytest.approx(15.0)                      # shorter side / 4
    assert rmax[1] == pytest.approx(np.sqrt(1000 / (np.pi * 50_000 / 6000)))  # ~1000 neighbours
    assert np.isnan(rmax[2])
    grid = spatstat_radii(15.0)
    assert len(grid) == 513 and grid[0] == 0 and grid[-1] == 15.0
    np.testing.assert_allclose(np.diff(grid), 15.0 / 512)


def test_asymmetric_and_relabelling_invariant():
    rng = np.random.default_rng(3)
    xy = np.column_stack([rng.uniform(0, 100, 600), rng.uniform(0, 60, 600)])
    codes = (xy[:, 0] > 80).astype(np.int64)   # type 1 hugs the right side
    result = ripley_cross_isotropic(xy, codes, 2, WINDOW)
    assert not np.allclose(result.k[0, 1], result.k[1, 0])      # A→B ≠ B→A
    swapped = ripley_cross_isotropic(xy, 1 - codes, 2, WINDOW)
    np.testing.assert_allclose(swapped.k, result.k[::-1, ::-1], rtol=1e-12)
    shifted = ripley_cross_isotropic(xy + np.array([7.0, -3.0]), codes, 2,
                                     Rectangle(7.0, -3.0, 107.0, 57.0))
    np.testing.assert_allclose(shifted.k, result.k, rtol=1e-9)


def test_csr_l_minus_r_is_zero_on_average():
    """Under CSR the isotropic estimator is ratio-unbiased: mean L(r) − r ≈ 0."""
    window = Rectangle(0.0, 0.0, 400.0, 300.0)
    summaries = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        xy = np.column_stack([rng.uniform(0, 400, 1500), rng.uniform(0, 300, 1500)])
        codes = rng.integers(0, 2, 1500)
        result = ripley_cross_isotropic(xy, codes, 2, window)
        k = result.k[0, 1, 100:]
        np.testing.assert_allclose(k / (np.pi * result.radii[1, 100:] ** 2), 1, atol=0.15)
        summaries.append(result.l_minus_r_mean)
    summaries = np.array(summaries)
    assert np.all(np.abs(summaries.mean(axis=0)) < 0.3)   # µm, on radii up to 75 µm
    # planted attraction: each b is its a displaced by N(0, 3² I), so the partner lies within r
    # with probability 1 − exp(−r²/18) (Rayleigh); the other b are uniform:
    # K(r) = (n − 1)/n · πr² + |W|/n · (1 − exp(−r²/18)). Averaged over 10 patterns.
    observed, expected = [], []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        a = np.column_stack([rng.uniform(0, 400, 300), rng.uniform(0, 300, 300)])
        b = a + rng.normal(0, 3, a.shape)
        kept = (b[:, 0] > 0) & (b[:, 0] < 400) & (b[:, 1] > 0) & (b[:, 1] < 300)
        a, b = a[kept], b[kept]   # a few partners fall outside the window
        n = len(a)
        result = ripley_cross_isotropic(np.vstack([a, b]), np.repeat([0, 1], n), 2, window)
        r = result.radii[1]
        k = (n - 1) / n * np.pi * r**2 + window.area / n * (1 - np.exp(-r**2 / 18))
        observed.append(result.l_minus_r_mean[0, 1])
        expected.append(np.mean(np.sqrt(k / np.pi) - r))
    assert np.mean(observed) == pytest.approx(np.mean(expected), rel=0.05)


def test_melanoma_images_equal_brute_force(data_dir):
    """spicyR's statistic on real images (window [0, max x] × [0, max y], spatstat grid):
    the kernel equals the all-pairs estimator on every ordered pair of 3 images."""
    cells = pd.read_csv(data_dir / "cells" / "melanoma_responders_spicyR.cells.csv.gz",
                        dtype={"sample_id": str})
    types = sorted(cells["cell_type"].unique())
    samples = sorted(cells["sample_id"].unique(), key=int)
    for sample in (samples[0], samples[len(samples) // 2], samples[-1]):
        image = cells[cells["sample_id"] == sample]
        xy = image[["x", "y"]].to_numpy(np.float64)
        codes = pd.Categorical(image["cell_type"], categories=types).codes.astype(np.int64)
        window = Rectangle.image_frame(xy)
        assert window.xmin == 0 and window.ymin == 0
        result = ripley_cross_isotropic(xy, codes, len(types), window)
        expected = _brute_force_k(xy, codes, len(types), window, np.nan_to_num(result.radii))
        np.testing.assert_allclose(result.k, expected, rtol=1e-9, equal_nan=True)
