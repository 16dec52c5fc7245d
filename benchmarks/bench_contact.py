"""Benchmark: the contact test, all pairs of 10 types × 5 markers (issue 19).

A synthetic tissue at 3,000 cells/mm² (uniform positions, 10 equally common types, 5 log-normal
markers, a straight tumour border through the middle so that compartments, the distance spline
and the shuffle strata are all used) goes through :func:`metaniche.analyses.contact.
contact_effects`: every focus type × marker × partner type (10 × 5 × 9 = 450 tests), once
with the model only (``n_permutations = 0``) and once with the default nulls
(:attr:`metaniche.config.ContactParams.n_permutations` draws of each). Target (issue 19):
all pairs on a 1M-cell sample in < 30 s (``under_30s``, per row). Each row also records the
process CPU seconds (all threads), Numba's thread count, the machine's CPUs and its 1-minute
load average just before the run: on a shared machine the wall time depends on the load.

Run ``python benchmarks/bench_contact.py`` (1M cells; writes
``benchmarks/results/contact.json``) or ``--sizes small`` (20k cells, a smoke run that writes
``contact_small.json``); ``--n-cells N`` times one size (writes ``contact_N.json``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import measure, process_peak_rss_mib, write_results
from metaniche.analyses.compartments import compartment_of
from metaniche.analyses.contact import contact_effects
from metaniche.config import ContactParams, RelationsParams

SIZES = {"small": (20_000,), "full": (1_000_000,)}
DENSITY_PER_MM2 = 3000.0
N_TYPES, N_MARKERS = 10, 5


def tissue(n_cells: int, seed: int = 0) -> dict:
    """Synthetic sample: positions, labels, markers, signed distance, compartments."""
    rng = np.random.default_rng(seed)
    side = np.sqrt(n_cells / DENSITY_PER_MM2) * 1000.0
    xy = rng.random((n_cells, 2)) * side
    labels = np.array([f"T{k}" for k in range(N_TYPES)])[rng.integers(0, N_TYPES, n_cells)]
    markers = pd.DataFrame(rng.lognormal(0.0, 0.5, (n_cells, N_MARKERS)),
                           columns=[f"M{k}" for k in range(N_MARKERS)])
    signed = xy[:, 0] - side / 2
    return {"coordinates": xy, "labels": labels, "outcomes": markers,
            "signed_distance_um": signed, "compartment": compartment_of(signed, 100.0),
            "lesion_id": np.ones(n_cells, dtype=np.int64)}


def main() -> None:
    """Time all pairs per sample size, model only and with the default nulls."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=sorted(SIZES), default="full")
    parser.add_argument("--n-cells", type=int, default=0,
                        help="time this one sample size instead of --sizes")
    parser.add_argument("--no-write", action="store_true", help="print only")
    options = parser.parse_args()
    sizes = (options.n_cells,) if options.n_cells > 0 else SIZES[options.sizes]
    radius = RelationsParams().contact_radius_um
    rows = []
    for n_cells in sizes:
        sample = tissue(n_cells)
        for n_permutations in (0, ContactParams.n_permutations):
            load = os.getloadavg()[0]
            cpu = time.process_time()
            seconds, _, result = measure(
                lambda s=sample, k=n_permutations: contact_effects(
                    s["coordinates"], s["labels"], s["outcomes"], s["signed_distance_um"],
                    s["compartment"], s["lesion_id"], radius_um=radius, n_permutations=k),
                trace_memory=False)
            rows.append({"n_cells": n_cells, "n_permutations": n_permutations,
                         "n_tests": len(result.table), "seconds": round(seconds, 2),
                         "cpu_seconds": round(time.process_time() - cpu, 2),
                         "threads": numba.get_num_threads(), "cpus": os.cpu_count(),
                         "load_1min_before": round(load, 2),
                         "peak_rss_mib": round(process_peak_rss_mib(), 1),
                         "under_30s": seconds < 30})
    name = ("contact" if sizes == SIZES["full"] else "contact_small" if sizes == SIZES["small"]
            else f"contact_{sizes[0]}")
    if options.no_write:
        for row in rows:
            print(row)
    else:
        write_results(name, rows)


if __name__ == "__main__":
    main()
