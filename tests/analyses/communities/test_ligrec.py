"""Spatial ligand–receptor: brute-force score, planted pairs significant, FDR on null data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree
from statsmodels.stats.multitest import multipletests

from metaniche.analyses.communities import (
    benjamini_hochberg,
    ligand_receptor,
    load_pairs,
    match_pairs,
    neighbour_pairs,
)
from metaniche.errors import InputError

PAIR = [("VEGFA", "KDR", "VEGFA", "KDR")]


def _tissue(seed: int, side: int = 50):
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2) * 15.0
    xy = grid + rng.uniform(-4, 4, grid.shape)
    codes = rng.integers(0, 3, len(xy))  # 0 Macrophage, 1 Endothelial, 2 Hepatocyte
    return rng, xy, codes


def test_bh_matches_statsmodels():
    p = np.random.default_rng(0).uniform(size=200) ** 2
    np.testing.assert_allclose(benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1])


def test_score_matches_brute_force_and_is_seeded():
    rng, xy, codes = _tissue(0, side=12)
    lig, rec = rng.exponential(size=len(xy)), rng.exponential(size=len(xy))
    pairs = neighbour_pairs(cKDTree(xy), 20.0)
    table = ligand_receptor(pairs.i, pairs.j, {"VEGFA": lig, "KDR": rec}, PAIR, codes,
                            ["Mac", "Endo", "Hep"], None, n_permutations=20, seed=1,
                            min_edges=1)
    distance = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    near = (distance <= 20.0) & ~np.eye(len(xy), dtype=bool)
    s, r = np.nonzero(near)
    row = table.query("sender_type == 'Mac' and receiver_type == 'Endo'").iloc[0]
    use = (codes[s] == 0) & (codes[r] == 1)
    assert row["n_edges"] == use.sum()
    assert row["score"] == pytest.approx(np.mean(lig[s[use]] * rec[r[use]]))
    anyrow = table.query("sender_type == 'any' and receiver_type == 'Endo'").iloc[0]
    assert anyrow["score"] == pytest.approx(np.mean(lig[s[codes[r] == 1]] * rec[r[codes[r] == 1]]))
    again = ligand_receptor(pairs.i, pairs.j, {"VEGFA": lig, "KDR": rec}, PAIR, codes,
                            ["Mac", "Endo", "Hep"], None, n_permutations=20, seed=1,
                            min_edges=1)
    pd.testing.assert_frame_equal(table, again)


def test_planted_pair_significant_and_unplanted_not():
    rng, xy, codes = _tissue(1)
    left = xy[:, 0] < 375.0
    noise = lambda: 0.5 * np.exp(rng.normal(0, 0.4, len(xy)))  # noqa: E731
    expression = {"VEGFA": noise(), "KDR": noise(), "CXCL12": noise(), "CXCR4": noise()}
    # planted: macrophages on the left secrete VEGFA next to KDR-high endothelium on the left
    expression["VEGFA"][left & (codes == 0)] *= 10
    expression["KDR"][left & (codes == 1)] *= 10
    compartment = np.where(xy[:, 1] < 375.0, "border", "adjacent")
    pairs = neighbour_pairs(cKDTree(xy), 25.0)
    lr = [("VEGFA", "KDR", "VEGFA", "KDR"), ("CXCL12", "CXCR4", "CXCL12", "CXCR4")]
    table = ligand_receptor(pairs.i, pairs.j, expression, lr, codes,
                            ["Macrophage", "Endothelial", "Hepatocyte"], compartment,
                            n_permutations=999, seed=0)
    planted = table.query("ligand == 'VEGFA' and sender_type == 'Macrophage' and "
                          "receiver_type == 'Endothelial' and compartment == 'all'")
    assert planted["q"].iloc[0] <= 0.05 and planted["p"].iloc[0] == pytest.approx(1 / 1000)
    unplanted = table.query("ligand == 'CXCL12'")
    assert (unplanted["q"] > 0.05).all()


def test_null_pairs_hold_fdr():
    """On expression independent of space, BH at 0.05 rejects nothing in >= 90 % of runs."""
    runs_with_discovery, p_values = 0, []
    for seed in range(10):
        rng, xy, codes = _tissue(100 + seed, side=30)
        expression = {g: rng.exponential(size=len(xy)) for g in ("VEGFA", "KDR")}
        pairs = neighbour_pairs(cKDTree(xy), 25.0)
        table = ligand_receptor(pairs.i, pairs.j, expression, PAIR, codes, ["M", "E", "H"],
                                np.where(xy[:, 0] < 200, "border", "adjacent"),
                                n_permutations=99, seed=seed)
        runs_with_discovery += bool((table["q"] <= 0.05).any())
        p_values.append(table.query("compartment == 'all'")["p"].to_numpy())
    assert runs_with_discovery <= 1
    p = np.concatenate(p_values)
    assert np.mean(p <= 0.05) <= 0.12  # roughly uniform under the null


def test_pair_table_and_matching(tmp_path):
    shipped = load_pairs()
    for ligand, receptor in [("CCL19", "CCR7"), ("CXCL13", "CXCR5"), ("CXCL12", "CXCR4"),
                             ("VEGFA", "KDR"), ("SPP1", "CD44"), ("CD274", "PDCD1")]:
        assert ((shipped["ligand"] == ligand) & (shipped["receptor"] == receptor)).any()
    assert match_pairs(shipped, ["ccl19", "CCR7", "CD3"]) == [("CCL19", "CCR7", "ccl19", "CCR7")]
    bad = tmp_path / "pairs.csv"
    bad.write_text("lig,rec\nA,B\n")
    with pytest.raises(InputError, match="receptor"):
        load_pairs(bad)
