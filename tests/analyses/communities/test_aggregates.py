"""Aggregates, TLS and units: DBSCAN by brute force, planted TLS and maturity, real data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree
from sklearn.cluster import DBSCAN

from metaniche.analyses.communities import (
    GRADES,
    Clusters,
    aggregate_tables,
    classify_lymphoid,
    density_clusters,
    grade_tls,
    keep_clusters,
    marker_positive,
    neighbour_pairs,
)
from metaniche.config import Config, LigrecParams, UnitParams
from metaniche.sample import build_context
from metaniche.simulate import simulate_sample
from metaniche.stages import communities

NO_LIGREC = dataclasses.replace(Config(), ligrec=LigrecParams(n_permutations=0))


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("min_neighbours", [1, 3, 5])
def test_density_clusters_match_sklearn_dbscan(min_neighbours):
    rng = np.random.default_rng(min_neighbours)
    xy = np.concatenate([rng.normal(0, 15, (150, 2)), rng.normal(120, 10, (80, 2)),
                         rng.uniform(-200, 300, (200, 2))])
    selected = rng.random(len(xy)) < 0.8
    pairs = neighbour_pairs(cKDTree(xy), 12.0)
    got = density_clusters(pairs, selected, 12.0, min_neighbours, attach=False)
    reference = DBSCAN(eps=12.0, min_samples=min_neighbours + 1).fit(xy[selected])
    core = np.zeros(selected.sum(), dtype=bool)
    core[reference.core_sample_indices_] = True
    # core points: identical partition; noise: identical set (border assignment may differ)
    assert _same_partition(got.label[selected][core], reference.labels_[core])
    np.testing.assert_array_equal(got.label[selected] == 0, reference.labels_ == -1)
    assert np.all(got.label[~selected] == 0)


def test_radius_boundary_is_inclusive_and_min_cells_filters():
    xy = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [40.0, 0.0], [50.0, 0.0]])
    pairs = neighbour_pairs(cKDTree(xy), 10.0)
    result = density_clusters(pairs, np.ones(5, dtype=bool), 10.0, 1, min_cells=1)
    np.testing.assert_array_equal(result.label, [1, 1, 1, 2, 2])
    result = density_clusters(pairs, np.ones(5, dtype=bool), 10.0, 1, min_cells=3)
    np.testing.assert_array_equal(result.label, [1, 1, 1, 0, 0])
    just_outside = density_clusters(pairs, np.ones(5, dtype=bool), 9.999, 1, min_cells=1)
    assert just_outside.n_clusters == 0 and not just_outside.label.any()


def test_other_types_attach_to_dense_clusters():
    ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 8, endpoint=False)),
                     np.sin(np.linspace(0, 2 * np.pi, 8, endpoint=False))], 1) * 5.0
    xy = np.concatenate([ring, [[0.0, 0.0]], [[100.0, 100.0]]])
    selected = np.array([True] * 8 + [False, False])
    result = density_clusters(neighbour_pairs(cKDTree(xy), 6.0), selected, 6.0, 2)
    np.testing.assert_array_equal(result.label, [1] * 9 + [0])
    np.testing.assert_array_equal(result.member, [True] * 8 + [False, False])


def test_grade_rule():
    grades = grade_tls(np.array([100, 100, 100, 100, 400]), np.array([0, 2, 2, 0, 5]),
                       np.array([0, 0, 5, 5, 0]), min_fdc_cells=2, min_fdc_fraction=0.02,
                       min_gc_cells=5)
    assert grades.tolist() == ["lymphoid_aggregate", "primary_follicle", "secondary_follicle",
                               "secondary_follicle", "lymphoid_aggregate"]


def test_marker_positive_threshold():
    rng = np.random.default_rng(0)
    background = 0.5 * np.exp(rng.normal(0, 0.4, 10_000))
    values = np.concatenate([background, np.full(50, 10.0)])
    positive = marker_positive(values)
    assert positive[-50:].all() and positive[:-50].mean() < 0.005
    np.testing.assert_array_equal(marker_positive(values, threshold=1.0), values > 1.0)
    counts = np.array([0, 0, 0, 1, 3])
    np.testing.assert_array_equal(marker_positive(counts), counts > 0)


def _match(found: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """(found × truth) hits: detected centroid within the planted radius of the true centre."""
    d = np.hypot(found["centroid_x"].to_numpy()[:, None] - truth["centroid_x"].to_numpy(),
                 found["centroid_y"].to_numpy()[:, None] - truth["centroid_y"].to_numpy())
    return d <= truth["radius_um"].to_numpy()[None, :]


def test_planted_tls_recovered_with_maturity():
    tp = fp = fn = right = graded = 0
    for seed in range(6):
        sample = simulate_sample("S", 20_000, seed=seed, with_tls=True, n_lesions=1,
                                 tls_radius_um=(95.0, 125.0), tls_maturity=True)
        output = communities.run(build_context("S", sample.cells, NO_LIGREC))
        table = output.tables["aggregates"]
        tls = table[table["kind"] == "tls"]
        hits = _match(tls, sample.tls)
        tp += int(hits.any(0).sum())
        fn += int((~hits.any(0)).sum())
        fp += int((~hits.any(1)).sum())
        for j, k in zip(*np.nonzero(hits), strict=True):
            graded += 1
            right += tls["grade"].iloc[j] == sample.tls["grade"].iloc[k]
        assert (tls["compartment"] == "adjacent").all()
        assert (tls["signed_distance_um"] > 100).all()
        # per-cell ids point at the table's rows
        ids = output.cell_columns["aggregate_id"]
        counts = np.bincount(ids, minlength=len(table) + 1)[1:]
        np.testing.assert_array_equal(counts, table["n_cells"])
        assert output.features["tls.count"] == len(tls)
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert tp >= 8 and f1 >= 0.95
    assert right / graded >= 0.9


def test_tls_rule_is_configurable():
    sample = simulate_sample("S", 10_000, seed=4, with_tls=True, n_lesions=1)
    config = dataclasses.replace(NO_LIGREC, aggregates=dataclasses.replace(
        NO_LIGREC.aggregates, tls_min_cells=10_000))
    table = communities.run(build_context("S", sample.cells, config)).tables["aggregates"]
    assert not (table["kind"] == "tls").any()


def test_custom_unit_detected_only_with_all_types():
    rng = np.random.default_rng(0)
    background = rng.uniform(0, 1000, (3000, 2))
    motif = np.array([500.0, 500.0]) + rng.uniform(-15, 15, (8, 2))
    lonely = np.array([200.0, 800.0]) + rng.uniform(-15, 15, (8, 2))
    xy = np.concatenate([background, motif, lonely])
    labels = np.array(["Hepatocyte"] * 3000 + ["Macrophage", "Endothelial"] * 4 +
                      ["Macrophage"] * 8, dtype=object)
    cells = pd.DataFrame({"sample": "u", "cell_id": np.arange(len(xy)).astype(str),
                          "x": xy[:, 0], "y": xy[:, 1], "cell_type": labels})
    config = dataclasses.replace(NO_LIGREC, units={
        "angio": UnitParams(types=("Macrophage", "Endothelial"), radius_um=40.0, min_cells=6)})
    output = communities.run(build_context("u", cells, config))
    units = output.tables["aggregates"].query("kind == 'angio'")
    assert len(units) == 1
    assert units["centroid_x"].iloc[0] == pytest.approx(motif[:, 0].mean())
    unit_id = output.cell_columns["unit_id"]
    assert (unit_id[3000:3008] == units["aggregate_id"].iloc[0]).all()
    assert (unit_id[3008:] == 0).all() and output.features["unit.angio.count"] == 1


@pytest.mark.parametrize(("stem", "um_per_unit"), [("keren2018_mibi_tnbc_funkycells", 0.39),
                                                   ("ferguson2022_cscc_imc", 1.0)])
def test_real_b_cell_aggregates_detected(data_dir, stem, um_per_unit):
    table = pd.read_csv(data_dir / "cells" / f"{stem}.cells.csv.gz")
    found = []
    for sample, cells in table.groupby("sample_id", sort=True):
        cells = cells.rename(columns={"sample_id": "sample"}).reset_index(drop=True)
        cells["x"] *= um_per_unit
        cells["y"] *= um_per_unit
        output = communities.run(build_context(str(sample), cells, NO_LIGREC))
        aggregates = output.tables["aggregates"]
        lymphoid = aggregates[aggregates["kind"].isin(["tls", "lymphoid_cluster"])]
        found.append(lymphoid.assign(sample=sample))
    listed = pd.concat(found, ignore_index=True)
    assert len(listed) > 0
    # every listed B/T aggregate is B/T-rich by construction and has positive area
    assert (listed["n_members"] >= NO_LIGREC.aggregates.min_cells).all()
    assert (listed["area_mm2"] > 0).all()
    b_rich = listed[listed["b_fraction"] >= 0.3]
    assert len(b_rich) > 0


def _two_clusters():
    """Cluster 1: 60 members (24 B, 36 T) + 10 attached FDCs; cluster 2: 30 T members."""
    label = np.repeat([1, 1, 2, 0], [60, 10, 30, 5])
    member = np.repeat([True, False, True, False], [60, 10, 30, 5])
    is_b = np.zeros(label.size, bool)
    is_b[:24] = True
    is_fdc = np.zeros(label.size, bool)
    is_fdc[60:70] = True
    return Clusters(label, member, 2), is_b, is_fdc


def test_classify_lymphoid_applies_the_tls_rule_and_grades_by_hand_counts():
    clusters, is_b, is_fdc = _two_clusters()
    n = clusters.label.size
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 500, (2, n))
    summary, composition = aggregate_tables(clusters, x, y, np.zeros(n, int), ["T"],
                                            np.full(n, np.nan), np.zeros(n, int), 100.0,
                                            tumor_present=False)
    assert set(summary["compartment"]) == {"adjacent"}   # NaN distance, no tumour
    no_gc = np.zeros(n, bool)
    summary, composition = classify_lymphoid(clusters, summary, composition, is_b, is_fdc,
                                             no_gc, tls_min_cells=50, tls_min_b_fraction=0.3,
                                             min_fdc_cells=5, min_fdc_fraction=0.1,
                                             min_gc_cells=3)
    one, two = summary.itertuples(index=False)
    # cluster 1: 60 B+T members, B fraction 24/60 = 0.4 → TLS; 10 FDC >= max(5, 0.1·70)
    assert (one.aggregate_id, one.kind, one.b_fraction, one.n_fdc) == (1, "tls", 0.4, 10)
    assert one.grade == GRADES[1]
    # cluster 2: 30 members < 50 → not a TLS, no grade
    assert (two.kind, two.b_fraction, two.grade) == ("lymphoid_cluster", 0.0, None)
    assert set(composition["kind"]) == {"tls", "lymphoid_cluster"}
    gc = np.zeros(n, bool)
    gc[:3] = True
    graded, _ = classify_lymphoid(clusters, *aggregate_tables(
        clusters, x, y, np.zeros(n, int), ["T"], np.full(n, np.nan), np.zeros(n, int), 100.0),
        is_b, is_fdc, gc, 50, 0.3, 5, 0.1, 3)
    assert graded["grade"].iloc[0] == GRADES[2]


def test_keep_clusters_drops_clusters_missing_a_required_type_and_renumbers():
    label = np.array([1, 1, 2, 2, 3, 3, 0])
    clusters = Clusters(label, label > 0, 3)
    has_a = np.array([1, 0, 0, 0, 1, 0, 0], bool)
    has_b = np.array([0, 1, 1, 0, 1, 0, 0], bool)
    kept = keep_clusters(clusters, [has_a, has_b])
    assert kept.n_clusters == 2
    assert kept.label.tolist() == [1, 1, 0, 0, 2, 2, 0]
    assert kept.member.tolist() == (kept.label > 0).tolist()
    assert keep_clusters(clusters).label.tolist() == label.tolist()
