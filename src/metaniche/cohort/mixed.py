"""Linear mixed models of a feature on groups with a patient random intercept.

References
----------
1. Laird NM, Ware JH. Random-effects models for longitudinal data. Biometrics.
   1982;38:963-74.
2. Canete NP, et al. spicyR: spatial analysis of in situ cytometry data in R. Bioinformatics.
   2022;38:3099-105 (mixed model with a subject random intercept).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["mixed_model_groups"]


def mixed_model_groups(values: pd.DataFrame, labels: pd.Series, levels: tuple[str, ...],
                       patient: pd.Series, min_group: int = 3,
                       confidence: float = 0.95) -> pd.DataFrame:
    """Per feature: ``z ~ group + (1 | patient)`` over images, each group against the first.

    The feature is standardised over the images where it is finite and the group is known
    (z-score, ddof = 0) and fitted with statsmodels ``MixedLM`` (REML, a random intercept per
    patient, treatment coding against ``levels[0]``), as spicyR models a spatial metric with
    a subject random effect. Each coefficient is the difference in feature SDs between a
    group and the reference, adjusted for the correlation of a patient's images; p is its
    two-sided Wald z test. With three or more groups an omnibus row tests all coefficients
    at once (Wald χ² = b'V⁻¹b on ``len(levels) - 1`` degrees of freedom, V the REML
    covariance of the fixed effects).

    Parameters
    ----------
    values
        Images × features; NaN is missing (each feature is fitted on its finite images).
    labels
        Group of each image (one of ``levels``; constant within a patient), NaN unknown.
    levels
        The groups, reference first.
    patient
        Patient id per image.
    min_group
        Fewest patients with a finite value per group for a fit; else the rows are NaN.
    confidence
        Level of the Wald intervals.

    Returns
    -------
    pandas.DataFrame
        Per feature and non-reference level: ``feature``, ``test`` = ``mixed_model``,
        ``contrast`` = ``"<level> vs <reference>"``, ``statistic`` (Wald z), ``effect``
        (coefficient, SD units), ``ci_low``, ``ci_high``, ``effect_name`` =
        ``difference_sd``, ``n`` (images), ``n_patients``, ``converged``, ``p``; with three
        or more levels also a row ``test`` = ``mixed_model_omnibus``, ``contrast`` = the
        levels joined by `` / ``, ``statistic`` = Wald χ², ``df``, ``p`` (no effect).
        Rows of a feature whose fit fails or lacks patients hold NaN.

    Notes
    -----
    One REML fit per feature: O(features × iterations × images).
    """
    import statsmodels.api as sm

    label = labels.reindex(values.index).to_numpy(dtype=object)
    known = ~pd.isna(label)
    code = np.full(len(label), -1)
    for j, level in enumerate(levels):
        code[known & (label == level)] = j
    groups = patient.reindex(values.index).astype(str).to_numpy()
    z_crit = stats.norm.ppf(0.5 + confidence / 2)
    k = len(levels)
    everyone = " / ".join(levels)
    rows: list[dict] = []
    for name in values.columns:
        x = values[name].to_numpy(np.float64)
        keep = np.isfinite(x) & (code >= 0)
        base = {"feature": name, "n": int(keep.sum()),
                "n_patients": len(np.unique(groups[keep]))}
        level_rows = [base | {"test": "mixed_model", "effect_name": "difference_sd",
                              "contrast": f"{level} vs {levels[0]}"} for level in levels[1:]]
        omnibus = (base | {"test": "mixed_model_omnibus", "effect_name": "",
                           "contrast": everyone, "df": k - 1}) if k > 2 else None
        per_patient = pd.Series(code[keep]).groupby(groups[keep]).first()
        counts = np.bincount(per_patient.to_numpy(np.int64), minlength=k)
        sd = x[keep].std()
        if counts.min() >= min_group and sd > 0:
            z = (x[keep] - x[keep].mean()) / sd
            exog = np.column_stack([np.ones(keep.sum())]
                                   + [(code[keep] == j).astype(np.float64) for j in range(1, k)])
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit = sm.MixedLM(z, exog, groups=groups[keep]).fit(reml=True)
                coef = np.asarray(fit.fe_params, np.float64)[1:]
                cov = np.asarray(fit.cov_params(), np.float64)[1:k, 1:k]
                se = np.sqrt(np.diag(cov))
                for j, row in enumerate(level_rows):
                    row |= {"statistic": coef[j] / se[j], "effect": coef[j],
                            "ci_low": coef[j] - z_crit * se[j],
                            "ci_high": coef[j] + z_crit * se[j],
                            "converged": bool(fit.converged),
                            "p": float(2 * stats.norm.sf(abs(coef[j] / se[j])))}
                if omnibus is not None:
                    chi2 = float(coef @ np.linalg.solve(cov, coef))
                    omnibus |= {"statistic": chi2, "converged": bool(fit.converged),
                                "p": float(stats.chi2.sf(chi2, k - 1))}
            except (np.linalg.LinAlgError, ValueError):
                for row in level_rows:
                    row["converged"] = False
        rows.extend(level_rows)
        if omnibus is not None:
            rows.append(omnibus)
    return pd.DataFrame(rows)
