"""The vectorised univariate Cox fit equals lifelines, an independent implementation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from metaniche.cohort.survival import cox_table, cox_univariate


def _lifelines_reference(z: np.ndarray, time: np.ndarray, event: np.ndarray) -> list[float]:
    """coef, se, LR p and rank-time PH p of one lifelines CoxPHFitter (Efron ties)."""
    from lifelines import CoxPHFitter
    from lifelines.statistics import proportional_hazard_test

    data = pd.DataFrame({"_z": z, "_time": time, "_event": event})
    # lifelines stops at a Newton decrement of 1e-7 (coef good to ~1e-5); tighten it so the
    # comparison measures the implementations, not lifelines' stopping rule.
    fit = CoxPHFitter().fit(data, "_time", "_event",
                            fit_options={"precision": 1e-14, "r_precision": 0.0})
    ph = proportional_hazard_test(fit, data, time_transform="rank")
    return [float(fit.params_["_z"]), float(fit.standard_errors_["_z"]),
            float(fit.log_likelihood_ratio_test().p_value), float(ph.summary.loc["_z", "p"])]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cox_table_equals_lifelines_with_ties_censoring_and_missing_values(seed):
    rng = np.random.default_rng(seed)
    n, p = 70, 8
    x = rng.normal(size=(n, p))
    x[:, 1] = np.round(x[:, 1])  # tied feature values
    x[:, 2] = rng.random(n) < 0.3  # a 0/1 feature
    hazard = np.exp(0.8 * x[:, 0] - 0.5 * x[:, 1])
    time = np.ceil(rng.exponential(8 / hazard))  # integer months: many tied times
    event = (rng.random(n) < 0.7).astype(float)
    x[rng.random((n, p)) < 0.12] = np.nan  # each feature its own missing units
    assert pd.Series(time[event == 1]).value_counts().max() >= 3  # tied events exist
    table = cox_table(pd.DataFrame(x, columns=[f"f{j}" for j in range(p)]), pd.Series(time),
                      pd.Series(event), min_events=5)
    for j in range(p):
        keep = np.isfinite(x[:, j])
        z = (x[keep, j] - x[keep, j].mean()) / x[keep, j].std(ddof=1)
        coef, se, lr_p, ph_p = _lifelines_reference(z, time[keep], event[keep])
        row = table.iloc[j]
        assert row["n"] == keep.sum() and row["n_events"] == event[keep].sum()
        assert np.log(row["effect"]) == pytest.approx(coef, rel=1e-6)
        assert np.log(row["effect"]) / row["statistic"] == pytest.approx(se, rel=1e-6)
        assert row["p"] == pytest.approx(lr_p, rel=1e-6)
        assert row["ph_p"] == pytest.approx(ph_p, rel=1e-6)
        assert row["ci_low"] == pytest.approx(np.exp(coef - 1.959963984540054 * se), rel=1e-6)
        assert row["ci_high"] == pytest.approx(np.exp(coef + 1.959963984540054 * se), rel=1e-6)


def test_cox_table_columns_and_degenerate_features():
    rng = np.random.default_rng(3)
    n = 40
    time = rng.exponential(10, n) + 0.1
    event = np.r_[np.ones(6), np.zeros(n - 6)]
    values = pd.DataFrame({"signal": rng.normal(size=n), "constant": np.full(n, 2.0),
                           "one_value": np.r_[1.0, np.full(n - 1, np.nan)]})
    values["few_events"] = np.where(np.arange(n) < 1, np.nan, values["signal"])  # 5 events
    table = cox_table(values, pd.Series(time), pd.Series(event), min_events=6)
    assert list(table.columns) == ["feature", "test", "effect_name", "n", "n_events",
                                   "statistic", "effect", "ci_low", "ci_high", "p", "ph_p"]
    assert np.isfinite(table.loc[0, ["statistic", "effect", "p", "ph_p"]].astype(float)).all()
    assert table.loc[1:, ["statistic", "effect", "p", "ph_p"]].isna().all().all()
    assert table["n_events"].tolist() == [6, 6, 1, 5]  # min_events = 6 is inclusive


def test_separated_feature_gives_nan_instead_of_a_runaway_coefficient():
    rng = np.random.default_rng(4)
    time = rng.permutation(np.arange(1.0, 31.0))
    event = np.ones(30)
    # Each death has the largest value in its risk set: the likelihood increases without
    # bound in β (monotone likelihood), so there is no finite estimate.
    result = cox_univariate(np.c_[-time, rng.normal(size=30)], time, event)
    assert not result.converged[0] and np.isnan(result.coef[0]) and np.isnan(result.lr_p[0])
    assert result.converged[1] and np.isfinite(result.coef[1])


def test_feature_constant_within_every_risk_set_is_not_estimable():
    time = np.arange(1.0, 21.0)
    event = np.r_[0.0, np.ones(19)]
    x = np.r_[5.0, np.zeros(19)]  # its only non-zero unit is censored before the first event
    result = cox_univariate(x[:, None], time, event)
    assert not result.converged[0] and np.isnan(result.coef[0]) and np.isnan(result.se[0])


def test_order_of_units_does_not_matter_without_tied_times():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 3))
    time = rng.exponential(5, 50)
    event = rng.random(50) < 0.6
    first = cox_univariate(x, time, event)
    order = rng.permutation(50)
    again = cox_univariate(x[order], time[order], event[order])
    for name in ("coef", "se", "lr_p", "ph_p"):
        np.testing.assert_allclose(getattr(again, name), getattr(first, name), rtol=1e-9)


def test_covariate_adjusted_path_still_fits_with_lifelines():
    rng = np.random.default_rng(6)
    n = 400
    age = rng.normal(60, 10, n)
    x = rng.normal(size=n)
    time = rng.exponential(10 * np.exp(-0.7 * x - 0.03 * (age - 60)))
    event = pd.Series(np.ones(n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = cox_table(pd.DataFrame({"x": x}), pd.Series(time), event,
                          covariates=pd.DataFrame({"age": age}))
    assert list(table.columns)[-1] == "ph_p"
    # hazard ∝ exp(0.7 x + 0.03 age): true HR per SD of x ≈ exp(0.7) ≈ 2.0 (SE of log HR ~0.06)
    assert 1.6 < table.loc[0, "effect"] < 2.5
    wald = 2 * stats.norm.sf(abs(table.loc[0, "statistic"]))
    assert table.loc[0, "p"] == pytest.approx(wald)  # Wald p with covariates
