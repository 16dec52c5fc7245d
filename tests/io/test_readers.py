"""The reader registry: one entry per format, and everything that lists formats derives from it."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import metaniche.io.readers as readers
from metaniche import _contract, config
from metaniche.config import ColumnNames, Config, load_config
from metaniche.errors import ConfigError, InputError
from metaniche.io import read_samples
from metaniche.io._common import MappedTable, Reader
from metaniche.io._tables import TableError, file_format
from metaniche.io.readers import READERS, detect_format, format_table

FIXTURES = {  # fixture in ../shared/data/formats -> the reader auto detection must choose
    "inform_phenoptr_cell_seg_data.csv.gz": "inform",
    "tiny_inform.txt.gz": "inform",
    "tiny_halo.csv.gz": "halo",
    "tiny_codex.csv.gz": "codex",
    "tiny_cellprofiler.txt.gz": "cellprofiler",
    "mcmicro_exemplar-001_unmicst_cell.csv.gz": "mcmicro",
    "scimap_example_data.h5ad": "scimap",
}


def test_config_formats_are_auto_plus_the_registry() -> None:
    assert config.INPUT_FORMATS == ("auto", *READERS)
    assert _contract.READER_NAMES == tuple(READERS)
    for name, entry in READERS.items():
        assert entry.name == name
        assert entry.article in ("a", "an") and entry.label
        assert (entry.mapper is None) == (name == "table")


def test_config_rejects_an_unknown_format_listing_every_reader(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('format = "qupath"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    for name in READERS:
        assert name in str(err.value)


def test_every_reader_is_documented_and_listed() -> None:
    doc = inspect.getdoc(readers) or ""
    listing = format_table()
    for name in READERS:
        assert f"``{name}``" in doc or name == "table", name
        assert f"\n{name}: " in f"\n{listing}", name
    assert listing.splitlines()[0].startswith("auto:")


@pytest.mark.parametrize(("fixture", "expected"), sorted(FIXTURES.items()))
def test_auto_detection_on_real_exports(data_dir: Path, fixture: str, expected: str) -> None:
    path = data_dir / "formats" / fixture
    kind, gz = file_format(path)
    assert detect_format(kind, path, gz, Config()) == expected


def test_explicit_columns_win_over_signatures(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 2.0], "cell_type": ["a", "b"],
                          "X_centroid": [0.0, 0.0]})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    assert detect_format("text", path, False, Config()) == "table"
    renamed = Config(columns=ColumnNames(x="px", y="py"))
    assert detect_format("text", path, False, renamed) == "mcmicro"


def test_table_error_is_an_input_error() -> None:
    assert issubclass(TableError, InputError)


def test_a_new_format_is_one_registry_entry(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # a made-up export: centre columns "Ctr X"/"Ctr Y" and a "Class" label
    def map_toy(path: Path, raw, config: Config, reader: Reader) -> MappedTable:
        return MappedTable(raw, ColumnNames(sample="\0", cell_id="\0", x="Ctr X",
                                            y="Ctr Y", cell_type="Class"))

    toy = Reader("toy", "toy export", "a", ("text", "parquet"), signature=("Ctr X",),
                 mapper=map_toy)
    monkeypatch.setitem(READERS, "toy", toy)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"Ctr X": rng.uniform(0, 200, 50), "Ctr Y": rng.uniform(0, 200, 50),
                          "Class": rng.choice(["Tumor", "CD8"], 50)})
    path = tmp_path / "toy.csv"
    frame.to_csv(path, index=False)
    (sample,) = read_samples([path], Config(min_cells=1))
    assert sample.ok, sample.error
    np.testing.assert_allclose(sample.cells["x"], frame["Ctr X"])
    assert sample.cells["cell_type"].tolist() == frame["Class"].tolist()
    # detected by its signature like any built-in reader; a missing label column is reported
    # (--format toy also needs the name in _contract.READER_NAMES, which the config checks)
    frame.drop(columns="Class").to_csv(path, index=False)
    (bad,) = read_samples([path], Config(min_cells=1))
    assert bad.error is not None and "no column 'Class'" in bad.error


@pytest.mark.parametrize(("fmt", "suffix", "words"), [
    ("scimap", ".csv", "scimap AnnData files are .h5ad files; use --format auto"),
    ("inform", ".h5ad", "is an AnnData .h5ad file, not an inForm cell_seg_data export; use "
                        "--format auto, table, scimap or squidpy"),
])
def test_wrong_container_for_the_format_names_the_allowed_ones(tmp_path: Path, fmt: str,
                                                               suffix: str,
                                                               words: str) -> None:
    path = tmp_path / f"cells{suffix}"
    path.write_text("x,y,cell_type\n1,2,a\n")
    (sample,) = read_samples([path], Config(min_cells=1), format=fmt)
    assert sample.error is not None and words in sample.error, sample.error
