"""Features against overall survival: Cox models per SD and Kaplan–Meier median splits.

The Cox models without covariates are fitted by a vectorised Newton–Raphson on the Efron
partial likelihood (:func:`cox_univariate`, equal to lifelines ``CoxPHFitter``); with
covariates lifelines itself is called. Log-rank tests are statsmodels' ``survdiff`` [6]_;
Kaplan–Meier curves a vectorised product-limit (:func:`kaplan_meier`, equal to lifelines
``KaplanMeierFitter`` and to a brute-force loop in the tests) — both about 100× faster than
lifelines, which matters because every feature is split and tested.

References
----------
1. Cox DR. Regression models and life-tables. J R Stat Soc B. 1972;34:187-220.
2. Grambsch PM, Therneau TM. Proportional hazards tests and diagnostics based on weighted
   residuals. Biometrika. 1994;81:515-26.
3. Kaplan EL, Meier P. Nonparametric estimation from incomplete observations. J Am Stat
   Assoc. 1958;53:457-81.
4. Davidson-Pilon C. lifelines: survival analysis in Python. J Open Source Softw.
   2019;4:1317.
5. Efron B. The efficiency of Cox's likelihood function for censored data. J Am Stat Assoc.
   1977;72:557-65.
6. Seabold S, Perktold J. statsmodels: econometric and statistical modeling with Python.
   Proc 9th Python in Science Conf. 2010 (``statsmodels.duration.survfunc.survdiff``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["SPLIT_BINARY", "SPLIT_MEDIAN", "SPLIT_MEDIAN_TIES_HIGH", "UnivariateCox", "cox_table",
           "cox_univariate", "kaplan_meier", "kaplan_meier_table", "logrank", "two_group_split"]


def cox_table(values: pd.DataFrame, time: pd.Series, event: pd.Series,
              covariates: pd.DataFrame | None = None, min_events: int = 5,
              confidence: float = 0.95) -> pd.DataFrame:
    """Per feature: Cox proportional-hazards model on the standardised feature.

    Parameters
    ----------
    values
        Units (patients or samples) × features; NaN is missing (each feature is fitted on
        the units where it is finite).
    time, event
        Follow-up time (any unit, > 0) and event indicator (1 event, 0 censored); units with
        a missing time or event are left out.
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
        ``feature``, ``test`` = ``cox``, ``effect_name`` = ``hr_per_sd``, ``n``,
        ``n_events``, ``statistic`` (Wald z), ``effect`` (hazard ratio per SD of the feature:
        the feature is z-scored over the units in its fit, ddof = 1), ``ci_low``, ``ci_high``
        (exp of the Wald interval of the log HR), ``p`` (likelihood-ratio test without
        covariates, which keeps its power for large effects where the Wald test loses it;
        Wald with covariates), ``ph_p`` (Grambsch–Therneau test of proportional hazards for
        the feature on rank-transformed time; small = the hazard ratio changes over time).
        Features with fewer than ``min_events`` events, a zero or undefined SD, or a fit that
        does not converge (see :func:`cox_univariate`) have NaN statistics.

    Notes
    -----
    Without covariates all features are fitted at once by :func:`cox_univariate`
    (vectorised Newton–Raphson, Efron ties; equal to lifelines ``CoxPHFitter`` and
    ``proportional_hazard_test(time_transform='rank')`` to ~1e-7, the precision of
    lifelines' own stopping rule). With covariates one lifelines ``CoxPHFitter`` (Efron
    ties, no penalty) per feature, ~0.06 s each.
    """
    base = pd.DataFrame({"_time": time.reindex(values.index).to_numpy(np.float64),
                         "_event": event.reindex(values.index).to_numpy(np.float64)},
                        index=values.index)
    if covariates is not None and covariates.shape[1]:
        base = base.join(covariates.reindex(values.index).astype(np.float64))
    base = base.dropna()
    if base.shape[1] > 2:
        return _cox_adjusted(values, base, min_events, confidence)
    x = values.reindex(base.index).to_numpy(np.float64)
    observed = np.isfinite(x)
    n = observed.sum(axis=0)
    is_event = base["_event"].to_numpy() == 1
    n_events = (observed & is_event[:, None]).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(np.where(observed, x, 0.0), axis=0) / n
        sd = np.sqrt(np.nansum(np.where(observed, x - mean, 0.0) ** 2, axis=0) / (n - 1))
        fit = (n_events >= min_events) & (sd > 0)
        z = np.where(observed, (x - mean) / sd, np.nan)[:, fit]
    result = cox_univariate(z, base["_time"].to_numpy(), is_event)
    z_crit = stats.norm.ppf(0.5 + confidence / 2)
    coef = np.full(x.shape[1], np.nan)
    se, p, ph_p = coef.copy(), coef.copy(), coef.copy()
    coef[fit], se[fit], p[fit], ph_p[fit] = result.coef, result.se, result.lr_p, result.ph_p
    with np.errstate(over="ignore"):  # a very wide interval ends at inf
        low, high = np.exp(coef - z_crit * se), np.exp(coef + z_crit * se)
    return pd.DataFrame({
        "feature": values.columns, "test": "cox", "effect_name": "hr_per_sd",
        "n": n.astype(np.int64), "n_events": n_events.astype(np.int64),
        "statistic": coef / se, "effect": np.exp(coef),
        "ci_low": low, "ci_high": high, "p": p, "ph_p": ph_p})


#: Units × covariates fitted at once by :func:`cox_univariate` (working arrays ~16 MB each).
_BLOCK_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class UnivariateCox:
    """Per-feature results of :func:`cox_univariate` (arrays over features).

    Attributes
    ----------
    coef, se
        Log hazard ratio per unit of the covariate and its Wald standard error
        (1 / sqrt(observed information)).
    lr_statistic, lr_p
        Likelihood-ratio χ² = 2 (ℓ(β̂) − ℓ(0)) on 1 df and its p-value.
    ph_statistic, ph_p
        Grambsch–Therneau χ² (1 df) of proportional hazards on rank time, and its p-value.
    n_iterations
        Newton steps taken.
    converged
        False where the fit did not converge (NaN statistics).
    """

    coef: np.ndarray
    se: np.ndarray
    lr_statistic: np.ndarray
    lr_p: np.ndarray
    ph_statistic: np.ndarray
    ph_p: np.ndarray
    n_iterations: np.ndarray
    converged: np.ndarray


def cox_univariate(x: np.ndarray, time: np.ndarray, event: np.ndarray,
                   max_iterations: int = 100, tolerance: float = 1e-10,
                   max_abs_coef: float = 20.0) -> UnivariateCox:
    """One-covariate Cox models for many covariates at once (Efron ties).

    Each column of ``x`` is fitted on its own units (rows where it is finite) by
    Newton–Raphson on the Efron partial log-likelihood

        ℓ(β) = Σ_k [β Σ_{i∈D_k} x_i − Σ_{l=0}^{d_k−1} log(S0_k − (l/d_k) S0D_k)],

    with S0_k = Σ_{T_i >= t_k} exp(β x_i) over the risk set (ties at t_k are at risk) and
    S0D_k the same sum over the d_k events at t_k; the score and information are its first
    and second derivatives. Steps are halved while ℓ decreases, and iteration stops when the
    step is below ``tolerance``. Then:

    - ``se`` = 1 / sqrt(information at β̂) (Wald);
    - likelihood ratio 2 (ℓ(β̂) − ℓ(0)) on 1 df;
    - Grambsch–Therneau proportional-hazards test on rank time, in the one-covariate closed
      form of lifelines ``proportional_hazard_test(time_transform='rank')``: with Schoenfeld
      residuals r_i = x_i − x̄_k (x̄_k the Efron-averaged risk-set mean at the event's time),
      event ranks g_i = 1…D (events ordered by time, tied events in input order),
      T = D se² (Σ (g_i − ḡ) r_i)² / Σ (g_i − ḡ)² on 1 df (the scaled residuals are
      D se² r_i).

    Parameters
    ----------
    x
        Units × covariates; NaN marks a unit missing for that covariate.
    time, event
        Follow-up times (finite) and event indicators (bool or 0/1) per unit.
    max_iterations
        Newton steps before giving up (not converged → NaN).
    tolerance
        Convergence threshold on |step| of β.
    max_abs_coef
        Fits whose |β| exceeds this (monotone likelihood, e.g. a covariate that separates
        events from survivors: β̂ = ±∞) are reported as not converged with NaN statistics,
        as are covariates whose information is below 1e-9 × events (constant within every
        risk set at an event time: flat likelihood).

    Returns
    -------
    UnivariateCox

    Notes
    -----
    Vectorised over covariates (in blocks of about 2e6 units × covariates):
    O(iterations × (n log n + n × covariates × largest tie)).
    Matches lifelines ``CoxPHFitter`` (Efron ties, no penalty; it normalises the covariate
    internally, the coefficient here is on the scale of ``x``) in coef, se, LR p and
    rank-time PH p to a relative 1e-6 (``tests/cohort/test_survival_cox.py``, with ties,
    censoring and missing values); kept because it fits all features at once, where one
    ``CoxPHFitter`` per feature takes ~0.06 s.

    References
    ----------
    1. Efron B. The efficiency of Cox's likelihood function for censored data. J Am Stat
       Assoc. 1977;72:557-65.
    2. Grambsch PM, Therneau TM. Biometrika. 1994;81:515-26.
    3. Davidson-Pilon C. lifelines. J Open Source Softw. 2019;4:1317.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:  # no units or no covariates: nothing to fit
        nan = np.full(x.shape[1], np.nan)
        return UnivariateCox(nan, nan, nan, nan, nan, nan, np.zeros(x.shape[1], np.int64),
                             np.zeros(x.shape[1], bool))
    block = max(1, _BLOCK_ELEMENTS // max(len(x), 1))
    if x.ndim == 2 and x.shape[1] > block:  # bound memory: fit blocks of columns
        parts = [cox_univariate(x[:, i:i + block], time, event, max_iterations, tolerance,
                                max_abs_coef) for i in range(0, x.shape[1], block)]
        return UnivariateCox(*(np.concatenate([getattr(part, name) for part in parts])
                               for name in UnivariateCox.__dataclass_fields__))
    order = np.lexsort((np.asarray(event, dtype=np.float64), np.asarray(time)))
    t = np.asarray(time, dtype=np.float64)[order]
    dead = np.asarray(event, dtype=bool)[order]
    z = x[order]
    observed = np.isfinite(z)
    z = np.where(observed, z, 0.0)
    p = z.shape[1]
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]]) if len(t) else np.zeros(0, int)
    sets = _RiskSets(z, observed, dead, starts)
    beta = np.zeros(p)
    ll, score, info, _ = sets.terms(beta)
    ll_null = ll.copy()
    # Information below rounding level: the covariate is (nearly) constant within every risk
    # set at an event time (e.g. its only non-zero unit is censored before the first event),
    # so the likelihood is flat and β is not identified.
    floor = 1e-9 * np.maximum(sets.n_events, 1)
    active = np.isfinite(ll) & (sets.n_events > 0) & (info > floor)
    converged = np.zeros(p, dtype=bool)
    steps = np.zeros(p, dtype=np.int64)
    for _ in range(max_iterations):
        if not active.any():
            break
        cols = np.flatnonzero(active)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = score[cols] / info[cols]
        bad = ~np.isfinite(step) | (info[cols] <= floor[cols])
        done = ~bad & (np.abs(step) < tolerance)
        converged[cols[done]] = True
        active[cols[bad | done]] = False
        move = cols[~bad & ~done]
        step = step[~bad & ~done]
        if not len(move):
            break
        steps[move] += 1
        sub = sets.subset(move)
        for _ in range(60):  # step halving: the partial likelihood must not decrease
            new = beta[move] + step
            new_ll, new_score, new_info, _ = sub.terms(new)
            worse = ~(new_ll >= ll[move] - 1e-12 * np.abs(ll[move]))
            if not worse.any():
                break
            step = np.where(worse, step / 2, step)
        beta[move], ll[move], score[move], info[move] = new, new_ll, new_score, new_info
        escaped = np.abs(new) > max_abs_coef
        active[move[escaped]] = False
    ok = converged & np.isfinite(ll) & (info > floor)
    _, _, info, residual_mean = sets.terms(beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(ok, 1.0 / np.sqrt(info), np.nan)
        lr = np.where(ok, np.maximum(2 * (ll - ll_null), 0.0), np.nan)
        ph = sets.ph_statistic(residual_mean, se)
    ph = np.where(ok, ph, np.nan)
    return UnivariateCox(coef=np.where(ok, beta, np.nan), se=se, lr_statistic=lr,
                         lr_p=stats.chi2.sf(lr, 1), ph_statistic=ph,
                         ph_p=stats.chi2.sf(ph, 1), n_iterations=steps, converged=ok)


class _RiskSets:
    """Risk-set sums of one-covariate Cox models, one column per covariate (rows sorted by
    time, then event)."""

    def __init__(self, z: np.ndarray, observed: np.ndarray, dead: np.ndarray,
                 starts: np.ndarray) -> None:
        self.z, self.observed, self.dead, self.starts = z, observed, dead, starts
        died = observed & dead[:, None]
        self.died = died
        self.n_events = died.sum(axis=0)
        deaths = np.add.reduceat(died, starts, axis=0) if len(starts) else np.zeros((0, 1))
        self.has_deaths = deaths.any(axis=1) if deaths.size else np.zeros(0, bool)
        self.deaths = deaths[self.has_deaths].astype(np.float64)
        self.event_sum = np.where(died, z, 0.0).sum(axis=0)
        self.group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(z)]))

    def subset(self, cols: np.ndarray) -> _RiskSets:
        return _RiskSets(self.z[:, cols], self.observed[:, cols], self.dead, self.starts)

    def terms(self, beta: np.ndarray) -> tuple[np.ndarray, ...]:
        """Partial log-likelihood, score, information and Efron mean x̄_k at ``beta``."""
        z = self.z
        eta = np.where(self.observed, beta * z, -np.inf)
        shift = eta.max(axis=0)
        shift = np.where(np.isfinite(shift), shift, 0.0)
        w = np.exp(eta - shift)
        wz, wzz = w * z, w * z * z
        sums = []
        for part in (w, wz, wzz):
            grouped = np.add.reduceat(part, self.starts, axis=0)
            at_risk = np.cumsum(grouped[::-1], axis=0)[::-1][self.has_deaths]
            tied = np.add.reduceat(np.where(self.died, part, 0.0), self.starts,
                                   axis=0)[self.has_deaths]
            sums.append((at_risk, tied))
        (s0, d0), (s1, d1), (s2, d2) = sums
        d = self.deaths
        log_sum = np.zeros_like(beta)
        score = self.event_sum.copy()
        info = np.zeros_like(beta)
        mean_sum = np.zeros_like(s0)
        largest = int(d.max()) if d.size else 0
        with np.errstate(divide="ignore", invalid="ignore"):
            for tie in range(largest):
                live = tie < d
                frac = np.where(live, tie / np.where(d > 0, d, 1.0), 0.0)
                den = np.where(live, s0 - frac * d0, 1.0)
                mean = np.where(live, (s1 - frac * d1) / den, 0.0)
                second = np.where(live, (s2 - frac * d2) / den, 0.0)
                log_sum += np.where(live, np.log(den) + shift, 0.0).sum(axis=0)
                score -= mean.sum(axis=0)
                info += (second - mean * mean).sum(axis=0)
                mean_sum += mean
            residual_mean = mean_sum / d
        ll = beta * self.event_sum - log_sum
        return ll, score, info, residual_mean

    def ph_statistic(self, residual_mean: np.ndarray, se: np.ndarray) -> np.ndarray:
        """Grambsch–Therneau χ² on rank time (see :func:`cox_univariate`)."""
        full = np.zeros((len(self.starts), self.z.shape[1]))
        full[self.has_deaths] = np.nan_to_num(residual_mean)
        residual = np.where(self.died, self.z - full[self.group], 0.0)
        rank = np.cumsum(self.died, axis=0)
        n = self.n_events.astype(np.float64)
        centred = np.where(self.died, rank - (n + 1) / 2, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = n * (n * n - 1) / 12
            return n * se ** 2 * (centred * residual).sum(axis=0) ** 2 / spread


def _cox_adjusted(values: pd.DataFrame, base: pd.DataFrame, min_events: int,
                  confidence: float) -> pd.DataFrame:
    """Covariate-adjusted Cox models: one lifelines fit per feature (Wald p)."""
    from lifelines import CoxPHFitter
    from lifelines.statistics import proportional_hazard_test

    alpha = 1 - confidence
    z_crit = stats.norm.ppf(0.5 + confidence / 2)
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
                            "p": float(2 * stats.norm.sf(abs(coef / se))),
                            "ph_p": float(ph.summary.loc["_z", "p"])}
            except Exception:  # lifelines raises several convergence error types
                pass
        rows.append(row)
    columns = ["feature", "test", "effect_name", "n", "n_events", "statistic", "effect",
               "ci_low", "ci_high", "p", "ph_p"]
    return pd.DataFrame(rows).reindex(columns=columns)


def kaplan_meier(time: np.ndarray, event: np.ndarray,
                 confidence: float = 0.95) -> pd.DataFrame:
    """Kaplan–Meier estimate with Greenwood log(−log) pointwise intervals (lifelines).

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
        (exp(−exp(log(−log S) ± z·sqrt(V)/log S)) with Greenwood's V = Σ d/(n(n − d)) and
        z the normal quantile of ``confidence``; 1 where S = 1 and 0 where S = 0) and
        ``n_at_risk`` (units with T >= t).

    Notes
    -----
    Vectorised product-limit over the distinct times, O(n log n). Hand-written for speed:
    lifelines ``KaplanMeierFitter`` [4]_ gives the same numbers (tests/cohort) but takes
    ≈14 ms per fit against ≈0.05 ms here, and :func:`kaplan_meier_table` fits two curves
    per feature (measured: 62 s of a 90 s run of a 6-sample cohort with 1,086 features).
    lifelines' conventions are kept: a row at time 0 unless some time is 0, a row at every
    distinct observed time (censored ones too).
    """
    return pd.DataFrame(_kaplan_meier_arrays(time, event, confidence))


def _kaplan_meier_arrays(time: np.ndarray, event: np.ndarray,
                         confidence: float) -> dict[str, np.ndarray]:
    """The columns of :func:`kaplan_meier` as arrays."""
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event, dtype=np.float64)
    if len(time) == 0:
        empty = np.zeros(0)
        return {"time": empty, "survival": empty, "ci_low": empty, "ci_high": empty,
                "n_at_risk": np.zeros(0, np.int64)}
    times, where = np.unique(time, return_inverse=True)
    deaths = np.bincount(where, weights=event, minlength=len(times))
    leaving = np.bincount(where, minlength=len(times))
    at_risk = len(time) - np.concatenate([[0], np.cumsum(leaving)[:-1]])
    survival = np.cumprod(1.0 - deaths / at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        greenwood = np.cumsum(np.where(at_risk > deaths,
                                       deaths / (at_risk * (at_risk - deaths)), 0.0))
        inside = (survival > 0) & (survival < 1)
        z = stats.norm.ppf(0.5 + confidence / 2)
        log_s = np.log(np.where(inside, survival, 0.5))
        spread = z * np.sqrt(greenwood) / log_s
        centre = np.log(-log_s)
        low = np.where(inside, np.exp(-np.exp(centre - spread)), survival)
        high = np.where(inside, np.exp(-np.exp(centre + spread)), survival)
    if times[0] > 0:  # lifelines' timeline starts at 0
        times, survival = np.r_[0.0, times], np.r_[1.0, survival]
        low, high = np.r_[1.0, low], np.r_[1.0, high]
        at_risk = np.r_[len(time), at_risk]
    return {"time": times, "survival": survival, "ci_low": low, "ci_high": high,
            "n_at_risk": at_risk.astype(np.int64)}


def logrank(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> tuple[float, float]:
    """Two-group log-rank test (Mantel–Haenszel variance), by statsmodels ``survdiff`` [6]_.

    Parameters
    ----------
    time, event
        Follow-up times and event indicators (1 event, 0 censored).
    group
        Boolean group membership (True: group 1).

    Returns
    -------
    statistic, p
        χ² = (O₁ − E₁)² / V on 1 df, summing over distinct event times the observed and
        expected events of group 1 and the hypergeometric variance
        V = Σ d·(n₁/n)·(1 − n₁/n)·(n − d)/(n − 1); NaN, NaN when a group is empty or V = 0
        (no event).
    """
    from statsmodels.duration.survfunc import survdiff

    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event, dtype=np.float64)
    group = np.asarray(group, dtype=bool)
    if group.all() or not group.any() or not (event > 0).any():
        return float("nan"), float("nan")
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        try:
            result = survdiff(time, event, group.astype(np.int64))
        except np.linalg.LinAlgError:  # V = 0: survdiff solves a singular 1×1 system
            return float("nan"), float("nan")
    statistic, p = float(result[0]), float(result[1])
    if not np.isfinite(statistic):
        return float("nan"), float("nan")
    return statistic, p


def _median_time(curve: dict[str, np.ndarray]) -> float:
    """Smallest time with S(t) <= 0.5; inf when the curve never reaches it.

    lifelines computes S as exp(Σ log(1 − d/n)), so an exact 0.5 can come out 0.5 + 1 ulp;
    the comparison allows 1e-12 for that rounding.
    """
    below = curve["survival"] <= 0.5 + 1e-12
    return float(curve["time"][below][0]) if below.any() else float("inf")


#: ``split`` of a binary feature: ``low`` holds its smaller value, ``high`` its larger.
SPLIT_BINARY = "binary"
#: ``split`` at the median with ties low: ``low`` ≤ threshold < ``high``.
SPLIT_MEDIAN = "median"
#: ``split`` at the median with ties high: ``low`` < threshold ≤ ``high``.
SPLIT_MEDIAN_TIES_HIGH = "median_ties_high"


def two_group_split(values: np.ndarray, min_group: int = 2) -> tuple[float, str, np.ndarray]:
    """The two groups of a Kaplan–Meier / log-rank comparison of one feature.

    Parameters
    ----------
    values
        The feature's finite values, one per unit.
    min_group
        Smallest group the median split aims for.

    Returns
    -------
    threshold : float
        The smaller value of a binary feature, else the median (NaN without values).
    split : str
        :data:`SPLIT_BINARY` when the feature has exactly two distinct values (``high`` =
        the units with the larger one; a median split could leave a group empty when most
        units share one value); else :data:`SPLIT_MEDIAN` (``high`` = ``values > median``),
        or :data:`SPLIT_MEDIAN_TIES_HIGH` (``high`` = ``values >= median``) when ties low
        would leave fewer than ``min_group`` units high while ties high would not.
    high : numpy.ndarray
        Boolean membership of the ``high`` group. A feature with one distinct value has an
        empty ``high`` group (nothing to compare).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), SPLIT_MEDIAN, np.zeros(0, dtype=bool)
    levels = np.unique(x)
    if levels.size == 2:
        return float(levels[0]), SPLIT_BINARY, x > levels[0]
    threshold = float(np.median(x))
    high = x > threshold
    if high.sum() < min_group:
        ties_high = x >= threshold
        if (~ties_high).sum() >= min_group:
            return threshold, SPLIT_MEDIAN_TIES_HIGH, ties_high
    return threshold, SPLIT_MEDIAN, high


def kaplan_meier_table(values: pd.DataFrame, time: pd.Series,
                       event: pd.Series, confidence: float = 0.95,
                       min_group: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per feature: Kaplan–Meier curves of a two-group split and the log-rank test.

    The split (:func:`two_group_split`): a feature with exactly two distinct values (a binary
    feature) by its two values; any other at its median, ties at the median going to the
    ``low`` group unless that leaves the ``high`` group smaller than ``min_group`` (many
    units at the maximum), in which case they go ``high``.

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
        ``effect_name`` = ``median_time_ratio``, ``n``, ``n_events``, ``threshold``,
        ``split`` (see :func:`two_group_split`), ``p``.
    curves : pandas.DataFrame
        ``feature``, ``group`` (``low``/``high``), ``threshold``, ``split``, ``time``,
        ``survival``, ``ci_low``, ``ci_high``, ``n_at_risk``.

    Notes
    -----
    Two Kaplan–Meier curves and one log-rank test per feature: about 0.4 ms per feature
    for tens of units (O(n log n) each).
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
        threshold, split, high = two_group_split(x, min_group)
        row |= {"threshold": threshold, "split": split}
        if min(high.sum(), (~high).sum()) < min_group:
            rows.append(row)
            continue
        statistic, p = logrank(t, e, high)
        medians = {}
        for group, mask in (("low", ~high), ("high", high)):
            curve = _kaplan_meier_arrays(t[mask], e[mask], confidence)
            medians[group] = _median_time(curve)
            curves.append((name, group, threshold, split, curve))
        ratio = medians["high"] / medians["low"]
        row |= {"statistic": statistic, "effect": ratio if np.isfinite(ratio) else np.nan,
                "p": p}
        rows.append(row)
    columns = ["feature", "group", "threshold", "split", "time", "survival", "ci_low",
               "ci_high", "n_at_risk"]
    if not curves:
        return pd.DataFrame(rows), pd.DataFrame(columns=columns)
    sizes = [len(curve["time"]) for *_, curve in curves]
    table = pd.DataFrame({
        "feature": np.repeat(np.array([name for name, *_ in curves], dtype=object), sizes),
        "group": np.repeat(np.array([group for _, group, *_ in curves], dtype=object), sizes),
        "threshold": np.repeat([threshold for _, _, threshold, *_ in curves], sizes),
        "split": np.repeat(np.array([split for *_, split, _ in curves], dtype=object), sizes),
        **{key: np.concatenate([curve[key] for *_, curve in curves])
           for key in columns[4:]}})
    return pd.DataFrame(rows), table
