"""Benchmark: gradient profiles + statistics, lesion metrics and zonation (the border stage).

Times :func:`metaniche.stages.border.run` on simulated samples of 100k and 1M cells (the
compartment step, timed separately, is the spine's). Target (issue 5): 1M cells through
compartments + border stage in < 30 s (``total_s``, ``under_30s``).
Run ``python benchmarks/bench_border.py``; writes ``benchmarks/results/border.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import measure, process_peak_rss_mib, write_results
from metaniche.config import CellTypeRoles, Config
from metaniche.sample import build_context
from metaniche.simulate import IMMUNE_TYPES, simulate_sample
from metaniche.stages import border

SIZES = (100_000, 1_000_000)


def main() -> None:
    """Time the border stage per sample size and write the results table."""
    config = Config(cell_types=CellTypeRoles(tumor=("Tumor",), immune=IMMUNE_TYPES))
    rows = []
    for n_cells in SIZES:
        sample = simulate_sample("B", n_cells=n_cells, seed=1, phenotype="excluded",
                                 n_lesions=4, zonation=True)
        context_s, _, context = measure(
            lambda s=sample: build_context("B", s.cells, config), trace_memory=False)
        stage_s, _, output = measure(lambda c=context: border.run(c), trace_memory=False)
        rows.append({
            "n_cells": len(sample.cells),
            "n_lesions": len(context.compartments.lesions),
            "pixels": int(context.compartments.tissue.size),
            "compartments_s": round(context_s, 2),
            "border_stage_s": round(stage_s, 2),
            "total_s": round(context_s + stage_s, 2),
            "gradient_rows": len(output.tables["gradients"]),
            "peak_rss_mib": round(process_peak_rss_mib(), 1),
            # Issue 5's target: compartments + border analyses of 1M cells in < 30 s.
            "under_30s": context_s + stage_s < 30,
        })
    write_results("border", rows)


if __name__ == "__main__":
    main()
