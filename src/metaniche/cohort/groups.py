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

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from metaniche.cohort.mixed import mixed_model_groups
from metaniche.cohort.response import mann_whitney_table
from metaniche.io.clinical import Groups

__all__ = ["MIXED_UNIT", "compare_groups", "kruskal_wallis_table"]

#: ``unit`` of the association rows fitted on images with a patient random intercept.
MIXED_UNIT = "image+patient random effect"


def _midranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Midranks (1-based) of every column's finite values and the size of each value's tie
    group; NaN entries get NaN ranks (``scipy.stats.rankdata(..., nan_policy="omit")``
    column by column, which loops in Python over columns: this sorts all at once).
    """
    n, n_cols = x.shape
    order = np.argsort(x, axis=0, kind="stable")          # NaN last
    ordered = np.take_along_axis(x, order, axis=0)
    index = np.broadcast_to(np.arange(n)[:, None], (n, n_cols))
    starts = np.ones((n, n_cols), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]              # NaN != NaN: each NaN its own group
    ends = np.ones((n, n_cols), dtype=bool)
    ends[:-1] = starts[1:]
    first = np.maximum.accumulate(np.where(starts, index, 0), axis=0)
    last = np.minimum.accumulate(np.where(ends, index, n - 1)[::-1], axis=0)[::-1]
    ranks = np.empty((n, n_cols))
    sizes = np.empty((n, n_cols))
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=0)
    np.put_along_axis(sizes, order, (last - first + 1).astype(np.float64), axis=0)
    return np.where(np.isfinite(x), ranks, np.nan), sizes


def _kruskal_h(x: np.ndarray, codes: np.ndarray, k: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """H, group sizes (k × F), N and the tie term of every column of ``x`` (units × F).

    ``codes`` in ``[0, k)`` or −1 (unit in no compared group); NaN values are left out.
    """
    finite = np.isfinite(x)
    members = [finite & (codes == g)[:, None] for g in range(k)]
    sizes = np.array([m.sum(axis=0) for m in members])  # k × features
    used = np.logical_or.reduce(members)
    ranks, tie_size = _midranks(np.where(used, x, np.nan))
    tie_size = np.where(used, tie_size, 1.0)
    tie_term = (tie_size ** 2 - 1).sum(axis=0)  # Σ over tie groups of t³ − t
    n = sizes.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = sum(np.where(m, ranks, 0.0).sum(axis=0) ** 2 / s
                      for m, s in zip(members, sizes, strict=True))
        h = (12.0 / (n * (n + 1)) * between - 3 * (n + 1)) / (1 - tie_term / (n ** 3 - n))
    return h, sizes, n, tie_term


def kruskal_wallis_table(values: pd.DataFrame, labels: pd.Series, levels: tuple[str, ...],
                         min_group: int = 3, confidence: float = 0.95,
                         n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per feature: Kruskal–Wallis H across the groups, with epsilon² and its interval.

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
    confidence
        Level of the epsilon² interval.
    n_bootstrap, seed
        Resamples of the stratified bootstrap of epsilon² and the seed of their generator
        (``numpy.random.default_rng(seed)``); 0 resamples leaves the interval NaN.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``test`` = ``kruskal_wallis``, ``contrast`` (the levels joined by
        `` / ``), ``statistic`` (H), ``df`` (k − 1), ``p``, ``effect`` (epsilon² =
        H / (N − 1), the share of rank variance between groups, 0 to 1; Tomczak & Tomczak
        2014), ``effect_name`` = ``epsilon_squared``, ``ci_low``/``ci_high`` (percentile
        interval of a bootstrap stratified by group: each group's units resampled with
        replacement, the same resample for every feature; epsilon² has no closed-form
        interval), ``n`` (finite units), ``group_n`` (``"<level>=<n>, …"``).

    Notes
    -----
    Vectorised over features: O(N log N × features) for the test and B times that for the
    interval.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> values = pd.DataFrame({"shifted": np.r_[rng.normal(0, 1, 10), rng.normal(0, 1, 10),
    ...                                         rng.normal(3, 1, 10)]})
    >>> labels = pd.Series(["a"] * 10 + ["b"] * 10 + ["c"] * 10)
    >>> row = kruskal_wallis_table(values, labels, ("a", "b", "c")).iloc[0]
    >>> bool(row["p"] < 0.001 and row["ci_low"] < row["effect"] < row["ci_high"])
    True
    """
    label = labels.reindex(values.index).to_numpy(dtype=object)
    codes = np.full(len(label), -1, dtype=np.int64)
    for g, level in enumerate(levels):
        codes[label == level] = g
    x = values.to_numpy(np.float64)
    k = len(levels)
    h, sizes, n, tie_term = _kruskal_h(x, codes, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        epsilon = h / (n - 1)
    tested = (sizes >= min_group).all(axis=0) & (tie_term < n ** 3 - n)
    p = stats.chi2.sf(h, k - 1)
    low = np.full(x.shape[1], np.nan)
    high = np.full(x.shape[1], np.nan)
    if n_bootstrap > 0 and tested.any():
        interval = _epsilon_interval(x[:, tested], codes, k, confidence, n_bootstrap, seed)
        if interval is not None:
            low[tested], high[tested] = interval

    def kept(array: np.ndarray) -> np.ndarray:
        return np.where(tested, array, np.nan)
    group_n = [", ".join(f"{level}={int(c)}" for level, c in zip(levels, column, strict=True))
               for column in sizes.T]
    return pd.DataFrame({
        "feature": values.columns, "test": "kruskal_wallis", "contrast": " / ".join(levels),
        "statistic": kept(h), "df": k - 1, "p": kept(p), "effect": kept(epsilon),
        "effect_name": "epsilon_squared", "ci_low": kept(low), "ci_high": kept(high),
        "n": n.astype(np.int64), "group_n": group_n})


def _epsilon_interval(x: np.ndarray, codes: np.ndarray, k: int, confidence: float,
                      n_bootstrap: int, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Percentile interval of epsilon² under a bootstrap stratified by group."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(codes == g) for g in range(k)]
    if any(len(members) == 0 for members in groups):
        return None
    draws = np.empty((n_bootstrap, x.shape[1]))
    sample_codes = np.concatenate([np.full(len(m), g) for g, m in enumerate(groups)])
    for b in range(n_bootstrap):
        picks = np.concatenate([rng.choice(members, len(members)) for members in groups])
        h, _, n, _ = _kruskal_h(x[picks], sample_codes, k)
        with np.errstate(divide="ignore", invalid="ignore"):
            draws[b] = h / (n - 1)
    tail = (1 - confidence) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a feature constant in every resample
        low, high = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
    return low, high


def compare_groups(units: pd.DataFrame, groups: Groups, unit: str,
                   images: pd.DataFrame | None = None, image_groups: Groups | None = None,
                   patient: pd.Series | None = None, min_group: int = 3,
                   confidence: float = 0.95,
                   image_weights: pd.DataFrame | None = None, n_bootstrap: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
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
    n_bootstrap, seed
        Bootstrap resamples and seed of the epsilon² interval (:func:`kruskal_wallis_table`).

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
        parts.append(kruskal_wallis_table(units, groups.labels, levels, min_group, confidence,
                                          n_bootstrap, seed))
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
