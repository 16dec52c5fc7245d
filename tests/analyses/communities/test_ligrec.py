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
    ligrec,
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


def _small_example(seed: int = 3):
    rng, xy, codes = _tissue(seed, side=8)
    pairs = neighbour_pairs(cKDTree(xy), 20.0)
    src = np.concatenate([pairs.i, pairs.j]).astype(np.int64)
    dst = np.concatenate([pairs.j, pairs.i]).astype(np.int64)
    comp = (xy[:, 0] > 50).astype(np.int64)
    ligand = rng.exponential(size=(2, len(xy)))
    receptor = rng.exponential(size=(2, len(xy)))
    return rng, codes, comp, src, dst, ligand, receptor


def _extract_permutations(strata: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """The permutations _null_sums draws, read off with M = identity and L = cell index."""
    n = len(strata)
    order = np.argsort(strata, kind="stable")
    starts = np.concatenate([[0], np.flatnonzero(np.diff(strata[order])) + 1, [n]])
    identity = np.arange(n + 1, dtype=np.int64)
    out = ligrec._null_sums(order[None].astype(np.float64), starts.astype(np.int64), uniforms,
                            identity, np.arange(n, dtype=np.int64), np.ones((1, n)))[0]
    perm = np.empty((len(uniforms), n), dtype=np.int64)
    perm[:, order] = out.T.astype(np.int64)   # cell order[t] takes the ligand of cell out[t]
    return perm


def test_null_sums_equal_brute_force_bincount_for_fixed_permutations():
    rng, codes, comp, src, dst, ligand, receptor = _small_example()
    n, n_types = len(codes), 3
    strata = codes * 2 + comp
    block = n_types * n_types
    fine, fold = ligrec._fine_groups(codes[src] * n_types + codes[dst], comp[src], block, 2)
    order = np.argsort(strata, kind="stable")
    column_of_cell = np.empty(n, dtype=np.int64)
    column_of_cell[order] = np.arange(n)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(strata[order])) + 1, [n]])
    indptr, indices, data = ligrec._receptor_matrix(receptor, src, dst, fine, fold.shape[1],
                                                    column_of_cell)
    uniforms = rng.random((5, n))
    null = ligrec._null_sums(np.ascontiguousarray(ligand[:, order]), starts.astype(np.int64),
                             uniforms, indptr, indices, data)
    perm = _extract_permutations(strata, uniforms)
    assert (np.sort(perm, axis=1) == np.arange(n)).all()          # permutations of the cells
    assert (strata[perm] == strata).all()                          # within strata
    assert (perm != np.arange(n)).any(axis=1).all()                # and not the identity
    for b in range(len(perm)):
        for k in range(2):
            product = ligand[k, perm[b, src]] * receptor[k, dst]
            groups = [codes[src] * n_types + codes[dst],
                      block * (1 + comp[src]) + codes[src] * n_types + codes[dst]]
            brute = sum(np.bincount(g, weights=product, minlength=3 * block) for g in groups)
            np.testing.assert_allclose(fold @ null[k, :, b], brute, rtol=1e-12, atol=1e-12)


def test_within_strata_permutations_are_uniform():
    """Each of the 3! orders of a 3-cell stratum appears 1/6 of the time (chi-square)."""
    strata = np.array([0, 1, 0, 1, 1, 0, 2])
    perm = _extract_permutations(strata, np.random.default_rng(0).random((6000, 7)))
    assert (perm[:, 6] == 6).all()
    _, counts = np.unique(perm[:, [0, 2, 5]], axis=0, return_counts=True)
    assert len(counts) == 6
    chi2 = ((counts - 1000.0) ** 2 / 1000.0).sum()
    assert chi2 < 20.5   # chi-square(5) upper 0.001 point
