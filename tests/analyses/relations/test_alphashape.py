"""α-shape border cells and SPIAT's R_BC: closed form, brute-force α-exposure, SPIAT numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from metaniche.analyses.relations._ahull import fix_arc_order, polygon_runs
from metaniche.analyses.relations.alphashape import (
    alpha_shape_edges,
    border_cells,
    spiat_border_cells,
)


def _disc_with_ring(n_ring: int = 60, radius: float = 100.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    angle = np.linspace(0, 2 * np.pi, n_ring, endpoint=False)
    ring = radius * np.column_stack([np.cos(angle), np.sin(angle)])
    grid = np.stack(np.meshgrid(np.arange(-90, 91, 10.0), np.arange(-90, 91, 10.0)), -1)
    grid = grid.reshape(-1, 2) + rng.uniform(-1, 1, (grid.size // 2, 2))
    inside = grid[np.hypot(*grid.T) < radius - 12]
    return np.vstack([ring, inside]), n_ring


@pytest.mark.parametrize("find_border", [border_cells, spiat_border_cells],
                         ids=["geometric", "spiat"])
def test_border_of_a_filled_disc_is_its_ring(find_border):
    xy, n_ring = _disc_with_ring()
    result = find_border(xy, alpha=40.0)
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
    # SPIAT's R_BC = 0.2014652 (165 / 819) comes from its arc walk (spiat_border_cells, below);
    # the geometric definition gives 168 / 819, 1.8 % higher (module docstring).
    result = border_cells(tumour, alpha=40.0)
    assert result.ratio == pytest.approx(0.2014652, rel=0.02)


# --- SPIAT's arc walk (spiat_border_cells) ------------------------------------------------------

# SPIAT's unit test (tests/testthat, "functions in tumour structure family work"):
# identify_bordering_cells(defined_image, "Tumour", n_to_exclude = 10), then
# calculate_distance_to_tumour_margin: Distance.To.Border of cells 3776:3779.
SPIAT_DISTANCES = {"Cell_3776": 83.54843614991348488275, "Cell_3777": 63.04062766766428183018,
                   "Cell_3778": 0.0, "Cell_3779": 29.59984593965495847101}


def _tumour(data_dir):
    cells = pd.read_csv(data_dir / "cells" / "spiat_defined_image.SIMULATED.cells.csv.gz")
    return cells, cells.loc[cells["cell_type"] == "Tumour", ["x", "y"]].to_numpy()


def _arc_table(cycles: list[int], lone: int) -> np.ndarray:
    """Rows (…, end1, end2) of closed cycles of the given lengths, then ``lone`` (p, p) rows."""
    rows, start = [], 0
    for length in cycles:
        ring = start + np.arange(length)
        rows += [(a, b) for a, b in zip(ring, np.roll(ring, -1), strict=True)]
        start += length
    rows += [(start + k, start + k) for k in range(lone)]
    table = np.zeros((len(rows), 8))
    table[:, 6:] = rows
    return table


def test_get_polygon_keeps_runs_of_six_rows_but_never_the_last_run():
    with_lone = _arc_table([5, 6, 7], lone=2)
    assert polygon_runs(with_lone, n_to_exclude=0) == [(5, 10), (11, 17)]
    assert polygon_runs(with_lone, n_to_exclude=6) == [(11, 17)]      # rows <= 6 dropped
    without_lone = _arc_table([5, 6, 7], lone=0)
    assert polygon_runs(without_lone, n_to_exclude=0) == [(5, 10)]     # last cycle dropped
    one_cycle = _arc_table([4], lone=0)
    assert polygon_runs(one_cycle, n_to_exclude=0) == [(0, 3)]         # no break: all rows
    np.testing.assert_array_equal(fix_arc_order(with_lone), with_lone)  # nothing to repair


def test_fix_ahull_moves_the_continuation_next_and_reverses_it():
    table = _arc_table([6], lone=0)
    table[[1, 4]] = table[[4, 1]]                  # rows: 0>1, 4>5, 2>3, 3>4, 1>2, 5>0
    table[2, 6:] = table[2, 6:][::-1]              # 3>2 written backwards
    fixed = fix_arc_order(table)
    np.testing.assert_array_equal(fixed[:3, 6:], [[0, 1], [1, 2], [2, 3]])


def test_spiat_drops_the_last_cycle_when_no_point_is_isolated():
    """Two separate discs and no isolated α-extreme point: SPIAT keeps one ring, not both."""
    xy, n_ring = _disc_with_ring()
    both = np.vstack([xy, xy + np.array([300.0, 0.0])])
    result = spiat_border_cells(both, alpha=40.0)
    ring = np.zeros(len(xy), dtype=bool)
    ring[:n_ring] = True
    none = np.zeros(len(xy), dtype=bool)
    assert result.n_clusters == 1
    assert any(np.array_equal(result.is_border, np.concatenate(pair))
               for pair in ((ring, none), (none, ring)))


def test_spiat_defined_image_reproduces_published_border_ratio(data_dir):
    _, tumour = _tumour(data_dir)
    result = spiat_border_cells(tumour, alpha=40.0, n_to_exclude=0)     # SPIAT's R_BC call
    assert round(result.ratio, 7) == 0.2014652                          # 165 / 819
    assert result.ratio == pytest.approx(0.2014652, rel=5e-5)
    sizes = np.bincount(result.cluster)[1:]
    assert np.sum(sizes > 10) == 3                                      # 3 tumour clusters


def test_spiat_border_does_not_depend_on_the_input_order(data_dir):
    """The arc order follows the triangle list; permuting the points reorders Qhull's."""
    _, tumour = _tumour(data_dir)
    reference = spiat_border_cells(tumour).is_border
    for seed in (1, 2):
        order = np.random.default_rng(seed).permutation(len(tumour))
        permuted = spiat_border_cells(tumour[order]).is_border
        np.testing.assert_array_equal(permuted, reference[order])


def _distances_to_border(data_dir):
    cells, tumour = _tumour(data_dir)
    result = spiat_border_cells(tumour, alpha=40.0, n_to_exclude=10)
    border = tumour[result.is_border]
    xy = cells.set_index("cell_id").loc[list(SPIAT_DISTANCES), ["x", "y"]].to_numpy()
    return cdist(xy, border).min(axis=1)


def test_spiat_unit_test_distances_to_border_cells_3776_to_3778(data_dir):
    got = _distances_to_border(data_dir)
    np.testing.assert_allclose(got[:3], list(SPIAT_DISTANCES.values())[:3], rtol=1e-9, atol=1e-9)


@pytest.mark.xfail(strict=True, reason=(
    "SPIAT's test puts Cell_3779's nearest border cell at 29.5998 (Cell_3849); we also mark "
    "Cell_3762 at 17.1349, which SPIAT's run did not: unexplained without R (see module "
    "docstring of _ahull)."))
def test_spiat_unit_test_distance_to_border_cell_3779(data_dir):
    got = _distances_to_border(data_dir)
    assert got[3] == pytest.approx(SPIAT_DISTANCES["Cell_3779"], rel=1e-9)
