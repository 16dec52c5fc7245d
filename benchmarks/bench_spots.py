"""Benchmark: a Visium HD-like spot sample read from its outs folder and analysed.

Writes a synthetic Visium HD ``binned_outputs/square_008um`` folder (8 µm bins on a square
grid, a sparse 10x HDF5 matrix of ``--genes`` genes with Poisson(20) distinct genes per bin
(skewed gene popularity, counts 1–5: ``bench_genes.write_hd_folder``), tissue
positions in Parquet, scale factors with ``microns_per_pixel``) and a bin × type abundance
table (10 types; a disc-shaped tumour), then times reading it
(:func:`metaniche.io.read_samples`) and the per-sample chain
(:func:`metaniche.sample.analyse_sample`: spot compartments and the ``spots`` stage). Target
(issue 21): 600k bins × 18k genes through the pipeline in < 3 minutes and < 8 GB.

Run ``python benchmarks/bench_spots.py`` (sizes 600k bins, 18k genes) or
``--sizes small`` (10k bins, 2k genes: a smoke run); writes ``benchmarks/results/spots.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import measure, process_peak_rss_mib, write_results
from bench_genes import BIN_UM, TYPES
from bench_genes import write_hd_folder as write_genes_hd_folder
from metaniche.config import CellTypeRoles, Config, SpotsParams
from metaniche.io import read_samples
from metaniche.sample import analyse_sample

SIZES = {"small": [(10_000, 2_000)], "full": [(600_000, 18_000)]}
MEAN_GENES_PER_BIN = 20.0


def write_hd_folder(root: Path, n_bins: int, n_genes: int, seed: int = 0) -> Path:
    """The synthetic Visium HD folder and abundance table (:func:`bench_genes.write_hd_folder`
    with Poisson(20) distinct genes per bin); returns the table path."""
    return write_genes_hd_folder(root, n_bins, n_genes, MEAN_GENES_PER_BIN, seed)[1]


def main() -> None:
    """Time reading and analysing the Visium HD-like sample per size; write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=sorted(SIZES), default="full")
    args = parser.parse_args()
    rows = []
    for n_bins, n_genes in SIZES[args.sizes]:
        with tempfile.TemporaryDirectory() as tmp:
            table = write_hd_folder(Path(tmp), n_bins, n_genes)
            config = dataclasses.replace(
                Config(cell_types=CellTypeRoles(tumor=("Tumor",),
                                                immune=("CD8_T", "CD4_T", "Macrophage", "B",
                                                        "Neutrophil", "Treg"))),
                spots=SpotsParams(proportions=str(table), kind="abundance", diameter_um=BIN_UM,
                                  square=True, n_permutations=99))
            read_s, _, samples = measure(
                lambda c=config, t=tmp: read_samples([Path(t) / "outs"], c), trace_memory=False)
            sample = samples[0]
            if sample.error:
                raise SystemExit(sample.error)
            analyse_s, _, analysis = measure(
                lambda s=sample, c=config: analyse_sample(s.cells, c, name="hd"),
                trace_memory=False)
            rows.append({
                "n_bins": n_bins, "n_genes": n_genes,
                "genes_kept": int(sample.cells.shape[1] - 7 - len(TYPES)),
                "n_lesions": int(analysis.features["n_lesions"]),
                "read_s": round(read_s, 2), "analyse_s": round(analyse_s, 2),
                "total_s": round(read_s + analyse_s, 2),
                "peak_rss_mib": round(process_peak_rss_mib(), 1),
                # Issue 21's target: < 3 minutes and < 8 GB.
                "under_3min_8gb": read_s + analyse_s < 180 and process_peak_rss_mib() < 8192,
            })
    write_results("spots" if args.sizes == "full" else "spots_small", rows)


if __name__ == "__main__":
    main()
