"""Tests of metaniche.io.cells: good paths, every bad input, garbage bytes."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaniche.config import ColumnNames, Config
from metaniche.io import SampleInput, read_samples


def grid_frame(n: int = 30, sample: str | None = None, spacing: float = 10.0,
               seed: int = 0, jitter: float = 0.05) -> pd.DataFrame:
    """Cells on a jittered grid with ~``spacing`` µm between neighbours."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    gx, gy = np.meshgrid(np.arange(side), np.arange(side))
    xy = np.column_stack([gx.ravel(), gy.ravel()])[:n] * spacing
    xy = xy + rng.uniform(-jitter, jitter, xy.shape) * spacing
    frame = pd.DataFrame({
        "cell_id": [f"c{i}" for i in range(n)],
        "x": xy[:, 0],
        "y": xy[:, 1],
        "cell_type": rng.choice(["Tumor", "CD8_T", "B"], n),
        "CD8": rng.normal(size=n),
        "region": "core",
    })
    if sample is not None:
        frame.insert(0, "sample", sample)
    return frame


def two_samples() -> pd.DataFrame:
    return pd.concat([grid_frame(30, "S1", seed=1), grid_frame(25, "S2", seed=2)],
                     ignore_index=True)


def only(samples: list[SampleInput]) -> SampleInput:
    assert len(samples) == 1, samples
    return samples[0]


CFG = Config()


# --- good paths -------------------------------------------------------------------------


def write(frame: pd.DataFrame, path: Path) -> Path:
    name = path.name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    elif name.endswith((".tsv", ".tsv.gz", ".txt")):
        frame.to_csv(path, sep="\t", index=False)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name", ["cells.csv", "cells.tsv", "cells.csv.gz", "cells.tsv.gz",
                                  "cells.txt", "cells.parquet"])
def test_round_trip_two_samples(tmp_path: Path, name: str) -> None:
    frame = two_samples()
    samples = read_samples([write(frame, tmp_path / name)], CFG)
    assert [s.name for s in samples] == ["S1", "S2"]
    assert all(s.ok and s.warnings == [] for s in samples)
    for s, expected in zip(samples, (frame[frame["sample"] == "S1"],
                                     frame[frame["sample"] == "S2"]), strict=True):
        cells = s.cells
        assert list(cells.columns) == ["sample", "cell_id", "x", "y", "cell_type", "CD8",
                                       "region"]
        assert cells["x"].dtype == np.float64 and cells["y"].dtype == np.float64
        np.testing.assert_allclose(cells["x"], expected["x"])
        np.testing.assert_allclose(cells["CD8"], expected["CD8"])
        assert list(cells["cell_id"]) == list(expected["cell_id"])
        assert list(cells["cell_type"]) == list(expected["cell_type"])
        assert (cells["sample"] == s.name).all()
        assert len(s.checksum) == 64


def test_checksum_same_across_formats_and_changes_with_content(tmp_path: Path) -> None:
    frame = two_samples()
    a = read_samples([write(frame, tmp_path / "a.csv")], CFG)
    b = read_samples([write(frame, tmp_path / "b.tsv")], CFG)
    assert [s.checksum for s in a] == [s.checksum for s in b]
    assert a[0].checksum != a[1].checksum
    frame.loc[0, "x"] += 1.0
    c = read_samples([write(frame, tmp_path / "c.csv")], CFG)
    assert c[0].checksum != a[0].checksum and c[1].checksum == a[1].checksum
    scaled = read_samples([tmp_path / "a.csv"], Config(um_per_unit=1.5))
    assert scaled[0].checksum != a[0].checksum


def test_one_file_per_sample_uses_stem_and_generates_ids(tmp_path: Path) -> None:
    frame = grid_frame(30).drop(columns="cell_id")
    s = only(read_samples([write(frame, tmp_path / "patient7.cells.csv.gz")], CFG))
    assert s.ok and s.name == "patient7.cells"
    assert list(s.cells["cell_id"][:3]) == ["0", "1", "2"]
    assert (s.cells["sample"] == "patient7.cells").all()


def test_generated_ids_restart_per_sample(tmp_path: Path) -> None:
    frame = two_samples().drop(columns="cell_id")
    s1, s2 = read_samples([write(frame, tmp_path / "c.csv")], CFG)
    assert s1.cells["cell_id"].iloc[0] == "0" and s2.cells["cell_id"].iloc[0] == "0"
    assert s2.cells["cell_id"].iloc[-1] == str(len(s2.cells) - 1)


def test_um_per_unit_scales_coordinates(tmp_path: Path) -> None:
    frame = grid_frame(30, spacing=20.0)
    path = write(frame, tmp_path / "px.csv")
    s = only(read_samples([path], Config(um_per_unit=0.5)))
    assert s.ok and not s.warnings
    np.testing.assert_allclose(s.cells["x"], frame["x"] * 0.5)
    np.testing.assert_allclose(s.cells["y"], frame["y"] * 0.5)


def test_column_remapping_and_case_insensitive_match(tmp_path: Path) -> None:
    frame = two_samples().rename(columns={"sample": "ImageID", "cell_id": "CellID",
                                          "x": "X_centroid", "y": "Y_centroid",
                                          "cell_type": "phenotype"})
    cfg = Config(columns=ColumnNames(sample="imageid", cell_id="CellID", x="X_centroid",
                                     y="Y_centroid", cell_type="phenotype"))
    samples = read_samples([write(frame, tmp_path / "mcmicro.csv")], cfg)
    assert [s.name for s in samples] == ["S1", "S2"]
    assert list(samples[0].cells.columns[:5]) == ["sample", "cell_id", "x", "y", "cell_type"]
    assert "X_centroid" not in samples[0].cells.columns


def test_ids_keep_leading_zeros(tmp_path: Path) -> None:
    frame = grid_frame(30)
    frame.insert(0, "sample", "007")
    frame["cell_id"] = [f"{i:04d}" for i in range(30)]
    s = only(read_samples([write(frame, tmp_path / "z.csv")], CFG))
    assert s.name == "007" and s.cells["cell_id"].iloc[0] == "0000"


def test_numeric_sample_ids_are_strings(tmp_path: Path) -> None:
    frame = two_samples()
    frame["sample"] = np.where(frame["sample"] == "S1", 1, 2)
    samples = read_samples([write(frame, tmp_path / "n.parquet")], CFG)
    assert [s.name for s in samples] == ["1", "2"]
    assert samples[0].cells["sample"].iloc[0] == "1"


def test_directory_reads_supported_files_sorted(tmp_path: Path) -> None:
    write(grid_frame(30, seed=3), tmp_path / "b.csv")
    write(grid_frame(30, seed=4), tmp_path / "a.parquet")
    (tmp_path / "notes.md").write_text("not a table")
    (tmp_path / "sub").mkdir()
    write(grid_frame(30), tmp_path / "sub" / "c.csv")
    samples = read_samples([tmp_path], CFG)
    assert [s.name for s in samples] == ["a", "b"]
    assert all(s.ok for s in samples)


def test_h5ad_round_trip_obsm_spatial_and_sparse_markers(tmp_path: Path) -> None:
    frame = two_samples()
    adata = anndata.AnnData(
        X=sp.csr_matrix(frame[["CD8"]].to_numpy()),
        obs=pd.DataFrame({"sample": frame["sample"].astype("category").to_numpy(),
                          "cell_type": frame["cell_type"].to_numpy()},
                         index=(frame["sample"] + "_" + frame["cell_id"]).to_numpy()),
    )
    adata.var_names = ["CD8"]
    adata.obsm["spatial"] = frame[["x", "y"]].to_numpy()
    path = tmp_path / "sc.h5ad"
    adata.write_h5ad(path)
    s1, s2 = read_samples([path], CFG)
    assert (s1.name, s2.name) == ("S1", "S2")
    assert list(s1.cells.columns) == ["sample", "cell_id", "x", "y", "cell_type", "CD8"]
    assert s1.cells["CD8"].dtype == np.float64
    np.testing.assert_allclose(s1.cells["x"], frame.loc[frame["sample"] == "S1", "x"])
    np.testing.assert_allclose(s2.cells["CD8"], frame.loc[frame["sample"] == "S2", "CD8"])
    assert s1.cells["cell_id"].iloc[0] == "S1_c0"


def test_h5ad_obs_coordinates(tmp_path: Path) -> None:
    frame = grid_frame(30)
    obs = frame[["x", "y", "cell_type"]].rename(columns={"x": "X_centroid", "y": "Y_centroid",
                                                        "cell_type": "phenotype"})
    obs["imageid"] = "img1"
    obs.index = frame["cell_id"]
    anndata.AnnData(X=frame[["CD8"]].to_numpy(), obs=obs).write_h5ad(tmp_path / "o.h5ad")
    cfg = Config(columns=ColumnNames(sample="imageid", x="X_centroid", y="Y_centroid",
                                     cell_type="phenotype"))
    s = only(read_samples([tmp_path / "o.h5ad"], cfg))
    assert s.ok and s.name == "img1"
    np.testing.assert_allclose(s.cells["x"], frame["x"])


def test_scimap_h5ad(data_dir: Path) -> None:
    path = data_dir / "formats" / "scimap_example_data.h5ad"
    if not path.exists():
        pytest.skip(f"{path} not found")
    # The stored file names its coordinates X_position/Y_position and its sample ImageId
    # (DATA README says X_centroid/Y_centroid/imageid); the sample name matches any case.
    cfg = Config(columns=ColumnNames(x="X_position", y="Y_position", sample="imageid",
                                     cell_type="phenotype"))
    s = only(read_samples([path], cfg))
    assert s.ok, s.error
    assert s.name == "230" and len(s.cells) == 3029
    assert s.cells.shape[1] == 5 + 7 + 33  # standard + other obs columns + markers


# --- bad inputs: one clear sentence each ----------------------------------------------


def assert_message(message: str | None, *parts: str) -> None:
    assert message is not None
    assert "Traceback" not in message and "\n" not in message
    for part in parts:
        assert part in message, (part, message)


def test_missing_x_column_names_key_columns_and_fix(tmp_path: Path) -> None:
    frame = grid_frame(30).rename(columns={"x": "X_centroid", "y": "Y_centroid"})
    # format "table": the generic reader (auto would read X_centroid as an MCMICRO table)
    s = only(read_samples([write(frame, tmp_path / "cells.csv")], CFG, format="table"))
    assert s.cells is None and s.file_error and s.name == "cells"
    assert_message(s.error, "cells.csv", "no column 'x'", "x coordinate",
                   "columns found: cell_id, X_centroid, Y_centroid",
                   '[columns] x = "X_centroid"', "config")


@pytest.mark.parametrize("column,key", [("y", "y"), ("cell_type", "cell_type")])
def test_missing_y_and_cell_type(tmp_path: Path, column: str, key: str) -> None:
    frame = grid_frame(30).drop(columns=column)
    s = only(read_samples([write(frame, tmp_path / "cells.parquet")], CFG))
    assert_message(s.error, "cells.parquet", f"no column '{column}'", f"[columns] {key} =")


def test_non_numeric_coordinates_name_rows_and_values(tmp_path: Path) -> None:
    frame = two_samples().astype({"x": object})
    frame.loc[3, "x"] = "abc"
    frame.loc[5, "x"] = np.nan
    frame.loc[7, "x"] = "inf"
    frame.loc[8, "x"] = "1,5"
    s1, s2 = read_samples([write(frame, tmp_path / "cells.csv")], CFG)
    assert s1.cells is None and not s1.file_error
    # header is line 1, so frame row 3 is line 5
    assert_message(s1.error, "cells.csv", "sample 'S1'", "column 'x'",
                   "rows 5 ('abc'), 7 (empty), 9 ('inf') and 1 more", "fix or remove")
    assert s2.ok  # the other sample of the file is unaffected


def test_infinite_y_in_parquet_uses_row_numbers_from_one(tmp_path: Path) -> None:
    frame = grid_frame(30)
    frame.loc[0, "y"] = np.inf
    s = only(read_samples([write(frame, tmp_path / "c.parquet")], CFG))
    assert_message(s.error, "c.parquet", "column 'y'", "row 1 ('inf')")


def test_missing_cell_type_names_rows(tmp_path: Path) -> None:
    frame = grid_frame(30)
    frame.loc[[2, 4], "cell_type"] = ["", "  "]
    s = only(read_samples([write(frame, tmp_path / "c.csv")], CFG))
    assert_message(s.error, "c.csv", "column 'cell_type'", "is empty at rows 4, 6",
                   "give those cells a label")


def test_duplicate_cell_ids_name_id_and_rows(tmp_path: Path) -> None:
    frame = two_samples()
    frame.loc[1, "cell_id"] = "c0"
    frame.loc[30, "cell_id"] = "c1"  # S2 has its own c1 elsewhere? no: S2 ids are c0..c24
    s1, s2 = read_samples([write(frame, tmp_path / "c.csv")], CFG)
    assert_message(s1.error, "c.csv", "sample 'S1'", "column 'cell_id'", "'c0' at rows 2, 3",
                   "unique")
    assert_message(s2.error, "sample 'S2'", "'c1' at rows 32, 33")


def test_same_ids_in_different_samples_are_fine(tmp_path: Path) -> None:
    s1, s2 = read_samples([write(two_samples(), tmp_path / "c.csv")], CFG)
    assert s1.ok and s2.ok


def test_empty_files(tmp_path: Path) -> None:
    (tmp_path / "zero.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_text("cell_id,x,y,cell_type\n")
    with gzip.open(tmp_path / "zero.csv.gz", "wb"):
        pass
    grid_frame(30).iloc[:0].to_parquet(tmp_path / "none.parquet")
    (tmp_path / "zero.h5ad").write_bytes(b"")
    samples = read_samples(sorted(tmp_path.iterdir()), CFG)
    assert len(samples) == 5 and all(s.file_error for s in samples)
    by = {s.source.name: s.error for s in samples}
    assert_message(by["zero.csv"], "zero.csv", "empty")
    assert_message(by["zero.csv.gz"], "zero.csv.gz", "empty")
    assert_message(by["header.csv"], "header.csv", "no data rows")
    assert_message(by["none.parquet"], "none.parquet", "no rows")
    assert_message(by["zero.h5ad"], "zero.h5ad", "empty")


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "cells.xlsx"
    path.write_bytes(b"PK")
    s = only(read_samples([path], CFG))
    assert s.name == "cells"
    assert_message(s.error, "cells.xlsx", "unsupported", ".csv", ".parquet", ".h5ad",
                   "export the table as CSV or Parquet")
    s = only(read_samples([write(grid_frame(), tmp_path / "c.parquet.gz")], CFG))
    assert_message(s.error, "c.parquet.gz", "unsupported")


@pytest.mark.parametrize("name", ["bad.parquet", "bad.h5ad", "bad.csv.gz", "bad.pq"])
def test_corrupt_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00\x01 this is not a real file \xff\xfe" * 10)
    s = only(read_samples([path], CFG))
    assert s.file_error and s.cells is None
    assert_message(s.error, name, "cannot be read", "check that the file is a complete")


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv.gz"
    data = gzip.compress(two_samples().to_csv(index=False).encode())
    path.write_bytes(data[: len(data) // 2])
    s = only(read_samples([path], CFG))
    assert_message(s.error, "cut.csv.gz", "cannot")


def test_ragged_csv(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("cell_id,x,y,cell_type\n1,2,3,T\n2,3,4,T,extra,more\n")
    s = only(read_samples([path], CFG))
    assert_message(s.error, "ragged.csv", "cannot be parsed", "line 3", "delimiter")


def test_file_not_found_and_empty_directory(tmp_path: Path) -> None:
    missing = only(read_samples([tmp_path / "nope.csv"], CFG))
    assert_message(missing.error, "nope.csv", "file not found", "check the path")
    (tmp_path / "empty").mkdir()
    empty = only(read_samples([tmp_path / "empty"], CFG))
    assert_message(empty.error, "empty", "no cell table", ".csv")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores file permissions")
def test_permission_denied(tmp_path: Path) -> None:
    path = write(grid_frame(), tmp_path / "locked.csv")
    path.chmod(0)
    try:
        s = only(read_samples([path], CFG))
    finally:
        path.chmod(0o644)
    assert_message(s.error, "locked.csv", "permission denied")


def test_too_few_cells(tmp_path: Path) -> None:
    frame = pd.concat([grid_frame(30, "big"), grid_frame(5, "small")], ignore_index=True)
    big, small = read_samples([write(frame, tmp_path / "c.csv")], CFG)
    assert big.ok
    assert_message(small.error, "c.csv", "sample 'small'", "has 5 cells",
                   "min_cells = 20", "lower min_cells")
    ok = read_samples([tmp_path / "c.csv"], Config(min_cells=5))
    assert all(s.ok for s in ok)


def test_missing_sample_id_rows_fail_alone(tmp_path: Path) -> None:
    frame = two_samples()
    frame.loc[4, "sample"] = np.nan
    samples = read_samples([write(frame, tmp_path / "c.csv")], CFG)
    errors = [s for s in samples if s.error]
    assert len(errors) == 1 and errors[0].file_error
    assert_message(errors[0].error, "c.csv", "column 'sample'", "row 6", "fill in")
    assert [s.name for s in samples if s.ok] == ["S1", "S2"]
    assert len(samples[1].cells) == 29


def test_duplicate_sample_across_files(tmp_path: Path) -> None:
    write(grid_frame(30, "S1"), tmp_path / "a.csv")
    write(grid_frame(30, "S1", seed=5), tmp_path / "b.csv")
    first, second = read_samples([tmp_path / "a.csv", tmp_path / "b.csv"], CFG)
    assert not first.ok and not second.ok  # neither is analysed (see test_io_checks.py)
    assert_message(second.error, "b.csv", "sample 'S1'", "a.csv", "unique", "rename")
    assert_message(first.error, "a.csv", "sample 'S1'", "b.csv", "unique", "rename")


def test_pixel_coordinates_warn_with_factor(tmp_path: Path) -> None:
    frame = grid_frame(100, spacing=0.5, jitter=0.0)
    s = only(read_samples([write(frame, tmp_path / "tiny.csv")], CFG))
    assert s.ok  # a warning, not an error
    assert len(s.warnings) == 1
    assert_message(s.warnings[0], "tiny.csv", "median nearest-neighbour distance is 0.5 µm",
                   "3–50 µm", "pixels", "um_per_unit = 20 would give about 10 µm")
    coarse = grid_frame(100, spacing=200.0, jitter=0.0)
    big = only(read_samples([write(coarse, tmp_path / "px.csv")], CFG))
    assert_message(big.warnings[0], "px.csv", "is 200 µm", "um_per_unit = 0.05")
    fixed = only(read_samples([tmp_path / "px.csv"], Config(um_per_unit=0.05)))
    assert fixed.warnings == []


def test_colliding_standard_column_is_dropped_with_warning(tmp_path: Path) -> None:
    frame = grid_frame(30)
    frame["X_um"] = frame["x"]
    cfg = Config(columns=ColumnNames(x="X_um"))
    s = only(read_samples([write(frame, tmp_path / "c.csv")], cfg))
    assert s.ok and list(s.cells.columns).count("x") == 1
    assert_message(s.warnings[0], "c.csv", "column(s) x were dropped")


# --- garbage never raises ---------------------------------------------------------------


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000),
       suffix=st.sampled_from([".csv", ".parquet", ".h5ad", ".tsv.gz", ".txt"]))
def test_garbage_bytes_give_error_sample(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(data)
    samples = read_samples([path], CFG)
    assert samples and all(isinstance(s, SampleInput) for s in samples)
    assert all(s.error and s.cells is None for s in samples)
    assert all("garbage" in s.error for s in samples)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=",\"\n\tabcxy01.-e ", max_size=12), max_size=30))
def test_csv_like_garbage_after_valid_header(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_text("sample,x,y,cell_type\n" + "\n".join(lines))
    for s in read_samples([path], CFG):
        assert isinstance(s, SampleInput)
        assert (s.error is None) == (s.cells is not None)


def test_permission_denied_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import metaniche.io._tables as tables

    def deny(path: Path, gz: bool) -> tuple[str, bool]:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(tables, "_read_header", deny)
    s = only(read_samples([write(grid_frame(), tmp_path / "locked.csv")], CFG))
    assert_message(s.error, "locked.csv", "permission denied", "check")


def _two_patients(tmp_path: Path, patient_of: dict[str, list[object]],
                  column: str = "patient") -> Path:
    frames = []
    for sample, ids in patient_of.items():
        frame = grid_frame(len(ids), sample=sample, seed=len(frames))
        frame[column] = ids
        frames.append(frame)
    path = tmp_path / "cells.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path


def test_patient_column_gives_each_sample_its_patient(tmp_path: Path) -> None:
    path = _two_patients(tmp_path, {"A": ["007"] * 30, "B": ["P2"] * 30, "C": ["007"] * 30})
    samples = {s.name: s for s in read_samples([path], Config())}
    assert {n: s.patient for n, s in samples.items()} == {"A": "007", "B": "P2", "C": "007"}
    assert all(s.ok and not s.warnings for s in samples.values())
    # the column stays among the cells' other columns, unchanged
    assert samples["A"].cells["patient"].tolist() == ["007"] * 30


def test_patient_column_named_in_config_and_absent(tmp_path: Path) -> None:
    path = _two_patients(tmp_path, {"A": [3] * 30, "B": [4] * 30}, column="patient_id")
    assert [s.patient for s in read_samples([path], Config())] == [None, None]
    config = Config(columns=ColumnNames(sample="sample", patient="patient_id"))
    assert [s.patient for s in read_samples([path], config)] == ["3", "4"]


def test_sample_with_two_patients_fails_alone(tmp_path: Path) -> None:
    path = _two_patients(tmp_path, {"A": ["P1"] * 15 + ["P9"] * 15, "B": ["P2"] * 30})
    a, b = read_samples([path], Config())
    assert b.ok and b.patient == "P2"
    assert not a.ok and a.patient is None
    assert "column 'patient' (the patient id) holds 2 different ids ('P1', 'P9')" in a.error
    assert "sample 'A'" in a.error and "[columns] sample" in a.error


def test_partly_or_wholly_empty_patient_ids_warn(tmp_path: Path) -> None:
    path = _two_patients(tmp_path, {"A": ["P1"] * 28 + [None, None], "B": [None] * 30})
    a, b = read_samples([path], Config())
    assert a.ok and a.patient == "P1"
    assert any("is empty at rows 30, 31" in w and "'P1'" in w for w in a.warnings), a.warnings
    assert b.ok and b.patient is None
    assert any("empty in every row" in w for w in b.warnings), b.warnings
