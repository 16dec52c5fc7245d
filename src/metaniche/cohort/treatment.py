"""Treatment remodelling: paired pre/post change per feature, and its interaction with response.

References
----------
1. Wilcoxon F. Individual comparisons by ranking methods. Biometrics Bull. 1945;1:80-3.
2. Kerby DS. The simple difference formula: an approach to teaching nonparametric
   correlation. Compr Psychol. 2014;3:11.IT.3.1 (matched-pairs rank-biserial correlation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from metaniche.analyses.compartments import COMPARTMENTS, WHOLE
from metaniche.cohort.response import mann_whitney_table

__all__ = ["REGIONS", "feature_region", "paired_changes", "treatment_table"]

#: Compartment qualifiers recognised in feature names, for region-stratified reporting.
REGIONS: tuple[str, ...] = (*COMPARTMENTS, WHOLE)


def feature_region(name: str) -> str:
    """The compartment a feature is measured in (``density.border.CD8_T`` → ``border``).

    The first dotted qualifier that is one of :data:`REGIONS`; ``""`` when none is.
    """
    for part in name.split(".")[1:]:
        if part in REGIONS:
            return part
    return ""


def paired_changes(values: pd.DataFrame, patient: pd.Series, timepoint: pd.Series,
                   pre: str, post: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per patient with both time points: the pre and post feature means.

    Several images of a patient at one time point are averaged (NaN ignored).

    Returns
    -------
    pre_values, post_values : pandas.DataFrame
        Index ``patient`` (the same patients, sorted), one column per feature.
    """
    point = timepoint.reindex(values.index).astype(str).to_numpy()
    who = patient.reindex(values.index).astype(str).to_numpy()
    before = values[point == pre].groupby(who[point == pre]).mean()
    after = values[point == post].groupby(who[point == post]).mean()
    both = before.index.intersection(after.index).sort_values()
    before, after = before.loc[both], after.loc[both]
    before.index.name = after.index.name = "patient"
    return before, after


def treatment_table(before: pd.DataFrame, after: pd.DataFrame,
                    responder: pd.Series | None = None, min_pairs: int = 5,
                    min_group: int = 3, confidence: float = 0.95) -> pd.DataFrame:
    """Per feature: Wilcoxon signed-rank test of post − pre, and the change by response.

    Parameters
    ----------
    before, after
        Paired patient × feature tables (same index and columns).
    responder
        1.0 / 0.0 per patient; when given, adds the interaction rows.
    min_pairs
        Fewest non-missing pairs for the signed-rank test.
    min_group, confidence
        Passed to the Mann–Whitney test of the change between response groups.

    Returns
    -------
    pandas.DataFrame
        Signed-rank rows: ``outcome`` = ``treatment``, ``test`` = ``wilcoxon_signed_rank``,
        ``statistic`` (scipy's W, the smaller signed-rank sum; zero differences dropped,
        Wilcox's method), ``effect`` (matched-pairs rank-biserial correlation
        (T⁺ − T⁻)/(T⁺ + T⁻) in [−1, 1], positive = higher after treatment),
        ``effect_name`` = ``rank_biserial``, ``median_change`` (post − pre, feature units),
        ``fold_change`` (mean post / mean pre), ``n`` (pairs), ``p`` (two-sided; exact for
        small untied samples, else normal approximation). Interaction rows: ``outcome`` =
        ``treatment_x_response``, ``test`` = ``change_mann_whitney`` — the Mann–Whitney
        test/AUC of the change between responders and non-responders (see
        :func:`metaniche.cohort.response.mann_whitney_table`). Every row has ``region``.
    """
    rows = []
    for name in before.columns:
        diff = (after[name] - before[name]).to_numpy(np.float64)
        diff = diff[np.isfinite(diff)]
        row = {"feature": name, "outcome": "treatment", "test": "wilcoxon_signed_rank",
               "effect_name": "rank_biserial", "n": len(diff)}
        nonzero = diff[diff != 0]
        if len(diff) >= min_pairs and len(nonzero):
            ranks = stats.rankdata(np.abs(nonzero))
            plus, minus = ranks[nonzero > 0].sum(), ranks[nonzero < 0].sum()
            result = stats.wilcoxon(nonzero)
            mean_pre = float(before[name].mean())
            row |= {"statistic": float(result.statistic),
                    "effect": float((plus - minus) / (plus + minus)),
                    "median_change": float(np.median(diff)),
                    "fold_change": (float(after[name].mean()) / mean_pre if mean_pre != 0
                                    else np.nan),
                    "p": float(result.pvalue)}
        rows.append(row)
    table = pd.DataFrame(rows)
    if responder is not None:
        change = after - before
        interaction = mann_whitney_table(change, responder, min_group, confidence)
        interaction.insert(1, "outcome", "treatment_x_response")
        interaction["test"] = "change_mann_whitney"
        table = pd.concat([table, interaction], ignore_index=True)
    table["region"] = table["feature"].map(feature_region)
    return table
