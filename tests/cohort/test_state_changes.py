"""Cohort contact effects: closed forms of the mixed model, the response interaction, and a run."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from metaniche.cohort.mixed import mixed_model_groups
from metaniche.cohort.state_changes import (
    COHORT_COLUMNS,
    RESPONSE_TERM,
    cohort_state_changes,
)
from metaniche.config import ContactParams, load_config
from metaniche.io.clinical import Groups
from metaniche.pipeline import run
from metaniche.simulate import CONTACT_EFFECT, CONTACT_RADIUS_UM, simulate_sample, write_cohort

PAIR = {"cell_type": "CD8_T", "marker": "GZMB", "partner_type": "Macrophage",
        "exposure": "count_within_20um"}


def _table(effects: np.ndarray, samples: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"sample": samples, **PAIR, "effect": effects})


def test_balanced_mixed_model_is_the_t_test_of_patient_means() -> None:
    """Balanced one-way random effects: REML μ̂ is the grand mean and its t is the one-sample
    t of the patient means on P − 1 df (when the patient variance estimate is positive)."""
    rng = np.random.default_rng(1)
    n_patients, per = 8, 3
    patient_effect = rng.normal(0, 0.4, n_patients)
    effects = np.repeat(-0.3 + patient_effect, per) + rng.normal(0, 0.1, n_patients * per)
    samples = [f"s{i}" for i in range(n_patients * per)]
    patients = pd.Series(np.repeat([f"p{i}" for i in range(n_patients)], per), index=samples)
    out = cohort_state_changes(_table(effects, samples), patients)
    row = out.iloc[0]
    means = effects.reshape(n_patients, per).mean(axis=1)
    expected = stats.ttest_1samp(means, 0.0)
    assert row["model"] == "mixed_model" and row["df"] == n_patients - 1
    assert row["effect"] == pytest.approx(effects.mean(), rel=1e-6)
    assert row["statistic"] == pytest.approx(expected.statistic, rel=1e-3)
    assert row["p"] == pytest.approx(expected.pvalue, rel=1e-2)
    assert list(out.columns) == COHORT_COLUMNS


def test_one_sample_per_patient_is_the_one_sample_t_test() -> None:
    effects = np.array([-0.5, -0.2, -0.4, 0.1, -0.6])
    samples = [f"s{i}" for i in range(5)]
    out = cohort_state_changes(_table(effects, samples), pd.Series(dtype=object))
    row = out.iloc[0]
    expected = stats.ttest_1samp(effects, 0.0)
    assert row["model"] == "t_test"
    assert row["statistic"] == pytest.approx(expected.statistic)
    assert row["p"] == pytest.approx(expected.pvalue)
    assert row["q"] == pytest.approx(expected.pvalue)      # one test: q = p
    low, high = stats.t.interval(0.95, 4, loc=effects.mean(), scale=stats.sem(effects))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))


def test_too_few_samples_give_nan_and_the_interaction_reuses_the_mixed_model() -> None:
    rng = np.random.default_rng(4)
    samples = [f"s{i}" for i in range(12)]
    group = np.array(["NR", "R"] * 6, dtype=object)
    effects = np.where(group == "R", -0.6, 0.0) + rng.normal(0, 0.1, 12)
    table = pd.concat([_table(effects, samples),
                       _table(np.array([0.1, 0.2]), samples[:2]).assign(marker="CD8")])
    labels = pd.Series(group, index=samples)
    # two samples per patient (same group): the interaction is the mixed model
    patients = pd.Series([f"p{i % 6}" for i in range(12)], index=samples)
    out = cohort_state_changes(table, patients, Groups(labels, ("NR", "R")))
    contact = out[out["term"] == "contact"].set_index("marker")
    assert np.isnan(contact.loc["CD8", "p"]) and contact.loc["CD8", "n_samples"] == 2
    interaction = out[(out["term"] == RESPONSE_TERM) & (out["marker"] == "GZMB")].iloc[0]
    direct = mixed_model_groups(pd.DataFrame({"f": effects}, index=samples), labels,
                                ("NR", "R"), patients).iloc[0]
    assert interaction["model"] == "mixed_model"
    assert interaction["effect"] == pytest.approx(direct["effect"])
    assert interaction["p"] == pytest.approx(direct["p"])
    assert interaction["contrast"] == "R vs NR" and interaction["effect"] < 0
    assert interaction["p"] < 0.001


@pytest.mark.slow
def test_run_writes_the_cohort_table_with_the_planted_effect(tmp_path) -> None:
    """A three-patient cohort (two images each) with the planted contact effect, through
    ``metaniche run``: every sample finds it and the cohort mean is near the truth."""
    samples = [simulate_sample(f"S{i}", n_cells=10_000, seed=10 + i, phenotype="inflamed",
                               contact="effect") for i in range(6)]
    clinical = pd.DataFrame({"sample": [s.name for s in samples],
                             "patient": [f"P{i // 2}" for i in range(6)],
                             "response": ["responder"] * 2 + ["non-responder"] * 4})
    folder = write_cohort(tmp_path / "sim", samples, clinical)
    config = load_config(folder / "config.toml")
    config = dataclasses.replace(config, contact=ContactParams(
        markers=("GZMB",), cell_types=("CD8_T",), partner_types=("Macrophage", "Tumor"),
        radius_um=CONTACT_RADIUS_UM, n_permutations=19))
    out = tmp_path / "out"
    run([folder / "cells"], out, config, clinical=folder / "clinical.csv")
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["state_changes"]["status"] == "ok", manifest["state_changes"]
    per_sample = pd.read_parquet(out / "tables" / "state_changes.parquet")
    planted = per_sample[per_sample["partner_type"] == "Macrophage"]
    assert len(planted) == 6 and (planted["p"] < 0.001).all()
    assert np.allclose(planted["p_perm"], 0.05)   # no draw of 19 as extreme
    cohort = pd.read_parquet(out / "cohort" / "state_changes.parquet")
    row = cohort[(cohort["term"] == "contact") & (cohort["partner_type"] == "Macrophage")]
    row = row.iloc[0]
    assert row["model"] == "mixed_model" and row["n_patients"] == 3 and row["df"] == 2
    assert abs(row["effect"] - CONTACT_EFFECT) < 0.1 and row["p"] < 0.01
    assert set(cohort["term"]) == {"contact", RESPONSE_TERM}
    assert (out / "report" / "index.html").is_file()


def test_only_measured_pairs_get_rows() -> None:
    """Pairs are those some sample measured: CD8_T/GZMB and B/CD69 give two contact rows,
    not the four combinations of their cell types and markers; a measured pair whose
    effects are all NaN keeps its (NaN) row."""
    rng = np.random.default_rng(4)
    samples = [f"s{i}" for i in range(6)]
    parts = [_table(rng.normal(1.0, 0.2, 6), samples),
             _table(rng.normal(0.0, 0.2, 6), samples).assign(cell_type="B", marker="CD69"),
             _table(np.full(6, np.nan), samples).assign(cell_type="B", marker="PD1")]
    out = cohort_state_changes(pd.concat(parts, ignore_index=True), pd.Series(dtype=object))
    assert len(out) == 3 and set(out["term"]) == {"contact"}
    assert list(zip(out["cell_type"], out["marker"], strict=True)) == [
        ("B", "CD69"), ("B", "PD1"), ("CD8_T", "GZMB")]
    assert out["p"].isna().tolist() == [False, True, False]


def test_interaction_without_repeated_patients_is_students_t_test_of_the_z_scores() -> None:
    """One sample per patient: the patient intercept cannot be separated from the residual,
    so the interaction is z ~ group by least squares, Student's two-sample t-test."""
    rng = np.random.default_rng(6)
    samples = [f"s{i}" for i in range(14)]
    group = np.array(["NR", "R"] * 7, dtype=object)
    effects = np.where(group == "R", -0.5, 0.0) + rng.normal(0, 0.3, 14)
    effects[3] = np.nan                         # a sample without an effect is left out
    labels = pd.Series(group, index=samples)
    out = cohort_state_changes(_table(effects, samples), pd.Series(samples, index=samples),
                               Groups(labels, ("NR", "R")))
    row = out[out["term"] == RESPONSE_TERM].iloc[0]
    keep = np.isfinite(effects)
    z = (effects[keep] - effects[keep].mean()) / effects[keep].std()
    responder = group[keep] == "R"
    test = stats.ttest_ind(z[responder], z[~responder], equal_var=True)
    assert row["model"] == "t_test" and row["contrast"] == "R vs NR"
    assert row["df"] == keep.sum() - 2 and row["n_samples"] == keep.sum()
    assert row["effect"] == pytest.approx(z[responder].mean() - z[~responder].mean())
    assert row["statistic"] == pytest.approx(test.statistic)
    assert row["p"] == pytest.approx(test.pvalue)
    half = stats.t.ppf(0.975, keep.sum() - 2) * row["effect"] / row["statistic"]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((row["effect"] - half,
                                                             row["effect"] + half))
