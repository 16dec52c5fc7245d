"""The cohort figures' drawers, shared by the report's cohort page and ``metaniche.pl``.

Axes-level matplotlib functions (object-oriented API, no pyplot): each takes plain tables and
an ``ax`` and returns the Axes. The report (:mod:`metaniche.report.cohort_figures`) builds a
figure, calls them once per panel and saves; ``mn.pl.effector_density``,
``mn.pl.effector_gradient``, ``mn.pl.volcano`` and ``mn.pl.kaplan_meier`` call them on the
tables of ``mn.read_run(OUT).uns["metaniche"]``, prepared by the same functions
(:mod:`metaniche.plotting.prepare`).

- :func:`draw_effector_strip`: effector density per compartment, one dot per sample, log axis;
- :func:`draw_gradient_overlay`: pooled effector gradient per group with its interval;
- :func:`draw_volcano`: one outcome × test × effect-type panel of the volcano plot;
- :func:`draw_kaplan_meier`: the two groups of one feature with numbers at risk.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from metaniche.cohort.survival import SPLIT_BINARY, SPLIT_MEDIAN_TIES_HIGH
from metaniche.plotting.style import (
    COMPARTMENT_COLOURS,
    categorical,
    floor_zeros,
    fmt,
    log_axis,
    log_range,
    mpl_text,
    nice_ticks,
)

__all__ = ["BOUNDED_EFFECTS", "EFFECT_UNITS", "KM_COLOURS", "NULL_EFFECT", "RATIO_EFFECTS",
           "VOLCANO_MARGIN", "draw_effector_strip", "draw_gradient_overlay",
           "draw_kaplan_meier", "draw_volcano", "feature_values", "km_features",
           "km_group_labels", "logrank_p", "robust_limits", "svg_fmt", "volcano_panels"]


#: Volcano x limits: the 1st–99th percentile of the finite effects widened by this share of
#: their range; effects beyond are drawn at the limit as open triangles (clipped and marked).
VOLCANO_MARGIN = 0.08
#: Effects on a ratio scale (hazard ratio, median-time ratio, fold change) are drawn as log2.
RATIO_EFFECTS = ("hazard_ratio", "hr", "hr_per_sd", "median_time_ratio", "fold_change",
                 "odds_ratio")
#: Effects with a natural bounded range: drawn on it, never clipped.
BOUNDED_EFFECTS = {"auc": (0.0, 1.0), "cliffs_delta": (-1.0, 1.0),
                   "epsilon_squared": (0.0, 1.0), "rank_biserial": (-1.0, 1.0)}
#: What each ``effect_name`` of the association table measures (its unit), for tables,
#: axis titles and captions; the one place these are spelled out.
EFFECT_UNITS = {"auc": "AUC, P(level > reference)", "hazard_ratio": "hazard ratio per SD",
                "hr": "hazard ratio per SD", "hr_per_sd": "hazard ratio per SD",
                "median_time_ratio": "median survival high / low",
                "fold_change": "ratio of group means", "cliffs_delta": "Cliff's delta",
                "epsilon_squared": "epsilon² (rank-based share of variance)",
                "difference_sd": "difference in SD units (mixed model)",
                "rank_biserial": "rank-biserial correlation of the change"}
#: Effect of "no difference" on each scale (ratios are drawn as log2, so 0 there).
NULL_EFFECT = {"auc": 0.5}


def robust_limits(values: np.ndarray, margin: float = VOLCANO_MARGIN) -> tuple[float, float]:
    """Axis limits of ``values`` that one extreme estimate cannot stretch: the 1st and 99th
    percentiles of the finite values, widened by ``margin`` × their spread (or ±1 when all are
    equal)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return -1.0, 1.0
    low, high = np.percentile(finite, [1, 99])
    spread = high - low
    if spread <= 0:
        return float(low - 1), float(high + 1)
    return float(low - margin * spread), float(high + margin * spread)


def volcano_panels(association: pd.DataFrame) -> list[tuple[tuple[str, str, str], pd.DataFrame]]:
    """The volcano's panels: rows with a finite p and effect grouped by outcome × test ×
    ``effect_name``, so effects of different kinds (AUC, epsilon², SD differences, hazard
    ratios) never share an axis; the contrasts of one test share its panel (same kind).
    Panels in the association table's outcome order, then test, then effect name."""
    table = association.dropna(subset=["p", "effect"])
    table = table[np.isfinite(pd.to_numeric(table["effect"], errors="coerce"))]
    if table.empty:
        return []
    names = (table["effect_name"].fillna("").astype(str) if "effect_name" in table.columns
             else pd.Series("effect", index=table.index))
    table = table.assign(_effect_name=names.replace("", "effect"))
    order = {name: k for k, name in enumerate(pd.unique(association["outcome"].astype(str)))}
    groups = list(table.groupby(["outcome", "test", "_effect_name"], sort=True))
    groups.sort(key=lambda item: order.get(str(item[0][0]), len(order)))
    return [((str(o), str(t), str(e)), part.drop(columns="_effect_name"))
            for (o, t, e), part in groups]


def km_group_labels(feature: str, threshold: float, values: pd.Series | None,
                    unit: str = "", split: str | None = None) -> tuple[dict[str, str], str]:
    """Legend labels of a Kaplan–Meier split and a sentence stating it.

    ``split`` is the ``split`` column of ``km_curves``
    (:func:`metaniche.cohort.survival.two_group_split`). A binary split (or, for tables
    without that column, a feature with exactly two values in ``values``) is stated by its
    two values, so ``low`` is "= a" and ``high`` is "= b"; a median split with ties high as
    ``low`` < median ≤ ``high``; any other at the cohort median ``threshold`` (``low`` ≤
    median < ``high``).
    """
    levels = (np.unique(pd.to_numeric(values, errors="coerce").dropna().to_numpy(np.float64))
              if values is not None else np.array([]))
    if split == SPLIT_BINARY or (split is None and len(levels) == 2):
        a = svg_fmt(levels[0] if len(levels) == 2 else threshold)
        b = svg_fmt(levels[1]) if len(levels) == 2 else f"> {a}"
        b_label = f"= {b}" if len(levels) == 2 else b
        return ({"low": f"= {a}", "high": b_label},
                f"binary feature: split by its two values ({a} vs {b})")
    t = svg_fmt(threshold)
    suffix = f" {unit}" if unit else ""
    if split == SPLIT_MEDIAN_TIES_HIGH:
        return ({"low": f"< {t}{suffix}", "high": f"≥ {t}{suffix}"},
                f"split at the cohort median {t}{suffix}, ties high (most units at the "
                "median)")
    return ({"low": f"≤ {t}{suffix}", "high": f"> {t}{suffix}"},
            f"split at the cohort median {t}{suffix}")


def svg_fmt(value: float) -> str:
    """A number in at most 3 significant digits (:func:`metaniche.report.svg.fmt`)."""
    return fmt(float(value))


def feature_values(features: pd.DataFrame | None, feature: str) -> pd.Series | None:
    """A feature's per-sample values; an indicator ``<name>.<level>`` of a string feature
    (as the cohort analysis makes them) is rebuilt as 0/1."""
    if features is None:
        return None
    if feature in features.columns:
        return features[feature]
    base, _, level = feature.rpartition(".")
    if base in features.columns and not pd.api.types.is_numeric_dtype(features[base]):
        column = features[base]
        return (column.astype(str) == level).astype(float).where(column.notna())
    return None


def _at_risk(rows: pd.DataFrame, times: np.ndarray) -> list[int]:
    """Numbers at risk of one curve at ``times``: units still followed at each time."""
    rows = rows.sort_values("time")
    t = rows["time"].to_numpy(np.float64)
    n = rows["n_at_risk"].to_numpy(np.float64)
    out = []
    for x in times:
        later = np.flatnonzero(t >= x)
        out.append(int(n[later[0]]) if later.size else 0)
    return out


#: Colours of the two Kaplan–Meier groups.
KM_COLOURS = {"low": "#2874a6", "high": "#c0392b"}


def draw_volcano(ax: Any, part: pd.DataFrame, outcome: str, test: str, effect_name: str,
                 q_level: float = 0.05) -> Any:
    """One panel of the volcano plot: effect against −log10 p, q ≤ ``q_level`` in red.

    Parameters
    ----------
    ax
        Matplotlib Axes.
    part
        The panel's rows of the association table (``feature, effect, p, q``, optional
        ``contrast``; one of :func:`volcano_panels`).
    outcome, test, effect_name
        The panel's outcome, test and effect type (title and axis).
    q_level
        Highlighted false-discovery level.

    Returns
    -------
    matplotlib.axes.Axes
        Ratio effects (:data:`RATIO_EFFECTS`) drawn as log2; undefined effects (NaN) not
        drawn; bounded effects (:data:`BOUNDED_EFFECTS`) on their natural range, others on
        :func:`robust_limits`, effects beyond them on the limit as open triangles (counted in
        the title); the five smallest p labelled, offset so labels do not stack.

    Examples
    --------
    >>> import pandas as pd
    >>> from matplotlib.figure import Figure
    >>> rows = pd.DataFrame({"feature": ["a", "b"], "effect": [0.3, 0.9], "p": [0.5, 0.001],
    ...                      "q": [0.5, 0.002]})
    >>> ax = draw_volcano(Figure().add_subplot(), rows, "response", "mann_whitney", "auc")
    >>> ax.get_ylabel()
    '−log10 p'
    """
    effect = part["effect"].to_numpy(np.float64)
    ratio = effect_name.lower() in RATIO_EFFECTS
    if ratio:
        with np.errstate(divide="ignore", invalid="ignore"):
            effect = np.where(effect > 0, np.log2(effect), np.nan)
    keep = np.isfinite(effect)
    part, effect = part[keep], effect[keep]
    label = f"log2 {effect_name}" if ratio else effect_name
    ax.set_xlabel(mpl_text(label), fontsize=8)
    ax.set_ylabel("−log10 p", fontsize=8)
    if part.empty:
        ax.set_title(mpl_text(f"{outcome} · {test} (no defined effect)"), fontsize=8)
        return ax
    bounded = BOUNDED_EFFECTS.get(effect_name.lower())
    low, high = bounded if bounded is not None else robust_limits(effect)
    clipped = np.clip(effect, low, high)
    outside = clipped != effect
    logp = -np.log10(np.clip(part["p"].to_numpy(np.float64), 1e-300, 1.0))
    significant = part["q"].to_numpy(np.float64) <= q_level
    colour = np.where(significant, "#c0392b", "#95a5a6")
    inside = ~outside
    # points as one raster in the SVG too: thousands of markers, one image
    ax.scatter(clipped[inside], logp[inside], s=10, c=colour[inside], linewidths=0,
               rasterized=True)
    if outside.any():
        ax.scatter(clipped[outside], logp[outside], s=22, marker=">", facecolors="none",
                   edgecolors=colour[outside], linewidths=0.8)
    ax.set_xlim(low - 0.02 * (high - low), high + 0.02 * (high - low))
    order = np.argsort(part["p"].to_numpy(np.float64), kind="stable")[:5]
    middle = (low + high) / 2
    for rank, i in enumerate(order):
        right = clipped[i] > middle   # labels point inwards, stacked downwards
        ax.annotate(mpl_text(part["feature"].iloc[i]), (clipped[i], logp[i]), fontsize=6,
                    xytext=(-6 if right else 6, -4 - 9 * rank), textcoords="offset points",
                    ha="right" if right else "left", va="top",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "#666"})
    ax.axvline(NULL_EFFECT.get(effect_name.lower(), 0.0), color="#ccc", lw=0.6, zorder=0)
    note = f", {int(outside.sum())} clipped ▷" if outside.any() else ""
    contrasts = (list(pd.unique(part["contrast"].dropna().astype(str)))
                 if "contrast" in part.columns else [])
    scope = ("" if not contrasts else f"\n{contrasts[0]}" if len(contrasts) == 1
             else f"\n{len(contrasts)} contrasts")
    ax.set_title(mpl_text(f"{outcome} · {test}{scope} ({int(significant.sum())} with "
                          f"q ≤ {q_level:g}{note})"), fontsize=8)
    return ax


def draw_kaplan_meier(ax: Any, part: pd.DataFrame, feature: str, *, p: float = np.nan,
                      values: pd.Series | None = None, time_unit: str = "",
                      unit_name: str = "samples") -> Any:
    """Kaplan–Meier curves of the two groups of one feature, with numbers at risk.

    Parameters
    ----------
    ax
        Matplotlib Axes.
    part
        The feature's rows of ``km_curves`` (``group`` low/high, ``time``, ``survival``,
        optional ``ci_low``, ``ci_high``, ``n_at_risk``, ``threshold``, ``split``).
    feature
        The feature's name (title).
    p
        Log-rank p (title; "not computed" when NaN).
    values
        The feature's per-unit values (states a binary split by its two values;
        :func:`km_group_labels`).
    time_unit
        Unit of the time axis ("" says: the unit of the clinical table).
    unit_name
        What is at risk ("samples" or "patients").

    Returns
    -------
    matplotlib.axes.Axes
        Step curves with pointwise confidence bands, the split stated in the legend title,
        the time axis from 0 with its unit, and the numbers at risk at the labelled ticks
        under the axis.

    Examples
    --------
    >>> import pandas as pd
    >>> from matplotlib.figure import Figure
    >>> rows = pd.DataFrame({"group": ["low", "low", "high", "high"], "time": [0, 10, 0, 10],
    ...                      "survival": [1.0, 0.5, 1.0, 0.8], "n_at_risk": [4, 2, 5, 4],
    ...                      "threshold": 2.0})
    >>> ax = draw_kaplan_meier(Figure().add_subplot(), rows, "density.core.CD8_T",
    ...                        time_unit="months")
    >>> ax.get_xlabel()
    'time (months)'
    """
    threshold = float(part["threshold"].iloc[0]) if "threshold" in part else np.nan
    how = str(part["split"].iloc[0]) if "split" in part else None
    labels, split = km_group_labels(feature, threshold, values, split=how)
    groups = [g for g in ("low", "high") if g in set(part["group"].astype(str))]
    for group in groups:
        rows = part[part["group"].astype(str) == group].sort_values("time")
        colour = KM_COLOURS.get(group)
        ax.step(rows["time"], rows["survival"], where="post", color=colour,
                label=mpl_text(labels.get(group, group)))
        if {"ci_low", "ci_high"} <= set(rows.columns):
            ax.fill_between(rows["time"], rows["ci_low"], rows["ci_high"], step="post",
                            alpha=0.15, color=colour, linewidth=0)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ticks = [t for t in ax.get_xticks() if 0 <= t <= ax.get_xlim()[1]]
    ax.set_xticks(ticks)
    label_x = "time" + (f" ({time_unit})" if time_unit else " (unit of the clinical table)")
    ax.set_xlabel(mpl_text(label_x), fontsize=8)
    ax.set_ylabel("survival probability", fontsize=8)
    p_text = f"log-rank p = {fmt(float(p))}" if np.isfinite(p) else "log-rank p not computed"
    ax.set_title(mpl_text(f"{feature}\n{p_text}"), fontsize=8)
    ax.legend(fontsize=7, title=mpl_text(split), title_fontsize=6.5, loc="lower left")
    if "n_at_risk" in part.columns:
        # row labels end left of the axis, clear of the counts centred on the ticks (the
        # count at time 0 sits on the axis' left edge)
        row_label_x = -0.08
        for row, group in enumerate(groups):
            counts = _at_risk(part[part["group"].astype(str) == group], np.asarray(ticks))
            y = -0.30 - 0.09 * row
            colour = KM_COLOURS.get(group)
            ax.text(row_label_x, y, mpl_text(labels.get(group, group)), transform=ax.transAxes,
                    ha="right", va="center", fontsize=6.5, color=colour)
            for tick, count in zip(ticks, counts, strict=True):
                ax.text(tick, y, str(count), transform=ax.get_xaxis_transform(),
                        ha="center", va="center", fontsize=6.5, color=colour)
        ax.text(row_label_x, -0.21, mpl_text(f"at risk ({unit_name})"),
                transform=ax.transAxes,
                ha="right", va="center", fontsize=6.5)
    return ax


def draw_effector_strip(ax: Any, density: pd.DataFrame, groups: pd.Series | None,
                        desert_max_per_mm2: float, types: Sequence[str]) -> Any:
    """Effector density (cells/mm², log scale) per compartment, one dot per sample.

    Parameters
    ----------
    ax
        Matplotlib Axes.
    density
        Sample × compartment effector density (cells/mm²;
        :func:`metaniche.plotting.prepare.effector_densities`).
    groups
        Sample → outcome group (colours; None: one group "all samples").
    desert_max_per_mm2
        The desert threshold (dashed line).
    types
        The effector types summed (axis label).

    Returns
    -------
    matplotlib.axes.Axes
        A sample's compartments joined by a thin line, dots coloured by group with a jitter
        of fixed seed; a black bar at each group's median in each compartment (samples with
        no tissue there left out, zeros counted); zero densities on a line labelled 0 below
        the lowest decade; every decade labelled. With many samples the lines fade (opacity
        0.25 up to 50 samples, then 0.25 · 50 / n, at least 0.04) and the dots shrink, so a
        cohort of hundreds stays readable.

    Examples
    --------
    >>> import pandas as pd
    >>> from matplotlib.figure import Figure
    >>> density = pd.DataFrame({"core": [2.0, 0.0], "border": [40.0, 3.0],
    ...                         "adjacent": [90.0, 5.0]}, index=["S1", "S2"])
    >>> ax = draw_effector_strip(Figure().add_subplot(), density, None, 10.0, ["CD8_T"])
    >>> ax.get_yscale()
    'log'
    """
    from matplotlib.collections import LineCollection

    values = density.to_numpy(np.float64)
    low, high, zero_at = log_range(np.r_[values.ravel(), desert_max_per_mm2])
    shown = floor_zeros(values, zero_at)
    labels = (groups.reindex(density.index).astype(str).to_numpy() if groups is not None
              else np.full(len(density), "all samples"))
    levels = sorted(set(labels))
    colour_of = dict(zip(levels, categorical(len(levels)), strict=True))
    rng = np.random.default_rng(0)
    n_groups = len(levels)
    compartments = [str(c) for c in density.columns]
    n_samples = len(density)
    line_alpha = 0.25 if n_samples <= 50 else max(0.04, 0.25 * 50 / n_samples)
    dot_size = 22 if n_samples <= 100 else 10
    for g, level in enumerate(levels):
        member = labels == level
        offset = (g - (n_groups - 1) / 2) * 0.8 / max(n_groups, 1)
        jitter = rng.uniform(-0.06, 0.06, size=(int(member.sum()), 1))
        x = np.arange(len(compartments))[None, :] + offset + jitter
        y = shown[member]
        ax.add_collection(LineCollection(list(np.stack([x, y], axis=-1)),
                                         colors=colour_of[level], alpha=line_alpha,
                                         linewidths=0.7))
        ax.scatter(x.ravel(), y.ravel(), s=dot_size, color=colour_of[level],
                   edgecolors="white", linewidths=0.4,
                   label=mpl_text(f"{level} (n = {int(member.sum())})"), zorder=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)      # a compartment all NaN
            median = np.nanmedian(values[member], axis=0)
        centre = np.arange(len(compartments)) + offset
        ok = np.isfinite(median)
        ax.hlines(floor_zeros(median[ok], zero_at), centre[ok] - 0.16, centre[ok] + 0.16,
                  colors="black", linewidths=2.2, zorder=4,
                  label="median" if g == n_groups - 1 else None)
    ax.axhline(desert_max_per_mm2, color="#555", ls="--", lw=0.8)
    ax.text(len(compartments) - 0.5, desert_max_per_mm2, " desert threshold", fontsize=7,
            va="bottom", ha="right", color="#555")
    ax.set_xticks(range(len(compartments)), compartments)
    for tick, name in zip(ax.get_xticklabels(), compartments, strict=True):
        tick.set_color(COMPARTMENT_COLOURS.get(name, "#222"))
    ax.set_xlim(-0.6, len(compartments) - 0.4)
    log_axis(ax, low, high, zero_at)
    ax.set_ylabel(mpl_text(f"{' + '.join(types)} density (cells/mm², log scale)"), fontsize=8)
    ax.set_xlabel("compartment", fontsize=8)
    ax.grid(axis="y", which="major", color="#eee", lw=0.6)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0),
              title="outcome group" if groups is not None else None, title_fontsize=7)
    return ax


def draw_gradient_overlay(ax: Any, profiles: Mapping[str, Any], border_um: float,
                          label: str) -> Any:
    """Pooled density of each group against the signed distance to the boundary.

    Parameters
    ----------
    ax
        Matplotlib Axes.
    profiles
        :func:`metaniche.plotting.prepare.gradient_profiles` (``centre``, ``curves``: group
        → (n samples, density, low, high), ``per_sample``).
    border_um
        Half-width of the border band shaded (µm; NaN: none).
    label
        What the density counts (axis label), e.g. ``"CD8_T"``.

    Returns
    -------
    matplotlib.axes.Axes
        Each group's pooled curve with its bootstrap interval shaded, log y scale (zero
        densities on the line labelled 0, masked bins not drawn), distance ticks labelled
        including 0, the boundary (0) as a vertical line.

    Examples
    --------
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> centre = np.array([-50.0, 0.0, 50.0])
    >>> profiles = {"centre": centre, "per_sample": np.array([[1.0, 5.0, 20.0]]),
    ...             "curves": {"all samples": (1, np.array([1.0, 5.0, 20.0]),
    ...                                        np.full(3, np.nan), np.full(3, np.nan))}}
    >>> ax = draw_gradient_overlay(Figure().add_subplot(), profiles, 100.0, "CD8_T")
    >>> "µm" in ax.get_xlabel()
    True
    """
    centre = np.asarray(profiles["centre"], dtype=np.float64)
    curves = profiles["curves"]
    # the axes span what is drawn: the groups' curves and intervals (not the per-sample
    # curves, drawn on the sample pages, nor the masked bins)
    drawn = np.r_[*[np.r_[c[1], c[2], c[3]] for c in curves.values()]]
    low, high, zero_at = log_range(drawn)
    shown = np.zeros(len(centre), dtype=bool)
    for _, density, _, _ in curves.values():
        shown |= np.isfinite(np.asarray(density, dtype=np.float64))
    x_span = centre[shown] if shown.any() else centre
    levels = list(curves)
    colour_of = dict(zip(levels, categorical(len(levels)), strict=True))
    if np.isfinite(border_um):
        ax.axvspan(-border_um, border_um, color=COMPARTMENT_COLOURS["border"], alpha=0.12, lw=0)
    ax.axvline(0.0, color="black", lw=0.8)
    for level, (n, density, ci_low, ci_high) in curves.items():
        colour = colour_of[level]
        ax.fill_between(centre, floor_zeros(ci_low, zero_at), floor_zeros(ci_high, zero_at),
                        color=colour, alpha=0.2, lw=0)
        ax.plot(centre, floor_zeros(density, zero_at), color=colour, lw=2.0,
                label=mpl_text(f"{level} (n = {n})"))
    x_ticks = nice_ticks(float(np.nanmin(x_span)), float(np.nanmax(x_span)), 7)
    ax.set_xticks(x_ticks, [fmt(t) for t in x_ticks])
    # the line labelled 0 only when a curve or interval drawn reaches 0
    log_axis(ax, low, high, zero_at if (drawn == 0).any() else None)
    ax.set_xlabel("signed distance to the tumour boundary (µm; < 0 inside tumour)", fontsize=8)
    ax.set_ylabel(mpl_text(f"{label} density (cells/mm², log scale)"), fontsize=8)
    ax.grid(axis="y", which="major", color="#eee", lw=0.6)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def logrank_p(association: pd.DataFrame | None) -> dict[str, float]:
    """Feature → log-rank p of the association table (empty without log-rank rows)."""
    if association is None or "test" not in association.columns:
        return {}
    logrank = association[association["test"] == "logrank"].sort_values("p")
    return dict(zip(logrank["feature"].astype(str), logrank["p"].astype(float), strict=True))


def km_features(curves: pd.DataFrame, association: pd.DataFrame | None) -> list[str]:
    """The features of ``km_curves``, smallest log-rank p first (then in table order)."""
    drawn = list(dict.fromkeys(curves["feature"].astype(str)))
    ranked = [f for f in logrank_p(association) if f in set(drawn)]
    return ranked + [f for f in drawn if f not in set(ranked)]
