"""The notebook API computes a sample's compartments once per session for the same inputs
(metaniche._api._adapter.CompartmentMemo): later tools reuse them, any change of cells,
labels, coordinates or parameters recomputes, and reusing never changes a number."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import metaniche as mn
import metaniche.sample as sample_module
from metaniche._api._adapter import COMPARTMENT_MEMO, CompartmentMemo
from metaniche.config import Config
from metaniche.simulate import simulate_sample


def _adata() -> ad.AnnData:
    cells = simulate_sample("memo", n_cells=3000, seed=11, phenotype="excluded", n_lesions=1).cells
    obs = pd.DataFrame({"cell_type": pd.Categorical(cells["cell_type"].astype(str))},
                       index=cells["cell_id"].astype(str).to_numpy())
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = cells[["x", "y"]].to_numpy(np.float64)
    return adata


@pytest.fixture
def calls(monkeypatch):
    """Count the computations of compartments (the function build_context calls)."""
    counter = {"n": 0}
    original = sample_module.sample_compartments

    def counting(*args, **kwargs):
        counter["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(sample_module, "sample_compartments", counting)
    COMPARTMENT_MEMO.clear()
    yield counter
    COMPARTMENT_MEMO.clear()


def _enrichment(adata: ad.AnnData) -> pd.DataFrame:
    return pd.DataFrame(adata.uns["metaniche"]["enrichment"]).reset_index(drop=True)


def test_later_tools_reuse_the_compartments_and_give_the_same_numbers(calls):
    reused = _adata()
    mn.tl.compartments(reused, "cell_type")
    assert calls["n"] == 1
    mn.tl.nhood_enrichment(reused, "cell_type")
    mn.tl.composition(reused, "cell_type")
    assert calls["n"] == 1                       # computed once, reused twice

    COMPARTMENT_MEMO.clear()
    fresh = _adata()
    mn.tl.nhood_enrichment(fresh, "cell_type")
    assert calls["n"] == 2                       # a cleared memo computes again
    pd.testing.assert_frame_equal(_enrichment(reused), _enrichment(fresh))
    key = "cell_type_nhood_enrichment"
    for name in ("zscore", "count", "zscore_within_compartment"):
        np.testing.assert_array_equal(reused.uns[key][name], fresh.uns[key][name])


@pytest.mark.parametrize("change", ["parameter", "label", "coordinate"])
def test_any_change_of_inputs_recomputes(calls, change):
    adata = _adata()
    mn.tl.compartments(adata, "cell_type")
    assert calls["n"] == 1
    kwargs = {}
    if change == "parameter":
        kwargs["border_um"] = 80.0
    elif change == "label":
        labels = adata.obs["cell_type"].astype(str).to_numpy().copy()
        labels[0] = "Tumour" if labels[0] != "Tumour" else "CD8_T"
        adata.obs["cell_type"] = pd.Categorical(labels)
    else:
        adata.obsm["spatial"] = adata.obsm["spatial"] + np.array([0.5, 0.0])
    mn.tl.compartments(adata, "cell_type", **kwargs)
    assert calls["n"] == 2
    expected = _adata()
    expected.obs["cell_type"] = adata.obs["cell_type"]
    expected.obsm["spatial"] = adata.obsm["spatial"]
    COMPARTMENT_MEMO.clear()
    mn.tl.compartments(expected, "cell_type", **kwargs)
    np.testing.assert_array_equal(adata.obs["signed_distance_um"],
                                  expected.obs["signed_distance_um"])


def test_a_reused_result_cannot_change_what_the_memo_holds(calls):
    adata = _adata()
    mn.tl.compartments(adata, "cell_type")
    (key,) = list(COMPARTMENT_MEMO._entries)
    first, second = COMPARTMENT_MEMO.get(key), COMPARTMENT_MEMO.get(key)
    assert first is not None and second is not None
    first.warnings.append("a warning added by a caller")
    assert "a warning added by a caller" not in second.warnings
    with pytest.raises(ValueError, match="read-only"):
        first.signed_distance_um[0] = 0.0


def test_the_memo_holds_at_most_max_cells_least_recently_used_first():
    memo = CompartmentMemo(max_cells=5000)
    config = Config()
    tables = [simulate_sample(f"s{i}", n_cells=2000, seed=i, n_lesions=1).cells
              for i in range(3)]
    from metaniche.sample import build_context
    keys = []
    for cells in tables:
        key = memo.key(cells, config)
        memo.put(key, build_context(str(cells["sample"].iloc[0]), cells, config).compartments,
                 len(cells))
        keys.append(key)
    assert len(set(keys)) == 3
    assert memo.get(keys[0]) is None             # evicted: 6000 cells > 5000
    assert memo.get(keys[1]) is not None and memo.get(keys[2]) is not None
    memo.put(b"big", memo.get(keys[1]), 6000)    # larger than the whole memo: not stored
    assert memo.get(b"big") is None
