"""Write the shared synthetic tissue file that every peer runner reads (main venv only).

Cells come from :func:`metaniche.simulate.simulate_sample` (liver-like tissue at ~3,000
cells/mm²); its 15 types are merged into 10 (GPNMB_macrophage → Macrophage, S100A12_neutrophil
→ Neutrophil, CCL19_fibroblast → Fibroblast, Portal_vein / Central_vein → Endothelial), the
10-type setting of shared/PEERS.md. Cells are shuffled (seeded) so that the first rows are a
random subsample. Usage: ``python make_tissue.py OUT.npz N_CELLS [SEED]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from metaniche.simulate import simulate_sample

MERGE = {"GPNMB_macrophage": "Macrophage", "S100A12_neutrophil": "Neutrophil",
         "CCL19_fibroblast": "Fibroblast", "Portal_vein": "Endothelial",
         "Central_vein": "Endothelial"}


def write_tissue(path: str | Path, n_cells: int, seed: int = 0) -> Path:
    """Simulate ``n_cells`` cells (10 types) and save them as the protocol's ``.npz``."""
    cells = simulate_sample("peers", n_cells=n_cells, seed=seed).cells
    types = cells["cell_type"].astype(str).replace(MERGE).to_numpy()
    names, codes = np.unique(types, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(cells))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_um=cells["x"].to_numpy(np.float64)[order],
             y_um=cells["y"].to_numpy(np.float64)[order],
             type_code=codes.astype(np.int64)[order], type_names=names.astype(str))
    return path


if __name__ == "__main__":
    write_tissue(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
