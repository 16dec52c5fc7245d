"""Synthetic tissue shared by the analysis tests."""

from __future__ import annotations

import numpy as np

SPACING_UM = 18.0  # ≈ 3,000 cells/mm²


def lattice(side_um: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Jittered square lattice of cells covering [0, side]², spacing 18 µm."""
    rng = np.random.default_rng(seed)
    centres = np.arange(SPACING_UM / 2, side_um, SPACING_UM)
    grid_x, grid_y = np.meshgrid(centres, centres)
    jitter = rng.uniform(-0.35, 0.35, (2, grid_x.size)) * SPACING_UM
    return grid_x.ravel() + jitter[0], grid_y.ravel() + jitter[1]
