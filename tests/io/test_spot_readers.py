"""Spot readers: 10x Visium / Visium HD folders, AnnData spots and deconvolution tables.

Expected spot and gene counts, positions in µm and proportions are computed here from the raw
files (h5py, csv, json, pandas), independently of the readers.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from metaniche.config import Config, SpotsParams
from metaniche.io import read_samples
from metaniche.io._spots import SPOT_TYPE_PREFIX, spot_type_columns


@pytest.fixture(scope="module")
def st(data_dir: Path) -> Path:
    path = data_dir / "st"
    if not (path / "visium_squidpy_testdata").is_dir():
        pytest.skip(f"spot data not found at {path}; see ../shared/data/st/README.md")
    return path


def _config(**spots: object) -> Config:
    return dataclasses.replace(Config(), spots=SpotsParams(**spots))  # type: ignore[arg-type]


def _one(paths: list[Path], config: Config):
    samples = read_samples(paths, config)
    assert len(samples) == 1, [s.error for s in samples]
    return samples[0]


# --- raw-file truth, independent of the readers ---------------------------------------------

def _h5_truth(h5: Path) -> tuple[list[str], int, np.ndarray]:
    """Barcodes, number of gene features and per-barcode total gene counts from the 10x h5."""
    with h5py.File(h5, "r") as f:
        g = f["matrix"]
        barcodes = [b.decode() for b in g["barcodes"][()]]
        types = [t.decode() for t in g["features"]["feature_type"][()]]
        data, indices, indptr = g["data"][()], g["indices"][()], g["indptr"][()]
    gene = np.array([t == "Gene Expression" for t in types])
    totals = np.array([data[indptr[j]:indptr[j + 1]][gene[indices[indptr[j]:indptr[j + 1]]]]
                       .sum() for j in range(len(barcodes))], dtype=float)
    return barcodes, int(gene.sum()), totals


def _planted_table(barcodes: list[str], path: Path, x_of: dict[str, float]) -> pd.DataFrame:
    """A spot × type proportion table: 'Tumor' 0.9 on the left half, 0.1 on the right."""
    median = float(np.median(list(x_of.values())))
    tumour = np.array([0.9 if x_of[b] < median else 0.1 for b in barcodes])
    table = pd.DataFrame({"barcode": barcodes, "Tumor": tumour, "CD8_T": 0.6 * (1 - tumour),
                          "Stroma": 0.4 * (1 - tumour)})
    table.to_csv(path, index=False)
    return table


# --- Visium ---------------------------------------------------------------------------------

def test_visium_outs_counts_positions_and_proportions(st: Path, tmp_path: Path) -> None:
    folder = st / "visium_squidpy_testdata"
    barcodes, n_genes, totals = _h5_truth(folder / "filtered_feature_bc_matrix.h5")
    scale = json.loads((folder / "spatial" / "scalefactors_json.json").read_text())
    um_per_px = 55.0 / scale["spot_diameter_fullres"]
    with open(folder / "spatial" / "tissue_positions_list.csv", newline="") as handle:
        rows = {r[0]: (float(r[5]) * um_per_px, float(r[4]) * um_per_px)
                for r in csv.reader(handle)}
    table = _planted_table(barcodes, tmp_path / "props.csv", {b: rows[b][0] for b in barcodes})
    sample = _one([folder], _config(proportions=str(tmp_path / "props.csv")))
    assert sample.error is None, sample.error
    cells = sample.cells
    assert len(cells) == len(barcodes) == 100
    assert list(cells["cell_id"]) == barcodes
    genes = [c for c in cells.columns if c not in {"sample", "cell_id", "x", "y", "cell_type",
                                                  "array_row", "array_col"}
             and not c.startswith(SPOT_TYPE_PREFIX)]
    assert len(genes) == n_genes == 100
    np.testing.assert_allclose(cells[genes].sum(axis=1), totals)
    np.testing.assert_allclose(cells["x"], [rows[b][0] for b in barcodes])
    np.testing.assert_allclose(cells["y"], [rows[b][1] for b in barcodes])
    assert spot_type_columns(cells.columns) == [SPOT_TYPE_PREFIX + t
                                                 for t in ("Tumor", "CD8_T", "Stroma")]
    np.testing.assert_allclose(cells[SPOT_TYPE_PREFIX + "Tumor"], table["Tumor"])
    expected = np.where(table["Tumor"] > 0.5, "Tumor", "CD8_T")
    assert list(cells["cell_type"]) == list(expected)
    assert sample.name == "visium_squidpy_testdata"
    assert not any("spacing" in w for w in sample.warnings)


def test_visium_folder_without_proportions_says_what_to_set(st: Path) -> None:
    sample = _one([st / "visium_squidpy_testdata"], Config())
    assert "holds no cell types" in sample.error and "[spots] proportions" in sample.error


def _copy_visium(st: Path, tmp_path: Path) -> Path:
    target = tmp_path / "outs"
    shutil.copytree(st / "visium_squidpy_testdata", target,
                    ignore=shutil.ignore_patterns("*.h5ad", "*.jpg"))
    for child in target.rglob("*"):
        child.chmod(0o644 if child.is_file() else 0o755)
    target.chmod(0o755)
    return target


@pytest.mark.parametrize("damage, words", [
    ("no_scalefactors", ["scalefactors_json.json", "copy the spatial/ folder"]),
    ("bad_json", ["is not valid JSON"]),
    ("no_positions", ["tissue_positions", "copy the spatial/ folder"]),
    ("missing_spot", ["have no position in tissue_positions_list.csv", "same Space Ranger"]),
    ("text_pixel", ["pxl_col_in_fullres", "not a pixel position"]),
])
def test_visium_malformed_folder_one_sentence(st: Path, tmp_path: Path, damage: str,
                                              words: list[str]) -> None:
    folder = _copy_visium(st, tmp_path)
    barcodes, _, _ = _h5_truth(folder / "filtered_feature_bc_matrix.h5")
    positions = folder / "spatial" / "tissue_positions_list.csv"
    pd.DataFrame({"b": barcodes, "T": 1.0}).to_csv(tmp_path / "p.csv", index=False)
    if damage == "no_scalefactors":
        (folder / "spatial" / "scalefactors_json.json").unlink()
    elif damage == "bad_json":
        (folder / "spatial" / "scalefactors_json.json").write_text("{not json")
    elif damage == "no_positions":
        positions.unlink()
    elif damage == "missing_spot":
        lines = positions.read_text().splitlines()
        positions.write_text("\n".join(ln for ln in lines if not ln.startswith(barcodes[3]))
                             + "\n")
    elif damage == "text_pixel":
        lines = positions.read_text().splitlines()
        parts = lines[2].split(",")
        parts[5] = "12,5".replace(",", ";")
        lines[2] = ",".join(parts)
        positions.write_text("\n".join(lines) + "\n")
    sample = _one([folder], _config(proportions=str(tmp_path / "p.csv")))
    assert sample.error is not None and "\n" not in sample.error, sample.error
    assert sample.error.endswith("."), sample.error
    for word in words:
        assert word in sample.error


def _write_10x_h5(path: Path, counts: np.ndarray, barcodes: list[str], genes: list[str]) -> None:
    """A 10x HDF5 matrix (features × barcodes, CSC) written from a dense spots × genes array."""
    import scipy.sparse as sp

    csc = sp.csc_matrix(counts.T)
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["data"], g["indices"], g["indptr"] = csc.data, csc.indices, csc.indptr
        g["shape"] = np.array(csc.shape)
        g["barcodes"] = np.array(barcodes, dtype="S")
        feats = g.create_group("features")
        feats["name"] = np.array(genes, dtype="S")
        feats["id"] = np.array(genes, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * len(genes), dtype="S")


def test_visium_hd_binned_outputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    outs = tmp_path / "hd_outs"
    rows, cols = np.meshgrid(np.arange(12), np.arange(10), indexing="ij")
    n = rows.size
    barcodes = [f"s_008um_{r:05d}_{c:05d}-1" for r, c in zip(rows.ravel(), cols.ravel(),
                                                             strict=True)]
    for bin_um in (8, 16):
        square = outs / "binned_outputs" / f"square_{bin_um:03d}um"
        (square / "spatial").mkdir(parents=True)
        counts = rng.poisson(2.0, size=(n, 5))
        _write_10x_h5(square / "filtered_feature_bc_matrix.h5", counts, barcodes,
                      [f"G{i}" for i in range(5)])
        px = 8.0 / 0.2737  # 8 µm bins at 0.2737 µm/px
        pd.DataFrame({"barcode": barcodes, "in_tissue": 1, "array_row": rows.ravel(),
                      "array_col": cols.ravel(),
                      "pxl_row_in_fullres": rows.ravel() * px + 100.0,
                      "pxl_col_in_fullres": cols.ravel() * px + 50.0}).to_parquet(
            square / "spatial" / "tissue_positions.parquet")
        (square / "spatial" / "scalefactors_json.json").write_text(json.dumps(
            {"spot_diameter_fullres": px, "bin_size_um": 8.0, "microns_per_pixel": 0.2737}))
    pd.DataFrame({"barcode": barcodes, "A": 0.25, "B": 0.75}).to_csv(tmp_path / "p.csv",
                                                                    index=False)
    config = _config(proportions=str(tmp_path / "p.csv"), diameter_um=8.0, square=True)
    sample = _one([outs], config)
    assert sample.error is None, sample.error
    assert len(sample.cells) == 120
    spacing = cKDTree(sample.cells[["x", "y"]].to_numpy()).query(
        sample.cells[["x", "y"]].to_numpy(), k=2)[0][:, 1]
    np.testing.assert_allclose(spacing, 8.0, rtol=1e-9)
    assert sample.cells["x"].min() == pytest.approx(50.0 * 0.2737)
    assert set(sample.cells["cell_type"]) == {"B"}
    wrong = _one([outs], dataclasses.replace(config, spots=dataclasses.replace(
        config.spots, hd_bin_um=2)))
    assert "square_002um" in wrong.error and "hd_bin_um" in wrong.error
    assert "square_008um, square_016um" in wrong.error


# --- AnnData spots: legacy ST with stereoscope proportions ----------------------------------

def test_her2_obsm_and_tsv_give_the_same_spots(st: Path) -> None:
    path = st / "her2st_H1" / "her2st_H1.h5ad"
    tsv = st / "her2st_H1" / "H1_stereoscope_major_proportions.tsv"
    truth = pd.read_csv(tsv, sep="\t", index_col=0)
    by_obsm = _one([path], _config(proportions="stereoscope_major", pitch_um=200.0,
                                   diameter_um=100.0))
    by_table = _one([path], _config(proportions=str(tsv), pitch_um=200.0, diameter_um=100.0))
    for sample in (by_obsm, by_table):
        assert sample.error is None, sample.error
        cells = sample.cells
        assert len(cells) == 613 and len(truth) == 613
        # 5 contract columns + 6 obs columns + 15,029 genes + 8 deconvolved types
        assert cells.shape[1] == 5 + 6 + 15_029 + len(truth.columns) == 15_048
        values = truth.loc[cells["cell_id"]].to_numpy()
        values = values / values.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(cells[spot_type_columns(cells.columns)], values, atol=1e-12)
        assert list(cells["cell_type"]) == list(truth.columns[np.argmax(values, axis=1)])
        xy = cells[["x", "y"]].to_numpy()
        nn = cKDTree(xy).query(xy, k=2)[0][:, 1]
        assert np.median(nn) == pytest.approx(200.0)
    pd.testing.assert_frame_equal(by_obsm.cells, by_table.cells)


def test_card_pdac_spots_read_with_a_region_one_hot(st: Path, tmp_path: Path) -> None:
    path = st / "card_pdac" / "card_pdac_st.h5ad"
    meta = pd.read_csv(st / "card_pdac" / "spots_metadata.csv", index_col=0)
    with h5py.File(path, "r") as f:
        n_genes = len(f["var"][f["var"].attrs["_index"]])
    region = meta["Region"].fillna("NA")
    onehot = pd.get_dummies(region).astype(float)
    onehot.insert(0, "spot_id", meta.index)
    onehot.to_csv(tmp_path / "onehot.csv", index=False)
    sample = _one([path], _config(proportions=str(tmp_path / "onehot.csv"), pitch_um=200.0,
                                  diameter_um=100.0))
    assert sample.error is None, sample.error
    assert len(sample.cells) == 428 and n_genes == 25_753
    assert (sample.cells["cell_type"].value_counts().to_dict()
            == region.value_counts().to_dict())


# --- malformed deconvolution tables ---------------------------------------------------------

@pytest.fixture()
def spots_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "spots.csv"
    pd.DataFrame({"cell_id": [f"s{i}" for i in range(30)], "x": rng.uniform(0, 500, 30),
                  "y": rng.uniform(0, 500, 30), "cell_type": "x"}).to_csv(path, index=False)
    return path


def _props(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "props.tsv"
    frame.to_csv(path, sep="\t", index=False)
    return path


def _good(n: int = 30) -> pd.DataFrame:
    return pd.DataFrame({"spot_id": [f"s{i}" for i in range(n)], "Tumor": 0.5, "T": 0.5})


@pytest.mark.parametrize("edit, kind, words", [
    (lambda f: f.assign(T=0.7), "proportion", ["sums to 1.2", "kind = \"abundance\""]),
    (lambda f: f.assign(T=-0.1, Tumor=1.1), "proportion", ["cannot be negative", "'T'"]),
    (lambda f: f.astype({"T": object}).assign(T=["x"] + [0.5] * 29), "proportion",
     ["column 'T' holds 'x' for spot 's0'"]),
    (lambda f: f.iloc[1:], "proportion", ["1 of the 30 spots", "e.g. 's0'"]),
    (lambda f: pd.concat([f, f.iloc[:1]]), "proportion", ["lists spot 's0' more than once"]),
    (lambda f: f.assign(T=0.0, Tumor=0.0), "abundance", ["has no type (its row is all zero)"]),
    (lambda f: f[["spot_id"]], "proportion", ["has 1 column"]),
])
def test_malformed_proportions_one_sentence(spots_csv: Path, tmp_path: Path, edit, kind: str,
                                            words: list[str]) -> None:
    table = _props(tmp_path, edit(_good()))
    sample = _one([spots_csv], _config(proportions=str(table), kind=kind))
    assert sample.error is not None
    assert str(table) in sample.error
    for word in words:
        assert word in sample.error, sample.error


def test_small_sum_errors_are_rescaled_with_a_warning(spots_csv: Path, tmp_path: Path) -> None:
    table = _props(tmp_path, _good().assign(T=0.504))
    sample = _one([spots_csv], _config(proportions=str(table)))
    assert sample.error is None
    np.testing.assert_allclose(sample.cells[SPOT_TYPE_PREFIX + "T"], 0.504 / 1.004)
    assert any("rescaled to sum to 1" in w for w in sample.warnings)


def test_abundances_are_kept_as_given(spots_csv: Path, tmp_path: Path) -> None:
    table = _props(tmp_path, _good().assign(T=3.0, Tumor=np.arange(30.0)))
    sample = _one([spots_csv], _config(proportions=str(table), kind="abundance"))
    assert sample.error is None
    np.testing.assert_array_equal(sample.cells[SPOT_TYPE_PREFIX + "Tumor"], np.arange(30.0))
    # Tumor 0, 1, 2 < T 3; a tie at 3 goes to the first type of the table (Tumor)
    assert list(sample.cells["cell_type"][:5]) == ["T", "T", "T", "Tumor", "Tumor"]


def test_missing_table_and_obsm_problems(spots_csv: Path, st: Path, tmp_path: Path) -> None:
    missing = _one([spots_csv], _config(proportions=str(tmp_path / "nope.csv")))
    assert "file not found" in missing.error
    not_h5ad = _one([spots_csv], _config(proportions="stereoscope_major"))
    assert "not an .h5ad file" in not_h5ad.error
    no_key = _one([st / "her2st_H1" / "her2st_H1.h5ad"], _config(proportions="rctd"))
    assert "has no obsm['rctd']" in no_key.error and "stereoscope_major" in no_key.error


# --- the [spots] section --------------------------------------------------------------------

@pytest.mark.parametrize("toml, message", [
    ('kind = "fraction"', "`[spots] kind` must be one of proportion, abundance; got 'fraction'."),
    ("diameter_um = 0", "`[spots] diameter_um` must be a positive number; got 0."),
    ("pitch_um = -200", "`[spots] pitch_um` must be"),
    ('tumor_regions = ["Cancer"]', "`[spots] region` must be the per-spot region column"),
    ('kind = "abundance"\ncells_per_spot = 8', "`[spots] cells_per_spot` must be 0 when kind"),
    ("n_permutations = -1", "`[spots] n_permutations` must be"),
    ("spot_size = 55", "unknown key 'spots.spot_size'"),
])
def test_spots_section_is_validated(tmp_path: Path, toml: str, message: str) -> None:
    from metaniche.config import load_config
    from metaniche.errors import ConfigError

    path = tmp_path / "c.toml"
    path.write_text("[spots]\n" + toml + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)


def test_missing_region_column_fails_the_sample_with_one_sentence(spots_csv: Path,
                                                                  tmp_path: Path) -> None:
    from metaniche.errors import InputError
    from metaniche.sample import analyse_sample

    table = _props(tmp_path, _good())
    config = _config(proportions=str(table), region="pathology", tumor_regions=("tumour",))
    sample = _one([spots_csv], config)
    with pytest.raises(InputError, match=r"\[spots\] region = 'pathology' is not a column"):
        analyse_sample(sample.cells, config, name=sample.name)
