"""Benchmark: one power grid cell of 200 simulated studies x 20 patients x 3 cores.

Issue 22 target: < 10 minutes on the 2-core machine (``metaniche power`` with 2 workers).
Each study simulates 20 patients before and after treatment (``cd8_core_infiltration``
x1.5, 10,000-cell slides), cuts 3 needle cores (1000 x 10,000 µm) per slide, runs every
core through the per-sample chain (compartments + composition) and the cohort step's paired
test. The run goes through :func:`metaniche.studies.power.run_power`, the code path of the
command. ``--sizes small`` runs 4 studies x 6 patients on 4,000-cell slides (a smoke test).
Writes results/power.json (wall seconds, seconds per study, the mean wall seconds one study
took inside its worker, power of the cell, and the
1-minute load average before and after: other jobs on the machine slow the run).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import write_results
from metaniche.studies.design import DesignParams
from metaniche.studies.power import run_power
from metaniche.studies.remodel import RemodelParams

FULL = {"n_studies": 200, "n_patients": 20, "cores": 3, "n_cells": 10_000, "workers": 2}
SMALL = {"n_studies": 4, "n_patients": 6, "cores": 3, "n_cells": 4_000, "workers": 2}


def bench(n_studies: int, n_patients: int, cores: int, n_cells: int, workers: int) -> dict:
    design = DesignParams(program="cd8_core_infiltration", effects=(1.5,),
                          n_patients=(n_patients,), cores_per_patient=(cores,),
                          core_diameter_um=1000.0, core_length_um=10_000.0,
                          n_studies=n_studies, seed=0, remodel=RemodelParams(n_cells=n_cells))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        table = run_power(design, Path(tmp), workers=workers)
        seconds = time.perf_counter() - started
    primary = table[table["feature"] == "density.core.CD8_T"].iloc[0]
    return {"n_studies": n_studies, "n_patients": n_patients, "cores": cores,
            "n_cells": n_cells, "workers": workers, "seconds": round(seconds, 1),
            "seconds_per_study": round(seconds / n_studies, 2),
            "worker_seconds_per_study": round(float(primary["seconds_per_study"]), 2),
            "power": float(primary["power"]), "target_seconds": 600,
            "load_1min_before": round(load_before, 2),
            "load_1min_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=("full", "small"), default="full")
    args = parser.parse_args()
    size = FULL if args.sizes == "full" else SMALL
    write_results("power" if args.sizes == "full" else "power_small", [bench(**size)])


if __name__ == "__main__":
    main()
