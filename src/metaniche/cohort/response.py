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
5. Hodges JL, Lehmann EL. Estimates of location based on rank tests. Ann Math Stat.
   1963;34:598-611; interval by inverting the Mann–Whitney test: Bauer DF. Constructing
   confidence sets using rank statistics. J Am Stat Assoc. 1972;67:687-90.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special, stats

from metaniche.cohort.mixed import mixed_model_groups

__all__ = ["auc_delong", "hodges_lehmann", "mann_whitney_table", "mixed_model_table"]


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


def hodges_lehmann(positive: np.ndarray, negative: np.ndarray,
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """Hodges–Lehmann shift of ``positive`` over ``negative`` with its rank interval.

    The shift is the median of the m·n differences ``positive[i] - negative[j]`` (in the
    feature's units). The interval is [D_(C), D_(mn+1-C)] over the sorted differences with
    C = floor(mn/2 − z·sqrt(mn(m+n+1)/12)) + 1 (1-based): the shifts d for which the
    two-sided Mann–Whitney test of ``positive - d`` against ``negative`` (normal
    approximation without continuity or tie correction) does not reject at level
    1 − ``confidence``. NaN bounds when C < 1 (too few values for the level).
    O(mn log mn).
    """
    diffs = np.sort(np.subtract.outer(positive, negative).ravel())
    mn = diffs.size
    if mn == 0:
        return float("nan"), float("nan"), float("nan")
    m, n = len(positive), len(negative)
    z = stats.norm.ppf(0.5 + confidence / 2)
    c = int(np.floor(mn / 2 - z * np.sqrt(mn * (m + n + 1) / 12))) + 1
    if c < 1:
        return float(np.median(diffs)), float("nan"), float("nan")
    return float(np.median(diffs)), float(diffs[c - 1]), float(diffs[mn - c])


def mann_whitney_table(values: pd.DataFrame, responder: pd.Series, min_group: int = 3,
                       confidence: float = 0.95) -> pd.DataFrame:
    """Per feature: two-sided Mann–Whitney U of responders vs non-responders.

    "Responder" is the compared level of any two-group contrast and "non-responder" its
    reference (see :func:`metaniche.cohort.matrix.response_contrast`).

    Parameters
    ----------
    values
        Units (patients or samples) × features; NaN is missing.
    responder
        1.0 responder (compared level), 0.0 non-responder (reference), NaN unknown; same
        index as ``values``.
    min_group
        Features with fewer finite values than this in either group get NaN statistics.
    confidence
        Level of the AUC interval.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``test`` = ``mann_whitney``, ``effect_name`` = ``auc``, ``n``,
        ``n_responder``, ``statistic`` (U of the responders), ``effect`` (AUC: probability
        a responder's value exceeds a non-responder's, ties ½), ``ci_low``, ``ci_high``
        (DeLong, :func:`auc_delong`), ``cliffs_delta`` (2·AUC − 1, with
        ``cliffs_low``/``cliffs_high`` from the AUC interval), ``mean_responder``,
        ``mean_non_responder``, ``fold_change`` (mean responders / mean non-responders; NaN
        when that mean is 0), ``hl_shift`` with ``hl_low`` / ``hl_high`` (Hodges–Lehmann
        shift of responders over non-responders in the feature's units and its rank
        interval, :func:`hodges_lehmann`), ``p`` (as scipy's ``mannwhitneyu`` with
        ``method='auto'``: exact when a group has at most 8 values and there are no ties,
        else the normal approximation with tie and continuity correction).

    Notes
    -----
    Vectorised over features (midranks of each column over its finite values); the exact
    small-sample p-values and the Hodges–Lehmann shifts are computed per tested feature.
    O(n_responder · n_non_responder · log × features).
    """
    label = responder.reindex(values.index).to_numpy(np.float64)
    x = values.to_numpy(np.float64)
    finite = np.isfinite(x)
    pos = finite & (label == 1)[:, None]
    neg = finite & (label == 0)[:, None]
    n_pos, n_neg = pos.sum(axis=0), neg.sum(axis=0)
    used = pos | neg
    pooled = _midranks(np.where(used, x, np.nan))
    low_rank = stats.rankdata(np.where(used, x, np.nan), "min", axis=0, nan_policy="omit")
    high_rank = stats.rankdata(np.where(used, x, np.nan), "max", axis=0, nan_policy="omit")
    tie_size = np.where(used, high_rank - low_rank + 1, 1.0)
    tie_term = (tie_size ** 2 - 1).sum(axis=0)  # Σ over tie groups of t³ − t
    rank_sum = np.where(pos, pooled, 0.0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        u_pos = rank_sum - n_pos * (n_pos + 1) / 2
        # DeLong structural components (see auc_delong)
        v10 = np.where(pos, (pooled - _midranks(np.where(pos, x, np.nan))) / n_neg, 0.0)
        v01 = np.where(neg, 1.0 - (pooled - _midranks(np.where(neg, x, np.nan))) / n_pos, 0.0)
        auc = v10.sum(axis=0) / n_pos
        var = (_group_variance(v10, pos, n_pos) / n_pos
               + _group_variance(v01, neg, n_neg) / n_neg)
        half = stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(var)
        low, high = np.maximum(0.0, auc - half), np.minimum(1.0, auc + half)
        mean_pos = np.where(pos, x, 0.0).sum(axis=0) / n_pos
        mean_neg = np.where(neg, x, 0.0).sum(axis=0) / n_neg
        fold_change = np.where(mean_neg != 0, mean_pos / mean_neg, np.nan)
        n = n_pos + n_neg
        u_max = np.maximum(u_pos, n_pos * n_neg - u_pos)
        spread = np.sqrt(n_pos * n_neg / 12 * ((n + 1) - tie_term / (n * (n - 1))))
        z = (u_max - n_pos * n_neg / 2 - 0.5) / spread
    p = np.clip(2 * special.ndtr(-z), 0.0, 1.0)
    tested = (n_pos >= min_group) & (n_neg >= min_group)
    exact = tested & (np.minimum(n_pos, n_neg) <= 8) & (tie_term == 0)
    # The exact p depends only on (n_responder, n_non_responder, U): one scipy call per
    # distinct triple (12 demo samples: 1,992 calls before, at most 37 U values per split).
    exact_p: dict[tuple[int, int, float], float] = {}
    for j in np.flatnonzero(exact):
        key = (int(n_pos[j]), int(n_neg[j]), float(u_pos[j]))
        if key not in exact_p:
            exact_p[key] = stats.mannwhitneyu(x[pos[:, j], j], x[neg[:, j], j],
                                              alternative="two-sided", method="exact").pvalue
        p[j] = exact_p[key]

    shift = np.full((3, x.shape[1]), np.nan)
    for j in np.flatnonzero(tested):
        shift[:, j] = hodges_lehmann(x[pos[:, j], j], x[neg[:, j], j], confidence)

    def kept(array: np.ndarray) -> np.ndarray:
        return np.where(tested, array, np.nan)
    return pd.DataFrame({
        "feature": values.columns, "test": "mann_whitney", "effect_name": "auc",
        "n": n.astype(np.int64), "n_responder": n_pos.astype(np.int64),
        "statistic": kept(u_pos), "effect": kept(auc), "ci_low": kept(low),
        "ci_high": kept(high), "cliffs_delta": kept(2 * auc - 1),
        "cliffs_low": kept(2 * low - 1), "cliffs_high": kept(2 * high - 1),
        "mean_responder": kept(mean_pos), "mean_non_responder": kept(mean_neg),
        "fold_change": kept(fold_change), "hl_shift": shift[0], "hl_low": shift[1],
        "hl_high": shift[2], "p": kept(p)})


def _midranks(x: np.ndarray) -> np.ndarray:
    """Average ranks of each column over its finite values (NaN stays NaN)."""
    return stats.rankdata(x, "average", axis=0, nan_policy="omit")


def _group_variance(component: np.ndarray, member: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Per-column variance (ddof = 1) of ``component`` over ``member`` rows; 0 for one row."""
    mean = component.sum(axis=0) / size
    squares = np.where(member, (component - mean) ** 2, 0.0).sum(axis=0)
    return np.where(size > 1, squares / np.maximum(size - 1, 1), 0.0)


def mixed_model_table(values: pd.DataFrame, responder: pd.Series, patient: pd.Series,
                      min_group: int = 3, confidence: float = 0.95) -> pd.DataFrame:
    """Per feature: linear mixed model ``z ~ responder + (1 | patient)`` over images.

    The two-group case of :func:`metaniche.cohort.mixed.mixed_model_groups` (see there: the
    feature z-scored over its finite images, statsmodels ``MixedLM``, REML, a random
    intercept per patient, Wald t on patients − 2 degrees of freedom), as spicyR models a
    spatial metric with a subject random effect. The responder coefficient is the
    difference in feature SDs between responders and non-responders, adjusted for the
    correlation of a patient's images.

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
        ``feature``, ``test`` = ``mixed_model``, ``statistic`` (Wald t), ``df``, ``effect``
        (coefficient, SD units), ``ci_low``, ``ci_high``, ``effect_name`` =
        ``difference_sd``, ``n`` (images), ``n_patients``, ``converged``, ``p``. Features
        whose fit fails get NaN.
    """
    code = responder.map({1.0: "1", 0.0: "0"})
    table = mixed_model_groups(values, code, ("0", "1"), patient, min_group, confidence)
    return table.drop(columns=["contrast"])
