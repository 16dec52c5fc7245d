"""Whole-curve group test: pointwise F against scipy, size over null cohorts, power on a
difference that a curve-mean statistic misses, grids and patient averaging."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from metaniche.cohort.curves import (
    _integrated_f,
    common_grid_curves,
    curve_anova_permutation,
    curve_group_table,
)

RADII = np.linspace(0.0, 60.0, 31)


def _curves(rng, n, shift=None):
    """Smooth random curves with radius-dependent spread (as L(r) − r has)."""
    basis = np.array([np.sin((j + 1) * np.pi * RADII / 60.0) for j in range(4)])
    x = rng.normal(size=(n, 4)) @ basis * (1 + RADII / 30) + rng.normal(0, 0.3, (n, len(RADII)))
    if shift is not None:
        x = x + shift
    return x


def test_integrated_f_is_trapezoid_of_scipy_f_oneway():
    rng = np.random.default_rng(0)
    x = _curves(rng, 18)
    codes = np.repeat([0, 1, 2], 6)
    onehot = (codes[None, None, :] == np.arange(3)[None, :, None]).astype(float)
    expected = stats.f_oneway(x[codes == 0], x[codes == 1], x[codes == 2], axis=0).statistic
    value = _integrated_f(x, onehot, RADII)[0]
    assert value == pytest.approx(np.trapezoid(expected, RADII) / 60.0, rel=1e-10)


def test_size_over_null_cohorts():
    rejected = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        x = _curves(rng, 20)
        labels = np.repeat(["a", "b"], 10)
        _, p = curve_anova_permutation(x, labels, RADII, n_permutations=99, seed=seed)
        rejected.append(p <= 0.05)
    assert 0.02 <= np.mean(rejected) <= 0.09


def test_finds_a_sign_changing_difference_the_curve_mean_misses():
    rng = np.random.default_rng(11)
    # group b: +1.5 at small radii, −1.5 at large ones; the mean over r is exactly 0
    shift = 1.5 * np.cos(np.pi * RADII / 60.0)
    shift -= np.trapezoid(shift, RADII) / 60.0
    x = np.vstack([_curves(rng, 12), _curves(rng, 12, shift)])
    labels = np.repeat(["a", "b"], 12)
    _, p = curve_anova_permutation(x, labels, RADII, n_permutations=999, seed=1)
    assert p < 0.01
    means = np.trapezoid(x, RADII, axis=1) / 60.0   # the integrated-L scalar
    assert stats.ttest_ind(means[:12], means[12:]).pvalue > 0.05


def test_common_grid_and_patient_means():
    rows = []
    for s, top in enumerate([50.0, 60.0, 55.0, 70.0]):
        r = np.linspace(0, top, 20 + s)
        rows.append(pd.DataFrame({"sample": f"s{s}", "type_a": "A", "type_b": "B",
                                  "r_um": r, "l_minus_r_um": 2 * r + s}))
    table = pd.concat(rows)
    matrix = common_grid_curves(table, n_grid=11)
    np.testing.assert_allclose(matrix.columns, np.linspace(0, 50, 11))
    np.testing.assert_allclose(matrix.loc["s2"], 2 * np.linspace(0, 50, 11) + 2)
    # several samples per patient: averaged first, the unit is the patient
    big = []
    rng = np.random.default_rng(4)
    for s in range(24):
        big.append(pd.DataFrame({"sample": f"s{s}", "type_a": "A", "type_b": "B",
                                 "r_um": RADII, "l_minus_r_um": _curves(rng, 1)[0]}))
    big = pd.concat(big)
    patient = pd.Series([f"p{s // 3}" for s in range(24)], index=[f"s{s}" for s in range(24)])
    labels = pd.Series(["x" if s // 3 % 2 else "y" for s in range(24)], index=patient.index)
    result = curve_group_table(big, labels, patient, n_permutations=99, min_group=3)
    (row,) = result.to_dict("records")
    assert row["unit"] == "patient" and row["n"] == 8 and row["feature"] == "ripley_l_curve.A.B"
    assert 0 < row["p"] <= 1 and row["r_max_um"] == pytest.approx(60.0)


def test_analyse_cohort_reports_curve_rows():
    from metaniche.cohort import analyse_cohort
    from metaniche.config import ClinicalColumns, CohortParams, Config

    rng = np.random.default_rng(8)
    samples = [f"s{s}" for s in range(16)]
    shift = 2.0 * np.cos(np.pi * RADII / 60.0)
    curves = pd.concat([pd.DataFrame({
        "sample": name, "type_a": "A", "type_b": "B", "r_um": RADII,
        "l_minus_r_um": _curves(rng, 1, shift if s % 2 else None)[0]})
        for s, name in enumerate(samples)])
    features = pd.DataFrame({"sample": samples, "density.all.A": rng.normal(size=16)})
    clinical = pd.DataFrame({"sample": samples,
                             "response": ["R" if s % 2 else "NR" for s in range(16)]})
    config = Config(clinical=ClinicalColumns(responder_values=("R",)),
                    cohort=CohortParams(analyses=("response",), curve_permutations=199))
    table = analyse_cohort(features, clinical, config, ripley_curves=curves).association
    row = table[table["test"] == "curve_permutation"].iloc[0]
    assert row["feature"] == "ripley_l_curve.A.B" and row["outcome"] == "response"
    assert row["p"] <= 0.01 and row["n"] == 16 and row["unit"] == "sample"
    assert 0 < row["q"] <= 1
