"""Tests of metaniche.io.read_clinical."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from metaniche.config import ClinicalColumns, Config
from metaniche.errors import InputError
from metaniche.io import read_clinical


def table() -> pd.DataFrame:
    return pd.DataFrame({"sample": ["001", "002", "003"], "response": ["R", "NR", "R"],
                         "os_time": [10.0, 20.5, 3.0], "os_event": [1, 0, 1]})


@pytest.mark.parametrize("name", ["clin.csv", "clin.tsv", "clin.csv.gz", "clin.parquet"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".parquet"):
        table().to_parquet(path)
    else:
        table().to_csv(path, sep="\t" if ".tsv" in name else ",", index=False)
    out = read_clinical(path, Config())
    assert list(out.columns) == ["sample", "response", "os_time", "os_event"]
    assert list(out["sample"]) == ["001", "002", "003"]
    assert out["os_time"].dtype.kind == "f"


def test_remapped_sample_column_becomes_sample(tmp_path: Path) -> None:
    table().rename(columns={"sample": "Sample_ID"}).to_csv(tmp_path / "c.csv", index=False)
    out = read_clinical(tmp_path / "c.csv",
                        Config(clinical=ClinicalColumns(sample="sample_id")))
    assert out.columns[0] == "sample" and out["sample"].iloc[0] == "001"


def test_numeric_sample_ids_are_strings(tmp_path: Path) -> None:
    table().assign(sample=[1, 2, 3]).to_parquet(tmp_path / "c.parquet")
    out = read_clinical(tmp_path / "c.parquet", Config())
    assert list(out["sample"]) == ["1", "2", "3"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: clinical table not found; check"):
        read_clinical(tmp_path / "nope.csv", Config())


def test_missing_column(tmp_path: Path) -> None:
    table().rename(columns={"sample": "id"}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(InputError, match=r"c\.csv: no column 'sample'.*columns found: id, "
                                         r"response.*\[clinical\] sample = "):
        read_clinical(tmp_path / "c.csv", Config())


def test_duplicate_samples_name_rows(tmp_path: Path) -> None:
    table().assign(sample=["a", "b", "a"]).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(InputError, match=r"c\.csv: sample 'a' has more than one row "
                                         r"\(rows 2, 4\); keep one row per sample"):
        read_clinical(tmp_path / "c.csv", Config())


def test_empty_sample_ids(tmp_path: Path) -> None:
    table().assign(sample=["a", None, "c"]).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(InputError, match=r"column 'sample' \(the sample id\) is empty at "
                                         r"row 3"):
        read_clinical(tmp_path / "c.csv", Config())


def test_empty_and_unsupported(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_bytes(b"")
    with pytest.raises(InputError, match=r"e\.csv: file is empty"):
        read_clinical(tmp_path / "e.csv", Config())
    (tmp_path / "c.xlsx").write_bytes(b"x")
    with pytest.raises(InputError, match=r"c\.xlsx: unsupported"):
        read_clinical(tmp_path / "c.xlsx", Config())


def test_real_patients_table(data_dir: Path) -> None:
    path = data_dir / "cells" / "melanoma_responders_spicyR.patients.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    header = path.read_text().splitlines()[0].split(",")
    out = read_clinical(path, Config(clinical=ClinicalColumns(sample=header[0])))
    assert out.columns[0] == "sample" and out["sample"].is_unique
