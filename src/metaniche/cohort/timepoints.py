"""Trend of a feature across three or more ordered time points (or ordered groups).

Two designs, each a one-sided-free (two-sided) test of a monotone trend:

- **Repeated measures** (the same patients at every time point): Page's L test [1]_. Within
  each patient with a value at every time point, the values are ranked (midranks for ties);
  L = Σ_j j · R_j, R_j the rank sum of time point j over the n complete patients. Under no
  trend E[L] = n k (k + 1)² / 4 and, without ties, Var[L] = n k² (k + 1) (k² − 1) / 144;
  with ties the variance uses each patient's variance of its midranks,
  Var[L] = Σ_i Var(ranks_i) · Σ_j (j − (k+1)/2)² · k / (k − 1). z = (L − E) / sqrt(Var),
  p = 2 Φ(−|z|). The effect is Page's trend correlation ρ = mean over patients of the
  Spearman correlation between time and the patient's values.
- **Independent units** at ordered levels: the Jonckheere–Terpstra test [2]_ [3]_,
  J = Σ_{a<b} #{(x ∈ a, y ∈ b): x < y} + ½ #{x = y}, normal approximation with the tie
  correction of Lehmann (1975); effect Kendall's τ_b-like ratio (J − E[J]) / (Σ_{a<b} n_a n_b).

References
----------
.. [1] Page E.B. (1963) Ordered hypotheses for multiple treatments: a significance test for
   linear ranks. J Am Stat Assoc 58:216–230.
.. [2] Jonckheere A.R. (1954) A distribution-free k-sample test against ordered alternatives.
   Biometrika 41:133–145.
.. [3] Lehmann E.L. (1975) Nonparametrics: Statistical Methods Based on Ranks. Holden-Day
   (§5.3, variance with ties).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["jonckheere_terpstra", "page_trend_table"]


def page_trend_table(values: pd.DataFrame, patient: pd.Series, order: pd.Series,
                     min_patients: int = 3) -> pd.DataFrame:
    """Page's L trend test of every feature over ordered time points (module docstring).

    Parameters
    ----------
    values
        Samples × features (NaN missing).
    patient
        Patient of each sample (index of ``values``).
    order
        Time-point rank of each sample (0, 1, …, k − 1; NaN unknown). Several samples of a
        patient at one time point are averaged.
    min_patients
        Fewest complete patients (a finite value at every time point) for a test.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``test`` = ``page_trend``, ``statistic`` (L), ``z``, ``p``, ``effect``
        (mean within-patient Spearman ρ with time), ``effect_name`` = ``trend_rho``, ``n``
        (complete patients), ``df`` = k.
    """
    level = order.reindex(values.index)
    known = level.notna().to_numpy()
    k = int(level[known].max()) + 1 if known.any() else 0
    frame = values[known].copy()
    frame["__patient"] = patient.reindex(values.index)[known].to_numpy()
    frame["__level"] = level[known].astype(int).to_numpy()
    means = frame.groupby(["__patient", "__level"]).mean()
    rows = []
    weights = np.arange(1, k + 1, dtype=np.float64)
    centred = weights - (k + 1) / 2
    for name in values.columns:
        table = means[name].unstack("__level").reindex(columns=range(k))
        table = table[np.isfinite(table.to_numpy(np.float64)).all(axis=1)]
        x = table.to_numpy(np.float64)
        n = len(x)
        row = {"feature": name, "test": "page_trend", "effect_name": "trend_rho", "n": n,
               "df": k, "statistic": np.nan, "z": np.nan, "p": np.nan, "effect": np.nan}
        if k >= 3 and n >= max(min_patients, 2):
            ranks = stats.rankdata(x, axis=1)
            big_l = float(ranks.sum(axis=0) @ weights)
            expected = n * k * (k + 1) ** 2 / 4
            rank_var = ranks.var(axis=1)                       # per patient, ddof 0
            variance = float(rank_var.sum() * (centred**2).sum() * k / (k - 1))
            if variance > 0:
                z = (big_l - expected) / np.sqrt(variance)
                rho = [stats.spearmanr(weights, r).statistic for r in ranks if np.ptp(r) > 0]
                row |= {"statistic": big_l, "z": z, "p": float(2 * stats.norm.sf(abs(z))),
                        "effect": float(np.mean(rho)) if rho else np.nan}
        rows.append(row)
    return pd.DataFrame(rows)


def jonckheere_terpstra(x: np.ndarray, level: np.ndarray) -> tuple[float, float, float]:
    """Jonckheere–Terpstra J, its z (normal approximation with ties) and two-sided p.

    Parameters
    ----------
    x
        (n,) values (finite).
    level
        (n,) ordered group ranks (integers; larger = later).

    Returns
    -------
    statistic, z, p
    """
    x = np.asarray(x, np.float64)
    level = np.asarray(level)
    groups = np.unique(level)
    sizes = np.array([np.sum(level == g) for g in groups], dtype=np.float64)
    big_j = 0.0
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            xa, xb = x[level == a][:, None], x[level == b][None, :]
            big_j += float(np.sum(xa < xb) + 0.5 * np.sum(xa == xb))
    n = sizes.sum()
    _, ties = np.unique(x, return_counts=True)
    ties = ties.astype(np.float64)
    expected = (n**2 - np.sum(sizes**2)) / 4
    variance = ((n * (n - 1) * (2 * n + 5) - np.sum(sizes * (sizes - 1) * (2 * sizes + 5))
                 - np.sum(ties * (ties - 1) * (2 * ties + 5))) / 72
                + np.sum(sizes * (sizes - 1) * (sizes - 2)) * np.sum(ties * (ties - 1) * (ties - 2))
                / (36 * n * (n - 1) * (n - 2))
                + np.sum(sizes * (sizes - 1)) * np.sum(ties * (ties - 1)) / (8 * n * (n - 1)))
    if variance <= 0:
        return big_j, float("nan"), float("nan")
    z = (big_j - expected) / np.sqrt(variance)
    return big_j, float(z), float(2 * stats.norm.sf(abs(z)))
