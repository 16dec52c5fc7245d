"""Greedy Delaunay walks: bit-identical to KD-tree queries, exact ties, degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from metaniche.analyses.relations import nearest_type_distances
from metaniche.analyses.relations._walk import (
    delaunay_neighbours,
    nearest_other_by_walk,
    nearest_target_by_walk,
)


def _targets_and_queries(kind: str, rng: np.random.Generator):
    if kind == "uniform":
        return rng.uniform(0, 100, (300, 2)), rng.uniform(-50, 150, (3000, 2))
    if kind == "clustered":            # a dense blob queried from far away (near-ties)
        return rng.normal(500, 15, (400, 2)), rng.uniform(0, 1000, (3000, 2))
    # integer lattice: exact ties everywhere (cocircular quadruples)
    lattice = np.array(np.meshgrid(np.arange(20.0), np.arange(20.0))).reshape(2, -1).T * 5
    return lattice, np.round(rng.uniform(-10, 110, (3000, 2)) * 2) / 2


@pytest.mark.parametrize("kind", ["uniform", "clustered", "lattice"])
@pytest.mark.parametrize("coherent", [True, False])
def test_walk_equals_kdtree_bit_for_bit(kind, coherent):
    rng = np.random.default_rng(0)
    targets, queries = _targets_and_queries(kind, rng)
    if coherent:
        queries = queries[np.lexsort(np.floor(queries / 10).T)]
    graph = delaunay_neighbours(targets)
    assert graph is not None
    got = nearest_target_by_walk(targets, graph, queries)
    np.testing.assert_array_equal(got, cKDTree(targets).query(queries)[0])


@pytest.mark.parametrize("kind", ["uniform", "clustered", "lattice"])
def test_nearest_other_target_is_the_closest_neighbour(kind):
    targets, _ = _targets_and_queries(kind, np.random.default_rng(1))
    graph = delaunay_neighbours(targets)
    vertices = np.arange(len(targets))[::3]
    got = nearest_other_by_walk(targets, graph, vertices)
    np.testing.assert_array_equal(got, cKDTree(targets).query(targets[vertices], k=2)[0][:, 1])


def test_degenerate_targets_have_no_walk_graph():
    assert delaunay_neighbours(np.array([[0.0, 0.0], [1.0, 1.0]])) is None          # < 3
    line = np.column_stack([np.arange(10.0), 2 * np.arange(10.0)])
    assert delaunay_neighbours(line) is None                                       # collinear
    square = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    assert delaunay_neighbours(square) is None                                     # duplicate


@pytest.mark.parametrize("seed", range(3))
def test_rare_type_through_walks_equals_kdtree_reference(seed):
    # 5 000 cells, a rare clustered type and a rare collinear type: the walk path and its KD
    # fallback inside nearest_type_distances, against one KD-tree per type
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 2000, (5000, 2))
    codes = rng.integers(0, 3, 5000)
    xy[:40] = rng.normal(300, 10, (40, 2))
    codes[:40] = 3
    xy[40:50] = np.column_stack([np.linspace(0, 90, 10), np.full(10, 1500.0)])
    codes[40:50] = 4
    xy[50:52] = xy[60]                                      # coincident cells of type 5
    codes[50:52] = 5
    out = nearest_type_distances(xy, codes, 6)
    for target in range(6):
        members = np.flatnonzero(codes == target)
        distance, index = cKDTree(xy[members]).query(xy, k=2)
        is_self = members[index[:, 0]] == np.arange(len(xy))
        expected = np.where(is_self, distance[:, 1], distance[:, 0])
        np.testing.assert_array_equal(out[:, target], expected)
