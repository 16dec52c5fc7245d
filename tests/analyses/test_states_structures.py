"""States inside vs outside structures (:mod:`metaniche.analyses.state_structures`): counts
against pandas groupby, and a planted GZMB+ CD8 enrichment inside TLS recovered through the
whole per-sample chain (communities stage finds the TLS, states stage counts)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from metaniche import tables as T
from metaniche.analyses.state_structures import structure_members, structure_states
from metaniche.analyses.states import call_states
from metaniche.config import Config, StateRule, StatesParams
from metaniche.sample import analyse_sample
from metaniche.simulate import STATE_THRESHOLD, simulate_sample


def test_counts_match_groupby_and_kinds_are_stable():
    rng = np.random.default_rng(4)
    n = 5000
    labels = rng.choice(np.array(["CD8_T", "Macrophage", "Tumor"]), n)
    cells = pd.DataFrame({"A": rng.random(n), "B": rng.random(n)})
    rules = {"a_pos": StateRule(marker="A", threshold=0.6),
             "b_pos": StateRule(marker="B", threshold=0.3, cell_types=("Macrophage",))}
    calls = call_states(cells, labels, rules)
    codes, types = pd.factorize(labels, sort=True)
    aggregate_id = rng.choice([0, 0, 0, 1, 2, 3], n)      # 1, 2 tls; 3 lymphoid_cluster
    unit_id = rng.choice([0, 0, 4], n)                    # 4 angiogenic_unit
    aggregates = pd.DataFrame({"aggregate_id": [1, 2, 3, 4],
                               "kind": ["tls", "tls", "lymphoid_cluster", "angiogenic_unit"]})
    members = structure_members(aggregate_id, unit_id, aggregates,
                                ["angiogenic_unit", "premetastatic_cluster"])
    assert list(members) == ["tls", "lymphoid_cluster", "angiogenic_unit",
                             "premetastatic_cluster"]
    assert [members[k][1] for k in members] == [2, 1, 1, 0]
    table = structure_states(calls, codes, list(types), members, pseudocount=0.5)
    frame = pd.DataFrame({"type": labels, "a_pos": calls.positive[:, 0],
                          "b_pos": calls.positive[:, 1],
                          "tls": np.isin(aggregate_id, [1, 2]),
                          "lymphoid_cluster": aggregate_id == 3,
                          "angiogenic_unit": unit_id == 4,
                          "premetastatic_cluster": np.zeros(n, bool)})
    assert set(table.loc[table["state"] == "b_pos", "cell_type"]) == {"Macrophage"}
    for row in table.itertuples(index=False):
        of_type = frame[frame["type"] == row.cell_type]
        inside = of_type[of_type[row.kind]]
        outside = of_type[~of_type[row.kind]]
        assert (row.n_inside, row.n_outside) == (len(inside), len(outside))
        assert row.n_positive_inside == inside[row.state].sum()
        assert row.n_positive_outside == outside[row.state].sum()
        if len(inside):
            a, b = inside[row.state].sum() + 0.5, (~inside[row.state]).sum() + 0.5
            e, d = outside[row.state].sum() + 0.5, (~outside[row.state]).sum() + 0.5
            assert row.log_odds_ratio == pytest.approx(math.log(a * d / (b * e)))
        else:
            assert math.isnan(row.fraction_inside) and math.isnan(row.log_odds_ratio)


@pytest.fixture(scope="module")
def planted_tls():
    """Large TLS; inside the planted TLS every T cell is CD8 and GZMB+ with p = 0.7, outside
    CD8 T cells are GZMB+ with p = 0.1 (GZMB re-drawn at the simulator's levels)."""
    sample = simulate_sample("t", n_cells=40_000, seed=8, phenotype="desert", n_lesions=1,
                             with_tls=True, tls_radius_um=(150.0, 200.0), states=True)
    rng = np.random.default_rng(0)
    cells = sample.cells.copy()
    in_tls = sample.truth["tls_id"].to_numpy() > 0
    labels = cells["cell_type"].to_numpy().astype(object)
    labels[in_tls & np.isin(labels, ["CD4_T", "Treg"])] = "CD8_T"
    cells["cell_type"] = labels
    probability = np.where(labels == "CD8_T", np.where(in_tls, 0.7, 0.1), 0.0)
    carries = rng.random(len(cells)) < probability
    cells["GZMB"] = np.where(carries, 5.0, 0.5)
    return cells, probability


def test_planted_gzmb_cd8_enrichment_inside_tls(planted_tls):
    cells, probability = planted_tls
    config = Config(states=StatesParams(rules={
        "GZMB_pos": StateRule(marker="GZMB", threshold=STATE_THRESHOLD,
                              cell_types=("CD8_T",))}))
    analysis = analyse_sample(cells, config, name="t")
    table = analysis.tables[T.STATE_STRUCTURES]
    row = table[(table["kind"] == "tls") & (table["cell_type"] == "CD8_T")].iloc[0]
    assert row["n_structures"] >= 1 and row["n_inside"] >= 50
    # truth for the detected structures: mean planted probability of the cells counted
    tls_ids = analysis.tables[T.AGGREGATES].query("kind == 'tls'")["aggregate_id"].to_numpy()
    is_cd8 = analysis.cells["cell_type"].to_numpy() == "CD8_T"
    inside = np.isin(analysis.cells["aggregate_id"].to_numpy(), tls_ids)
    for part, n, got in ((is_cd8 & inside, row["n_inside"], row["fraction_inside"]),
                         (is_cd8 & ~inside, row["n_outside"], row["fraction_outside"])):
        expected = probability[part].mean()
        assert part.sum() == n
        assert abs(got - expected) <= 4 * math.sqrt(expected * (1 - expected) / n)
    assert row["fraction_inside"] > 0.6 and row["fraction_outside"] < 0.15
    assert row["log_odds_ratio"] > math.log(0.6 / 0.4 * 0.85 / 0.15)
    features = analysis.features
    assert features["state_fraction_inside.tls.CD8_T.GZMB_pos"] == row["fraction_inside"]
    assert features["state_log_odds_inside.tls.CD8_T.GZMB_pos"] == row["log_odds_ratio"]
    # every declared unit kind has rows even without such a unit in the sample
    assert {"angiogenic_unit", "premetastatic_cluster"} <= set(table["kind"])
