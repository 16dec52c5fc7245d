"""Remodeling simulator: truth is exact, programs move their quantity, and the cohort step
recovers a planted change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from metaniche.cohort.run import analyse_cohort
from metaniche.cohort.treatment import paired_changes
from metaniche.errors import ConfigError
from metaniche.studies.agreement import slide_features
from metaniche.studies.power import study_config
from metaniche.studies.remodel import (
    PROGRAMS,
    RemodelParams,
    simulate_patient,
    simulate_remodel_cohort,
    true_density,
)

ALL_RESPOND = dict(response_inflamed=1.0, response_excluded=1.0, response_desert=1.0)


def test_effect_one_is_no_change_and_livers_are_shared_across_effects():
    params = RemodelParams(n_cells=2000)
    pre1, post1, truth1, _ = simulate_patient("P1", "cd8_core_infiltration", 1.0, params, 5)
    pre2, _, truth2, _ = simulate_patient("P1", "cd8_core_infiltration", 2.0, params, 5)
    pd.testing.assert_frame_equal(pre1.cells, pre2.cells)       # common random numbers
    np.testing.assert_array_equal(post1.cells[["x", "y"]], pre1.cells[["x", "y"]])
    assert truth1["patient_fold"] == 1.0 and truth1["shift_um"] == 0.0
    assert truth1["responder"] == truth2["responder"]
    with pytest.raises(ValueError, match="`program` must be one of"):
        simulate_patient("P1", "bogus", 1.0, params)
    with pytest.raises(ConfigError, match=r"`RemodelParams\.n_cells` must be an integer >= 2000"):
        RemodelParams(n_cells=10)


def test_slides_without_markers_have_the_same_cells_types_and_truth():
    from metaniche.simulate import MARKERS

    params = RemodelParams(n_cells=2000, shrinkage_um=50.0, **ALL_RESPOND)
    full = simulate_patient("P1", "cd8_core_infiltration", 1.5, params, 3)
    bare = simulate_patient("P1", "cd8_core_infiltration", 1.5, params, 3, markers=False)
    for with_markers, without in zip(full[:2], bare[:2], strict=True):
        assert not set(MARKERS) & set(without.cells.columns)
        pd.testing.assert_frame_equal(with_markers.cells.drop(columns=list(MARKERS)),
                                      without.cells)
        pd.testing.assert_frame_equal(with_markers.truth, without.truth)
    assert full[2] == bare[2]
    pd.testing.assert_frame_equal(full[3], bare[3])


def test_truth_densities_and_shrunk_geometry_are_exact():
    params = RemodelParams(n_cells=4000, shrinkage_um=40.0, **ALL_RESPOND)
    pre, post, truth, lesions = simulate_patient("P1", "spp1_macrophage_loss", 0.5, params, 2)
    assert truth["responder"] and truth["shrinkage_um"] == 40.0
    # the program's truth is the exact count over the analytic area
    core = pre.truth["compartment"].to_numpy() == "border"
    count = np.sum(core & (pre.cells["cell_type"] == "GPNMB_macrophage").to_numpy())
    border_area = shapely.difference(
        shapely.union_all([shapely.Polygon(p.exterior) for p in pre.lesions]).buffer(
            100, quad_segs=64),
        shapely.union_all([shapely.Polygon(p.exterior) for p in pre.lesions]).buffer(
            -100, quad_segs=64)).intersection(pre.tissue).area / 1e6
    assert truth["true_pre"] == pytest.approx(count / border_area, rel=1e-9)
    assert truth["true_pre"] == true_density(pre, "GPNMB_macrophage", "border")
    # erosion by s: inside the eroded lesion, distance to the new edge = old distance - s
    before = pre.truth["signed_distance_um"].to_numpy()
    after = post.truth["signed_distance_um"].to_numpy()
    deep = before < -60.0
    np.testing.assert_allclose(after[deep], before[deep] + 40.0, atol=0.05)
    assert (lesions["area_post_mm2"] < lesions["area_pre_mm2"]).all()
    assert ((before >= 0) == (after >= 0))[before >= 0].all()   # outside stays outside


@pytest.mark.parametrize("program, effect, extra", [
    ("cd8_core_infiltration", 2.0, {}),
    ("spp1_macrophage_loss", 0.4, {}),
    ("tls_intratumoral", 3.0, {}),
    ("periphery_restriction", 0.3, {"response_inflamed": 0.0, "response_excluded": 0.0,
                                    "response_desert": 0.0}),
    ("size_exclusion", 4.0, {}),
])
def test_each_program_moves_its_quantity_in_the_planted_direction(program, effect, extra):
    params = RemodelParams(n_cells=4000, inflamed_weight=1.0, excluded_weight=0.0,
                           desert_weight=0.0, **{**ALL_RESPOND, **extra})
    cohort = simulate_remodel_cohort(8, program, effect, params, seed=1)
    truth = cohort.truth
    assert truth["affected"].all()
    pre, post = truth["true_pre"].sum(), truth["true_post"].sum()
    if effect > 1 and program != "size_exclusion":
        assert post > pre * (1 + 0.4 * (effect - 1)) or program == "tls_intratumoral"
    if program == "tls_intratumoral":
        assert cohort.lesions["n_tls_intratumoral"].sum() > 0 and post > 1.5 * pre
    if effect < 1 or program == "size_exclusion":
        assert post < pre * 0.8


def test_planted_core_cd8_rise_is_recovered_by_the_cohort_step():
    """40 patients, every one a responder with a 1.5x core CD8 rise (between-patient and
    between-lesion variability on): the cohort step's paired test finds the rise, and the
    planted fold lies in the patient-bootstrap interval of the measured fold."""
    params = RemodelParams(n_cells=4000, inflamed_weight=1.0, excluded_weight=0.0,
                           desert_weight=0.0, **ALL_RESPOND)
    cohort = simulate_remodel_cohort(40, "cd8_core_infiltration", 1.5, params, seed=3)
    config = study_config("cd8_core_infiltration")
    wanted = ["density.core.CD8_T", "density.core.Macrophage"]
    rows = []
    for slide in cohort.samples:
        values = slide_features(slide.cells, config)
        rows.append({"sample": slide.name, "patient": slide.name.split("_")[0],
                     **{name: values[name] for name in wanted}})
    features = pd.DataFrame(rows)
    result = analyse_cohort(features, cohort.clinical, config)
    rows = result.association.set_index(["feature", "outcome"])
    cd8 = rows.loc[("density.core.CD8_T", "treatment")]
    assert cd8["p"] < 1e-4 and cd8["effect"] > 0.5
    assert rows.loc[("density.core.Macrophage", "treatment"), "p"] > 0.01  # not planted
    values = features.set_index("sample")
    clinical = cohort.clinical.set_index("sample")
    before, after = paired_changes(values[["density.core.CD8_T"]], clinical["patient"],
                                   clinical["timepoint"], "pre", "post")
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(before), (2000, len(before)))
    b = before["density.core.CD8_T"].to_numpy()[picks].mean(1)
    a = after["density.core.CD8_T"].to_numpy()[picks].mean(1)
    low, high = np.quantile(a / b, [0.025, 0.975])
    assert low < 1.5 < high and low > 1.0
    assert cd8["fold_change"] == pytest.approx(after.mean().iloc[0] / before.mean().iloc[0])
    # the truth table agrees: the realised patient folds centre on the planted one
    assert cohort.truth["patient_fold"].mean() == pytest.approx(1.5, rel=0.05)
    assert set(PROGRAMS) >= {"cd8_core_infiltration"}


def test_cli_simulate_program_writes_pre_post_cohort(tmp_path):
    from metaniche.cli import main

    out = tmp_path / "sim"
    with pytest.raises(SystemExit) as done:
        main(["simulate", "--out", str(out), "--samples", "3", "--cells", "2000",
              "--program", "tls_intratumoral", "--effect", "3", "--seed", "4"])
    assert (done.value.code or 0) == 0
    clinical = pd.read_csv(out / "clinical.csv")
    assert list(clinical.columns) == ["sample", "patient", "timepoint", "response"]
    assert clinical["timepoint"].tolist() == ["pre", "post"] * 3
    truth = pd.read_csv(out / "truth" / "remodel_patients.csv")
    assert truth["patient"].tolist() == ["P01", "P02", "P03"]
    for sample in clinical["sample"]:
        cells = pd.read_parquet(out / "cells" / f"{sample}.parquet")
        assert cells["sample"].eq(sample).all()
    expected = simulate_remodel_cohort(3, "tls_intratumoral", 3.0,
                                       RemodelParams(n_cells=2000), seed=4)
    pd.testing.assert_frame_equal(truth, expected.truth, check_dtype=False)
