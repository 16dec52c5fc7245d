"""Marker intensity along the border (:mod:`metaniche.analyses.marker_trends`): band means
against groupby, the WLS slope against cell-level OLS, the CR3 variance against a
delete-one-block jackknife, a planted slope found, and the size held over null draws."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from metaniche.analyses.gradients import bin_edges_um
from metaniche.analyses.marker_trends import (
    ALL_CELLS,
    marker_band_means,
    marker_gradient_statistics,
    marker_trend_test,
    trend_markers,
)
from metaniche.config import StateRule

EDGES = bin_edges_um(-300.0, 300.0, 10.0)
CENTRE = 0.5 * (EDGES[:-1] + EDGES[1:])


def _design(centre):
    return np.column_stack([np.ones_like(centre), np.abs(centre) / 100.0,
                            (centre > 0).astype(float)])


def _null_band_means(rng, rho: float, tau: float = 0.3):
    """Band means of 3–40 log-normal cells per band plus AR(1) band effects (sd ``tau``)."""
    n = rng.integers(3, 41, len(CENTRE))
    cell = np.exp(rng.standard_normal(n.sum()))
    band = np.repeat(np.arange(len(CENTRE)), n)
    mean = np.bincount(band, weights=cell, minlength=len(CENTRE)) / n
    effect = np.empty(len(CENTRE))
    z = rng.standard_normal(len(CENTRE))
    effect[0] = z[0]
    for k in range(1, len(CENTRE)):   # the AR(1) recursion over 60 bands
        effect[k] = rho * effect[k - 1] + math.sqrt(1 - rho**2) * z[k]
    return mean + tau * effect, n


def test_slope_equals_cell_level_ols_and_cr3_equals_the_block_jackknife():
    rng = np.random.default_rng(0)
    mean, n = _null_band_means(rng, 0.0)
    mean = mean + 0.4 * np.abs(CENTRE) / 100.0
    trend = marker_trend_test(CENTRE, mean, n, block_um=50.0)
    # cell level: every cell carries its band mean (same normal equations as the WLS)
    x = np.repeat(_design(CENTRE), n, axis=0)
    y = np.repeat(mean, n)
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    assert trend.slope_per_100um == pytest.approx(beta[1], rel=1e-10)
    # CR3 = (G-1)/G Σ_g (b_(-g) - b)²: refit without each block
    block = np.floor(CENTRE / 50.0)
    leave_out = []
    for value in np.unique(block):
        keep = block != value
        xk = np.repeat(_design(CENTRE[keep]), n[keep], axis=0)
        leave_out.append(np.linalg.lstsq(xk, np.repeat(mean[keep], n[keep]), rcond=None)[0][1])
    n_blocks = len(leave_out)
    variance = (n_blocks - 1) / n_blocks * np.sum((np.array(leave_out) - beta[1]) ** 2)
    assert trend.n_blocks == n_blocks == 12 and trend.df == n_blocks - 3
    half = trend.slope_per_100um - trend.ci_low
    from scipy import stats
    assert half == pytest.approx(stats.t.ppf(0.975, n_blocks - 3) * math.sqrt(variance),
                                 rel=1e-8)


def test_planted_slope_is_found_from_cells():
    rng = np.random.default_rng(5)
    n = 20_000
    d = rng.uniform(-320.0, 320.0, n)
    codes = rng.integers(0, 2, n)
    # type 1 ("Macrophage") rises toward the edge: -0.8 per 100 µm farther; type 0 flat
    value = 3.0 + np.where(codes == 1, -0.8 * np.abs(d) / 100.0, 0.0) + 0.5 * (d > 0)
    value = value + rng.standard_normal(n) + 0.3 * rng.standard_normal(len(CENTRE))[
        np.clip(np.searchsorted(EDGES, d) - 1, 0, len(CENTRE) - 1)]
    profiles = marker_band_means(d, {"PDL1": value}, codes, ["Fibroblast", "Macrophage"],
                                 {"PDL1": None}, EDGES)
    table = marker_gradient_statistics(profiles, 300.0).set_index("cell_type")
    mac = table.loc["Macrophage"]
    assert mac["ci_low"] <= -0.8 <= mac["ci_high"]
    assert mac["p"] < 1e-4
    assert abs(table.loc["Fibroblast", "slope_per_100um"]) < 0.2
    assert table.loc[ALL_CELLS, "n_cells"] == int((np.abs(d) < 300).sum())


def test_band_means_match_groupby():
    rng = np.random.default_rng(2)
    n = 4000
    d = rng.uniform(-350.0, 350.0, n)
    d[:5] = np.nan
    codes = rng.integers(0, 3, n)
    value = rng.gamma(2.0, 1.0, n)
    value[5:40] = np.nan
    types = ["A", "B", "C"]
    table = marker_band_means(d, {"m": value}, codes, types, {"m": ("A", "C")}, EDGES)
    assert set(table["cell_type"]) == {ALL_CELLS, "A", "C"}
    frame = pd.DataFrame({"t": np.asarray(types)[codes], "d": d, "v": value}).dropna()
    frame = frame[(frame["d"] >= -300) & (frame["d"] < 300)]
    frame["bin"] = np.floor(frame["d"] / 10.0) * 10.0
    for cell_type, part in (("A", frame[frame["t"] == "A"]), (ALL_CELLS, frame)):
        expected = part.groupby("bin")["v"].agg(["size", "mean"])
        got = table[(table["cell_type"] == cell_type) & (table["n_cells"] > 0)].set_index(
            "bin_start_um")
        assert np.array_equal(got.index.to_numpy(), expected.index.to_numpy())
        assert np.array_equal(got["n_cells"].to_numpy(), expected["size"].to_numpy())
        assert np.allclose(got["mean_intensity"].to_numpy(), expected["mean"].to_numpy())


@pytest.mark.parametrize("rho", [0.0, 0.6])
def test_size_is_held_over_null_draws(rho):
    """Independent band effects and AR(1) band effects with correlation 0.6 between adjacent
    10-µm bands (a ~20 µm correlation length, within the 50-µm blocks): the rate of p < 0.05
    over 1,000 null draws stays at most 5 % plus two Monte Carlo SE (0.0638)."""
    rng = np.random.default_rng(11 if rho == 0 else 12)
    draws = 1000
    rejected = sum(marker_trend_test(CENTRE, *_null_band_means(rng, rho)).p < 0.05
                   for _ in range(draws))
    assert rejected / draws <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / draws)


def test_too_few_blocks_or_cells_give_nan():
    assert math.isnan(marker_trend_test(CENTRE[25:35], np.ones(10), np.full(10, 50)).p)
    assert math.isnan(marker_trend_test(CENTRE, np.arange(60.0), np.zeros(60)).p)
    flat = marker_trend_test(CENTRE, np.full(60, 2.0), np.full(60, 5))
    assert math.isnan(flat.p)   # no residual variation: no standard error


def test_trend_markers_from_states_and_extra_names():
    rules = {"a": StateRule(marker="PDL1", cell_types=("Macrophage",)),
             "b": StateRule(marker="PDL1", cell_types=("Tumor",)),
             "c": StateRule(marker="GZMB"),
             "d": StateRule(column="Phenotype PD1")}
    columns = ["x", "PDL1", "gzmb", "CD68"]
    column_of, types_of, missing = trend_markers(rules, ("CD68", "NOPE"), columns)
    assert column_of == {"PDL1": "PDL1", "GZMB": "gzmb", "CD68": "CD68"}
    assert types_of == {"PDL1": ("Macrophage", "Tumor"), "GZMB": None, "CD68": None}
    assert missing == ["NOPE"]
