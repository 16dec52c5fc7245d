"""α-shape border cells and SPIAT's R_BC: closed form, brute-force α-exposure, SPIAT numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from metaniche.analyses.relations.alphashape import alpha_shape_edges, border_cells


def _disc_with_ring(n_ring: int = 60, radius: float = 100.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    angle = np.linspace(0, 2 * np.pi, n_ring, endpoint=False)
    ring = radius * np.column_stack([np.cos(angle), np.sin(angle)])
    grid = np.stack(np.meshgrid(np.arange(-90, 91, 10.0), np.arange(-90, 91, 10.0)), -1)
    grid = grid.reshape(-1, 2) + rng.uniform(-1, 1, (grid.size // 2, 2))
    inside = grid[np.hypot(*grid.T) < radius - 12]
    return np.vstack([ring, inside]), n_ring


def test_border_of_a_filled_disc_is_its_ring():
    xy, n_ring = _disc_with_ring()
    result = border_cells(xy, alpha=40.0)
    expected = np.zeros(len(xy), dtype=bool)
    expected[:n_ring] = True
    np.testing.assert_array_equal(result.is_border, expected)
    assert result.n_clusters == 1
    assert result.ratio == pytest.approx(n_ring / len(xy))


def test_two_separate_discs_are_two_clusters_and_tiny_groups_are_dropped():
    xy, n_ring = _disc_with_ring()
    triangle = np.array([[500.0, 0.0], [510.0, 0.0], [505.0, 8.0]])   # 3 border cells
    shifted = xy + np.array([300.0, 0.0])
    both = np.vstack([xy, shifted, triangle])
    result = border_cells(both, alpha=40.0, min_cluster_cells=5)
    assert result.n_clusters == 2
    assert result.is_border.sum() == 2 * n_ring
    assert set(np.unique(result.cluster[result.is_border])) == {1, 2}
    assert border_cells(both, alpha=40.0, min_cluster_cells=0).n_clusters == 3


@pytest.mark.parametrize("seed", range(5))
def test_alpha_shape_edges_are_exactly_the_alpha_exposed_pairs(seed):
    """Brute force: pq is on the α-shape iff one of the two radius-α discs through p and q
    holds no other point (open disc)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (60, 2))
    alpha = 12.0
    got = {tuple(sorted(e)) for e in alpha_shape_edges(xy, alpha).tolist()}
    distance = cdist(xy, xy)
    expected = set()
    for i in range(len(xy)):
        for j in range(i + 1, len(xy)):
            d = distance[i, j]
            if d > 2 * alpha:
                continue
            middle = (xy[i] + xy[j]) / 2
            normal = np.array([-(xy[j] - xy[i])[1], (xy[j] - xy[i])[0]]) / d
            offset = np.sqrt(alpha**2 - (d / 2) ** 2)
            for centre in (middle + offset * normal, middle - offset * normal):
                others = np.delete(np.hypot(*(xy - centre).T), [i, j])
                if np.all(others > alpha):
                    expected.add((i, j))
    assert got == expected


def test_spiat_defined_image_clusters_and_border_ratio(data_dir):
    cells = pd.read_csv(data_dir / "cells" / "spiat_defined_image.SIMULATED.cells.csv.gz")
    tumour = cells.loc[cells["cell_type"] == "Tumour", ["x", "y"]].to_numpy()
    assert len(tumour) == 819
    # SPIAT's vignette: 3 tumour clusters with n_to_exclude = 10.
    assert border_cells(tumour, alpha=40.0, min_cluster_cells=10).n_clusters == 3
    # SPIAT's R_BC = 0.2014652 (165 / 819) depends on alphahull's internal arc order (module
    # docstring); the geometric definition gives 168 / 819, 1.8 % higher.
    result = border_cells(tumour, alpha=40.0)
    assert result.ratio == pytest.approx(0.2014652, rel=0.02)
