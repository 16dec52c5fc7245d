"""Malformed exports: one sentence naming the file, the format read as, the row/column, the fix.

Every broken file is built in ``tmp_path`` from a real fixture of ../shared/data/formats, so
the expected line numbers, field counts and values come from the raw file, not from the
reader. The CLI tests check that the same sentence reaches the user with no traceback.
"""

from __future__ import annotations

import csv
import gzip
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from metaniche.cli import app
from metaniche.config import Config
from metaniche.io import read_samples


@dataclass(frozen=True)
class Spec:
    """One export format and how to read its fixture."""

    fixture: str
    fmt: str
    sep: str
    label: str
    x: str  # raw x column (for HALO: one of the box columns the centre is computed from)
    y: str
    config: Config = field(default_factory=lambda: Config(min_cells=1))
    rows: int | None = None  # keep only the first rows (large fixtures)


GATE_CP = {"rules": {"M1_pos": ["Marker1_rs+"]}}
GATE_MCMICRO = {"rules": {"Immune": ["CD45+"], "Epithelial": ["ECAD+", "CD45-"]}}

SPECS = [
    Spec("tiny_inform.txt.gz", "inform", "\t", "inForm cell_seg_data export",
         "Cell X Position", "Cell Y Position"),
    Spec("tiny_halo.csv.gz", "halo", ",", "HALO object-data export", "XMax", "YMax"),
    Spec("tiny_codex.csv.gz", "codex", ",", "CODEX cell table", "X.X", "Y.Y"),
    Spec("tiny_cellprofiler.txt.gz", "cellprofiler", ",", "CellProfiler object export",
         "Location_Center_X", "Location_Center_Y", Config(min_cells=1, gating=GATE_CP)),
    Spec("mcmicro_exemplar-001_unmicst_cell.csv.gz", "mcmicro", ",",
         "MCMICRO quantification table", "X_centroid", "Y_centroid",
         Config(min_cells=1, gating=GATE_MCMICRO), rows=300),
]
IDS = [s.fmt for s in SPECS]


def raw_lines(data_dir: Path, spec: Spec) -> list[bytes]:
    """The fixture's non-blank lines, each with its own line ending."""
    path = data_dir / "formats" / spec.fixture
    if not path.exists():
        pytest.skip(f"{path} not found")
    with gzip.open(path, "rb") as handle:
        lines = [line for line in handle.read().splitlines(keepends=True) if line.strip()]
    if spec.rows is not None:
        lines = lines[: spec.rows + 1]
    return lines


def plain_name(spec: Spec) -> str:
    """``cells.txt`` / ``cells.csv``: the fixture's suffix without ``.gz``."""
    return "cells" + Path(spec.fixture[:-3]).suffix


def write_export(data_dir: Path, tmp_path: Path, spec: Spec, content: bytes) -> Path:
    """Write ``content`` under the fixture's suffix (plus the CODEX phenotype map beside it)."""
    out = tmp_path / plain_name(spec)
    out.write_bytes(content)
    if spec.fmt == "codex":
        shutil.copy(data_dir / "formats" / "tiny_codex_phenotypes.txt.gz",
                    tmp_path / "cells_phenotypes.txt.gz")
    return out


def fields(line: bytes, sep: str) -> list[str]:
    return next(csv.reader([line.decode("utf-8-sig").rstrip("\r\n")], delimiter=sep))


def one_error(path: Path, config: Config, fmt: str | None = None) -> str:
    samples = read_samples([path], config, format=fmt)
    errors = [s.error for s in samples if s.error is not None]
    assert errors, "no error"
    message = errors[0]
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(str(path)), message
    return message


def read_raw(data_dir: Path, spec: Spec) -> pd.DataFrame:
    frame = pd.read_csv(data_dir / "formats" / spec.fixture, sep=spec.sep)
    return frame.head(spec.rows) if spec.rows is not None else frame


# --- structure of the text: truncated, ragged, delimiter --------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_truncated_last_row_names_format_line_and_fix(data_dir: Path, tmp_path: Path,
                                                      spec: Spec) -> None:
    lines = raw_lines(data_dir, spec)
    n_header = len(fields(lines[0], spec.sep))
    cut = lines[-1][: len(lines[-1]) // 3]  # the export stopped mid-row, no line ending
    kept = len(next(csv.reader([cut.decode()], delimiter=spec.sep)))
    assert kept < n_header
    path = write_export(data_dir, tmp_path, spec, b"".join(lines[:-1]) + cut)
    message = one_error(path, spec.config)
    for part in (spec.label, "looks truncated", f"last line ({len(lines)})",
                 f"has {kept} of the header's {n_header} fields", "export the file again"):
        assert part in message, (part, message)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_ragged_row_in_the_middle_names_line_and_counts(data_dir: Path, tmp_path: Path,
                                                        spec: Spec) -> None:
    lines = raw_lines(data_dir, spec)
    n_header = len(fields(lines[0], spec.sep))
    k = len(lines) // 2
    half = fields(lines[k], spec.sep)[: n_header // 2]
    ending = lines[k][len(lines[k].rstrip(b"\r\n")):]
    lines[k] = spec.sep.join(half).encode() + ending
    path = write_export(data_dir, tmp_path, spec, b"".join(lines))
    message = one_error(path, spec.config)
    sep_name = "tab" if spec.sep == "\t" else "comma"
    for part in (spec.label, f"{sep_name}-separated", f"line {k + 1} has {len(half)} fields",
                 f"the header has {n_header}", "fix or remove that line"):
        assert part in message, (part, message)
    assert "truncated" not in message


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_extra_fields_in_a_row_are_reported_not_shifted(data_dir: Path, tmp_path: Path,
                                                        spec: Spec) -> None:
    lines = raw_lines(data_dir, spec)
    n_header = len(fields(lines[0], spec.sep))
    k = 2
    body = lines[k].rstrip(b"\r\n")
    lines[k] = body + (spec.sep + "x" + spec.sep + "y").encode() + lines[k][len(body):]
    path = write_export(data_dir, tmp_path, spec, b"".join(lines))
    message = one_error(path, spec.config)
    assert f"line {k + 1} has {n_header + 2} fields" in message, message
    assert spec.label in message


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_semicolon_export_reads_like_the_original(data_dir: Path, tmp_path: Path,
                                                  spec: Spec) -> None:
    raw_lines(data_dir, spec)  # skips when the fixture is absent
    raw = read_raw(data_dir, spec)
    path = write_export(data_dir, tmp_path, spec, b"")
    raw.to_csv(path, sep=";", index=False)
    samples = read_samples([path], spec.config)
    assert all(s.ok for s in samples), [s.error for s in samples]
    cells = pd.concat([s.cells for s in samples])
    if spec.fmt == "halo":
        x = (raw["XMin"] + raw["XMax"]) / 2
    else:
        x = raw[spec.x]
    np.testing.assert_allclose(np.sort(cells["x"].to_numpy()), np.sort(x.to_numpy()))
    assert len(cells) == len(raw)


def test_unsupported_delimiter_is_named(data_dir: Path, tmp_path: Path) -> None:
    spec = SPECS[0]  # inForm: some header names hold commas, so the header splits on ','
    raw_lines(data_dir, spec)
    raw = read_raw(data_dir, spec)
    path = write_export(data_dir, tmp_path, spec, b"")
    raw.to_csv(path, sep="|", index=False)
    message = one_error(path, spec.config)
    for part in (spec.label, f"{len(raw)} of {len(raw)} rows differ",
                 "delimiter is probably not comma", f"{raw.shape[1] - 1} × '|'",
                 "export the file again as tab- or comma-separated text"):
        assert part in message, (part, message)


def test_decimal_commas_are_named_with_the_fix(data_dir: Path, tmp_path: Path) -> None:
    spec = SPECS[2]  # CODEX: float marker columns, integer positions
    raw_lines(data_dir, spec)
    raw = read_raw(data_dir, spec)
    raw["X.X"] = raw["X.X"] + 0.5  # 10.5 -> "10,5" with a decimal comma
    path = write_export(data_dir, tmp_path, spec, b"")
    raw.to_csv(path, sep=";", decimal=",", index=False)
    message = one_error(path, spec.config)
    first = f"{raw['X.X'].iat[0]:g}".replace(".", ",")
    for part in (spec.label, "column 'X.X'", f"row 2 ('{first}')", "decimal commas",
                 "decimal points"):
        assert part in message, (part, message)


# --- content: non-numeric coordinates ---------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_non_numeric_coordinate_names_format_column_row_and_value(
        data_dir: Path, tmp_path: Path, spec: Spec) -> None:
    lines = raw_lines(data_dir, spec)
    raw = read_raw(data_dir, spec).astype({spec.y: object})
    raw.loc[3, spec.y] = "12 px"
    path = write_export(data_dir, tmp_path, spec, b"")
    raw.to_csv(path, sep=spec.sep, index=False)
    assert len(lines) == len(raw) + 1
    message = one_error(path, spec.config)
    # header is line 1, so frame row 3 is row 5 of the file
    for part in (spec.label, "y coordinate", "row 5 ('12 px'", "fix or remove those rows"):
        assert part in message, (part, message)
    assert f"'{spec.y}'" in message, message


# --- whole-file problems ----------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_empty_file_and_header_only(data_dir: Path, tmp_path: Path, spec: Spec) -> None:
    lines = raw_lines(data_dir, spec)
    path = write_export(data_dir, tmp_path, spec, b"")
    auto = one_error(path, spec.config)
    assert "file is empty (0 bytes)" in auto and "export" in auto
    named = one_error(path, spec.config, fmt=spec.fmt)
    assert spec.label in named and "empty" in named
    path.write_bytes(lines[0])
    message = one_error(path, spec.config)
    for part in (spec.label, "header but no data rows", "export"):
        assert part in message, (part, message)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_binary_garbage(data_dir: Path, tmp_path: Path, spec: Spec) -> None:
    raw_lines(data_dir, spec)
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes() + b"\x00"
    path = write_export(data_dir, tmp_path, spec, noise)
    message = one_error(path, spec.config)
    assert "binary data" in message and "CSV or tab-separated text" in message, message
    named = one_error(path, spec.config, fmt=spec.fmt)
    assert spec.label in named and "binary data" in named, named


def test_zip_and_misnamed_gzip(data_dir: Path, tmp_path: Path) -> None:
    spec = SPECS[1]
    lines = raw_lines(data_dir, spec)
    path = write_export(data_dir, tmp_path, spec, b"PK\x03\x04" + b"\x14\x00" * 40)
    message = one_error(path, spec.config)
    assert "zip archive" in message and "save the sheet as CSV" in message, message
    path.write_bytes(gzip.compress(b"".join(lines)))
    message = one_error(path, spec.config)
    assert "gzip-compressed" in message and f"rename it to {path.name}.gz" in message, message


def test_truncated_gzip_names_format(data_dir: Path, tmp_path: Path) -> None:
    spec = SPECS[0]
    lines = raw_lines(data_dir, spec)
    path = tmp_path / "cells.txt.gz"
    path.write_bytes(gzip.compress(b"".join(lines))[:-40])
    message = one_error(path, spec.config)
    for part in (spec.label, "gzip stream stops early", "looks truncated"):
        assert part in message, (part, message)


# --- pixel coordinates ------------------------------------------------------------------


PIXEL_SPECS = [s for s in SPECS if s.fmt in ("codex", "cellprofiler", "mcmicro")]


@pytest.mark.parametrize("spec", PIXEL_SPECS, ids=[s.fmt for s in PIXEL_SPECS])
def test_pixel_exports_warn_without_um_per_unit(data_dir: Path, tmp_path: Path,
                                                spec: Spec) -> None:
    lines = raw_lines(data_dir, spec)
    path = write_export(data_dir, tmp_path, spec, b"".join(lines))
    samples = read_samples([path], spec.config)
    assert all(s.ok for s in samples), [s.error for s in samples]
    warning = samples[0].warnings[0]
    for part in (spec.label, f"('{spec.x}', '{spec.y}')", "pixels", "um_per_unit"):
        assert part in warning, (part, warning)
    scaled = read_samples([path], Config(um_per_unit=0.5, min_cells=1,
                                         gating=spec.config.gating))
    assert not any("pixels" in w for s in scaled for w in s.warnings)
    raw = read_raw(data_dir, spec)
    got = np.sort(pd.concat([s.cells for s in scaled])["x"].to_numpy())
    np.testing.assert_allclose(got, np.sort(raw[spec.x].to_numpy()) * 0.5)


# --- the CLI prints the same sentence, no traceback -------------------------------------


def malformed_files(data_dir: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """A few broken files and a phrase each message must hold."""
    inform, halo = SPECS[0], SPECS[1]
    out: dict[str, tuple[Path, str]] = {}
    lines = raw_lines(data_dir, halo)
    folder = tmp_path / "truncated"
    folder.mkdir()
    path = write_export(data_dir, folder, halo, b"".join(lines[:-1]) + lines[-1][:50])
    out["truncated"] = (path, "looks truncated")
    lines = raw_lines(data_dir, inform)
    folder = tmp_path / "ragged"
    folder.mkdir()
    lines[4] = lines[4][:60] + b"\r\n"
    out["ragged"] = (write_export(data_dir, folder, inform, b"".join(lines)),
                     "line 5 has")
    folder = tmp_path / "binary"
    folder.mkdir()
    out["binary"] = (write_export(data_dir, folder, inform, b"\x00\x01\x02" * 300),
                     "binary data")
    return out


@pytest.mark.parametrize("case", ["truncated", "ragged", "binary"])
def test_cli_validate_and_run_print_the_sentence(data_dir: Path, tmp_path: Path,
                                                 case: str) -> None:
    path, phrase = malformed_files(data_dir, tmp_path)[case]
    expected = one_error(path, Config(min_cells=1))
    assert phrase in expected
    runner = CliRunner()
    done = runner.invoke(app, ["validate", str(path)])
    assert done.exit_code == 1, done.output
    assert expected in " ".join(done.stdout.split())
    assert done.exception is None or isinstance(done.exception, SystemExit)
    done = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert done.exit_code == 1, done.output
    assert f"failed: {expected}" in " ".join(done.stderr.split())
    assert "Traceback" not in done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
