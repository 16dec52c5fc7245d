"""Imaging-ST readers (Xenium, CosMx, MERSCOPE) and the ``[input] cell_types`` join.

Expected cell and gene counts, positions and per-gene totals are computed here from the raw
vendor files with pandas, h5py and scipy, independently of the readers.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io

from metaniche.config import Config, InputParams, load_config
from metaniche.errors import ConfigError
from metaniche.io import read_samples
from metaniche.io._imaging import COSMX_UM_PER_PX
from metaniche.io.cell_types import UNLABELED

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def st(data_dir: Path) -> Path:
    path = data_dir / "st"
    if not (path / "speio_tiny").is_dir():
        pytest.skip(f"imaging-ST data not found at {path}; see ../shared/data/st/README.md")
    return path


def _config(cell_types: Path | str = "", **top: object) -> Config:
    config = load_config(None, min_cells=1, **top)
    return dataclasses.replace(config, input=InputParams(cell_types=str(cell_types)))


def _labels(tmp_path: Path, ids: list[str]) -> Path:
    """A cell-type table for ``ids``: alternating labels A/B."""
    path = tmp_path / "types.csv"
    pd.DataFrame({"cell_id": ids, "cell_type": ["A", "B"] * (len(ids) // 2) + ["A"] * (
        len(ids) % 2)}).to_csv(path, index=False)
    return path


def _one(samples) -> pd.DataFrame:
    assert len(samples) == 1, [s.error for s in samples]
    sample = samples[0]
    assert sample.ok, sample.error
    return sample.cells


# --- Xenium -------------------------------------------------------------------------------

def _h5_truth(h5: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Barcodes, gene names and the cells × genes dense matrix, by hand from the datasets."""
    with h5py.File(h5) as f:
        m = f["matrix"]
        data = m["data"][()]
        indices = m["indices"][()].astype(int)
        indptr = m["indptr"][()].astype(int)
        n_feat, n_cell = (int(v) for v in m["shape"][()])
        barcodes = [b.decode() for b in m["barcodes"][()]]
        names = [b.decode() for b in m["features/name"][()]]
        types = [b.decode() for b in m["features/feature_type"][()]]
    dense = np.zeros((n_cell, n_feat))
    for cell in range(n_cell):
        for k in range(indptr[cell], indptr[cell + 1]):
            dense[cell, indices[k]] += data[k]
    keep = [i for i, t in enumerate(types) if t == "Gene Expression"]
    return barcodes, [names[i] for i in keep], dense[:, keep]


@pytest.mark.parametrize("folder", ["speio_tiny/Xenium_small", "xenium_breast_jazzpanda_rep1"])
def test_xenium_h5_counts_positions_and_genes(st: Path, tmp_path: Path, folder: str) -> None:
    path = st / folder
    cells_raw = pd.read_csv(path / "cells.csv.gz", dtype={"cell_id": str})
    barcodes, genes, dense = _h5_truth(path / "cell_feature_matrix.h5")
    config = _config(_labels(tmp_path, list(cells_raw["cell_id"])))
    for fmt in ("auto", "xenium"):
        cells = _one(read_samples([path], config, format=fmt))
        assert len(cells) == len(cells_raw) == len(barcodes)
        assert cells["sample"].unique().tolist() == [path.name]
        assert cells["cell_id"].tolist() == cells_raw["cell_id"].tolist()
        np.testing.assert_allclose(cells["x"], cells_raw["x_centroid"])
        np.testing.assert_allclose(cells["y"], cells_raw["y_centroid"])
        assert [g for g in genes if g in cells.columns] == genes
        order = pd.Index(barcodes).get_indexer(cells_raw["cell_id"])
        np.testing.assert_array_equal(cells[genes].to_numpy(), dense[order])


def test_xenium_mex_equals_h5(st: Path, tmp_path: Path) -> None:
    src = st / "xenium_breast_jazzpanda_rep1"
    mex = tmp_path / "rep1_mex"
    mex.mkdir()
    shutil.copy(src / "cells.csv.gz", mex)
    shutil.copytree(src / "cell_feature_matrix", mex / "cell_feature_matrix")
    matrix = scipy.io.mmread(src / "cell_feature_matrix" / "matrix.mtx.gz").toarray().T
    genes = pd.read_csv(src / "cell_feature_matrix" / "features.tsv.gz", sep="\t",
                        header=None)[1].tolist()
    barcodes = pd.read_csv(src / "cell_feature_matrix" / "barcodes.tsv.gz", header=None,
                           dtype=str)[0]
    cells_raw = pd.read_csv(src / "cells.csv.gz", dtype={"cell_id": str})
    config = _config(_labels(tmp_path, list(cells_raw["cell_id"])))
    cells = _one(read_samples([mex], config))
    assert cells.shape[0] == matrix.shape[0] == 1713 and len(genes) == 20
    order = pd.Index(barcodes).get_indexer(cells["cell_id"])
    np.testing.assert_array_equal(cells[genes].to_numpy(), matrix[order])
    via_h5 = _one(read_samples([src], config))
    pd.testing.assert_frame_equal(cells[["cell_id", "x", "y", *genes]],
                                  via_h5[["cell_id", "x", "y", *genes]])


def test_xenium_cells_parquet_with_byte_ids(st: Path, tmp_path: Path) -> None:
    src = st / "speio_tiny" / "Xenium_small"
    folder = tmp_path / "xen"
    folder.mkdir()
    shutil.copy(src / "cell_feature_matrix.h5", folder)
    cells_raw = pd.read_csv(src / "cells.csv.gz", dtype={"cell_id": str}).iloc[:, 1:]
    as_bytes = cells_raw.assign(cell_id=cells_raw["cell_id"].str.encode("ascii"))
    as_bytes.to_parquet(folder / "cells.parquet")
    config = _config(_labels(tmp_path, list(cells_raw["cell_id"])))
    cells = _one(read_samples([folder], config))
    assert cells["cell_id"].tolist() == cells_raw["cell_id"].tolist()
    np.testing.assert_allclose(cells["x"], cells_raw["x_centroid"])


def test_merscope_with_an_unnamed_id_column(st: Path, tmp_path: Path) -> None:
    src = st / "speio_tiny" / "MERSCOPE_small"
    folder = tmp_path / "region_0"
    folder.mkdir()
    shutil.copy(src / "ovarian_p2s2_cell_by_gene.csv", folder / "cell_by_gene.csv")
    text = (src / "ovarian_p2s2_cell_metadata.csv").read_text()
    (folder / "cell_metadata.csv").write_text(text.replace('"X",', ",", 1))
    ids = pd.read_csv(src / "ovarian_p2s2_cell_metadata.csv", dtype={"X": str})["X"]
    cells = _one(read_samples([folder], _config(_labels(tmp_path, list(ids)))))
    assert cells["cell_id"].tolist() == ids.tolist() and cells["sample"].iat[0] == "region_0"


def test_xenium_controls_are_dropped_and_counted(st: Path, tmp_path: Path) -> None:
    src = st / "speio_tiny" / "Xenium_small"
    folder = tmp_path / "xen"
    folder.mkdir()
    shutil.copy(src / "cells.csv.gz", folder)
    shutil.copy(src / "cell_feature_matrix.h5", folder)
    with h5py.File(folder / "cell_feature_matrix.h5", "r+") as f:
        types = f["matrix/features/feature_type"]
        values = types[()].astype("S25")
        values[0] = b"Negative Control Probe"
        del f["matrix/features/feature_type"]
        f["matrix/features/feature_type"] = values
        first = f["matrix/features/name"][0].decode()
    ids = pd.read_csv(src / "cells.csv.gz", dtype={"cell_id": str})["cell_id"].tolist()
    samples = read_samples([folder], _config(_labels(tmp_path, ids)))
    cells = _one(samples)
    assert first not in cells.columns
    assert any("1 control features were dropped (1 Negative Control Probe)" in w
               for w in samples[0].warnings), samples[0].warnings


# --- CosMx and MERSCOPE -------------------------------------------------------------------

@pytest.mark.parametrize(("folder", "stem", "n_cells", "n_genes"), [
    ("speio_tiny/CosMx_small", "lung_p9s1", 9, 8),
    ("cosmx_lung12_giotto", "Lung12", 120, 960),
])
def test_cosmx_counts_positions_and_default_pixel_size(st: Path, tmp_path: Path, folder: str,
                                                       stem: str, n_cells: int,
                                                       n_genes: int) -> None:
    path = st / folder
    meta = pd.read_csv(path / f"{stem}_metadata_file.csv")
    expr = pd.read_csv(path / f"{stem}_exprMat_file.csv")
    expr = expr[expr["cell_ID"] != 0]
    genes = [c for c in expr.columns[2:] if not c.startswith("NegPrb")]
    assert (len(meta), len(genes)) == (n_cells, n_genes)  # the README's numbers
    ids = (meta["fov"].astype(str) + "_" + meta["cell_ID"].astype(str)).tolist()
    types = _labels(tmp_path, ids)
    samples = read_samples([path], _config(types))
    cells = _one(samples)
    assert cells["cell_id"].tolist() == ids
    np.testing.assert_allclose(cells["x"], meta["CenterX_global_px"] * COSMX_UM_PER_PX)
    np.testing.assert_allclose(cells["y"], meta["CenterY_global_px"] * COSMX_UM_PER_PX)
    assert not [c for c in cells.columns if str(c).startswith("NegPrb")]
    expected = expr.set_index(expr["fov"].astype(str) + "_" + expr["cell_ID"].astype(str))
    np.testing.assert_array_equal(cells[genes].to_numpy(), expected.loc[ids, genes].to_numpy())
    assert sum("µm/px" in w and "um_per_unit" in w for w in samples[0].warnings) == 1
    # an explicit pixel size replaces the default, without the warning
    scaled = read_samples([path], _config(types, um_per_unit=0.12028), format="cosmx")
    np.testing.assert_allclose(_one(scaled)["x"], meta["CenterX_global_px"] * 0.12028)
    assert not any("µm/px" in w for w in scaled[0].warnings)


def test_cosmx_atomx_cell_id_column_is_kept_aside(st: Path, tmp_path: Path) -> None:
    src = st / "speio_tiny" / "CosMx_small"
    folder = tmp_path / "atomx"
    folder.mkdir()
    shutil.copy(src / "lung_p9s1_exprMat_file.csv", folder)
    meta = pd.read_csv(src / "lung_p9s1_metadata_file.csv")
    meta["cell_id"] = "c_1_" + meta["fov"].astype(str) + "_" + meta["cell_ID"].astype(str)
    meta.to_csv(folder / "lung_p9s1_metadata_file.csv", index=False)
    ids = (meta["fov"].astype(str) + "_" + meta["cell_ID"].astype(str)).tolist()
    samples = read_samples([folder], _config(_labels(tmp_path, ids)))
    cells = _one(samples)
    assert cells["cell_id"].tolist() == ids
    assert cells["cosmx_cell_id"].tolist() == meta["cell_id"].tolist()
    assert not any("dropped because" in w for w in samples[0].warnings)


def test_cosmx_negative_probes_are_counted(st: Path, tmp_path: Path) -> None:
    path = st / "cosmx_lung12_giotto"
    header = pd.read_csv(path / "Lung12_exprMat_file.csv", nrows=0).columns
    n_neg = sum(c.startswith("NegPrb") for c in header)
    meta = pd.read_csv(path / "Lung12_metadata_file.csv")
    ids = (meta["fov"].astype(str) + "_" + meta["cell_ID"].astype(str)).tolist()
    samples = read_samples([path], _config(_labels(tmp_path, ids)))
    assert n_neg == 20
    assert any(f"{n_neg} negative-control columns" in w for w in samples[0].warnings)


def test_merscope_counts_and_positions(st: Path, tmp_path: Path) -> None:
    path = st / "speio_tiny" / "MERSCOPE_small"
    meta = pd.read_csv(path / "ovarian_p2s2_cell_metadata.csv", dtype={"X": str})
    expr = pd.read_csv(path / "ovarian_p2s2_cell_by_gene.csv", dtype={"cell": str})
    genes = list(expr.columns[1:])
    cells = _one(read_samples([path], _config(_labels(tmp_path, list(meta["X"])))))
    assert (len(cells), len(genes)) == (8, 9)
    assert cells["cell_id"].tolist() == meta["X"].tolist()
    np.testing.assert_allclose(cells["x"], meta["center_x"])
    np.testing.assert_allclose(cells["y"], meta["center_y"])
    np.testing.assert_array_equal(cells[genes].to_numpy(),
                                  expr.set_index("cell").loc[meta["X"], genes].to_numpy())


def test_a_folder_of_vendor_folders_gives_one_sample_each(st: Path, tmp_path: Path) -> None:
    table = tmp_path / "all.csv"
    ids = [*pd.read_csv(st / "speio_tiny/Xenium_small/cells.csv.gz", dtype=str)["cell_id"],
           *("10_" + pd.read_csv(st / "speio_tiny/CosMx_small/lung_p9s1_metadata_file.csv",
                                 dtype=str)["cell_ID"])]
    pd.DataFrame({"cell_id": ids, "cell_type": "A"}).to_csv(table, index=False)
    samples = read_samples([st / "speio_tiny"], _config(table))
    by_name = {s.name: s for s in samples}
    assert set(by_name) == {"CosMx_small", "MERSCOPE_small", "Xenium_small"}
    assert by_name["Xenium_small"].ok and by_name["CosMx_small"].ok
    merscope = by_name["MERSCOPE_small"]  # its ids are not in the table
    assert not merscope.ok and "none of its 8 cell ids" in merscope.error


# --- cell types ---------------------------------------------------------------------------

def test_xenium_supervised_cell_types_join(st: Path, tmp_path: Path) -> None:
    path = st / "xenium_breast_jazzpanda_rep1"
    table = path / "cell_types_supervised_merged.csv"
    truth = pd.read_csv(table, dtype={"Barcode": str}).set_index("Barcode")["Cluster"]
    samples = read_samples([path], _config(table))
    cells = _one(samples)
    assert cells["cell_type"].tolist() == truth.loc[cells["cell_id"]].tolist()
    assert cells["cell_type"].value_counts().to_dict() == truth.value_counts().to_dict()
    assert (cells["cell_type"] == "Tumor").sum() == 745
    assert not any("no label" in w for w in samples[0].warnings)

    part = tmp_path / "part.csv"
    truth.iloc[:100].rename_axis("cell_id").rename("cell_type").to_csv(part)
    samples = read_samples([path], _config(part))
    cells = _one(samples)
    n_missing = len(cells) - 100
    assert (cells["cell_type"] == UNLABELED).sum() == n_missing + (
        truth.iloc[:100] == UNLABELED).sum()
    notes = [w for w in samples[0].warnings if "no label" in w]
    assert len(notes) == 1 and f"{n_missing:,} of 1,713 cells" in notes[0]


def test_cell_types_join_any_format(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    pd.DataFrame({"cell_id": [f"c{i}" for i in range(30)], "x": np.arange(30.0) * 10,
                  "y": np.zeros(30), "cell_type": "old"}).to_csv(table, index=False)
    labels = tmp_path / "labels.tsv"
    pd.DataFrame({"id": [f"c{i}" for i in range(0, 30, 2)], "label": "new"}).to_csv(
        labels, sep="\t", index=False)
    samples = read_samples([table], _config(labels))
    cells = _one(samples)
    assert cells["cell_type"].tolist() == ["new", UNLABELED] * 15


def test_cell_types_keyed_by_sample_and_cell_id(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    pd.DataFrame({"sample": ["S1"] * 25 + ["S2"] * 25, "cell_id": [*range(25), *range(25)],
                  "x": np.arange(50.0) * 10, "y": np.zeros(50), "cell_type": "old"}).to_csv(
        table, index=False)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"cell_id": [3, 3, 4], "sample": ["S1", "S2", "S2"],
                  "cell_type": ["a", "b", "c"]}).to_csv(labels, index=False)
    samples = {s.name: s for s in read_samples([table], _config(labels))}
    s1, s2 = (samples[n].cells.set_index("cell_id")["cell_type"] for n in ("S1", "S2"))
    assert (s1["3"], s2["3"], s2["4"]) == ("a", "b", "c")
    assert (s1 == UNLABELED).sum() == 24 and (s2 == UNLABELED).sum() == 23
    assert any("47 of 50 cells have no label" in w for w in samples["S1"].warnings)


@pytest.mark.parametrize(("content", "needle"), [
    (None, "[input] cell_types file not found; check the path"),
    ("cell_id,cell_type\n1,A\n1,B\n", "lists cell ids more than once ('1')"),
    ("cell_id\n1\n", "it needs a cell id and a label column"),
])
def test_bad_cell_type_tables(st: Path, tmp_path: Path, content: str | None,
                              needle: str) -> None:
    table = tmp_path / "types.csv"
    if content is not None:
        table.write_text(content)
    samples = read_samples([st / "speio_tiny" / "Xenium_small"], _config(table))
    assert len(samples) == 1 and not samples[0].ok
    error = samples[0].error
    assert error.startswith(str(table)) and needle in error
    assert error.count(". ") == error.count("e.g. ")  # one sentence


def test_config_input_section(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[input]\ncell_types = "labels.csv"\n')
    assert load_config(path).input.cell_types == "labels.csv"
    path.write_text('[input]\ncelltypes = "labels.csv"\n')
    with pytest.raises(ConfigError, match=re.escape("unknown key 'input.celltypes'")):
        load_config(path)


# --- malformed folders --------------------------------------------------------------------

def test_xenium_missing_cells_file(st: Path, tmp_path: Path) -> None:
    folder = tmp_path / "xen"
    folder.mkdir()
    shutil.copy(st / "speio_tiny/Xenium_small/cell_feature_matrix.h5", folder)
    samples = read_samples([folder], _config())
    assert len(samples) == 1 and not samples[0].ok
    error = samples[0].error
    assert error.startswith(f"{folder}: read as a Xenium output folder but it has no "
                            "cells.parquet, cells.csv.gz or cells.csv")
    assert "cell_feature_matrix.h5" in error and "copy the cells file" in error


def test_xenium_cell_id_mismatch(st: Path, tmp_path: Path) -> None:
    src = st / "speio_tiny" / "Xenium_small"
    folder = tmp_path / "xen"
    folder.mkdir()
    shutil.copy(src / "cell_feature_matrix.h5", folder)
    cells = pd.read_csv(src / "cells.csv.gz", dtype={"cell_id": str})
    cells.loc[0, "cell_id"] = "999"
    with gzip.open(folder / "cells.csv.gz", "wt") as handle:
        cells.to_csv(handle, index=False)
    samples = read_samples([folder], _config(_labels(tmp_path, list(cells["cell_id"]))))
    error = samples[0].error
    assert error.startswith(f"{folder / 'cells.csv.gz'}: 1 of its 6 cells have no row in "
                            "cell_feature_matrix.h5 and 1 of the matrix's 6 cells")
    assert "'999'" in error and "same run folder" in error


def test_cosmx_missing_metadata_and_file_given_as_xenium(st: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cosmx"
    folder.mkdir()
    shutil.copy(st / "speio_tiny/CosMx_small/lung_p9s1_exprMat_file.csv", folder)
    error = read_samples([folder], _config())[0].error
    assert error.startswith(f"{folder}: read as a CosMx flat-file folder but it has no "
                            "*_metadata_file.csv")
    cells = st / "speio_tiny/Xenium_small/cells.csv.gz"
    error = read_samples([cells], _config(), format="xenium")[0].error
    assert error.startswith(f"{cells}: is a file, not a Xenium output folder; point to the "
                            "folder")


# --- end to end ---------------------------------------------------------------------------

def test_xenium_window_runs_end_to_end(st: Path, tmp_path: Path) -> None:
    window = st / "xenium_breast_jazzpanda_rep1"
    config = tmp_path / "c.toml"
    config.write_text(
        f'[input]\ncell_types = "{window / "cell_types_supervised_merged.csv"}"\n'
        "[ligrec]\nn_permutations = 0\n[relations]\nn_permutations = 0\n")
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "metaniche", "run", str(window), "--config",
                           str(config), "--out", str(out), "--quiet"], capture_output=True,
                          text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr
    cells = pd.read_parquet(out / "cells" / f"{window.name}.parquet")
    assert len(cells) == 1713
    assert (cells["cell_type"] == "Tumor").sum() == 745
    tumour = cells["cell_type"] == "Tumor"
    assert cells.loc[tumour, "lesion_id"].notna().mean() > 0.5
    assert {"core", "border"} <= set(cells["compartment"].dropna())


# --- flat expression matrices read block by block, never whole and dense -----------------

@pytest.mark.parametrize(("folder", "stem"), [("cosmx_lung12_giotto", "Lung12")])
def test_cosmx_expression_read_in_small_blocks_equals_pandas(st: Path, tmp_path: Path,
                                                             monkeypatch, folder: str,
                                                             stem: str) -> None:
    import metaniche.io._imaging as imaging

    path = st / folder
    meta = pd.read_csv(path / f"{stem}_metadata_file.csv")
    expr = pd.read_csv(path / f"{stem}_exprMat_file.csv")
    expr = expr[expr["cell_ID"] != 0]
    genes = [c for c in expr.columns[2:] if not c.startswith("NegPrb")]
    ids = (meta["fov"].astype(str) + "_" + meta["cell_ID"].astype(str)).tolist()
    expected = expr.set_index(expr["fov"].astype(str) + "_" + expr["cell_ID"].astype(str))
    monkeypatch.setattr(imaging, "EXPRESSION_BLOCK_BYTES", 65536)  # several blocks of rows
    blocks = []
    original = imaging.sp.vstack

    def counting(parts, *args, **kwargs):
        blocks.append(len(parts))
        return original(parts, *args, **kwargs)

    monkeypatch.setattr(imaging.sp, "vstack", counting)
    cells = _one(read_samples([path], _config(_labels(tmp_path, ids))))
    assert blocks and blocks[0] > 2
    np.testing.assert_array_equal(cells[genes].to_numpy(), expected.loc[ids, genes].to_numpy())


def test_a_non_numeric_expression_value_is_one_sentence(st: Path, tmp_path: Path) -> None:
    src = st / "speio_tiny" / "MERSCOPE_small"
    folder = tmp_path / "merscope"
    shutil.copytree(src, folder)
    matrix = next(folder.glob("*cell_by_gene.csv"))
    lines = matrix.read_text().splitlines()
    fields = lines[1].split(",")
    fields[2] = "n/a?"
    lines[1] = ",".join(fields)
    matrix.write_text("\n".join(lines) + "\n")
    [sample] = read_samples([folder], Config(), format="merscope")
    assert not sample.ok
    assert str(matrix) in sample.error and "not a number" in sample.error
    assert "\n" not in sample.error and "Traceback" not in sample.error
