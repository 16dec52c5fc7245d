"""Spot analyses against planted truth, closed forms and brute force.

The simulated spot grid is made by binning a simulated cell tissue (known signed distance of
every cell) into 55 µm spots on a 100 µm hexagonal pitch: a spot's abundances are the counts of
the cells within 27.5 µm of its centre and its proportions their shares — the closed-form
truth of what a perfect deconvolution returns.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from metaniche.analyses.compartments import assign_compartments, compartment_of
from metaniche.analyses.spots import (
    SpotData,
    band_edges_um,
    spot_area_um2,
    spot_colocalisation,
    spot_compartments,
    spot_composition,
    spot_gradients,
    spot_neighbours,
)
from metaniche.config import CompartmentParams, Config, SpotsParams
from metaniche.io._spots import SPOT_TYPE_PREFIX
from metaniche.sample import analyse_sample
from metaniche.simulate import BORDER_UM, simulate_sample

DIAMETER_UM, PITCH_UM = 55.0, 100.0


def _hex_centres(x: np.ndarray, y: np.ndarray, pitch: float) -> np.ndarray:
    """Centres of a hexagonal lattice of the given pitch covering the cells' bounding box."""
    row_step = pitch * math.sqrt(3) / 2
    rows = np.arange(y.min(), y.max() + row_step, row_step)
    centres = []
    for k, yy in enumerate(rows):
        xs = np.arange(x.min() + (pitch / 2 if k % 2 else 0.0), x.max() + pitch, pitch)
        centres.append(np.column_stack([xs, np.full(xs.size, yy)]))
    return np.vstack(centres)


@pytest.fixture(scope="module")
def binned():
    """Simulated tissue (one lesion, CD8 excluded to the border) binned into Visium spots."""
    sample = simulate_sample("s", n_cells=40_000, seed=7, phenotype="excluded", n_lesions=1,
                             with_tls=False, necrosis=False)
    cells = sample.cells.reset_index(drop=True)
    truth = sample.truth.reset_index(drop=True)
    xy = cells[["x", "y"]].to_numpy()
    centres = _hex_centres(xy[:, 0], xy[:, 1], PITCH_UM)
    members = cKDTree(centres).query_ball_point(xy, DIAMETER_UM / 2)  # spots of each cell
    cell_index = np.repeat(np.arange(len(xy)), [len(m) for m in members])
    spot_index = np.concatenate([np.asarray(m, dtype=np.int64) for m in members])
    types = sorted(cells["cell_type"].unique())
    codes = pd.Categorical(cells["cell_type"], categories=types).codes
    counts = np.zeros((len(centres), len(types)))
    np.add.at(counts, (spot_index, codes[cell_index]), 1.0)
    occupied = counts.sum(axis=1) > 0
    truth_sd = np.bincount(spot_index, weights=truth["signed_distance_um"].to_numpy()[cell_index],
                           minlength=len(centres))
    n_in = np.bincount(spot_index, minlength=len(centres))
    return {"cells": cells, "truth": truth, "centres": centres[occupied],
            "counts": counts[occupied], "types": types,
            "spot_truth_sd": truth_sd[occupied] / n_in[occupied]}


def _spot_table(binned: dict, kind: str) -> pd.DataFrame:
    counts = binned["counts"]
    values = counts if kind == "abundance" else counts / counts.sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"cell_id": [f"spot{i}" for i in range(len(counts))],
                          "x": binned["centres"][:, 0], "y": binned["centres"][:, 1]})
    frame["cell_type"] = np.asarray(binned["types"], dtype=object)[np.argmax(values, axis=1)]
    for j, name in enumerate(binned["types"]):
        frame[SPOT_TYPE_PREFIX + name] = values[:, j]
    return frame


def _config(kind: str) -> Config:
    spots = SpotsParams(proportions="planted", kind=kind, diameter_um=DIAMETER_UM,
                        n_permutations=49)
    return dataclasses.replace(Config(), spots=spots)


def test_binned_spots_recover_the_signed_distance_and_compartments(binned) -> None:
    analysis = analyse_sample(_spot_table(binned, "proportion"), _config("proportion"), name="s")
    sd = analysis.cells["signed_distance_um"].to_numpy()
    truth = binned["spot_truth_sd"]
    near = np.abs(truth) <= 400
    error = np.abs(sd - truth)[near]
    # a spot's position is known to its radius (27.5 µm) and its tumour share is an average
    # over ~7 cells: half the pitch bounds the typical error of the boundary
    assert np.median(error) < PITCH_UM / 4
    assert np.quantile(error, 0.9) < PITCH_UM / 2
    agree = np.mean(analysis.cells["compartment"].to_numpy() == compartment_of(truth, BORDER_UM))
    assert agree > 0.9
    # the cell pipeline on the cells themselves: the spot distance follows it as closely
    cell_sd = analyse_sample(binned["cells"], Config(), name="c").cells["signed_distance_um"]
    spot_of_cell = cKDTree(binned["centres"]).query(binned["cells"][["x", "y"]].to_numpy())[1]
    cell_mean = (np.bincount(spot_of_cell, weights=cell_sd.to_numpy(),
                             minlength=len(sd)) / np.maximum(np.bincount(spot_of_cell,
                                                                         minlength=len(sd)), 1))
    assert np.median(np.abs(sd - cell_mean)[near]) < PITCH_UM / 4


def test_binned_spots_recover_the_immune_gradient(binned) -> None:
    """Spot densities (Σ abundance / spots' area per band) match the cells' true densities."""
    analysis = analyse_sample(_spot_table(binned, "abundance"), _config("abundance"), name="s")
    gradients = analysis.tables["gradients"]
    whole = gradients[gradients["lesion_id"].isna() & (gradients["cell_type"] == "CD8_T")]
    truth = binned["truth"]
    cells = binned["cells"]
    is_cd8 = (cells["cell_type"] == "CD8_T").to_numpy()
    sd_true = truth["signed_distance_um"].to_numpy()
    density_all = 3000.0  # simulate.DENSITY_PER_MM2: cells per mm² of tissue
    checked = 0
    for row in whole.itertuples(index=False):
        if row.n_spots < 15 or row.bin_end_um > 400 or row.bin_start_um < -400:
            continue
        band = (sd_true >= row.bin_start_um) & (sd_true < row.bin_end_um)
        share = is_cd8[band].mean()                      # CD8 share of the band's cells
        expected = share * density_all                   # cells/mm²
        # Poisson counting error of the spots' CD8 count, plus 25 % for the band edges that
        # the spots' estimated distance places up to ~half a pitch off
        sd_count = math.sqrt(max(expected * row.area_mm2, 1.0)) / row.area_mm2
        assert abs(row.density_per_mm2 - expected) <= 4 * sd_count + 0.25 * expected, row
        checked += 1
    assert checked >= 5
    # the planted exclusion: CD8 peak just outside the edge, (almost) none in the core
    inside = whole[(whole["bin_end_um"] <= -200) & (whole["n_spots"] > 0)]
    outside = whole[(whole["bin_start_um"] >= 0) & (whole["bin_end_um"] <= 100)]
    assert outside["density_per_mm2"].iloc[0] > 10 * inside["density_per_mm2"].mean()
    stats = analysis.tables["gradient_stats"]
    assert stats.loc[stats["lesion_id"].isna() & (stats["cell_type"] == "CD8_T"),
                     "slope_per_100um"].iloc[0] < 0
    assert analysis.features["n_spots"] == len(binned["centres"])


def test_proportions_without_cells_per_spot_report_proportions_only(binned) -> None:
    table = _spot_table(binned, "proportion")
    analysis = analyse_sample(table, _config("proportion"), name="s")
    composition = analysis.tables["composition"]
    assert composition["density_per_mm2"].isna().all()
    assert "gradient_stats" not in analysis.tables
    # without a cells assumption the proportions still carry the planted trend: CD8 T cells'
    # share falls with distance from the edge (excluded phenotype; ~6 bands in the window)
    trend = analysis.tables["spot_gradient_stats"]
    whole = trend[trend["lesion_id"].isna()].set_index("cell_type")
    assert whole.loc["CD8_T", "slope_per_100um"] < 0 and whole.loc["CD8_T", "p"] < 0.05
    assert analysis.features["proportion_gradient_slope.CD8_T"] == \
        whole.loc["CD8_T", "slope_per_100um"]
    whole = composition[composition["lesion_id"].isna() & (composition["compartment"] == "all")]
    values = table[[SPOT_TYPE_PREFIX + t for t in binned["types"]]].to_numpy()
    np.testing.assert_allclose(whole["proportion"], values.mean(axis=0))
    with_cells = dataclasses.replace(_config("proportion"), spots=dataclasses.replace(
        _config("proportion").spots, cells_per_spot=7.0))
    dense = analyse_sample(table, with_cells, name="s").tables["composition"]
    row = dense[dense["lesion_id"].isna() & (dense["compartment"] == "all")]
    np.testing.assert_allclose(row["density_per_mm2"],
                               values.sum(axis=0) * 7.0 / (len(table) * spot_area_um2(55) * 1e-6))


def test_one_hot_spots_are_the_cell_rule() -> None:
    """A spot holding one cell (one-hot weights) gives exactly the cells' compartments."""
    sample = simulate_sample("o", n_cells=4000, seed=2, phenotype="inflamed", n_lesions=1,
                             with_tls=False, necrosis=False)
    cells = sample.cells
    x, y = cells["x"].to_numpy(), cells["y"].to_numpy()
    tumour = (cells["cell_type"] == "Tumor").to_numpy()
    immune = cells["cell_type"].isin(["CD8_T", "CD4_T", "Treg", "B", "Macrophage"]).to_numpy()
    params = CompartmentParams(grid_um=5, smoothing_um=20, tissue_radius_um=9,
                               tissue_closing_um=30, min_lesion_area_um2=20_000,
                               min_hole_area_um2=20_000)
    cell = assign_compartments(x, y, tumour, immune, params)
    spot = spot_compartments(x, y, tumour.astype(float), (immune & ~tumour).astype(float),
                             (~tumour & ~immune).astype(float), params)
    np.testing.assert_array_equal(spot.signed_distance_um, cell.signed_distance_um)
    np.testing.assert_array_equal(spot.compartment, cell.compartment)
    np.testing.assert_array_equal(spot.lesion_id, cell.lesion_id)


def test_composition_and_gradients_brute_force() -> None:
    rng = np.random.default_rng(0)
    n = 200
    values = rng.gamma(1.0, 2.0, size=(n, 3))
    spots = SpotData(["A", "B", "C"], values, "abundance", 1000.0)
    compartment = rng.choice(np.array(["core", "border", "adjacent"], dtype=object), n)
    lesion = rng.integers(1, 3, n)
    table = spot_composition(spots, compartment, lesion)
    frame = pd.DataFrame(values, columns=["A", "B", "C"]).assign(c=compartment, l=lesion)
    for (les, comp), group in frame.groupby(["l", "c"]):
        rows = table[(table["lesion_id"] == les) & (table["compartment"] == comp)]
        sums = group[["A", "B", "C"]].sum()
        np.testing.assert_allclose(rows["n_cells"], sums)
        np.testing.assert_allclose(rows["area_mm2"], len(group) * 1000.0 * 1e-6)
        np.testing.assert_allclose(rows["proportion"], sums / sums.sum())
        np.testing.assert_allclose(rows["density_per_mm2"], sums / (len(group) * 1e-3))
    whole = table[table["lesion_id"].isna() & (table["compartment"] == "all")]
    np.testing.assert_allclose(whole["n_cells"], values.sum(axis=0))
    assert (whole["n_spots"] == n).all()
    sd = rng.uniform(-300, 300, n)
    sd[:5] = np.nan
    edges = band_edges_um(-250, 250, 10, 100)
    np.testing.assert_array_equal(edges, [-300, -200, -100, 0, 100, 200, 300])
    grad = spot_gradients(spots, sd, lesion, edges)
    whole = grad[grad["lesion_id"].isna() & (grad["cell_type"] == "B")]
    for row in whole.itertuples(index=False):
        inside = (sd >= row.bin_start_um) & (sd < row.bin_end_um)
        assert row.n_spots == inside.sum()
        assert row.n_cells == pytest.approx(values[inside, 1].sum())
    assert whole["n_spots"].sum() == n - 5


def test_colocalisation_expectation_is_the_permutation_mean() -> None:
    """The closed-form expectation equals the mean over all 7! spot permutations."""
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 300, 7), rng.uniform(0, 300, 7)
    adjacency = spot_neighbours(x, y, spacing_um=100.0)
    values = rng.dirichlet(np.ones(3), size=7)
    table = spot_colocalisation(values, ["a", "b", "c"], adjacency, n_permutations=0)
    nulls = np.array([values[list(p)].T @ (adjacency @ values[list(p)])
                      for p in itertools.permutations(range(7))])
    np.testing.assert_allclose(table["expected"], nulls.mean(axis=0).ravel(), rtol=1e-10)
    np.testing.assert_allclose(table["observed"], (values.T @ (adjacency @ values)).ravel())
    assert table["z"].isna().all()


def test_colocalisation_finds_planted_segregation_and_is_reproducible() -> None:
    centres = _hex_centres(np.array([0.0, 1500.0]), np.array([0.0, 1500.0]), 100.0)
    left = centres[:, 0] < 750
    values = np.where(left[:, None], [0.8, 0.2], [0.2, 0.8])
    adjacency = spot_neighbours(centres[:, 0], centres[:, 1])
    assert set(np.asarray(adjacency.sum(axis=1)).ravel()) <= {2.0, 3.0, 4.0, 5.0, 6.0}
    table = spot_colocalisation(values, ["T", "I"], adjacency, n_permutations=99, seed=3)
    z = table.set_index(["type_a", "type_b"])["z"]
    p = table.set_index(["type_a", "type_b"])["p"]
    assert z["T", "T"] > 5 and z["I", "I"] > 5 and z["T", "I"] < -5
    assert p["T", "I"] == pytest.approx(1 / 100)
    again = spot_colocalisation(values, ["T", "I"], adjacency, n_permutations=99, seed=3)
    pd.testing.assert_frame_equal(table, again)
    shuffled = np.random.default_rng(0).permutation(len(values))
    random = spot_colocalisation(values[shuffled], ["T", "I"], adjacency, n_permutations=99,
                                 seed=3)
    assert (random["z"].abs() < 4).all()


def test_neighbours_first_ring_of_square_and_hex_lattices() -> None:
    gx, gy = np.meshgrid(np.arange(5) * 200.0, np.arange(5) * 200.0)
    square = spot_neighbours(gx.ravel(), gy.ravel())
    assert np.asarray(square.sum(axis=1)).max() == 4           # diagonals (283 µm) excluded
    hexagon = _hex_centres(np.array([0.0, 600.0]), np.array([0.0, 600.0]), 100.0)
    degree = np.asarray(spot_neighbours(hexagon[:, 0], hexagon[:, 1]).sum(axis=1)).ravel()
    assert degree.max() == 6


def test_spot_area() -> None:
    assert spot_area_um2(55.0) == pytest.approx(math.pi * 27.5**2)
    assert spot_area_um2(8.0, square=True) == 64.0


# --- real data end to end -------------------------------------------------------------------

@pytest.fixture(scope="module")
def st(data_dir) -> object:
    path = data_dir / "st"
    if not (path / "her2st_H1").is_dir():
        pytest.skip(f"spot data not found at {path}; see ../shared/data/st/README.md")
    return path


HER2_CONFIG = """
[spots]
proportions = "stereoscope_major"
diameter_um = 100.0
pitch_um = 200.0
region = "pathologist_label"
tumor_regions = ["invasive cancer", "cancer in situ"]
n_permutations = 49
[cell_types]
tumor = ["Epithelial"]
immune = ["B-cells", "T-cells", "Myeloid", "Plasma Cells"]
"""


def test_her2_section_runs_end_to_end_and_agrees_with_the_pathologist(st, tmp_path) -> None:
    """``metaniche run`` on the HER2 legacy-ST section with stereoscope proportions.

    The tumour region from the epithelial proportion agrees with the pathologist's cancer
    labels (invasive cancer or cancer in situ) at Cohen's kappa 0.61 (613 spots, 100 µm spots
    on a 200 µm pitch); recomputed here from the spots' signed distances and the labels.
    """
    import subprocess
    import sys

    from sklearn.metrics import cohen_kappa_score

    config = tmp_path / "her2.toml"
    config.write_text(HER2_CONFIG)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "metaniche", "run",
                           str(st / "her2st_H1" / "her2st_H1.h5ad"), "--out", str(out),
                           "--config", str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    spots = pd.read_parquet(out / "cells" / "her2st_H1.parquet")
    assert len(spots) == 613
    assert {"signed_distance_um", "compartment", "lesion_id"} <= set(spots.columns)
    labels = pd.read_csv(st / "her2st_H1" / "H1_pathologist_labels.tsv", sep="\t")
    cancer = labels.set_index("Row.names")["label"].isin(["invasive cancer", "cancer in situ"])
    by_coords = pd.read_csv(st / "her2st_H1" / "H1_stereoscope_major_proportions.tsv",
                            sep="\t", index_col=0).index
    assert set(spots["cell_id"]) == set(by_coords)
    label_of_spot = spots["pathologist_label"].isin(["invasive cancer", "cancer in situ"])
    assert label_of_spot.sum() == cancer.sum() == 90 + 97
    kappa = cohen_kappa_score(spots["signed_distance_um"] < 0, label_of_spot)
    features = pd.read_parquet(out / "features.parquet")
    assert features["region_agreement.kappa"].iloc[0] == pytest.approx(kappa)
    assert kappa > 0.6
    composition = pd.read_parquet(out / "tables" / "composition.parquet")
    core = composition[composition["lesion_id"].isna() & (composition["compartment"] == "core")]
    adjacent = composition[composition["lesion_id"].isna()
                           & (composition["compartment"] == "adjacent")]
    epithelial = (core.set_index("cell_type")["proportion"]["Epithelial"],
                  adjacent.set_index("cell_type")["proportion"]["Epithelial"])
    assert epithelial[0] > epithelial[1]
    assert (out / "tables" / "spot_colocalisation.parquet").is_file()
    assert (out / "report" / "her2st_H1.html").is_file()


def test_visium_folder_runs_end_to_end_with_a_planted_tumour_half(st, tmp_path) -> None:
    """The genuine Visium outs folder with planted proportions: tumour on the left half."""
    import h5py

    from metaniche.config import load_config
    from metaniche.pipeline import run

    folder = st / "visium_squidpy_testdata"
    with h5py.File(folder / "filtered_feature_bc_matrix.h5", "r") as f:
        barcodes = [b.decode() for b in f["matrix"]["barcodes"][()]]
    positions = pd.read_csv(folder / "spatial" / "tissue_positions_list.csv", header=None,
                            index_col=0)
    column = positions.loc[barcodes, 5].to_numpy(np.float64)   # pxl_col_in_fullres
    left = column < np.median(column)
    table = pd.DataFrame({"barcode": barcodes, "Tumor": np.where(left, 0.9, 0.1)})
    table["T_cell"] = 1 - table["Tumor"]
    table.to_csv(tmp_path / "props.csv", index=False)
    (tmp_path / "c.toml").write_text(f'[spots]\nproportions = "{tmp_path / "props.csv"}"\n'
                                     "n_permutations = 19\n")
    result = run([folder], tmp_path / "out", load_config(tmp_path / "c.toml"))
    assert not result.failed, result.samples
    spots = pd.read_parquet(tmp_path / "out" / "cells" / "visium_squidpy_testdata.parquet")
    assert len(spots) == 100
    inside = (spots["signed_distance_um"] < 0).to_numpy()
    by_id = dict(zip(barcodes, left, strict=True))
    planted = spots["cell_id"].map(by_id).to_numpy(dtype=bool)
    assert np.mean(inside == planted) >= 0.9


def test_card_pdac_compartments_from_the_region_column(st, tmp_path) -> None:
    """PDAC spots (no deconvolution in the data): the tumour region from the per-spot region
    label (``[compartments] region = "tissue_category"``), types as a one-hot of the region
    (a test device standing in for a deconvolution). Every Cancer spot must lie inside the
    tumour region or within one pitch of its edge, every other spot outside or within one
    pitch, and kappa with the label is reported."""
    from metaniche.config import load_config
    from metaniche.pipeline import run

    meta = pd.read_csv(st / "card_pdac" / "spots_metadata.csv", index_col=0)
    onehot = pd.get_dummies(meta["Region"].fillna("unlabelled")).astype(float)
    onehot.insert(0, "spot_id", meta.index)
    onehot.to_csv(tmp_path / "onehot.csv", index=False)
    (tmp_path / "c.toml").write_text(
        f'[spots]\nproportions = "{tmp_path / "onehot.csv"}"\ndiameter_um = 100.0\n'
        'pitch_um = 200.0\nregion = "Region"\ntumor_regions = ["Cancer"]\nn_permutations = 9\n'
        '[compartments]\nregion = "tissue_category"\n')
    result = run([st / "card_pdac" / "card_pdac_st.h5ad"], tmp_path / "out",
                 load_config(tmp_path / "c.toml"))
    assert not result.failed, result.samples
    spots = pd.read_parquet(tmp_path / "out" / "cells" / "card_pdac_st.parquet")
    assert len(spots) == 428
    cancer = (spots["Region"] == "Cancer").to_numpy()
    assert cancer.sum() == 137
    sd = spots["signed_distance_um"].to_numpy()
    assert (sd[cancer] < 200).all() and (sd[~cancer] > -200).all()
    features = pd.read_parquet(tmp_path / "out" / "features.parquet")
    assert features["region_agreement.kappa"].iloc[0] > 0.8


def test_spot_results_do_not_depend_on_position_offset_or_type_order() -> None:
    centres = _hex_centres(np.array([0.0, 2000.0]), np.array([0.0, 2000.0]), 100.0)
    radius = np.hypot(centres[:, 0] - 1000, centres[:, 1] - 1000)
    tumour = np.clip(1.2 - radius / 600, 0.05, 0.95)
    values = np.column_stack([tumour, 0.6 * (1 - tumour), 0.4 * (1 - tumour)])
    types = ["Tumor", "CD8_T", "Stroma"]

    def table(xy: np.ndarray, order: list[int]) -> pd.DataFrame:
        frame = pd.DataFrame({"cell_id": np.arange(len(xy)).astype(str), "x": xy[:, 0],
                              "y": xy[:, 1]})
        frame["cell_type"] = np.asarray(types, dtype=object)[np.argmax(values, axis=1)]
        for j in order:
            frame[SPOT_TYPE_PREFIX + types[j]] = values[:, j]
        return frame

    config = _config("proportion")
    base = analyse_sample(table(centres, [0, 1, 2]), config, name="a")
    moved = centres + np.array([1234.5, -777.25])
    shifted = analyse_sample(table(moved, [2, 0, 1]), config, name="a")
    np.testing.assert_allclose(base.cells["signed_distance_um"],
                               shifted.cells["signed_distance_um"], atol=1e-3)
    sort = ["lesion_id", "compartment", "cell_type"]
    left = base.tables["composition"].sort_values(sort).reset_index(drop=True)
    right = shifted.tables["composition"].sort_values(sort).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right)
    # the planted disc: with tumor_fraction = 0.5 the boundary is where the tumour share
    # crosses 1/2, at radius 420 µm (the default isodata threshold sits lower on this ramp)
    half = dataclasses.replace(config, compartments=CompartmentParams(tumor_fraction=0.5))
    sd = analyse_sample(table(centres, [0, 1, 2]), half, name="a").cells[
        "signed_distance_um"].to_numpy()
    near = np.abs(sd) < 150
    np.testing.assert_allclose(radius[near] - 420, sd[near], atol=40)


def test_visium_hd_like_bins_of_the_xenium_window_run(st, tmp_path) -> None:
    """A Visium HD-like sample: the Xenium window's transcripts binned into 8 µm squares.

    Each bin's genes are its transcript counts; its proportions are the shares of its
    transcripts that fall in cells of each 10x type (transcripts outside labelled cells:
    ``Unassigned``) — the truth a perfect deconvolution of the bin would return. The run
    must give one row per occupied bin, and the 10x Tumor cells must lie in the tumour region
    (their bin's signed distance < 0) far more often than the other cells.
    """
    from metaniche.config import load_config
    from metaniche.pipeline import run

    folder = st / "xenium_breast_jazzpanda_rep1"
    tx = pd.read_csv(folder / "transcripts.csv.gz")
    labels = pd.read_csv(folder / "cell_types_supervised_merged.csv").set_index("Barcode")
    kind = tx["cell_id"].map(labels["Cluster"]).fillna("Unassigned")
    col = np.floor(tx["x_location"] / 8).astype(int)
    row = np.floor(tx["y_location"] / 8).astype(int)
    bin_id = "b" + row.astype(str) + "_" + col.astype(str)
    genes = pd.crosstab(bin_id, tx["feature_name"])
    shares = pd.crosstab(bin_id, kind, normalize="index")
    first = pd.DataFrame({"row": row, "col": col, "bin": bin_id}).drop_duplicates("bin")
    first = first.set_index("bin").loc[genes.index]
    spots = pd.DataFrame({"cell_id": genes.index, "x": first["col"].to_numpy() * 8 + 4,
                          "y": first["row"].to_numpy() * 8 + 4})
    spots = pd.concat([spots, genes.reset_index(drop=True)], axis=1)
    spots["cell_type"] = "bin"
    spots.to_parquet(tmp_path / "hd_window.parquet")
    shares.rename_axis("spot_id").reset_index().to_csv(tmp_path / "shares.csv", index=False)
    (tmp_path / "c.toml").write_text(
        f'[spots]\nproportions = "{tmp_path / "shares.csv"}"\ndiameter_um = 8.0\n'
        'square = true\nn_permutations = 9\n[cell_types]\ntumor = ["Tumor"]\n'
        'immune = ["T", "B", "Macrophage"]\n')
    result = run([tmp_path / "hd_window.parquet"], tmp_path / "out",
                 load_config(tmp_path / "c.toml"))
    assert not result.failed, result.samples
    out = pd.read_parquet(tmp_path / "out" / "cells" / "hd_window.parquet")
    assert len(out) == bin_id.nunique()
    cells = pd.read_csv(folder / "cells.csv.gz")
    cells["type"] = cells["cell_id"].map(labels["Cluster"])
    cell_bin = ("b" + np.floor(cells["y_centroid"] / 8).astype(int).astype(str) + "_"
                + np.floor(cells["x_centroid"] / 8).astype(int).astype(str))
    sd = cell_bin.map(out.set_index("cell_id")["signed_distance_um"])
    tumour = cells["type"] == "Tumor"
    inside_tumour = (sd[tumour].dropna() < 0).mean()
    inside_other = (sd[~tumour].dropna() < 0).mean()
    assert inside_tumour > 0.8 and inside_tumour > inside_other + 0.3
