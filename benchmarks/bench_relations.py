"""Benchmark: cell–cell relation statistics at 10k / 100k / 1M synthetic cells.

Issue 4 targets on the 2-core machine: a 1M-cell sample with 10 types, all statistics at
default settings in < 60 s and < 4 GB; exact neighbourhood enrichment alone in < 2 s
(squidpy's nhood_enrichment: 47 s, see shared/PEERS.md). Cells are uniform at 3,000
cells/mm² in a square with 10 random types; the window is the full square at 5 µm pixels.
Numba kernels are compiled (or loaded from cache) on a 2,000-cell warm-up before timing. The
row "all relations at default settings" sums the steps the relations stage runs (tree, window,
nearest distances + summary, graph, exact enrichment on both nulls, mixing, count_within,
Ripley, co-occurrence). Peer ratios are in ``bench_peers.py``.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.spatial import cKDTree

from _common import measure, process_peak_rss_mib, write_results
from metaniche.analyses.relations import (
    Window,
    border_cells,
    co_occurrence,
    count_within_by_type,
    distance_summary,
    mixing_score,
    nearest_type_distances,
    neighbour_graph,
    neighbourhood_enrichment,
    ripley_cross,
    spiat_border_cells,
)
from metaniche.config import RelationsParams

SIZES = (10_000, 100_000, 1_000_000)
DENSITY_PER_UM2 = 3000 / 1e6
N_TYPES = 10


def main(sizes: tuple[int, ...] = SIZES) -> None:
    params = RelationsParams()
    _warm_up(params)
    rows: list[dict] = []
    for n_cells in sizes:
        _bench_size(n_cells, params, rows)
    rows.append({"step": "process peak RSS", "n_cells": max(sizes), "seconds": float("nan"),
                 "peak_mib": process_peak_rss_mib()})
    write_results("relations", rows)


#: Steps the relations stage runs at default settings (summed into one row).
STAGE_STEPS = ("kd-tree build", "window set covariance (FFT)", "nearest distance, every type pair",
               "distance summary", "radius graph 30 µm", "enrichment exact (whole sample)",
               "enrichment exact (4 strata)", "mixing score (one pair, 30 µm)",
               "count_within 10/25/50 µm, all pairs", "ripley K/L/g all pairs, 10 radii to 100 µm",
               "co-occurrence 10 bins to 100 µm")


def _warm_up(params: RelationsParams) -> None:
    """Compile (or load from cache) every Numba kernel on a small sample."""
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 800, (2000, 2))
    codes = rng.integers(0, N_TYPES, 2000)
    window = Window.rectangle(0, 0, 800, 800, pixel_um=5.0)
    radii = np.arange(params.ripley_step_um, params.ripley_max_um + 1e-9, params.ripley_step_um)
    nearest_type_distances(xy, codes, N_TYPES)
    count_within_by_type(cKDTree(xy), codes, [f"T{t}" for t in range(N_TYPES)],
                         params.count_within_um)
    ripley_cross(xy, codes, N_TYPES, radii, window)
    co_occurrence(xy, codes, N_TYPES, np.linspace(0, 100, 11))
    edges = neighbour_graph(xy, cKDTree(xy), "radius", 30.0)
    neighbourhood_enrichment(edges, codes, N_TYPES, n_permutations=2)


def _bench_size(n_cells: int, params: RelationsParams, rows: list[dict]) -> None:
    """Time every statistic on one synthetic sample of ``n_cells`` cells."""
    side = float(np.sqrt(n_cells / DENSITY_PER_UM2))
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, side, (n_cells, 2))
    codes = rng.integers(0, N_TYPES, n_cells)
    strata = (xy[:, 0] > side / 2).astype(np.int64) + (xy[:, 1] > side / 2)
    types = [f"T{t}" for t in range(N_TYPES)]
    radii = np.arange(params.ripley_step_um, params.ripley_max_um + 1e-9,
                      params.ripley_step_um)
    interval = np.linspace(0, params.cooccurrence_max_um, params.cooccurrence_bins + 1)

    def step(name, func, n=n_cells):
        seconds, peak, value = measure(func)
        rows.append({"step": name, "n_cells": n, "seconds": seconds, "peak_mib": peak})
        return value

    tree = step("kd-tree build", lambda: cKDTree(xy))
    window = step("window set covariance (FFT)",
                  lambda: Window.rectangle(0, 0, side, side, pixel_um=5.0))
    nearest = step("nearest distance, every type pair",
                   lambda: nearest_type_distances(xy, codes, N_TYPES))
    step("distance summary", lambda: distance_summary(nearest, codes, types, strata))
    edges = step("radius graph 30 µm", lambda: neighbour_graph(xy, tree, "radius", 30.0))
    step("enrichment exact (whole sample)",
         lambda: neighbourhood_enrichment(edges, codes, N_TYPES))
    step("enrichment exact (4 strata)",
         lambda: neighbourhood_enrichment(edges, codes, N_TYPES, strata=strata))
    if n_cells <= 100_000:
        step("enrichment 1000 permutations",
             lambda: neighbourhood_enrichment(edges, codes, N_TYPES, n_permutations=1000))
    step("mixing score (one pair, 30 µm)",
         lambda: mixing_score(xy, codes == 0, codes == 1, 30.0))
    step("count_within 10/25/50 µm, all pairs",
         lambda: count_within_by_type(tree, codes, types, params.count_within_um))
    step("ripley K/L/g all pairs, 10 radii to 100 µm",
         lambda: ripley_cross(xy, codes, N_TYPES, radii, window, tree=tree))
    step("co-occurrence 10 bins to 100 µm",
         lambda: co_occurrence(xy, codes, N_TYPES, interval, tree=tree))
    step("alpha-shape border cells of one type (geometric definition)",
         lambda: border_cells(xy[codes == 0], alpha=40.0))
    if n_cells <= 100_000:   # a scattered type: ~0.1 ms per α-shape edge (the stage's limit)
        step("SPIAT bordering cells / R_BC of one scattered type (alphahull arcs)",
             lambda: spiat_border_cells(xy[codes == 0], alpha=40.0))
    stage = [r for r in rows if r["n_cells"] == n_cells and r["step"] in STAGE_STEPS]
    rows.append({"step": "all relations at default settings (sum)", "n_cells": n_cells,
                 "seconds": sum(r["seconds"] for r in stage),
                 "peak_mib": max(r["peak_mib"] for r in stage)})


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or SIZES)
