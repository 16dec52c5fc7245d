"""Virtual biopsies: exact geometry against shapely, the CLI contract, agreement statistics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely
from sklearn.metrics import cohen_kappa_score

from metaniche.cli import main
from metaniche.config import CellTypeRoles, Config
from metaniche.simulate import IMMUNE_TYPES, simulate_sample
from metaniche.studies.agreement import (
    biopsy_agreement,
    cohen_kappa,
    icc_agreement,
    lin_concordance,
    slide_features,
)
from metaniche.studies.biopsy import Core, cut_cores, inside_core, place_cores

CONFIG = Config(cell_types=CellTypeRoles(tumor=("Tumor",), immune=IMMUNE_TYPES))


def test_needle_membership_matches_shapely():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-2000, 2000, (20_000, 2))
    for angle in rng.uniform(0, np.pi, 8):
        core = Core("s", 1, "needle", 100.0, -50.0, float(angle), 300.0, 2500.0)
        ours = inside_core(xy[:, 0], xy[:, 1], core)
        theirs = shapely.covers(core.polygon(), shapely.points(xy))
        assert 0 < ours.sum() < len(xy)
        np.testing.assert_array_equal(ours, theirs)


def test_needle_boundary_is_inside_and_punch_matches_exact_distance():
    core = Core("s", 1, "needle", 0.0, 0.0, 0.0, 2.0, 10.0)
    x = np.array([5.0, -5.0, 0.0, 0.0, 5.0 + 1e-9, 0.0])
    y = np.array([1.0, -1.0, 1.0, -1.0, 0.0, 1.0 + 1e-9])
    np.testing.assert_array_equal(inside_core(x, y, core),
                                  [True, True, True, True, False, False])
    rng = np.random.default_rng(1)
    xy = rng.uniform(-600, 600, (10_000, 2))
    punch = Core("s", 1, "punch", 20.0, 30.0, 0.0, 800.0, 800.0)
    expected = shapely.dwithin(shapely.points(xy), shapely.Point(20.0, 30.0), 400.0)
    np.testing.assert_array_equal(inside_core(xy[:, 0], xy[:, 1], punch), expected)


def test_cut_keeps_exactly_the_cells_inside_with_their_ids():
    sample = simulate_sample("S1", n_cells=4000, seed=3)
    cores = place_cores("S1", sample.cells["x"], sample.cells["y"], 4, 400.0, 3000.0, rng=5)
    points = shapely.points(sample.cells[["x", "y"]].to_numpy())
    for core, piece in zip(cores, cut_cores(sample.cells, cores), strict=True):
        inside = shapely.covers(core.polygon(), points)
        assert set(piece["cell_id"]) == set(sample.cells.loc[inside, "cell_id"])
        assert len(piece) == inside.sum() > 0
        pd.testing.assert_frame_equal(
            piece, sample.cells.loc[inside].reset_index(drop=True))


def test_edge_target_centres_lie_at_the_edge():
    sample = simulate_sample("S1", n_cells=4000, seed=4, n_lesions=1)
    signed = sample.truth["signed_distance_um"].to_numpy()
    cores = place_cores("S1", sample.cells["x"], sample.cells["y"], 20, 200.0, 1000.0,
                        target="edge", signed_distance_um=signed, rng=0)
    xy = sample.cells[["x", "y"]].to_numpy()
    for core in cores:
        i = np.flatnonzero((xy[:, 0] == core.centre_x) & (xy[:, 1] == core.centre_y))[0]
        assert abs(signed[i]) <= 100.0
    with pytest.raises(ValueError, match="signed_distance_um"):
        place_cores("S1", xy[:, 0], xy[:, 1], 1, 200.0, target="edge")
    with pytest.raises(ValueError, match="`diameter_um` must be a positive number; got -1"):
        place_cores("S1", xy[:, 0], xy[:, 1], 1, -1.0)


def test_cli_biopsy_contract(tmp_path):
    cells = tmp_path / "cells"
    cells.mkdir()
    slides = {}
    for i, name in enumerate(["A", "B"]):
        table = simulate_sample(name, n_cells=3000, seed=i).cells
        table.to_parquet(cells / f"{name}.parquet", index=False)
        slides[name] = table
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as done:
        main(["biopsy", str(cells), "--out", str(out), "--cores", "3", "--core-diameter-um",
               "300", "--core-length-um", "2000", "--seed", "7"])
    assert done.value.code == 0
    geo = json.loads((out / "biopsies.geojson").read_text())
    assert [(f["properties"]["sample"], f["properties"]["core"]) for f in geo["features"]] == [
        (s, k) for s in ("A", "B") for k in (1, 2, 3)]
    for feature in geo["features"]:
        props = feature["properties"]
        piece = pd.read_parquet(out / f"{props['sample']}.core{props['core']}.parquet")
        assert list(piece.columns[:5]) == ["sample", "cell_id", "x", "y", "cell_type"]
        whole = slides[props["sample"]]
        polygon = shapely.geometry.shape(feature["geometry"])
        inside = shapely.covers(polygon, shapely.points(whole[["x", "y"]].to_numpy()))
        assert sorted(piece["cell_id"]) == sorted(whole.loc[inside, "cell_id"])
        assert props["diameter_um"] == 300.0 and props["length_um"] == 2000.0
    # same seed, same cores
    again = tmp_path / "again"
    with pytest.raises(SystemExit):
        main(["biopsy", str(cells), "--out", str(again), "--cores", "3", "--core-diameter-um",
              "300", "--core-length-um", "2000", "--seed", "7"])
    assert (again / "biopsies.geojson").read_text() == (out / "biopsies.geojson").read_text()


def test_agreement_statistics_against_references():
    rng = np.random.default_rng(2)
    x = rng.normal(10, 2, 200)
    assert lin_concordance(x, x) == pytest.approx(1.0)
    assert icc_agreement(x, x) == pytest.approx(1.0)
    y = x + rng.normal(0, 1, 200)
    # Lin's ρc from its definition, with numpy's covariance (denominator n)
    cov = np.cov(x, y, bias=True)
    expected = 2 * cov[0, 1] / (cov[0, 0] + cov[1, 1] + (x.mean() - y.mean()) ** 2)
    assert lin_concordance(x, y) == pytest.approx(expected)
    # ICC(A,1) and ρc estimate the same agreement (Carrasco & Jover 2003): close for large n
    assert icc_agreement(x, y) == pytest.approx(lin_concordance(x, y), abs=0.02)
    # a constant shift lowers absolute agreement but not correlation
    assert icc_agreement(x, x + 2.0) < 0.7 and np.corrcoef(x, x + 2.0)[0, 1] == pytest.approx(1)
    a = rng.choice(["inflamed", "excluded", "desert"], 300)
    b = np.where(rng.random(300) < 0.7, a, rng.choice(["inflamed", "excluded", "desert"], 300))
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_biopsy_features_converge_to_whole_slide():
    slides = [simulate_sample(f"S{i}", n_cells=3000, seed=10 + i, n_lesions=1,
                              with_tls=False, necrosis=False).cells for i in range(6)]
    feature = "density.adjacent.Hepatocyte"
    table = biopsy_agreement(slides, CONFIG, [feature, "phenotype"], [150.0, 600.0, 5000.0],
                             [1], kind="punch", n_replicates=2, seed=0)
    numeric = table[table["feature"] == feature].set_index("diameter_um")
    errors = numeric["mean_abs_error"]
    assert errors[150.0] > errors[600.0] > errors[5000.0]
    # a punch larger than the slide is the whole slide: exact agreement
    assert errors[5000.0] == 0.0 and numeric.loc[5000.0, "concordance"] == pytest.approx(1.0)
    kappa = table[table["feature"] == "phenotype"].set_index("diameter_um")["kappa"]
    assert kappa[5000.0] == pytest.approx(1.0)


def test_biopsy_of_a_real_slide(data_dir):
    """A real mIF field: cores cut exactly, and agreement improves with core size."""
    raw = pd.read_csv(data_dir / "cells" / "phenoptr_akoya_sample.cells.csv.gz")
    cells = raw.rename(columns={"sample_id": "sample"})
    cells["cell_id"] = cells["cell_id"].astype(str)
    config = Config(cell_types=CellTypeRoles(tumor=("CK+",)))
    cores = place_cores("field", cells["x"], cells["y"], 3, 150.0, 600.0, rng=0)
    points = shapely.points(cells[["x", "y"]].to_numpy())
    for core, piece in zip(cores, cut_cores(cells, cores), strict=True):
        assert len(piece) == shapely.covers(core.polygon(), points).sum() > 0
    whole = slide_features(cells, config)
    assert np.isfinite(whole["density.all.CD8+"])
    feature = "density.all.CD8+"
    errors = []
    for diameter in (100.0, 300.0, 3000.0):  # the field is 918 x 686 µm
        table = biopsy_agreement([cells], config, [feature], [diameter], [2], kind="punch",
                                 n_replicates=6, seed=1)
        errors.append(float(table["mean_abs_error"].iloc[0]))
    assert errors[0] > errors[1] > errors[2] == 0.0
