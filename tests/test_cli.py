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


def test_validate_checks_the_clinical_table(simulated, tmp_path):
    good = metaniche("validate", str(simulated / "cells"), "--clinical",
                     str(simulated / "clinical.csv"))
    assert good.returncode == 0, good.stdout + good.stderr
    bad = tmp_path / "clinical.csv"
    table = pd.read_csv(simulated / "clinical.csv")
    table.assign(os_time=["soon", *table["os_time"].iloc[1:].astype(str).tolist()]).to_csv(
        bad, index=False)
    done = metaniche("validate", str(simulated / "cells"), "--clinical", str(bad))
    assert done.returncode == 1
    text = " ".join(done.stdout.split())
    assert "clinical.csv" in text and "os_time" in text and "'soon'" in text
    assert "1 errors" in text and "Traceback" not in done.stdout + done.stderr
    alone = metaniche("validate", "--clinical", str(bad))
    assert alone.returncode == 1 and "os_time" in " ".join(alone.stdout.split())


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


# --- usage and configuration errors: exit 2, one line naming the problem, no traceback -------

def call(*args: str, capsys) -> tuple[int, str, str]:
    """Run the console entry point in this process; return (exit code, stdout, stderr)."""
    from metaniche.cli import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    out = capsys.readouterr()
    code = done.value.code
    return (0 if code is None else int(code)), out.out, out.err


def test_version_prints_the_package_version(capsys):
    from metaniche import __version__

    code, out, _ = call("--version", capsys=capsys)
    assert code == 0 and out.strip() == f"metaniche {__version__}"


@pytest.mark.parametrize(("args", "message"), [
    (["run"], "Missing argument 'inputs'"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["validate", "--nope", "x"], "No such option: --nope"),
    (["run", "x", "--out", "o", "--workers", "zero"], "Invalid value for '--workers'"),
    (["run", "x", "--out", "o", "--workers", "0"], "--workers"),
    (["validate"], "give cell-table files or folders, --clinical, or --config"),
])
def test_usage_errors_are_one_line_plus_usage(capsys, args, message):
    code, out, err = call(*args, capsys=capsys)
    assert code == 2
    assert "Traceback" not in out + err
    assert err.lstrip().startswith("Usage: metaniche")
    (line,) = [line for line in err.splitlines() if line.startswith("Error:")]
    assert message in line


def test_out_pointing_at_a_file_is_a_usage_error(capsys, tmp_path):
    existing = tmp_path / "features.csv"
    existing.write_text("x\n")
    code, out, err = call("run", str(tmp_path), "--out", str(existing), capsys=capsys)
    assert code == 2 and "Traceback" not in out + err
    assert f"{existing} is a file, not a directory" in " ".join(err.split())
    code, _, err = call("run", str(tmp_path), "--out", str(existing / "run"), capsys=capsys)
    assert code == 2 and f"because {existing} is a file" in " ".join(err.split())


@pytest.mark.parametrize("address", ["garbage", "tcp://host", "tcp:/host:8786", "host:99999",
                                     "http://host:8786", "tcp://host:port"])
def test_malformed_scheduler_address_is_a_usage_error(capsys, tmp_path, address):
    code, out, err = call("run", str(tmp_path), "--out", str(tmp_path / "o"), "--scheduler",
                          address, capsys=capsys)
    assert code == 2 and "Traceback" not in out + err
    assert f"{address!r} is not a Dask scheduler address" in " ".join(err.split())
    assert not (tmp_path / "o").exists()


def test_well_formed_scheduler_addresses_pass_the_check():
    from metaniche.cli import _check_scheduler

    for address in ["tcp://127.0.0.1:8786", "localhost:8786", "tls://node-3.cluster:8786",
                    "tcp://[::1]:8786"]:
        _check_scheduler(address)


BAD_CONFIG = """
[relations]
count_within_um = -10
contact_radius_um = 0
n_permutations = -5
graph = "bogus"
[cohort]
confidence = 1.0
[compartments]
border_um = -5
"""
BAD_KEYS = ["`[relations] count_within_um`", "`[relations] contact_radius_um`",
            "`[relations] n_permutations`", "`[relations] graph`", "`[cohort] confidence`",
            "`[compartments] border_um`"]


def test_validate_config_alone_reports_every_bad_value(capsys, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(BAD_CONFIG)
    code, out, err = call("validate", "--config", str(config), capsys=capsys)
    assert code == 2 and "Traceback" not in out + err
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(lines) == len(BAD_KEYS)
    for key in BAD_KEYS:
        assert sum(key in line for line in lines) == 1, key
    assert all(" must be " in line and "; got " in line for line in lines)
    good = tmp_path / "good.toml"
    good.write_text("[relations]\ncount_within_um = [5, 15]\n")
    code, out, _ = call("validate", "--config", str(good), capsys=capsys)
    assert code == 0 and "0 errors" in out


def test_validate_checks_the_config_before_reading_any_cell(capsys, tmp_path, monkeypatch):
    import metaniche.io

    def must_not_read(*args, **kwargs):
        raise AssertionError("inputs were read despite a bad configuration")

    monkeypatch.setattr(metaniche.io, "validate_inputs", must_not_read)
    config = tmp_path / "bad.toml"
    config.write_text(BAD_CONFIG)
    code, out, _ = call("validate", str(tmp_path), "--config", str(config), capsys=capsys)
    assert code == 2 and "inputs not checked" in out


def test_run_with_a_bad_config_exits_2_before_any_sample(simulated, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(BAD_CONFIG)
    out = tmp_path / "o"
    done = metaniche("run", str(simulated / "cells"), "--out", str(out), "--config",
                     str(config))
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    for key in BAD_KEYS:
        assert sum(key in line for line in done.stderr.splitlines()) == 1, key
    assert not out.exists()  # nothing analysed, nothing written


def test_help_documents_the_exit_codes(capsys):
    code, out, _ = call("--help", capsys=capsys)
    text = " ".join(out.split())
    assert code == 0
    assert "Exit codes: 0 everything succeeded; 1 a sample or a run-level step failed" in text
    assert "2 usage or configuration error" in text
