"""Input checks of issue 15: every problem found at read time, one sentence, nothing silent.

Each bad input is built in ``tmp_path`` from the real inForm export of ../shared/data/formats
(or a grid of cells with known spacing), so the expected rows, counts and values come from the
construction, not from the reader. The CLI tests check that the sentence reaches the user with
no traceback and the documented exit code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from metaniche._contract import TISSUE_CATEGORY
from metaniche.cli import app
from metaniche.config import ClinicalColumns, Config
from metaniche.io import read_samples, validate_inputs
from metaniche.io.cells import MAX_EXTENT_UM
from metaniche.io.validate import validate_clinical

INFORM = "inform_phenoptr_cell_seg_data.csv.gz"
CFG = Config(min_cells=1)


def inform_raw(data_dir: Path) -> pd.DataFrame:
    """The phenoptr inForm export as pandas reads it (independent of metaniche)."""
    path = data_dir / "formats" / INFORM
    if not path.exists():
        pytest.skip(f"{path} not found")
    return pd.read_csv(path)


def one_sentence(message: str | None) -> str:
    assert message is not None
    assert "\n" not in message and "Traceback" not in message, message
    return message


def grid(n_side: int = 20, spacing: float = 10.0, sample: str | None = None) -> pd.DataFrame:
    """``n_side``² cells on a square grid ``spacing`` µm apart, three labels."""
    gx, gy = np.meshgrid(np.arange(n_side), np.arange(n_side))
    n = n_side * n_side
    frame = pd.DataFrame({
        "x": gx.ravel() * spacing, "y": gy.ravel() * spacing,
        "cell_type": np.array(["Tumor", "CD8_T", "B"])[np.arange(n) % 3],
        "CD8": np.linspace(0.0, 1.0, n),
    })
    if sample is not None:
        frame.insert(0, "sample", sample)
    return frame


# --- the export's own tissue class is carried through ------------------------------------


def test_inform_tissue_category_is_carried_cell_by_cell(data_dir: Path) -> None:
    raw = inform_raw(data_dir)
    (sample,) = read_samples([data_dir / "formats" / INFORM], CFG)
    assert sample.ok, sample.error
    cells = sample.cells
    assert "Tissue Category" not in cells.columns
    assert len(cells) == len(raw) == 6072
    # rows keep file order within the one sample: compare cell by cell with the raw column
    assert cells["cell_id"].tolist() == raw["Cell ID"].astype(str).tolist()
    assert cells[TISSUE_CATEGORY].tolist() == raw["Tissue Category"].tolist()
    assert set(cells[TISSUE_CATEGORY]) == {"Tumor", "Stroma"}


def test_halo_classifier_label_becomes_tissue_category(data_dir: Path) -> None:
    path = data_dir / "formats" / "tiny_halo.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    raw = pd.read_csv(path, encoding="utf-8-sig")
    (sample,) = read_samples([path], CFG)
    assert sample.ok, sample.error
    assert sample.cells[TISSUE_CATEGORY].tolist() == raw["Classifier Label"].tolist()


# --- text in a marker column ---------------------------------------------------------------


def test_text_in_a_marker_column_warns_with_rows_and_values(data_dir: Path,
                                                            tmp_path: Path) -> None:
    raw = inform_raw(data_dir)
    marker = "Entire Cell CD8 (Opal 540) Mean"
    assert pd.api.types.is_float_dtype(raw[marker])
    bad_rows = [10, 500, 4000, 6000]  # 0-based data rows; file rows are these + 2
    edited = raw.copy()
    edited[marker] = edited[marker].astype(object)
    for i, value in zip(bad_rows, ["abc", "n.d.", "1,5", "high"], strict=True):
        edited.loc[i, marker] = value
    path = tmp_path / "cells.csv"
    edited.to_csv(path, index=False)
    (sample,) = read_samples([path], CFG)
    assert sample.ok, sample.error  # a warning, not an error
    texts = [w for w in sample.warnings if "holds text" in w]
    assert len(texts) == 1, sample.warnings
    message = one_sentence(texts[0])
    for part in (str(path), f"column '{marker}'", f"in 4 of {len(raw):,} rows",
                 "rows 12 ('abc'), 502 ('n.d.'), 4002 ('1,5') and 1 more",
                 "not used as a marker", "drop the column"):
        assert part in message, (part, message)
    # the column is kept as it is in the file (text), so it is not numeric
    assert not pd.api.types.is_numeric_dtype(sample.cells[marker])
    assert sample.cells[marker].iloc[10] == "abc"
    # the other markers are untouched numbers
    other = "Entire Cell PD1 (Opal 650) Mean"
    np.testing.assert_allclose(sample.cells[other].to_numpy(float), raw[other].to_numpy())


def test_unmodified_exports_give_no_text_warning(data_dir: Path) -> None:
    # the inForm export holds text columns (Path, Tissue Category, Phenotype): never reported
    (sample,) = read_samples([data_dir / "formats" / INFORM], CFG)
    assert not [w for w in sample.warnings if "holds text" in w], sample.warnings


@pytest.mark.parametrize(("n_numbers", "warned"), [(5, False), (6, True)])
def test_more_than_half_numbers_is_the_marker_rule(tmp_path: Path, n_numbers: int,
                                                   warned: bool) -> None:
    # 10 non-empty values: 5 numbers is a label column, 6 numbers a marker with text in it
    frame = grid(4).head(12).copy()
    values = [str(v) for v in range(n_numbers)] + ["x"] * (10 - n_numbers) + ["", ""]
    frame["CD3"] = values
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    (sample,) = read_samples([path], CFG)
    texts = [w for w in sample.warnings if "holds text" in w]
    assert bool(texts) is warned, sample.warnings
    if warned:
        first = 2 + n_numbers  # header is line 1, first data row is row 2
        assert f"in {10 - n_numbers} of 12 rows" in texts[0]
        assert f"rows {first} ('x'), {first + 1} ('x'), {first + 2} ('x')" in texts[0]


def test_text_warning_is_per_sample(tmp_path: Path) -> None:
    frame = pd.concat([grid(5, sample="S1"), grid(5, sample="S2")], ignore_index=True)
    frame["CD8"] = frame["CD8"].astype(object)
    frame.loc[30, "CD8"] = "oops"  # row 30 belongs to S2 (rows 25..49); file row 32
    path = tmp_path / "two.csv"
    frame.to_csv(path, index=False)
    s1, s2 = read_samples([path], CFG)
    assert not [w for w in s1.warnings if "holds text" in w]
    (text,) = [w for w in s2.warnings if "holds text" in w]
    assert "sample 'S2'" in text and "in 1 of 25 rows (row 32 ('oops'))" in text


# --- two inputs with the same sample name -------------------------------------------------


def test_same_sample_in_two_files_fails_in_both(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    grid(5).to_csv(tmp_path / "a" / "S1.csv", index=False)
    grid(6).to_csv(tmp_path / "b" / "S1.csv", index=False)
    grid(5).to_csv(tmp_path / "b" / "S2.csv", index=False)
    samples = read_samples([tmp_path / "a", tmp_path / "b"], CFG)
    by = {(s.name, s.source.parent.name): s for s in samples}
    assert by[("S2", "b")].ok
    for own, other in (("a", "b"), ("b", "a")):
        s = by[("S1", own)]
        assert not s.ok and s.cells is None and s.checksum == ""
        message = one_sentence(s.error)
        assert message.startswith(str(tmp_path / own / "S1.csv")), message
        for part in ("sample 'S1'", str(tmp_path / other / "S1.csv"), "unique",
                     "none of them is analysed", "rename"):
            assert part in message, (part, message)


def test_same_sample_column_value_in_two_files(tmp_path: Path) -> None:
    grid(5, sample="P7").to_csv(tmp_path / "x.csv", index=False)
    pd.concat([grid(5, sample="P7"), grid(5, sample="P8")]).to_csv(tmp_path / "y.csv",
                                                                    index=False)
    samples = read_samples([tmp_path / "x.csv", tmp_path / "y.csv"], CFG)
    assert [(s.name, s.ok) for s in samples] == [("P7", False), ("P7", False), ("P8", True)]
    assert "y.csv" in samples[0].error and "x.csv" in samples[1].error
    assert "[columns] sample" in samples[0].error


def test_same_file_given_twice(tmp_path: Path) -> None:
    grid(5).to_csv(tmp_path / "S1.csv", index=False)
    samples = read_samples([tmp_path / "S1.csv", tmp_path], CFG)
    assert len(samples) == 2 and not any(s.ok for s in samples)
    assert "given more than once" in samples[0].error and "give each file once" in \
        samples[0].error


def test_validate_lists_both_duplicates(tmp_path: Path) -> None:
    grid(5).to_csv(tmp_path / "S1.csv", index=False)
    grid(5).to_csv(tmp_path / "S1.tsv", sep="\t", index=False)
    problems = validate_inputs([tmp_path / "S1.csv", tmp_path / "S1.tsv"], CFG)
    errors = [p for p in problems if p.severity == "error"]
    assert [Path(p.file).name for p in errors] == ["S1.csv", "S1.tsv"]
    assert all(p.sample == "S1" for p in errors)


# --- coordinate range ------------------------------------------------------------------------


def test_one_coordinate_of_1e12_names_row_value_and_column(tmp_path: Path) -> None:
    frame = grid(20)
    frame.loc[123, "y"] = 1e12
    path = tmp_path / "far.csv"
    frame.to_csv(path, index=False)
    (sample,) = read_samples([path], CFG)
    message = one_sentence(sample.error)
    for part in ("column 'y' (y coordinate)", "at row 125", "1000000000000.0",
                 "100,000 µm (10 cm)", "fix or remove that row"):
        assert part in message, (part, message)


def test_all_coordinates_scaled_by_1e9_suggest_um_per_unit(tmp_path: Path) -> None:
    frame = grid(20, spacing=10.0)
    frame[["x", "y"]] *= 1e9
    path = tmp_path / "nm.csv"
    frame.to_csv(path, index=False)
    (sample,) = read_samples([path], CFG)
    message = one_sentence(sample.error)
    # true spacing 10 µm, file spacing 1e10 units: 1e-9 µm per unit puts cells 10 µm apart
    extent = 19 * 10.0 * 1e9
    for part in ("column 'x' (x coordinate)", f"spans {extent:.3g} µm", "um_per_unit = 1 ",
                 "from row 2 to row 21", "um_per_unit = 1e-09 would put cells about 10 µm"):
        assert part in message, (part, message)
    fixed = read_samples([path], Config(min_cells=1, um_per_unit=1e-9))[0]
    assert fixed.ok, fixed.error
    np.testing.assert_allclose(fixed.cells["x"].max(), 190.0)


@pytest.mark.parametrize(("span", "ok"), [(MAX_EXTENT_UM, True), (MAX_EXTENT_UM + 1, False)])
def test_extent_limit_is_inclusive(tmp_path: Path, span: float, ok: bool) -> None:
    # a 75 mm slide fits; the limit itself is allowed, one µm more is not
    frame = grid(5)
    frame.loc[24, "x"] = span
    frame.to_csv(tmp_path / "s.csv", index=False)
    (sample,) = read_samples([tmp_path / "s.csv"], CFG)
    assert sample.ok is ok, sample.error


def test_extent_is_checked_after_um_per_unit(tmp_path: Path) -> None:
    frame = grid(5)
    frame.loc[24, "x"] = 150_000.0  # pixels of 0.5 µm: 75,000 µm, a whole slide
    frame.to_csv(tmp_path / "px.csv", index=False)
    assert not read_samples([tmp_path / "px.csv"], CFG)[0].ok
    assert read_samples([tmp_path / "px.csv"], Config(min_cells=1, um_per_unit=0.5))[0].ok


def test_huge_coordinates_fail_alone_through_the_cli(tmp_path: Path) -> None:
    good = grid(20, sample="S1")
    bad = grid(20, sample="S2")
    bad[["x", "y"]] *= 1e9
    path = tmp_path / "cohort.csv"
    pd.concat([good, bad]).to_csv(path, index=False)
    done = CliRunner().invoke(app, ["validate", str(path)])
    assert done.exit_code == 1, done.output
    assert "Traceback" not in done.output
    assert "sample 'S2'" in done.output and "um_per_unit" in done.output
    assert "1 errors" in done.output


# --- clinical table -------------------------------------------------------------------------


def write_clinical(tmp_path: Path, **columns: list) -> Path:
    path = tmp_path / "clinical.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def test_clean_clinical_table_has_no_problem(tmp_path: Path) -> None:
    path = write_clinical(tmp_path, sample=["a", "b", "c", "d"],
                          response=["responder", "non-responder", "responder", None],
                          os_time=[10.5, 3, 0, None], os_event=[1, 0, 0, None])
    assert validate_clinical(path, Config()) == []


def test_duplicated_clinical_sample_is_an_error(tmp_path: Path) -> None:
    path = write_clinical(tmp_path, sample=["a", "b", "a"], response=["R", "NR", "R"])
    (problem,) = validate_clinical(path, Config())
    assert problem.severity == "error"
    assert "sample 'a' has more than one row (rows 2, 4)" in one_sentence(problem.message)


def test_response_with_other_than_two_labels_warns_with_labels(tmp_path: Path) -> None:
    path = write_clinical(tmp_path, sample=list("abcde"),
                          response=["mixed", "cold", "compartmentalized", "mixed", "cold"])
    (problem,) = validate_clinical(path, Config())
    assert problem.severity == "warning"
    message = one_sentence(problem.message)
    for part in (str(path), "'response'", "'mixed' (2)", "'cold' (2)",
                 "'compartmentalized' (1)", "responder_values"):
        assert part in message, (part, message)


def test_two_labels_are_a_contrast_and_three_labels_warn(tmp_path: Path) -> None:
    # any two-level condition is a contrast (cohort.matrix → io.clinical.response_contrast)
    path = write_clinical(tmp_path, sample=list("abcd"),
                          response=["mixed", "compartmentalized"] * 2)
    assert validate_clinical(path, Config()) == []
    path = write_clinical(tmp_path, sample=list("abcdef"),
                          response=["mixed", "compartmentalized", "cold"] * 2)
    (problem,) = validate_clinical(path, Config())
    assert problem.severity == "warning" and "3 labels" in problem.message
    assert "'mixed' (2)" in problem.message
    named = Config(clinical=ClinicalColumns(responder_values=("mixed",)))
    assert validate_clinical(path, named) == []


def test_non_numeric_os_time_and_bad_events_name_rows(tmp_path: Path) -> None:
    path = write_clinical(tmp_path, sample=list("abcde"),
                          os_time=[12, "12 months", 3, -1, None],
                          os_event=[0, 1, 2, "yes", 1])
    problems = validate_clinical(path, Config())
    assert [p.severity for p in problems] == ["error", "error"]
    time, event = (one_sentence(p.message) for p in problems)
    assert "column 'os_time'" in time and "rows 3 ('12 months'), 5 ('-1')" in time
    assert "column 'os_event'" in event and "rows 4 ('2'), 5 ('yes')" in event
    assert "1 (event) or 0 (censored)" in event


def test_os_time_without_event_column(tmp_path: Path) -> None:
    path = write_clinical(tmp_path, sample=list("ab"), os_time=[1, 2])
    (problem,) = validate_clinical(path, Config())
    assert problem.severity == "error" and "no event column 'os_event'" in problem.message


def test_validate_inputs_appends_clinical_problems(tmp_path: Path) -> None:
    grid(5).to_csv(tmp_path / "S1.csv", index=False)
    clinical = write_clinical(tmp_path, sample=["S1", "S1"])
    problems = validate_inputs([tmp_path / "S1.csv"], CFG, clinical=clinical)
    assert [(p.severity, Path(p.file).name) for p in problems] == [("error", "clinical.csv")]


def test_real_patient_table_is_clean(data_dir: Path) -> None:
    path = data_dir / "cells" / "melanoma_responders_spicyR.patients.csv"
    with path.open() as handle:
        header = handle.readline().strip().split(",")
    config = Config(clinical=ClinicalColumns(sample=header[0], response="condition"))
    problems = validate_clinical(path, config)
    assert [p for p in problems if p.severity == "error"] == []

