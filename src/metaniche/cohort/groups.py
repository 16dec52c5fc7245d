"""Features across two or more unpaired groups: the one group-comparison rule.

Any contrast (responder vs non-responder, treatment arms vs sham, primary tumour vs
metastasis) goes through :func:`compare_groups`: a rank test on the independent units
(patient means when patients have several images), Mann–Whitney for every pair of groups with
its AUC and rank-biserial effect, Kruskal–Wallis with epsilon² across three or more groups,
and, when patients have several images, a mixed model on the images with a patient random
intercept. Each feature is tested on the units where it is finite; ``n`` says how many.

References
----------
1. Kruskal WH, Wallis WA. Use of ranks in one-criterion variance analysis. J Am Stat Assoc.
   1952;47:583-621.
2. Tomczak M, Tomczak E. The need to report effect size estimates revisited. An overview of
   some recommended measures of effect size. Trends Sport Sci. 2014;1:19-25 (epsilon²).
3. Cliff N. Dominance statistics: ordinal analyses to answer ordinal questions. Psychol Bull.
   1993;114:494-509 (rank-biserial / Cliff's delta).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from metaniche.cohort.mixed import mixed_model_groups
from metaniche.cohort.response import mann_whitney_table
from metaniche.io.clinical import Groups

__all__ = ["MIXED_UNIT", "compare_groups", "kruskal_wallis_table"]

#: ``unit`` of the association rows fitted on images with a patient random intercept.
MIXED_UNIT = "image+patient random effect"


def kruskal_wallis_table(values: pd.DataFrame, labels: pd.Series, levels: tuple[str, ...],
                         min_group: int = 3) -> pd.DataFrame:
    """Per feature: Kruskal–Wallis H across the groups, with epsilon².

    H = [12 / (N(N+1)) Σ_g R_g² / n_g − 3(N+1)] / [1 − Σ(t³ − t) / (N³ − N)] over the
    midranks of the feature's finite values (R_g the rank sum of group g, t the tie sizes),
    as :func:`scipy.stats.kruskal`; p from χ² with k − 1 degrees of freedom.

    Parameters
    ----------
    values
        Units × features; NaN is missing.
    labels
        Group of each unit (one of ``levels``), NaN unknown; index of ``values``.
    levels
        The groups (k ≥ 2).
    min_group
        A feature is tested only when every group has at least this many finite values;
        else its statistics are NaN.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``test`` = ``kruskal_wallis``, ``contrast`` (the levels joined by
        `` / ``), ``statistic`` (H), ``df`` (k − 1), ``p``, ``effect`` (epsilon² =
        H / (N − 1), the share of rank variance between groups, 0 to 1; Tomczak & Tomczak
        2014), ``effect_name`` = ``epsilon_squared``, ``ci_low``/``ci_high`` NaN (no closed
        form; the pairwise Mann–Whitney rows carry intervals), ``n`` (finite units),
        ``group_n`` (``"<level>=<n>, …"``).

    Notes
    -----
    Vectorised over features. O(N log N × features).
    """
    label = labels.reindex(values.index).to_numpy(dtype=object)
    x = values.to_numpy(np.float64)
    finite = np.isfinite(x)
    members = [finite & (label == level)[:, None] for level in levels]
    sizes = np.array([m.sum(axis=0) for m in members])  # k × features
    used = np.logical_or.reduce(members)
    masked = np.where(used, x, np.nan)
    ranks = stats.rankdata(masked, "average", axis=0, nan_policy="omit")
    low = stats.rankdata(masked, "min", axis=0, nan_policy="omit")
    high = stats.rankdata(masked, "max", axis=0, nan_policy="omit")
    tie_size = np.where(used, high - low + 1, 1.0)
    tie_term = (tie_size ** 2 - 1).sum(axis=0)  # Σ over tie groups of t³ − t
    n = sizes.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = sum(np.where(m, ranks, 0.0).sum(axis=0) ** 2 / s
                      for m, s in zip(members, sizes, strict=True))
        h = (12.0 / (n * (n + 1)) * between - 3 * (n + 1)) / (1 - tie_term / (n ** 3 - n))
        epsilon = h / (n - 1)
    tested = (sizes >= min_group).all(axis=0) & (tie_term < n ** 3 - n)
    k = len(levels)
    p = stats.chi2.sf(h, k - 1)

    def kept(array: np.ndarray) -> np.ndarray:
        return np.where(tested, array, np.nan)
    group_n = [", ".join(f"{level}={int(c)}" for level, c in zip(levels, column, strict=True))
               for column in sizes.T]
    return pd.DataFrame({
        "feature": values.columns, "test": "kruskal_wallis", "contrast": " / ".join(levels),
        "statistic": kept(h), "df": k - 1, "p": kept(p), "effect": kept(epsilon),
        "effect_name": "epsilon_squared", "ci_low": np.nan, "ci_high": np.nan,
        "n": n.astype(np.int64), "group_n": group_n})


def compare_groups(units: pd.DataFrame, groups: Groups, unit: str,
                   images: pd.DataFrame | None = None, image_groups: Groups | None = None,
                   patient: pd.Series | None = None, min_group: int = 3,
                   confidence: float = 0.95,
                   image_weights: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every per-feature comparison of unpaired groups, each row naming its unit.

    Parameters
    ----------
    units
        Independent units × features: samples (one per patient) or patient means.
    groups
        Group of each unit (index of ``units``) and the levels, reference first.
    unit
        What a row of ``units`` is (``sample`` or ``patient``), the ``unit`` of the rank-test
        rows.
    images, image_groups, patient
        Images × features, the group of each image and its patient; when given (patients
        with several images) a mixed model with a patient random intercept is fitted on the
        images (:func:`metaniche.cohort.mixed.mixed_model_groups`), ``unit`` =
        :data:`MIXED_UNIT`.
    min_group
        Fewest finite units (for the mixed model: patients) per compared group.
    confidence
        Level of the intervals.
    image_weights
        Optional images × features weights of the mixed model (spicyR's count weights,
        :func:`metaniche.cohort.count_weights.pair_count_weights`): those features are fitted
        with spicyR's weighted model (``weighting`` = ``counts``).

    Returns
    -------
    pandas.DataFrame
        Rows with ``test``:

        - ``mann_whitney``: one per feature and pair of groups (``contrast`` =
          ``"<later> vs <earlier>"`` in ``groups.levels`` order), two-sided Mann–Whitney U
          on the units where the feature is finite, effect = AUC (P(later > earlier), ties ½)
          with DeLong's interval, ``cliffs_delta`` = rank-biserial correlation 2·AUC − 1
          with the interval mapped from the AUC's (closed form, no bootstrap), and the
          Hodges–Lehmann shift in the feature's units with its rank interval
          (``hl_shift``, ``hl_low``, ``hl_high``); columns
          ``*_responder`` / ``*_non_responder`` hold the later / earlier group
          (:func:`metaniche.cohort.response.mann_whitney_table`);
        - ``kruskal_wallis`` (three or more groups): one per feature
          (:func:`kruskal_wallis_table`);
        - ``mixed_model`` (per non-reference group) and ``mixed_model_omnibus`` (three or
          more groups) when ``images`` is given.

        Every row has ``unit`` and ``n`` (the units, or images, the test used).
    """
    levels = groups.levels
    parts: list[pd.DataFrame] = []
    if len(levels) > 2:
        parts.append(kruskal_wallis_table(units, groups.labels, levels, min_group))
    label = groups.labels.reindex(units.index)
    for i, earlier in enumerate(levels):
        for later in levels[i + 1:]:
            code = pd.Series(np.where(label == later, 1.0,
                                      np.where(label == earlier, 0.0, np.nan)),
                             index=units.index)
            pair = mann_whitney_table(units, code, min_group, confidence)
            parts.append(pair.assign(contrast=f"{later} vs {earlier}"))
    table = pd.concat(parts, ignore_index=True).assign(unit=unit)
    if images is None or image_groups is None or patient is None:
        return table
    mixed = mixed_model_groups(images, image_groups.labels, levels, patient, min_group,
                               confidence, weights=image_weights)
    return pd.concat([table, mixed.assign(unit=MIXED_UNIT)], ignore_index=True)
