"""The command line: exit codes, one-line errors without tracebacks, the demo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


def metaniche(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metaniche", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    done = metaniche("simulate", "--out", str(out), "--samples", "2", "--cells", "3000",
                     "--seed", "3")
    assert done.returncode == 0, done.stderr
    return out


def test_simulate_writes_cells_truth_and_clinical(simulated):
    assert sorted(p.name for p in (simulated / "cells").iterdir()) == ["S01.parquet",
                                                                      "S02.parquet"]
    assert (simulated / "clinical.csv").is_file()
    assert (simulated / "truth" / "samples.csv").is_file()


def test_validate_clean_inputs_exits_zero(simulated):
    done = metaniche("validate", str(simulated / "cells"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 errors" in done.stdout


def test_validate_prints_every_problem_and_exits_nonzero(tmp_path):
    (tmp_path / "nocoords.csv").write_text("cell_id,cell_type\n1,Tumor\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "notes.docx").write_text("x")
    done = metaniche("validate", str(tmp_path / "nocoords.csv"), str(tmp_path / "empty.csv"),
                     str(tmp_path / "notes.docx"))
    assert done.returncode == 1
    text = " ".join(done.stdout.split())  # undo the console's line wrapping
    assert "nocoords.csv" in text and "'x'" in text
    assert "empty.csv" in text and "empty" in text
    assert "notes.docx" in text and "unsupported" in text
    assert "Traceback" not in done.stdout + done.stderr


def test_unknown_config_key_is_one_clear_error(simulated, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[compartments]\nborder_width = 50\n")
    done = metaniche("run", str(simulated / "cells"), "--out", str(tmp_path / "o"),
                     "--config", str(config))
    assert done.returncode == 2
    assert "unknown key 'compartments.border_width'" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_exit_code_reports_a_failed_sample(simulated, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y,cell_type\n1,2,Tumor\n")  # one cell: too few to analyse
    done = metaniche("run", str(simulated / "cells"), str(bad), "--out", str(tmp_path / "o"),
                     "--quiet")
    assert done.returncode == 1
    features = pd.read_parquet(tmp_path / "o" / "features.parquet")
    assert list(features["sample"]) == ["S01", "S02"]
    assert "Traceback" not in done.stderr


def test_report_rerenders_without_recomputing(simulated, tmp_path):
    out = tmp_path / "o"
    assert metaniche("run", str(simulated / "cells"), "--out", str(out), "--quiet"
                     ).returncode == 0
    index = out / "report" / "index.html"
    index.unlink()
    cells_mtime = (out / "cells" / "S01.parquet").stat().st_mtime_ns
    done = metaniche("report", str(out))
    assert done.returncode == 0, done.stderr
    assert index.is_file()
    assert (out / "cells" / "S01.parquet").stat().st_mtime_ns == cells_mtime


def test_report_of_a_non_run_directory_is_a_clear_error(tmp_path):
    done = metaniche("report", str(tmp_path))
    assert done.returncode == 2
    assert "no run.json" in done.stderr


def test_demo_runs_end_to_end(tmp_path):
    done = metaniche("demo", "--out", str(tmp_path / "demo"), "--samples", "3", "--cells",
                     "3000")
    assert done.returncode == 0, done.stderr
    assert "report" in done.stdout
    assert (tmp_path / "demo" / "run" / "report" / "index.html").is_file()
    features = pd.read_parquet(tmp_path / "demo" / "run" / "features.parquet")
    assert len(features) == 3
