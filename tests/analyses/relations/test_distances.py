"""Distances, counts within radius, Clark–Evans: published numbers (REFERENCE.md) + brute force.

SPIAT images: cell types mapped from ``phenotype_raw`` as REFERENCE.md states. Conventions:
distances exclude the cell itself by index; "within r" is ``<=``; phenoptr's count_within drops
every zero distance (``0 < d <= r``), which we state and test below.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _reference import SPIAT_TYPES, sig4
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from metaniche.analyses.relations import (
    average_marker_within_radius,
    average_minimum_distance,
    average_percentage_within_radius,
    bounding_box_area,
    clark_evans,
    count_within,
    count_within_by_type,
    distance_summary,
    nearest_type_distances,
    pairwise_distance_summary,
)


@pytest.fixture(scope="module", params=["spiat_simulated_image", "spiat_defined_image"])
def spiat_image(request, data_dir):
    cells = pd.read_csv(data_dir / "cells" / f"{request.param}.SIMULATED.cells.csv.gz")
    cells["cell_type"] = cells["phenotype_raw"].map(SPIAT_TYPES)
    assert cells["cell_type"].notna().all()
    return cells


@pytest.fixture(scope="module")
def prostate(data_dir):
    return pd.read_csv(data_dir / "cells" / "spiat_prostate_opal.cells.csv.gz")


@pytest.fixture(scope="module")
def phenoptr(data_dir):
    return pd.read_csv(data_dir / "cells" / "phenoptr_akoya_sample.cells.csv.gz")


def _xy(cells: pd.DataFrame) -> np.ndarray:
    return cells[["x", "y"]].to_numpy(np.float64)


def test_spiat_average_minimum_distance(spiat_image):
    sig4(average_minimum_distance(cKDTree(_xy(spiat_image))), 17.0134)


def test_spiat_clark_evans_bounding_box(spiat_image):
    xy, types = _xy(spiat_image), spiat_image["cell_type"].to_numpy()
    result = clark_evans(xy[types == "Tumour"], bounding_box_area(xy))
    sig4(result.index, 0.7864656)
    sig4(result.p, 7.11006e-32)
    assert result.pattern == "clustered"


def test_spiat_average_percentage_within_radius(spiat_image):
    xy, types = _xy(spiat_image), spiat_image["cell_type"].to_numpy()
    tree = cKDTree(xy)
    sig4(average_percentage_within_radius(xy, types == "Tumour", types == "Immune3", 100, tree),
         17.4571)
    sig4(average_percentage_within_radius(xy, types == "Immune1", types == "Immune2", 100, tree),
         4.768123)


def test_spiat_minimum_distances_and_summaries(spiat_image):
    xy, labels = _xy(spiat_image), spiat_image["cell_type"].to_numpy()
    types, codes = np.unique(labels, return_inverse=True)
    nearest = nearest_type_distances(xy, codes, len(types))
    tumour = list(types).index("Tumour")
    ids = spiat_image["cell_id"].to_numpy()
    for cell, expected in [("Cell_15", 17.18740), ("Cell_25", 44.79503), ("Cell_30", 78.52918)]:
        sig4(nearest[np.flatnonzero(ids == cell)[0], tumour], expected)
    summary = distance_summary(nearest, codes, list(types)).set_index(["source_type",
                                                                       "target_type"])
    sig4(summary.loc[("Immune1", "Immune2"), "mean_um"], 63.65211)
    sig4(summary.loc[("Immune1", "Immune2"), "median_um"], 59.01846)
    sig4(summary.loc[("Immune1", "Tumour"), "mean_um"], 85.84773)
    sig4(summary.loc[("Immune1", "Tumour"), "median_um"], 80.80592)
    sig4(summary.loc[("Immune1", "Others"), "mean_um"], 19.24038)


def test_spiat_pairwise_distance_summary(spiat_image):
    xy, types = _xy(spiat_image), spiat_image["cell_type"].to_numpy()
    within = pairwise_distance_summary(xy[types == "Immune1"], xy[types == "Immune1"],
                                       same_set=True)
    sig4(within["mean"], 1164.7096)
    sig4(within["min"], 10.84056)
    sig4(within["max"], 2729.120)
    sig4(within["median"], 1191.3645)
    sig4(within["sd"], 552.0154)
    sig4(pairwise_distance_summary(xy[types == "Immune1"], xy[types == "Tumour"])["mean"],
         1013.3697)


def test_prostate_counts_distance_and_percentage(prostate):
    counts = prostate["cell_type"].value_counts()
    assert counts.to_dict() == {"Tumour": 4446, "Undefined": 3299, "T_helper": 513,
                                "T_cyto": 138, "T_other": 19, "PDL1": 4}
    xy, types = _xy(prostate), prostate["cell_type"].to_numpy()
    amd = average_minimum_distance(cKDTree(xy))
    sig4(amd, 15.92421)
    assert round(5 * amd, 2) == 79.62  # SPIAT's margin width
    sig4(average_percentage_within_radius(xy, types == "T_helper", types == "T_cyto", 100),
         5.613999)


def test_prostate_average_marker_intensity_within_radius(prostate):
    phenotype = prostate["phenotype_raw"].fillna("")
    value = average_marker_within_radius(
        _xy(prostate), phenotype.str.contains("CD8").to_numpy(),
        phenotype.str.contains("CD4").to_numpy(), prostate["CD4"].to_numpy(), 30)
    sig4(value, 10.13677)


def test_phenoptr_count_within_all_cells(phenoptr):
    xy, types = _xy(phenoptr), phenoptr["cell_type"].to_numpy()
    from_with, within_mean, _ = count_within(xy[types == "CD68+"], xy[types == "CK+"], 25)
    assert from_with == 274
    assert round(within_mean, 2) == 3.28
    from_with, within_mean, _ = count_within(xy[types == "CK+"], xy[types == "CD68+"], 25)
    assert from_with == 664
    assert round(within_mean, 3) == 0.606


def test_phenoptr_count_within_per_tissue_category(phenoptr, data_dir):
    expected = pd.read_csv(data_dir / "phenoptr_count_within_expected.csv")
    expected = expected[expected["from"] != "CK+ PDL1+"]  # no PDL1 phenotype in the cell table
    assert len(expected) == 8
    for row in expected.itertuples(index=False):
        cells = phenoptr[phenoptr["tissue_category"] == row.category]
        xy, types = _xy(cells), cells["cell_type"].to_numpy()
        from_xy, to_xy = xy[types == row._3], xy[types == row.to]
        assert (len(from_xy), len(to_xy)) == (row.from_count, row.to_count)
        from_with, within_mean, _ = count_within(from_xy, to_xy, row.radius)
        assert from_with == row.from_with
        assert within_mean == pytest.approx(row.within_mean, abs=5e-5)  # 4 decimals printed
        table = count_within_by_type(cKDTree(xy), np.unique(types, return_inverse=True)[1],
                                     list(np.unique(types)), [row.radius])
        hit = table[(table.source_type == row._3) & (table.target_type == row.to)].iloc[0]
        assert hit.from_with == from_with
        assert hit.within_mean == pytest.approx(within_mean)


def test_count_within_boundary_self_and_coincident():
    # from cell at origin; to cells: coincident (0), exactly at r (counted), just beyond r
    from_xy = np.array([[0.0, 0.0]])
    to_xy = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 5.0 + 1e-9]])
    from_with, mean, counts = count_within(from_xy, to_xy, 5.0)
    assert counts.tolist() == [1] and from_with == 1 and mean == 1.0


def test_nearest_type_distances_brute_force():
    rng = np.random.default_rng(3)
    xy = np.round(rng.uniform(0, 50, (120, 2)))  # rounding creates coincident cells
    codes = rng.integers(0, 4, 120)
    codes[0] = 3
    codes[codes == 3] = 2
    codes[0] = 3  # type 3 has a single cell: its distance to its own type is undefined
    nearest = nearest_type_distances(xy, codes, 4)
    full = cdist(xy, xy)
    np.fill_diagonal(full, np.inf)
    for t in range(4):
        brute = full[:, codes == t].min(axis=1)
        brute[np.isinf(brute)] = np.nan
        np.testing.assert_allclose(nearest[:, t], brute)
    assert np.isnan(nearest[0, 3])


def test_distance_summary_groups_and_quantiles():
    rng = np.random.default_rng(4)
    xy = rng.uniform(0, 100, (200, 2))
    codes = rng.integers(0, 2, 200)
    groups = np.where(xy[:, 0] < 50, "core", "border")
    nearest = nearest_type_distances(xy, codes, 2)
    table = distance_summary(nearest, codes, ["A", "B"], groups)
    row = table[(table.compartment == "core") & (table.source_type == "A")
                & (table.target_type == "B")].iloc[0]
    values = nearest[(groups == "core") & (codes == 0), 1]
    assert row.n_source == len(values)
    assert row.mean_um == pytest.approx(values.mean())
    assert row.q25_um == pytest.approx(np.quantile(values, 0.25))
    assert set(table.compartment) == {"all", "core", "border"}


def test_clark_evans_csr_and_lattice():
    rng = np.random.default_rng(5)
    csr = clark_evans(rng.uniform(0, 1000, (2000, 2)), 1000.0 * 1000.0)
    assert 0.95 < csr.index < 1.05  # edge effects bias R slightly upwards
    g = np.arange(0, 1000, 20.0)
    lattice = np.array(np.meshgrid(g, g)).reshape(2, -1).T
    dispersed = clark_evans(lattice, 1000.0 * 1000.0)
    assert dispersed.index == pytest.approx(20.0 / (0.5 / np.sqrt(len(lattice) / 1e6)))
    assert dispersed.pattern == "dispersed"


def test_clark_evans_from_the_nearest_distance_matrix_equals_its_own_tree():
    rng = np.random.default_rng(8)
    xy = rng.uniform(0, 500, (3000, 2))
    codes = rng.integers(0, 3, len(xy))
    nearest = nearest_type_distances(xy, codes, 3)
    for t in range(3):
        own = codes == t
        direct = clark_evans(xy[own], 250_000.0)
        reused = clark_evans(xy[own], 250_000.0, nearest_um=nearest[own, t])
        assert reused.index == pytest.approx(direct.index, rel=1e-12)
        assert (reused.z, reused.p, reused.n) == pytest.approx((direct.z, direct.p, direct.n))
