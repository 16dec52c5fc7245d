"""Benchmark: ``mn.tl.analyse`` on a 1M-cell AnnData beside ``metaniche run`` on the same cells.

Issue 16's target: the notebook call is no slower than the command line on the same sample.
Both run in fresh processes on the same simulated sample (``bench_pipeline``'s: three lesions,
TLS, 15 cell types, 14 markers), alternately ``--repeats`` times so that load on a shared
machine hits both alike; the table reports each one's median. ``run_s`` is the whole command
(reading, every stage, writing, report); ``run_analysis_s`` the sum of the run's per-sample
analysis stages from run.json (what ``mn.tl.analyse`` computes); ``api_s`` the
``mn.tl.analyse`` call alone (the AnnData is built from the Parquet file first, untimed);
``api_rss_mib`` the API process's peak resident memory; ``api_le_run_analysis`` is true when
the API call takes at most 10 % longer than the run's analysis stages (the timing noise of
repeated runs on this machine).

Usage: ``python benchmarks/bench_api.py [N_CELLS] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_results
from metaniche.stages import SAMPLE_STAGES

#: Per-sample stages of run.json that are analysis (not writing, maps or run-level steps):
#: building the compartments, then every registered stage (the registry is the one list).
ANALYSIS_STAGES = ("compartments", *(name for name, _, _ in SAMPLE_STAGES))

_API_CHILD = """
import sys, time, pandas as pd, anndata as ad, numpy as np
import metaniche as mn
cells = pd.read_parquet(sys.argv[1])
markers = [c for c in cells.columns if c not in ("sample", "cell_id", "x", "y", "cell_type")
           and pd.api.types.is_numeric_dtype(cells[c])]
obs = cells.drop(columns=markers).set_index("cell_id")
adata = ad.AnnData(X=cells[markers].to_numpy(np.float32), obs=obs)
adata.var_names = markers
adata.obsm["spatial"] = cells[["x", "y"]].to_numpy()
started = time.perf_counter()
mn.tl.analyse(adata, "cell_type")
print(time.perf_counter() - started)
"""


def _timed(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of a child process; raises if it fails."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    output = child.stdout.read() if child.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed")
    return seconds, usage.ru_maxrss / 1024, output


def bench(n_cells: int, repeats: int, tmp: Path) -> dict:
    """Median wall times of the command and the API call on one simulated sample."""
    from metaniche.simulate import simulate_sample

    path = tmp / "bench.parquet"
    simulate_sample("bench", n_cells=n_cells, seed=1, n_lesions=3,
                    with_tls=True).cells.to_parquet(path)
    runs, analyses, apis, rss = [], [], [], []
    for k in range(repeats):
        out = tmp / f"run{k}"
        seconds, _, _ = _timed([sys.executable, "-m", "metaniche", "run", str(path), "--out",
                                str(out), "--quiet", "--force"])
        runs.append(seconds)
        stages = next(iter(json.loads((out / "run.json").read_text())["samples"].values()))
        analyses.append(sum(stages["stages"].get(s, 0.0) for s in ANALYSIS_STAGES))
        _, peak, output = _timed([sys.executable, "-c", _API_CHILD, str(path)])
        apis.append(float(output.strip().splitlines()[-1]))
        rss.append(peak)
    api, run_analysis = statistics.median(apis), statistics.median(analyses)
    return {"n_cells": n_cells, "repeats": repeats, "run_s": round(statistics.median(runs), 1),
            "run_analysis_s": round(run_analysis, 1), "api_s": round(api, 1),
            "api_rss_mib": round(max(rss)), "api_le_run_analysis": api <= 1.1 * run_analysis}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_cells", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        row = bench(args.n_cells, args.repeats, Path(tmp))
    write_results("api" if args.n_cells == 1_000_000 else f"api_{args.n_cells}", [row])


if __name__ == "__main__":
    main()
