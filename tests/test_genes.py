"""Genes kept sparse: a matrix beyond the old dense cap is read whole, and the results of the
genes a config names equal those of the same genes as dense columns."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from metaniche import tables as T
from metaniche.config import Config, GradientParams, InputParams, StateRule, StatesParams
from metaniche.errors import ConfigError
from metaniche.genes import (
    MAX_DENSE_VALUES,
    GeneMatrix,
    expression_markers,
    normalise_expression,
    with_gene_columns,
)
from metaniche.io import read_samples
from metaniche.phenotype import apply_gating, parse_panel
from metaniche.sample import build_context
from metaniche.simulate import STATE_THRESHOLD, simulate_sample
from metaniche.stages import gradients as gradients_stage
from metaniche.stages import states as states_stage

N_CELLS, N_GENES = 300_000, 1_000
NAMED = ["g0007", "g0042", "g0999"]


@pytest.fixture(scope="module")
def big_h5ad(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, sp.csr_matrix]:
    """300k cells × 1,000 genes (3e8 values, beyond the old 2.5e8 cap), ~4 non-zeros per cell."""
    import anndata

    rng = np.random.default_rng(7)
    nnz = 4 * N_CELLS
    rows = rng.integers(0, N_CELLS, nnz)
    cols = rng.integers(0, N_GENES, nnz)
    counts = rng.integers(1, 20, nnz).astype(np.float32)
    matrix = sp.csr_matrix((counts, (rows, cols)), shape=(N_CELLS, N_GENES))
    matrix.sum_duplicates()
    side = int(np.ceil(np.sqrt(N_CELLS)))
    xy = np.column_stack([np.arange(N_CELLS) % side, np.arange(N_CELLS) // side]) * 10.0
    labels = rng.choice(["Tumor", "CD8_T", "Macrophage"], N_CELLS)
    adata = anndata.AnnData(X=matrix, obs=pd.DataFrame(
        {"cell_type": pd.Categorical(labels)}, index=[f"c{i}" for i in range(N_CELLS)]),
        var=pd.DataFrame(index=[f"g{j:04d}" for j in range(N_GENES)]))
    adata.obsm["spatial"] = xy
    path = tmp_path_factory.mktemp("genes") / "big.h5ad"
    adata.write_h5ad(path)
    return path, matrix


def test_reader_keeps_every_gene_beyond_the_old_cap(big_h5ad) -> None:
    path, matrix = big_h5ad
    assert N_CELLS * N_GENES > MAX_DENSE_VALUES
    [sample] = read_samples([path], Config())
    assert sample.ok, sample.error
    assert sample.genes is not None
    assert sample.genes.n_cells == N_CELLS and sample.genes.n_genes == N_GENES
    assert sample.genes.matrix.nnz == matrix.nnz
    assert not any("not read" in w for w in sample.warnings)
    assert sample.cells is not None
    assert not set(sample.genes.names) & set(sample.cells.columns)   # no dense gene column
    dense = sample.genes.columns(NAMED)
    where = [int(n[1:]) for n in NAMED]
    assert np.array_equal(dense.to_numpy(), matrix[:, where].toarray().astype(np.float64))
    [again] = read_samples([path], Config())
    assert again.checksum == sample.checksum     # a rerun finds the sample unchanged


def test_gating_on_sparse_genes_equals_dense_subset(big_h5ad) -> None:
    path, matrix = big_h5ad
    gating = {"thresholds": {"g0007": 0.5},   # g0042: automatic (Otsu on log1p)
              "rules": {"CD8_T": ["g0007+"], "Macrophage": ["g0042+", "g0007-"]}}
    [sample] = read_samples([path], Config(gating=gating))
    assert sample.ok, sample.error
    assert sample.cells is not None
    subset = pd.DataFrame(matrix[:, [7, 42]].toarray().astype(np.float64),
                          columns=["g0007", "g0042"])
    dense = apply_gating(subset, parse_panel(gating))
    assert np.array_equal(sample.cells["cell_type"].to_numpy(), dense.cell_type)
    assert (sample.cells["cell_type"] == "CD8_T").sum() == (matrix[:, 7].toarray() > 0).sum()


def test_checksum_changes_with_a_gene_value() -> None:
    matrix = sp.random(50, 30, density=0.1, format="csr", random_state=1, dtype=np.float32)
    genes = GeneMatrix(matrix, [f"g{j}" for j in range(30)])
    changed = matrix.copy()
    changed.data[3] += 1
    digests = []
    for m in (matrix, matrix.copy(), changed):
        digest = hashlib.sha256()
        GeneMatrix(m, genes.names).update_digest(digest)
        digests.append(digest.hexdigest())
    assert digests[0] == digests[1] != digests[2]


def test_small_matrices_stay_dense_columns() -> None:
    markers, genes = expression_markers(sp.csr_matrix(np.eye(3)), ["A", "x", "B"], ["x"])
    assert genes is None and list(markers.columns) == ["A", "B"]
    assert markers.dtypes.eq(np.float64).all()


def test_normalised_is_log1p_of_counts_over_total_times_1e4() -> None:
    counts = np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, 2.0]])
    genes = GeneMatrix(sp.csr_matrix(counts), ("A", "B", "C"))
    got = genes.normalised(["A", "C"]).to_numpy()
    want = np.log1p(np.array([[1 / 4, 0.0], [0.0, 0.0], [2 / 4, 2 / 4]]) * 1e4)
    assert np.allclose(got, want)


def test_with_gene_columns_resolves_case_and_leaves_table_alone() -> None:
    cells = pd.DataFrame({"x": [0.0, 1.0], "CD3": [1.0, 2.0]})
    genes = GeneMatrix(sp.csr_matrix(np.array([[0, 5.0], [1.0, 0]])), ("cd3", "GZMB"))
    assert with_gene_columns(cells, genes, ["CD3"]) is cells    # a table column wins
    out = with_gene_columns(cells, genes, ["gzmb", "nope"])
    assert list(out.columns) == ["x", "CD3", "GZMB"] and out["GZMB"].tolist() == [5.0, 0.0]


def test_stages_on_sparse_genes_equal_dense_columns() -> None:
    """States, state-marker gradients and gene gradients of named genes: the same tables
    whether the genes are dense columns or columns of a sparse matrix among filler genes."""
    sample = simulate_sample("s", n_cells=6_000, seed=2, phenotype="inflamed", n_lesions=1,
                             states=True)
    named = ["PDL1", "GZMB", "PD1"]
    config = Config(
        states=StatesParams(rules={
            "PDL1_pos": StateRule(marker="PDL1", cell_types=("Macrophage", "Tumor")),
            "GZMB_pos": StateRule(marker="GZMB", threshold=STATE_THRESHOLD,
                                  cell_types=("CD8_T",)),
            "PD1_pos": StateRule(marker="PD1", threshold="gmm", cell_types=("CD8_T",))},
            gradient_markers=("PD1",)),
        gradients=GradientParams(marker_columns=tuple(named)))
    dense_cells = sample.cells
    others = [c for c in dense_cells.columns if c in named]
    rng = np.random.default_rng(3)
    filler = sp.random(len(dense_cells), 200, density=0.01, format="csr", random_state=rng)
    matrix = sp.hstack([filler[:, :100], sp.csr_matrix(dense_cells[others].to_numpy()),
                        filler[:, 100:]]).tocsr()
    genes = GeneMatrix(matrix, [f"f{j}" for j in range(100)] + others
                       + [f"f{j}" for j in range(100, 200)])
    sparse_cells = dense_cells.drop(columns=others)
    dense_context = build_context("s", dense_cells, config)
    sparse_context = build_context("s", sparse_cells, config, genes=genes)
    for stage, gene_table in ((states_stage, T.MARKER_GRADIENTS),
                              (gradients_stage, T.GRADIENT_MARKERS)):
        dense, sparse = stage.run(dense_context), stage.run(sparse_context)
        assert set(dense.tables) == set(sparse.tables)
        assert len(dense.tables[gene_table])
        for name, table in dense.tables.items():
            pd.testing.assert_frame_equal(sparse.tables[name], table, obj=name)
        for column, values in dense.cell_columns.items():
            assert np.array_equal(sparse.cell_columns[column], values), column
        assert dense.features.keys() == sparse.features.keys()


def test_notebook_api_states_from_sparse_genes_equal_dense(monkeypatch) -> None:
    """mn.tl.states on an AnnData whose X is kept sparse (cap lowered for the test) gives the
    state calls of the dense X, per sample of ``library_key``."""
    import anndata

    import metaniche as mn
    import metaniche.genes as genes_module

    sample = simulate_sample("s", n_cells=4_000, seed=5, phenotype="inflamed", n_lesions=1,
                             states=True)
    cells = sample.cells
    rng = np.random.default_rng(0)
    filler = sp.random(len(cells), 50, density=0.02, format="csr", random_state=rng)
    matrix = sp.hstack([sp.csr_matrix(cells[["PDL1", "GZMB"]].to_numpy()), filler]).tocsr()
    obs = pd.DataFrame({"cell_type": cells["cell_type"].astype(str).to_numpy(),
                        "library": np.where(cells["x"] < cells["x"].median(), "a", "b")},
                       index=cells["cell_id"].astype(str).to_numpy())
    names = ["PDL1", "GZMB"] + [f"f{j}" for j in range(50)]
    rules = {"PDL1_pos": {"marker": "PDL1"}, "GZMB_pos": {"marker": "gzmb", "threshold": 1.0}}
    results = []
    for cap in (genes_module.MAX_DENSE_VALUES, 100):
        monkeypatch.setattr(genes_module, "MAX_DENSE_VALUES", cap)
        kept_sparse = expression_markers(matrix, names, [])[1] is not None
        assert kept_sparse == (cap == 100)
        adata = anndata.AnnData(X=matrix.copy(), obs=obs.copy(),
                                var=pd.DataFrame(index=names))
        adata.obsm["spatial"] = cells[["x", "y"]].to_numpy()
        mn.tl.states(adata, "cell_type", library_key="library", rules=rules, structures=False)
        results.append(adata)
    dense, sparse = results
    for column in ("state.PDL1_pos", "state.GZMB_pos"):
        assert np.array_equal(sparse.obs[column].to_numpy(), dense.obs[column].to_numpy())
    pd.testing.assert_frame_equal(sparse.uns["metaniche"]["state_thresholds"],
                                  dense.uns["metaniche"]["state_thresholds"])


def _brute_log1p_cp10k(counts: np.ndarray) -> np.ndarray:
    """log1p(count / total × 1e4) cell by cell, total 0 → zeros (the formula, looped)."""
    out = np.zeros_like(counts, dtype=np.float64)
    for i, row in enumerate(counts):
        total = row.sum()
        if total > 0:
            out[i] = np.log1p(row / total * 1e4)
    return out


def test_normalise_expression_equals_the_formula_dense_and_sparse() -> None:
    rng = np.random.default_rng(3)
    counts = rng.poisson(0.7, size=(40, 25)).astype(np.float64)
    counts[5] = 0.0                                   # a cell without counts keeps zeros
    want = _brute_log1p_cp10k(counts)
    assert np.allclose(normalise_expression(counts, "log1p_cp10k"), want)
    sparse = normalise_expression(sp.csr_matrix(counts.astype(np.float32)), "log1p_cp10k")
    assert sp.issparse(sparse) and sparse.nnz == np.count_nonzero(counts)
    assert np.allclose(sparse.toarray(), want)
    assert normalise_expression(counts, "none") is counts


@pytest.mark.parametrize("sparse", [False, True])
def test_reader_normalises_genes_when_asked(tmp_path, monkeypatch, sparse) -> None:
    import anndata

    import metaniche.genes as genes_module

    rng = np.random.default_rng(5)
    counts = rng.poisson(1.5, size=(400, 12)).astype(np.float32)
    names = [f"g{j}" for j in range(12)]
    adata = anndata.AnnData(X=sp.csr_matrix(counts), obs=pd.DataFrame(
        {"cell_type": pd.Categorical(rng.choice(["Tumor", "CD8_T"], 400))},
        index=[f"c{i}" for i in range(400)]), var=pd.DataFrame(index=names))
    adata.obsm["spatial"] = rng.uniform(0, 500, (400, 2))
    path = tmp_path / "small.h5ad"
    adata.write_h5ad(path)
    if sparse:
        monkeypatch.setattr(genes_module, "MAX_DENSE_VALUES", 10)
    want = _brute_log1p_cp10k(counts.astype(np.float64))
    [raw] = read_samples([path], Config())
    [normalised] = read_samples([path], Config(
        input=InputParams(gene_normalisation="log1p_cp10k")))
    assert raw.ok and normalised.ok, (raw.error, normalised.error)
    if sparse:
        got, kept = normalised.genes.columns(names), raw.genes.columns(names)
    else:
        got, kept = normalised.cells[names], raw.cells[names]
    assert np.allclose(got.to_numpy(), want)
    assert np.array_equal(kept.to_numpy(), counts.astype(np.float64))   # default: as stored


def test_gene_normalisation_rejects_an_unknown_method() -> None:
    with pytest.raises(ConfigError, match="gene_normalisation"):
        InputParams(gene_normalisation="cpm")
