"""States on real data: the inForm export of phenoptr (PDL1 and PD1 intensities, tissue
category) and SPIAT's prostate Opal image (PDL-1 intensity, the export's phenotype calls); the
state tables agree with hand counts from the raw files at the same thresholds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metaniche import tables as T
from metaniche.config import CellTypeRoles, ColumnNames, Config, StateRule, StatesParams
from metaniche.io import read_samples
from metaniche.phenotype import auto_threshold
from metaniche.sample import build_context
from metaniche.stages import states as stage

PDL1 = "Entire Cell PDL1 (Opal 520) Mean"
PD1 = "Entire Cell PD1 (Opal 650) Mean"
PD1_THRESHOLD = 1.0


@pytest.fixture(scope="module")
def export(data_dir: Path) -> Path:
    path = data_dir / "formats" / "inform_phenoptr_cell_seg_data.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not found; the phenoptr inForm export is needed")
    return path


def test_state_table_matches_hand_counts(export: Path) -> None:
    states = StatesParams(rules={
        "PDL1_pos": StateRule(marker="PDL1"),                       # inForm column found
        "PD1_pos": StateRule(marker=PD1, threshold=PD1_THRESHOLD),
        "tumour_area": StateRule(column="tissue_category", positive=("Tumor",)),
        "PD1_CD8": StateRule(all_of=("PD1_pos",), cell_types=("CD8+",)),
    })
    config = Config(states=states, cell_types=CellTypeRoles(tumor=("CK+",)))
    (sample,) = read_samples([export], config)
    assert sample.error is None
    context = build_context(sample.name, sample.cells, config)
    output = stage.run(context)
    table = output.tables[T.STATES]
    thresholds = output.tables[T.STATE_THRESHOLDS].set_index("state")

    raw = pd.read_csv(export)
    assert np.array_equal(raw["Cell ID"].astype(str).to_numpy(),
                          sample.cells["cell_id"].astype(str).to_numpy())
    otsu = auto_threshold(raw[PDL1].to_numpy(np.float64), "otsu")
    assert thresholds.loc["PDL1_pos", "column"] == PDL1
    assert thresholds.loc["PDL1_pos", "threshold"] == pytest.approx(otsu)
    hand = pd.DataFrame({
        "cell_type": raw["Phenotype"], "compartment": context.compartments.compartment,
        "PDL1_pos": raw[PDL1] > otsu, "PD1_pos": raw[PD1] > PD1_THRESHOLD,
        "tumour_area": raw["Tissue Category"] == "Tumor",
    })
    hand["PD1_CD8"] = hand["PD1_pos"] & (hand["cell_type"] == "CD8+")
    whole = table[table["lesion_id"].isna()]
    checked = 0
    for state in ("PDL1_pos", "PD1_pos", "tumour_area", "PD1_CD8"):
        rows = whole[whole["state"] == state]
        for compartment, group in [("all", hand), *hand.groupby("compartment")]:
            counts = (group.groupby("cell_type")[state].agg(["size", "sum"])
                      .reindex(sorted(raw["Phenotype"].unique()), fill_value=0))
            got = rows[rows["compartment"] == compartment].set_index("cell_type")
            types = ["CD8+"] if state == "PD1_CD8" else list(counts.index)
            for label in types:
                assert got.loc[label, "n_cells"] == counts.loc[label, "size"], (state, label)
                assert got.loc[label, "n_positive"] == counts.loc[label, "sum"], (state, label)
                checked += 1
    assert set(hand["compartment"]) == {"core", "border", "adjacent"}
    assert checked == 3 * 5 * 4 + 4
    # the export's calls carried as states: PD-L1 is mostly on tumour (CK+) and CD68+ cells
    assert hand["PDL1_pos"].sum() > 100


def test_spiat_prostate_states_match_hand_counts(data_dir: Path) -> None:
    """SPIAT's prostate Opal image: PDL-1 intensity (automatic threshold) and the export's own
    phenotype calls (``phenotype_raw``) as states, against counts from the raw file."""
    path = data_dir / "cells" / "spiat_prostate_opal.cells.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    states = StatesParams(rules={
        "PDL1_pos": StateRule(marker="PDL-1", threshold="otsu"),
        "CD8_call": StateRule(column="phenotype_raw", positive=("CD3,CD8",)),
        "PDL1_tumour": StateRule(all_of=("PDL1_pos",), cell_types=("Tumour",)),
    })
    config = Config(um_per_unit=0.5, columns=ColumnNames(sample="sample_id"),
                    cell_types=CellTypeRoles(tumor=("Tumour",)), states=states)
    (sample,) = read_samples([path], config)
    assert sample.error is None
    context = build_context(sample.name, sample.cells, config)
    output = stage.run(context)
    raw = pd.read_csv(path)
    threshold = auto_threshold(raw["PDL-1"].to_numpy(np.float64), "otsu")
    assert output.tables[T.STATE_THRESHOLDS].set_index("state").loc[
        "PDL1_pos", "threshold"] == pytest.approx(threshold)
    hand = pd.DataFrame({"cell_type": raw["cell_type"],
                         "compartment": context.compartments.compartment,
                         "PDL1_pos": raw["PDL-1"] > threshold,
                         "CD8_call": raw["phenotype_raw"] == "CD3,CD8"})
    hand["PDL1_tumour"] = hand["PDL1_pos"] & (hand["cell_type"] == "Tumour")
    table = output.tables[T.STATES]
    whole = table[table["lesion_id"].isna()]
    for state in ("PDL1_pos", "CD8_call", "PDL1_tumour"):
        for compartment, group in [("all", hand), *hand.groupby("compartment")]:
            counts = (group.groupby("cell_type")[state].agg(["size", "sum"])
                      .reindex(sorted(raw["cell_type"].unique()), fill_value=0))
            got = whole[(whole["state"] == state)
                        & (whole["compartment"] == compartment)].set_index("cell_type")
            types = ["Tumour"] if state == "PDL1_tumour" else list(counts.index)
            assert sorted(got.index) == types
            for label in types:
                assert got.loc[label, "n_cells"] == counts.loc[label, "size"], (state, label)
                assert got.loc[label, "n_positive"] == counts.loc[label, "sum"], (state, label)
    # the call column agrees with the label it was made from: every T_cyto cell, nothing else
    calls = whole[(whole["state"] == "CD8_call") & (whole["compartment"] == "all")]
    assert calls.set_index("cell_type")["fraction"].to_dict()["T_cyto"] == 1.0
    assert calls["n_positive"].sum() == (raw["cell_type"] == "T_cyto").sum()
