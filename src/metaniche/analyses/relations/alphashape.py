"""Border cells of a cell type from its α-shape, and SPIAT's border-cell ratio R_BC.

SPIAT (``identify_bordering_cells``, ``R_BC``) calls the cells on the α-convex hull of a cell
type (alphahull, Pateiro-López & Rodríguez-Casal 2010) its *bordering cells*, their connected
boundary pieces its *clusters*, and R_BC = bordering cells / cells of the type: near 1 when the
type forms no compact clusters, small for a few large compact clusters.

Definition used here. The α-shape (Edelsbrunner, Kirkpatrick & Seidel 1983) with α the ball
*radius* (alphahull's convention, µm): a Delaunay edge pq is on the α-shape when some disc of
radius α through p and q is empty of other points, i.e. when ``l_min <= α <= l_max`` where,
along the edge's dual Voronoi edge, ``l_max`` is the larger circumradius of the two adjacent
Delaunay triangles (∞ for a convex-hull edge) and ``l_min`` is |pq| / 2 when the edge midpoint
lies on the Voronoi edge, else the smaller circumradius — alphahull's ``ashape`` test. The
border cells are the end points of α-shape edges (alphahull's ``alpha.extremes``); clusters
are the connected components of the α-shape edge graph, and components with ``<=
min_cluster_cells`` border cells are dropped (SPIAT's ``n_to_exclude``).

Difference from SPIAT. SPIAT does not count the cells on the α-shape. It walks alphahull's
``ahull`` arcs (one per α-shape edge whose complement balls lie on one side, cut where balls
cross) in the package's chained order, splits the list where one arc does not end where the next
starts, keeps runs of at least 6 consecutive arcs, never keeps the run after the last break and
takes the start point of each kept arc (``fix_ahull``, ``get_polygon``). ``border_cells`` here
is the geometric definition; ``spiat_border_cells`` re-implements SPIAT's walk step by step
(module ``_ahull``). On SPIAT's ``defined_image`` (Tumour, α = 40, ``R_BC``'s ``n_to_exclude =
0``) ``spiat_border_cells`` gives the published R_BC = 165 / 819 = 0.2014652; ``border_cells``
gives 168 / 819 = 0.2051 with ``min_cluster_cells = 5``: at three concave α-shape vertices the
balls of the two adjacent arcs cross before reaching the vertex, ``ahull`` ends both arcs at the
crossing point instead (a cut point, not a cell), and SPIAT does not count the vertex. Both give
three groups of more than 10 border cells. SPIAT's own unit test (``n_to_exclude = 10``,
distances to the border) is matched for cells 3776-3778 but not 3779 (see ``_ahull``). Caveats
of the SPIAT walk: its row order comes from ``interp::tri.mesh``'s triangle list, which we
replace by Qhull's (the result on ``defined_image`` does not depend on it, but can elsewhere);
without isolated α-extreme points the last boundary cycle is dropped, and an open chain loses
its last point.

References
----------
1. Edelsbrunner H, Kirkpatrick D, Seidel R. On the shape of a set of points in the plane. IEEE
   Trans Inf Theory. 1983;29:551-559.
2. Pateiro-López B, Rodríguez-Casal A. Generalizing the convex hull of a sample: the R package
   alphahull. J Stat Softw. 2010;34(5):1-28.
3. Feng Y, et al. Spatial analysis with SPIAT and spaSim to characterize and simulate tissue
   microenvironments. Nat Commun. 2023;14:2697 (``identify_bordering_cells``, ``R_BC``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import Delaunay

from metaniche.analyses.relations._ahull import spiat_polygons
from metaniche.config import RelationsParams

__all__ = ["BorderCells", "alpha_shape_edges", "border_cells", "spiat_border_cells"]


class BorderCells(NamedTuple):
    """Border cells of one point set.

    Attributes
    ----------
    is_border
        Boolean per input point: on a kept α-shape component.
    cluster
        Per input point: 1… the kept component it borders, 0 otherwise.
    n_clusters
        Number of kept components.
    ratio
        R_BC: border cells / all points (NaN without points).
    """

    is_border: np.ndarray
    cluster: np.ndarray
    n_clusters: int
    ratio: float


def alpha_shape_edges(xy: np.ndarray, alpha: float) -> np.ndarray:
    """Edges (pairs of point indices, shape (m, 2)) of the α-shape with ball radius ``alpha``.

    See the module docstring for the test. Duplicate points are not allowed (Delaunay merges
    them); fewer than three points or collinear points give no edges. O(n log n).
    """
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) < 3 or np.linalg.matrix_rank(xy - xy.mean(axis=0)) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    triangulation = Delaunay(xy)
    simplices, neighbours = triangulation.simplices, triangulation.neighbors
    centre, radius = _circumcircles(xy[simplices])
    triangle = np.repeat(np.arange(len(simplices)), 3)
    corner = np.tile(np.arange(3), len(simplices))
    p = simplices[triangle, (corner + 1) % 3]
    q = simplices[triangle, (corner + 2) % 3]
    opposite = simplices[triangle, corner]
    other = neighbours[triangle, corner]
    once = (other == -1) | (triangle < other)        # every Delaunay edge once
    p, q, opposite, triangle, other = p[once], q[once], opposite[once], triangle[once], other[once]
    on_hull = other == -1
    other_safe = np.where(on_hull, 0, other)

    def side(points: np.ndarray) -> np.ndarray:
        edge, offset = xy[q] - xy[p], points - xy[p]
        return edge[:, 0] * offset[:, 1] - edge[:, 1] * offset[:, 0]

    side_own = side(centre[triangle])
    # Interior edge: the Voronoi edge joins the two circumcentres; it crosses pq's midpoint
    # when they lie on opposite sides of pq. Hull edge: a ray from the own circumcentre away
    # from the opposite vertex, crossing the midpoint when that centre is on the inner side.
    between = np.where(on_hull, side_own * side(xy[opposite]) >= 0,
                       side_own * side(centre[other_safe]) <= 0)
    half_length = 0.5 * np.hypot(*(xy[q] - xy[p]).T)
    radius_own = radius[triangle]
    radius_other = np.where(on_hull, np.inf, radius[other_safe])
    l_min = np.where(between, half_length, np.minimum(radius_own, radius_other))
    l_max = np.maximum(radius_own, radius_other)
    keep = (l_min <= alpha) & (alpha <= l_max)
    return np.column_stack([p[keep], q[keep]]).astype(np.int64)


def border_cells(xy: np.ndarray, alpha: float = RelationsParams.border_alpha_um,
                 min_cluster_cells: int = 5) -> BorderCells:
    """Cells on the α-shape boundary of a point set, their clusters and R_BC (SPIAT).

    Parameters
    ----------
    xy
        Coordinates of the cells of one type (µm or the file's units), shape (n, 2); exact
        duplicates are counted once for the geometry and all marked alike.
    alpha
        Ball radius of the α-shape, same units. Default 40 (SPIAT's ``R_BC``).
    min_cluster_cells
        Components with this many border cells or fewer are dropped (SPIAT's
        ``n_to_exclude``; default 5 mirrors the 6-arc minimum of SPIAT's ``get_polygon``).

    Returns
    -------
    BorderCells
        See its attributes. O(n log n).
    """
    def clusters(unique: np.ndarray) -> tuple[np.ndarray, int]:
        edges = alpha_shape_edges(unique, alpha)
        graph = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                                  shape=(len(unique), len(unique)))
        _, component = connected_components(graph, directed=False)
        on_shape = np.zeros(len(unique), dtype=bool)
        on_shape[edges.ravel()] = True
        sizes = np.bincount(component[on_shape], minlength=component.max() + 1)
        kept = np.flatnonzero(sizes > min_cluster_cells)
        cluster_of_component = np.zeros(len(sizes), dtype=np.int64)
        cluster_of_component[kept] = np.arange(1, len(kept) + 1)
        return np.where(on_shape, cluster_of_component[component], 0), len(kept)

    return _per_cell(xy, clusters)


def spiat_border_cells(xy: np.ndarray, alpha: float = RelationsParams.border_alpha_um,
                       n_to_exclude: int = 0) -> BorderCells:
    """SPIAT's bordering cells (``identify_bordering_cells``) and R_BC (``R_BC``).

    Re-implements alphahull 2.5's ``ahull`` arcs and SPIAT's ``fix_ahull`` / ``get_polygon``
    (see the module docstring and ``_ahull``): a cell is bordering when it starts an arc of a
    kept run (at least 6 consecutive connected arcs, more than ``n_to_exclude`` arcs, not the
    run after the last break). Cut points between crossing balls are not cells.

    Parameters
    ----------
    xy
        Coordinates of the cells of one type, shape (n, 2); exact duplicates are counted once
        for the geometry and all marked alike (R's ``tri.mesh`` would stop on them).
    alpha
        Ball radius, same units. Default 40 (``R_BC``).
    n_to_exclude
        Runs with this many arcs or fewer are dropped (arcs, not cells: a run's cut points
        count). Default 0 (``R_BC``); SPIAT's ``identify_bordering_cells`` default is 10.

    Returns
    -------
    BorderCells
        ``cluster`` numbers SPIAT's polygons (kept runs) 1… in run order (a cell on two runs
        gets the first); ``n_clusters`` is the number of polygons; ``ratio`` is R_BC. Unlike
        SPIAT, only the cells of ``xy`` can be bordering (SPIAT also marks a cell of another
        type lying at exactly the same coordinates). Arc ordering, chaining and the row
        swaps loop over arcs, not cells; ball crossings are found with a k-d tree.

    References
    ----------
    1. Feng Y, et al. Nat Commun. 2023;14:2697 (SPIAT ``R_BC``, ``identify_bordering_cells``).
    2. Pateiro-López B, Rodríguez-Casal A. J Stat Softw. 2010;34(5):1-28 (alphahull).
    """
    def clusters(unique: np.ndarray) -> tuple[np.ndarray, int]:
        cluster = np.zeros(len(unique), dtype=np.int64)
        polygons = []
        if len(unique) >= 3 and np.linalg.matrix_rank(unique - unique.mean(axis=0)) == 2:
            polygons = spiat_polygons(unique, alpha, n_to_exclude)
        for number, points in reversed(list(enumerate(polygons, start=1))):
            cluster[points[points < len(unique)]] = number   # cut points are not cells
        return cluster, len(polygons)

    return _per_cell(xy, clusters)


def _per_cell(xy: np.ndarray,
              clusters: Callable[[np.ndarray], tuple[np.ndarray, int]]) -> BorderCells:
    """``clusters(distinct points) -> (cluster per point, n)`` mapped back to every cell."""
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) == 0:
        return BorderCells(np.zeros(0, bool), np.zeros(0, np.int64), 0, float("nan"))
    unique, inverse = np.unique(xy, axis=0, return_inverse=True)
    cluster_of_point, n_clusters = clusters(unique)
    cluster = cluster_of_point[inverse.reshape(-1)]
    is_border = cluster > 0
    return BorderCells(is_border, cluster, n_clusters, float(is_border.sum() / len(xy)))


def _circumcircles(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Circumcentres (m, 2) and circumradii (m,) of triangles given as (m, 3, 2) corners."""
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    square = [np.sum(v**2, axis=1) for v in (a, b, c)]
    denominator = 2 * (a[:, 0] * (b[:, 1] - c[:, 1]) + b[:, 0] * (c[:, 1] - a[:, 1])
                       + c[:, 0] * (a[:, 1] - b[:, 1]))
    ux = (square[0] * (b[:, 1] - c[:, 1]) + square[1] * (c[:, 1] - a[:, 1])
          + square[2] * (a[:, 1] - b[:, 1])) / denominator
    uy = (square[0] * (c[:, 0] - b[:, 0]) + square[1] * (a[:, 0] - c[:, 0])
          + square[2] * (b[:, 0] - a[:, 0])) / denominator
    centre = np.column_stack([ux, uy])
    return centre, np.hypot(*(a - centre).T)
