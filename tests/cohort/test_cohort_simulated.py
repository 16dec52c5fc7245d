"""Cohort analyses recover the simulator's planted outcomes and stay calibrated under the null."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from metaniche.cohort import analyse_cohort
from metaniche.cohort.prediction import nested_cv_prediction
from metaniche.config import CellTypeRoles, CohortParams, Config
from metaniche.sample import analyse_sample
from metaniche.simulate import IMMUNE_TYPES, simulate_cohort

#: Measurements of the planted survival quantity (true CD8_T density of the tumour core):
#: the density itself, the effector density (an exact copy, dropped as duplicate) and the
#: proportion (density / cell density, which the simulator's lattice holds nearly constant).
CORE_CD8 = {"density.core.CD8_T", "effector_density.core", "proportion.core.CD8_T"}
#: Response is planted on the inflamed phenotype, which is decided by core CD8 density.
INFLAMED = CORE_CD8 | {"phenotype.inflamed", "effector_core_border_ratio"}


@pytest.fixture(scope="module")
def cohort():
    """45 simulated samples, all per-sample features (~770 after the filters).

    Planted: survival HR exp(-1.5) per SD of core CD8_T density; P(response) 0.95 for
    inflamed samples, 0.05 for the others. The simulator's default response (0.85 / 0.15) is
    too weak for this size: BH over ~770 features needs p <= 0.05 / 770 ≈ 6.5e-5 at rank
    one, and with 15 inflamed samples of 45 the true phenotype reaches that in ~80% of seeds
    (median p 4e-6). Seed 1 drew p = 2e-4 for it, and 7e-4 for the measured indicator (one
    desert sample called inflamed), so q ≈ 0.23 behind a chance feature. At 0.95 / 0.05 the
    true phenotype reaches it in all of 200 seeds tried (median p 2e-9).
    """
    samples, clinical = simulate_cohort(n_samples=45, n_cells=2000, seed=1, os_log_hr=1.5,
                                        response_rates=(0.95, 0.05))
    config = Config(cell_types=CellTypeRoles(tumor=("Tumor",), immune=IMMUNE_TYPES))
    rows = [{"sample": s.name, **analyse_sample(s.cells, config).features} for s in samples]
    return pd.DataFrame(rows), clinical, config


def test_planted_outcome_features_rank_first(cohort):
    features, clinical, config = cohort
    config = replace(config, cohort=CohortParams(analyses=("response", "survival")))
    table = analyse_cohort(features, clinical, config).association
    cox = table[table["test"] == "cox"].sort_values("p")
    assert cox["feature"].iloc[0] in CORE_CD8
    planted = cox.set_index("feature").loc["density.core.CD8_T"]
    assert planted["q"] < 0.05 and planted["effect"] < 1  # more CD8 in core, lower hazard
    # Response is planted on the inflamed phenotype: its measurements lead and are found
    # after BH over all features.
    response = table[table["test"] == "mann_whitney"].sort_values("p").reset_index()
    assert response["feature"].iloc[0] in INFLAMED and response["q"].iloc[0] < 0.05
    assert len(set(response["feature"].head(3)) & INFLAMED) >= 2
    inflamed = response.set_index("feature").loc["phenotype.inflamed"]
    assert inflamed["q"] < 0.05 and inflamed["effect"] > 0.5


def test_null_outcomes_keep_false_discoveries_at_most_ten_percent(cohort):
    features, clinical, config = cohort
    # A fixed matrix: the composition families (fast enough for 50 permutations).
    keep = [c for c in features.columns if c.split(".")[0] in
            {"sample", "density", "proportion", "immune_density", "effector_density",
             "effector_core_border_ratio", "phenotype"}]
    config = replace(config, cohort=CohortParams(analyses=("response",)))
    fractions = []
    for seed in range(50):
        rng = np.random.default_rng(seed)
        shuffled = clinical.assign(response=rng.permutation(clinical["response"].to_numpy()))
        table = analyse_cohort(features[keep], shuffled, config).association
        fractions.append(float((table["q"] < 0.1).mean()))
    assert np.mean(fractions) <= 0.10


def test_nested_cv_on_pure_noise_gives_chance_auc():
    rng = np.random.default_rng(7)
    n = 120
    values = pd.DataFrame(rng.normal(size=(n, 40)),
                          columns=[f"noise.{i}" for i in range(37)]
                          + [f"proportion.all.T{i}" for i in range(3)])
    label = pd.Series((rng.random(n) < 0.4).astype(float))
    params = CohortParams(n_repeats=2, n_bootstrap=200)
    result = nested_cv_prediction(values, label, params)
    assert abs(result["spatial"]["auc"] - 0.5) <= 0.1
    assert result["baseline"]["n_features"] == 3
    again = nested_cv_prediction(values, label, params)
    assert again["spatial"] == result["spatial"]  # seeded and deterministic


def test_nested_cv_finds_a_planted_predictor():
    rng = np.random.default_rng(8)
    n = 100
    label = (rng.random(n) < 0.5).astype(float)
    values = pd.DataFrame(rng.normal(size=(n, 10)), columns=[f"f{i}" for i in range(10)])
    values["f0"] += 2.0 * label  # separation d = 2 -> population AUC Φ(2/√2) ≈ 0.92
    result = nested_cv_prediction(values, pd.Series(label),
                                  CohortParams(n_repeats=1, n_bootstrap=200))
    # nine noise features cost some AUC; chance would be 0.5 ± 0.06
    assert result["spatial"]["auc"] > 0.75
    assert result["spatial"]["ci_low"] < result["spatial"]["auc"] < result["spatial"]["ci_high"]
    assert result["baseline"] is None and result["difference"] is None


def test_paired_pre_post_design_detects_planted_change():
    rng = np.random.default_rng(9)
    n = 16
    pre = rng.normal(100, 10, n)
    responder = np.arange(n) < 8
    post = pre + np.where(responder, 30.0, 0.0) + rng.normal(0, 5, n)
    patients = [f"P{i}" for i in range(n)]
    features = pd.DataFrame({"sample": [f"{p}_{t}" for t in ("pre", "post") for p in patients],
                             "density.border.CD8_T": np.r_[pre, post],
                             "proportion.all.Tumor": rng.random(2 * n)})
    clinical = pd.DataFrame({"sample": features["sample"], "patient": patients * 2,
                             "timepoint": ["pre"] * n + ["post"] * n,
                             "response": np.tile(np.where(responder, "R", "NR"), 2)})
    config = Config(cohort=CohortParams(analyses=("treatment",)))
    config = replace(config, clinical=replace(config.clinical, responder_values=("R",)))
    table = analyse_cohort(features, clinical, config).association.set_index(
        ["outcome", "feature"])
    change = table.loc[("treatment", "density.border.CD8_T")]
    assert change["effect"] > 0 and change["p"] < 0.05 and change["region"] == "border"
    interaction = table.loc[("treatment_x_response", "density.border.CD8_T")]
    assert interaction["effect"] == 1.0  # every responder's change exceeds every other's


def test_simulated_response_rates_plant_response_on_the_inflamed_phenotype():
    samples, clinical = simulate_cohort(n_samples=6, n_cells=2000, seed=2,
                                        response_rates=(1.0, 0.0))
    inflamed = [s.phenotype == "inflamed" for s in samples]
    assert (clinical["response"] == "responder").tolist() == inflamed
    _, default = simulate_cohort(n_samples=6, n_cells=2000, seed=2)
    # only the response column depends on the rates; survival draws are unchanged
    pd.testing.assert_frame_equal(default.drop(columns="response"),
                                  clinical.drop(columns="response"))
