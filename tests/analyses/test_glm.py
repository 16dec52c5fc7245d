"""The batched log-link GLM against statsmodels (the reference implementation it follows)."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.genmod import families
from statsmodels.genmod.generalized_linear_model import GLM

from metaniche.analyses._glm import fit_log_glm
from metaniche.analyses.gradients import trend_test


@pytest.fixture
def rng():
    return np.random.default_rng(20261207)


def _profiles(rng, n_fits=40):
    """Random count profiles of 4-14 bins with planted slopes, some overdispersed, some
    with empty bins, padded into one batch."""
    width = 14
    y = np.zeros((n_fits, width))
    design = np.zeros((n_fits, width, 3))
    offset = np.zeros((n_fits, width))
    mask = np.zeros((n_fits, width), bool)
    for g in range(n_fits):
        k = int(rng.integers(4, width + 1))
        centre = np.linspace(-300, 300, k)
        area = rng.uniform(0.002, 0.05, k)
        rate = np.exp(rng.normal(5, 1) + rng.normal(0, 0.5) * np.abs(centre) / 100
                      + rng.normal(0, 0.7) * (centre > 0))
        mean = rate * area
        if g % 3 == 0:    # overdispersed (gamma-Poisson)
            mean = rng.gamma(2.0, mean / 2.0)
        y[g, :k] = rng.poisson(mean)
        design[g, :k] = np.column_stack([np.ones(k), np.abs(centre) / 100, centre > 0])
        offset[g, :k] = np.log(area)
        mask[g, :k] = True
    return y, design, offset, mask


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_batched_fits_match_statsmodels_glm(rng, alpha):
    y, design, offset, mask = _profiles(rng)
    fit = fit_log_glm(y, design, offset, mask, np.full(len(y), alpha))
    assert fit.converged.all()
    family = families.Poisson() if alpha == 0 else families.NegativeBinomial(alpha=alpha)
    for g in range(len(y)):
        k = mask[g]
        ref = GLM(y[g, k], design[g, k], family=family, offset=offset[g, k]).fit()
        np.testing.assert_allclose(fit.params[g], ref.params, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(fit.bse()[g], ref.bse, rtol=1e-5)
        np.testing.assert_allclose(fit.mu[g, k], ref.mu, rtol=1e-6)
        assert fit.pearson_chi2[g] == pytest.approx(ref.pearson_chi2, rel=1e-6)
        assert fit.df_resid[g] == ref.df_resid
        # statsmodels' scale="X2" fit iterates a step or two more (its deviance criterion is
        # divided by the scale), so its covariance is at slightly different weights: the
        # same standard errors to the convergence tolerance, not to rounding (except for a
        # coefficient running off to -inf, all counts on one side zero: its error grows with
        # every step)
        quasi = GLM(y[g, k], design[g, k], family=family, offset=offset[g, k]).fit(scale="X2")
        finite = np.abs(ref.params) < 10
        np.testing.assert_allclose(fit.bse(fit.pearson_chi2 / fit.df_resid)[g][finite],
                                   quasi.bse[finite], rtol=2e-4)


def _statsmodels_trend(centre, counts, area):
    """trend_test's model written with statsmodels, fit by fit (the previous implementation)."""
    use = area > 0
    centre, y, area = centre[use], counts[use].astype(float), area[use]
    columns = [np.ones_like(centre), np.abs(centre) / 100.0]
    two_sided = 0 < (centre > 0).sum() < len(centre)
    if two_sided:
        columns.append((centre > 0).astype(float))
    design, offset = np.column_stack(columns), np.log(area)
    fit = GLM(y, design, family=families.Poisson(), offset=offset).fit()
    dispersion = fit.pearson_chi2 / max(fit.df_resid, 1)
    model = "poisson"
    if dispersion > 1.5:
        alpha = np.sum((y - fit.mu) ** 2 - y) / np.sum(fit.mu**2)
        if alpha > 1e-6:
            fit = GLM(y, design, family=families.NegativeBinomial(alpha=alpha),
                      offset=offset).fit()
            model = "negative_binomial"
        else:
            fit = GLM(y, design, family=families.Poisson(), offset=offset).fit(scale="X2")
            model = "quasi_poisson"
    return fit.params[1], fit.bse[1], model, dispersion


def test_trend_test_matches_its_statsmodels_formulation(rng):
    seen = set()
    for g in range(60):
        k = int(rng.integers(4, 14))
        one_sided = g % 5 == 0
        centre = np.linspace(-300, -20 if one_sided else 300, k)
        area = rng.uniform(0.002, 0.05, k)
        area[rng.random(k) < 0.1] = 0.0                      # bins without area are dropped
        mean = np.exp(rng.normal(6, 1) + rng.normal(0, 0.5) * np.abs(centre) / 100) * area
        if g % 2:
            mean = rng.gamma(1.5, mean / 1.5)
        if g % 7 == 0:                                       # underdispersed-looking excess
            mean = mean * 0 + mean.mean()
        counts = rng.poisson(mean)
        if counts[area > 0].sum() < 10 or (area > 0).sum() < 3:
            continue
        mine = trend_test(centre, counts, area)
        slope, se, model, dispersion = _statsmodels_trend(centre, counts, area)
        assert mine.model == model
        seen.add(model)
        assert mine.slope_per_100um == pytest.approx(slope, rel=1e-6, abs=1e-9)
        assert mine.ci_high - mine.ci_low == pytest.approx(2 * 1.959964 * se, rel=1e-5)
        assert mine.dispersion == pytest.approx(dispersion, rel=1e-6)
    assert {"poisson", "negative_binomial"} <= seen


def test_a_fit_that_cannot_converge_gets_nan_and_leaves_the_others_alone(rng):
    y, design, offset, mask = _profiles(rng, n_fits=3)
    alone = fit_log_glm(y, design, offset, mask)
    offset = offset.copy()
    offset[1, 0] = np.inf                           # an infinite mean: this fit cannot converge
    fit = fit_log_glm(y, design, offset, mask)
    assert np.isnan(fit.params[1]).all() and not fit.converged[1]
    np.testing.assert_array_equal(fit.params[[0, 2]], alone.params[[0, 2]])
