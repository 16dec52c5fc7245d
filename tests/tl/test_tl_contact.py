"""mn.tl.contact gives the pipeline's state_changes table and contact features."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import metaniche as mn
from metaniche.config import Config, ContactParams
from metaniche.sample import analyse_sample
from metaniche.simulate import CONTACT_EFFECT, simulate_sample

CONTRACT = ("sample", "cell_id", "x", "y", "cell_type")


@pytest.fixture(scope="module")
def cells() -> pd.DataFrame:
    return simulate_sample("tl", n_cells=20_000, seed=6, phenotype="inflamed",
                           contact="effect").cells


def test_contact_on_anndata_equals_the_pipeline(cells: pd.DataFrame) -> None:
    params = ContactParams(markers=("GZMB",), cell_types=("CD8_T",), radius_um=20.0,
                           n_permutations=9)
    analysis = analyse_sample(cells, Config(contact=params))
    markers = [c for c in cells.columns if c not in CONTRACT]
    obs = pd.DataFrame({"cell_type": pd.Categorical(cells["cell_type"].astype(str))},
                       index=cells["cell_id"].astype(str).to_numpy())
    adata = ad.AnnData(X=cells[markers].to_numpy(np.float64), obs=obs)
    adata.var_names = markers
    adata.obsm["spatial"] = cells[["x", "y"]].to_numpy()
    mn.tl.contact(adata, "cell_type", markers=["GZMB"], cell_types=["CD8_T"], radius_um=20.0,
                  n_permutations=9)
    got = adata.uns["metaniche"]["state_changes"]
    expected = analysis.tables["state_changes"]
    assert list(got.columns) == ["sample", *expected.columns]
    pd.testing.assert_frame_equal(got.drop(columns="sample").reset_index(drop=True),
                                  expected.reset_index(drop=True), check_dtype=False)
    planted = got.set_index("partner_type").loc["Macrophage"]
    assert abs(planted["effect"] - CONTACT_EFFECT) < 0.1 and planted["p"] < 0.001
    features = adata.uns["metaniche"]["contact_features"].iloc[0]
    assert features["contact_effect.CD8_T.GZMB.Macrophage"] == pytest.approx(
        analysis.features["contact_effect.CD8_T.GZMB.Macrophage"])
