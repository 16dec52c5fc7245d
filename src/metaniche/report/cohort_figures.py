"""Cohort figures (matplotlib, written as PNG and, for the small ones, SVG).

A handful per run, so matplotlib's quality is affordable here: feature heatmap across samples,
volcano plots of the associations, Kaplan–Meier curves and ROC curves of the prediction.

Drawn with matplotlib's object-oriented API only: each figure is a
:class:`matplotlib.figure.Figure` attached to its own Agg canvas (:func:`new_figure`), so
nothing here reads or changes pyplot's global state or the process-wide backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from metaniche._atomic import atomic_path
from metaniche.cohort.survival import SPLIT_BINARY, SPLIT_MEDIAN_TIES_HIGH
from metaniche.report.colours import COMPARTMENT_COLOURS, categorical, mpl_text
from metaniche.report.svg import fmt, log_ticks, nice_ticks

if TYPE_CHECKING:
    from metaniche.config import PhenotypeParams

__all__ = ["effector_strip", "feature_heatmap", "gradient_overlay", "kaplan_meier",
           "km_group_labels", "new_figure", "robust_limits", "roc_curves", "save_figure",
           "select_features", "volcano", "volcano_panels", "zscore"]


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A figure of ``figsize`` inches on its own Agg canvas (no pyplot, no global backend)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, report_dir: Path, stem: str, svg: bool = True) -> list[str]:
    """Write ``figures/<stem>.png`` (and ``.svg``); return the relative paths, PNG first."""
    paths = []
    for kind in ("png", "svg") if svg else ("png",):
        relative = f"figures/{stem}.{kind}"
        with atomic_path(report_dir / relative, suffix=f".{kind}") as tmp:
            # The canvas switches to the SVG renderer for kind == "svg" by itself.
            fig.savefig(tmp, format=kind, dpi=110)
        paths.append(relative)
    return paths


def zscore(values: pd.DataFrame) -> pd.DataFrame:
    """Column-wise z-scores (x − mean) / sd (sd with ddof=1; NaN stays NaN)."""
    return (values - values.mean()) / values.std(ddof=1)


#: Heatmap selection: a column whose most common value covers more than this share of the
#: samples is near-constant (one outlier would dominate its z-scores) and is not shown.
MAX_MODE_SHARE = 0.75


def select_features(features: pd.DataFrame, association: pd.DataFrame | None,
                    max_features: int = 40, max_missing: float = 0.2,
                    max_mode_share: float = MAX_MODE_SHARE) -> list[str]:
    """Informative numeric feature columns for the heatmap.

    Columns with more than ``max_missing`` missing values, zero variance, or one value shared
    by more than ``max_mode_share`` of the non-missing samples (near-constant) are dropped;
    when an association table exists the features with the smallest p come first, otherwise
    those with the largest robust spread, the interquartile range over the median absolute
    value (a scale-free spread that one outlier cannot inflate).
    """
    numeric = features.select_dtypes(include=[np.number])
    numeric = numeric.loc[:, numeric.isna().mean() <= max_missing]
    sd = numeric.std(ddof=1)
    numeric = numeric.loc[:, sd > 0]
    if numeric.shape[1] == 0:
        return []
    numeric = numeric.loc[:, _mode_share(numeric.to_numpy(np.float64)) <= max_mode_share]
    if numeric.shape[1] == 0:
        return []
    if association is not None and not association.empty and "p" in association.columns:
        best = association.groupby("feature")["p"].min().sort_values()
        ranked = [f for f in best.index if f in numeric.columns]
        rest = [f for f in numeric.columns if f not in set(ranked)]
        return (ranked + rest)[:max_features]
    q75, q25 = numeric.quantile(0.75), numeric.quantile(0.25)
    scale = numeric.abs().median().replace(0, np.nan)
    spread = ((q75 - q25) / scale).fillna(0.0).sort_values(ascending=False, kind="stable")
    return list(spread.index[:max_features])


def _mode_share(values: np.ndarray) -> np.ndarray:
    """Per column: the share of the non-missing values taken by the most common value (1 for
    a column without values); NumPy per column, no pandas per-column overhead."""
    out = np.ones(values.shape[1])
    for j in range(values.shape[1]):
        column = values[:, j]
        column = column[~np.isnan(column)]
        if column.size:
            out[j] = np.unique(column, return_counts=True)[1].max() / column.size
    return out


def _leaf_order(matrix: np.ndarray) -> np.ndarray:
    if matrix.shape[0] < 3:
        return np.arange(matrix.shape[0])
    from scipy.cluster.hierarchy import leaves_list, linkage

    return leaves_list(linkage(matrix, method="average", metric="euclidean"))


def feature_heatmap(features: pd.DataFrame, association: pd.DataFrame | None,
                    report_dir: Path, units: dict[str, str] | None = None,
                    ) -> tuple[list[str], int] | None:
    """Selected features (rows, labelled horizontally with their unit) × samples (columns),
    z-scored per feature, both ordered by clustering.

    Returns the written paths and the number of features shown, or None when nothing varies.
    """
    chosen = select_features(features.drop(columns=["sample"], errors="ignore"), association)
    if not chosen or len(features) < 2:
        return None
    units = units or {}
    z = zscore(features[chosen].astype(np.float64))
    filled = z.fillna(0.0).to_numpy()
    rows = _leaf_order(filled)            # samples
    cols = _leaf_order(filled.T)          # features
    matrix = z.to_numpy()[np.ix_(rows, cols)].T
    names = [chosen[j] for j in cols]
    labels = [f"{n} ({units[n]})" if units.get(n) else n for n in names]
    samples = features["sample"].astype(str).to_numpy()[rows] if "sample" in features else rows
    n_samples = len(rows)
    label_in = min(4.5, 0.3 + 0.055 * max(len(t) for t in labels))
    width = float(np.clip(label_in + 1.6 + 0.22 * n_samples, 7.0, 16.0))
    fig = new_figure((width, 1.6 + 0.2 * len(names)))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap="RdBu_r", vmin=-3,
                      vmax=3, interpolation="nearest")
    ax.set_yticks(range(len(names)), [mpl_text(t) for t in labels], fontsize=7)
    if n_samples <= 60:
        ax.set_xticks(range(n_samples), [mpl_text(s) for s in samples], fontsize=7,
                      rotation=45, ha="right")
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n_samples} samples (clustered)")
    fig.colorbar(image, ax=ax, shrink=0.6, label="z-score across samples (clipped at ±3)")
    fig.tight_layout()
    return save_figure(fig, report_dir, "cohort.features", svg=False), len(names)


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


def volcano(association: pd.DataFrame, report_dir: Path, q_level: float = 0.05,
            max_panels: int = 9) -> list[str] | None:
    """Effect against −log10 p, one panel per outcome × test × effect type
    (:func:`volcano_panels`), q ≤ ``q_level`` highlighted.

    Ratio effects (:data:`RATIO_EFFECTS`) are drawn as log2; undefined effects (NaN) are not
    drawn; bounded effects (:data:`BOUNDED_EFFECTS`) use their natural range, others
    :func:`robust_limits`, and effects beyond them sit on the limit as open triangles (counted
    in the title). A panel holding several contrasts (condition groups) says how many. The
    five smallest p are labelled, offset alternately so labels do not stack.
    """
    groups = volcano_panels(association)[:max_panels]
    if not groups:
        return None
    ncols = min(3, len(groups))
    nrows = -(-len(groups) // ncols)
    fig = new_figure((4.6 * ncols, 3.9 * nrows))
    for k, ((outcome, test, effect_name), part) in enumerate(groups):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        effect = part["effect"].to_numpy(np.float64)
        ratio = effect_name.lower() in RATIO_EFFECTS
        if ratio:
            with np.errstate(divide="ignore", invalid="ignore"):
                effect = np.where(effect > 0, np.log2(effect), np.nan)
        keep = np.isfinite(effect)
        part, effect = part[keep], effect[keep]
        if part.empty:
            continue
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
        ax.axvline(NULL_EFFECT.get(effect_name.lower(), 0.0), color="#ccc", lw=0.6,
                   zorder=0)
        label = f"log2 {effect_name}" if ratio else effect_name
        ax.set_xlabel(mpl_text(label), fontsize=8)
        ax.set_ylabel("−log10 p", fontsize=8)
        note = f", {int(outside.sum())} clipped ▷" if outside.any() else ""
        contrasts = (list(pd.unique(part["contrast"].dropna().astype(str)))
                     if "contrast" in part.columns else [])
        scope = ("" if not contrasts else f"\n{contrasts[0]}" if len(contrasts) == 1
                 else f"\n{len(contrasts)} contrasts")
        ax.set_title(mpl_text(f"{outcome} · {test}{scope} ({int(significant.sum())} with "
                              f"q ≤ {q_level:g}{note})"), fontsize=8)
    fig.tight_layout()
    return save_figure(fig, report_dir, "cohort.volcano")


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


def _feature_values(features: pd.DataFrame | None, feature: str) -> pd.Series | None:
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


def kaplan_meier(curves: pd.DataFrame, association: pd.DataFrame | None, report_dir: Path,
                 max_panels: int = 4, features: pd.DataFrame | None = None,
                 time_unit: str = "", unit_name: str = "samples",
                 ) -> tuple[list[str], list[str], list[str]] | None:
    """Kaplan–Meier curves of the features with the smallest log-rank p.

    Each panel: the two groups' curves with pointwise confidence bands, the log-rank p in the
    title, the split stated (binary features by their two values, others at the median; see
    :func:`km_group_labels`), the time axis with its unit, and the numbers at risk under the
    axis at its labelled ticks (from the ``n_at_risk`` column of ``km_curves``).

    Returns the written paths, the features drawn and the split sentence of each.
    """
    if curves.empty:
        return None
    features_drawn = list(dict.fromkeys(curves["feature"].astype(str)))
    p_of: dict[str, float] = {}
    if association is not None and "test" in association.columns:
        logrank = association[association["test"] == "logrank"].sort_values("p")
        p_of = dict(zip(logrank["feature"].astype(str), logrank["p"].astype(float),
                        strict=True))
        ranked = [f for f in logrank["feature"].astype(str) if f in set(features_drawn)]
        features_drawn = ranked + [f for f in features_drawn if f not in set(ranked)]
    features_drawn = features_drawn[:max_panels]
    ncols = min(2, len(features_drawn))
    nrows = -(-len(features_drawn) // ncols)
    fig = new_figure((5.0 * ncols, 4.3 * nrows))
    colours = {"low": "#2874a6", "high": "#c0392b"}
    splits = []
    label_x = "time" + (f" ({time_unit})" if time_unit else " (unit of the clinical table)")
    for k, feature in enumerate(features_drawn):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        part = curves[curves["feature"].astype(str) == feature]
        threshold = float(part["threshold"].iloc[0]) if "threshold" in part else np.nan
        values = _feature_values(features, feature)
        how = str(part["split"].iloc[0]) if "split" in part else None
        labels, split = km_group_labels(feature, threshold, values, split=how)
        splits.append(split)
        groups = [g for g in ("low", "high") if g in set(part["group"].astype(str))]
        for group in groups:
            rows = part[part["group"].astype(str) == group].sort_values("time")
            colour = colours.get(group)
            ax.step(rows["time"], rows["survival"], where="post", color=colour,
                    label=mpl_text(labels.get(group, group)))
            if {"ci_low", "ci_high"} <= set(rows.columns):
                ax.fill_between(rows["time"], rows["ci_low"], rows["ci_high"], step="post",
                                alpha=0.15, color=colour, linewidth=0)
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        ticks = [t for t in ax.get_xticks() if 0 <= t <= ax.get_xlim()[1]]
        ax.set_xticks(ticks)
        ax.set_xlabel(mpl_text(label_x), fontsize=8)
        ax.set_ylabel("survival probability", fontsize=8)
        p = p_of.get(feature, np.nan)
        p_text = f"log-rank p = {svg_fmt(p)}" if np.isfinite(p) else "log-rank p not computed"
        ax.set_title(mpl_text(f"{feature}\n{p_text}"), fontsize=8)
        ax.legend(fontsize=7, title=mpl_text(split), title_fontsize=6.5, loc="lower left")
        if "n_at_risk" in part.columns:
            lines = []
            for group in groups:
                rows = part[part["group"].astype(str) == group]
                counts = _at_risk(rows, np.asarray(ticks))
                lines.append((labels.get(group, group), counts))
            for row, (name, counts) in enumerate(lines):
                y = -0.30 - 0.09 * row
                ax.text(-0.02, y, mpl_text(name), transform=ax.transAxes, ha="right",
                        va="center", fontsize=6.5, color=colours.get(groups[row]))
                for tick, count in zip(ticks, counts, strict=True):
                    ax.text(tick, y, str(count), transform=ax.get_xaxis_transform(),
                            ha="center", va="center", fontsize=6.5,
                            color=colours.get(groups[row]))
            ax.text(-0.02, -0.21, mpl_text(f"at risk ({unit_name})"),
                    transform=ax.transAxes, ha="right", va="center", fontsize=6.5)
    fig.tight_layout(h_pad=2.5)
    return save_figure(fig, report_dir, "cohort.km"), features_drawn, splits


def roc_points(score: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold of ``score``, from (0, 0).

    A unit is called positive when its score is ``>=`` the threshold; tied scores move
    together (a diagonal step), so the trapezoidal area under the curve equals the
    Mann–Whitney AUC with ties counted ½.
    """
    score = np.asarray(score, dtype=np.float64)
    label = np.asarray(label).astype(bool)
    order = np.argsort(-score, kind="mergesort")
    ranked, positive = score[order], label[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tps = np.cumsum(positive)[last_of_tie]
    fps = last_of_tie + 1 - tps
    return (np.r_[0.0, fps / max(fps[-1], 1)], np.r_[0.0, tps / max(tps[-1], 1)])


def roc_curves(prediction: dict[str, Any], report_dir: Path) -> list[str] | None:
    """ROC curves of the out-of-fold predictions: spatial model vs composition baseline."""
    rows = pd.DataFrame(prediction.get("predictions") or [])
    if rows.empty or "responder" not in rows or rows["responder"].nunique() < 2:
        return None
    fig = new_figure((4.4, 4.2))
    ax = fig.add_subplot()
    for name, colour in (("spatial", "#c0392b"), ("baseline", "#2874a6")):
        summary = prediction.get(name)
        if summary is None or name not in rows or rows[name].isna().all():
            continue
        fpr, tpr = roc_points(rows[name].to_numpy(np.float64), rows["responder"].to_numpy())
        label = (f"{name}: AUC {summary['auc']:.2f} ({summary.get('ci_low', np.nan):.2f}–"
                 f"{summary.get('ci_high', np.nan):.2f})")
        ax.plot(fpr, tpr, color=colour, label=label)
    ax.plot([0, 1], [0, 1], ls=":", color="#999")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("Cross-validated prediction of response", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_aspect("equal")
    fig.tight_layout()
    return save_figure(fig, report_dir, "cohort.roc")


def _log_axis(ax: Any, low: float, high: float, zero_at: float | None = None) -> None:
    """Log y axis from ``low`` to ``high`` with every decade labelled in plain numbers; a
    ``zero_at`` line labelled 0 stands for zero values."""
    from matplotlib.ticker import FixedLocator, NullFormatter


    ax.set_yscale("log")
    ticks = list(log_ticks(low, high))
    labels = [fmt(t) for t in ticks]
    if zero_at is not None:
        ticks, labels = [zero_at, *ticks], ["0", *labels]
        ax.axhline(zero_at, color="#bbb", lw=0.6, ls=":", zorder=0)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.set_yticklabels(labels)
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(zero_at / 1.6 if zero_at is not None else low, high)


def _log_range(values: np.ndarray) -> tuple[float, float, float]:
    """Decade limits of the positive values and the level where zeros are drawn."""
    positive = values[np.isfinite(values) & (values > 0)]
    low = 10.0 ** np.floor(np.log10(positive.min())) if positive.size else 1.0
    high = 10.0 ** np.ceil(np.log10(positive.max())) if positive.size else 10.0
    high = high if high > low else low * 10
    return float(low), float(high), float(low / 2.5)


def effector_strip(density: pd.DataFrame, groups: pd.Series | None, params: PhenotypeParams,
                   types: list[str], report_dir: Path) -> list[str] | None:
    """Strip plot of effector density (cells/mm², log scale) per compartment, one dot per
    sample, a sample's compartments joined by a thin line, coloured by outcome group.

    Zero densities sit on a line labelled 0 below the lowest decade; the desert threshold is
    the dashed line.
    """
    values = density.to_numpy(np.float64)
    if not np.isfinite(values).any():
        return None
    low, high, zero_at = _log_range(np.r_[values.ravel(), params.desert_max_per_mm2])
    shown = np.where(values > 0, values, np.where(np.isfinite(values), zero_at, np.nan))
    labels = (groups.reindex(density.index).astype(str).to_numpy() if groups is not None
              else np.full(len(density), "all samples"))
    levels = sorted(set(labels))
    colour_of = dict(zip(levels, categorical(len(levels)), strict=True))
    rng = np.random.default_rng(0)
    n_groups = len(levels)
    fig = new_figure((6.4 + 0.6 * n_groups, 4.6))
    ax = fig.add_subplot()
    compartments = list(density.columns)
    for g, level in enumerate(levels):
        member = labels == level
        offset = (g - (n_groups - 1) / 2) * 0.8 / max(n_groups, 1)
        jitter = rng.uniform(-0.06, 0.06, size=(int(member.sum()), 1))
        x = np.arange(len(compartments))[None, :] + offset + jitter
        y = shown[member]
        ax.add_collection(LineCollection(list(np.stack([x, y], axis=-1)), colors=colour_of[level],
                                         alpha=0.25, linewidths=0.7))
        ax.scatter(x.ravel(), y.ravel(), s=22, color=colour_of[level], edgecolors="white",
                   linewidths=0.4, label=mpl_text(f"{level} (n = {int(member.sum())})"),
                   zorder=3)
    ax.axhline(params.desert_max_per_mm2, color="#555", ls="--", lw=0.8)
    ax.text(len(compartments) - 0.5, params.desert_max_per_mm2, " desert threshold",
            fontsize=7, va="bottom", ha="right", color="#555")
    ax.set_xticks(range(len(compartments)), compartments)
    for tick, name in zip(ax.get_xticklabels(), compartments, strict=True):
        tick.set_color(COMPARTMENT_COLOURS.get(name, "#222"))
    ax.set_xlim(-0.6, len(compartments) - 0.4)
    _log_axis(ax, low, high, zero_at)
    ax.set_ylabel(mpl_text(f"{' + '.join(types)} density (cells/mm², log scale)"), fontsize=8)
    ax.set_xlabel("compartment", fontsize=8)
    ax.grid(axis="y", which="major", color="#eee", lw=0.6)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0),
              title="outcome group" if groups is not None else None, title_fontsize=7)
    fig.tight_layout()
    return save_figure(fig, report_dir, "cohort.effector_density")


def gradient_overlay(profiles: dict[str, Any], border_um: float, label: str,
                     report_dir: Path) -> list[str] | None:
    """Pooled effector gradient of each group with its bootstrap interval over samples, log y
    scale (zero densities on the line labelled 0), distance ticks labelled including 0."""
    centre = np.asarray(profiles["centre"], dtype=np.float64)
    curves = profiles["curves"]
    per_sample = np.asarray(profiles["per_sample"], dtype=np.float64)
    everything = np.r_[per_sample.ravel(), *[np.r_[c[1], c[2], c[3]] for c in curves.values()]]
    if not np.isfinite(everything).any() or not (everything > 0).any():
        return None
    low, high, zero_at = _log_range(everything)
    levels = list(curves)
    colour_of = dict(zip(levels, categorical(len(levels)), strict=True))
    fig = new_figure((7.6, 4.4))
    ax = fig.add_subplot()
    if np.isfinite(border_um):
        ax.axvspan(-border_um, border_um, color=COMPARTMENT_COLOURS["border"], alpha=0.12,
                   lw=0)
    ax.axvline(0.0, color="black", lw=0.8)

    def floor(v: np.ndarray) -> np.ndarray:
        return np.where(v > 0, v, np.where(np.isfinite(v), zero_at, np.nan))

    for level, (n, density, ci_low, ci_high) in curves.items():
        colour = colour_of[level]
        ax.fill_between(centre, floor(ci_low), floor(ci_high), color=colour, alpha=0.2, lw=0)
        ax.plot(centre, floor(density), color=colour, lw=2.0,
                label=mpl_text(f"{level} (n = {n})"))
    x_ticks = nice_ticks(float(np.nanmin(centre)), float(np.nanmax(centre)), 7)
    ax.set_xticks(x_ticks, [fmt(t) for t in x_ticks])
    _log_axis(ax, low, high, zero_at)
    ax.set_xlabel("signed distance to the tumour boundary (µm; < 0 inside tumour)", fontsize=8)
    ax.set_ylabel(mpl_text(f"{label} density (cells/mm², log scale)"), fontsize=8)
    ax.grid(axis="y", which="major", color="#eee", lw=0.6)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save_figure(fig, report_dir, "cohort.effector_gradient")
