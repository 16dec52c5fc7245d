"""Features against overall survival: Cox models per SD and Kaplan–Meier median splits.

References
----------
1. Cox DR. Regression models and life-tables. J R Stat Soc B. 1972;34:187-220.
2. Grambsch PM, Therneau TM. Proportional hazards tests and diagnostics based on weighted
   residuals. Biometrika. 1994;81:515-26.
3. Kaplan EL, Meier P. Nonparametric estimation from incomplete observations. J Am Stat
   Assoc. 1958;53:457-81.
4. Davidson-Pilon C. lifelines: survival analysis in Python. J Open Source Softw.
   2019;4:1317.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["cox_table", "kaplan_meier", "kaplan_meier_table", "logrank"]


def cox_table(values: pd.DataFrame, time: pd.Series, event: pd.Series,
              covariates: pd.DataFrame | None = None, min_events: int = 5,
              confidence: float = 0.95) -> pd.DataFrame:
    """Per feature: Cox proportional-hazards model on the standardised feature.

    Parameters
    ----------
    values
        Units (patients or samples) × features.
    time, event
        Follow-up time (any unit, > 0) and event indicator (1 event, 0 censored).
    covariates
        Numeric adjustment columns (age, stage, …) entered as-is; units with a missing
        covariate are left out.
    min_events
        Features observed on fewer events than this get NaN statistics.
    confidence
        Level of the Wald interval.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``test`` = ``cox``, ``statistic`` (Wald z), ``effect`` (hazard ratio per
        SD of the feature: the feature is z-scored over the units in the fit, ddof = 1),
        ``ci_low``, ``ci_high`` (exp of the Wald interval of the log HR), ``effect_name`` =
        ``hr_per_sd``, ``n``, ``n_events``, ``p`` (likelihood-ratio test without covariates,
        which keeps its power for large effects where the Wald test loses it; Wald with
        covariates), ``ph_p`` (Grambsch–Therneau test
        of proportional hazards for the feature on rank-transformed time; small = the
        hazard ratio changes over time).

    Notes
    -----
    lifelines ``CoxPHFitter`` (Efron ties, no penalty), one fit per feature.
    """
    from lifelines import CoxPHFitter
    from lifelines.statistics import proportional_hazard_test

    alpha = 1 - confidence
    z_crit = stats.norm.ppf(0.5 + confidence / 2)
    base = pd.DataFrame({"_time": time.reindex(values.index).to_numpy(np.float64),
                         "_event": event.reindex(values.index).to_numpy(np.float64)},
                        index=values.index)
    if covariates is not None and covariates.shape[1]:
        base = base.join(covariates.reindex(values.index).astype(np.float64))
    base = base.dropna()
    adjust = base.shape[1] - 2
    rows = []
    for name in values.columns:
        x = values[name].reindex(base.index)
        data = base[x.notna().to_numpy()].copy()
        x = x.dropna()
        n_events = int(data["_event"].sum())
        row = {"feature": name, "test": "cox", "effect_name": "hr_per_sd", "n": len(data),
               "n_events": n_events}
        sd = x.std()
        if n_events >= min_events and sd > 0:
            data.insert(0, "_z", ((x - x.mean()) / sd).to_numpy())
            try:
                with warnings.catch_warnings(), np.errstate(over="ignore"):
                    warnings.simplefilter("ignore")
                    fit = CoxPHFitter(alpha=alpha).fit(data, "_time", "_event")
                    ph = proportional_hazard_test(fit, data, time_transform="rank")
                    coef = float(fit.params_["_z"])
                    se = float(fit.standard_errors_["_z"])
                    row |= {"statistic": coef / se, "effect": float(np.exp(coef)),
                            "ci_low": float(np.exp(coef - z_crit * se)),
                            "ci_high": float(np.exp(coef + z_crit * se)),
                            "p": (float(fit.log_likelihood_ratio_test().p_value) if adjust == 0
                                  else float(2 * stats.norm.sf(abs(coef / se)))),
                            "ph_p": float(ph.summary.loc["_z", "p"])}
            except Exception:  # lifelines raises several convergence error types
                pass
        rows.append(row)
    return pd.DataFrame(rows)


def kaplan_meier(time: np.ndarray, event: np.ndarray,
                 confidence: float = 0.95) -> pd.DataFrame:
    """Kaplan–Meier estimate with Greenwood log(−log) pointwise intervals.

    Parameters
    ----------
    time, event
        Follow-up times and event indicators (1 event, 0 censored) of one group.
    confidence
        Level of the intervals.

    Returns
    -------
    pandas.DataFrame
        ``time`` (0, then every distinct observed time, ascending), ``survival``
        S(t) = Π_{t_i <= t} (1 − d_i / n_i), ``ci_low``, ``ci_high``
        (exp(−exp(log(−log S) ± z·sqrt(V)/log S)) with Greenwood's V = Σ d/(n(n − d)), as
        lifelines; 1 where S = 1 and 0 where S = 0) and ``n_at_risk`` (units with T >= t).
        O(n log n).
    """
    order = np.argsort(time, kind="stable")
    t, e = time[order], event[order]
    times, first = np.unique(t, return_index=True)
    deaths = np.add.reduceat(e, first) if len(t) else np.zeros(0)
    at_risk = len(t) - first
    survival = np.cumprod(1.0 - deaths / at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        greenwood = np.cumsum(deaths / (at_risk * (at_risk - deaths)))
        log_s = np.log(survival)
        z = stats.norm.ppf(0.5 + confidence / 2)
        spread = z * np.sqrt(greenwood) / log_s
        low = np.exp(-np.exp(np.log(-log_s) - spread))
        high = np.exp(-np.exp(np.log(-log_s) + spread))
    low = np.where(survival == 1, 1.0, np.where(survival == 0, 0.0, low))
    high = np.where(survival == 1, 1.0, np.where(survival == 0, 0.0, high))
    start = len(times) == 0 or times[0] > 0

    def lead(first_value: float, values: np.ndarray) -> np.ndarray:
        return np.concatenate([[first_value], values]) if start else values
    return pd.DataFrame({"time": lead(0.0, times.astype(np.float64)),
                         "survival": lead(1.0, survival), "ci_low": lead(1.0, low),
                         "ci_high": lead(1.0, high),
                         "n_at_risk": lead(len(t), at_risk).astype(np.int64)})


def logrank(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> tuple[float, float]:
    """Two-group log-rank test (Mantel–Haenszel variance).

    Returns
    -------
    statistic, p
        χ² = (O₁ − E₁)² / V on 1 df, summing over distinct event times the observed and
        expected events of group 1 (``group`` True) and the hypergeometric variance
        V = Σ d·(n₁/n)·(1 − n₁/n)·(n − d)/(n − 1).
    """
    times, inverse = np.unique(time, return_inverse=True)
    deaths = np.bincount(inverse, weights=event, minlength=len(times))
    deaths_1 = np.bincount(inverse, weights=event * group, minlength=len(times))
    leaving = np.bincount(inverse, minlength=len(times))
    leaving_1 = np.bincount(inverse, weights=group.astype(np.float64), minlength=len(times))
    at_risk = len(time) - np.concatenate([[0], np.cumsum(leaving)[:-1]])
    at_risk_1 = group.sum() - np.concatenate([[0], np.cumsum(leaving_1)[:-1]])
    share = at_risk_1 / at_risk
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(at_risk > 1, deaths * share * (1 - share) * (at_risk - deaths)
                       / (at_risk - 1), 0.0)
    observed_minus_expected = float(np.sum(deaths_1 - deaths * share))
    total = float(var.sum())
    if total <= 0:
        return float("nan"), float("nan")
    statistic = observed_minus_expected ** 2 / total
    return statistic, float(stats.chi2.sf(statistic, 1))


def _median_time(curve: pd.DataFrame) -> float:
    """Smallest time with S(t) <= 0.5; inf when the curve never reaches it."""
    below = curve["survival"].to_numpy() <= 0.5
    return float(curve["time"].to_numpy()[below][0]) if below.any() else float("inf")


def kaplan_meier_table(values: pd.DataFrame, time: pd.Series,
                       event: pd.Series, confidence: float = 0.95,
                       min_group: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per feature: Kaplan–Meier curves of a median split and the log-rank test.

    Units with the feature ``> median`` form the ``high`` group, ``<= median`` the ``low``
    group (so ties at the median go low).

    Parameters
    ----------
    values
        Units × features.
    time, event
        Follow-up time and event indicator (1 event, 0 censored).
    confidence
        Level of the pointwise intervals (:func:`kaplan_meier`).
    min_group
        Features with a group smaller than this are skipped.

    Returns
    -------
    tests : pandas.DataFrame
        ``feature``, ``test`` = ``logrank``, ``statistic`` (χ², 1 df; :func:`logrank`),
        ``effect`` (median survival time high / low; NaN when a median is not reached),
        ``effect_name`` = ``median_time_ratio``, ``n``, ``n_events``, ``threshold``
        (the median), ``p``.
    curves : pandas.DataFrame
        ``feature``, ``group`` (``low``/``high``), ``threshold``, ``time``, ``survival``,
        ``ci_low``, ``ci_high``, ``n_at_risk``.
    """
    t_all = time.reindex(values.index).to_numpy(np.float64)
    e_all = event.reindex(values.index).to_numpy(np.float64)
    rows, curves = [], []
    for name in values.columns:
        x = values[name].to_numpy(np.float64)
        keep = np.isfinite(x) & np.isfinite(t_all) & np.isfinite(e_all)
        x, t, e = x[keep], t_all[keep], e_all[keep]
        row = {"feature": name, "test": "logrank", "effect_name": "median_time_ratio",
               "n": int(keep.sum()), "n_events": int(e.sum())}
        threshold = float(np.median(x)) if len(x) else np.nan
        high = x > threshold
        if min(high.sum(), (~high).sum()) < min_group:
            rows.append(row)
            continue
        statistic, p = logrank(t, e, high)
        medians = {}
        for group, mask in (("low", ~high), ("high", high)):
            curve = kaplan_meier(t[mask], e[mask], confidence)
            medians[group] = _median_time(curve)
            curves.append(curve.assign(feature=name, group=group, threshold=threshold))
        ratio = medians["high"] / medians["low"]
        row |= {"statistic": statistic, "effect": ratio if np.isfinite(ratio) else np.nan,
                "threshold": threshold, "p": p}
        rows.append(row)
    columns = ["feature", "group", "threshold", "time", "survival", "ci_low", "ci_high",
               "n_at_risk"]
    table = (pd.concat(curves, ignore_index=True)[columns] if curves
             else pd.DataFrame(columns=columns))
    return pd.DataFrame(rows), table
