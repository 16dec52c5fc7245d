"""Cell states: marker states carried beside the lineage label, per compartment and band.

A *state* (config ``[states.<name>]``, :class:`metaniche.config.StateRule`) is a per-cell
boolean carried beside the cell's lineage label, so a macrophage stays a macrophage and may be
PD-L1+ and GPNMB+ at once. A state comes from

- a **marker** column: positive when the value is ``> threshold``, the threshold being a number
  in the column's units or chosen per sample over all the sample's cells by
  :func:`metaniche.phenotype.auto_threshold` (``otsu`` / ``gmm`` / ``valley``, as the gating
  panel does; 0/1 columns use 0.5), or per cohort (``cohort:otsu`` …, the same rule over the
  cells of every sample of the run: :mod:`metaniche.cohort.state_thresholds`); NaN values
  are negative;
- a **column** already holding a call: boolean, 0/1, or text whose ``positive`` values (default:
  values ending in ``+``, such as inForm's ``PDL1+``) mean positive;
- a **combination** ``all_of``: positive when every named state is.

A state limited to ``cell_types`` is never carried by other cells, and its table rows cover
those types only.

Tables
------
``states``: per lesion (null = whole sample) × compartment (``core``, ``border``,
``adjacent``, ``all``) × cell type × state, ``n_cells`` (cells of the type), ``n_positive``
(of them carrying the state), ``fraction = n_positive / n_cells`` (NaN without cells) and
``density_per_mm2 = n_positive / area`` (compartment tissue area of
:mod:`metaniche.analyses.compartments`; NaN without area).

``state_gradients``: whole sample, per cell type × state × signed-distance band (the bins of
:mod:`metaniche.analyses.gradients`), ``n_cells``, ``n_positive``, ``fraction``.
``state_gradient_stats``: the band trend of each type × state (:func:`state_trend_test`).

Ratios
------
:func:`density_ratios`: ``(n_A + c) / (n_B + c)`` per compartment, c the pseudocount
(``[states] pseudocount``, default 0.5 cell, the Haldane–Anscombe correction); the two
densities share the compartment's area, so this is the density ratio with half a cell added
to each count. NaN when the compartment has no area or neither type has a cell in it.

Trend along the border
----------------------
:func:`state_trend_test` fits a binomial GLM (logit link) of the positive count of every band
within ``|centre| <= window_um`` with the design of the gradients' trend test
(:func:`metaniche.analyses.gradients.trend_test`):
``logit p_k = b0 + b_out·[c_k > 0] + b1·|c_k| / 100 µm``. ``b1`` is the slope per 100 µm
*farther from the edge* on the logit scale (negative = the state is more frequent toward the
edge). When the Pearson dispersion exceeds
:data:`~metaniche.analyses.gradients.OVERDISPERSION_THRESHOLD` (extra-binomial variation
between bands, as a beta-binomial would have) the model is refitted quasi-binomially (Pearson
scale, McCullagh & Nelder 1989 §4.5), which widens the interval by the square root of the
dispersion, and its Wald statistic is referred to Student's t with the residual degrees of
freedom (the normal for the binomial fit). Confidence interval and two-sided p of the slope.
On 2,000 null draws (30 bands of 5–25 cells, p = 0.3) the binomial test rejects 4.7 % at
α = 0.05; with beta-distributed band fractions (Beta(3, 7), 40 cells per band) the
quasi-binomial test rejects 4.8 % (``tests/analyses/test_states.py`` checks 200 draws of
each).

References
----------
.. [1] McCullagh P., Nelder J.A. (1989) Generalized Linear Models, 2nd ed. Chapman & Hall.
.. [2] Haldane J.B.S. (1956) The estimation and significance of the logarithm of a ratio of
   frequencies. Ann Hum Genet 20:309–311.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from metaniche.analyses.compartments import COMPARTMENTS, WHOLE
from metaniche.analyses.gradients import OVERDISPERSION_THRESHOLD, _bin_index
from metaniche.config import (
    COHORT_THRESHOLD_PREFIX,
    DEFAULT_REGULATORY_PATTERN,
    StateRule,
    StatesParams,
)
from metaniche.errors import InputError
from metaniche.phenotype import _is_binary, auto_threshold, resolve_marker

__all__ = [
    "STATE_COLUMNS",
    "STATE_COLUMN_PREFIX",
    "StateCalls",
    "StateTrend",
    "call_states",
    "default_ratio_pairs",
    "density_ratios",
    "state_gradient_statistics",
    "state_gradients",
    "state_table",
    "state_trend_test",
]

#: Per-cell output column of a state: ``state.<name>``.
STATE_COLUMN_PREFIX = "state."
#: Columns of the ``states`` table (``sample`` is prepended when written).
STATE_COLUMNS = ["lesion_id", "compartment", "cell_type", "state", "n_cells", "n_positive",
                 "fraction", "density_per_mm2"]
_MIN_CELLS_FOR_TREND = 10
_ALL = (*COMPARTMENTS, WHOLE)


@dataclass
class StateCalls:
    """Per-cell states of one sample (:func:`call_states`).

    Attributes
    ----------
    names
        State names, in config order.
    positive
        ``(n_cells, n_states)`` bool: the cell carries the state (never outside its types).
    eligible
        ``(n_cells, n_states)`` bool: the cell's type may carry the state.
    thresholds
        One row per marker / column state: ``state``, ``column``, ``method`` (``given``,
        ``binary``, ``column`` or the automatic method), ``threshold`` (column units; NaN for
        a column state), ``n_positive``.
    cell_types
        State name → the labels that may carry it, or None for every label: the rule's
        ``cell_types``, for a combination intersected with those of its parts.
    """

    names: list[str]
    positive: np.ndarray
    eligible: np.ndarray
    thresholds: pd.DataFrame
    cell_types: dict[str, tuple[str, ...] | None]

    def row_types(self, name: str, cell_types: Sequence[str]) -> np.ndarray:
        """Boolean over ``cell_types``: the labels that get rows for state ``name``."""
        allowed = self.cell_types[name]
        return np.array([allowed is None or t in allowed for t in cell_types], dtype=bool)

    def columns(self) -> dict[str, np.ndarray]:
        """Per-cell ``state.<name>`` boolean columns."""
        return {STATE_COLUMN_PREFIX + name: self.positive[:, j]
                for j, name in enumerate(self.names)}


def _find_column(columns: Sequence[str], want: str) -> str | None:
    if want in columns:
        return want
    hits = [c for c in columns if c.casefold() == want.casefold()]
    return hits[0] if len(hits) == 1 else None


def _column_call(values: pd.Series, rule: StateRule, name: str, sample: str) -> np.ndarray:
    """A column state's calls: boolean, 0/1, or text matching ``positive`` (default ``…+``)."""
    if pd.api.types.is_bool_dtype(values) and not rule.positive:
        return values.fillna(False).to_numpy(bool)
    if pd.api.types.is_numeric_dtype(values) and not rule.positive:
        numbers = values.to_numpy(np.float64)
        finite = numbers[np.isfinite(numbers)]
        if not _is_binary(finite) and finite.size:
            raise InputError(f"sample '{sample}': state '{name}' reads column "
                             f"'{rule.column}', which holds numbers other than 0 and 1; use "
                             f"[states.{name}] marker = \"{rule.column}\" with a threshold.")
        return numbers == 1.0
    text = values.astype("string").str.strip()
    if rule.positive:
        hit = text.isin(list(rule.positive))
    else:
        hit = text.str.endswith("+")
    return hit.fillna(False).to_numpy(bool)


def call_states(cells: pd.DataFrame, labels: np.ndarray, rules: Mapping[str, StateRule],
                sample: str = "", cohort_thresholds: Mapping[str, float] | None = None
                ) -> StateCalls:
    """Decide every state of every cell of one sample (vectorised; see the module docstring).

    Parameters
    ----------
    cells
        The sample's standardised cell table (marker and call columns under their own names).
    labels
        Per-cell lineage label.
    rules
        State name → rule (``config.states.rules``).
    sample
        Sample name, for messages.
    cohort_thresholds
        State name → threshold of the states with ``threshold = "cohort:…"``
        (``[states] cohort_thresholds``, filled by
        :func:`metaniche.cohort.state_thresholds.with_cohort_thresholds`).

    Raises
    ------
    InputError
        When a state's marker or column is not in the table (naming the sample, state and
        column, and the fix), or a per-cohort threshold was not computed.
    """
    n = len(cells)
    names = list(rules)
    columns = [str(c) for c in cells.columns]
    positive = np.zeros((n, len(names)), dtype=bool)
    eligible = np.ones((n, len(names)), dtype=bool)
    rows = []
    labels = np.asarray(labels).astype(str)
    for j, name in enumerate(names):
        rule = rules[name]
        if rule.cell_types:
            eligible[:, j] = np.isin(labels, list(rule.cell_types))
        if rule.all_of:
            continue
        if rule.marker:
            try:
                column = resolve_marker(columns, rule.marker)
            except InputError:
                raise InputError(
                    f"sample '{sample}': state '{name}' needs marker '{rule.marker}', which has "
                    f"no column in the cell table (columns: {', '.join(columns[:12])}"
                    f"{'…' if len(columns) > 12 else ''}); set [states.{name}] marker to the "
                    "column's exact name.") from None
            values = pd.to_numeric(cells[column], errors="coerce").to_numpy(np.float64)
            finite = np.isfinite(values)
            if isinstance(rule.threshold, str) and rule.threshold.startswith(
                    COHORT_THRESHOLD_PREFIX):
                given = (cohort_thresholds or {}).get(name)
                if given is None:
                    raise InputError(
                        f"sample '{sample}': state '{name}' has threshold = "
                        f"\"{rule.threshold}\", one threshold over every sample of the run, "
                        f"which was not computed; analyse the samples with `metaniche run` "
                        f"(or mn.tl.states over all of them), or give [states] "
                        f"cohort_thresholds.{name}.")
                threshold, method = float(given), rule.threshold
            elif isinstance(rule.threshold, str):
                threshold = auto_threshold(values, rule.threshold, rule.transform)
                method = "binary" if _is_binary(values[finite]) else rule.threshold
            else:
                threshold, method = float(rule.threshold), "given"
            call = finite & (values > threshold)
        else:
            column = _find_column(columns, rule.column) or ""
            if not column:
                raise InputError(
                    f"sample '{sample}': state '{name}' reads column '{rule.column}', which is "
                    f"not in the cell table (columns: {', '.join(columns[:12])}"
                    f"{'…' if len(columns) > 12 else ''}); fix [states.{name}] column.")
            call = _column_call(cells[column], rule, name, sample)
            threshold, method = math.nan, "column"
        positive[:, j] = call & eligible[:, j]
        rows.append({"state": name, "column": column, "method": method,
                     "threshold": float(threshold), "n_positive": int(positive[:, j].sum())})
    allowed: dict[str, tuple[str, ...] | None] = {
        name: tuple(rules[name].cell_types) or None for name in names}
    for j, name in enumerate(names):
        rule = rules[name]
        if rule.all_of:
            parts = [names.index(part) for part in rule.all_of]
            eligible[:, j] &= np.logical_and.reduce([eligible[:, k] for k in parts])
            positive[:, j] = np.logical_and.reduce([positive[:, k] for k in parts]) & eligible[
                :, j]
            for part in rule.all_of:
                limit, own = allowed[part], allowed[name]
                if limit is not None:
                    allowed[name] = tuple(t for t in (limit if own is None else own)
                                          if t in limit)
    thresholds = pd.DataFrame(rows, columns=["state", "column", "method", "threshold",
                                             "n_positive"])
    return StateCalls(names, positive, eligible, thresholds, allowed)


def state_table(calls: StateCalls, type_codes: np.ndarray, cell_types: Sequence[str],
                compartment: np.ndarray, lesion_id: np.ndarray, areas: pd.DataFrame
                ) -> pd.DataFrame:
    """Counts, fractions and densities of every state per lesion × compartment × cell type.

    Parameters
    ----------
    calls
        Output of :func:`call_states`.
    type_codes, cell_types
        Per-cell integer code into the sample's labels.
    compartment, lesion_id
        Per-cell compartment name and lesion (0 = none) of the compartment result.
    areas
        ``lesion_id, compartment, area_mm2`` (lesion 0 = whole sample).

    Rows cover the labels of the sample that may carry each state
    (:attr:`StateCalls.cell_types`; every label when unrestricted).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`STATE_COLUMNS` (see the module docstring); zeros included so features
        are stable across samples; whole-sample rows have a null ``lesion_id``.
    """
    n_types, n_comp = len(cell_types), len(_ALL)
    codes = np.asarray(type_codes, dtype=np.int64)
    comp = pd.Categorical(compartment, categories=list(COMPARTMENTS)).codes.astype(np.int64)
    lesion = np.asarray(lesion_id, dtype=np.int64)
    n_rows = int(max(lesion.max(initial=0), areas["lesion_id"].max() if len(areas) else 0)) + 1
    frames = []
    for j, name in enumerate(calls.names):
        keep = calls.row_types(name, cell_types)
        if not keep.any():
            continue
        counts = np.zeros((2, n_rows, n_comp, n_types), dtype=np.int64)
        for k, mask in enumerate((np.ones(len(codes), bool), calls.positive[:, j])):
            key = comp[mask] * n_types + codes[mask]
            whole = np.bincount(key, minlength=len(COMPARTMENTS) * n_types)
            counts[k, 0, :-1] = whole.reshape(len(COMPARTMENTS), n_types)
            per = mask & (lesion > 0)
            flat = np.bincount((lesion[per] * len(COMPARTMENTS) + comp[per]) * n_types
                               + codes[per], minlength=n_rows * len(COMPARTMENTS) * n_types)
            counts[k, 1:, :-1] = flat.reshape(n_rows, len(COMPARTMENTS), n_types)[1:]
        counts[:, :, -1] = counts[:, :, :-1].sum(axis=2)
        block = counts[:, :, :, keep]
        n_keep = int(keep.sum())
        frames.append(pd.DataFrame({
            "lesion_id": np.repeat(np.arange(n_rows), n_comp * n_keep),
            "compartment": np.tile(np.repeat(np.asarray(_ALL, dtype=object), n_keep), n_rows),
            "cell_type": np.tile(np.asarray(cell_types, dtype=object)[keep], n_rows * n_comp),
            "state": name,
            "n_cells": block[0].ravel(),
            "n_positive": block[1].ravel(),
        }))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            STATE_COLUMNS, ["Int64", object, object, object, np.int64, np.int64, float, float],
            strict=True)})
    table = pd.concat(frames, ignore_index=True)
    table = table.merge(areas[["lesion_id", "compartment", "area_mm2"]],
                        on=["lesion_id", "compartment"], how="left")
    area = table["area_mm2"].fillna(0.0).to_numpy()
    n_cells = table["n_cells"].to_numpy()
    n_pos = table["n_positive"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        table["fraction"] = np.where(n_cells > 0, n_pos / np.maximum(n_cells, 1), np.nan)
        table["density_per_mm2"] = np.where(area > 0, n_pos / np.where(area > 0, area, 1.0),
                                            np.nan)
    table["lesion_id"] = table["lesion_id"].astype("Int64").mask(table["lesion_id"] == 0)
    return table[STATE_COLUMNS]


def default_ratio_pairs(cell_types: Sequence[str], effector_types: Sequence[str]
                        ) -> list[tuple[str, str]]:
    """Every (effector label, regulatory label) pair of the sample, for the default ratio.

    Regulatory labels start with :data:`metaniche.config.DEFAULT_REGULATORY_PATTERN` (any
    case); effector labels are the phenotype's (:func:`metaniche.roles.effector_types`).
    """
    regulatory = [t for t in cell_types
                  if re.match(DEFAULT_REGULATORY_PATTERN, str(t), re.IGNORECASE)]
    return [(a, b) for a in effector_types for b in regulatory if a != b]


def density_ratios(labels: np.ndarray, compartment: np.ndarray, areas: pd.DataFrame,
                   pairs: Sequence[tuple[str, str]], pseudocount: float = StatesParams.pseudocount
                   ) -> pd.DataFrame:
    """Density ratio of every pair per compartment (whole sample), with a pseudocount.

    Returns
    -------
    pandas.DataFrame
        ``compartment`` (core, border, adjacent, all), ``numerator``, ``denominator``,
        ``n_numerator``, ``n_denominator``, ``ratio = (n_A + c) / (n_B + c)`` (NaN without
        compartment area or without a cell of either type there).
    """
    labels = np.asarray(labels).astype(str)
    comp = np.asarray(compartment).astype(str)
    whole = areas[areas["lesion_id"] == 0].set_index("compartment")["area_mm2"]
    rows = []
    for a, b in pairs:
        is_a, is_b = labels == a, labels == b
        for name in _ALL:
            inside = np.ones(len(comp), bool) if name == WHOLE else comp == name
            n_a, n_b = int((inside & is_a).sum()), int((inside & is_b).sum())
            area = float(whole.get(name, 0.0))
            ok = area > 0 and (n_a + n_b) > 0
            rows.append({"compartment": name, "numerator": a, "denominator": b,
                         "n_numerator": n_a, "n_denominator": n_b,
                         "ratio": (n_a + pseudocount) / (n_b + pseudocount) if ok
                         else math.nan})
    return pd.DataFrame(rows, columns=["compartment", "numerator", "denominator",
                                       "n_numerator", "n_denominator", "ratio"])


def state_gradients(calls: StateCalls, type_codes: np.ndarray, cell_types: Sequence[str],
                    signed_distance_um: np.ndarray, edges_um: np.ndarray) -> pd.DataFrame:
    """State fraction per signed-distance band, per cell type × state (whole sample).

    Bands ``[a, b)`` as :func:`metaniche.analyses.gradients.gradient_profiles` (cells outside
    the range or with NaN distance are not counted).

    Returns
    -------
    pandas.DataFrame
        ``cell_type``, ``state``, ``bin_start_um``, ``bin_end_um``, ``n_cells``,
        ``n_positive``, ``fraction`` (NaN for an empty band); every band included.
    """
    n_types, n_bins = len(cell_types), len(edges_um) - 1
    index = _bin_index(signed_distance_um, edges_um)
    codes = np.asarray(type_codes, dtype=np.int64)
    ok = index >= 0
    totals = np.bincount(codes[ok] * n_bins + index[ok],
                         minlength=n_types * n_bins).reshape(n_types, n_bins)
    frames = []
    for j, name in enumerate(calls.names):
        keep = calls.row_types(name, cell_types)
        if not keep.any():
            continue
        hit = ok & calls.positive[:, j]
        pos = np.bincount(codes[hit] * n_bins + index[hit],
                          minlength=n_types * n_bins).reshape(n_types, n_bins)
        n_keep = int(keep.sum())
        tot, got = totals[keep].ravel(), pos[keep].ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(tot > 0, got / np.maximum(tot, 1), np.nan)
        frames.append(pd.DataFrame({
            "cell_type": np.repeat(np.asarray(cell_types, dtype=object)[keep], n_bins),
            "state": name,
            "bin_start_um": np.tile(edges_um[:-1], n_keep),
            "bin_end_um": np.tile(edges_um[1:], n_keep),
            "n_cells": tot, "n_positive": got, "fraction": fraction,
        }))
    columns = ["cell_type", "state", "bin_start_um", "bin_end_um", "n_cells", "n_positive",
               "fraction"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


@dataclass(frozen=True)
class StateTrend:
    """Result of :func:`state_trend_test` (NaN fields when the model could not be fitted).

    Attributes
    ----------
    slope_per_100um
        Change of the log odds of the state per 100 µm farther from the edge (negative = more
        frequent toward the edge).
    ci_low, ci_high
        Wald interval of the slope at the ``confidence`` level.
    p
        Two-sided Wald p-value of slope = 0.
    model
        ``"binomial"`` or ``"quasi_binomial"`` (``""`` when not fitted).
    dispersion
        Pearson chi² / residual df of the binomial fit (residual df at least 1).
    """

    slope_per_100um: float
    ci_low: float
    ci_high: float
    p: float
    model: str
    dispersion: float


_NO_TREND = StateTrend(math.nan, math.nan, math.nan, math.nan, "", math.nan)


def state_trend_test(centre_um: np.ndarray, n_positive: np.ndarray, n_cells: np.ndarray,
                     min_cells: int = _MIN_CELLS_FOR_TREND,
                     confidence: float = 0.95) -> StateTrend:
    """Binomial / quasi-binomial GLM of band fractions on distance from the edge.

    ``logit p_k = b0 + b_out·[c_k > 0] + b1·|c_k| / 100`` over the bands with cells (the side
    term is dropped when all bands lie on one side); quasi-binomial (Pearson scale) when the
    Pearson dispersion exceeds :data:`~metaniche.analyses.gradients.OVERDISPERSION_THRESHOLD`.
    Fewer than ``min_cells`` cells, fewer than 3 bands, or no variation (no positive or no
    negative cell): NaN result.
    """
    from statsmodels.genmod import families
    from statsmodels.genmod.generalized_linear_model import GLM

    centre = np.asarray(centre_um, dtype=np.float64)
    pos = np.asarray(n_positive, dtype=np.float64)
    tot = np.asarray(n_cells, dtype=np.float64)
    use = tot > 0
    centre, pos, tot = centre[use], pos[use], tot[use]
    if tot.sum() < min_cells or len(tot) < 3 or pos.sum() == 0 or pos.sum() == tot.sum():
        return _NO_TREND
    columns = [np.ones_like(centre), np.abs(centre) / 100.0]
    outside = (centre > 0).astype(np.float64)
    if 0 < outside.sum() < len(outside):
        columns.append(outside)
    design = np.column_stack(columns)
    endog = np.column_stack([pos, tot - pos])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = GLM(endog, design, family=families.Binomial()).fit()
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):
            return _NO_TREND
    dispersion = float(fit.pearson_chi2 / max(fit.df_resid, 1))
    slope, se = float(fit.params[1]), float(fit.bse[1])
    model = "binomial"
    if dispersion > OVERDISPERSION_THRESHOLD:
        # quasi-binomial: same estimates, variance times the Pearson dispersion (statsmodels'
        # scale="X2" is not on the count scale for a two-column binomial response)
        se *= math.sqrt(dispersion)
        model = "quasi_binomial"
    if not (np.isfinite(slope) and np.isfinite(se)) or se <= 0:
        return _NO_TREND
    # the estimated scale makes the quasi-binomial Wald statistic t with the residual df
    law = stats.t(max(fit.df_resid, 1)) if model == "quasi_binomial" else stats.norm
    p = float(2 * law.sf(abs(slope / se)))
    half = float(law.ppf(0.5 + confidence / 2)) * se
    return StateTrend(slope, slope - half, slope + half, p, model, dispersion)


def state_gradient_statistics(profiles: pd.DataFrame, window_um: float,
                              confidence: float = 0.95) -> pd.DataFrame:
    """Band trend of every cell type × state from a ``state_gradients`` table.

    Bands whose centre satisfies ``|centre| <= window_um`` (the gradients' window).

    Returns
    -------
    pandas.DataFrame
        ``cell_type``, ``state``, ``n_cells``, ``n_positive`` (in the window),
        ``slope_per_100um``, ``ci_low``, ``ci_high``, ``p``, ``model``, ``dispersion``.
    """
    columns = ["cell_type", "state", "n_cells", "n_positive", "slope_per_100um", "ci_low",
               "ci_high", "p", "model", "dispersion"]
    if profiles.empty:
        return pd.DataFrame(columns=columns)
    centre = 0.5 * (profiles["bin_start_um"].to_numpy() + profiles["bin_end_um"].to_numpy())
    window = profiles[np.abs(centre) <= window_um + 1e-9]
    rows = []
    for (cell_type, state), group in window.groupby(["cell_type", "state"], sort=False):
        mid = 0.5 * (group["bin_start_um"].to_numpy() + group["bin_end_um"].to_numpy())
        trend = state_trend_test(mid, group["n_positive"].to_numpy(),
                                 group["n_cells"].to_numpy(), confidence=confidence)
        rows.append({"cell_type": cell_type, "state": state,
                     "n_cells": int(group["n_cells"].sum()),
                     "n_positive": int(group["n_positive"].sum()),
                     "slope_per_100um": trend.slope_per_100um, "ci_low": trend.ci_low,
                     "ci_high": trend.ci_high, "p": trend.p, "model": trend.model,
                     "dispersion": trend.dispersion})
    return pd.DataFrame(rows, columns=columns)
