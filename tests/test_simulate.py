"""Tests of the simulated liver-metastasis tissue and its ground truth."""

from __future__ import annotations

import json
import tomllib
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import shapely
from matplotlib.path import Path as MplPath
from scipy.spatial import cKDTree

from metaniche.simulate import (
    CELL_TYPES,
    IMMUNE_TYPES,
    MARKERS,
    PHENOTYPES,
    analytic_compartment_areas,
    simulate_cohort,
    simulate_sample,
    write_cohort,
)

W = 100.0


@pytest.fixture(scope="module")
def by_phenotype():
    return {
        phenotype: simulate_sample(f"S_{phenotype}", n_cells=20_000, seed=11,
                                   phenotype=phenotype, n_lesions=2, with_tls=True)
        for phenotype in PHENOTYPES
    }


@pytest.fixture(scope="module")
def necrotic():
    return simulate_sample("S_nec", n_cells=20_000, seed=5, n_lesions=2, necrosis=True)


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(n_samples=6, n_cells=5000, seed=3)


def _fraction(sample, mask, label="CD8_T"):
    types = sample.cells["cell_type"].to_numpy()[mask]
    assert types.size > 100, "too few cells in the region to test a fraction"
    return float(np.mean(types == label))


def _distance(sample):
    return sample.truth["signed_distance_um"].to_numpy()


# ---------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_sample_and_other_seed_differs():
    first = simulate_sample("S01", n_cells=5000, seed=7)
    again = simulate_sample("S01", n_cells=5000, seed=np.random.SeedSequence(7))
    other = simulate_sample("S01", n_cells=5000, seed=8)
    for attribute in ("cells", "truth", "tls", "landmarks"):
        pd.testing.assert_frame_equal(getattr(first, attribute), getattr(again, attribute))
    assert first.phenotype == again.phenotype
    assert all(a.equals_exact(b, 0.0) for a, b in zip(first.lesions, again.lesions, strict=True))
    assert not np.array_equal(first.cells[["x", "y"]].to_numpy(),
                              other.cells[["x", "y"]].to_numpy())


def test_cohort_is_deterministic(cohort):
    samples, clinical = simulate_cohort(n_samples=6, n_cells=5000, seed=3)
    pd.testing.assert_frame_equal(clinical, cohort[1])
    for a, b in zip(samples, cohort[0], strict=True):
        pd.testing.assert_frame_equal(a.cells, b.cells)


# ---------------------------------------------------------------------------------- cell table


def test_cell_table_contract_density_and_containment(by_phenotype):
    sample = by_phenotype["inflamed"]
    cells = sample.cells
    assert list(cells.columns) == ["sample", "cell_id", "x", "y", "cell_type", *MARKERS]
    assert cells["cell_id"].is_unique
    assert (cells["sample"] == sample.name).all()
    assert set(cells["cell_type"]) <= set(CELL_TYPES)
    assert list(sample.truth["cell_id"]) == list(cells["cell_id"])
    density = len(cells) / (sample.tissue.area / 1e6)
    assert 2000 < density < 4000
    xy = cells[["x", "y"]].to_numpy()
    assert shapely.contains_xy(sample.tissue, xy[:, 0], xy[:, 1]).all()
    # jittered lattice: no two cells closer than (1 - 2 * 0.35) * spacing = 5.5 µm
    nearest, _ = cKDTree(xy).query(xy, k=2)
    assert nearest[:, 1].min() > 5.4


def test_density_is_uniform_across_compartments(by_phenotype):
    sample = by_phenotype["excluded"]
    areas = analytic_compartment_areas(sample)
    counts = sample.truth["compartment"].value_counts()
    for compartment in ("core", "border", "adjacent"):
        density = counts[compartment] / areas[compartment]
        assert density == pytest.approx(3000, rel=0.06), compartment


# ---------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("n_lesions", [1, 2, 3, 4])
def test_lesion_count_shape_and_separation(n_lesions):
    sample = simulate_sample("S01", n_cells=20_000, seed=n_lesions, n_lesions=n_lesions)
    assert len(sample.lesions) == n_lesions
    side = sample.tissue.bounds[2]
    for lesion in sample.lesions:
        assert lesion.is_valid and lesion.exterior.is_simple
        assert len(lesion.exterior.coords) - 1 >= 256
        xmin, ymin, xmax, ymax = lesion.bounds
        assert min(xmin, ymin) >= 150 - 1e-9 and max(xmax, ymax) <= side - 150 + 1e-9
        assert 120 <= np.sqrt(lesion.area / np.pi) <= 600
    for a, b in combinations(sample.lesions, 2):
        assert a.distance(b) >= 2 * W + 50 - 1e-9


def test_necrotic_hole_is_cell_free_and_bounds_the_tumour(necrotic):
    holed = [lesion for lesion in necrotic.lesions if lesion.interiors]
    assert len(holed) == 1
    hole = shapely.Polygon(holed[0].interiors[0])
    assert hole.area >= 40_000
    assert necrotic.tissue.interiors[0].equals(holed[0].interiors[0])
    xy = necrotic.cells[["x", "y"]].to_numpy()
    assert not shapely.contains_xy(hole, xy[:, 0], xy[:, 1]).any()
    # the hole's edge is not a tumour boundary: cells next to it keep their depth below the
    # lesion's outer edge
    near_hole = shapely.distance(hole.exterior, shapely.points(xy)) < 30
    assert near_hole.sum() > 20
    lesion = next(lesion for lesion in necrotic.lesions if lesion.interiors)
    depth = shapely.distance(lesion.exterior, shapely.points(xy[near_hole]))
    np.testing.assert_allclose(_distance(necrotic)[near_hole], -depth, atol=1e-6)
    assert necrotic.tissue.area == pytest.approx(necrotic.tissue.bounds[2] ** 2 - hole.area)


def test_truth_distance_matches_brute_force(necrotic):
    """Densified outer rings (0.25 µm) give distances within 0.25 µm above the exact one."""
    sample = necrotic
    xy = sample.cells[["x", "y"]].to_numpy()
    per_lesion = []
    inside_count = np.zeros(len(xy), dtype=int)
    for lesion in sample.lesions:
        rings = [lesion.exterior]
        dense = np.concatenate(
            [np.asarray(shapely.segmentize(ring, 0.25).coords) for ring in rings])
        per_lesion.append(cKDTree(dense).query(xy)[0])
        for ring in rings:
            inside_count += MplPath(np.asarray(ring.coords)).contains_points(xy)
    brute = np.min(per_lesion, axis=0)
    signed = _distance(sample)
    gap = brute - np.abs(signed)
    assert gap.min() > -1e-9 and gap.max() < 0.25
    np.testing.assert_array_equal(signed < 0, inside_count % 2 == 1)
    np.testing.assert_array_equal(sample.truth["lesion_id"], np.argmin(per_lesion, axis=0) + 1)
    expected = np.where(signed < -W, "core", np.where(signed > W, "adjacent", "border"))
    np.testing.assert_array_equal(sample.truth["compartment"], expected)


def test_analytic_areas_partition_the_tissue(necrotic, by_phenotype):
    for sample in (necrotic, *by_phenotype.values()):
        areas = analytic_compartment_areas(sample)
        parts = areas["core"] + areas["border"] + areas["adjacent"]
        assert parts == pytest.approx(areas["tissue"], rel=1e-9)
        assert areas["tumor"] == pytest.approx(sum(p.area for p in sample.lesions) / 1e6,
                                               rel=1e-12)
        assert areas["tissue"] == pytest.approx(sample.tissue.area / 1e6)
        assert 0 < areas["core"] < areas["tumor"] < areas["core"] + areas["border"]


def test_analytic_area_of_a_disk_matches_closed_form(by_phenotype):
    sample = by_phenotype["desert"]
    disk = shapely.Point(1000, 1000).buffer(400, quad_segs=256)
    sample = type(sample)(**{**sample.__dict__, "lesions": [disk]})
    areas = analytic_compartment_areas(sample, border_um=100)
    assert areas["core"] == pytest.approx(np.pi * 300**2 / 1e6, rel=1e-4)
    assert areas["border"] == pytest.approx(np.pi * (500**2 - 300**2) / 1e6, rel=1e-4)
    with pytest.raises(ValueError, match="border_um"):
        analytic_compartment_areas(sample, border_um=-5)


# ---------------------------------------------------------------------------------- phenotypes


def test_inflamed_has_cd8_in_core_and_border(by_phenotype):
    sample = by_phenotype["inflamed"]
    d = _distance(sample)
    assert _fraction(sample, d < -W) > 0.04
    assert _fraction(sample, np.abs(d) <= W) > 0.03


def test_excluded_piles_cd8_at_the_stromal_border(by_phenotype):
    sample = by_phenotype["excluded"]
    d = _distance(sample)
    assert _fraction(sample, d < -W) < 0.005
    assert _fraction(sample, (d > 0) & (d <= W)) > 0.08
    assert _fraction(sample, np.abs(d) <= W) > 0.05


def test_desert_lacks_cd8_everywhere(by_phenotype):
    sample = by_phenotype["desert"]
    d = _distance(sample)
    for region in (d < -W, np.abs(d) <= W, d > W):
        assert _fraction(sample, region) < 0.005


@pytest.mark.parametrize("phenotype", PHENOTYPES)
def test_tumour_dominates_lesions_and_hepatocytes_the_liver(by_phenotype, phenotype):
    sample = by_phenotype[phenotype]
    d = _distance(sample)
    assert 0.75 <= _fraction(sample, d < -W, "Tumor") <= 0.9
    assert _fraction(sample, d < 0, "Tumor") > 0.6
    assert _fraction(sample, d > 0, "Tumor") == 0
    assert _fraction(sample, d > 3 * W, "Hepatocyte") > 0.7
    immune = sample.cells["cell_type"].isin(IMMUNE_TYPES).to_numpy()
    near_edge_inside = (d < 0) & (d > -30)
    assert immune[near_edge_inside].mean() < 0.4


def test_gpnmb_macrophages_rise_toward_the_border(by_phenotype):
    sample = by_phenotype["inflamed"]
    d = np.abs(_distance(sample))
    near = _fraction(sample, d < 50, "GPNMB_macrophage")
    far = _fraction(sample, d > 300, "GPNMB_macrophage")
    assert near > 0.04
    assert near > 3 * far
    assert _fraction(sample, d < 50, "S100A12_neutrophil") > 3 * _fraction(
        sample, d > 300, "S100A12_neutrophil")


# ---------------------------------------------------------------------------------- TLS, landmarks


def test_tls_are_b_rich_aggregates_in_adjacent_liver(by_phenotype):
    sample = by_phenotype["inflamed"]
    tls = sample.tls
    assert 1 <= len(tls) <= 3
    assert list(tls.columns) == ["tls_id", "centroid_x", "centroid_y", "n_cells", "radius_um"]
    union = shapely.union_all(sample.lesions)
    for row in tls.itertuples():
        assert 60 <= row.radius_um <= 100
        assert union.distance(shapely.Point(row.centroid_x, row.centroid_y)) >= 150 + row.radius_um
    member = sample.truth["tls_id"].to_numpy()
    np.testing.assert_array_equal(tls["n_cells"], np.bincount(member)[1:len(tls) + 1])
    assert 0.35 < _fraction(sample, member > 0, "B") < 0.65
    assert _fraction(sample, member > 0, "CCL19_fibroblast") > 0.01
    assert _fraction(sample, member == 0, "B") < 0.01


def test_landmarks_form_vein_clusters_in_parenchyma(by_phenotype):
    sample = by_phenotype["excluded"]
    marks = sample.landmarks
    assert list(marks.columns) == ["kind", "x", "y"]
    assert {"portal", "central"} <= set(marks["kind"])
    union = shapely.union_all(sample.lesions)
    assert (shapely.distance(union, shapely.points(marks[["x", "y"]].to_numpy())) >= 200).all()
    types = sample.cells["cell_type"]
    for kind, label in (("portal", "Portal_vein"), ("central", "Central_vein")):
        per_landmark = (types == label).sum() / (marks["kind"] == kind).sum()
        assert 6 <= per_landmark <= 15
    # lobule geometry: every central vein has a portal tract ~520 µm away
    central = marks.loc[marks["kind"] == "central", ["x", "y"]].to_numpy()
    portal = marks.loc[marks["kind"] == "portal", ["x", "y"]].to_numpy()
    nearest, _ = cKDTree(portal).query(central)
    assert np.allclose(nearest[nearest < 600], 900 / np.sqrt(3))


def test_markers_follow_cell_types(by_phenotype):
    sample = by_phenotype["inflamed"]
    cells = sample.cells
    in_tls = sample.truth["tls_id"].to_numpy() > 0

    def median(label, marker, mask=None):
        rows = cells["cell_type"].to_numpy() == label
        rows = rows if mask is None else rows & mask
        return float(cells.loc[rows, marker].median())

    for label, marker in [("CD8_T", "CD3"), ("CD8_T", "CD8"), ("Treg", "FOXP3"),
                          ("Tumor", "PanCK"), ("Hepatocyte", "ALB"), ("B", "CD20"),
                          ("GPNMB_macrophage", "GPNMB"), ("Portal_vein", "CD31")]:
        assert median(label, marker) > 3.5, (label, marker)
    for label, marker in [("CD8_T", "CD4"), ("Tumor", "ALB"), ("Hepatocyte", "PanCK")]:
        assert median(label, marker) < 1.0, (label, marker)
    assert median("B", "CCR7", in_tls) > 3.5
    assert median("CD8_T", "CCR7", ~in_tls) < 1.0
    assert (cells[list(MARKERS)] > 0).all().all()


# ---------------------------------------------------------------------------- cohort and files


def test_cohort_balances_phenotypes_and_links_clinical(cohort):
    samples, clinical = cohort
    assert [s.name for s in samples] == ["S01", "S02", "S03", "S04", "S05", "S06"]
    assert pd.Series([s.phenotype for s in samples]).value_counts().to_dict() == {
        "inflamed": 2, "excluded": 2, "desert": 2}
    assert sum(len(s.tls) > 0 for s in samples) >= 2
    assert list(clinical.columns) == ["sample", "patient", "response", "os_time", "os_event"]
    assert list(clinical["sample"]) == [s.name for s in samples]
    assert set(clinical["response"]) <= {"responder", "non-responder"}
    assert (clinical["os_time"] > 0).all()
    assert set(clinical["os_event"]) <= {0, 1}


def test_write_cohort_writes_every_file(cohort, tmp_path):
    samples, clinical = cohort
    out = write_cohort(tmp_path / "sim", samples, clinical)
    for sample in samples:
        cells = pd.read_parquet(out / "cells" / f"{sample.name}.parquet")
        pd.testing.assert_frame_equal(cells, sample.cells)
        truth = pd.read_parquet(out / "truth" / f"{sample.name}.cells.parquet")
        pd.testing.assert_frame_equal(truth, sample.truth)
        collection = json.loads((out / "truth" / f"{sample.name}.lesions.geojson").read_text())
        assert collection["type"] == "FeatureCollection"
        polygons = [shapely.geometry.shape(f["geometry"]) for f in collection["features"]]
        assert all(f["properties"]["classification"]["name"] == "Tumor"
                   for f in collection["features"])
        assert [p.area for p in polygons] == pytest.approx([p.area for p in sample.lesions])
    pd.testing.assert_frame_equal(pd.read_csv(out / "clinical.csv"), clinical,
                                  check_exact=False)
    config = tomllib.loads((out / "config.toml").read_text())
    assert config == {"cell_types": {"tumor": ["Tumor"], "immune": list(IMMUNE_TYPES)},
                      "clinical": {"time_unit": "months"}}     # the unit of os_time
    truth = pd.read_csv(out / "truth" / "samples.csv")
    assert list(truth["sample"]) == [s.name for s in samples]
    for sample, row in zip(samples, truth.itertuples(), strict=True):
        areas = analytic_compartment_areas(sample)
        assert row.area_mm2_core == pytest.approx(areas["core"])
        assert row.area_mm2_tissue == pytest.approx(areas["tissue"])
        assert row.n_lesions == len(sample.lesions) and row.phenotype == sample.phenotype
    tls = pd.read_csv(out / "truth" / "tls.csv")
    assert len(tls) == sum(len(s.tls) for s in samples) and tls.columns[0] == "sample"
    landmarks = pd.read_csv(out / "truth" / "landmarks.csv")
    assert len(landmarks) == sum(len(s.landmarks) for s in samples)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_cells": 100}, "n_cells"), ({"phenotype": "hot"}, "phenotype"),
     ({"n_lesions": 5}, "n_lesions"), ({"name": ""}, "name")],
)
def test_invalid_arguments_raise(kwargs, match):
    arguments = {"name": "S01", **kwargs}
    with pytest.raises(ValueError, match=match):
        simulate_sample(**arguments)
