"""mn.tl.states gives the pipeline's state tables, cell columns and features."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import metaniche as mn
from metaniche.config import Config, StateRule, StatesParams
from metaniche.errors import ConfigError, InputError
from metaniche.sample import analyse_sample
from metaniche.simulate import STATE_THRESHOLD, simulate_sample

CONTRACT = ("sample", "cell_id", "x", "y", "cell_type")
RULES = {"PDL1_pos": StateRule(marker="PDL1", cell_types=("Macrophage", "Tumor")),
         "GZMB_pos": StateRule(marker="GZMB", threshold=STATE_THRESHOLD,
                               cell_types=("CD8_T",)),
         "PD1_pos": StateRule(marker="PD1", threshold="gmm", cell_types=("CD8_T",)),
         "both": StateRule(all_of=("GZMB_pos", "PD1_pos"))}


def _adata(cells: pd.DataFrame) -> ad.AnnData:
    extra = [c for c in cells.columns if c not in CONTRACT]
    markers = [c for c in extra if pd.api.types.is_numeric_dtype(cells[c])]
    obs = cells[[c for c in extra if c not in markers]].copy()
    obs["cell_type"] = pd.Categorical(cells["cell_type"].astype(str))
    obs.index = cells["cell_id"].astype(str).to_numpy()
    adata = ad.AnnData(X=cells[markers].to_numpy(np.float64), obs=obs)
    adata.var_names = markers
    adata.obsm["spatial"] = cells[["x", "y"]].to_numpy()
    return adata


@pytest.fixture(scope="module")
def sample():
    return simulate_sample("tl", n_cells=4000, seed=5, phenotype="inflamed", n_lesions=1,
                           states=True)


def test_states_equal_the_pipeline(sample):
    config = Config(states=StatesParams(rules=RULES))
    analysis = analyse_sample(sample.cells, config)
    adata = _adata(sample.cells)
    as_dicts = {"PDL1_pos": {"marker": "PDL1", "cell_types": ["Macrophage", "Tumor"]},
                "GZMB_pos": {"marker": "GZMB", "threshold": STATE_THRESHOLD,
                             "cell_types": "CD8_T"},
                "PD1_pos": {"marker": "PD1", "threshold": "gmm", "cell_types": ["CD8_T"]},
                "both": {"all_of": ["GZMB_pos", "PD1_pos"]}}
    mn.tl.states(adata, "cell_type", rules=as_dicts)
    for name in ("states", "state_gradients", "state_gradient_stats", "state_thresholds"):
        got = adata.uns["metaniche"][name]
        expected = analysis.tables[name]
        assert list(got.columns) == ["sample", *expected.columns]
        pd.testing.assert_frame_equal(got.drop(columns="sample").reset_index(drop=True),
                                      expected.reset_index(drop=True), check_dtype=False)
    for name in RULES:
        np.testing.assert_array_equal(adata.obs[f"state.{name}"].to_numpy(),
                                      analysis.cells[f"state.{name}"].to_numpy())
    features = adata.uns["metaniche"]["state_features"].iloc[0]
    for key, value in analysis.features.items():
        if key.startswith(("state_", "ratio.")):
            assert features[key] == pytest.approx(value, nan_ok=True), key
    # a config gives the same result as the keyword
    frame = sample.cells.copy()
    mn.tl.states(frame, config=config)
    np.testing.assert_array_equal(frame["state.both"].to_numpy(),
                                  analysis.cells["state.both"].to_numpy())


def test_ratio_keywords_and_errors(sample):
    frame = sample.cells.copy()
    mn.tl.states(frame, ratios=[["Macrophage", "CD8_T"]], pseudocount=2.0)
    features = frame.attrs["metaniche"]["state_features"].iloc[0]
    labels = frame["cell_type"].to_numpy()
    all_m, all_c = (labels == "Macrophage").sum(), (labels == "CD8_T").sum()
    assert features["ratio.all.Macrophage.CD8_T"] == pytest.approx((all_m + 2) / (all_c + 2))
    with pytest.raises(InputError, match="unknown field"):
        mn.tl.states(sample.cells.copy(), rules={"a": {"markers": "PDL1"}})
    with pytest.raises(ConfigError, match="threshold"):
        mn.tl.states(sample.cells.copy(), rules={"a": {"marker": "PDL1", "threshold": "mean"}})
    with pytest.raises(InputError, match="state 'a' needs marker 'Ki67'"):
        mn.tl.states(sample.cells.copy(), rules={"a": {"marker": "Ki67"}})
