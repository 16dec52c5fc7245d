"""Cohort scale: a real Dask cluster with a worker killed mid-run, and SIGKILL + resume.

Both compare against an uninterrupted local run of the same cohort and configuration.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from metaniche.simulate import simulate_cohort, write_cohort

N_SAMPLES = 6


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    samples, clinical = simulate_cohort(n_samples=N_SAMPLES, n_cells=10_000, seed=11)
    return write_cohort(tmp_path_factory.mktemp("cohort"), samples, clinical)


@pytest.fixture(scope="module")
def local_run(cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    done = run_cli(cohort, out)
    assert done.returncode == 0, done.stderr
    return out


def run_cli(cohort: Path, out: Path, *extra: str, background: bool = False):
    args = [sys.executable, "-m", "metaniche", "run", str(cohort / "cells"), "--out", str(out),
            "--config", str(cohort / "config.toml"), "--quiet", *extra]
    if background:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def finished_samples(out: Path) -> list[Path]:
    return sorted((out / ".samples").glob("*/done.json"))


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_same_outputs(expected: Path, actual: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_parquet(expected / "features.parquet"),
                                  pd.read_parquet(actual / "features.parquet"))
    for path in sorted((expected / "cells").glob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(path),
                                      pd.read_parquet(actual / "cells" / path.name))
    for path in sorted((expected / "tables").glob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(path),
                                      pd.read_parquet(actual / "tables" / path.name))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigkill_mid_cohort_then_rerun_skips_finished_samples(cohort, local_run, tmp_path):
    out = tmp_path / "killed"
    process = run_cli(cohort, out, background=True)
    try:
        wait_for(lambda: len(finished_samples(out)) >= 2 or process.poll() is not None,
                 300, "two finished samples")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in finished_samples(out)}
    assert 2 <= len(finished) < N_SAMPLES, "the kill must land mid-cohort"
    done = run_cli(cohort, out)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "run.json").read_text())
    statuses = {rec["file_name"]: rec["status"] for rec in manifest["samples"].values()}
    for name, mtime in finished.items():
        assert statuses[name] == "skipped"
        assert (out / ".samples" / name / "done.json").stat().st_mtime_ns == mtime
    assert sum(s == "ok" for s in statuses.values()) == N_SAMPLES - len(finished)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert_same_outputs(local_run, out)


def test_dask_cluster_with_a_worker_killed_mid_run_matches_local(cohort, local_run, tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "5"}
    dask = [sys.executable, "-m", "dask"]
    processes = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port",
                                   str(port), "--no-dashboard"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(2)
        workers = [subprocess.Popen([*dask, "worker", address, "--nthreads", "1",
                                     "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(2)]
        processes += workers
        time.sleep(3)
        out = tmp_path / "dask"
        run = run_cli(cohort, out, "--scheduler", address, background=True)
        processes.append(run)
        wait_for(lambda: len(finished_samples(out)) >= 1 or run.poll() is not None, 300,
                 "the first finished sample")
        assert run.poll() is None, "the run must still be going when the worker dies"
        workers[0].send_signal(signal.SIGKILL)
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr
        assert_same_outputs(local_run, out)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
