"""Benchmark: cell–cell relation statistics at 10k / 100k / 1M synthetic cells.

Issue 4 targets on the 2-core machine: a 1M-cell sample with 10 types, all statistics at
default settings in < 60 s and < 4 GB; exact neighbourhood enrichment alone in < 2 s
(squidpy's nhood_enrichment: 47 s, see shared/PEERS.md). Cells are uniform at 3,000
cells/mm² in a square with 10 random types; the window is the full square at 5 µm pixels.
Peer tools are not installed here, so no ratios are printed yet.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.spatial import cKDTree

from _common import measure, process_peak_rss_mib, write_results
from metaniche.analyses.relations import (
    Window,
    co_occurrence,
    count_within_by_type,
    distance_summary,
    mixing_score,
    nearest_type_distances,
    neighbour_graph,
    neighbourhood_enrichment,
    ripley_cross,
)
from metaniche.config import RelationsParams

SIZES = (10_000, 100_000, 1_000_000)
DENSITY_PER_UM2 = 3000 / 1e6
N_TYPES = 10


def main(sizes: tuple[int, ...] = SIZES) -> None:
    params = RelationsParams()
    rows: list[dict] = []
    for n_cells in sizes:
        _bench_size(n_cells, params, rows)
    rows.append({"step": "process peak RSS", "n_cells": max(sizes), "seconds": float("nan"),
                 "peak_mib": process_peak_rss_mib()})
    write_results("relations", rows)


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
        step("enrichment 100 permutations",
             lambda: neighbourhood_enrichment(edges, codes, N_TYPES, n_permutations=100))
    step("mixing score (one pair, 30 µm)",
         lambda: mixing_score(xy, codes == 0, codes == 1, 30.0))
    step("count_within 10/25/50 µm, all pairs",
         lambda: count_within_by_type(tree, codes, types, params.count_within_um))
    step("ripley K/L/g all pairs, 10 radii to 100 µm",
         lambda: ripley_cross(xy, codes, N_TYPES, radii, window, tree=tree))
    step("co-occurrence 10 bins to 100 µm",
         lambda: co_occurrence(xy, codes, N_TYPES, interval, tree=tree))


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or SIZES)
