"""Benchmark: a Visium HD-like spot sample read from its outs folder and analysed.

Writes a synthetic Visium HD ``binned_outputs/square_008um`` folder (8 µm bins on a square
grid, a sparse 10x HDF5 matrix of ``--genes`` genes with about 20 counts per bin, tissue
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
import json
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import measure, process_peak_rss_mib, write_results
from metaniche.config import CellTypeRoles, Config, SpotsParams
from metaniche.io import read_samples
from metaniche.sample import analyse_sample

SIZES = {"small": [(10_000, 2_000)], "full": [(600_000, 18_000)]}
TYPES = ("Tumor", "CD8_T", "CD4_T", "Macrophage", "B", "Fibroblast", "Endothelial",
         "Hepatocyte", "Neutrophil", "Treg")
BIN_UM, UM_PER_PX = 8.0, 0.2737


def write_hd_folder(root: Path, n_bins: int, n_genes: int, seed: int = 0) -> Path:
    """Write the synthetic Visium HD folder and abundance table; returns the table path."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_bins)))
    rows, cols = np.divmod(np.arange(n_bins), side)
    square = root / "outs" / "binned_outputs" / "square_008um"
    (square / "spatial").mkdir(parents=True)
    barcodes = np.char.add(np.char.add("s_008um_", rows.astype(str)),
                           np.char.add("_", cols.astype(str)))
    counts = sp.random(n_genes, n_bins, density=20 / n_genes, format="csc", random_state=seed,
                       data_rvs=lambda k: rng.integers(1, 4, k)).astype(np.int32)
    with h5py.File(square / "filtered_feature_bc_matrix.h5", "w") as f:
        g = f.create_group("matrix")
        g["data"], g["indices"], g["indptr"] = counts.data, counts.indices, counts.indptr
        g["shape"] = np.array(counts.shape)
        g["barcodes"] = barcodes.astype("S")
        features = g.create_group("features")
        names = np.array([f"G{i}" for i in range(n_genes)], dtype="S")
        features["name"], features["id"] = names, names
        features["feature_type"] = np.full(n_genes, b"Gene Expression")
    px = BIN_UM / UM_PER_PX
    pd.DataFrame({"barcode": barcodes, "in_tissue": 1, "array_row": rows, "array_col": cols,
                  "pxl_row_in_fullres": rows * px, "pxl_col_in_fullres": cols * px}
                 ).to_parquet(square / "spatial" / "tissue_positions.parquet")
    (square / "spatial" / "scalefactors_json.json").write_text(json.dumps(
        {"spot_diameter_fullres": px, "bin_size_um": BIN_UM, "microns_per_pixel": UM_PER_PX}))
    centre = side * BIN_UM / 2
    radius = np.hypot(rows * BIN_UM - centre, cols * BIN_UM - centre)
    tumour = np.where(radius < side * BIN_UM / 4, 0.8, 0.05)
    weights = rng.dirichlet(np.ones(len(TYPES) - 1), size=n_bins) * (1 - tumour)[:, None]
    table = pd.DataFrame(np.column_stack([tumour, weights]) * 0.25, columns=list(TYPES))
    table.insert(0, "barcode", barcodes)
    path = root / "abundance.parquet"
    table.to_parquet(path)
    return path


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
