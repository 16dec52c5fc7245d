"""Benchmark: genes at scale through ``metaniche run`` (issue 21, "Genes at scale").

Two samples, each run by a fresh ``python -m metaniche run`` process (wall time includes
start-up, reading, every stage, writing and the report; peak RSS is that process's own
high-water mark from ``os.wait4``):

(a) ``visium_hd``: a Visium HD-like ``binned_outputs/square_008um`` folder read by the spot
    reader (:func:`metaniche.io._spots.map_visium`): 600k 8 µm bins on a square grid, a 10x
    HDF5 matrix of 18,000 genes with Poisson(100) distinct genes per bin (skewed gene
    popularity, counts 1–5), tissue positions in Parquet, scale factors with
    ``microns_per_pixel``, and a bin × 10-type abundance table (a disc-shaped tumour);
    ``[spots]`` abundances, ``[gradients] marker_columns`` on 5 genes.
(b) ``xenium``: a 1M-cell × 5,000-gene Xenium-like AnnData ``.h5ad`` (cells, labels and
    positions from the simulator, three lesions; ``X`` CSR float32 with Poisson(150) distinct
    genes per cell; ``obsm['spatial']`` in µm), with ``[states]`` rules on two genes,
    ``[states] gradient_markers`` and ``[gradients] marker_columns`` on genes; ``[contact]``
    limited to one outcome (``G1_pos``) of one focus type (CD8_T), as the contact test's own
    cost on 1M cells (every type × every outcome × 99 permutations) is issue 19's; with
    ``--default-contact`` the contact test runs at its defaults (results
    ``genes[_xenium]_default_contact.json``).

Both matrices are far beyond the old dense cap (n_obs × n_vars = 1.08e10 and 5e9), so every
gene is kept in the sparse :class:`metaniche.genes.GeneMatrix`. Target: each < 3 minutes and
< 8 GB. Per-stage seconds come from run.json.

Run ``python benchmarks/bench_genes.py`` (full sizes) or ``--sizes small`` (a smoke run);
writes ``benchmarks/results/genes.json`` (``genes_small.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results

SIZES = {"small": {"visium_hd": (20_000, 18_000, 100), "xenium": (50_000, 5_000, 150)},
         "full": {"visium_hd": (600_000, 18_000, 100), "xenium": (1_000_000, 5_000, 150)}}
TARGET_SECONDS, TARGET_MIB = 180.0, 8192.0
TYPES = ("Tumor", "CD8_T", "CD4_T", "Macrophage", "B", "Fibroblast", "Endothelial",
         "Hepatocyte", "Neutrophil", "Treg")
IMMUNE = ("CD8_T", "CD4_T", "Macrophage", "B", "Neutrophil", "Treg")
BIN_UM, UM_PER_PX = 8.0, 0.2737


def sparse_counts(n_rows: int, n_genes: int, mean_nnz: float,
                  rng: np.random.Generator) -> sp.csr_matrix:
    """Rows × genes counts: Poisson(``mean_nnz``) draws of a gene per row (gene j drawn with
    probability ∝ (j + 1)^-0.8, duplicates summed), each count 1–5; CSR, sorted indices."""
    per_row = rng.poisson(mean_nnz, n_rows)
    indptr = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int64)
    weights = (np.arange(n_genes) + 1.0) ** -0.8
    genes = rng.choice(n_genes, size=int(indptr[-1]), p=weights / weights.sum())
    genes = rng.permutation(n_genes)[genes].astype(np.int32)   # popular genes spread out
    data = rng.integers(1, 6, genes.size).astype(np.float32)
    matrix = sp.csr_matrix((data, genes, indptr), shape=(n_rows, n_genes))
    matrix.sum_duplicates()
    return matrix


def write_hd_folder(root: Path, n_bins: int, n_genes: int, mean_nnz: float,
                    seed: int = 0) -> tuple[Path, Path, int]:
    """The Visium HD-like outs folder and its abundance table: ``(outs, table, nnz)``."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_bins)))
    rows, cols = np.divmod(np.arange(n_bins), side)
    square = root / "outs" / "binned_outputs" / "square_008um"
    (square / "spatial").mkdir(parents=True)
    barcodes = np.char.add(np.char.add("s_008um_", rows.astype(str)),
                           np.char.add("_", cols.astype(str)))
    counts = sparse_counts(n_bins, n_genes, mean_nnz, rng)
    nnz = int(counts.nnz)
    with h5py.File(square / "filtered_feature_bc_matrix.h5", "w") as f:
        # bins × genes CSR is genes × bins CSC: 10x's layout, arrays as they are
        g = f.create_group("matrix")
        g["data"] = counts.data.astype(np.int32)
        g["indices"], g["indptr"] = counts.indices, counts.indptr
        g["shape"] = np.array([n_genes, n_bins])
        g["barcodes"] = barcodes.astype("S")
        features = g.create_group("features")
        names = np.array([f"G{i}" for i in range(n_genes)], dtype="S")
        features["name"], features["id"] = names, names
        features["feature_type"] = np.full(n_genes, b"Gene Expression")
    del counts
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
    return root / "outs", path, nnz


def write_xenium_h5ad(root: Path, n_cells: int, n_genes: int, mean_nnz: float,
                      seed: int = 1) -> tuple[Path, int]:
    """The Xenium-like ``.h5ad`` (simulated tissue, sparse ``X``): ``(path, nnz)``."""
    import anndata

    from metaniche.simulate import simulate_sample

    cells = simulate_sample("xenium", n_cells=n_cells, seed=seed, n_lesions=3).cells
    rng = np.random.default_rng(seed)
    counts = sparse_counts(len(cells), n_genes, mean_nnz, rng)
    obs = pd.DataFrame({"cell_type": pd.Categorical(cells["cell_type"].astype(str))},
                       index=cells["cell_id"].astype(str).to_numpy())
    adata = anndata.AnnData(X=counts, obs=obs,
                            var=pd.DataFrame(index=[f"G{i}" for i in range(n_genes)]))
    adata.obsm["spatial"] = cells[["x", "y"]].to_numpy(np.float64)
    path = root / "xenium.h5ad"
    adata.write_h5ad(path)
    return path, int(counts.nnz)


def _run_cli(inputs: Path, config: Path, out_dir: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit code of one ``metaniche run`` process."""
    command = [sys.executable, "-m", "metaniche", "run", str(inputs), "--out", str(out_dir),
               "--config", str(config), "--quiet", "--force"]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    return seconds, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def _run_record(out_dir: Path) -> tuple[dict[str, float], list[str], str]:
    """Per-stage seconds, warnings and status of the single sample, from run.json."""
    run = json.loads((out_dir / "run.json").read_text())
    stages: dict[str, float] = {}
    warnings: list[str] = []
    status = ""
    for record in run.get("samples", {}).values():
        stages.update(record.get("stages") or {})
        warnings += record.get("warnings") or []
        status = str(record.get("status", "")) + (f": {record['error']}" if record.get("error")
                                                  else "")
    stages.update(run.get("stages") or {})
    return {k: round(float(v), 2) for k, v in stages.items()}, warnings, status


def bench(kind: str, n_rows: int, n_genes: int, mean_nnz: float, tmp: Path,
          default_contact: bool = False) -> dict[str, Any]:
    """Write one sample and its config, run it; one result row (``default_contact``: the
    Xenium-like sample with the contact test at its defaults, every type × state × partner)."""
    genes = ["G0", "G1", "G2", "G10", "G100"]
    if kind == "visium_hd":
        inputs, table, nnz = write_hd_folder(tmp, n_rows, n_genes, mean_nnz)
        text = (f'[cell_types]\ntumor = ["Tumor"]\nimmune = {json.dumps(list(IMMUNE))}\n'
                f'[spots]\nproportions = "{table}"\nkind = "abundance"\n'
                f'diameter_um = {BIN_UM}\nsquare = true\nn_permutations = 99\n'
                f'[gradients]\nmarker_columns = {json.dumps(genes)}\n')
    else:
        inputs, nnz = write_xenium_h5ad(tmp, n_rows, n_genes, mean_nnz)
        text = (f'[gradients]\nmarker_columns = {json.dumps(genes)}\n'
                '[states]\ngradient_markers = ["G2"]\n'
                '[states.G0_pos]\nmarker = "G0"\ncell_types = ["CD8_T"]\n'
                '[states.G1_pos]\nmarker = "G1"\nthreshold = 2.5\n')
        if not default_contact:
            # the contact test's own cost at 1M cells is issue 19's: one focus, one outcome
            text += '[contact]\nmarkers = ["G1_pos"]\ncell_types = ["CD8_T"]\n'
    config = tmp / f"{kind}.toml"
    config.write_text(text)
    out_dir = tmp / f"run_{kind}"
    seconds, rss_mib, code = _run_cli(inputs, config, out_dir)
    stages, warnings, status = (_run_record(out_dir) if (out_dir / "run.json").exists()
                                else ({}, [], "no run.json"))
    return {"sample": kind, "n_rows": n_rows, "n_genes": n_genes, "nnz": nnz,
            "nnz_per_row": round(nnz / n_rows, 1), "seconds": round(seconds, 1),
            "peak_rss_mib": round(rss_mib), "exit_code": code, "status": status,
            "pass": code == 0 and seconds < TARGET_SECONDS and rss_mib < TARGET_MIB,
            "contact": "default" if default_contact or kind == "visium_hd" else "one outcome",
            "stages": stages, "warnings": warnings}


def main() -> None:
    """Run both samples at the chosen sizes; write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=sorted(SIZES), default="full")
    parser.add_argument("--only", choices=("visium_hd", "xenium"), default=None)
    parser.add_argument("--default-contact", action="store_true",
                        help="Xenium-like sample with the contact test at its defaults")
    args = parser.parse_args()
    rows = []
    for kind, (n_rows, n_genes, mean_nnz) in SIZES[args.sizes].items():
        if args.only and kind != args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            row = bench(kind, n_rows, n_genes, mean_nnz, Path(tmp), args.default_contact)
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)
    name = "genes" if args.sizes == "full" else "genes_small"
    if args.only:
        name += f"_{args.only}"
    if args.default_contact:
        name += "_default_contact"
    write_results(name, [{k: v for k, v in r.items()} for r in rows])


if __name__ == "__main__":
    main()
