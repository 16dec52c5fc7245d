"""Multicellular aggregates: density-based detection, TLS classification and maturity grade.

Aggregates are density clusters (DBSCAN semantics on a radius graph) of cells of chosen types:
a member cell is *core* when at least ``min_neighbours`` other member cells lie within
``radius_um`` (distance ``<=``); core cells within the radius of each other share a cluster
(graph components); a non-core member within the radius of a core cell joins that core cell's
cluster (the lowest-numbered one on ties); other members are noise. ``min_neighbours = 1``
gives plain connected components of the radius graph. Cells of *other* types are attached to a
cluster when at least ``min_neighbours`` of its core cells lie within the radius (so the
CCL19+ fibroblasts and FDCs inside a TLS count toward it). A cluster is kept when it has at
least ``min_cells`` member cells.

Tertiary lymphoid structures are clusters of B and T cells with at least ``tls_min_cells``
B + T cells and a B fraction of at least ``tls_min_b_fraction`` (defaults 50 and 0.3). Their
maturity follows the early / primary-follicle / secondary-follicle staging of Silina et al.
(2018) and Posch et al. (2018):

* ``secondary_follicle`` — a germinal centre: at least ``min_gc_cells`` germinal-centre B cells
  (labels in ``gc_types``, or B cells positive for a ``gc_markers`` marker) or plasma cells
  (labels in ``plasma_types`` or cells positive for a ``plasma_markers`` marker);
* ``primary_follicle`` — no germinal centre, but a follicular stromal network: at least
  ``max(min_fdc_cells, min_fdc_fraction * n_cells)`` CCL19+ fibroblasts / follicular dendritic
  cells (labels in ``fdc_types`` or cells positive for an ``fdc_markers`` marker);
* ``lymphoid_aggregate`` — neither.

Marker positivity (see :func:`marker_positive`): above a per-sample threshold, by default
``exp(median + 3 · 1.4826 · MAD)`` of the log of the positive intensities.

References
----------
1. Ester M, Kriegel H-P, Sander J, Xu X. A density-based algorithm for discovering clusters in
   large spatial databases with noise. KDD 1996 (DBSCAN).
2. Silina K, et al. Germinal centers determine the prognostic relevance of tertiary lymphoid
   structures and are impaired by corticosteroids in lung squamous cell carcinoma. Cancer Res.
   2018;78(5):1308-1320.
3. Posch F, et al. Maturation of tertiary lymphoid structures and recurrence of stage II and III
   colorectal cancer. Oncoimmunology. 2018;7(2):e1378844.
4. Schumacher TN, Thommen DS. Tertiary lymphoid structures in cancer. Science.
   2022;375(6576):eabf9419.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from metaniche.analyses.compartments import compartment_of
from metaniche.config import AggregateParams

__all__ = [
    "GRADES",
    "Clusters",
    "NeighbourPairs",
    "aggregate_tables",
    "classify_lymphoid",
    "density_clusters",
    "grade_tls",
    "keep_clusters",
    "marker_positive",
    "neighbour_pairs",
]

GRADES: tuple[str, ...] = ("lymphoid_aggregate", "primary_follicle", "secondary_follicle")
"""TLS maturity grades, least to most mature."""


@dataclass(frozen=True)
class NeighbourPairs:
    """Unordered cell pairs ``i < j`` within a radius, with their distances (µm)."""

    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray

    def within(self, radius_um: float) -> NeighbourPairs:
        """The pairs at distance ``<= radius_um``."""
        keep = self.distance <= radius_um
        return NeighbourPairs(self.i[keep], self.j[keep], self.distance[keep])


@dataclass(frozen=True)
class Clusters:
    """Density clusters of one cell selection.

    Attributes
    ----------
    label
        Per cell, cluster id 1… (0 = in no cluster): members and attached cells.
    member
        Per cell, whether it is a member (of the chosen types) of its cluster; attached cells
        of other types have a label but ``member`` False.
    n_clusters
        Number of clusters.
    """

    label: np.ndarray
    member: np.ndarray
    n_clusters: int


def neighbour_pairs(tree: cKDTree, radius_um: float) -> NeighbourPairs:
    """All unordered pairs of cells at distance ``<= radius_um`` (µm) from the shared tree.

    One ``query_pairs(output_type='ndarray')``: O(n log n + pairs) time and memory.
    """
    pairs = tree.query_pairs(float(radius_um), output_type="ndarray")
    i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    delta = tree.data[i] - tree.data[j]
    distance = np.hypot(delta[:, 0], delta[:, 1])
    keep = distance <= radius_um
    return NeighbourPairs(i[keep], j[keep], distance[keep])


def density_clusters(pairs: NeighbourPairs, selected: np.ndarray, radius_um: float,
                     min_neighbours: int = 1, min_cells: int = 1,
                     attach: bool = True) -> Clusters:
    """DBSCAN-style clusters of the ``selected`` cells on the radius graph (see module notes).

    Parameters
    ----------
    pairs
        Unordered neighbour pairs within at least ``radius_um`` (:func:`neighbour_pairs`).
    selected
        Boolean per cell: cells of the chosen types.
    radius_um
        Neighbour radius, µm; a pair at exactly this distance is neighbours (``<=``).
    min_neighbours
        Other selected cells within the radius that make a selected cell core (sklearn's
        ``min_samples`` minus one). 1 gives connected components.
    min_cells
        Clusters with fewer member cells are dropped.
    attach
        Attach cells of other types with at least ``min_neighbours`` core neighbours of one
        cluster (ties go to the lowest cluster id).

    Returns
    -------
    Clusters
        Cluster ids numbered 1… in order of each cluster's lowest cell index.

    Notes
    -----
    O(pairs) plus one sparse connected-components pass.
    """
    selected = np.asarray(selected, dtype=bool)
    n = len(selected)
    local = pairs.within(radius_um)
    both = selected[local.i] & selected[local.j]
    i, j = local.i[both], local.j[both]
    degree = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
    core = selected & (degree >= min_neighbours)
    core_edge = core[i] & core[j]
    graph = sparse.coo_matrix((np.ones(int(core_edge.sum()), dtype=np.int8),
                               (i[core_edge], j[core_edge])), shape=(n, n)).tocsr()
    _, component = connected_components(graph, directed=False)
    label = np.zeros(n, dtype=np.int64)
    core_index = np.flatnonzero(core)
    # Number core components 1… by their lowest cell index.
    core_component = component[core_index]
    components, first = np.unique(core_component, return_index=True)
    ids = np.empty(len(components), dtype=np.int64)
    ids[np.argsort(first, kind="stable")] = np.arange(1, len(components) + 1)
    label[core_index] = ids[np.searchsorted(components, core_component)]
    border = _lowest_core_label(i, j, core, label, selected & ~core, n)
    label = np.where(border > 0, border, label)
    member = label > 0
    sizes = np.bincount(label[member], minlength=len(components) + 1)
    keep = sizes >= min_cells
    keep[0] = False
    renumber = np.zeros(len(sizes), dtype=np.int64)
    renumber[keep] = np.arange(1, int(keep.sum()) + 1)
    label = renumber[label]
    member = label > 0
    if attach and keep.any():
        others = ~selected
        label = np.where(others, _attached_label(local, core & member, label, others,
                                                 min_neighbours, n), label)
    return Clusters(label, member, int(keep.sum()))


def _lowest_core_label(i: np.ndarray, j: np.ndarray, core: np.ndarray, label: np.ndarray,
                       candidate: np.ndarray, n: int) -> np.ndarray:
    """For each candidate cell, the lowest label among its core neighbours (0 when none)."""
    src = np.concatenate([i, j])
    dst = np.concatenate([j, i])
    use = candidate[src] & core[dst]
    best = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, src[use], label[dst[use]])
    return np.where(best == np.iinfo(np.int64).max, 0, best)


def _attached_label(pairs: NeighbourPairs, core: np.ndarray, label: np.ndarray,
                    others: np.ndarray, min_neighbours: int, n: int) -> np.ndarray:
    """Cluster of each non-selected cell with >= min_neighbours core cells of one cluster."""
    src = np.concatenate([pairs.i, pairs.j])
    dst = np.concatenate([pairs.j, pairs.i])
    use = others[src] & core[dst]
    if not use.any():
        return np.zeros(n, dtype=np.int64)
    counts = sparse.coo_matrix((np.ones(int(use.sum()), dtype=np.int64),
                                (src[use], label[dst[use]])),
                               shape=(n, int(label.max()) + 1)).tocsr()
    counts.sum_duplicates()
    best = np.asarray(counts.argmax(axis=1)).ravel()
    top = np.asarray(counts.max(axis=1).todense()).ravel()
    return np.where(top >= min_neighbours, best, 0).astype(np.int64)


def marker_positive(values: np.ndarray,
                    threshold: float = AggregateParams.marker_threshold) -> np.ndarray:
    """Per-cell marker positivity.

    ``threshold > 0`` is an absolute intensity (positive when ``value > threshold``). With 0
    (default) the threshold is automatic: ``exp(median + 3 · 1.4826 · MAD)`` of the log of
    the positive intensities (a robust 3-SD upper limit of the log-normal background, so a
    marker expressed by a small population is positive there and ~0.1 % of background cells
    are false positives); when fewer than half the intensities are positive (count-like data)
    any positive value counts.
    """
    values = np.asarray(values, dtype=np.float64)
    if threshold > 0:
        return values > threshold
    positive = values > 0
    if positive.sum() < 0.5 * len(values) or positive.sum() < 2:
        return positive
    logs = np.log(values[positive])
    median = np.median(logs)
    mad = np.median(np.abs(logs - median))
    return values > np.exp(median + 3.0 * 1.4826 * mad)


def grade_tls(n_cells: np.ndarray, n_fdc: np.ndarray, n_gc: np.ndarray,
              min_fdc_cells: int = AggregateParams.min_fdc_cells,
              min_fdc_fraction: float = AggregateParams.min_fdc_fraction,
              min_gc_cells: int = AggregateParams.min_gc_cells) -> np.ndarray:
    """Maturity grade of each TLS from its counts of cells, FDC/CCL19+ stroma and GC/plasma cells.

    ``secondary_follicle`` when ``n_gc >= min_gc_cells``; else ``primary_follicle`` when
    ``n_fdc >= max(min_fdc_cells, min_fdc_fraction * n_cells)``; else ``lymphoid_aggregate``
    (Silina et al. 2018 staging; see the module notes).
    """
    n_cells, n_fdc, n_gc = (np.asarray(a, dtype=np.float64) for a in (n_cells, n_fdc, n_gc))
    has_fdc = n_fdc >= np.maximum(min_fdc_cells, min_fdc_fraction * n_cells)
    grade = np.where(n_gc >= min_gc_cells, 2, np.where(has_fdc, 1, 0))
    return np.asarray(GRADES, dtype=object)[grade]


def aggregate_tables(clusters: Clusters, x_um: np.ndarray, y_um: np.ndarray,
                     type_codes: np.ndarray, cell_types: Sequence[str],
                     signed_distance_um: np.ndarray, lesion_id: np.ndarray,
                     border_um: float, tumor_present: bool = True,
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per cluster and its long composition table.

    Returns
    -------
    summary
        ``cluster``, ``n_cells`` (members + attached), ``n_members``, ``area_mm2`` (convex
        hull of its cells, 0 for fewer than 3 non-collinear cells), ``centroid_x``,
        ``centroid_y`` (µm, mean of its cells), ``signed_distance_um`` (median over its cells;
        negative inside tumour, NaN without tumour), ``compartment`` (``core`` d < -w,
        ``border`` |d| <= w, ``adjacent`` d > w; a NaN distance, i.e. a sample without tumour
        boundary, gives ``adjacent``, or ``core`` when ``tumor_present``: the rule of
        :func:`metaniche.analyses.compartments.compartment_codes`), ``lesion_id`` (most
        common among its cells; NA when 0).
    composition
        ``cluster``, ``cell_type``, ``n_cells``, ``fraction`` (of the cluster's cells).
    """
    label = clusters.label
    n_clusters = clusters.n_clusters
    inside = np.flatnonzero(label > 0)
    lab = label[inside]
    n_cells = np.bincount(lab, minlength=n_clusters + 1)[1:]
    n_members = np.bincount(label[clusters.member], minlength=n_clusters + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = np.bincount(lab, x_um[inside], minlength=n_clusters + 1)[1:] / n_cells
        cy = np.bincount(lab, y_um[inside], minlength=n_clusters + 1)[1:] / n_cells
    order = np.argsort(lab, kind="stable")
    sorted_cells = inside[order]
    starts = np.concatenate([[0], np.cumsum(n_cells)])
    hulls = shapely.convex_hull(shapely.multipoints(
        np.column_stack([x_um[sorted_cells], y_um[sorted_cells]]), indices=lab[order] - 1))
    area = shapely.area(hulls) * 1e-6 if n_clusters else np.zeros(0)
    distance = np.array([np.median(signed_distance_um[sorted_cells[starts[c]:starts[c + 1]]])
                         for c in range(n_clusters)]) if n_clusters else np.zeros(0)
    lesions = np.asarray(lesion_id, dtype=np.int64)
    n_lesion = int(lesions.max()) + 1 if len(lesions) else 1
    lesion_counts = np.bincount((lab - 1) * n_lesion + lesions[inside],
                                minlength=n_clusters * n_lesion).reshape(n_clusters, n_lesion)
    common = lesion_counts.argmax(1) if n_clusters else np.zeros(0, dtype=np.int64)
    summary = pd.DataFrame({
        "cluster": np.arange(1, n_clusters + 1, dtype=np.int64),
        "n_cells": n_cells.astype(np.int64),
        "n_members": n_members.astype(np.int64),
        "area_mm2": np.asarray(area, dtype=np.float64),
        "centroid_x": cx, "centroid_y": cy,
        "signed_distance_um": distance,
        "compartment": compartment_of(distance, border_um, tumor_present),
        "lesion_id": pd.array(np.where(common > 0, common, 0), dtype="Int64"),
    })
    summary["lesion_id"] = summary["lesion_id"].mask(summary["lesion_id"] == 0)
    n_types = len(cell_types)
    counts = np.bincount((lab - 1) * n_types + np.asarray(type_codes)[inside],
                         minlength=n_clusters * n_types).reshape(n_clusters, n_types)
    rows, cols = np.nonzero(counts)
    composition = pd.DataFrame({
        "cluster": rows.astype(np.int64) + 1,
        "cell_type": np.asarray(cell_types, dtype=object)[cols],
        "n_cells": counts[rows, cols].astype(np.int64),
        "fraction": counts[rows, cols] / n_cells[rows],
    })
    return summary, composition


def classify_lymphoid(clusters: Clusters, summary: pd.DataFrame, composition: pd.DataFrame,
                      is_b: np.ndarray, is_fdc: np.ndarray, is_gc: np.ndarray,
                      tls_min_cells: int, tls_min_b_fraction: float, min_fdc_cells: int,
                      min_fdc_fraction: float, min_gc_cells: int,
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """TLS rule and maturity grade of B/T density clusters (module docstring).

    Parameters
    ----------
    clusters
        B/T density clusters (:func:`density_clusters` of the B or T cells).
    summary, composition
        Their tables from :func:`aggregate_tables`.
    is_b
        Per cell: a B cell.
    is_fdc, is_gc
        Per cell: follicular-stroma evidence and germinal-centre / plasma evidence.
    tls_min_cells, tls_min_b_fraction
        A cluster is a TLS when it has at least ``tls_min_cells`` B + T member cells and a B
        fraction of them of at least ``tls_min_b_fraction``.
    min_fdc_cells, min_fdc_fraction, min_gc_cells
        Grade thresholds of :func:`grade_tls`.

    Returns
    -------
    summary
        ``aggregate_id``, ``kind`` (``tls`` or ``lymphoid_cluster``), the columns of
        :func:`aggregate_tables`, ``b_fraction`` (B over B + T members; NaN for none),
        ``n_fdc``, ``n_gc`` (evidence cells among all cells of the cluster) and ``grade``
        (:data:`GRADES`, None when not a TLS).
    composition
        ``aggregate_id``, ``kind`` and the columns of :func:`aggregate_tables`.
    """
    n = clusters.n_clusters
    label = clusters.label
    n_b = np.bincount(label[clusters.member & is_b], minlength=n + 1)[1:]
    n_bt = summary["n_members"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        b_fraction = n_b / n_bt
    is_tls = (n_bt >= tls_min_cells) & (b_fraction >= tls_min_b_fraction)
    n_fdc = np.bincount(label[is_fdc], minlength=n + 1)[1:]
    n_gc = np.bincount(label[is_gc], minlength=n + 1)[1:]
    grade = grade_tls(summary["n_cells"].to_numpy(), n_fdc, n_gc, min_fdc_cells,
                      min_fdc_fraction, min_gc_cells)
    summary = summary.copy()
    summary.insert(1, "kind", np.where(is_tls, "tls", "lymphoid_cluster"))
    summary["b_fraction"] = b_fraction
    summary["n_fdc"] = n_fdc.astype(np.int64)
    summary["n_gc"] = n_gc.astype(np.int64)
    summary["grade"] = np.where(is_tls, grade, np.array(None, dtype=object))
    summary = summary.rename(columns={"cluster": "aggregate_id"})
    composition = composition.rename(columns={"cluster": "aggregate_id"})
    composition.insert(1, "kind", summary["kind"].to_numpy()[composition["aggregate_id"] - 1]
                       if len(summary) else [])
    return summary, composition


def keep_clusters(clusters: Clusters, required: Sequence[np.ndarray] = ()) -> Clusters:
    """The clusters holding at least one cell of every ``required`` mask, renumbered 1…k.

    Cluster order is kept; cells of a dropped cluster get label 0 and ``member`` False.
    With no ``required`` mask every cluster is kept (labels unchanged).
    """
    n = clusters.n_clusters
    keep = np.ones(n + 1, dtype=bool)
    for mask in required:
        keep &= np.bincount(clusters.label[np.asarray(mask, bool)], minlength=n + 1) > 0
    keep[0] = False
    renumber = np.zeros(n + 1, dtype=np.int64)
    renumber[keep] = np.arange(1, int(keep.sum()) + 1)
    label = renumber[clusters.label]
    return Clusters(label, label > 0, int(keep.sum()))
