"""Zonation coordinate, eta-bin densities and portal/central enrichment against planted truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from metaniche.analyses.zonation import (
    PERICENTRAL_MIN_ETA,
    PERIPORTAL_MAX_ETA,
    zonation,
    zonation_coordinate,
)
from metaniche.config import CellTypeRoles, Config
from metaniche.sample import build_context
from metaniche.simulate import (
    DENSITY_PER_MM2,
    IMMUNE_TYPES,
    KUPFFER_ZONATION,
    simulate_sample,
)

CONFIG = Config(cell_types=CellTypeRoles(tumor=("Tumor",), immune=IMMUNE_TYPES))


def test_zonation_coordinate_closed_form():
    eta = zonation_coordinate(np.array([0.0, 5.0, 30.0, 10.0, np.inf, 0.0]),
                              np.array([10.0, 5.0, 10.0, 0.0, 3.0, 0.0]))
    np.testing.assert_allclose(eta[:4], [0.0, 0.5, 0.75, 1.0])
    assert np.isnan(eta[4]) and np.isnan(eta[5])


def run_zonation(sample, beyond_um=100.0):
    context = build_context(sample.name, sample.cells, CONFIG)
    result = context.compartments
    labels = context.labels
    return context, zonation(context.x_um, context.y_um, context.type_codes, context.cell_types,
                             result.signed_distance_um, labels == "Portal_vein",
                             labels == "Central_vein", result.grid, result.tissue,
                             result.pixel_signed_distance_um, beyond_um, n_bins=10)


@pytest.fixture(scope="module")
def zoned():
    sample = simulate_sample("Z", n_cells=60_000, seed=4, phenotype="desert", n_lesions=1,
                             with_tls=False, necrosis=False, zonation=True)
    return sample, *run_zonation(sample)


def truth_eta(sample) -> np.ndarray:
    """Eta of every cell from the simulator's landmark points (not from the painted cells)."""
    marks = sample.landmarks
    xy = sample.cells[["x", "y"]].to_numpy()
    d_p, _ = cKDTree(marks.loc[marks["kind"] == "portal", ["x", "y"]].to_numpy()).query(xy)
    d_c, _ = cKDTree(marks.loc[marks["kind"] == "central", ["x", "y"]].to_numpy()).query(xy)
    return d_p / (d_p + d_c)


def test_eta_matches_the_landmark_truth(zoned):
    sample, _, result = zoned
    eta, true = result.eta, truth_eta(sample)
    host = np.isfinite(eta)
    assert host.mean() > 0.5
    # Painted vein clusters are the 6-15 cells nearest each landmark: eta agrees closely.
    assert np.median(np.abs(eta[host] - true[host])) < 0.03


def test_periportal_macrophage_preference_is_recovered(zoned):
    sample, _context, result = zoned
    enrichment = result.enrichment.set_index(["subset", "cell_type"])
    row = enrichment.loc[("beyond_border", "Macrophage")]
    # Planted: P(Macrophage) = 0.05 (1.6 - 1.2 eta) outside tumour; expected densities of the
    # zones from the true eta of the cells (uniform lattice at DENSITY_PER_MM2).
    true = truth_eta(sample)
    beyond = sample.truth["signed_distance_um"].to_numpy() > 100
    a, b = KUPFFER_ZONATION
    expected = []
    for zone in (beyond & (true < PERIPORTAL_MAX_ETA), beyond & (true > PERICENTRAL_MIN_ETA)):
        expected.append(DENSITY_PER_MM2 * np.mean(0.05 * (a + b * true[zone])))
    assert row["density_periportal_per_mm2"] == pytest.approx(expected[0], rel=0.12)
    assert row["density_pericentral_per_mm2"] == pytest.approx(expected[1], rel=0.15)
    assert row["log2_ratio"] == pytest.approx(np.log2(expected[0] / expected[1]), abs=0.3)
    assert row["p"] < 1e-6
    # Hepatocytes carry no planted preference beyond compensating the macrophages.
    assert abs(enrichment.loc[("beyond_border", "Hepatocyte"), "log2_ratio"]) < 0.1


def test_no_preference_without_planting():
    sample = simulate_sample("N", n_cells=60_000, seed=4, phenotype="desert", n_lesions=1,
                             with_tls=False, necrosis=False)
    _, result = run_zonation(sample)
    row = result.enrichment.set_index(["subset", "cell_type"]).loc[("beyond_border",
                                                                    "Macrophage")]
    assert row["p"] > 0.01
    assert abs(row["log2_ratio"]) < 0.25


def test_eta_bin_areas_partition_the_host_tissue(zoned):
    _, context, result = zoned
    profiles = result.profiles
    compartments = context.compartments
    pixel_area = compartments.grid.pixel_area_mm2
    host_area = np.sum(compartments.tissue & (compartments.pixel_signed_distance_um > 0)) * (
        pixel_area)
    outside = profiles[(profiles["subset"] == "outside")
                       & (profiles["cell_type"] == "Hepatocyte")]
    assert outside["area_mm2"].sum() == pytest.approx(host_area, rel=1e-9)
    # Whole-tissue density of all cells per eta bin is the lattice density.
    totals = profiles[profiles["subset"] == "beyond_border"].groupby("eta_start")[
        ["n_cells", "area_mm2"]].agg({"n_cells": "sum", "area_mm2": "first"})
    np.testing.assert_allclose(totals["n_cells"] / totals["area_mm2"], DENSITY_PER_MM2,
                               rtol=0.06)


def test_eta_one_is_in_the_last_bin_and_thirds_are_strict(zoned):
    _, context, _ = zoned
    compartments = context.compartments
    grid = compartments.grid
    # Three cells: on a portal cell (eta 0), exactly between (0.5), on a central cell (eta 1).
    x = np.array([100.0, 200.0, 300.0])
    y = np.full(3, 100.0)
    codes = np.array([0, 1, 2])
    out = zonation(x, y, codes, ["Portal", "Mid", "Central"], np.full(3, 500.0),
                   codes == 0, codes == 2, grid, compartments.tissue,
                   compartments.pixel_signed_distance_um, 100.0, n_bins=4)
    np.testing.assert_allclose(out.eta, [0.0, 0.5, 1.0])
    counts = out.profiles[out.profiles["subset"] == "outside"].pivot(
        index="cell_type", columns="eta_start", values="n_cells")
    assert counts.loc["Central", 0.75] == 1 and counts.loc["Mid", 0.5] == 1
    enrichment = out.enrichment.set_index(["subset", "cell_type"])
    assert enrichment.loc[("outside", "Mid"), "n_periportal"] == 0
    assert enrichment.loc[("outside", "Mid"), "n_pericentral"] == 0


def test_without_landmarks_nothing_is_reported(zoned):
    _, context, _ = zoned
    compartments = context.compartments
    n = len(context.x_um)
    out = zonation(context.x_um, context.y_um, context.type_codes, context.cell_types,
                   compartments.signed_distance_um, np.zeros(n, bool), np.zeros(n, bool),
                   compartments.grid, compartments.tissue,
                   compartments.pixel_signed_distance_um, 100.0)
    assert np.isnan(out.eta).all() and out.enrichment.empty
