"""Crash safety: a run killed at any point, a damaged output, a lost worker, two runs at once.

The kills are real: :data:`metaniche.sample.CRASH_ENV` makes the process running a chosen
sample (or the run-level part) ``os._exit`` at a chosen point, as ``kill -9`` would. Every
rerun is compared with an uninterrupted run of the same cohort, table by table.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from metaniche.config import load_config
from metaniche.pipeline import run
from metaniche.rundir import RunDir
from metaniche.sample import CRASH_ENV
from metaniche.simulate import simulate_cohort, write_cohort

SRC = Path(__file__).resolve().parents[1] / "src"
SAMPLES = ["S01", "S02", "S03"]
#: Tables that hold rows of every analysed sample (others, e.g. aggregates, may not).
EVERY_SAMPLE = {"composition", "compartments", "distances", "enrichment", "gradients"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    samples, clinical = simulate_cohort(n_samples=len(SAMPLES), n_cells=3_000, seed=3)
    return write_cohort(tmp_path_factory.mktemp("cohort"), samples, clinical)


def run_cli(cohort: Path, out: Path, *extra: str, crash: str | None = None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop(CRASH_ENV, None)
    if crash:
        env[CRASH_ENV] = crash
    args = [sys.executable, "-m", "metaniche", "run", str(cohort / "cells"), "--out", str(out),
            "--config", str(cohort / "config.toml"), "--clinical",
            str(cohort / "clinical.csv"), "--quiet", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)


def rerun(cohort: Path, out: Path):
    """A plain rerun, in this process."""
    return run([cohort / "cells"], out, load_config(cohort / "config.toml"),
               clinical=cohort / "clinical.csv")


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory) -> Path:
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    done = run_cli(cohort, out)
    assert done.returncode == 0, done.stderr
    return out


def assert_same_as(expected: Path, actual: Path) -> None:
    """Every sample in every table, and every table equal to the uninterrupted run's."""
    manifest = json.loads((actual / "run.json").read_text())
    assert {n: r["status"] in ("ok", "skipped") for n, r in manifest["samples"].items()} == {
        n: True for n in SAMPLES}
    pd.testing.assert_frame_equal(pd.read_parquet(expected / "features.parquet"),
                                  pd.read_parquet(actual / "features.parquet"))
    tables = sorted((expected / "tables").glob("*.parquet"))
    assert [p.name for p in tables] == sorted(p.name for p in (actual / "tables").glob("*"))
    for path in tables:
        table = pd.read_parquet(actual / "tables" / path.name)
        pd.testing.assert_frame_equal(pd.read_parquet(path), table, obj=path.name)
        if path.stem in EVERY_SAMPLE:
            assert set(table["sample"]) == set(SAMPLES), path.name
    for path in [*sorted((expected / "cells").glob("*")), *sorted((expected / "cohort").glob("*"))]:
        relative = path.relative_to(expected)
        pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(actual / relative),
                                      obj=str(relative))
    for name in SAMPLES:
        for suffix in ("map.png", "map.zoom.png", "map.zoom.json"):
            # a small sample has no zoomable copy (report.zoom.zoom_adds_detail): then the
            # interrupted run must not have one either
            relative = Path("report") / "figures" / f"{name}.{suffix}"
            assert (expected / relative).is_file() == (actual / relative).is_file(), relative
            if (expected / relative).is_file():
                assert (expected / relative).read_bytes() == (actual / relative).read_bytes()
        assert (actual / "report" / f"{name}.html").is_file()
    assert (actual / "report" / "index.html").is_file()
    assert not [p for p in actual.rglob("*") if p.name.endswith(".tmp")]
    assert not (actual / ".lock").exists()
    # One generation per sample: nothing a killed run left behind.
    assert all(len(list((actual / ".samples" / n).glob("gen-*"))) == 1 for n in SAMPLES)


@pytest.mark.parametrize("point", [
    "analysed:S02",     # mid-sample: nothing of the new analysis written yet
    "written:S02",      # the new generation written, not switched to
    "done:S02",         # switched and published, the rest of the cohort not yet run
    "gathered:run",     # cohort tables written, features not
    "report:run",       # features and cohort steps written, report and run.json not
])
def test_forced_rerun_killed_at_any_point_then_rerun_equals_uninterrupted(
        cohort, reference, tmp_path, point):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    killed = run_cli(cohort, out, "--force", crash=point)
    assert killed.returncode == 70, killed.stderr   # it did die at the point
    result = rerun(cohort, out)
    assert result.failed == [] and result.failed_steps == []
    # Every sample kept complete outputs (the old ones or the new ones): nothing recomputed.
    assert {name: rec.status for name, rec in result.samples.items()} == dict.fromkeys(
        SAMPLES, "skipped")
    assert all(rec.warnings == [] for rec in result.samples.values())
    assert_same_as(reference, out)


def test_first_run_killed_mid_sample_leaves_nothing_half_visible(cohort, reference, tmp_path):
    out = tmp_path / "run"
    killed = run_cli(cohort, out, crash="mapped:S02")
    assert killed.returncode == 70
    # S01 finished; S02's generation was written but never switched to: it is invisible.
    assert (out / "cells" / "S01.parquet").is_file()
    assert not (out / "cells" / "S02.parquet").exists()
    assert not (out / ".samples" / "S02" / "done.json").exists()
    result = rerun(cohort, out)
    assert {n: r.status for n, r in result.samples.items()} == {
        "S01": "skipped", "S02": "ok", "S03": "ok"}
    assert_same_as(reference, out)


def test_damaged_outputs_are_recomputed_or_restored_with_a_warning(cohort, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    rundir = RunDir(out)
    # S03: its cells file and the cache's copy truncated in place.
    for path in (out / "cells" / "S03.parquet", rundir.generation_dir("S03") / "cells.parquet"):
        with open(path, "r+b") as handle:
            handle.truncate(1000)
    # S01: one of its cached tables truncated.
    table = rundir.sample_table_path("S01", "composition")
    table.write_bytes(table.read_bytes()[:200])
    # S02: its published cells file replaced by garbage (the cache's copy is intact).
    cells = out / "cells" / "S02.parquet"
    cells.unlink()
    cells.write_bytes(b"not parquet")
    result = rerun(cohort, out)
    statuses = {n: r.status for n, r in result.samples.items()}
    assert statuses == {"S01": "ok", "S02": "skipped", "S03": "ok"}
    (s01,), (s02,), (s03,) = (result.samples[n].warnings for n in SAMPLES)
    assert "composition.arrow" in s01 and "recomputed" in s01
    assert "cells/S02.parquet" in s02 and "restored" in s02
    assert "cells.parquet" in s03 and "recomputed" in s03
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["samples"]["S01"]["warnings"] == [s01]
    assert_same_as(reference, out)
    # Once repaired, a rerun has nothing to say.
    assert all(r.warnings == [] for r in rerun(cohort, out).samples.values())


def test_a_worker_killed_once_is_retried_and_the_run_completes(cohort, reference, tmp_path):
    out = tmp_path / "run"
    marker = tmp_path / "died-once"
    done = run_cli(cohort, out, "--workers", "2", crash=f"sample:S02:{marker}")
    assert marker.exists(), "the worker must have died once"
    assert done.returncode == 0, done.stderr
    assert_same_as(reference, out)


def test_a_sample_that_always_kills_its_worker_fails_alone_and_the_run_resumes(
        cohort, reference, tmp_path):
    out = tmp_path / "run"
    done = run_cli(cohort, out, "--workers", "2", crash="analysed:S02")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    manifest = json.loads((out / "run.json").read_text())
    statuses = {n: r["status"] for n, r in manifest["samples"].items()}
    assert statuses == {"S01": "ok", "S02": "failed", "S03": "ok"}
    error = manifest["samples"]["S02"]["error"]
    assert "worker process died" in error and "S02" in error
    assert f"failed: {error}" in " ".join(done.stderr.split())
    features = pd.read_parquet(out / "features.parquet")
    assert list(features["sample"]) == ["S01", "S03"]
    # The rerun resumes: only the lost sample is computed.
    result = rerun(cohort, out)
    assert {n: r.status for n, r in result.samples.items()} == {
        "S01": "skipped", "S02": "ok", "S03": "skipped"}
    assert_same_as(reference, out)


def test_a_second_run_on_the_same_directory_is_refused(cohort, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    with RunDir(out).lock():
        done = run_cli(cohort, out)
    assert done.returncode == 2
    assert f"in use by another metaniche run (pid {os.getpid()})" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    # A lock left by a killed run is taken over with a warning.
    (out / ".lock").write_text("999999999\n")
    done = run_cli(cohort, out)
    assert done.returncode == 0, done.stderr
    assert "did not finish" in done.stderr and "999999999" in done.stderr
    assert not (out / ".lock").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def dask_cluster(n_workers: int, crash: str | None = None, nanny: bool = False):
    """A Dask scheduler and workers in subprocesses; yields (address, scheduler, workers)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    # One task per worker at a time (Dask's default saturation 1.1 gives a 1-thread worker two
    # task slots): Dask charges a failure to every task on a dying worker, so a sample queued
    # beside the crashing one would otherwise share its fate at random under load.
    env = {**os.environ, "PYTHONPATH": str(SRC),
           "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
           "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"}
    if crash:
        env[CRASH_ENV] = crash
    dask = [sys.executable, "-m", "dask"]
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port",
                                  str(port), "--no-dashboard"], **quiet)
    processes = [scheduler]
    try:
        time.sleep(2)
        workers = [subprocess.Popen([*dask, "worker", address, "--nthreads", "1",
                                     "--nanny" if nanny else "--no-nanny", "--no-dashboard",
                                     "--host", "127.0.0.1"], **quiet)
                   for _ in range(n_workers)]
        processes += workers
        time.sleep(3)
        yield address, scheduler, workers
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_dask_scheduler_lost_mid_run_still_writes_run_json_and_a_rerun_resumes(
        cohort, reference, tmp_path):
    out = tmp_path / "run"
    with dask_cluster(1) as (address, scheduler, _):
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        env.pop(CRASH_ENV, None)
        process = subprocess.Popen(
            [sys.executable, "-m", "metaniche", "run", str(cohort / "cells"), "--out", str(out),
             "--config", str(cohort / "config.toml"), "--clinical", str(cohort / "clinical.csv"),
             "--quiet", "--scheduler", address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env)
        deadline = time.monotonic() + 300
        while not (out / ".samples" / "S01" / "done.json").exists():
            assert process.poll() is None and time.monotonic() < deadline, "no sample finished"
            time.sleep(0.05)
        scheduler.kill()
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    manifest = json.loads((out / "run.json").read_text())
    lost = [name for name, rec in manifest["samples"].items() if rec["status"] == "failed"]
    assert lost, "the scheduler died before the run finished"
    for name in lost:
        error = manifest["samples"][name]["error"]
        assert "connection to the Dask scheduler" in error and "rerun to resume" in error
        assert f"failed: {' '.join(error.split())}" in " ".join(stderr.split())
    # The rerun resumes: the sample the workers finished is not recomputed.
    result = rerun(cohort, out)
    assert result.samples["S01"].status == "skipped"
    assert_same_as(reference, out)


@pytest.mark.slow
def test_dask_sample_that_kills_every_worker_fails_alone(cohort, reference, tmp_path):
    out = tmp_path / "run"
    with dask_cluster(2, crash="analysed:S02", nanny=True) as (address, _, _):
        done = run_cli(cohort, out, "--scheduler", address)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    manifest = json.loads((out / "run.json").read_text())
    assert {n: r["status"] for n, r in manifest["samples"].items()} == {
        "S01": "ok", "S02": "failed", "S03": "ok"}
    assert "Dask workers running it died repeatedly" in manifest["samples"]["S02"]["error"]
    result = rerun(cohort, out)
    assert {n: r.status for n, r in result.samples.items()} == {
        "S01": "skipped", "S02": "ok", "S03": "skipped"}
    assert_same_as(reference, out)
