"""The relations stage on simulated tissue: tables, features and their agreement with the
pure functions; registration in the pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metaniche.analyses.relations import (
    average_minimum_distance,
    mixing_score,
    nearest_type_distances,
    sample_tables,
)
from metaniche.config import Config, RelationsParams
from metaniche.errors import ConfigError
from metaniche.sample import analyse_sample, build_context
from metaniche.simulate import simulate_sample
from metaniche.stages import SAMPLE_STAGES, feature_families, relations


@pytest.fixture(scope="module")
def context():
    sample = simulate_sample("s1", n_cells=4000, seed=3)
    return build_context("s1", sample.cells, Config())


@pytest.fixture(scope="module")
def output(context):
    return relations.run(context)


def test_tables_and_columns(output):
    tables = output.tables
    assert {"distances", "count_within", "mixing", "clark_evans", "enrichment", "ripley",
            "cooccurrence", "border_cells"} <= set(tables)
    assert {"compartment", "lesion_id", "source_type", "target_type", "n_source", "mean_um",
            "median_um", "q25_um", "q75_um"} <= set(tables["distances"].columns)
    assert {"type_a", "type_b", "observed", "expected", "z", "p", "null"} <= set(
        tables["enrichment"].columns)
    assert set(tables["enrichment"]["null"]) == {"sample", "compartment"}
    assert tables["distances"].loc[tables["distances"].compartment == "all",
                                   "lesion_id"].isna().all()


def test_nn_feature_equals_direct_computation(context, output):
    nearest = nearest_type_distances(context.coordinates, context.type_codes,
                                     len(context.cell_types))
    s, t = context.cell_types.index("CD8_T"), context.cell_types.index("Tumor")
    expected = np.nanmean(nearest[context.type_codes == s, t])
    assert output.features["nn_dist_um.CD8_T.Tumor"] == pytest.approx(expected)


def test_average_minimum_distance_feature_is_spiat_statistic(context, output):
    # the stage takes it from the nearest-by-type matrix; bit-identical to the KD-tree query
    assert output.features["avg_min_dist_um"] == average_minimum_distance(context.tree)


def test_mixing_feature_is_keren_score(context, output):
    labels = context.labels
    direct = mixing_score(context.coordinates, labels == "CD8_T", labels == "Tumor", 30.0)
    assert output.features["mixing_score.CD8_T"] == pytest.approx(direct.score, nan_ok=True)


def _pair_features(features, family):
    """``(a, b)`` of every feature ``<family>.<a>.<b>`` (type names hold no dots here)."""
    return [tuple(name.split(".")[1:]) for name in features if name.split(".")[0] == family]


def test_symmetric_pair_features_emitted_once_in_canonical_order(context, output):
    tables = output.tables
    for family in relations.SYMMETRIC_FAMILIES:
        pairs = _pair_features(output.features, family)
        assert pairs, family
        unordered = [frozenset(p) for p in pairs]
        assert len(unordered) == len(set(unordered)), f"{family}: A.B and B.A both emitted"
        assert all(a <= b for a, b in pairs), family
    # the value kept is the statistic of the pair, which is symmetric (either order)
    enrichment = tables["enrichment"]
    whole = enrichment[enrichment["null"] == "sample"].set_index(["type_a", "type_b"])["z"]
    z_ab = output.features["enrichment_z.Endothelial.Macrophage"]
    assert z_ab == pytest.approx(whole[("Endothelial", "Macrophage")])
    assert z_ab == pytest.approx(whole[("Macrophage", "Endothelial")])
    ripley = tables["ripley"].groupby(["type_a", "type_b"])["l_minus_r_um"].mean()
    for a, b in _pair_features(output.features, "ripley_l_mean"):
        assert output.features[f"ripley_l_mean.{a}.{b}"] == pytest.approx(ripley[(b, a)])
    # every unordered pair of the featured types is there exactly once (self-pairs included)
    n_featured = len({t for p in _pair_features(output.features, "enrichment_z") for t in p})
    assert len(_pair_features(output.features, "enrichment_z")) == (
        n_featured * (n_featured + 1) // 2)
    # the directed nearest distance keeps both orders
    nn = _pair_features(output.features, "nn_dist_um")
    assert ("CD8_T", "Tumor") in nn and ("Tumor", "CD8_T") in nn


def test_enrichment_features_registered(context, output):
    families = set(feature_families())
    for name in output.features:
        assert name.split(".")[0] in families, name
    assert len(output.cell_columns["neighbourhood_entropy"]) == len(context.cells)


def test_stage_registered_and_runs_in_pipeline():
    assert "relations" in [name for name, _, _ in SAMPLE_STAGES]
    sample = simulate_sample("s2", n_cells=2000, seed=4)
    result = analyse_sample(sample.cells, Config(relations=RelationsParams(graph="knn")))
    assert "enrichment" in result.tables
    assert (result.tables["enrichment"]["graph"] == "knn").all()


def test_bad_graph_is_a_config_error(context):
    from dataclasses import replace
    with pytest.raises(ConfigError, match=r"RelationsParams\.graph"):
        relations.run(replace(context, config=Config(relations=RelationsParams(graph="voronoi"))))


def test_border_cell_ratio_feature_reproduces_spiat_r_bc(data_dir):
    # SPIAT R_BC(defined_image, "Tumour") = 0.2014652 (REFERENCE.md), through the stage
    cells = pd.read_csv(data_dir / "cells" / "spiat_defined_image.SIMULATED.cells.csv.gz")
    cells = cells.assign(sample="defined", cell_id=np.arange(len(cells)))
    context = build_context("defined", cells[["sample", "cell_id", "x", "y", "cell_type"]],
                            Config())
    assert context.tumor_types == ["Tumour"]
    table, cluster, features = relations._border_cells(context, 40.0)
    assert round(features["border_cell_ratio.Tumour"], 7) == 0.2014652
    row = table.iloc[0]
    assert (row.n_cells, row.n_border_cells) == (819, 165)
    assert np.count_nonzero(cluster) == 165
    assert set(cluster[context.labels != "Tumour"]) == {0}


def test_degenerate_alpha_hull_gives_nan_ratio_not_a_failed_sample(context, monkeypatch):
    def degenerate(*args, **kwargs):
        raise ValueError("an α-shape edge has only a half-plane in its complement")

    monkeypatch.setattr(sample_tables, "spiat_border_cells", degenerate)
    table, cluster, features = relations._border_cells(context, 40.0)
    assert np.isnan(features["border_cell_ratio.Tumor"])
    assert "half-plane" in table.loc[0, "note"] and not cluster.any()


def test_scattered_tumour_cells_use_the_geometric_border_above_the_edge_limit(context):
    from metaniche.analyses.relations import border_cells

    tumour = context.coordinates[context.labels == "Tumor"]
    spiat_table, _, _ = relations._border_cells(context, 40.0, max_edges=10**9)
    table, _, features = relations._border_cells(context, 40.0, max_edges=0)
    assert spiat_table.loc[0, "definition"] == "spiat" and table.loc[0, "definition"] == "geometric"
    assert features["border_cell_ratio.Tumor"] == border_cells(tumour, alpha=40.0).ratio
    assert "α-shape edges > 0" in table.loc[0, "note"]


def test_no_symmetric_pair_twice_in_association_or_multiple_testing():
    # features of a small cohort through the relations stage, then the cohort association:
    # every symmetric pair is tested once, so Benjamini–Hochberg counts it once.
    from scipy.stats import false_discovery_control

    from metaniche.cohort.run import analyse_cohort
    from metaniche.config import CohortParams

    rows = []
    for i in range(6):
        sample = simulate_sample(f"s{i}", n_cells=2000, seed=20 + i)
        context = build_context(f"s{i}", sample.cells, Config())
        rows.append({"sample": f"s{i}", **relations.run(context).features})
    features = pd.DataFrame(rows)
    clinical = pd.DataFrame({"sample": features["sample"],
                             "response": ["responder", "non-responder"] * 3})
    result = analyse_cohort(features, clinical,
                            Config(cohort=CohortParams(analyses=("response",))))
    table = result.association
    for (_, _), part in table.groupby(["outcome", "test"]):
        names = part["feature"].astype(str)
        assert names.is_unique
        symmetric = names[names.str.split(".").str[0].isin(relations.SYMMETRIC_FAMILIES)]
        assert len(symmetric) > 0
        keys = [(n.split(".")[0], frozenset(n.split(".")[1:])) for n in symmetric]
        assert len(keys) == len(set(keys)), "A.B and B.A both tested"
        tested = part[np.isfinite(part["p"].to_numpy(np.float64))]
        # q is BH over exactly these tests (within each FDR family): m counts each unordered
        # pair once
        for _, family in tested.groupby("family"):
            np.testing.assert_allclose(family["q"], false_discovery_control(family["p"]))
