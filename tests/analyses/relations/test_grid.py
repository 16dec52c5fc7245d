"""Cell-list kernels (nearest cell of each type, counts within radii, pair bins): bit-identical
to the KD-tree references, brute force, boundaries, thread counts."""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from metaniche.analyses.relations import (
    average_minimum_distance,
    co_occurrence,
    count_within_by_type,
    iter_pairs_within,
    nearest_type_distances,
)
from metaniche.analyses.relations._grid import _grid_width, nearest_by_type_grid
from metaniche.analyses.relations.sample_tables import mean_nearest_distance


def _tree_reference(xy, codes, n_types):
    """One KD-tree per target type (k = 2 for its own cells, dropping the cell itself)."""
    out = np.full((len(xy), n_types), np.nan)
    for target in range(n_types):
        members = np.flatnonzero(codes == target)
        if len(members) == 0:
            continue
        tree = cKDTree(xy[members])
        others = codes != target
        if others.any():
            out[others, target] = tree.query(xy[others], k=1)[0]
        if len(members) > 1:
            dist, index = tree.query(xy[members], k=2)
            is_self = members[index[:, 0]] == members
            out[members, target] = np.where(is_self, dist[:, 1], dist[:, 0])
    return out


def _brute_nearest(xy, codes, n_types):
    full = cdist(xy, xy)
    np.fill_diagonal(full, np.inf)
    out = np.stack([full[:, codes == t].min(axis=1) if (codes == t).any()
                    else np.full(len(xy), np.inf) for t in range(n_types)], axis=1)
    out[np.isinf(out)] = np.nan
    return out


def _layouts():
    rng = np.random.default_rng(0)
    uniform = rng.uniform(0, 400, (1500, 2))
    yield "uniform", uniform, rng.integers(0, 5, 1500)
    lattice = np.array(np.meshgrid(np.arange(30.0), np.arange(30.0))).reshape(2, -1).T * 7
    yield "lattice ties", lattice, rng.integers(0, 4, len(lattice))      # many exact ties
    rounded = np.round(rng.uniform(0, 40, (800, 2)))                       # coincident cells
    yield "coincident", rounded, rng.integers(0, 3, 800)
    # types in separate clusters far apart: long ring searches, unresolved pairs at the cap
    clusters = np.concatenate([rng.normal(0, 20, (600, 2)), rng.normal(3000, 20, (600, 2))])
    yield "clusters", clusters, np.repeat([0, 1], 600)
    rare = rng.uniform(0, 1000, (2000, 2))
    codes = rng.integers(0, 3, 2000)
    codes[:3] = 3          # a rare type (per-type tree path)
    codes[3] = 4           # a single-cell type: undefined for itself
    yield "rare and single", rare, codes                               # type 5 has no cell
    line = np.column_stack([np.linspace(0, 100, 300), np.zeros(300)])  # zero-area bounding box
    yield "line", line, rng.integers(0, 2, 300)


@pytest.mark.parametrize("layout", list(_layouts()), ids=lambda item: item[0])
def test_nearest_bit_identical_to_kdtree_and_equal_to_brute_force(layout):
    _, xy, codes = layout
    n_types = int(codes.max()) + 2
    nearest = nearest_type_distances(xy, codes, n_types)
    np.testing.assert_array_equal(nearest, _tree_reference(xy, codes, n_types))
    np.testing.assert_allclose(nearest, _brute_nearest(xy, codes, n_types), rtol=1e-12)
    assert np.isnan(nearest[:, -1]).all()


@pytest.mark.parametrize("max_candidates", [1, 8, 100_000])
def test_ring_search_resolves_exactly_or_reports_unresolved(max_candidates):
    rng = np.random.default_rng(1)
    xy = np.concatenate([rng.uniform(0, 300, (700, 2)), rng.uniform(2000, 2100, (50, 2))])
    codes = np.concatenate([rng.integers(0, 3, 700), np.full(50, 3)])
    reference = _tree_reference(xy, codes, 4)
    distance, resolved, order = nearest_by_type_grid(xy, codes, 4, np.ones(4, dtype=bool),
                                                     max_candidates=max_candidates)
    assert sorted(order) == list(range(len(xy)))   # rows in grid order
    np.testing.assert_array_equal(distance[resolved], reference[order][resolved])
    if max_candidates == 1:
        assert not resolved.all()   # the far cluster is beyond the cap: left to the KD-trees
    if max_candidates == 100_000:
        assert resolved.all()
    np.testing.assert_array_equal(nearest_type_distances(xy, codes, 4, grid_coverage=0.0),
                                  reference)


def test_ring_search_finishes_few_capped_cells_of_a_common_type():
    # type 0 everywhere but a 100 µm hole holding the type-1 cells: from deep inside the hole
    # the capped search misses type 0, and the far search from those cells alone finishes it
    rng = np.random.default_rng(2)
    spread = rng.uniform(0, 1000, (6000, 2))
    spread = spread[np.hypot(*(spread - 500).T) > 100]
    angle, radius = rng.uniform(0, 2 * np.pi, 150), 95 * np.sqrt(rng.uniform(0, 1, 150))
    hole = 500 + np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    xy, codes = np.concatenate([spread, hole]), np.repeat([0, 1], [len(spread), 150])
    reference = _tree_reference(xy, codes, 2)
    # max_candidates = 4 caps the first search at ring 1 (reach < 3 bin widths), the far
    # search at ring 6
    assert (reference[codes == 1, 0] > 3 * _grid_width(xy, 2.0)).sum() > 20
    distance, resolved, order = nearest_by_type_grid(xy, codes, 2, np.array([True, False]),
                                                     max_candidates=4)
    assert resolved[:, 0].all()
    np.testing.assert_array_equal(distance[:, 0], reference[order, 0])


def test_nearest_tiny_inputs():
    assert np.isnan(nearest_type_distances(np.array([[1.0, 2.0]]), np.array([0]), 1)).all()
    two = nearest_type_distances(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([0, 1]), 2)
    np.testing.assert_array_equal(two, [[np.nan, 5.0], [5.0, np.nan]])
    assert nearest_type_distances(np.empty((0, 2)), np.empty(0, dtype=int), 2).shape == (0, 2)


def test_average_minimum_distance_brute_force_and_stage_shortcut():
    rng = np.random.default_rng(2)
    xy = np.round(rng.uniform(0, 60, (500, 2)))
    codes = rng.integers(0, 3, 500)
    full = cdist(xy, xy)
    np.fill_diagonal(full, np.inf)
    amd = average_minimum_distance(cKDTree(xy))
    assert amd == pytest.approx(full.min(axis=1).mean(), rel=1e-12)
    assert mean_nearest_distance(nearest_type_distances(xy, codes, 3)) == amd


def _brute_counts(xy, codes, n_types, radius):
    d = cdist(xy, xy)
    inside = (d > 0) & (d <= radius)
    per_cell = np.stack([inside[:, codes == t].sum(axis=1) for t in range(n_types)], axis=1)
    return per_cell


@pytest.mark.parametrize("layout", list(_layouts())[:3], ids=lambda item: item[0])
def test_count_within_grid_equals_brute_force_and_pair_path(layout):
    _, xy, codes = layout
    n_types = int(codes.max()) + 1
    types = [f"T{t}" for t in range(n_types)]
    radii = [7.0, 10.0, 14.0, 35.0]  # lattice spacing 7: many cells exactly at r
    tree = cKDTree(xy)
    table = count_within_by_type(tree, codes, types, radii)
    for radius in radii:
        per_cell = _brute_counts(xy, codes, n_types, radius)
        rows = table[table.radius_um == radius]
        for row in rows.itertuples(index=False):
            s, t = types.index(row.source_type), types.index(row.target_type)
            counts = per_cell[codes == s, t]
            assert row.from_with == np.count_nonzero(counts)
            assert row.within_mean == counts.mean()
    chunks = list(iter_pairs_within(tree, max(radii), chunk_size=200))
    pd.testing.assert_frame_equal(table, count_within_by_type(tree, codes, types, radii,
                                                              pairs=chunks), check_exact=True)


def test_count_within_boundary_conventions():
    # from cell 0: (3, 4) exactly at r = 5 counts (<=); a coincident cell never counts; a cell
    # whose d² is one ulp above 25 is outside the outer radius (the KD-tree's d² <= r² test)
    xy = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [5.0, 5.96e-8], [0.0, 5.0 + 1e-9]])
    d_sq = xy[3, 0] ** 2 + xy[3, 1] ** 2
    assert d_sq > 25.0 and np.sqrt(d_sq) == 5.0
    codes = np.array([0, 1, 1, 1, 1])
    tree = cKDTree(xy)
    for radii in ([5.0], [5.0, 10.0]):
        table = count_within_by_type(tree, codes, ["A", "B"], radii)
        pairs = count_within_by_type(tree, codes, ["A", "B"], radii,
                                     pairs=list(iter_pairs_within(tree, max(radii))))
        pd.testing.assert_frame_equal(table, pairs, check_exact=True)
    outer = count_within_by_type(tree, codes, ["A", "B"], [5.0]).set_index(
        ["source_type", "target_type"])
    assert outer.loc[("A", "B"), "within_mean"] == 1.0  # only (3, 4)


def test_cell_list_pair_counts_do_not_depend_on_threads():
    rng = np.random.default_rng(4)
    xy = rng.uniform(0, 2000, (3000, 2))
    codes = rng.integers(0, 3, 3000)
    interval = np.linspace(0, 100, 6)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = co_occurrence(xy, codes, 3, interval)[1]
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(co_occurrence(xy, codes, 3, interval)[1], single)
    d = cdist(xy, xy)
    np.fill_diagonal(d, np.inf)
    brute = (d[np.ix_(codes == 0, codes == 1)] <= 100).sum()
    assert single[0, 1, -1] == brute
