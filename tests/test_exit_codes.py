"""Exit codes of ``metaniche run`` and the end-of-run failure lines, through the command line.

0 everything succeeded; 1 a sample or a run-level step failed or a run-level output could not
be written; 2 a usage or configuration error, or a run directory another run is using.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from metaniche import pipeline
from metaniche.cli import EXIT_CODES, main
from metaniche.cohort.steps import RunStep
from metaniche.errors import InputError
from metaniche.rundir import safe_name
from metaniche.simulate import simulate_cohort, write_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    samples, clinical = simulate_cohort(n_samples=2, n_cells=2_000, seed=11)
    return write_cohort(tmp_path_factory.mktemp("cohort"), samples, clinical)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the console entry point; return (exit code, stdout, stderr with lines joined)."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exited.value.code, out, " ".join(err.split())


def run_args(cohort: Path, out: Path, *extra) -> list:
    return ["run", cohort / "cells", "--out", out, "--config", cohort / "config.toml",
            "--quiet", *extra]


def test_exit_codes_are_documented():
    assert set(EXIT_CODES) == {0, 1, 2}


def test_all_ok_exits_0_and_prints_no_failure(cohort, tmp_path, capsys):
    code, _, err = cli(capsys, *run_args(cohort, tmp_path / "run"))
    assert code == 0, err
    assert "failed" not in err


def test_a_failed_sample_exits_1_and_is_printed(cohort, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for path in (cohort / "cells").glob("*.parquet"):
        (inputs / path.name).write_bytes(path.read_bytes())
    (inputs / "broken.parquet").write_bytes(b"PAR1 not really")
    code, out, err = cli(capsys, "run", inputs, "--out", tmp_path / "run", "--config",
                         cohort / "config.toml")
    assert code == 1
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    (failed,) = [rec for rec in manifest["samples"].values() if rec["status"] == "failed"]
    assert f"failed: {' '.join(failed['error'].split())}" in err
    assert "broken.parquet" in err
    assert "Traceback" not in err
    assert "2 of 3 samples done" in out


def test_a_failed_run_level_step_exits_1_and_is_printed(cohort, tmp_path, capsys, monkeypatch):
    def broken(state):
        raise InputError("clinical.csv: column 'arm' is not a response; set [clinical] response.")

    monkeypatch.setattr(pipeline, "RUN_STEPS", [*pipeline.RUN_STEPS,
                                                RunStep("broken", "broken_step", broken)])
    code, _, err = cli(capsys, *run_args(cohort, tmp_path / "run"))
    assert code == 1
    assert ("failed: run-level step 'broken_step': clinical.csv: column 'arm' is not a "
            "response; set [clinical] response.") in err
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["broken_step"]["status"] == "failed"
    assert all(rec["status"] == "ok" for rec in manifest["samples"].values())


def test_a_config_error_exits_2(cohort, tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[compartments]\nborder_um = -5\n")
    code, _, err = cli(capsys, "run", cohort / "cells", "--out", tmp_path / "run",
                       "--config", config)
    assert code == 2
    assert "border_um" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "run.json").exists()


def test_unwritable_run_json_is_a_clear_error_not_a_traceback(cohort, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "run.json").mkdir(parents=True)   # run.json cannot be written there
    code, _, err = cli(capsys, *run_args(cohort, out))
    assert code == 1
    assert f"error: {out / 'run.json'}: cannot write the run's outputs" in err
    assert "Traceback" not in err
    # The samples were analysed and are reused once the directory is fixed.
    (out / "run.json").rmdir()
    code, _, err = cli(capsys, *run_args(cohort, out))
    assert code == 0, err
    manifest = json.loads((out / "run.json").read_text())
    assert {rec["status"] for rec in manifest["samples"].values()} == {"skipped"}


def test_a_300_character_sample_name_runs_and_gets_its_report_page(cohort, tmp_path, capsys):
    name = "patient-" + "x" * 292
    cells = pd.read_parquet(next((cohort / "cells").glob("*.parquet")))
    cells["sample"] = name
    cells.to_parquet(tmp_path / "long.parquet")
    out = tmp_path / "run"
    code, _, err = cli(capsys, "run", tmp_path / "long.parquet", "--out", out, "--config",
                       cohort / "config.toml", "--quiet")
    assert code == 0, err
    stem = safe_name(name)
    assert len(stem) < 120
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["samples"][name]["file_name"] == stem
    assert (out / "cells" / f"{stem}.parquet").is_file()
    assert (out / "report" / f"{stem}.html").is_file()
    assert name in (out / "report" / "index.html").read_text()
