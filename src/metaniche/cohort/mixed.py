"""Linear mixed models of a feature on groups with a patient random intercept.

References
----------
1. Laird NM, Ware JH. Random-effects models for longitudinal data. Biometrics.
   1982;38:963-74.
2. Pinheiro JC, Bates DM. Mixed-Effects Models in S and S-PLUS. Springer; 2000, §2.4.2
   (denominator degrees of freedom of between-group terms, as nlme's ``lme``).
3. Canete NP, et al. spicyR: spatial analysis of in situ cytometry data in R. Bioinformatics.
   2022;38:3099-105 (mixed model with a subject random intercept, images weighted by a
   smooth of their two cell counts).
4. Kuznetsova A, et al. lmerTest package: tests in linear mixed effects models. J Stat Softw.
   2017;82(13) (Satterthwaite degrees of freedom).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from metaniche.cohort.weighted_mixed import fit_weighted_mixed

__all__ = ["group_design", "level_codes", "mixed_model_groups"]


def level_codes(labels: pd.Series, levels: tuple[str, ...]) -> np.ndarray:
    """Index of each label in ``levels`` (reference 0), -1 for a missing or other label."""
    label = labels.to_numpy(dtype=object)
    known = ~pd.isna(label)
    code = np.full(len(label), -1)
    for j, level in enumerate(levels):
        code[known & (label == level)] = j
    return code


def group_design(code: np.ndarray, k: int) -> np.ndarray:
    """Design matrix of ``y ~ group``: an intercept and one indicator per non-reference level
    (``code`` from :func:`level_codes`, all ≥ 0), shape ``(len(code), k)``."""
    return np.column_stack([np.ones(len(code))]
                           + [(code == j).astype(np.float64) for j in range(1, k)])


def mixed_model_groups(values: pd.DataFrame, labels: pd.Series, levels: tuple[str, ...],
                       patient: pd.Series, min_group: int = 3,
                       confidence: float = 0.95,
                       weights: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per feature: ``z ~ group + (1 | patient)`` over images, each group against the first.

    The feature is standardised over the images where it is finite and the group is known
    (z-score, ddof = 0) and fitted with statsmodels ``MixedLM`` (REML, a random intercept per
    patient, treatment coding against ``levels[0]``), as spicyR models a spatial metric with
    a subject random effect. Each coefficient is the difference in feature SDs between a
    group and the reference, adjusted for the correlation of a patient's images; its test
    is the two-sided Wald t = b / se on the between-patient degrees of freedom
    df = patients − k (k = ``len(levels)`` fixed effects: intercept and k − 1 group
    contrasts), as nlme's ``lme`` gives a factor that is constant within patients (a normal
    reference would be liberal with few patients; the group must be constant within a
    patient). With three or more groups an omnibus row tests all coefficients at once:
    F = b'V⁻¹b / (k − 1) on (k − 1, patients − k) degrees of freedom, V the REML covariance
    of the fixed effects.

    Features with a column in ``weights`` are fitted as spicyR fits them instead
    (``lmerTest::lmer(x ~ group + (1 | patient), weights = w)``,
    :func:`metaniche.cohort.weighted_mixed.fit_weighted_mixed`): on the raw feature (effect in
    the feature's units, ``effect_name`` = ``difference``), each image's residual variance
    divided by its weight, REML, and the Wald t of each contrast on Satterthwaite degrees of
    freedom (lmerTest's), ``weighting`` = ``counts``; their omnibus F keeps the
    patients − k denominator.

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
        Fewest patients with a finite value per group for a fit (at least 1, and more
        patients than groups); else the rows are NaN.
    confidence
        Level of the Wald intervals (b ± t_{df} se).
    weights
        Optional images × features prior weights (spicyR's count weights,
        :func:`metaniche.cohort.count_weights.count_weights`); a feature without a column is
        fitted unweighted on the z-score.

    Returns
    -------
    pandas.DataFrame
        Per feature and non-reference level: ``feature``, ``test`` = ``mixed_model``,
        ``contrast`` = ``"<level> vs <reference>"``, ``statistic`` (Wald t), ``df``,
        ``effect`` (coefficient, SD units), ``ci_low``, ``ci_high``, ``effect_name`` =
        ``difference_sd``, ``n`` (images), ``n_patients``, ``converged``, ``p``; with three
        or more levels also a row ``test`` = ``mixed_model_omnibus``, ``contrast`` = the
        levels joined by `` / ``, ``statistic`` = F, ``df`` (numerator k − 1; the
        denominator is ``n_patients`` − k), ``p`` (no effect). Every row has ``weighting``
        (``none`` or ``counts``).
        Rows of a feature whose fit fails (or gives no positive variance of its
        coefficients; ``converged`` False) or lacks patients hold NaN.

    Notes
    -----
    One REML fit per feature: O(features × iterations × images).
    """
    import statsmodels.api as sm

    code = level_codes(labels.reindex(values.index), levels)
    groups = patient.reindex(values.index).astype(str).to_numpy()
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
        sd = float(x[keep].std()) if keep.any() else 0.0   # no value: no fit, no warning
        n_patients = base["n_patients"]
        df = n_patients - k
        weighted = weights is not None and name in weights.columns
        for row in level_rows + ([omnibus] if omnibus is not None else []):
            row["weighting"] = "counts" if weighted else "none"
        if weighted and counts.min() >= max(min_group, 1) and df > 0 and sd > 0:
            assert weights is not None  # weighted
            w = weights[name].reindex(values.index).to_numpy(np.float64)[keep]
            exog = group_design(code[keep], k)
            _weighted_rows(x[keep], exog, groups[keep], w, level_rows, omnibus, df, confidence)
        elif counts.min() >= max(min_group, 1) and df > 0 and sd > 0:
            z = (x[keep] - x[keep].mean()) / sd
            exog = group_design(code[keep], k)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit = sm.MixedLM(z, exog, groups=groups[keep]).fit(reml=True)
                coef = np.asarray(fit.fe_params, np.float64)[1:]
                cov = np.asarray(fit.cov_params(), np.float64)[1:k, 1:k]
                if not (np.all(np.isfinite(coef)) and np.all(np.diag(cov) > 0)):
                    raise ValueError("degenerate fit")  # no usable standard error
                se = np.sqrt(np.diag(cov))
                t_crit = stats.t.ppf(0.5 + confidence / 2, df)
                for j, row in enumerate(level_rows):
                    row |= {"statistic": coef[j] / se[j], "df": df, "effect": coef[j],
                            "ci_low": coef[j] - t_crit * se[j],
                            "ci_high": coef[j] + t_crit * se[j],
                            "converged": bool(fit.converged),
                            "p": float(2 * stats.t.sf(abs(coef[j] / se[j]), df))}
                if omnibus is not None:
                    f_stat = float(coef @ np.linalg.solve(cov, coef)) / (k - 1)
                    omnibus |= {"statistic": f_stat, "converged": bool(fit.converged),
                                "p": float(stats.f.sf(f_stat, k - 1, df))}
            except (np.linalg.LinAlgError, ValueError):
                for row in level_rows:
                    row["converged"] = False
        rows.extend(level_rows)
        if omnibus is not None:
            rows.append(omnibus)
    return pd.DataFrame(rows)


def _weighted_rows(x: np.ndarray, exog: np.ndarray, groups: np.ndarray, w: np.ndarray,
                   level_rows: list[dict], omnibus: dict | None, df_patients: int,
                   confidence: float) -> None:
    """Fill the rows of one feature from the weighted REML fit (spicyR's model)."""
    if not np.all(np.isfinite(w) & (w > 0)):
        for row in level_rows:
            row["converged"] = False
        return
    try:
        fit = fit_weighted_mixed(x, exog, groups, w)
    except (np.linalg.LinAlgError, ValueError):
        for row in level_rows:
            row["converged"] = False
        return
    for j, row in enumerate(level_rows, start=1):
        df = float(fit.df[j])
        t_crit = stats.t.ppf(0.5 + confidence / 2, df) if np.isfinite(df) else np.nan
        row |= {"statistic": fit.t[j], "df": df, "effect": fit.coef[j],
                "effect_name": "difference", "ci_low": fit.coef[j] - t_crit * fit.se[j],
                "ci_high": fit.coef[j] + t_crit * fit.se[j], "converged": True,
                "p": float(fit.p[j])}
    if omnibus is not None:
        coef, cov = fit.coef[1:], fit.cov[1:, 1:]
        k = len(coef) + 1
        f_stat = float(coef @ np.linalg.solve(cov, coef)) / (k - 1)
        omnibus |= {"statistic": f_stat, "converged": True,
                    "p": float(stats.f.sf(f_stat, k - 1, df_patients))}
