"""Benchmark: the whole ``metaniche run`` on one large simulated sample (issue 9).

Target on the 2-core machine: a 1M-cell sample through every analysis, the run directory and
the report in < 60 s and < 4 GB peak resident memory; a 5M-cell sample completes
(``python benchmarks/bench_pipeline.py 5000000``).

The sample comes from the simulator (three lesions, TLS, all 15 cell types and 14 markers) and
is written to Parquet first; the run is a fresh ``python -m metaniche run`` process, so wall
time includes start-up, reading, every stage, writing and the report, and peak RSS is that
process's own high-water mark (``os.wait4`` rusage). Per-stage seconds come from run.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import write_results

SIZES = (1_000_000,)
TARGET_SECONDS = 60.0
TARGET_MIB = 4096.0


def _run_cli(cells_path: Path, out_dir: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit code of one ``metaniche run`` process."""
    command = [sys.executable, "-m", "metaniche", "run", str(cells_path), "--out",
               str(out_dir), "--quiet", "--force"]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    return seconds, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def _stage_seconds(out_dir: Path) -> dict[str, float]:
    """Per-stage seconds of the (single) sample and of the run-level steps, from run.json."""
    run = json.loads((out_dir / "run.json").read_text())
    stages: dict[str, float] = {}
    for record in run.get("samples", {}).values():
        stages.update(record.get("stages") or {})
    stages.update(run.get("stages") or {})
    return {name: round(float(value), 2) for name, value in stages.items()}


def bench(n_cells: int, tmp: Path) -> dict[str, Any]:
    """Simulate, write and run one sample of ``n_cells``; one result row."""
    from metaniche.simulate import simulate_sample

    cells = simulate_sample("bench", n_cells=n_cells, seed=1, n_lesions=3, with_tls=True).cells
    path = tmp / f"bench_{n_cells}.parquet"
    cells.to_parquet(path)
    del cells
    out_dir = tmp / f"run_{n_cells}"
    seconds, peak_mib, code = _run_cli(path, out_dir)
    row = {"n_cells": n_cells, "seconds": round(seconds, 1), "peak_rss_mib": round(peak_mib),
           "exit_code": code,
           # the time/memory targets are for 1M cells; larger samples must complete
           "pass": code == 0 and (n_cells > 1_000_000
                                  or (seconds < TARGET_SECONDS and peak_mib < TARGET_MIB))}
    if code == 0:
        row["stages"] = _stage_seconds(out_dir)
    return row


def main(sizes: tuple[int, ...] = SIZES) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench(n, Path(tmp)) for n in sizes]
    name = "pipeline" if sizes == SIZES else "pipeline_" + "_".join(map(str, sizes))
    write_results(name, rows)


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or SIZES)
