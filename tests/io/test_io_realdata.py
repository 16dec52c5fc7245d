"""Reading the shared real data sets (skipped when the data directory is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from metaniche.config import ColumnNames, Config
from metaniche.io import read_samples, validate_inputs

CFG = Config(columns=ColumnNames(sample="sample_id"))


def cells_file(data_dir: Path, name: str) -> Path:
    path = data_dir / "cells" / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def test_phenoptr_sample(data_dir: Path) -> None:
    path = cells_file(data_dir, "phenoptr_akoya_sample.cells.csv.gz")
    (s,) = read_samples([path], CFG)
    assert s.ok, s.error
    assert len(s.cells) == 6072
    assert list(s.cells.columns) == ["sample", "cell_id", "x", "y", "cell_type",
                                     "patient_id", "tissue_category"]
    assert s.warnings == []


def test_melanoma_cohort(data_dir: Path) -> None:
    path = cells_file(data_dir, "melanoma_responders_spicyR.cells.csv.gz")
    samples = read_samples([path], CFG)
    assert len(samples) == 135
    assert all(s.ok for s in samples), [s.error for s in samples if not s.ok][:3]
    assert sum(len(s.cells) for s in samples) == 296_523
    assert len({s.checksum for s in samples}) == 135


def test_small_real_tables_validate_clean(data_dir: Path) -> None:
    names = ["ferguson2022_cscc_imc.cells.csv.gz", "scimap_exemplar001.cells.csv.gz",
             "spiat_prostate_opal.cells.csv.gz"]
    for name in names:
        path = cells_file(data_dir, name)
        assert validate_inputs([path], CFG) == [], name


def test_format_exports_report_the_coordinate_column(data_dir: Path) -> None:
    path = data_dir / "formats" / "mcmicro_exemplar-001_unmicst_cell.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    (problem,) = validate_inputs([path], Config(), format="table")
    assert problem.severity == "error" and problem.sample is None
    assert '[columns] x = "X_centroid"' in problem.message
    cfg = Config(columns=ColumnNames(x="X_centroid", y="Y_centroid", cell_type="CellID"))
    (s,) = read_samples([path], cfg, format="table")
    assert s.ok, s.error
