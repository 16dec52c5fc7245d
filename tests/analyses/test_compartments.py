"""Compartments against closed forms: a disc lesion on a jittered lattice of cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from _tissue import lattice

from metaniche.analyses.compartments import (
    ADJACENT,
    BORDER,
    CODE,
    COMPARTMENTS,
    CORE,
    assign_compartments,
    compartment_codes,
    compartment_of,
    isodata_threshold,
)
from metaniche.config import CompartmentParams


def disc_tissue(radius_um: float = 500.0, side_um: float = 2000.0, seed: int = 0):
    x, y = lattice(side_um, seed)
    rng = np.random.default_rng(seed + 1)
    true_sd = np.hypot(x - side_um / 2, y - side_um / 2) - radius_um
    is_tumor = (true_sd < 0) & (rng.random(x.size) < 0.85)
    is_immune = ~is_tumor & (rng.random(x.size) < 0.1)
    return x, y, is_tumor, is_immune, true_sd


def test_signed_distance_matches_disc_geometry():
    x, y, is_tumor, is_immune, true_sd = disc_tissue()
    result = assign_compartments(x, y, is_tumor, is_immune)
    error = result.signed_distance_um - true_sd
    assert np.median(np.abs(error)) < 6.0
    near_boundary = np.abs(true_sd) < 50
    assert abs(np.mean(error[near_boundary])) < 3.0
    assert np.all(np.sign(result.signed_distance_um[np.abs(true_sd) > 40])
                  == np.sign(true_sd[np.abs(true_sd) > 40]))


def test_compartments_and_areas_match_closed_form():
    side, radius, width = 2000.0, 500.0, 100.0
    x, y, is_tumor, is_immune, true_sd = disc_tissue(radius, side)
    result = assign_compartments(x, y, is_tumor, is_immune, CompartmentParams(border_um=width))
    clear = np.abs(np.abs(true_sd) - width) > 10
    truth = compartment_of(true_sd, width)
    assert np.mean(result.compartment[clear] == truth[clear]) > 0.98
    areas = result.areas.set_index(["lesion_id", "compartment"])["area_mm2"]
    analytic = {
        "core": np.pi * (radius - width) ** 2 / 1e6,
        "border": np.pi * ((radius + width) ** 2 - (radius - width) ** 2) / 1e6,
        "adjacent": (side**2 - np.pi * (radius + width) ** 2) / 1e6,
    }
    for name, expected in analytic.items():
        assert areas[(0, name)] == pytest.approx(expected, rel=0.03), name
    assert result.lesions["area_mm2"].iloc[0] == pytest.approx(np.pi * radius**2 / 1e6, rel=0.03)


def test_two_lesions_are_labelled_and_cells_take_the_nearest():
    x, y = lattice(3000.0)
    centres = np.array([[800.0, 1500.0], [2300.0, 1500.0]])
    radii = np.array([500.0, 300.0])
    distance = np.hypot(x[:, None] - centres[:, 0], y[:, None] - centres[:, 1]) - radii
    is_tumor = distance.min(axis=1) < 0
    result = assign_compartments(x, y, is_tumor)
    assert len(result.lesions) == 2
    # Lesions are numbered largest first.
    assert result.lesions["area_mm2"].iloc[0] > result.lesions["area_mm2"].iloc[1]
    nearest = np.argmin(distance, axis=1) + 1
    clear = np.abs(distance[:, 0] - distance[:, 1]) > 20
    assert np.mean(result.lesion_id[clear] == nearest[clear]) > 0.99


def test_image_edge_and_cell_free_holes_are_not_tumour_boundaries():
    # Tumour fills the left half of the image and runs off its edge; a cell-free hole inside.
    x, y = lattice(2000.0)
    hole = np.hypot(x - 500, y - 1000) < 150
    x, y = x[~hole], y[~hole]
    is_tumor = x < 1000
    result = assign_compartments(x, y, is_tumor)
    true_sd = x - 1000
    far_from_front = np.abs(true_sd) > 30
    error = result.signed_distance_um[far_from_front] - true_sd[far_from_front]
    assert np.median(np.abs(error)) < 6
    assert np.percentile(np.abs(error), 99) < 25


def test_small_stroma_hole_is_filled_large_one_kept():
    x, y = lattice(2400.0)
    radius = np.hypot(x - 1200, y - 1200)
    small = np.hypot(x - 1000, y - 1200) < 50  # 7,900 µm²
    large = np.hypot(x - 1400, y - 1200) < 130  # 53,000 µm²
    is_tumor = (radius < 700) & ~small & ~large
    params = CompartmentParams(min_hole_area_um2=20_000)
    result = assign_compartments(x, y, is_tumor, params=params)
    assert np.all(result.signed_distance_um[small] < 0)
    assert np.median(result.signed_distance_um[large]) > 0


def test_scattered_tumour_cells_do_not_make_lesions():
    x, y = lattice(2000.0)
    rng = np.random.default_rng(3)
    is_tumor = rng.random(x.size) < 0.05
    result = assign_compartments(x, y, is_tumor)
    assert len(result.lesions) == 0
    assert np.all(result.compartment == "adjacent")
    assert np.all(np.isnan(result.signed_distance_um))


def test_annotation_polygon_overrides_detection():
    x, y = lattice(2000.0)
    square = shapely.box(600, 600, 1400, 1400)
    no_tumour_cells = np.zeros(x.size, dtype=bool)
    result = assign_compartments(x, y, no_tumour_cells, annotation=[square])
    true_sd = np.where(
        shapely.contains_xy(square, x, y), -1, 1
    ) * shapely.distance(square.exterior, shapely.points(x, y))
    assert np.median(np.abs(result.signed_distance_um - true_sd)) < 3
    assert result.lesions["area_mm2"].iloc[0] == pytest.approx(0.64, rel=0.02)


def test_result_does_not_depend_on_translation():
    x, y, is_tumor, is_immune, _ = disc_tissue()
    base = assign_compartments(x, y, is_tumor, is_immune)
    moved = assign_compartments(x + 12_345.6, y - 789.1, is_tumor, is_immune)
    assert np.mean(base.compartment == moved.compartment) > 0.995
    assert np.median(np.abs(base.signed_distance_um - moved.signed_distance_um)) < 2.5


def test_compartment_of_pins_the_boundaries():
    labels = compartment_of(np.array([-100.0001, -100.0, 0.0, 100.0, 100.0001]), 100.0)
    assert labels.tolist() == ["core", "border", "border", "border", "adjacent"]


def test_isodata_threshold_splits_two_levels_halfway():
    values = np.concatenate([np.full(500, 0.02), np.full(300, 0.82)])
    assert isodata_threshold(values) == pytest.approx(0.42, abs=1e-6)


def test_phenoptr_tumour_region_agrees_with_inform(data_dir, capsys):
    cells = pd.read_csv(data_dir / "cells" / "phenoptr_akoya_sample.cells.csv.gz")
    is_tumor = (cells["cell_type"] == "CK+").to_numpy()
    is_immune = cells["cell_type"].isin(["CD8+", "CD68+", "FoxP3+"]).to_numpy()
    # Cells here are 6.6 µm apart (3x liver density) in small nests: hand-tuned scales of one
    # cell spacing of smoothing and lesions of >= ~10 cells (the automatic scales' agreement
    # is tested in test_compartment_diagnostics.py).
    params = CompartmentParams(smoothing_um=7.5, grid_um=2.5, min_lesion_area_um2=1000,
                               min_hole_area_um2=1000)
    result = assign_compartments(cells["x"].to_numpy(), cells["y"].to_numpy(), is_tumor,
                                 is_immune, params)
    agreement = np.mean((result.signed_distance_um < 0)
                        == (cells["tissue_category"] == "Tumor").to_numpy())
    with capsys.disabled():
        print(f"\nphenoptr: tumour region agrees with inForm tissue_category for "
              f"{agreement:.1%} of {len(cells):,} cells")
    assert agreement >= 0.90


def test_nan_distance_follows_the_one_documented_rule():
    """NaN = boundary undetermined: core when tumour is present (all tumour), else adjacent;
    the codes index COMPARTMENTS and the names, the cells' and the aggregates' rule agree."""
    sd = np.array([np.nan, -150.0, 50.0, 150.0])
    for present, first in ((True, CORE), (False, ADJACENT)):
        codes = compartment_codes(sd, 100.0, tumor_present=present)
        assert codes.tolist() == [CODE[first], CODE[CORE], CODE[BORDER], CODE[ADJACENT]]
        assert compartment_of(sd, 100.0, present).tolist() == [COMPARTMENTS[c] for c in codes]
    x, y = lattice(600.0)
    no_tumour = assign_compartments(x, y, np.zeros(len(x), bool))
    assert set(no_tumour.compartment) == {ADJACENT}
    assert np.isnan(no_tumour.signed_distance_um).all()
    all_tumour = assign_compartments(x, y, np.ones(len(x), bool))
    assert set(all_tumour.compartment) == {CORE}
