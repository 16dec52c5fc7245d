"""Lesion size vs exclusion: planted slope with patient effects, GLS standard error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metaniche.cohort.lesion_size import _gls_slope_se, lesion_size_exclusion


def test_lesion_size_exclusion_recovers_a_planted_slope_with_patient_effects():
    rng = np.random.default_rng(5)
    patients = np.repeat([f"P{i}" for i in range(30)], 4)
    size = 10 ** rng.uniform(-2, 1, patients.size)
    patient_effect = dict(zip(np.unique(patients), rng.normal(0, 20, 30), strict=True))
    depth = -100 + 30 * np.log10(size) + np.array([patient_effect[p] for p in patients]) + (
        rng.normal(0, 5, patients.size))
    table = pd.DataFrame({"patient": patients, "area_mm2": size, "infiltration_depth_um": depth})
    result = lesion_size_exclusion(table).set_index("test")
    assert result.loc["mixedlm", "ci_low"] < 30 < result.loc["mixedlm", "ci_high"]
    assert result.loc["mixedlm", "p"] < 1e-6
    assert result.loc["spearman", "effect"] > 0.5
    single = lesion_size_exclusion(table.drop_duplicates("patient"))
    assert np.isnan(single.set_index("test").loc["mixedlm", "effect"])
    two = lesion_size_exclusion(table[table["patient"].isin(["P0", "P1"])])
    assert "needs >= 3 patients" in two.set_index("test").loc["mixedlm", "note"]


def test_gls_slope_se_is_the_ols_se_without_patient_variance_and_grows_with_it():
    rng = np.random.default_rng(2)
    data = pd.DataFrame({"patient": np.repeat(["a", "b", "c"], 5),
                         "log_size": rng.uniform(-2, 1, 15)})
    x = data["log_size"].to_numpy()
    closed_form = np.sqrt(0.3 / np.sum((x - x.mean()) ** 2))  # OLS: sqrt(s² / Sxx)
    assert _gls_slope_se(data, 0.0, 0.3) == pytest.approx(closed_form, rel=1e-12)
    assert _gls_slope_se(data, 0.5, 0.3) > 0


def test_constant_outcome_gives_nan_spearman_with_a_note_and_no_warning():
    import warnings

    table = pd.DataFrame({"patient": ["a", "a", "b", "c"], "area_mm2": [0.1, 0.2, 0.3, 0.4],
                          "infiltration_depth_um": [0.0, 0.0, 0.0, 0.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = lesion_size_exclusion(table).set_index("test")
    assert np.isnan(result.loc["spearman", "effect"])
    assert result.loc["spearman", "note"] == "constant size or outcome"
