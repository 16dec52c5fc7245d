"""Benchmark: the ``states`` stage with 10 states on a 1M-cell sample.

Issue 18 target: states on a 1M-cell sample with 10 states add < 5 s to the pipeline.
Tissue from the simulator with planted states (``states=True``: PDL1, GZMB, PD1 markers) and
TLS. Ten states mixing every source: fixed thresholds, per-sample otsu / gmm / valley, one
per-cohort threshold, a boolean column and two combinations; each marker state's intensity
is also tested along the border (marker gradients). Timed after the context (compartments)
and the communities stage (whose aggregates the states stage reads) are built:
``cohort_threshold`` (the run-level pre-pass over this one sample), ``states_stage`` (the
whole stage: calls, per-compartment tables, band profiles and trends, marker gradients,
states in structures, ratios) and, for reference, ``ratios_only`` (the stage without rules,
what every run already pays).

Usage: ``python bench_states.py [n_cells ...]`` (default 1,000,000; smoke: 50000).
"""

from __future__ import annotations

import dataclasses
import sys
import time

from _common import process_peak_rss_mib, write_results

SIZES = (1_000_000,)


def _config():
    from metaniche.config import Config, LigrecParams, StateRule, StatesParams
    from metaniche.simulate import STATE_THRESHOLD

    rules = {
        "PDL1_pos": StateRule(marker="PDL1", threshold=STATE_THRESHOLD,
                              cell_types=("Macrophage", "Tumor")),
        "PDL1_cohort": StateRule(marker="PDL1", threshold="cohort:otsu"),
        "GZMB_pos": StateRule(marker="GZMB", threshold="otsu", cell_types=("CD8_T",)),
        "PD1_pos": StateRule(marker="PD1", threshold="gmm", cell_types=("CD8_T",)),
        "CD68_pos": StateRule(marker="CD68", threshold="valley"),
        "GPNMB_pos": StateRule(marker="GPNMB", threshold="otsu",
                               cell_types=("Macrophage", "GPNMB_macrophage")),
        "FOXP3_pos": StateRule(marker="FOXP3", threshold=2.0),
        "in_TLS_call": StateRule(column="tls_call"),
        "GZMB_PD1": StateRule(all_of=("GZMB_pos", "PD1_pos")),
        "PDL1_GPNMB": StateRule(all_of=("PDL1_pos", "GPNMB_pos")),
    }
    return dataclasses.replace(Config(), ligrec=LigrecParams(n_permutations=0),
                               states=StatesParams(rules=rules))


def main(sizes: tuple[int, ...] = SIZES) -> None:
    from metaniche.cohort.state_thresholds import with_cohort_thresholds
    from metaniche.config import StatesParams
    from metaniche.sample import build_context
    from metaniche.simulate import simulate_sample
    from metaniche.stages import communities
    from metaniche.stages import states as states_stage

    rows = []
    for n_cells in sizes:
        sample = simulate_sample("bench", n_cells=n_cells, seed=1, n_lesions=3, with_tls=True,
                                 states=True)
        cells = sample.cells.assign(tls_call=sample.truth["tls_id"].to_numpy() > 0)
        config = _config()
        assert len(config.states.rules) == 10
        timings = {}
        started = time.perf_counter()
        config, _ = with_cohort_thresholds(config, [("bench", cells)])
        timings["cohort_threshold"] = time.perf_counter() - started
        context = build_context("bench", cells, config)
        context.previous["communities"] = communities.run(context)
        started = time.perf_counter()
        output = states_stage.run(context)
        timings["states_stage"] = time.perf_counter() - started
        bare = dataclasses.replace(context, config=dataclasses.replace(
            config, states=StatesParams()))
        started = time.perf_counter()
        states_stage.run(bare)
        timings["ratios_only"] = time.perf_counter() - started
        for step, seconds in timings.items():
            rows.append({"step": step, "n_cells": len(cells), "n_states": 10,
                         "n_features": len(output.features), "seconds": seconds,
                         "peak_rss_mib": process_peak_rss_mib()})
        del context, sample, cells, output, bare
    name = "states" if sizes == SIZES else "states_" + "_".join(map(str, sizes))
    write_results(name, rows)


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or SIZES)
