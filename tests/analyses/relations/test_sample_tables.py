"""Table builders of the relations stage against brute force and their kernels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from metaniche.analyses.relations import (
    Window,
    clark_evans,
    nearest_type_distances,
    spiat_border_cells,
)
from metaniche.analyses.relations.sample_tables import (
    border_cells_table,
    clark_evans_table,
    distances_table,
    mean_nearest_distance,
    mixing_table,
)


def _points(seed: int = 0, n: int = 600):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 600, (n, 2))
    codes = rng.integers(0, 3, n)
    return xy, codes


def test_clark_evans_shortcut_equals_a_fresh_nearest_neighbour_query():
    xy, codes = _points()
    nearest = nearest_type_distances(xy, codes, 3)
    window = Window(np.ones((120, 120), bool), 0.0, 0.0, 5.0)
    table = clark_evans_table(xy, codes, ["a", "b", "c"], nearest, window)
    for t, row in enumerate(table.itertuples(index=False)):
        own = xy[codes == t]
        d = cdist(own, own)
        np.fill_diagonal(d, np.inf)
        observed = d.min(axis=1).mean()                 # brute-force mean NN distance
        expected = 0.5 / np.sqrt(len(own) / window.area)
        assert row.index == pytest.approx(observed / expected, rel=1e-12)
        assert row.index == pytest.approx(clark_evans(own, window.area).index, rel=1e-12)
        assert row.area_mm2 == pytest.approx(0.36)


def test_mean_nearest_distance_and_distances_table():
    xy, codes = _points(1)
    nearest = nearest_type_distances(xy, codes, 3)
    d = cdist(xy, xy)
    np.fill_diagonal(d, np.inf)
    assert mean_nearest_distance(nearest) == pytest.approx(d.min(axis=1).mean(), rel=1e-12)
    assert np.isnan(mean_nearest_distance(nearest[:1]))
    table = distances_table(nearest, codes, ["a", "b", "c"], np.array(["x"] * len(xy)))
    assert table["lesion_id"].isna().all() and str(table["lesion_id"].dtype) == "Int64"
    row = table[(table["compartment"] == "all") & (table["source_type"] == "a")
                & (table["target_type"] == "b")].iloc[0]
    assert row.mean_um == pytest.approx(d[codes == 0][:, codes == 1].min(axis=1).mean())


def test_mixing_table_counts_pairs_by_brute_force():
    xy, codes = _points(2)
    tumour, immune = codes == 0, codes == 1
    table = mixing_table(xy, tumour, [("b", immune)], 30.0)
    d = cdist(xy, xy)
    close = d <= 30.0
    np.fill_diagonal(close, False)
    row = table.iloc[0]
    assert (row.reference, row.target, row.n_reference, row.n_target) == (
        "b", "tumour", immune.sum(), tumour.sum())
    assert row.reference_target_pairs == close[immune][:, tumour].sum()
    assert row.reference_reference_pairs == close[immune][:, immune].sum() // 2


def test_border_cells_table_numbers_polygons_across_tumour_types():
    rng = np.random.default_rng(3)
    angle = rng.uniform(0, 2 * np.pi, 800)
    radius = 100 * np.sqrt(rng.uniform(0, 1, 800))
    disc = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    xy = np.vstack([disc, disc + 500.0])
    labels = np.repeat(np.array(["T1", "T2"], dtype=object), 800)
    table, cluster = border_cells_table(xy, labels, ["T1", "T2"], 40.0)
    first = spiat_border_cells(disc, alpha=40.0)
    second = spiat_border_cells(disc + 500.0, alpha=40.0)
    assert table["border_cell_ratio"].tolist() == [first.ratio, second.ratio]
    assert table["definition"].tolist() == ["spiat", "spiat"]
    np.testing.assert_array_equal(cluster[:800], first.cluster)
    expected = np.where(second.cluster > 0, second.cluster + first.n_clusters, 0)
    np.testing.assert_array_equal(cluster[800:], expected)
    assert set(cluster[:800]) & set(cluster[800:]) <= {0}
