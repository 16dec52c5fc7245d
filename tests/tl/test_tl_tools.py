"""mn.tl gives the pipeline's numbers: every tool against metaniche.sample.analyse_sample on the
same cells (a simulated sample with planted structure and a real shared data set), squidpy
layouts, keyword parameters = config Params, per-sample computation and clear errors."""

from __future__ import annotations

import dataclasses
import inspect

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

import metaniche as mn
from metaniche._api._adapter import OUTPUT_COLUMNS
from metaniche.config import CompartmentParams, Config, RelationsParams
from metaniche.errors import ConfigError, InputError
from metaniche.io import read_samples
from metaniche.sample import analyse_sample
from metaniche.simulate import simulate_sample

SPIAT = "cells/spiat_simulated_image.SIMULATED.cells.csv.gz"
CONTRACT = ("sample", "cell_id", "x", "y", "cell_type")


def _adata(cells: pd.DataFrame, categories: list[str] | None = None) -> ad.AnnData:
    """AnnData of a standardised cell table: numeric extra columns in X, the rest in obs."""
    extra = [c for c in cells.columns if c not in CONTRACT]
    markers = [c for c in extra if pd.api.types.is_numeric_dtype(cells[c])]
    obs = cells[[c for c in extra if c not in markers]].copy()
    obs["cell_type"] = pd.Categorical(cells["cell_type"].astype(str), categories=categories)
    obs.index = cells["cell_id"].astype(str).to_numpy()
    adata = ad.AnnData(X=cells[markers].to_numpy(np.float64), obs=obs)
    adata.var_names = markers
    adata.obsm["spatial"] = cells[["x", "y"]].to_numpy()
    return adata


@pytest.fixture(scope="module", params=["simulated", "spiat"])
def case(request, data_dir_or_none):
    if request.param == "simulated":
        cells = simulate_sample("sim", n_cells=2500, seed=3, phenotype="excluded", n_lesions=1,
                                with_tls=True).cells
    else:
        if data_dir_or_none is None or not (data_dir_or_none / SPIAT).is_file():
            pytest.skip(f"real data set {SPIAT} not found")
        sample = read_samples([data_dir_or_none / SPIAT], Config())[0]
        assert sample.ok, sample.error
        cells = sample.cells
    config = Config()
    analysis = analyse_sample(cells, config, name=str(cells["sample"].iloc[0]))
    # categories in reverse order: squidpy layouts must follow the categories, not sorting
    categories = sorted(cells["cell_type"].astype(str).unique())[::-1]
    return cells, analysis, _adata(cells, categories)


@pytest.fixture(scope="module")
def data_dir_or_none():
    import os
    from pathlib import Path

    path = Path(os.environ.get("METANICHE_DATA", Path(__file__).resolve().parents[2].parent
                               / "shared" / "data"))
    return path if (path / "cells").is_dir() else None


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    """Categorical (h5ad-safe) text columns back to object with None for missing."""
    table = table.reset_index(drop=True).copy()
    for column in table.columns:
        if isinstance(table[column].dtype, pd.CategoricalDtype) or table[column].dtype == object:
            values = table[column].astype(object)
            table[column] = values.where(values.notna(), None)
    return table


def _same(result: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert result.columns[0] == "sample"
    pd.testing.assert_frame_equal(_plain(result.drop(columns="sample")), _plain(expected),
                                  check_dtype=False)


def test_compartments_equal_the_pipeline(case):
    _cells, analysis, adata = case
    mn.tl.compartments(adata, "cell_type")
    np.testing.assert_array_equal(adata.obs["signed_distance_um"].to_numpy(),
                                  analysis.cells["signed_distance_um"].to_numpy())
    assert list(adata.obs["compartment"].cat.categories) == ["core", "border", "adjacent"]
    np.testing.assert_array_equal(adata.obs["compartment"].astype(str).to_numpy(),
                                  analysis.cells["compartment"].to_numpy())
    pd.testing.assert_series_equal(adata.obs["lesion_id"].reset_index(drop=True),
                                   analysis.cells["lesion_id"], check_names=False)
    _same(adata.uns["metaniche"]["compartments"], analysis.tables["compartments"])
    _same(adata.uns["metaniche"]["lesions"], analysis.tables["lesions"])
    assert adata.uns["metaniche"]["config"]["compartments"]["border_um"] == 100.0


def test_composition_and_phenotype_equal_the_pipeline(case):
    _, analysis, adata = case
    table = mn.tl.composition(adata, "cell_type")
    _same(table, analysis.tables["composition"])
    assert table is adata.uns["metaniche"]["composition"]
    call = mn.tl.immune_phenotype(adata, "cell_type").iloc[0]
    assert call["phenotype"] == analysis.features["phenotype"]
    np.testing.assert_allclose(call["core_density_per_mm2"],
                               analysis.features["effector_density.core"])
    assert call["reason"]


def test_planted_phenotype_is_found():
    cells = simulate_sample("ex", n_cells=2500, seed=5, phenotype="excluded", n_lesions=1).cells
    assert mn.tl.immune_phenotype(cells)["phenotype"].iloc[0] == "excluded"


def test_gradients_and_zonation_equal_the_pipeline(case):
    _, analysis, adata = case
    mn.tl.gradients(adata, "cell_type")
    for name in ("gradients", "gradient_stats", "gradient_markers", "lesion_metrics"):
        if name in analysis.tables:
            _same(adata.uns["metaniche"][name], analysis.tables[name])
    mn.tl.zonation(adata, "cell_type")
    np.testing.assert_array_equal(adata.obs["zonation_eta"].to_numpy(),
                                  analysis.cells["zonation_eta"].to_numpy())


def test_nearest_distances_equal_the_pipeline_and_brute_force(case):
    _, analysis, adata = case
    mn.tl.nearest_distances(adata, "cell_type")
    _same(adata.uns["metaniche"]["distances"], analysis.tables["distances"])
    nn = adata.obsm["nn_dist_um"]
    assert list(nn.columns) == list(adata.obs["cell_type"].cat.categories)
    xy = adata.obsm["spatial"]
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    for i in rng.choice(len(xy), 25, replace=False):
        d = cdist(xy[i:i + 1], xy)[0]
        d[i] = np.inf
        for t in nn.columns:
            truth = d[labels == t].min() if (labels == t).any() else np.inf
            got = nn.iloc[i][t]
            assert (np.isnan(got) and not np.isfinite(truth)) or np.isclose(got, truth)


def test_nhood_enrichment_squidpy_layout_equals_the_pipeline(case):
    _, analysis, adata = case
    mn.tl.nhood_enrichment(adata, "cell_type")
    _same(adata.uns["metaniche"]["enrichment"], analysis.tables["enrichment"])
    result = adata.uns["cell_type_nhood_enrichment"]
    categories = list(adata.obs["cell_type"].cat.categories)
    k = len(categories)
    for key in ("zscore", "count", "p", "zscore_within_compartment"):
        assert result[key].shape == (k, k)
    table = analysis.tables["enrichment"]
    whole = table[table["null"] == "sample"]
    for row in whole.sample(20, random_state=0).itertuples():
        i, j = categories.index(row.type_a), categories.index(row.type_b)
        assert result["count"][i, j] == row.observed
        np.testing.assert_equal(result["zscore"][i, j], row.z)


def test_co_occurrence_squidpy_layout_equals_the_pipeline(case):
    _, analysis, adata = case
    mn.tl.co_occurrence(adata, "cell_type")
    _same(adata.uns["metaniche"]["cooccurrence"], analysis.tables["cooccurrence"])
    result = adata.uns["cell_type_co_occurrence"]
    categories = list(adata.obs["cell_type"].cat.categories)
    bins = RelationsParams().cooccurrence_bins
    assert result["occ"].shape == (len(categories), len(categories), bins)
    assert result["interval"].shape == (bins + 1,)
    row = analysis.tables["cooccurrence"].iloc[37]
    r = int(np.searchsorted(result["interval"][1:], row["bin_end_um"]))
    assert result["occ"][categories.index(row["type_a"]), categories.index(row["type_b"]),
                         r] == row["ratio"]


def test_ripley_mixing_aggregates_equal_the_pipeline(case):
    _, analysis, adata = case
    mn.tl.ripley(adata, "cell_type")
    _same(adata.uns["metaniche"]["ripley"], analysis.tables["ripley"])
    mn.tl.mixing_score(adata, "cell_type")
    _same(adata.uns["metaniche"]["mixing"], analysis.tables["mixing"])
    mn.tl.aggregates(adata, "cell_type")
    _same(adata.uns["metaniche"]["aggregates"], analysis.tables["aggregates"])
    np.testing.assert_array_equal(adata.obs["aggregate_id"].to_numpy(),
                                  analysis.cells["aggregate_id"].to_numpy())


def test_planted_tls_are_found(case):
    cells, _analysis, adata = case
    if cells["sample"].iloc[0] != "sim":
        pytest.skip("TLS planted in the simulated sample only")
    aggregates = adata.uns["metaniche"].get("aggregates")
    if aggregates is None:
        mn.tl.aggregates(adata, "cell_type")
        aggregates = adata.uns["metaniche"]["aggregates"]
    assert (aggregates["kind"] == "tls").sum() >= 1


def test_ligrec_equals_the_pipeline(case):
    _, analysis, adata = case
    mn.tl.ligrec(adata, "cell_type")
    _same(adata.uns["metaniche"]["ligrec"], analysis.tables["ligrec"])


def test_analyse_equals_the_pipeline(case, tmp_path):
    cells, analysis, adata = case
    copy, features = mn.tl.analyse(adata, "cell_type", copy=True)
    copy.write_h5ad(tmp_path / "analysed.h5ad")
    back = ad.read_h5ad(tmp_path / "analysed.h5ad")
    pd.testing.assert_frame_equal(back.uns["metaniche"]["composition"],
                                  copy.uns["metaniche"]["composition"], check_dtype=False)
    assert "compartment" not in adata.obs or copy is not adata
    row = features.iloc[0].drop("sample")
    expected = pd.Series(analysis.features)
    pd.testing.assert_series_equal(row[expected.index], expected, check_names=False,
                                   check_dtype=False)
    for name, table in analysis.tables.items():
        if name != "cn_windows":
            _same(copy.uns["metaniche"][name], table)
    outputs = [c for c in analysis.cells.columns if c not in cells.columns]
    assert set(outputs) <= set(OUTPUT_COLUMNS)
    for column in outputs:
        np.testing.assert_array_equal(copy.obs[column].astype(str).to_numpy(),
                                      analysis.cells[column].astype(str).to_numpy())


def test_keywords_are_the_config_params_and_override_it():
    from metaniche._api import tools

    for name in tools.__all__:
        tool = getattr(mn.tl, name)
        sections = getattr(tool, "__metaniche_sections__", {})
        signature = inspect.signature(tool)
        for section, fields in sections.items():
            params = type(getattr(Config(), section))()
            for field in fields:
                default = signature.parameters[field].default
                assert default == getattr(params, field), (name, field)
                assert signature.parameters[field].kind is inspect.Parameter.KEYWORD_ONLY
    cells = simulate_sample("kw", n_cells=2000, seed=2, phenotype="inflamed", n_lesions=1).cells
    by_keyword = cells.copy()
    mn.tl.compartments(by_keyword, border_um=40.0)
    config = Config(compartments=CompartmentParams(border_um=40.0))
    by_config = cells.copy()
    mn.tl.compartments(by_config, config=config)
    expected = analyse_sample(cells[list(cells.columns)], config).cells["compartment"]
    np.testing.assert_array_equal(by_keyword["compartment"].astype(str), expected)
    np.testing.assert_array_equal(by_config["compartment"].astype(str), expected)
    # a keyword overrides the config; an absent keyword keeps the config's value
    wide = cells.copy()
    mn.tl.compartments(wide, config=config, border_um=100.0)
    assert not np.array_equal(wide["compartment"].astype(str), expected)


def test_each_sample_is_analysed_on_its_own():
    one = simulate_sample("a", n_cells=2000, seed=7, phenotype="excluded", n_lesions=1).cells
    two = simulate_sample("b", n_cells=2000, seed=8, phenotype="inflamed", n_lesions=1).cells
    both = pd.concat([one, two], ignore_index=True).sample(frac=1.0, random_state=0)
    mn.tl.compartments(both, library_key="sample")
    for part in (one, two):
        alone = part.copy()
        mn.tl.compartments(alone)
        merged = both.set_index("cell_id").loc[alone["cell_id"]]
        np.testing.assert_array_equal(merged["signed_distance_um"].to_numpy(),
                                      alone["signed_distance_um"].to_numpy())
    table = both.attrs["metaniche"]["compartments"]
    assert list(table["sample"].unique()) == list(both["sample"].unique())
    # a frame carrying results still concatenates, slices and copies
    mn.tl.co_occurrence(both, library_key="sample")
    assert len(pd.concat([both, both.copy()])) == 2 * len(both)
    assert both[both["sample"] == "a"].attrs["metaniche"] is both.attrs["metaniche"]
    copied = mn.tl.nearest_distances(both, library_key="sample", copy=True)
    assert "nn_dist_um" in copied.attrs["metaniche"]
    assert "nn_dist_um" not in both.attrs["metaniche"]
    with pytest.raises(InputError, match="library_key='sample'"):
        mn.tl.compartments(pd.concat([one, two], ignore_index=True))


def test_copy_returns_a_copy_and_leaves_the_input():
    cells = simulate_sample("c", n_cells=2000, seed=1, phenotype="desert", n_lesions=1).cells
    adata = _adata(cells)
    out = mn.tl.compartments(adata, copy=True)
    assert out is not adata and "compartment" in out.obs and "compartment" not in adata.obs
    assert mn.tl.compartments(adata) is None and "compartment" in adata.obs


def test_bad_input_is_one_clear_sentence():
    cells = simulate_sample("e", n_cells=2000, seed=1, phenotype="desert", n_lesions=1).cells
    adata = _adata(cells)
    with pytest.raises(InputError, match="obs has no column 'celltype'"):
        mn.tl.compartments(adata, "celltype")
    with pytest.raises(ConfigError, match="border_um"):
        mn.tl.compartments(adata, border_um=-5)
    with pytest.raises(InputError, match="SpatialData"):
        mn.tl.compartments(adata, table_key="table")
    with pytest.raises(InputError, match="must be an AnnData"):
        mn.tl.compartments([1, 2, 3])
    del adata.obsm["spatial"]
    with pytest.raises(InputError, match="obsm has no 'spatial'"):
        mn.tl.compartments(adata)
    with pytest.raises(InputError, match="no column"):
        mn.tl.compartments(cells.drop(columns="x"))
    assert dataclasses.is_dataclass(Config())


def test_spatialdata_table_is_used_through_table_key():
    """A SpatialData object (spatialdata is not installed here: a stand-in of the same name
    and module holding ``tables``) is analysed through its table; results go into it."""
    cells = simulate_sample("sd", n_cells=2000, seed=6, phenotype="inflamed", n_lesions=1).cells
    table = _adata(cells)
    fake = type("SpatialData", (), {"__module__": "spatialdata._core.spatialdata"})()
    fake.tables = {"cells": table}
    mn.tl.compartments(fake, "cell_type", table_key="cells")
    alone = cells.copy()
    mn.tl.compartments(alone)
    np.testing.assert_array_equal(table.obs["signed_distance_um"].to_numpy(),
                                  alone["signed_distance_um"].to_numpy())
    with pytest.raises(InputError, match="needs `table_key`"):
        mn.tl.compartments(fake)
    with pytest.raises(InputError, match="not a table"):
        mn.tl.compartments(fake, table_key="other")
