"""Readers of tool exports: every fixture maps to the one contract, checked against the raw file."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest

from metaniche.config import Config
from metaniche.io import read_samples
from metaniche.io.cells import STANDARD_COLUMNS

TINY = Config(min_cells=1)


def fixture(data_dir: Path, name: str) -> Path:
    path = data_dir / "formats" / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def only(samples):
    assert len(samples) == 1, [s.error for s in samples]
    return samples[0]


def check_contract(sample) -> None:
    assert sample.ok, sample.error
    assert list(sample.cells.columns[:5]) == list(STANDARD_COLUMNS)
    assert sample.cells["x"].dtype == np.float64 and sample.cells["y"].dtype == np.float64
    assert sample.cells["cell_type"].map(type).eq(str).all()


def test_inform_phenoptr_export(data_dir: Path) -> None:
    path = fixture(data_dir, "inform_phenoptr_cell_seg_data.csv.gz")
    raw = pd.read_csv(path)
    s = only(read_samples([path], Config()))
    check_contract(s)
    assert len(s.cells) == len(raw) == 6072
    assert s.name == raw["Sample Name"].iloc[0]
    np.testing.assert_allclose(s.cells["x"], raw["Cell X Position"])
    np.testing.assert_allclose(s.cells["y"], raw["Cell Y Position"])
    assert (s.cells["cell_type"].to_numpy() == raw["Phenotype"].to_numpy()).all()
    assert (s.cells["cell_id"].to_numpy() == raw["Cell ID"].astype(str).to_numpy()).all()
    assert (s.cells["tissue_category"] == raw["Tissue Category"]).all()
    assert "Entire Cell CD8 (Opal 540) Mean" in s.cells.columns  # markers kept
    assert s.warnings == []  # µm export: no pixel warning


def test_inform_tab_separated_pixels_warns(data_dir: Path) -> None:
    path = fixture(data_dir, "tiny_inform.txt.gz")
    raw = pd.read_csv(path, sep="\t")
    s = only(read_samples([path], TINY))
    check_contract(s)
    assert len(s.cells) == 9
    np.testing.assert_allclose(s.cells["x"], raw["Cell X Position"])
    assert list(s.cells["cell_type"]) == list(raw["Phenotype"])
    assert any("pixels" in w and "um_per_unit" in w for w in s.warnings)


def test_halo_centroids_and_positivity_labels(data_dir: Path) -> None:
    path = fixture(data_dir, "tiny_halo.csv.gz")
    raw = pd.read_csv(path)
    s = only(read_samples([path], TINY))
    check_contract(s)
    assert len(s.cells) == len(raw) == 10
    np.testing.assert_allclose(s.cells["x"], (raw["XMin"] + raw["XMax"]) / 2)
    np.testing.assert_allclose(s.cells["y"], (raw["YMin"] + raw["YMax"]) / 2)
    dyes = dict(re.findall(r"(Dye \d+):([^;]+)", raw["Analysis Inputs"].iloc[0]))
    expected = []
    for _, row in raw.iterrows():
        names = [f"{dyes[d]}+" for d in sorted(dyes, key=lambda d: int(d.split()[1]))
                 if dyes[d] != "DAPI" and row[f"{d} Positive"] == 1]
        expected.append(" ".join(names) or "negative")
    assert list(s.cells["cell_type"]) == expected
    assert list(s.cells["cell_id"]) == raw["Object Id"].astype(str).tolist()


def test_codex_with_phenotype_map(data_dir: Path) -> None:
    path = fixture(data_dir, "tiny_codex.csv.gz")
    fixture(data_dir, "tiny_codex_phenotypes.txt.gz")
    raw = pd.read_csv(path)
    mapping = pd.read_csv(data_dir / "formats" / "tiny_codex_phenotypes.txt.gz", sep="\t",
                          header=None, dtype=str).set_index(0)[1]
    samples = read_samples([path], TINY)
    assert len(samples) == raw["sample_Xtile_Ytile"].nunique()
    cells = pd.concat([s.cells for s in samples], ignore_index=True)
    for s in samples:
        check_contract(s)
    order = pd.concat([raw[raw["sample_Xtile_Ytile"] == s.name] for s in samples])
    np.testing.assert_allclose(cells["x"], order["X.X"])
    np.testing.assert_allclose(cells["y"], order["Y.Y"])
    expected = order["Imaging.phenotype.cluster.ID"].astype(str).map(mapping)
    assert list(cells["cell_type"]) == list(expected)


def test_directory_skips_codex_phenotype_map(data_dir: Path) -> None:
    fixture(data_dir, "tiny_codex_phenotypes.txt.gz")
    samples = read_samples([data_dir / "formats"], TINY)
    assert not any("phenotypes" in str(s.source) for s in samples)


GATE_CP = {"rules": {"M1_pos": ["Marker1_rs+"]}}


def test_cellprofiler_needs_panel_and_maps_columns(data_dir: Path) -> None:
    path = fixture(data_dir, "tiny_cellprofiler.txt.gz")
    raw = pd.read_csv(path)
    error = only(read_samples([path], TINY)).error
    assert "CellProfiler object export has no cell phenotypes" in error and "[gating]" in error
    s = only(read_samples([path], Config(min_cells=1, gating=GATE_CP)))
    check_contract(s)
    np.testing.assert_allclose(s.cells["x"], raw["Location_Center_X"])
    np.testing.assert_allclose(s.cells["y"], raw["Location_Center_Y"])
    assert list(s.cells["cell_id"]) == raw["ObjectNumber"].astype(str).tolist()
    np.testing.assert_allclose(s.cells["Marker1_rs"],
                                  raw["Intensity_MeanIntensity_Marker1_rs"])
    assert set(s.cells["cell_type"]) <= {"M1_pos", "Other"}


def test_mcmicro_with_gating(data_dir: Path) -> None:
    path = fixture(data_dir, "mcmicro_exemplar-001_unmicst_cell.csv.gz")
    raw = pd.read_csv(path)
    panel = {"rules": {"Immune": ["CD45+"], "Epithelial": ["ECAD+", "CD45-"]}}
    s = only(read_samples([path], Config(gating=panel)))
    check_contract(s)
    assert len(s.cells) == len(raw) == 11201
    np.testing.assert_allclose(s.cells["x"], raw["X_centroid"])
    np.testing.assert_allclose(s.cells["y"], raw["Y_centroid"])
    assert list(s.cells["cell_id"][:3]) == ["1", "2", "3"]
    assert set(s.cells["cell_type"]) == {"Immune", "Epithelial", "Other"}
    assert s.cells["gate.Immune"].dtype == bool


def test_scimap_h5ad_variants(data_dir: Path) -> None:
    path = fixture(data_dir, "scimap_example_data.h5ad")
    adata = anndata.read_h5ad(path)
    s = only(read_samples([path], Config()))
    check_contract(s)
    assert s.name == "230" and len(s.cells) == adata.n_obs == 3029
    np.testing.assert_allclose(s.cells["x"], adata.obs["X_position"])
    assert list(s.cells["cell_type"]) == list(adata.obs["phenotype"].astype(str))
    np.testing.assert_allclose(s.cells["CD45"], np.asarray(adata[:, "CD45"].X).ravel())


def test_scimap_centroid_names_and_squidpy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, size=(40, 2))
    obs = pd.DataFrame({"X_centroid": xy[:, 0], "Y_centroid": xy[:, 1],
                        "imageid": ["a"] * 20 + ["b"] * 20,
                        "phenotype": ["T"] * 10 + ["Tumor"] * 30},
                       index=[f"c{i}" for i in range(40)])
    anndata.AnnData(X=rng.random((40, 2)), obs=obs).write_h5ad(tmp_path / "scimap.h5ad")
    a, b = read_samples([tmp_path / "scimap.h5ad"], Config())
    assert (a.name, b.name) == ("a", "b")
    np.testing.assert_allclose(a.cells["x"], xy[:20, 0])
    squid = anndata.AnnData(X=rng.random((40, 2)), obs=pd.DataFrame(
        {"cell type": ["B"] * 40, "library_id": ["lib1"] * 40},
        index=[f"c{i}" for i in range(40)]))
    squid.obsm["spatial"] = xy
    squid.write_h5ad(tmp_path / "squidpy.h5ad")
    s = only(read_samples([tmp_path / "squidpy.h5ad"], Config()))
    check_contract(s)
    assert s.name == "lib1" and set(s.cells["cell_type"]) == {"B"}
    np.testing.assert_allclose(s.cells["y"], xy[:, 1])


def test_named_format_and_explicit_columns_win(data_dir: Path) -> None:
    path = fixture(data_dir, "tiny_inform.txt.gz")
    s = only(read_samples([path], TINY, format="inform"))
    assert s.ok
    error = only(read_samples([path], TINY, format="table")).error
    assert "no column 'x'" in error
    error = only(read_samples([path], TINY, format="halo")).error
    assert "read as a HALO object-data export" in error and "'XMin'" in error


# SpatialData stores: tests/io/test_spatialdata.py


# --- malformed exports: one sentence naming the expected format and what is missing ----

TEXT_FIXTURES = [
    ("tiny_inform.txt.gz", "\t", "inForm cell_seg_data export", "Cell Y Position"),
    ("tiny_halo.csv.gz", ",", "HALO object-data export", "YMax"),
    ("tiny_codex.csv.gz", ",", "CODEX cell table", "Y.Y"),
    ("tiny_cellprofiler.txt.gz", ",", "CellProfiler object export", "Location_Center_Y"),
    ("mcmicro_exemplar-001_unmicst_cell.csv.gz", ",", "MCMICRO quantification table",
     "Y_centroid"),
]


def one_sentence(message: str | None) -> str:
    assert message is not None and "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize(("name", "sep", "label", "centroid"), TEXT_FIXTURES)
def test_missing_centroid_column(data_dir: Path, tmp_path: Path, name: str, sep: str,
                                 label: str, centroid: str) -> None:
    raw = pd.read_csv(fixture(data_dir, name), sep=sep)
    out = tmp_path / name
    raw.drop(columns=[centroid]).to_csv(out, sep=sep, index=False)
    error = one_sentence(only(read_samples([out], TINY)).error)
    assert label in error and f"'{centroid}'" in error, error


@pytest.mark.parametrize(("name", "sep", "label", "centroid"), TEXT_FIXTURES)
def test_wrong_delimiter(data_dir: Path, tmp_path: Path, name: str, sep: str, label: str,
                         centroid: str) -> None:
    raw = pd.read_csv(fixture(data_dir, name), sep=sep)
    out = tmp_path / name
    raw.to_csv(out, sep="|", index=False)  # a delimiter the reader does not try
    error = one_sentence(only(read_samples([out], TINY)).error)
    assert label in error and "delimiter" in error, error


@pytest.mark.parametrize(("name", "sep", "label", "centroid"), TEXT_FIXTURES)
def test_truncated_file(data_dir: Path, tmp_path: Path, name: str, sep: str, label: str,
                        centroid: str) -> None:
    data = fixture(data_dir, name).read_bytes()
    out = tmp_path / name
    with gzip.open(fixture(data_dir, name), "rb") as handle:
        header = handle.readline()
    # keep the header (so the format is recognised) and cut the compressed stream
    out.write_bytes(gzip.compress(header + gzip.decompress(data)[len(header):])[:-40])
    error = one_sentence(only(read_samples([out], TINY)).error)
    assert label in error and "cannot be read" in error, error
