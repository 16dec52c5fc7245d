"""Spatial ligand–receptor: brute-force score and p, planted pairs significant, FDR on null data,
sequential (Besag–Clifford) refinement valid under the null."""

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
from metaniche.config import Config
from metaniche.errors import ConfigError, InputError
from metaniche.sample import build_context
from metaniche.simulate import simulate_sample
from metaniche.stages import communities

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
                            n_permutations=999, seed=0, max_permutations=19_999,
                            normal_min_edges=0)
    planted = table.query("ligand == 'VEGFA' and sender_type == 'Macrophage' and "
                          "receiver_type == 'Endothelial' and compartment == 'all'")
    # refined from the 1/1000 floor of 999 permutations: no exceedance in 19,999
    assert planted["n_permutations"].iloc[0] == 19_999
    assert planted["p"].iloc[0] == pytest.approx(1 / 20_000) and planted["q"].iloc[0] <= 0.05
    unplanted = table.query("ligand == 'CXCL12'")
    assert (unplanted["q"] > 0.05).all()
    refined = table["n_permutations"] > 999
    assert (table.loc[refined, "p"] <= 10 / 1000).all()        # only rows with < h = 10
    assert (table.loc[~refined, "p"] >= 11 / 1000).all()       # exceedances were refined


def test_simulated_tls_ccl19_ccr7_significant():
    """Simulator truth: CCL19+ fibroblasts in TLS next to CCR7-high B cells. With 999
    permutations p is floored at 1/1000 and BH over ~300 rows cannot reach 0.05; refined it
    does."""
    sample = simulate_sample("s", 10_000, seed=3, with_tls=True)
    context = build_context("s", sample.cells, Config())
    pairs = communities.neighbour_pairs(context.tree, context.config.ligrec.radius_um)
    table = communities._ligrec(context, pairs)
    row = table.query("ligand == 'CCL19' and receptor == 'CCR7' and sender_type == 'any' and "
                      "receiver_type == 'B' and compartment == 'all'").iloc[0]
    assert row["p"] == pytest.approx(1e-4) and row["n_permutations"] == 9_999
    assert row["q"] < 0.05


def test_null_pairs_hold_fdr():
    """On expression independent of space, with refinement on (99 → 999 → 9,999
    permutations), BH at 0.05 rejects nothing in >= 90 % of runs and p stays uniform: the
    refined small p-values are not inflated (P(p <= 0.01) <= 0.01 up to noise)."""
    runs_with_discovery, p_values, n_perm = 0, [], []
    for seed in range(24):
        rng, xy, codes = _tissue(100 + seed, side=24)
        expression = {g: rng.exponential(size=len(xy)) for g in ("VEGFA", "KDR")}
        pairs = neighbour_pairs(cKDTree(xy), 25.0)
        table = ligand_receptor(pairs.i, pairs.j, expression, PAIR, codes, ["M", "E", "H"],
                                np.where(xy[:, 0] < 150, "border", "adjacent"),
                                n_permutations=99, seed=seed, max_permutations=9_999)
        runs_with_discovery += bool((table["q"] <= 0.05).any())
        p_values.append(table["p"].to_numpy())
        n_perm.append(table["n_permutations"].to_numpy())
    assert runs_with_discovery <= 3
    p, n_perm = np.concatenate(p_values), np.concatenate(n_perm)
    assert (n_perm > 99).mean() > 0.03          # refinement did run (p_stage1 <= 0.1)
    assert (n_perm == 9_999).any()
    assert np.mean(p <= 0.05) <= 0.08 and np.mean(p <= 0.01) <= 0.02  # ~uniform
    assert np.mean(p <= 0.5) >= 0.4


def test_pair_table_and_matching(tmp_path):
    shipped = load_pairs()
    for ligand, receptor in [("CCL19", "CCR7"), ("CXCL13", "CXCR5"), ("CXCL12", "CXCR4"),
                             ("VEGFA", "KDR"), ("SPP1", "CD44"), ("CD274", "PDCD1")]:
        assert ((shipped["ligand"] == ligand) & (shipped["receptor"] == receptor)).any()
    assert match_pairs(shipped, ["ccl19", "CCR7", "CD3"]) == [("CCL19", "CCR7", "ccl19", "CCR7")]
    # The shipped table is parsed once, but every caller gets its own copy.
    shipped.loc[0, "ligand"] = "CHANGED"
    assert load_pairs()["ligand"].iloc[0] != "CHANGED"
    pd.testing.assert_frame_equal(load_pairs(), load_pairs(""))
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


def _stage1_permutations(strata: np.ndarray, seed: np.random.SeedSequence,
                         n_permutations: int) -> np.ndarray:
    """The stage-1 permutations: blocks of 64 from ``seed.spawn(n_blocks)``."""
    blocks = seed.spawn(-(-n_permutations // 64))
    return np.concatenate([_extract_permutations(strata, np.random.default_rng(child).random(
        (min(64, n_permutations - 64 * b), len(strata)))) for b, child in enumerate(blocks)])


def _refined_values(ligand: np.ndarray, strata: np.ndarray, senders: np.ndarray, seed: int,
                    key: tuple[int, ...], n_more: int) -> dict[int, np.ndarray]:
    """Per needed sender, its ligand in each of ``n_more`` refinement permutations, drawn in
    plain Python: cells in stratum-sorted order, per block of 256 a fresh arrangement, per
    stratum (ascending code) a partial Fisher–Yates shuffle over the needed senders in
    stratum-sorted order, uniforms from SeedSequence(seed, spawn_key=(*key, stratum, block)),
    the arrangement carried over to the next permutation of the block."""
    order = np.argsort(strata, kind="stable")
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    values = {int(s): np.empty(n_more) for s in senders}
    for block in range(-(-n_more // 256)):
        size = min(256, n_more - 256 * block)
        arrangement = list(ligand[order])
        uniforms = {}
        for code in np.unique(strata[senders]):
            members = sorted(senders[strata[senders] == code], key=lambda c: position[c])
            stream = np.random.SeedSequence(seed, spawn_key=(*key, int(code), block))
            uniforms[int(code)] = (members, np.random.default_rng(stream).random(
                (size, len(members))))
        for b in range(size):
            for code, (members, u) in sorted(uniforms.items()):
                lo = int(np.flatnonzero(strata[order] == code)[0])
                m = int((strata == code).sum())
                for i, cell in enumerate(members):
                    j = lo + min(m - 1, i + int(u[b, i] * (m - i)))
                    arrangement[j], arrangement[lo + i] = arrangement[lo + i], arrangement[j]
                    values[int(cell)][256 * block + b] = arrangement[lo + i]
    return values


def test_refined_p_equals_direct_count_with_the_same_stream():
    """Brute force: every row's p = (1 + exceedances) / (1 + N) counted directly on the edges
    with the permutation stream the module documents (stage 1 of 19, then 199 and 999)."""
    rng, xy, codes = _tissue(7, side=10)
    lig, rec = rng.exponential(size=len(xy)), rng.exponential(size=len(xy))
    lig[(codes == 0) & (xy[:, 0] < 75)] *= 8      # a planted signal, so rows refine to 999
    rec[(codes == 1) & (xy[:, 0] < 75)] *= 8
    pairs = neighbour_pairs(cKDTree(xy), 20.0)
    seed, h, schedule = 5, 3, (19, 199, 999)
    table = ligand_receptor(pairs.i, pairs.j, {"VEGFA": lig, "KDR": rec}, PAIR, codes,
                            ["M", "E", "H"], None, n_permutations=19, seed=seed, min_edges=1,
                            max_permutations=999, min_exceedances=h)
    assert set(table["n_permutations"]) == set(schedule)
    src = np.concatenate([pairs.i, pairs.j])
    dst = np.concatenate([pairs.j, pairs.i])
    stage1_seeds = np.random.SeedSequence(seed).spawn(2)
    labels = np.array(["M", "E", "H"])
    for scheme, name in enumerate(("type", "any")):
        strata = codes if name == "type" else np.zeros(len(codes), dtype=np.int64)
        rows = table[(table["sender_type"] == "any") == (name == "any")]
        code_of = {label: code for code, label in enumerate(labels)}
        masks = [(codes[dst] == code_of[r.receiver_type])
                 & ((codes[src] == code_of[r.sender_type]) if name == "type" else True)
                 for r in rows.itertuples()]
        observed = np.array([np.sum(lig[src[m]] * rec[dst[m]]) for m in masks])
        perms = _stage1_permutations(strata, stage1_seeds[scheme], 19)
        exceed = np.array([[np.sum(lig[perm[src[m]]] * rec[dst[m]]) for perm in perms]
                           for m in masks]) >= observed[:, None] * (1 - 1e-9)
        exceed = exceed.sum(axis=1)
        n_perm = np.full(len(rows), 19)
        for stage in (1, 2):
            running = (exceed < h) & (n_perm == schedule[stage - 1])
            if not running.any():
                continue
            senders = np.unique(np.concatenate([src[m] for m, r in zip(masks, running,
                                                                        strict=True) if r]))
            n_more = schedule[stage] - schedule[stage - 1]
            drawn = _refined_values(lig, strata, senders, seed, (2, scheme, stage, 0), n_more)
            for row in np.flatnonzero(running):
                m = masks[row]
                null = sum(drawn[int(s)] * r for s, r in zip(src[m], rec[dst[m]],
                                                             strict=True))
                exceed[row] += np.sum(null >= observed[row] * (1 - 1e-9))
                n_perm[row] = schedule[stage]
        np.testing.assert_array_equal(rows["n_permutations"].to_numpy(), n_perm)
        np.testing.assert_allclose(rows["p"].to_numpy(), (1 + exceed) / (1 + n_perm),
                                   rtol=1e-12)


def test_refinement_is_deterministic_and_leaves_stage1_untouched():
    rng, xy, codes = _tissue(9, side=20)
    lig, rec = rng.exponential(size=len(xy)), rng.exponential(size=len(xy))
    lig[codes == 0] *= np.where(xy[codes == 0, 0] < 100, 5, 1)
    rec[codes == 1] *= np.where(xy[codes == 1, 0] < 100, 5, 1)
    pairs = neighbour_pairs(cKDTree(xy), 20.0)
    compartment = np.where(xy[:, 1] < 150, "border", "adjacent")

    def run(seed: int, max_permutations: int) -> pd.DataFrame:
        return ligand_receptor(pairs.i, pairs.j, {"VEGFA": lig, "KDR": rec}, PAIR, codes,
                               ["M", "E", "H"], compartment, n_permutations=99, seed=seed,
                               max_permutations=max_permutations)

    table = run(1, 9_999)
    pd.testing.assert_frame_equal(table, run(1, 9_999))
    plain = run(1, 0)
    assert (plain["n_permutations"] == 99).all() and (table["n_permutations"] == 9_999).any()
    pd.testing.assert_frame_equal(table[["score", "expected", "z", "p_normal"]],
                                  plain[["score", "expected", "z", "p_normal"]])
    kept = table["n_permutations"] == 99
    np.testing.assert_array_equal(table.loc[kept, "p"], plain.loc[kept, "p"])
    assert (plain.loc[~kept, "p"] < 10.5 / 100).all()
    other = run(2, 9_999)
    assert not np.array_equal(other["p"], table["p"])


@pytest.mark.parametrize(("keyword", "value"), [("max_permutations", -1),
                                                 ("min_exceedances", 0)])
def test_refinement_parameters_checked(keyword, value):
    with pytest.raises(ConfigError, match=keyword):
        ligand_receptor(np.array([0]), np.array([1]), {"VEGFA": np.ones(2), "KDR": np.ones(2)},
                        PAIR, np.zeros(2, dtype=np.int64), ["M"], **{keyword: value})


def test_exact_moments_equal_full_enumeration_of_within_strata_permutations():
    """Mean and variance of every row's null equal those over all 4!·4! = 576 permutations."""
    import itertools

    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 30, (8, 2))
    codes = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    compartment = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])
    lig, rec = rng.exponential(size=8), rng.exponential(size=8)
    pairs = neighbour_pairs(cKDTree(xy), 25.0)
    table = ligand_receptor(pairs.i, pairs.j, {"VEGFA": lig, "KDR": rec}, PAIR, codes,
                            ["M", "E"], compartment, n_permutations=9, min_edges=1,
                            max_permutations=0)
    src = np.concatenate([pairs.i, pairs.j])
    dst = np.concatenate([pairs.j, pairs.i])
    strata = [np.flatnonzero(compartment == c) for c in ("a", "b")]
    permuted = []
    for first in itertools.permutations(strata[0]):
        for second in itertools.permutations(strata[1]):
            perm = np.arange(8)
            perm[strata[0]], perm[strata[1]] = first, second
            permuted.append(lig[perm])
    permuted = np.array(permuted)                   # (576, 8)
    rows = table.query("sender_type == 'any'")
    assert len(rows) > 2
    for row in rows.itertuples():
        use = codes[dst] == ["M", "E"].index(row.receiver_type)
        if row.compartment != "all":
            use &= compartment[src] == row.compartment
        null = permuted[:, src[use]] @ rec[dst[use]]
        assert row.n_edges == use.sum()
        assert row.expected * row.n_edges == pytest.approx(null.mean(), rel=1e-12)
        sd = (row.score - row.expected) * row.n_edges / row.z
        assert sd == pytest.approx(null.std(), rel=1e-9)


def test_normal_rows_match_monte_carlo_on_null_tissue():
    """Large rows take the exact-moment normal p: close to Monte Carlo p under the null."""
    differences, normal_p = [], []
    for seed in range(4):
        rng, xy, codes = _tissue(200 + seed, side=40)
        expression = {g: rng.exponential(size=len(xy)) for g in ("VEGFA", "KDR")}
        pairs = neighbour_pairs(cKDTree(xy), 25.0)
        common = dict(n_permutations=1999, seed=seed, max_permutations=0)
        normal = ligand_receptor(pairs.i, pairs.j, expression, PAIR, codes, ["M", "E", "H"],
                                 None, normal_min_edges=2500, **common)
        monte_carlo = ligand_receptor(pairs.i, pairs.j, expression, PAIR, codes,
                                      ["M", "E", "H"], None, normal_min_edges=0, **common)
        large = normal["n_edges"].to_numpy() >= 2500
        assert large.any() and (~large).any()
        assert (normal.loc[large, "n_permutations"] == 0).all()
        np.testing.assert_array_equal(normal.loc[large, "p"], normal.loc[large, "p_normal"])
        np.testing.assert_array_equal(normal.loc[~large, "n_permutations"], 1999)
        differences.append(normal.loc[large, "p"].to_numpy()
                           - monte_carlo.loc[large, "p"].to_numpy())
        normal_p.append(normal.loc[large, "p"].to_numpy())
    differences = np.concatenate(differences)
    # Monte Carlo SE of p at 1,999 permutations is <= 0.011; skew would shift p systematically
    assert np.max(np.abs(differences)) < 0.04
    assert abs(np.mean(differences)) < 0.01
    assert len(np.concatenate(normal_p)) >= 12


@pytest.mark.parametrize("seed", range(3))
def test_group_pairs_equals_numpy_unique(seed):
    rng = np.random.default_rng(seed)
    n_rows, n_cells = 7, 50
    rows = rng.integers(0, n_rows, 2000)
    cells = rng.integers(0, n_cells, 2000)
    keys, inverse = np.unique(rows * n_cells + cells, return_inverse=True)
    got_inverse, got_rows, got_cells = ligrec._group_pairs(rows, cells, n_rows, n_cells)
    np.testing.assert_array_equal(got_inverse, inverse.reshape(-1))
    np.testing.assert_array_equal(got_rows * n_cells + got_cells, keys)
