"""Gradient profiles, band areas, trend statistics and the border stage against ground truth."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import shapely
from _tissue import lattice
from scipy import ndimage

from metaniche.analyses.compartments import assign_compartments
from metaniche.analyses.gradients import (
    band_areas_mm2,
    bin_edges_um,
    gradient_profiles,
    gradient_statistics,
    pool_gradients,
    trend_test,
)
from metaniche.config import CellTypeRoles, CompartmentParams, Config
from metaniche.errors import ConfigError
from metaniche.sample import analyse_sample, build_context
from metaniche.simulate import (
    DENSITY_PER_MM2,
    IMMUNE_TYPES,
    simulate_sample,
    type_probabilities,
)
from metaniche.stages import gradients as gradients_stage

CONFIG = Config(cell_types=CellTypeRoles(tumor=("Tumor",), immune=IMMUNE_TYPES))


def annotated(polygon: shapely.Geometry, side_um: float = 2000.0):
    x, y = lattice(side_um)
    inside = shapely.contains_xy(polygon, x, y)
    return assign_compartments(x, y, inside, None, CompartmentParams(), annotation=[polygon])


def ring_area(r_lo: float, r_hi: float) -> float:
    r_lo, r_hi = max(r_lo, 0.0), max(r_hi, 0.0)
    return np.pi * (r_hi**2 - r_lo**2)


EDGES = bin_edges_um(-300.0, 500.0, 10.0)


def test_band_areas_of_a_disc_match_the_closed_form():
    radius = 400.0
    result = annotated(shapely.Point(1000, 1000).buffer(radius, quad_segs=256))
    areas = band_areas_mm2(result.pixel_signed_distance_um, result.tissue,
                           result.grid.pixel_um, EDGES)[0] * 1e6
    truth = np.array([ring_area(radius + a, radius + b) for a, b in itertools.pairwise(EDGES)])
    # Away from the edge (the raster staircase affects the first ~40 µm) and at radii
    # >= 250 µm: within 1 %. Nearer the centre the raster field's half-pixel (2.5 µm) offset
    # dominates: relative error below 2.5 µm / radius.
    far = np.minimum(np.abs(EDGES[:-1]), np.abs(EDGES[1:])) >= 50
    radius_mid = radius + 0.5 * (EDGES[:-1] + EDGES[1:])
    wide = radius_mid >= 250
    np.testing.assert_allclose(areas[far & wide], truth[far & wide], rtol=0.01)
    assert np.all(np.abs(areas / truth - 1)[far & ~wide] < 2.5 / radius_mid[far & ~wide])
    # Near the edge the staircase lengthens level sets by at most ~8 %.
    np.testing.assert_allclose(areas[~far], truth[~far], rtol=0.08)
    # Total area of the range equals the analytic annulus -300..500 to 0.5 %.
    assert areas.sum() == pytest.approx(ring_area(radius - 300, radius + 500), rel=0.005)


def test_band_areas_of_an_annulus_match_the_closed_form():
    inner, outer = 200.0, 450.0
    centre = shapely.Point(1000, 1000)
    ring = shapely.difference(centre.buffer(outer, quad_segs=256),
                              centre.buffer(inner, quad_segs=256))
    result = annotated(ring)
    edges = bin_edges_um(-100.0, 200.0, 10.0)
    areas = band_areas_mm2(result.pixel_signed_distance_um, result.tissue,
                           result.grid.pixel_um, edges)[0] * 1e6
    # Inside the ring (d < 0) and outside it alike, the band [a, b) is the radii
    # (inner - b, inner - a] around the hole plus [outer + a, outer + b) around the ring, while
    # bands stay clear of the medial circle (125 µm deep) and within the hole radius (200 µm).
    truth = [ring_area(inner - b, inner - a) + ring_area(outer + a, outer + b)
             for a, b in itertools.pairwise(edges)]
    truth = np.array(truth)
    far = np.minimum(np.abs(edges[:-1]), np.abs(edges[1:])) >= 50
    np.testing.assert_allclose(areas[far], truth[far], rtol=0.01)


def test_band_areas_match_brute_force_supersampling_of_the_interpolated_field():
    result = annotated(shapely.Point(1000, 1000).buffer(300.0, quad_segs=256))
    field, tissue, pixel = result.pixel_signed_distance_um, result.tissue, result.grid.pixel_um
    edges = bin_edges_um(-250.0, 300.0, 10.0)
    fast = band_areas_mm2(field, tissue, pixel, edges)[0]
    rows, cols = np.nonzero(tissue)
    k = 6
    offsets = (np.arange(k) + 0.5) / k - 0.5
    brute = np.zeros(len(edges) - 1)
    for du in offsets:
        for dv in offsets:
            values = ndimage.map_coordinates(field, [rows + du, cols + dv], order=1,
                                             mode="nearest")
            brute += np.histogram(values, edges)[0]
    brute *= pixel**2 * 1e-6 / k**2
    np.testing.assert_allclose(fast, brute, rtol=0.01)


def test_bins_are_half_open_and_out_of_range_cells_are_dropped():
    edges = bin_edges_um(-20.0, 20.0, 10.0)
    sd = np.array([-20.0, -10.0, 0.0, 9.999, 20.0, np.nan, -20.001])
    areas = np.ones((1, 4))
    table = gradient_profiles(sd, np.zeros(len(sd), int), ["A"], np.zeros(len(sd), int),
                              areas, edges)
    assert table["n_cells"].tolist() == [1, 1, 2, 0]
    with pytest.raises(ConfigError, match="multiple"):
        bin_edges_um(-20.0, 25.0, 10.0)


def test_gradient_profiles_match_brute_force_per_lesion():
    rng = np.random.default_rng(3)
    n = 500
    sd = rng.uniform(-60, 60, n)
    codes = rng.integers(0, 3, n)
    lesion = rng.integers(1, 3, n)
    edges = bin_edges_um(-50.0, 50.0, 25.0)
    areas = rng.uniform(0.1, 1.0, (3, 4))
    table = gradient_profiles(sd, codes, ["A", "B", "C"], lesion, areas, edges)
    for row in table.sample(20, random_state=1).itertuples():
        in_bin = (sd >= row.bin_start_um) & (sd < row.bin_end_um)
        mask = in_bin & (codes == ["A", "B", "C"].index(row.cell_type))
        lid = 0 if pd.isna(row.lesion_id) else int(row.lesion_id)
        if lid:
            mask &= lesion == lid
        assert row.n_cells == mask.sum()
        k = int(np.searchsorted(edges, row.bin_start_um))
        assert row.density_per_mm2 == pytest.approx(mask.sum() / areas[lid, k])


def test_trend_test_recovers_a_planted_poisson_slope():
    rng = np.random.default_rng(7)
    centre = np.arange(-295.0, 300.0, 10.0)
    area = np.full(centre.size, 0.2)
    slope = -0.8  # per 100 µm farther from the edge
    rate = 2000.0 * np.exp(slope * np.abs(centre) / 100) * np.where(centre > 0, 1.5, 1.0)
    counts = rng.poisson(rate * area)
    result = trend_test(centre, counts, area)
    assert result.model == "poisson"
    assert result.ci_low < slope < result.ci_high
    assert result.outside_log_ratio == pytest.approx(np.log(1.5), abs=0.05)
    assert result.p < 1e-10
    flat = trend_test(centre, rng.poisson(50 * area), area)
    assert flat.p > 0.01


def test_trend_test_switches_to_negative_binomial_when_overdispersed():
    rng = np.random.default_rng(11)
    centre = np.arange(-295.0, 300.0, 10.0)
    area = np.full(centre.size, 0.5)
    mean = 400 * area * np.exp(-0.5 * np.abs(centre) / 100)
    counts = rng.negative_binomial(n=5, p=5 / (5 + mean))  # alpha = 0.2
    result = trend_test(centre, counts, area)
    assert result.model == "negative_binomial"
    assert result.alpha == pytest.approx(0.2, abs=0.15)
    assert result.ci_low < -0.5 < result.ci_high


def _poisson_irls(y: np.ndarray, design: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Poisson GLM means by plain iteratively reweighted least squares (no statsmodels)."""
    beta = np.zeros(design.shape[1])
    beta[0] = np.log(y.sum() / np.exp(offset).sum())
    for _ in range(100):
        mu = np.exp(offset + design @ beta)
        z = design @ beta + (y - mu) / mu
        weighted = design * mu[:, None]
        step = np.linalg.solve(design.T @ weighted, weighted.T @ z)
        if np.max(np.abs(step - beta)) < 1e-12:
            beta = step
            break
        beta = step
    return np.exp(offset + design @ beta)


def test_trend_test_dispersion_is_pearson_chi2_over_residual_df():
    rng = np.random.default_rng(3)
    centre = np.arange(-95.0, 100.0, 10.0)
    area = rng.uniform(0.1, 0.3, centre.size)
    counts = rng.poisson(300 * area * np.exp(-0.4 * np.abs(centre) / 100))
    result = trend_test(centre, counts, area)
    design = np.column_stack([np.ones_like(centre), np.abs(centre) / 100,
                              (centre > 0).astype(float)])
    mu = _poisson_irls(counts.astype(float), design, np.log(area))
    expected = np.sum((counts - mu) ** 2 / mu) / (centre.size - design.shape[1])
    assert result.model == "poisson"
    assert result.dispersion == pytest.approx(expected, rel=1e-8)


def test_trend_test_interval_follows_the_confidence_level():
    rng = np.random.default_rng(5)
    centre = np.arange(-195.0, 200.0, 10.0)
    area = np.full(centre.size, 0.2)
    counts = rng.poisson(800 * area * np.exp(-0.6 * np.abs(centre) / 100))
    at_95 = trend_test(centre, counts, area)
    at_90 = trend_test(centre, counts, area, confidence=0.9)
    # Closed form: slope ± z·se with z = Φ⁻¹(0.975) = 1.959964 and Φ⁻¹(0.95) = 1.644854.
    se = (at_95.ci_high - at_95.ci_low) / (2 * 1.959963984540054)
    assert se > 0
    assert at_90.slope_per_100um == at_95.slope_per_100um
    assert at_90.p == at_95.p
    assert at_90.ci_low == pytest.approx(at_95.slope_per_100um - 1.6448536269514722 * se,
                                         rel=1e-12)
    assert at_90.ci_high == pytest.approx(at_95.slope_per_100um + 1.6448536269514722 * se,
                                          rel=1e-12)
    assert at_95.ci_low == trend_test(centre, counts, area, confidence=0.95).ci_low
    with pytest.raises(ValueError, match="`confidence` must be between 0 and 1"):
        trend_test(centre, counts, area, confidence=1.0)


# ---------------------------------------------------------------- simulator planted truth


@pytest.fixture(scope="module")
def planted():
    """Samples with the GPNMB gradient planted (3 phenotypes) and two controls without it."""
    out = {}
    for seed, phenotype in enumerate(["inflamed", "excluded", "desert", "inflamed",
                                      "excluded"]):
        sample = simulate_sample(f"S{seed}", n_cells=20_000, seed=seed, phenotype=phenotype,
                                 n_lesions=2, with_tls=False, necrosis=False)
        out[(phenotype, seed)] = (sample, gradients_stage.run(
            build_context(sample.name, sample.cells, CONFIG)))
    for seed in (10, 11):
        sample = simulate_sample(f"C{seed}", n_cells=20_000, seed=seed, phenotype="inflamed",
                                 n_lesions=2, with_tls=False, necrosis=False,
                                 gpnmb_gradient=False)
        out[("control", seed)] = (sample, gradients_stage.run(
            build_context(sample.name, sample.cells, CONFIG)))
    return out


def test_gpnmb_slope_is_negative_and_significant_only_where_planted(planted):
    for (kind, seed), (_, output) in planted.items():
        slope = output.features["gradient_slope.GPNMB_macrophage"]
        p = output.features["gradient_p.GPNMB_macrophage"]
        if kind == "control":
            assert p > 0.01, (kind, seed, slope, p)
        else:
            # Planted 0.08 exp(-|d| / 60 µm): slope -100/60 = -1.67 per 100 µm.
            assert slope < 0 and p < 1e-4, (kind, seed, slope, p)
            assert -2.5 < slope < -1.0
            assert output.features["borderline_index.GPNMB_macrophage"] > 2


def test_excluded_cd8_stay_nearer_the_edge_than_inflamed(planted):
    depth = {key: out.features["infiltration_depth_um.CD8_T"] for key, (_, out) in
             planted.items() if key[0] in ("inflamed", "excluded")}
    excluded = [v for (kind, _), v in depth.items() if kind == "excluded"]
    inflamed = [v for (kind, _), v in depth.items() if kind == "inflamed"]
    # Planted: excluded CD8 decay as exp(d / 25 µm) inside; inflamed are uniform inside.
    assert max(inflamed) < min(excluded)
    assert all(-60 < v < 0 for v in excluded)
    metrics = planted[("excluded", 1)][1].tables["lesion_metrics"]
    assert (metrics["core_border_ratio"] < 0.3).all()
    assert (metrics["perimeter_um"] > np.pi * metrics["equivalent_diameter_um"] * 0.99).all()


def test_band_densities_match_planted_densities():
    """Known outlines (annotation): densities per 50 µm band within 5 % of the planted ones."""
    config = Config(cell_types=CONFIG.cell_types)
    sample = simulate_sample("D", n_cells=90_000, seed=21, phenotype="inflamed", n_lesions=3,
                             with_tls=False, necrosis=False)
    context = build_context("D", sample.cells, config, annotation=sample.lesions)
    result = context.compartments
    edges = bin_edges_um(-300.0, 300.0, 50.0)
    areas = band_areas_mm2(result.pixel_signed_distance_um, result.tissue,
                           result.grid.pixel_um, edges)
    table = gradient_profiles(result.signed_distance_um, context.type_codes,
                              context.cell_types, np.zeros(len(sample.cells), int), areas,
                              edges)
    true_sd = sample.truth["signed_distance_um"].to_numpy()
    planted_p = type_probabilities(true_sd, "inflamed")
    from metaniche.simulate import CELL_TYPES

    for cell_type in ("Tumor", "Hepatocyte", "Fibroblast"):
        rows = table[table["cell_type"] == cell_type]
        for row in rows.itertuples():
            in_band = (true_sd >= row.bin_start_um) & (true_sd < row.bin_end_um)
            expected = DENSITY_PER_MM2 * planted_p[in_band, CELL_TYPES.index(cell_type)].mean()
            if expected * row.area_mm2 < 400:  # too few cells for a 5 % check
                continue
            assert row.density_per_mm2 == pytest.approx(expected, rel=0.05), (
                cell_type, row.bin_start_um)
    all_cells = table.groupby("bin_start_um")[["n_cells", "area_mm2"]].agg(
        {"n_cells": "sum", "area_mm2": "first"})
    density = all_cells["n_cells"] / all_cells["area_mm2"]
    np.testing.assert_allclose(density, DENSITY_PER_MM2, rtol=0.03)
    pooled = pool_gradients(table.assign(sample="D"))
    assert pooled["n_cells"].sum() == table["n_cells"].sum()


def test_stage_runs_in_the_pipeline_and_names_features():
    sample = simulate_sample("P", n_cells=10_000, seed=2, phenotype="excluded")
    analysis = analyse_sample(sample.cells, CONFIG)
    for name in ("gradients", "gradient_stats", "gradient_markers", "lesion_metrics"):
        assert name in analysis.tables
    gradients = analysis.tables["gradients"]
    assert {"lesion_id", "cell_type", "bin_start_um", "bin_end_um", "n_cells", "area_mm2",
            "density_per_mm2"} <= set(gradients.columns)
    assert gradients["lesion_id"].isna().any()
    assert "gradient_slope.GPNMB_macrophage" in analysis.features
    assert "infiltration_depth_um.CD8_T" in analysis.features
    assert "zonation_eta" in analysis.cells.columns
    whole = gradient_statistics(gradients, 100.0, 300.0)
    assert whole["lesion_id"].isna().sum() == gradients["cell_type"].nunique()


@pytest.mark.parametrize(("n_bins", "max_bins"), [(1, 40), (7, 3), (40, 40), (41, 40), (97, 8)])
def test_merge_adjacent_bins_equals_a_loop(n_bins, max_bins):
    from metaniche.analyses.gradients import merge_adjacent_bins

    rng = np.random.default_rng(n_bins)
    start = np.arange(n_bins) * 10.0 - 200.0
    values = rng.poisson(3.0, (4, n_bins)).astype(float)
    merged = merge_adjacent_bins(start, start + 10.0, max_bins)
    size = -(-n_bins // max_bins)                       # ceil: bins per merged bin
    runs = [list(range(i, min(i + size, n_bins))) for i in range(0, n_bins, size)]
    assert len(runs) <= max_bins and len(merged.start_um) == len(runs)
    assert merged.start_um.tolist() == [start[r[0]] for r in runs]
    assert merged.end_um.tolist() == [start[r[-1]] + 10.0 for r in runs]
    want = np.array([[row[r].sum() for r in runs] for row in values])
    np.testing.assert_array_equal(merged.sum(values), want)
