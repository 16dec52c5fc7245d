"""Progress of ``metaniche run``: a plain log line per sample-stage off a terminal, nothing
with --quiet, per-stage times in run.json, identical results with one or two workers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from metaniche.cli import app
from metaniche.executor import map_tasks
from metaniche.progress import RUN_STAGES, ProgressEvent, StageClock, sample_stage_names
from metaniche.simulate import simulate_cohort

CONFIG = """
[ligrec]
n_permutations = 0
[neighbourhoods]
n_neighbourhoods = 3
n_training = 300
"""
# A failed run-level step (here the cohort step: two samples, one response label) is logged as
# "run  cohort  failed after 0.47 s".
LINE = re.compile(r"^(?P<where>\S+)  (?P<stage>\S+)  (?:failed after )?(?P<seconds>\d+\.\d\d) s$")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("progress")
    samples, clinical = simulate_cohort(n_samples=2, n_cells=2000, seed=11)
    (root / "cells").mkdir()
    for sample in samples:
        sample.cells.to_parquet(root / "cells" / f"{sample.name}.parquet", index=False)
    clinical.to_csv(root / "clinical.csv", index=False)
    (root / "config.toml").write_text(CONFIG)
    return root


def metaniche_run(cohort: Path, out: Path, *args: str) -> Result:
    """``metaniche run`` through the command line (in this process, so worker processes are
    forked with the JIT-compiled kernels; stdout and stderr are captured, not terminals)."""
    return CliRunner().invoke(app, ["run", str(cohort / "cells"), "--out", str(out),
                                    "--config", str(cohort / "config.toml"),
                                    "--clinical", str(cohort / "clinical.csv"), *args])


@pytest.fixture(scope="module")
def runs(cohort) -> dict[int, tuple[Path, Result]]:
    """One run with one worker (in process) and one with two worker processes."""
    done = {}
    for workers in (1, 2):
        out = cohort / f"run{workers}"
        done[workers] = (out, metaniche_run(cohort, out, "--workers", str(workers)))
    return done


def stage_lines(stderr: str) -> dict[tuple[str, str], float]:
    """(sample or 'run', stage) → seconds of every plain stage line (each at most once)."""
    found = {}
    for line in stderr.splitlines():
        match = LINE.match(line.strip())
        if match:
            key = (match["where"], match["stage"])
            assert key not in found, f"stage logged twice: {line}"
            found[key] = float(match["seconds"])
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_plain_log_has_a_line_per_sample_and_stage(runs, workers):
    out, done = runs[workers]
    # Every sample succeeds; the cohort step fails (one response label), so the exit code is 1.
    assert done.exit_code == 1, done.stderr
    assert "failed: run-level step 'cohort'" in done.stderr
    lines = stage_lines(done.stderr)
    manifest = json.loads((out / "run.json").read_text())
    expected_stages = sample_stage_names()
    for sample, record in manifest["samples"].items():
        assert record["status"] == "ok"
        # Every stage ran, in order, timed in run.json and logged with the same time.
        assert list(record["stages"]) == expected_stages
        for stage, seconds in record["stages"].items():
            assert lines[(sample, stage)] == pytest.approx(seconds, abs=0.006)
        assert sum(record["stages"].values()) <= record["seconds"] + 0.01
        assert re.search(rf"^{sample}  ok  \d+\.\d\d s total$", done.stderr, re.M)
    run_stages = manifest["stages"]
    assert list(run_stages) == [s for s in RUN_STAGES if s in run_stages]
    assert {"gather", "cohort", "report"} <= set(run_stages)
    for stage in run_stages:
        assert ("run", stage) in lines
    assert len(lines) == len(manifest["samples"]) * len(expected_stages) + len(run_stages)
    assert "report:" in done.stdout  # the summary stays on stdout


def test_two_workers_give_identical_results(runs):
    (one, _), (two, _) = runs[1], runs[2]
    pd.testing.assert_frame_equal(pd.read_parquet(one / "features.parquet"),
                                  pd.read_parquet(two / "features.parquet"))
    for path in sorted((one / "tables").glob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(path),
                                      pd.read_parquet(two / "tables" / path.name))


def test_quiet_prints_nothing_and_keeps_stage_times(runs, cohort):
    out, _ = runs[2]
    before = json.loads((out / "run.json").read_text())
    done = metaniche_run(cohort, out, "--workers", "2", "--quiet")
    # --quiet silences progress, never failures: the failed cohort step is the only output.
    assert done.exit_code == 1, done.stderr
    assert done.stdout == ""
    assert not stage_lines(done.stderr)
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        line for line in done.stderr.splitlines() if line.startswith("failed: run-level step")]
    manifest = json.loads((out / "run.json").read_text())
    for sample, record in manifest["samples"].items():
        # Unchanged samples are skipped and keep the stage times of the run that made them.
        assert record["status"] == "skipped"
        assert record["stages"] == before["samples"][sample]["stages"]
    index = (out / "report" / "index.html").read_text()
    assert 'id="stage-times"' in index and ">communities</th>" in index


def _emit_task(item: int, emit) -> dict:
    clock = StageClock(f"s{item}", emit)
    for stage in ("a", "b"):
        with clock.stage(stage):
            pass
    return {"sample": f"s{item}", "stages": clock.seconds}


@pytest.mark.parametrize("workers", [1, 2])
def test_every_event_of_a_task_arrives_before_its_result(workers):
    events: list[ProgressEvent] = []
    for record in map_tasks(_emit_task, list(range(4)), workers, on_event=events.append):
        mine = [(e.stage, e.status) for e in events if e.sample == record["sample"]]
        assert mine == [("a", "started"), ("a", "finished"), ("b", "started"),
                        ("b", "finished")]
    assert len(events) == 16


def _chatty_task(item: int, emit) -> str:
    for k in range(2_000):      # ~200 KB of events: more than a pipe holds (64 KiB)
        emit(ProgressEvent(f"s{item}", f"stage{k}", "started"))
    return f"s{item}"


def test_more_events_than_a_pipe_holds_all_arrive_in_order_before_the_result():
    """Workers block on a full event pipe until this process drains it: no event is lost,
    none arrives after its task's result, and nothing deadlocks."""
    events: list[ProgressEvent] = []
    for sample in map_tasks(_chatty_task, [0, 1, 2], 2, on_event=events.append):
        mine = [int(e.stage[5:]) for e in events if e.sample == sample]
        assert mine == list(range(2_000))
    assert len(events) == 6_000


def test_failed_stage_is_reported_and_timed():
    events: list[ProgressEvent] = []
    clock = StageClock("s", events.append)
    with pytest.raises(ZeroDivisionError), clock.stage("bad"):
        1 / 0  # noqa: B018
    assert [(e.stage, e.status) for e in events] == [("bad", "started"), ("bad", "failed")]
    assert events[1].seconds == clock.seconds["bad"] >= 0
