"""Cohort figures (matplotlib, written as PNG and, for the small ones, SVG).

A handful per run, so matplotlib's quality is affordable here: feature heatmap across samples,
volcano plots of the associations, Kaplan–Meier curves and ROC curves of the prediction.

Drawn with matplotlib's object-oriented API only: each figure is a
:class:`matplotlib.figure.Figure` attached to its own Agg canvas (:func:`new_figure`), so
nothing here reads or changes pyplot's global state or the process-wide backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from metaniche._atomic import atomic_path
from metaniche.report.colours import mpl_text

__all__ = ["feature_heatmap", "kaplan_meier", "new_figure", "roc_curves", "save_figure",
           "select_features", "volcano", "zscore"]


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A figure of ``figsize`` inches on its own Agg canvas (no pyplot, no global backend)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, report_dir: Path, stem: str, svg: bool = True) -> list[str]:
    """Write ``figures/<stem>.png`` (and ``.svg``); return the relative paths, PNG first."""
    paths = []
    for fmt in ("png", "svg") if svg else ("png",):
        relative = f"figures/{stem}.{fmt}"
        with atomic_path(report_dir / relative, suffix=f".{fmt}") as tmp:
            # The canvas switches to the SVG renderer for fmt == "svg" by itself.
            fig.savefig(tmp, format=fmt, dpi=110)
        paths.append(relative)
    return paths


def zscore(values: pd.DataFrame) -> pd.DataFrame:
    """Column-wise z-scores (x − mean) / sd (sd with ddof=1; NaN stays NaN)."""
    return (values - values.mean()) / values.std(ddof=1)


def select_features(features: pd.DataFrame, association: pd.DataFrame | None,
                    max_features: int = 40, max_missing: float = 0.2) -> list[str]:
    """Informative numeric feature columns for the heatmap.

    Columns with more than ``max_missing`` missing values or zero variance are dropped; when an
    association table exists the features with the smallest p come first, otherwise those with
    the largest coefficient of variation |sd / mean|.
    """
    numeric = features.select_dtypes(include=[np.number])
    numeric = numeric.loc[:, numeric.isna().mean() <= max_missing]
    sd = numeric.std(ddof=1)
    numeric = numeric.loc[:, sd > 0]
    if numeric.shape[1] == 0:
        return []
    if association is not None and not association.empty and "p" in association.columns:
        best = association.groupby("feature")["p"].min().sort_values()
        ranked = [f for f in best.index if f in numeric.columns]
        rest = [f for f in numeric.columns if f not in set(ranked)]
        return (ranked + rest)[:max_features]
    mean = numeric.mean().abs().replace(0, np.nan)
    cv = (numeric.std(ddof=1) / mean).fillna(0.0).sort_values(ascending=False)
    return list(cv.index[:max_features])


def _leaf_order(matrix: np.ndarray) -> np.ndarray:
    if matrix.shape[0] < 3:
        return np.arange(matrix.shape[0])
    from scipy.cluster.hierarchy import leaves_list, linkage

    return leaves_list(linkage(matrix, method="average", metric="euclidean"))


def feature_heatmap(features: pd.DataFrame, association: pd.DataFrame | None,
                    report_dir: Path) -> tuple[list[str], int] | None:
    """Samples × selected features, z-scored, rows and columns ordered by clustering.

    Returns the written paths and the number of features shown, or None when nothing varies.
    """
    chosen = select_features(features.drop(columns=["sample"], errors="ignore"), association)
    if not chosen or len(features) < 2:
        return None
    z = zscore(features[chosen].astype(np.float64))
    filled = z.fillna(0.0).to_numpy()
    rows = _leaf_order(filled)
    cols = _leaf_order(filled.T)
    matrix = z.to_numpy()[np.ix_(rows, cols)]
    names = [chosen[j] for j in cols]
    samples = features["sample"].astype(str).to_numpy()[rows] if "sample" in features else rows
    n_rows = len(rows)
    height = float(np.clip(1.5 + 0.16 * n_rows, 3.5, 14.0))
    fig = new_figure((max(6.0, 1.8 + 0.2 * len(names)), height + 2.6))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap="RdBu_r", vmin=-3,
                      vmax=3, interpolation="nearest")
    ax.set_xticks(range(len(names)), [mpl_text(n) for n in names], rotation=90, fontsize=7)
    if n_rows <= 60:
        ax.set_yticks(range(n_rows), [mpl_text(s) for s in samples], fontsize=7)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{n_rows} samples (clustered)")
    fig.colorbar(image, ax=ax, shrink=0.6, label="z-score (clipped at ±3)")
    fig.tight_layout()
    return save_figure(fig, report_dir, "cohort.features", svg=False), len(names)


def volcano(association: pd.DataFrame, report_dir: Path, q_level: float = 0.05,
            max_panels: int = 6) -> list[str] | None:
    """Effect against −log10 p, one panel per outcome × test, q ≤ ``q_level`` highlighted."""
    table = association.dropna(subset=["p", "effect"])
    if table.empty:
        return None
    groups = list(table.groupby(["outcome", "test"], sort=True))[:max_panels]
    ncols = min(3, len(groups))
    nrows = -(-len(groups) // ncols)
    fig = new_figure((4.2 * ncols, 3.6 * nrows))
    for k, ((outcome, test), part) in enumerate(groups):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        logp = -np.log10(np.clip(part["p"].to_numpy(np.float64), 1e-300, 1.0))
        significant = part["q"].to_numpy(np.float64) <= q_level
        ax.scatter(part["effect"], logp, s=10, c=np.where(significant, "#c0392b", "#95a5a6"),
                   linewidths=0, rasterized=len(part) > 5000)
        for _, row in part.nsmallest(5, "p").iterrows():
            ax.annotate(mpl_text(row["feature"]), (row["effect"], -np.log10(max(row["p"],
                                                                              1e-300))),
                        fontsize=6, xytext=(3, 2), textcoords="offset points")
        effect_name = str(part["effect_name"].iloc[0]) if "effect_name" in part else "effect"
        ax.set_xlabel(mpl_text(effect_name), fontsize=8)
        ax.set_ylabel("−log10 p", fontsize=8)
        ax.set_title(mpl_text(f"{outcome} · {test} ({int(significant.sum())} with q ≤ "
                              f"{q_level:g})"), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, report_dir, "cohort.volcano")


def kaplan_meier(curves: pd.DataFrame, association: pd.DataFrame | None, report_dir: Path,
                 max_panels: int = 4) -> tuple[list[str], list[str]] | None:
    """Kaplan–Meier curves (low / high split) of the features with the smallest log-rank p."""
    if curves.empty:
        return None
    features = list(dict.fromkeys(curves["feature"].astype(str)))
    if association is not None and "test" in association.columns:
        ranked = association[association["test"] == "logrank"].sort_values("p")["feature"]
        ranked = [f for f in ranked.astype(str) if f in set(features)]
        features = ranked + [f for f in features if f not in set(ranked)]
    features = features[:max_panels]
    ncols = min(2, len(features))
    nrows = -(-len(features) // ncols)
    fig = new_figure((4.6 * ncols, 3.5 * nrows))
    colours = {"low": "#2874a6", "high": "#c0392b"}
    for k, feature in enumerate(features):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        part = curves[curves["feature"].astype(str) == feature]
        for group, rows in part.groupby("group", sort=True):
            rows = rows.sort_values("time")
            colour = colours.get(str(group), None)
            ax.step(rows["time"], rows["survival"], where="post", color=colour,
                    label=mpl_text(group))
            if {"ci_low", "ci_high"} <= set(rows.columns):
                ax.fill_between(rows["time"], rows["ci_low"], rows["ci_high"], step="post",
                                alpha=0.15, color=colour, linewidth=0)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("time", fontsize=8)
        ax.set_ylabel("survival", fontsize=8)
        ax.set_title(mpl_text(feature), fontsize=8)
        ax.legend(fontsize=7, title="split at median", title_fontsize=7)
    fig.tight_layout()
    return save_figure(fig, report_dir, "cohort.km"), features


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
