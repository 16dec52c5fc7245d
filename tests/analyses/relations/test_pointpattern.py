"""Ripley K/L/g with translation correction on a mask window: closed forms under CSR."""

from __future__ import annotations

import numpy as np
import pytest

from metaniche.analyses.relations import Window, ripley_cross, ripley_envelope, ripley_table

RADII = np.arange(10.0, 101.0, 10.0)


def _irregular_window() -> Window:
    mask = np.ones((200, 200), dtype=bool)      # 1000 × 1000 µm at 5 µm
    mask[100:, 100:] = False                      # L-shape
    rows, cols = np.mgrid[:200, :200]
    mask[(rows - 50) ** 2 + (cols - 50) ** 2 < 30**2] = False  # a hole (necrosis)
    return Window(mask, 0.0, 0.0, 5.0)


def test_set_covariance_of_rectangle_closed_form():
    window = Window.rectangle(0, 0, 400, 300, pixel_um=2)
    assert window.area == pytest.approx(400 * 300)
    dx, dy = np.array([0.0, 30.0, -50.0]), np.array([0.0, 20.0, 10.0])
    expected = (400 - np.abs(dx)) * (300 - np.abs(dy))
    np.testing.assert_allclose(window.set_covariance(dx, dy), expected, rtol=1e-6)


def _inside_global_envelope(observed: np.ndarray, simulated: np.ndarray) -> bool:
    """Maximum-absolute-deviation global envelope (Baddeley et al. 2015, §10.7).

    With 39 simulations the test over the whole radius grid has α = 1/40 exactly, unlike
    pointwise min/max envelopes checked at every radius (which reject CSR far more often).
    """
    centre = simulated.mean(axis=0)
    spread = simulated.std(axis=0)
    deviation = np.max(np.abs(simulated - centre) / spread, axis=1)
    return bool(np.max(np.abs(observed - centre) / spread) <= deviation.max())


@pytest.mark.parametrize("window", [Window.rectangle(0, 0, 1000, 1000, 5.0), _irregular_window()],
                         ids=["square", "irregular"])
def test_csr_k_and_g_inside_envelope(window):
    envelope = ripley_envelope(window, 1250, 1250, RADII, n_simulations=39, seed=1)
    # the simulated CSR curves are centred on the closed forms K = πr², g = 1
    np.testing.assert_allclose(envelope["k"].mean(0)[3:] / (np.pi * RADII[3:] ** 2), 1, atol=0.02)
    np.testing.assert_allclose(envelope["g"].mean(0)[3:], 1, atol=0.05)
    inside_l, inside_g = [], []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        points = window.sample_uniform(2500, rng)
        assert window.contains(points[:, 0], points[:, 1]).all()
        codes = np.repeat([0, 1], 1250)
        result = ripley_cross(points, codes, 2, RADII, window)
        k_ratio = result.k[0, 1] / (np.pi * RADII**2)
        assert np.all(np.abs(k_ratio[3:] - 1) < 0.06)   # K(r)/πr² ≈ 1
        assert np.all(np.abs(result.l_minus_r_mean) < 3.0)
        np.testing.assert_allclose(result.k[0, 1], result.k[1, 0])
        inside_l.append(_inside_global_envelope(result.l[0, 1], envelope["l"]))
        inside_g.append(_inside_global_envelope(result.g[0, 1], envelope["g"]))
    # global test at α = 1/40: CSR patterns fall inside the envelope nearly always
    assert np.mean(inside_l) >= 0.85 and np.mean(inside_g) >= 0.85


def test_without_edge_correction_k_would_be_biased_low():
    # sanity of the correction: the corrected K of CSR in the irregular window is unbiased,
    # while the naive (unweighted) estimator is clearly below πr² at large r
    window = _irregular_window()
    rng = np.random.default_rng(2)
    points = window.sample_uniform(3000, rng)
    codes = np.zeros(3000, dtype=np.int64)
    corrected = ripley_cross(points, codes, 1, RADII, window).k[0, 0][-1]
    from scipy.spatial import cKDTree
    naive = window.area * (cKDTree(points).count_neighbors(cKDTree(points), RADII[-1])
                           - 3000) / (3000 * 2999)
    assert abs(corrected / (np.pi * RADII[-1] ** 2) - 1) < 0.05
    assert naive / (np.pi * RADII[-1] ** 2) < 0.93


def test_clustered_cross_pattern_exceeds_envelope():
    window = Window.rectangle(0, 0, 1000, 1000, 5.0)
    rng = np.random.default_rng(3)
    a = window.sample_uniform(300, rng)
    b = np.clip(a[rng.integers(0, 300, 300)] + rng.normal(0, 8, (300, 2)), 1, 999)
    points = np.concatenate([a, b])
    codes = np.repeat([0, 1], 300)
    result = ripley_cross(points, codes, 2, RADII, window)
    envelope = ripley_envelope(window, 300, 300, RADII, n_simulations=19, seed=4)
    assert np.all(result.l[0, 1] > envelope["l_hi"])
    assert not _inside_global_envelope(result.l[0, 1], envelope["l"])
    assert result.l_minus_r_mean[0, 1] > 10
    table = ripley_table(result, ["A", "B"])
    assert set(table.columns) >= {"type_a", "type_b", "r_um", "k_um2", "l_um", "g"}


def test_pair_at_exactly_r_counts():
    window = Window.rectangle(0, 0, 100, 100, 1.0)
    points = np.array([[50.0, 50.0], [60.0, 50.0]])
    result = ripley_cross(points, np.array([0, 1]), 2, np.array([9.999, 10.0]), window)
    assert result.k[0, 1][0] == 0 and result.k[0, 1][1] > 0
