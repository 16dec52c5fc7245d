"""Benchmark: cellular-neighbourhood windows + CN assignment and aggregates / TLS / units.

Issue 6 target: CNs + aggregates of a 1M-cell sample in < 60 s. Tissue from the simulator
(3,000 cells/mm², TLS planted). Steps timed in this process after the context (compartments)
is built: ``windows`` (k = 10 compositions), ``cn_fit_assign`` (mini-batch k-means on a
5,000-window subsample, then every cell labelled), ``aggregates`` (one radius query, B/T
clusters, TLS grade and the default units). Ligand–receptor (999 permutations) is timed
separately on a 20k-cell sample (issue target < 1.5 s).
"""

from __future__ import annotations

import dataclasses
import sys
import time

from _common import process_peak_rss_mib, write_results

SIZES = (100_000, 1_000_000)


def main(sizes: tuple[int, ...] = SIZES) -> None:

    from metaniche.analyses.communities import (
        assign_neighbourhoods,
        fit_neighbourhoods,
        neighbour_pairs,
        neighbourhood_composition,
        training_windows,
    )
    from metaniche.config import Config, LigrecParams
    from metaniche.sample import build_context
    from metaniche.simulate import simulate_sample
    from metaniche.stages import communities

    config = dataclasses.replace(Config(), ligrec=LigrecParams(n_permutations=0))
    rows = []
    for n_cells in sizes:
        sample = simulate_sample("bench", n_cells=n_cells, seed=1, n_lesions=3, with_tls=True)
        context = build_context("bench", sample.cells, config)
        _ = context.tree
        timings = {}
        started = time.perf_counter()
        windows = neighbourhood_composition(context.tree, context.type_codes,
                                            len(context.cell_types), 10)
        timings["windows"] = time.perf_counter() - started
        started = time.perf_counter()
        training = training_windows(windows, context.cell_types, 5000).assign(sample="bench")
        model = fit_neighbourhoods(training, 10, seed=0)
        labels = assign_neighbourhoods(model, windows, context.cell_types)
        timings["cn_fit_assign"] = time.perf_counter() - started
        del windows, labels
        started = time.perf_counter()
        pairs = neighbour_pairs(context.tree, config.aggregates.radius_um)
        communities._lymphoid(context, pairs)
        communities._units(context, pairs, first_id=1)
        timings["aggregates"] = time.perf_counter() - started
        timings["total"] = sum(timings.values())
        for step, seconds in timings.items():
            rows.append({"step": step, "n_cells": len(sample.cells), "seconds": seconds,
                         "peak_rss_mib": process_peak_rss_mib()})
        del context, sample, pairs
    rows.extend(_bench_ligrec())
    write_results("communities", rows)


def _bench_ligrec(n_cells: int = 20_000) -> list[dict]:
    """Ligand–receptor co-localisation with the default 999 permutations on one simulated
    sample (target < 1.5 s at 20k cells). Run twice: the first call may load / compile the
    Numba kernel."""
    from metaniche.config import Config
    from metaniche.sample import build_context
    from metaniche.simulate import simulate_sample
    from metaniche.stages import communities

    sample = simulate_sample("a", n_cells=n_cells, seed=1)
    context = build_context("a", sample.cells, Config())
    pairs = communities.neighbour_pairs(context.tree, context.config.ligrec.radius_um)
    rows = []
    for step in ("ligrec_first_call", "ligrec"):
        started, cpu = time.perf_counter(), time.process_time()
        communities._ligrec(context, pairs)
        rows.append({"step": step, "n_cells": len(sample.cells),
                     "seconds": time.perf_counter() - started,
                     "peak_rss_mib": process_peak_rss_mib(),
                     "cpu_seconds": time.process_time() - cpu})
    return rows


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or SIZES)
