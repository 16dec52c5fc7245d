"""spicyR's count-weighted mixed model: weighted REML with Satterthwaite df, the count smooth,
and the cohort wiring (``[cohort] mixed_model_weights = "counts"``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from metaniche.cohort import analyse_cohort
from metaniche.cohort.count_weights import (
    _design,
    fit_count_smooth,
    pair_count_weights,
    spicyr_weights,
)
from metaniche.cohort.weighted_mixed import fit_weighted_mixed
from metaniche.config import ClinicalColumns, CohortParams, Config
from metaniche.errors import ConfigError, InputError


def _design_matrix(n_subjects, per_subject, rng, unbalanced=False):
    subject = np.repeat(np.arange(n_subjects), per_subject)
    group = (subject % 2).astype(float)
    keep = rng.random(len(subject)) > 0.3 if unbalanced else np.ones(len(subject), bool)
    x = np.column_stack([np.ones(len(subject)), group, rng.normal(size=len(subject))])
    return subject[keep], x[keep]


def test_unweighted_balanced_equals_statsmodels_and_closed_form_df():
    import statsmodels.api as sm

    rng = np.random.default_rng(1)
    subject = np.repeat(np.arange(20), 5)
    x = np.column_stack([np.ones(100), (subject % 2).astype(float)])
    y = 0.3 * x[:, 1] + rng.normal(0, 1, 20)[subject] + rng.normal(0, 1, 100)
    fit = fit_weighted_mixed(y, x, subject)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = sm.MixedLM(y, x, groups=subject).fit(reml=True)
    np.testing.assert_allclose(fit.coef, reference.fe_params, rtol=1e-6)
    np.testing.assert_allclose(fit.se, reference.bse_fe, rtol=1e-5)
    assert fit.subject_var == pytest.approx(float(np.asarray(reference.cov_re)[0, 0]), rel=1e-5)
    # a between-subject factor in a balanced design: Satterthwaite df = subjects − 2 exactly
    np.testing.assert_allclose(fit.df, 18.0, rtol=1e-5)


def _dense_reml(y, x, subject, w):
    """Independent dense REML: optimise the full REML deviance over (σ_b², σ²) with L-BFGS-B,
    V = σ² W⁻¹ + σ_b² ZZ' as a dense matrix; Satterthwaite df by central differences."""
    z = (subject[:, None] == np.unique(subject)[None, :]).astype(float)

    def parts(phi):
        v = np.diag(phi[1] / w) + phi[0] * z @ z.T
        vi = np.linalg.inv(v)
        xvx = x.T @ vi @ x
        beta = np.linalg.solve(xvx, x.T @ vi @ y)
        r = y - x @ beta
        deviance = (np.linalg.slogdet(v)[1] + np.linalg.slogdet(xvx)[1] + r @ vi @ r)
        return deviance, beta, np.linalg.inv(xvx)

    result = optimize.minimize(lambda p: parts(np.exp(p))[0], np.zeros(2), method="L-BFGS-B",
                               options={"ftol": 1e-15, "gtol": 1e-10})
    phi = np.exp(result.x)
    _, beta, cov = parts(phi)
    h = 1e-3 * phi
    hess = np.zeros((2, 2))
    for i in range(2):
        for j in range(2):
            e_i, e_j = np.eye(2)[i] * h[i], np.eye(2)[j] * h[j]
            hess[i, j] = (parts(phi + e_i + e_j)[0] - parts(phi + e_i - e_j)[0]
                          - parts(phi - e_i + e_j)[0] + parts(phi - e_i - e_j)[0]) / (
                4 * h[i] * h[j])
    grad = np.array([(np.diag(parts(phi + np.eye(2)[i] * h[i])[2])
                      - np.diag(parts(phi - np.eye(2)[i] * h[i])[2])) / (2 * h[i])
                     for i in range(2)])
    a = 2 * np.linalg.inv(hess)
    df = 2 * np.diag(cov) ** 2 / np.einsum("ak,ab,bk->k", grad, a, grad)
    return beta, np.sqrt(np.diag(cov)), df, phi


def test_weighted_fit_equals_dense_reml():
    rng = np.random.default_rng(7)
    subject, x = _design_matrix(15, 6, rng, unbalanced=True)
    w = rng.uniform(0.2, 3.0, len(subject))
    y = (x @ [1.0, 0.5, 0.2] + rng.normal(0, 0.8, 15)[subject]
         + rng.normal(0, 1, len(subject)) / np.sqrt(w))
    fit = fit_weighted_mixed(y, x, subject, w)
    beta, se, df, phi = _dense_reml(y, x, subject, w)
    np.testing.assert_allclose(fit.coef, beta, rtol=1e-5)
    np.testing.assert_allclose(fit.se, se, rtol=1e-4)
    np.testing.assert_allclose([fit.subject_var, fit.sigma2], phi, rtol=1e-4)
    np.testing.assert_allclose(fit.df, df, rtol=1e-3)
    # the weights' scale does not matter
    scaled = fit_weighted_mixed(y, x, subject, w / w.sum())
    np.testing.assert_allclose(scaled.coef, fit.coef, rtol=1e-7)
    np.testing.assert_allclose(scaled.p, fit.p, rtol=1e-5)


def test_weighted_model_holds_size_with_noisy_images():
    """Null cohorts (no group effect), images with few cells much noisier: the weighted test
    rejects at about the nominal 5 %."""
    rejected = []
    for seed in range(200):
        rng = np.random.default_rng(1000 + seed)
        subject = np.repeat(np.arange(24), 5)
        count = rng.integers(5, 400, len(subject)).astype(float)
        noise_sd = 20 / np.sqrt(count)
        y = rng.normal(0, 0.5, 24)[subject] + rng.normal(0, 1, len(subject)) * noise_sd
        x = np.column_stack([np.ones(len(y)), (subject % 3 == 0).astype(float)])
        fit = fit_weighted_mixed(y, x, subject, 1 / noise_sd**2)
        rejected.append(fit.p[1] < 0.05)
    assert 0.02 <= np.mean(rejected) <= 0.085


def test_count_smooth_recovers_an_interaction_surface():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0, 100, 3000), rng.uniform(0, 100, 3000)
    fitted = fit_count_smooth(a, b, np.zeros_like(a) + 1.0)
    # truth inside the model space: intercept + a tensor of two centred marginal functions
    coef = rng.normal(size=len(fitted.coef))
    truth = _design(a, b, fitted.knots, fitted.constraints) @ coef
    smooth = fit_count_smooth(a, b, truth + rng.normal(0, 0.05, len(a)))
    assert np.sqrt(np.mean((smooth.predict(a, b) - truth) ** 2)) < 0.03
    # main effects are excluded, as mgcv's ti excludes them: a function of a alone is flat
    flat = fit_count_smooth(a, b, a / 10 + rng.normal(0, 0.05, len(a)))
    assert np.ptp(flat.predict(np.linspace(0, 100, 11), np.full(11, 50.0))) < 1.0


def test_spicyr_weight_formula():
    fitted = np.array([4.0, 1.0, 0.0, 9.0])
    w = 1 / np.sqrt(fitted - 0.0 + 1)
    np.testing.assert_allclose(spicyr_weights(fitted), w / w.sum())


def _cohort(rng, n_patients=20, per_patient=4, shift=0.0, types=("A.x", "B")):
    rows = []
    for p in range(n_patients):
        for i in range(per_patient):
            counts = rng.integers(3, 300, len(types))
            n_cells = int(counts.sum() + 50)
            row = {"sample": f"p{p}_{i}", "patient": f"p{p}", "n_cells": n_cells}
            for t, c in zip(types, counts, strict=True):
                row[f"proportion.all.{t}"] = c / n_cells
            for a in types:
                for b in types:
                    row[f"ripley_l_mean.{a}.{b}"] = (shift * (p % 2) + rng.normal(0, 1)
                                                     + rng.normal(0, 5 / np.sqrt(counts[0])))
            row["density.all.A.x"] = rng.normal()
            rows.append(row)
    features = pd.DataFrame(rows)
    clinical = pd.DataFrame({"patient": [f"p{p}" for p in range(n_patients)],
                             "response": ["R" if p % 2 else "NR" for p in range(n_patients)]})
    return features, clinical


def test_cohort_counts_weighting_rows():
    features, clinical = _cohort(np.random.default_rng(5), shift=3.0)
    config = Config(clinical=ClinicalColumns(responder_values=("R",)),
                    cohort=CohortParams(analyses=("response",), mixed_model_weights="counts"))
    table = analyse_cohort(features, clinical, config).association
    mixed = table[table["test"] == "mixed_model"].set_index("feature")
    ripley = [f for f in mixed.index if f.startswith("ripley_l_mean.")]
    assert len(ripley) == 4   # dotted type names are parsed against proportion.all.<type>
    assert (mixed.loc[ripley, "weighting"] == "counts").all()
    assert (mixed.loc[ripley, "effect_name"] == "difference").all()
    assert mixed.loc["density.all.A.x", "weighting"] == "none"
    assert (mixed.loc[ripley, "p"] < 0.01).all()   # the planted shift of 3 is found
    # the rows are the weighted fit of the feature with pair_count_weights' weights
    images = features.set_index("sample")
    weights = pair_count_weights(images.drop(columns="patient"))
    name = "ripley_l_mean.A.x.B"
    x = np.column_stack([np.ones(len(images)),
                         (images["patient"].str[1:].astype(int) % 2).to_numpy(float)])
    fit = fit_weighted_mixed(images[name].to_numpy(), x, images["patient"].to_numpy(),
                             weights[name].to_numpy())
    assert mixed.loc[name, "effect"] == pytest.approx(fit.coef[1], rel=1e-9)
    assert mixed.loc[name, "p"] == pytest.approx(fit.p[1], rel=1e-6)


def test_counts_weighting_needs_the_counts():
    features, clinical = _cohort(np.random.default_rng(6))
    config = Config(clinical=ClinicalColumns(responder_values=("R",)),
                    cohort=CohortParams(analyses=("response",), mixed_model_weights="counts"))
    with pytest.raises(InputError, match=r"needs the cell counts of both types of "
                                         r"'ripley_l_mean\.A\.x\.A\.x'"):
        analyse_cohort(features.drop(columns="n_cells"), clinical, config)
    with pytest.raises(ConfigError, match=r"`CohortParams\.mixed_model_weights` must be one of "
                                          r"none, counts"):
        CohortParams(mixed_model_weights="gam")
