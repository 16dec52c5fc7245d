"""Cohort figures (matplotlib, written as PNG and, for the small ones, SVG).

A handful per run, so matplotlib's quality is affordable here: feature heatmap across samples,
volcano plots of the associations, Kaplan–Meier curves, ROC curves of the prediction and the
overview's effector strip and gradient overlay. The volcano, Kaplan–Meier, effector strip and
gradient overlay are drawn by the axes-level drawers of :mod:`metaniche.plotting.cohort`, the
functions ``metaniche.pl`` calls; this module lays out the figure and saves it.

Drawn with matplotlib's object-oriented API only: each figure is a
:class:`matplotlib.figure.Figure` attached to its own Agg canvas (:func:`new_figure`), so
nothing here reads or changes pyplot's global state or the process-wide backend.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from metaniche._atomic import write_text
from metaniche.plotting.cohort import (
    BOUNDED_EFFECTS,
    EFFECT_UNITS,
    NULL_EFFECT,
    RATIO_EFFECTS,
    VOLCANO_MARGIN,
    _at_risk,  # noqa: F401  (re-exported: the numbers-at-risk rule, tested here)
    draw_effector_strip,
    draw_gradient_overlay,
    draw_kaplan_meier,
    draw_volcano,
    feature_values,
    km_features,
    km_group_labels,
    logrank_p,
    robust_limits,
    svg_fmt,
    volcano_panels,
)
from metaniche.plotting.paint import save_quantized_png
from metaniche.plotting.style import mpl_text

if TYPE_CHECKING:
    from metaniche.config import PhenotypeParams

__all__ = ["BOUNDED_EFFECTS", "EFFECT_UNITS", "NULL_EFFECT", "RATIO_EFFECTS", "VOLCANO_MARGIN",
           "effector_strip", "feature_heatmap", "finite", "gradient_overlay", "kaplan_meier",
           "km_group_labels", "new_figure", "robust_limits", "roc_curves",
           "round_svg_coordinates", "save_figure", "select_features", "svg_fmt", "volcano",
           "volcano_panels", "zscore"]


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A figure of ``figsize`` inches on its own Agg canvas (no pyplot, no global backend)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


#: Resolution of the cohort figures' PNGs.
FIGURE_DPI = 110
#: Colours of the cohort figures' palette PNGs: enough for the continuous colour maps of the
#: heatmap and the shaded intervals; about a quarter of the RGBA file's size.
FIGURE_COLOURS = 256


def save_figure(fig: Figure, report_dir: Path, stem: str, svg: bool = True) -> list[str]:
    """Write ``figures/<stem>.png`` (and ``.svg``); return the relative paths, PNG first.

    The PNG is the figure rendered at :data:`FIGURE_DPI` on white and stored as a palette PNG
    of at most :data:`FIGURE_COLOURS` colours (:func:`metaniche.plotting.paint.
    save_quantized_png`, max-coverage quantizer); the SVG keeps its text as text
    (``svg.fonttype = "none"``)."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, facecolor="white")
    buffer.seek(0)
    with Image.open(buffer) as image:
        rgb = np.asarray(image.convert("RGB"))
    paths = [f"figures/{stem}.png"]
    save_quantized_png(report_dir / paths[0], rgb, colours=FIGURE_COLOURS, method="maxcoverage")
    if svg:
        paths.append(f"figures/{stem}.svg")
        # text as <text> elements (editable, a third of the size of glyph outlines); the
        # canvas switches to the SVG renderer by itself
        text = io.StringIO()
        with rc_context({"svg.fonttype": "none"}):
            fig.savefig(text, format="svg", dpi=FIGURE_DPI)
        write_text(report_dir / paths[1], round_svg_coordinates(text.getvalue()))
    return paths


_GEOMETRY = re.compile(r'(\s(?:d|x|y|x1|x2|y1|y2|cx|cy|r|width|height|transform|points)=")'
                       r'([^"]*)(")')
_LONG_DECIMAL = re.compile(r"-?\d+\.\d{3,}")


def round_svg_coordinates(svg: str, decimals: int = 2) -> str:
    """``svg`` with the numbers of its geometry attributes (``d``, ``x``, ``y``, ``width``,
    ``height``, ``transform``, ``points``, …) rounded to ``decimals`` places (matplotlib
    writes six; a hundredth of a point is far below what any screen or print shows). Text
    content and other attributes are left as they are."""
    def short(number: re.Match[str]) -> str:
        text = f"{float(number.group()):.{decimals}f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text

    return _GEOMETRY.sub(lambda m: m.group(1) + _LONG_DECIMAL.sub(short, m.group(2))
                         + m.group(3), svg)


def finite(values: pd.DataFrame) -> pd.DataFrame:
    """``values`` (numeric) with ±inf replaced by NaN."""
    return values.where(np.isfinite(values.to_numpy(np.float64)))


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

    Infinite values (a ratio over a zero reference, e.g. ``borderline_index`` where a type
    is absent from core and adjacent) count as missing: they cannot be z-scored. Columns
    with more than ``max_missing`` missing values, zero variance, or one value shared
    by more than ``max_mode_share`` of the non-missing samples (near-constant) are dropped;
    when an association table exists the features with the smallest p come first, otherwise
    those with the largest robust spread, the interquartile range over the median absolute
    value (a scale-free spread that one outlier cannot inflate).
    """
    numeric = finite(features.select_dtypes(include=[np.number]))
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
    z = zscore(finite(features[chosen].astype(np.float64)))
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


def volcano(association: pd.DataFrame, report_dir: Path, q_level: float = 0.05,
            max_panels: int = 9) -> list[str] | None:
    """Effect against −log10 p, one panel per outcome × test × effect type
    (:func:`volcano_panels`), q ≤ ``q_level`` highlighted, each panel drawn by
    :func:`metaniche.plotting.cohort.draw_volcano` (as ``mn.pl.volcano``).

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
        draw_volcano(fig.add_subplot(nrows, ncols, k + 1), part, outcome, test, effect_name,
                     q_level)
    fig.tight_layout()
    return save_figure(fig, report_dir, "cohort.volcano")


def kaplan_meier(curves: pd.DataFrame, association: pd.DataFrame | None, report_dir: Path,
                 max_panels: int = 4, features: pd.DataFrame | None = None,
                 time_unit: str = "", unit_name: str = "samples",
                 ) -> tuple[list[str], list[str], list[str]] | None:
    """Kaplan–Meier curves of the features with the smallest log-rank p.

    Each panel is drawn by :func:`metaniche.plotting.cohort.draw_kaplan_meier` (as
    ``mn.pl.kaplan_meier``): the two groups' curves with pointwise confidence bands, the
    log-rank p in the title, the split stated (binary features by their two values, others at
    the median; see :func:`km_group_labels`), the time axis with its unit, and the numbers at
    risk under the axis at its labelled ticks (from the ``n_at_risk`` column of
    ``km_curves``).

    Returns the written paths, the features drawn and the split sentence of each.
    """
    if curves.empty:
        return None
    features_drawn = km_features(curves, association)[:max_panels]
    p_of = logrank_p(association)
    ncols = min(2, len(features_drawn))
    nrows = -(-len(features_drawn) // ncols)
    fig = new_figure((5.0 * ncols, 4.3 * nrows))
    splits = []
    for k, feature in enumerate(features_drawn):
        part = curves[curves["feature"].astype(str) == feature]
        values = feature_values(features, feature)
        threshold = float(part["threshold"].iloc[0]) if "threshold" in part else np.nan
        how = str(part["split"].iloc[0]) if "split" in part else None
        splits.append(km_group_labels(feature, threshold, values, split=how)[1])
        draw_kaplan_meier(fig.add_subplot(nrows, ncols, k + 1), part, feature,
                          p=p_of.get(feature, np.nan), values=values, time_unit=time_unit,
                          unit_name=unit_name)
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


def effector_strip(density: pd.DataFrame, groups: pd.Series | None, params: PhenotypeParams,
                   types: list[str], report_dir: Path) -> list[str] | None:
    """Strip plot of effector density (cells/mm², log scale) per compartment, one dot per
    sample, a sample's compartments joined by a thin line, coloured by outcome group, drawn
    by :func:`metaniche.plotting.cohort.draw_effector_strip` (as ``mn.pl.effector_density``).

    Zero densities sit on a line labelled 0 below the lowest decade; the desert threshold is
    the dashed line.
    """
    if not np.isfinite(density.to_numpy(np.float64)).any():
        return None
    n_groups = len(set(groups.astype(str))) if groups is not None else 1
    fig = new_figure((6.4 + 0.6 * n_groups, 4.6))
    draw_effector_strip(fig.add_subplot(), density, groups, params.desert_max_per_mm2, types)
    fig.tight_layout()
    return save_figure(fig, report_dir, "cohort.effector_density")


def gradient_overlay(profiles: dict[str, Any], border_um: float, label: str,
                     report_dir: Path) -> list[str] | None:
    """Pooled effector gradient of each group with its bootstrap interval over samples, log y
    scale (zero densities on the line labelled 0), distance ticks labelled including 0; drawn
    by :func:`metaniche.plotting.cohort.draw_gradient_overlay` (as
    ``mn.pl.effector_gradient``)."""
    per_sample = np.asarray(profiles["per_sample"], dtype=np.float64)
    everything = np.r_[per_sample.ravel(),
                       *[np.r_[c[1], c[2], c[3]] for c in profiles["curves"].values()]]
    if not np.isfinite(everything).any() or not (everything > 0).any():
        return None
    fig = new_figure((7.6, 4.4))
    draw_gradient_overlay(fig.add_subplot(), profiles, border_um, label)
    fig.tight_layout()
    return save_figure(fig, report_dir, "cohort.effector_gradient")
