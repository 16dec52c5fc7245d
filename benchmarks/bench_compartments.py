"""Benchmark: tumour compartments and the whole per-sample chain at 10k / 100k / 1M cells.

Issue 2 target: compartments of a 1M-cell sample in < 20 s and < 3 GB on the 2-core machine.
Tissue comes from the simulator (3,000 cells/mm², three lesions). Each measurement runs in a
fresh process that only reads the cells and runs the step, so its peak RSS is the step's
honest footprint (Python + NumPy + the cell table).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import process_peak_rss_mib, write_results

SIZES = (10_000, 100_000, 1_000_000)
STEPS = ("compartments", "analyse_sample")


def _child(step: str, cells_path: str) -> None:
    import numpy as np
    import pandas as pd

    from metaniche.analyses.compartments import assign_compartments
    from metaniche.config import Config
    from metaniche.sample import analyse_sample

    cells = pd.read_parquet(cells_path)
    started = time.perf_counter()
    if step == "compartments":
        is_tumor = (cells["cell_type"] == "Tumor").to_numpy()
        assign_compartments(cells["x"].to_numpy(), cells["y"].to_numpy(), is_tumor,
                            np.zeros_like(is_tumor))
    else:
        analyse_sample(cells, Config())
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_rss_mib": process_peak_rss_mib()}))


def main(sizes: tuple[int, ...] = SIZES) -> None:
    from metaniche.simulate import simulate_sample

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_cells in sizes:
            cells = simulate_sample("bench", n_cells=n_cells, seed=1, n_lesions=3).cells
            path = Path(tmp) / f"cells_{n_cells}.parquet"
            cells.to_parquet(path)
            for step in STEPS:
                out = subprocess.run([sys.executable, __file__, "--child", step, str(path)],
                                     capture_output=True, text=True, check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append({"step": step, "n_cells": len(cells), **result})
    write_results("compartments", rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
    else:
        main(tuple(int(a) for a in sys.argv[1:]) or SIZES)
