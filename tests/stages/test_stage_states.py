"""Stage ``states`` on simulated samples with planted states, and through a whole run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from metaniche import tables as T
from metaniche.analyses.compartments import WHOLE
from metaniche.analyses.marker_trends import marker_trend_test
from metaniche.config import Config, StateRule, StatesParams
from metaniche.errors import InputError
from metaniche.features import feature_name
from metaniche.pipeline import run as run_pipeline
from metaniche.sample import build_context
from metaniche.simulate import STATE_THRESHOLD, simulate_cohort, simulate_sample, write_cohort
from metaniche.stages import states as stage

STATES = StatesParams(rules={
    "PDL1_pos": StateRule(marker="PDL1", cell_types=("Macrophage", "Tumor")),
    "GZMB_pos": StateRule(marker="GZMB", threshold=STATE_THRESHOLD, cell_types=("CD8_T",)),
    "PD1_pos": StateRule(marker="PD1", threshold="gmm", cell_types=("CD8_T",)),
    "GZMB_PD1": StateRule(all_of=("GZMB_pos", "PD1_pos")),
})
CONFIG = Config(states=STATES)


@pytest.fixture(scope="module")
def sample():
    return simulate_sample("s", n_cells=10_000, seed=2, phenotype="inflamed", n_lesions=1,
                           states=True)


@pytest.fixture(scope="module")
def output(sample):
    return stage.run(build_context("s", sample.cells, CONFIG))


def test_tables_features_and_cell_columns(sample, output):
    table = output.tables[T.STATES]
    assert {T.STATES, T.STATE_GRADIENTS, T.STATE_GRADIENT_STATS, T.STATE_THRESHOLDS,
            T.MARKER_GRADIENTS, T.MARKER_GRADIENT_STATS} == set(output.tables)
    for name in ("PDL1_pos", "GZMB_pos", "PD1_pos"):
        assert np.array_equal(output.cell_columns[f"state.{name}"],
                              sample.truth[name].to_numpy()), name
    whole = table[table["lesion_id"].isna()]
    for row in whole.itertuples(index=False):
        fraction = output.features[feature_name("state_fraction", row.compartment,
                                                row.cell_type, row.state,
                                                families=stage.FEATURES)]
        assert (math.isnan(fraction) and math.isnan(row.fraction)) or fraction == row.fraction
    assert set(table.loc[table["state"] == "GZMB_PD1", "cell_type"]) == {"CD8_T"}
    labels = sample.cells["cell_type"].to_numpy()
    for state, cell_type in (("PDL1_pos", "Macrophage"), ("GZMB_pos", "CD8_T")):
        row = whole[(whole["state"] == state) & (whole["cell_type"] == cell_type)
                    & (whole["compartment"] == WHOLE)].iloc[0]
        assert row["n_cells"] == (labels == cell_type).sum()
        assert row["n_positive"] == sample.truth[state].to_numpy()[labels == cell_type].sum()
    slope = output.features["state_gradient_slope.Macrophage.PDL1_pos"]
    assert slope < 0 and output.features["state_gradient_p.Macrophage.PDL1_pos"] < 0.05
    assert "ratio.core.CD8_T.Treg" in output.features
    for name in output.features:
        assert name.split(".")[0] in stage.FEATURES


def test_invariant_to_cell_order(sample, output):
    order = np.random.default_rng(0).permutation(len(sample.cells))
    again = stage.run(build_context("s", sample.cells.iloc[order].reset_index(drop=True),
                                    CONFIG))
    assert again.features.keys() == output.features.keys()
    for key, value in output.features.items():
        assert again.features[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key
    back = np.argsort(order)
    for column, values in output.cell_columns.items():
        assert np.array_equal(again.cell_columns[column][back], values)


def test_missing_marker_fails_the_sample_with_one_sentence(sample):
    config = Config(states=StatesParams(rules={"K_pos": StateRule(marker="Ki67")}))
    with pytest.raises(InputError, match=r"^sample 's': state 'K_pos' needs marker 'Ki67'"):
        stage.run(build_context("s", sample.cells, config))


def test_no_rules_gives_the_default_ratio_only(sample):
    out = stage.run(build_context("s", sample.cells, Config()))
    assert out.tables == {} and out.cell_columns == {}
    labels = sample.cells["cell_type"].to_numpy()
    context = build_context("s", sample.cells, Config())
    core = context.compartments.compartment == "core"
    n_a, n_b = ((labels == "CD8_T") & core).sum(), ((labels == "Treg") & core).sum()
    assert out.features["ratio.core.CD8_T.Treg"] == pytest.approx((n_a + 0.5) / (n_b + 0.5))
    declared = Config(states=StatesParams(ratios=(("Macrophage", "CD8_T"),), pseudocount=1.0))
    out = stage.run(build_context("s", sample.cells, declared))
    n_m = ((labels == "Macrophage") & core).sum()
    assert out.features["ratio.core.Macrophage.CD8_T"] == pytest.approx((n_m + 1) / (n_a + 1))
    assert not any(".Treg" in k for k in out.features)


def test_state_columns_and_tables_in_a_run(tmp_path):
    samples, clinical = simulate_cohort(n_samples=2, n_cells=2_500, seed=3, states=True)
    cohort = write_cohort(tmp_path / "cohort", samples, clinical)
    out = tmp_path / "run"
    result = run_pipeline([cohort / "cells"], out, CONFIG)
    assert result.failed == []
    table = pd.read_parquet(out / "tables" / "states.parquet")
    assert list(table.columns) == ["sample", "lesion_id", "compartment", "cell_type", "state",
                                   "n_cells", "n_positive", "fraction", "density_per_mm2"]
    assert set(table["sample"]) == {s.name for s in samples}
    features = pd.read_parquet(out / "features.parquet").set_index("sample")
    dictionary = pd.read_csv(out / "features_dictionary.csv").set_index("name")
    name = "state_density.border.Macrophage.PDL1_pos"
    assert dictionary.loc[name, "unit"] == "cells/mm²"
    for s in samples:
        cells = pd.read_parquet(out / "cells" / f"{s.name}.parquet")
        assert np.array_equal(cells["state.PDL1_pos"].to_numpy(),
                              s.truth["PDL1_pos"].to_numpy())
        row = table[(table["sample"] == s.name) & table["lesion_id"].isna()
                    & (table["compartment"] == "border") & (table["cell_type"] == "Macrophage")
                    & (table["state"] == "PDL1_pos")].iloc[0]
        assert features.loc[s.name, name] == pytest.approx(row["density_per_mm2"])
    # run level: lesion size vs state (2 samples, too few patients for the mixed model)
    assert result.manifest.steps["lesion_size_states"]["status"] == "ok"
    sizes = pd.read_parquet(out / "cohort" / "lesion_size_states.parquet")
    assert {("Tumor", "PDL1_pos"), ("CD8_T", "GZMB_pos")} <= set(
        zip(sizes["cell_type"], sizes["state"], strict=True))
    for name in (T.STATE_STRUCTURES, T.MARKER_GRADIENT_STATS):
        assert set(pd.read_parquet(out / "tables" / f"{name}.parquet")["sample"]) == {
            s.name for s in samples}


def test_labels_matching_nothing_are_warned(sample):
    config = Config(states=StatesParams(
        rules={"x": StateRule(marker="PDL1", cell_types=("Macrophages",))},
        ratios=(("CD8", "Tregs"),)))
    out = stage.run(build_context("s", sample.cells, config))
    assert len(out.warnings) == 2
    assert out.warnings[0].startswith("state 'x' is limited to cell types ['Macrophages']")
    assert "ratio ['CD8', 'Tregs']" in out.warnings[1]
    assert math.isnan(out.features["ratio.core.CD8.Tregs"])
    assert out.tables[T.STATES].empty


def test_marker_gradients_of_the_state_markers(sample, output):
    """PD-L1 intensity of macrophages is planted high at the edge (P(PD-L1+) = 0.1 + 0.6
    exp(-|d| / 80 µm)): its slope per 100 µm farther out is negative and significant, and
    each feature equals its table row. Rows: the state's types and all cells pooled."""
    stats = output.tables[T.MARKER_GRADIENT_STATS].set_index(["cell_type", "marker"])
    assert set(stats.index) == {("all", "PDL1"), ("Macrophage", "PDL1"), ("Tumor", "PDL1"),
                                ("all", "GZMB"), ("CD8_T", "GZMB"), ("all", "PD1"),
                                ("CD8_T", "PD1")}
    mac = stats.loc[("Macrophage", "PDL1")]
    assert mac["slope_per_100um"] < 0 and mac["p"] < 0.05
    # the estimator's target: the same fit to each band's expected mean intensity,
    # 0.5 + 4.5 P(PD-L1+ | d) averaged over the band's macrophages (planted mean levels)
    is_mac = sample.cells["cell_type"].to_numpy() == "Macrophage"
    d = build_context("s", sample.cells, CONFIG).compartments.signed_distance_um[is_mac]
    expected = 0.5 + 4.5 * (0.1 + 0.6 * np.exp(-np.abs(d) / 80.0))
    profile = output.tables[T.MARKER_GRADIENTS]
    profile = profile[(profile["cell_type"] == "Macrophage") & (profile["marker"] == "PDL1")]
    band = np.searchsorted(profile["bin_start_um"].to_numpy(), d, side="right") - 1
    inside = (band >= 0) & (d < profile["bin_end_um"].max())
    target_mean = (np.bincount(band[inside], weights=expected[inside], minlength=len(profile))
                   / np.maximum(np.bincount(band[inside], minlength=len(profile)), 1))
    centre = 0.5 * (profile["bin_start_um"] + profile["bin_end_um"]).to_numpy()
    window = np.abs(centre) <= 300
    target = marker_trend_test(centre[window], target_mean[window],
                               profile["n_cells"].to_numpy()[window])
    assert mac["ci_low"] <= target.slope_per_100um <= mac["ci_high"]
    for (cell_type, marker), row in stats.iterrows():
        for family, column in (("marker_gradient_slope", "slope_per_100um"),
                               ("marker_gradient_p", "p")):
            value = output.features[feature_name(family, cell_type, marker,
                                                 families=stage.FEATURES)]
            assert (math.isnan(value) and math.isnan(row[column])) or value == row[column]


def test_extra_gradient_markers_and_a_missing_one_is_warned(sample):
    config = Config(states=StatesParams(gradient_markers=("CD68", "NOPE")))
    out = stage.run(build_context("s", sample.cells, config))
    stats = out.tables[T.MARKER_GRADIENT_STATS]
    assert set(stats["marker"]) == {"CD68"}
    assert {"all", "Macrophage", "Tumor"} <= set(stats["cell_type"])
    assert any("gradient_markers names 'NOPE'" in w for w in out.warnings)
