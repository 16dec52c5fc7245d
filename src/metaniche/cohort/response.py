"""Features against response: Mann–Whitney U with AUC, and a patient mixed model.

References
----------
1. Mann HB, Whitney DR. On a test of whether one of two random variables is stochastically
   larger than the other. Ann Math Stat. 1947;18:50-60.
2. DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated
   receiver operating characteristic curves: a nonparametric approach. Biometrics.
   1988;44:837-45.
3. Cliff N. Dominance statistics: ordinal analyses to answer ordinal questions. Psychol Bull.
   1993;114:494-509.
4. Canete NP, et al. spicyR: spatial analysis of in situ cytometry data in R. Bioinformatics.
   2022;38:3099-105 (mixed model with a subject random intercept).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["auc_delong", "mann_whitney_table", "mixed_model_table"]


def auc_delong(positive: np.ndarray, negative: np.ndarray,
               confidence: float = 0.95) -> tuple[float, float, float]:
    """AUC = P(X+ > X-) + ½ P(X+ = X-) with DeLong's variance and a Wald interval.

    Parameters
    ----------
    positive, negative
        Finite values of the two groups (m and n values).
    confidence
        Level of the interval.

    Returns
    -------
    auc, ci_low, ci_high
        The interval is ``auc ± z·se`` clipped to [0, 1]; se² = var(V10)/m + var(V01)/n with
        the structural components V10_i = (R_i − R⁺_i)/n and V01_j = 1 − (R_j − R⁻_j)/m from
        midranks R in the pooled sample and R± within each group (ties count ½). With a
        single value in a group its component variance is taken as 0. O((m+n) log(m+n)).
    """
    m, n = len(positive), len(negative)
    pooled = stats.rankdata(np.concatenate([positive, negative]))
    v10 = (pooled[:m] - stats.rankdata(positive)) / n
    v01 = 1.0 - (pooled[m:] - stats.rankdata(negative)) / m
    auc = float(v10.mean())
    var = (v10.var(ddof=1) / m if m > 1 else 0.0) + (v01.var(ddof=1) / n if n > 1 else 0.0)
    half = stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(var)
    return auc, float(max(0.0, auc - half)), float(min(1.0, auc + half))


def mann_whitney_table(values: pd.DataFrame, responder: pd.Series, min_group: int = 3,
                       confidence: float = 0.95) -> pd.DataFrame:
    """Per feature: two-sided Mann–Whitney U of responders vs non-responders.

    Parameters
    ----------
    values
        Units (patients or samples) × features; NaN is missing.
    responder
        1.0 responder, 0.0 non-responder, NaN unknown; same index as ``values``.
    min_group
        Features with fewer finite values than this in either group get NaN statistics.
    confidence
        Level of the AUC interval.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``test`` = ``mann_whitney``, ``statistic`` (U of the responders),
        ``effect`` (AUC: probability a responder's value exceeds a non-responder's, ties ½),
        ``ci_low``, ``ci_high`` (DeLong), ``effect_name`` = ``auc``, ``cliffs_delta``
        (2·AUC − 1, with ``cliffs_low``/``cliffs_high`` from the AUC interval),
        ``fold_change`` (mean responders / mean non-responders; NaN when that mean is 0),
        ``mean_responder``, ``mean_non_responder``, ``n``, ``n_responder``, ``p``
        (scipy's ``mannwhitneyu``, exact for small untied samples, else normal with tie and
        continuity correction).
    """
    label = responder.reindex(values.index).to_numpy()
    rows = []
    for name in values.columns:
        x = values[name].to_numpy(np.float64)
        pos = x[(label == 1) & np.isfinite(x)]
        neg = x[(label == 0) & np.isfinite(x)]
        row = {"feature": name, "test": "mann_whitney", "effect_name": "auc",
               "n": len(pos) + len(neg), "n_responder": len(pos)}
        if len(pos) >= min_group and len(neg) >= min_group:
            result = stats.mannwhitneyu(pos, neg, alternative="two-sided")
            auc, low, high = auc_delong(pos, neg, confidence)
            mean_pos, mean_neg = float(pos.mean()), float(neg.mean())
            row |= {"statistic": float(result.statistic), "effect": auc, "ci_low": low,
                    "ci_high": high, "cliffs_delta": 2 * auc - 1, "cliffs_low": 2 * low - 1,
                    "cliffs_high": 2 * high - 1, "mean_responder": mean_pos,
                    "mean_non_responder": mean_neg,
                    "fold_change": mean_pos / mean_neg if mean_neg != 0 else np.nan,
                    "p": float(result.pvalue)}
        rows.append(row)
    return pd.DataFrame(rows)


def mixed_model_table(values: pd.DataFrame, responder: pd.Series, patient: pd.Series,
                      min_group: int = 3, confidence: float = 0.95) -> pd.DataFrame:
    """Per feature: linear mixed model ``z ~ responder + (1 | patient)`` over images.

    The feature is standardised over the images (z-score, ddof = 0) and fitted with
    statsmodels ``MixedLM`` (REML, a random intercept per patient), as spicyR models a spatial
    metric with a subject random effect. The responder coefficient is the difference in
    feature SDs between responders and non-responders, adjusted for the correlation of a
    patient's images; p is its Wald test.

    Parameters
    ----------
    values
        Images × features.
    responder
        1.0 / 0.0 / NaN per image (constant within a patient).
    patient
        Patient id per image.
    min_group, confidence
        Fewest patients per group for a fit; level of the Wald interval.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``test`` = ``mixed_model``, ``statistic`` (Wald z), ``effect``
        (coefficient, SD units), ``ci_low``, ``ci_high``, ``effect_name`` =
        ``difference_sd``, ``n`` (images), ``n_patients``, ``converged``, ``p``. Features
        whose fit fails get NaN.

    Notes
    -----
    One REML fit per feature: O(features × iterations × images).
    """
    import statsmodels.formula.api as smf

    label = responder.reindex(values.index).to_numpy()
    groups = patient.reindex(values.index).astype(str).to_numpy()
    z_crit = stats.norm.ppf(0.5 + confidence / 2)
    rows = []
    for name in values.columns:
        x = values[name].to_numpy(np.float64)
        keep = np.isfinite(x) & np.isfinite(label)
        row = {"feature": name, "test": "mixed_model", "effect_name": "difference_sd",
               "n": int(keep.sum()), "n_patients": len(np.unique(groups[keep]))}
        per_group = pd.Series(label[keep]).groupby(groups[keep]).first()
        sd = x[keep].std()
        if min((per_group == 1).sum(), (per_group == 0).sum()) >= min_group and sd > 0:
            data = pd.DataFrame({"z": (x[keep] - x[keep].mean()) / sd,
                                 "responder": label[keep], "patient": groups[keep]})
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit = smf.mixedlm("z ~ responder", data, groups=data["patient"]).fit(
                        reml=True)
                coef = float(fit.params["responder"])
                se = float(fit.bse["responder"])
                row |= {"statistic": coef / se, "effect": coef, "ci_low": coef - z_crit * se,
                        "ci_high": coef + z_crit * se, "converged": bool(fit.converged),
                        "p": float(fit.pvalues["responder"])}
            except (np.linalg.LinAlgError, ValueError):
                row["converged"] = False
        rows.append(row)
    return pd.DataFrame(rows)
