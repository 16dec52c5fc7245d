"""SPIAT's bordering cells, step by step: alphahull's ``ahull`` arcs, then SPIAT's arc walk.

This module re-implements (in our own code, from reading the R sources) the chain that SPIAT's
``R_BC`` and ``identify_bordering_cells`` run, so that the published numbers can be reproduced:

1. ``alphahull::delvor`` (alphahull 2.5): one row per Delaunay edge, in the order in which the
   edges first appear in the triangle list (all first edges of every triangle, then all second,
   then all third), with the circumcentres of the two adjacent triangles; a convex-hull edge gets
   a fictitious far extreme ``m ± away · v``, ``v`` = edge normal / |edge|², ``away`` = the
   larger coordinate range (``dummycoor``).
2. ``alphahull::ashape``: α-extremes (hull points and points with an incident circumradius
   ``> α``) and the α-shape edges between them (``l_min <= α <= l_max``).
3. ``alphahull::complement``: the open balls (circumdiscs with radius ``> α`` and radius-α balls
   through an edge) and half-planes whose union is the complement of the α-convex hull.
4. ``alphahull::ahull``: for every α-shape edge whose complement balls all lie on one side, the
   smallest such ball gives an arc, oriented by the sign of a dot product; arcs of intersecting
   balls are cut at their intersection points (new points appended to ``xahull``); the arcs are
   chained (``end2`` of one = ``end1`` of the next, the first unused match in row order); the
   α-extremes on no arc follow as one-point "arcs" ``(p, p)``.
5. SPIAT ``fix_ahull`` swaps rows to repair breaks; ``get_polygon`` splits the rows where
   ``end2[i] != end1[i + 1]``, keeps runs of at least 6 rows (``i - s > 4``) with more than
   ``n_to_exclude`` rows, never keeps the run after the last break (unless there is no break at
   all), and takes the ``end1`` point of every kept row; the cells at those coordinates are the
   bordering cells (cut points match no cell).

Order. The row order of step 1 comes from the triangle list of ``interp::tri.mesh`` (S-hull),
which we do not reproduce; we use Qhull's triangle list (scipy). Steps 4 and 5 depend on that
order only through which arc starts a chain, which rows ``fix_ahull`` swaps and which run is
last. On SPIAT's ``defined_image`` the result is the same for every triangle order we tried
(tests permute the input points); on other data it need not be.

Known disagreement. With these steps, ``defined_image`` gives SPIAT's published R_BC (165 / 819)
and three of the four border distances of SPIAT's own unit test (``n_to_exclude = 10``, cells
3776-3778), but for cell 3779 SPIAT reports 29.5998 (to cell 3849) where we find cell 3762 at
17.1349 on the same boundary cycle; SPIAT's run did not mark cell 3762. The cycle has no cut
point and no threshold case near it, so we cannot say, without running R, which step differs
(a different triangulation from S-hull, an older alphahull, or the test's age).

Degenerate inputs that stop R (an α-shape edge whose only complement piece on its side is a
half-plane, ``acos`` of a value just outside [-1, 1], duplicate points) are handled here by
raising, clamping and de-duplicating (in ``spiat_border_cells``) respectively. An arc whose
ball centre is the edge midpoint has no orientation in alphahull (the dot product is 0 and the
mesh's point order decides); such exact right angles are order-dependent here too.

References
----------
1. Pateiro-López B, Rodríguez-Casal A. Generalizing the convex hull of a sample: the R package
   alphahull. J Stat Softw. 2010;34(5):1-28 (package version 2.5, files R/delvor.R,
   R/dummycoor.R, R/ashape.R, R/complement.R, R/ahull.R, R/inter.R, R/rotation.R).
2. Feng Y, et al. Spatial analysis with SPIAT and spaSim to characterize and simulate tissue
   microenvironments. Nat Commun. 2023;14:2697 (files R/identify_bordering_cells.R,
   R/fix_ahull.R, R/R_BC.R).
"""

from __future__ import annotations

import heapq
import math
from typing import NamedTuple

import numpy as np
from scipy.spatial import Delaunay, cKDTree

MIN_RUN_ROWS = 6
"""``get_polygon`` keeps a run of rows s..i only when ``i - s > 4``."""

# Arc table columns (alphahull's ``ahull$arcs``): c1, c2, r, v.x, v.y, theta, end1, end2.
_END1, _END2 = 6, 7


class HullArcs(NamedTuple):
    """alphahull's ``ahull`` output that SPIAT uses.

    Attributes
    ----------
    arcs
        (m, 8) float: ball centre (2), radius, unit direction to the arc middle (2), half
        opening angle, start and end point index (0-based into ``points``); one-point rows
        ``(p, p)`` with radius 0 for α-extremes on no arc, at the end.
    points
        (n + k, 2): the input points followed by the k cut points.
    """

    arcs: np.ndarray
    points: np.ndarray


def delaunay_edge_table(xy: np.ndarray) -> np.ndarray:
    """alphahull's ``delvor`` mesh, (e, 12): ind1, ind2, x1, y1, x2, y2, mx1, my1, mx2, my2,
    bp1, bp2 (0-based indices; ``bp2 = 1`` marks the fictitious extreme of a hull edge).

    Triangles come from Qhull (scipy), oriented counter-clockwise as ``interp`` does.
    """
    triangulation = Delaunay(xy)
    triangles = triangulation.simplices.copy()
    neighbours = triangulation.neighbors.copy()
    a, b, c = (xy[triangles[:, k]] for k in range(3))
    clockwise = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (
        c[:, 0] - a[:, 0]) < 0
    triangles[clockwise] = triangles[clockwise][:, [0, 2, 1]]
    neighbours[clockwise] = neighbours[clockwise][:, [0, 2, 1]]
    centres = _circumcentres(xy[triangles])
    # Edge k of a triangle is the one opposite its corner k: (2,3), (1,3), (1,2) in R's terms.
    ends = ((1, 2), (0, 2), (0, 1))
    n_triangles = len(triangles)
    first = np.concatenate([triangles[:, list(pair)] for pair in ends])
    owner = np.tile(np.arange(n_triangles), 3)
    other = np.concatenate([neighbours[:, k] for k in range(3)])
    key = np.sort(first, axis=1)
    _, keep = np.unique(key[:, 0] * len(xy) + key[:, 1], return_index=True)
    keep = np.sort(keep)                           # first appearance, as R's duplicated()
    first, owner, other = first[keep], owner[keep], other[keep]
    p1, p2 = xy[first[:, 0]], xy[first[:, 1]]
    m1 = centres[owner]
    on_hull = other < 0
    m2 = centres[np.where(on_hull, 0, other)]
    if on_hull.any():
        away = max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]))
        edge = p2[on_hull] - p1[on_hull]
        normal = np.column_stack([edge[:, 1], -edge[:, 0]])
        normal = normal / np.sum(normal**2, axis=1, keepdims=True)
        corner = triangles[owner[on_hull]]
        opposite = corner.sum(axis=1) - first[on_hull].sum(axis=1)
        inward = np.sum((xy[opposite] - (p1[on_hull] + p2[on_hull]) / 2) * normal, axis=1) > 0
        m2[on_hull] = m1[on_hull] + np.where(inward, -away, away)[:, None] * normal
    return np.column_stack([first, p1, p2, m1, m2, np.zeros(len(first)), on_hull]).astype(float)


def alpha_shape_rows(mesh: np.ndarray, alpha: float, n_points: int):
    """Rows of ``mesh`` on the α-shape (in mesh order) and the α-extreme mask (``ashape``)."""
    first, second = mesh[:, 0].astype(np.int64), mesh[:, 1].astype(np.int64)
    dm1 = np.hypot(mesh[:, 2] - mesh[:, 6], mesh[:, 3] - mesh[:, 7])
    dm2 = np.hypot(mesh[:, 2] - mesh[:, 8], mesh[:, 3] - mesh[:, 9])
    dm1[mesh[:, 10] == 1] = np.inf
    dm2[mesh[:, 11] == 1] = np.inf
    largest = np.full(n_points, -np.inf)
    for radius in (dm1, dm2):
        np.maximum.at(largest, first, radius)
        np.maximum.at(largest, second, radius)
    extreme = largest > alpha
    half = np.hypot(mesh[:, 2] - mesh[:, 4], mesh[:, 3] - mesh[:, 5]) / 2
    between = _between(mesh)
    l_min = np.minimum(np.minimum(dm1, dm2), np.where(between, half, np.inf))
    l_max = np.maximum(np.maximum(dm1, dm2), np.where(between, half, -np.inf))
    on_shape = extreme[first] & extreme[second] & (l_min <= alpha) & (alpha <= l_max)
    return np.flatnonzero(on_shape), extreme


def hull_arcs(xy: np.ndarray, alpha: float) -> HullArcs:
    """alphahull's ``ahull(x, y, alpha)$arcs`` and ``$xahull`` for distinct points ``xy``."""
    xy = np.asarray(xy, dtype=np.float64)
    mesh = delaunay_edge_table(xy)
    rows, extreme = alpha_shape_rows(mesh, alpha, len(xy))
    arcs, ends = _edge_arcs(mesh[rows], alpha)
    points = [tuple(p) for p in xy]
    arcs, ends = _cut_intersecting_arcs(arcs, ends, points)
    order = _chain(ends)
    table = np.column_stack([arcs[order], ends[order]]) if len(order) else np.zeros((0, 8))
    used = np.zeros(len(points), dtype=bool)
    used[ends.ravel()] = True
    alone = np.flatnonzero(extreme & ~used[: len(xy)])
    lone_rows = np.column_stack([xy[alone], np.zeros((len(alone), 4)), alone, alone])
    return HullArcs(np.vstack([table, lone_rows]), np.asarray(points, dtype=np.float64))


def fix_arc_order(arcs: np.ndarray) -> np.ndarray:
    """SPIAT's ``fix_ahull``: at each break, move a later row touching the open end next.

    Kept as written in SPIAT: it skips one-point rows, reads them from the unmodified table,
    swaps every later row that touches the open end into the next position (the last one
    wins) and reverses it when it touches with its end point.
    """
    original = arcs
    ends = arcs.copy()
    n = len(ends)
    i = 0
    while i < n - 1:
        open_end = ends[i, _END2]
        next_start, next_end = ends[i + 1, _END1], ends[i + 1, _END2]
        while open_end != next_start:
            if next_end == next_start:             # a one-point row: step over it
                i += 1
                if i + 1 >= n:
                    break
                next_start, next_end = original[i + 1, _END1], original[i + 1, _END2]
                continue
            later = slice(i + 1, n)
            touching = (ends[later, _END1] == open_end) | (ends[later, _END2] == open_end)
            for j in (i + 1 + np.flatnonzero(touching)).tolist():
                start_j, end_j = ends[j, _END1], ends[j, _END2]
                ends[[i + 1, j]] = ends[[j, i + 1]]
                if end_j == open_end:
                    ends[i + 1, _END2] = start_j
                    ends[i + 1, _END1] = open_end
            break
        i += 1
    return ends


def polygon_runs(arcs: np.ndarray, n_to_exclude: int) -> list[tuple[int, int]]:
    """SPIAT's ``get_polygon`` runs as (first, last) row pairs, inclusive."""
    breaks = np.flatnonzero(arcs[:-1, _END2] != arcs[1:, _END1])
    starts = np.concatenate([[0], breaks[:-1] + 1]) if len(breaks) else np.zeros(0, np.int64)
    runs = [(int(s), int(e)) for s, e in zip(starts, breaks, strict=True)
            if e - s + 1 >= MIN_RUN_ROWS]
    if not runs:
        runs = [(0, len(arcs) - 1)]
    return [(s, e) for s, e in runs if e - s + 1 > n_to_exclude]


def spiat_polygons(xy: np.ndarray, alpha: float, n_to_exclude: int) -> list[np.ndarray]:
    """Point indices (0-based, ``end1`` of each row) of SPIAT's polygons; cut points are
    indices ``>= len(xy)``."""
    hull = hull_arcs(xy, alpha)
    if len(hull.arcs) == 0:
        return []
    arcs = fix_arc_order(hull.arcs)
    return [arcs[s:e + 1, _END1].astype(np.int64) for s, e in polygon_runs(arcs, n_to_exclude)]


def _between(mesh: np.ndarray) -> np.ndarray:
    """alphahull's ``betw``: the edge midpoint ranks 2nd of (m1, m2, midpoint) in x (in y when
    the two centres share x), with R's average ranks for ties."""
    vertical = mesh[:, 6] == mesh[:, 8]
    axis = np.where(vertical, 1, 0)
    rows = np.arange(len(mesh))
    c1, c2 = mesh[rows, 6 + axis], mesh[rows, 8 + axis]
    middle = (mesh[rows, 2 + axis] + mesh[rows, 4 + axis]) / 2
    below = (c1 < middle).astype(np.int64) + (c2 < middle).astype(np.int64)
    tied = (c1 == middle).astype(np.int64) + (c2 == middle).astype(np.int64)
    rank = 1 + below + tied / 2
    return rank == 2


def _edge_arcs(edges: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """One arc per α-shape edge whose complement balls lie on one side (``complement`` and the
    first loop of ``ahull``): (m, 6) arcs and (m, 2) oriented end points."""
    x1, y1, x2, y2 = edges[:, 2], edges[:, 3], edges[:, 4], edges[:, 5]
    px, py = (x1 + x2) / 2, (y1 + y2) / 2
    half = np.hypot(x1 - x2, y1 - y2) / 2
    slack = alpha**2 - half**2
    root = np.sqrt(np.maximum(slack, 0))
    between = _between(edges)
    on_hull = edges[:, 11] == 1
    side = []
    for k, other in ((1, 2), (2, 1)):
        mx, my = edges[:, 4 + 2 * k], edges[:, 5 + 2 * k]
        ox, oy = edges[:, 4 + 2 * other], edges[:, 5 + 2 * other]
        radius = np.hypot(x1 - mx, y1 - my)                 # dm1 / dm2 of complement()
        to_mid = np.hypot(mx - px, my - py)
        other_radius, other_to_mid = np.hypot(x1 - ox, y1 - oy), np.hypot(ox - px, oy - py)
        with np.errstate(divide="ignore", invalid="ignore"):
            ux = np.where(to_mid != 0, (px - mx) / to_mid, 0.0)
            uy = np.where(to_mid != 0, (py - my) / to_mid, 0.0)
            angle = np.arctan(half / to_mid)
            ball_angle = np.arctan(half / root)
        real = edges[:, 10 + (k - 1)] == 0                  # bp1 / bp2 == 0
        big = real & (radius > alpha)
        through = (big | ~real) & (slack > 0)
        centre_ball = big
        edge_ball = through & between
        edge_ball_far = through & ~between & (alpha - root < other_radius - other_to_mid)
        side.append(dict(centre_ball=centre_ball, edge_ball=edge_ball | edge_ball_far,
                         radius=radius, m=(mx, my), u=(ux, uy), angle=angle,
                         ball_angle=ball_angle))
    n_first = side[0]["centre_ball"].astype(int) + side[0]["edge_ball"]
    n_second = side[1]["centre_ball"].astype(int) + side[1]["edge_ball"] + on_hull
    one_sided = (n_first + n_second > 0) & ((n_first == 0) | (n_second == 0))
    arcs = np.zeros((len(edges), 6))
    for s in (0, 1):
        pick = one_sided & ((n_first > 0) if s == 0 else (n_first == 0))
        ball = side[s]
        # The smallest positive radius wins: the circumdisc (radius > α) or the α-ball.
        use_centre = ball["centre_ball"] & ~ball["edge_ball"]
        if np.any(pick & ~ball["centre_ball"] & ~ball["edge_ball"]):
            raise ValueError("an α-shape edge has only a half-plane in its complement")
        ux, uy = ball["u"]
        mx, my = ball["m"]
        centre = np.where(use_centre[:, None], np.column_stack([mx, my]),
                          np.column_stack([px - root * ux, py - root * uy]))
        radius = np.where(use_centre, ball["radius"], alpha)
        angle = np.where(use_centre, ball["angle"], ball["ball_angle"])
        arcs[pick] = np.column_stack([centre, radius, ux, uy, angle])[pick]
    arcs, edges = arcs[one_sided], edges[one_sided]
    # Orientation: end1 is the end point at which the arc direction rotated clockwise by theta
    # points (dot product of (p1 - midpoint) with that direction > 0).
    cos, sin = np.cos(arcs[:, 5]), np.sin(arcs[:, 5])
    tx = cos * arcs[:, 3] + sin * arcs[:, 4]
    ty = -sin * arcs[:, 3] + cos * arcs[:, 4]
    forward = (edges[:, 2] - edges[:, 4]) / 2 * tx + (edges[:, 3] - edges[:, 5]) / 2 * ty > 0
    ind = edges[:, :2].astype(np.int64)
    ends = np.where(forward[:, None], ind, ind[:, ::-1])
    return arcs, ends


def _cut_intersecting_arcs(
    arc_table: np.ndarray, end_table: np.ndarray, points: list
) -> tuple[np.ndarray, np.ndarray]:
    """``ahull``'s double loop over arc pairs (watch, j) whose circles cross twice, in R's
    order; cut points are appended to ``points``. Only crossing pairs are visited (the circle
    of an arc never changes, so pairs are found once with a k-d tree)."""
    arcs: list[np.ndarray] = [row.copy() for row in arc_table]
    ends: list[list[int]] = [list(map(int, row)) for row in end_table]
    if not arcs:
        return np.zeros((0, 6)), np.zeros((0, 2), np.int64)
    circle_of = list(range(len(arcs)))
    circles = np.array([row[:3] for row in arcs])
    tree = cKDTree(circles[:, :2])
    crossing: list[set[int]] = [set() for _ in circles]
    pairs = tree.query_pairs(2 * circles[:, 2].max(), output_type="ndarray")
    for a, b in pairs[_cross_twice(circles[pairs[:, 0]], circles[pairs[:, 1]])].tolist():
        crossing[a].add(b)
        crossing[b].add(a)
    members: list[list[int]] = [[k] for k in range(len(circles))]
    watch = 0
    while watch < len(arcs):
        queue = [k for c in crossing[circle_of[watch]] for k in members[c]]
        heapq.heapify(queue)
        while queue:
            j = heapq.heappop(queue)
            if j == watch:
                continue
            new = _cut_pair(arcs, ends, points, watch, j)
            # Appended arcs (split halves of watch and j) are visited later in this loop too.
            for k, parent in zip(new, (watch, j), strict=False):
                circle = circle_of[parent]
                circle_of.append(circle)
                members[circle].append(k)
                if circle in crossing[circle_of[watch]]:
                    heapq.heappush(queue, k)
        watch += 1
    return np.array(arcs), np.array(ends, dtype=np.int64)


def _cut_pair(arcs, ends, points, watch: int, j: int) -> list[int]:
    """One (watch, j) step of ``ahull``'s loop; returns the indices of appended arcs."""
    aw, aj = arcs[watch], arcs[j]
    hit = _crossings(aw[:3], aj[:3])
    v_watch, theta_watch, v_j, theta_j = hit
    ang_ox = _direction_angle(aw[3], aw[4])
    angles = _crossing_angles(v_watch, theta_watch, ang_ox, aw[5])
    order = _rank_names(angles)
    ew, ej = ends[watch], ends[j]
    if ew[0] in ej or ew[1] in ej:
        if ew[0] == ej[1]:
            case = _shared_end_case(order, angles, ("beta1", "beta2", "theta1", "theta2"),
                                    ("beta1", "theta1", "beta2", "theta2"), "theta1", "beta1")
            if case == 2:
                half = (angles["theta2"] - angles["beta2"]) / 2
                direction = _rotate((1.0, 0.0), -aw[5] + half - ang_ox)
                points.append(tuple(aw[:2] + aw[2] * _rotate(direction, half)))
                new_point = len(points) - 1
                aw[3:6] = (direction[0], direction[1], half)
                ew[0] = new_point
                _aim(aj, points[new_point], points[ej[0]])
                ej[1] = new_point
        elif ew[1] == ej[0]:
            case = _shared_end_case(order, angles, ("theta1", "theta2", "beta1", "beta2"),
                                    ("theta1", "beta1", "theta2", "beta2"), "theta2", "beta2")
            if case == 2:
                half = (angles["beta1"] - angles["theta1"]) / 2
                direction = _rotate((1.0, 0.0), aw[5] - half - ang_ox)
                points.append(tuple(aw[:2] + aw[2] * _rotate(direction, -half)))
                new_point = len(points) - 1
                aw[3:6] = (direction[0], direction[1], half)
                ew[1] = new_point
                _aim(aj, points[new_point], points[ej[1]])
                ej[0] = new_point
        return []
    if order != ("theta1", "beta1", "beta2", "theta2"):
        return []
    angles_j = _crossing_angles(v_j, theta_j, _direction_angle(aj[3], aj[4]), aj[5])
    if _rank_names(angles_j) != ("theta1", "beta1", "beta2", "theta2"):
        return []
    # Both arcs cross inside their spans: split each in two at the two crossing points.
    half1 = (angles["beta1"] - angles["theta1"]) / 2
    direction1 = _rotate((1.0, 0.0), aw[5] - half1 - ang_ox)
    half2 = (angles["theta2"] - angles["beta2"]) / 2
    direction2 = _rotate((1.0, 0.0), -aw[5] + half2 - ang_ox)
    arcs.append(np.array([aw[0], aw[1], aw[2], direction2[0], direction2[1], half2]))
    aw[3:6] = (direction1[0], direction1[1], half1)
    cut1 = tuple(aw[:2] + aw[2] * _rotate(direction1, -half1))
    cut2 = tuple(aw[:2] + aw[2] * _rotate(direction2, half2))
    first_cut, second_cut = len(points), len(points) + 1
    old_end = ew[1]
    ew[1] = first_cut
    ends.append([second_cut, old_end])
    points.extend([cut1, cut2])
    old_start = ej[0]
    ej[0] = first_cut
    ends.append([old_start, second_cut])
    _aim(aj, points[first_cut], points[ej[1]])
    split = aj.copy()
    _aim(split, points[second_cut], points[old_start])
    arcs.append(split)
    return [len(arcs) - 2, len(arcs) - 1]


def _shared_end_case(order, angles, case1, ambiguous, a, b) -> int:
    if order == case1:
        return 1
    if order == ("theta1", "beta1", "beta2", "theta2"):
        return 2
    if order == ambiguous:
        return 2 if abs((angles[a] - angles[b]) / 2) < 1e-5 else 1
    return 0


def _cross_twice(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """:func:`_crossings` is not None, for rows of circles ``(x, y, r)`` at once."""
    d = np.sqrt((second[:, 0] - first[:, 0]) ** 2 + (second[:, 1] - first[:, 1]) ** 2)
    r1, r2 = first[:, 2], second[:, 2]
    return ~((d == 0) | (d >= r1 + r2) | (d <= np.maximum(r1, r2) - np.minimum(r1, r2)))


def _crossings(first: np.ndarray, second: np.ndarray):
    """alphahull's ``inter``: for two circles crossing at two points, the unit vector from
    each centre towards the other and the half angles of the chords; else None.

    On Python floats (the same IEEE operations as on NumPy scalars, several times faster
    in this per-pair loop)."""
    (x1, y1, r1), (x2, y2, r2) = first[:3].tolist(), second[:3].tolist()
    d = math.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2)
    if d == 0 or d >= r1 + r2 or d <= max(r1, r2) - min(r1, r2):
        return None
    d1 = (d * d - r2 * r2 + r1 * r1) / (2 * d)
    vx, vy = (x2 - x1) / d, (y2 - y1) / d
    return ((vx, vy), math.acos(_clamp(d1 / r1)), (-vx, -vy),
            math.acos(_clamp((d - d1) / r2)))


def _crossing_angles(v_cross, theta_cross, ang_ox, theta_arc) -> dict[str, float]:
    rotated = _rotated(v_cross, math.cos(ang_ox), math.sin(ang_ox))
    base = math.acos(_clamp(rotated[0]))
    if rotated[1] < 0:
        base = -base
    return {"theta1": -theta_arc, "theta2": theta_arc,
            "beta1": base - theta_cross, "beta2": base + theta_cross}


def _rank_names(angles: dict[str, float]) -> tuple[str, ...]:
    return tuple(sorted(angles, key=angles.__getitem__))    # stable, as R's radix sort


def _direction_angle(vx: float, vy: float) -> float:
    angle = math.acos(_clamp(vx))
    return angle if vy >= 0 else 2 * math.pi - angle


def _rotate(v, theta: float) -> np.ndarray:
    """alphahull's ``rotation``: clockwise by ``theta``."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array(_rotated(v, c, s))


def _rotated(v, c: float, s: float) -> tuple[float, float]:
    return c * v[0] + s * v[1], -s * v[0] + c * v[1]


def _aim(arc: np.ndarray, new_end, other_end) -> None:
    """Point ``arc`` (same circle) at the chord between two end points."""
    middle = (np.asarray(new_end) + np.asarray(other_end)) / 2
    chord = np.linalg.norm(middle - np.asarray(other_end))
    direction = middle - arc[:2]
    length = np.linalg.norm(direction)
    arc[3:6] = (direction[0] / length, direction[1] / length, math.atan(chord / length))


def _chain(ends: np.ndarray) -> list[int]:
    """``ahull``'s ``ord.new``: start at the first unused row, follow to the first unused row
    whose start is the current end, until none is left."""
    m = len(ends)
    starting: dict[int, list[int]] = {}
    for k in range(m - 1, -1, -1):
        starting.setdefault(int(ends[k, 0]), []).append(k)   # stacks, smallest index on top
    used = np.zeros(m, dtype=bool)
    order: list[int] = []
    first_free = 0
    while len(order) < m:
        while used[first_free]:
            first_free += 1
        current: int | None = first_free
        while current is not None:
            used[current] = True
            order.append(current)
            stack = starting.get(int(ends[current, 1]), [])
            while stack and used[stack[-1]]:
                stack.pop()
            current = stack[-1] if stack else None
    return order


def _circumcentres(triangles: np.ndarray) -> np.ndarray:
    """Circumcentres (m, 2) of triangles (m, 3, 2), with interp's ``circum`` formula."""
    (x1, y1), (x2, y2), (x3, y3) = (triangles[:, k].T for k in range(3))
    det = (x1 - x3) * (y2 - y3) - (x2 - x3) * (y1 - y3)
    s1 = ((x1 - x3) * (x1 + x3) + (y1 - y3) * (y1 + y3)) / 2
    s2 = ((x2 - x3) * (x2 + x3) + (y2 - y3) * (y2 + y3)) / 2
    return np.column_stack([(s1 * (y2 - y3) - s2 * (y1 - y3)) / det,
                            (s2 * (x1 - x3) - s1 * (x2 - x3)) / det])


def _clamp(value: float) -> float:
    return min(1.0, max(-1.0, value))
