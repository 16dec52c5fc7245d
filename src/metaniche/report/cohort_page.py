"""Sections of the cohort page (index.html), each present only when its input exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.report import cohort_figures, svg
from metaniche.report.rundata import RunData
from metaniche.report.sections import Section, Table, int_label, save_svg

__all__ = ["cohort_sections"]

_ASSOCIATION_COLUMNS = ["feature", "outcome", "test", "statistic", "effect", "ci_low", "ci_high",
                        "p", "q"]


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating | int | np.integer) and not isinstance(value, bool):
        return svg.fmt(float(value))
    return "–" if value is None or value is pd.NA else str(value)


def feature_section(run: RunData, report_dir: Path) -> Section | None:
    """Heatmap of z-scored per-sample features."""
    features = run.features
    if features is None or len(features) < 2:
        return None
    drawn = cohort_figures.feature_heatmap(features, run.association, report_dir)
    if drawn is None:
        return None
    paths, n_features = drawn
    how = ("smallest association p first" if run.association is not None
           else "largest coefficient of variation")
    return Section("features", "Features across samples", image=paths[0], files=paths,
                   caption=f"{len(features)} samples × {n_features} features ({how}; features "
                           "with > 20 % missing or constant dropped), each z-scored across "
                           "samples (colour clipped at ±3); rows and columns ordered by "
                           "average-linkage clustering. All features: features.csv.")


def association_section(run: RunData, report_dir: Path) -> Section | None:
    """Volcano plot and the table of the strongest associations."""
    table = run.association
    if table is None or table.empty:
        return None
    n_tests = len(table)
    table = table[np.isfinite(pd.to_numeric(table["p"], errors="coerce"))]
    if table.empty:
        return Section("associations", "Associations with outcome",
                       caption=f"None of the {n_tests} feature × outcome tests could be "
                               "computed (too few samples per group); see the reasons under "
                               "Run status.")
    paths = cohort_figures.volcano(table, report_dir) or []
    shown = [c for c in _ASSOCIATION_COLUMNS if c in table.columns]
    top = table.sort_values([c for c in ("q", "p") if c in table.columns]).head(30)
    rows = [[_cell(v) for v in row] for row in top[shown].itertuples(index=False)]
    n_sig = int((table["q"] <= 0.05).sum()) if "q" in table.columns else 0
    return Section("associations", "Associations with outcome", image=paths[0] if paths else None,
                   files=paths, table=Table(shown, rows),
                   caption=f"{len(table)} feature × outcome tests computed, {n_sig} with q ≤ 0.05 "
                           "(Benjamini–Hochberg). Volcano: effect against −log10 p, red q ≤ "
                           "0.05, five smallest p labelled. Table: the 30 smallest q; the full "
                           "table is association.parquet.")


def survival_section(run: RunData, report_dir: Path) -> Section | None:
    """Kaplan–Meier curves of median splits."""
    curves = run.table("km_curves")
    if curves is None or curves.empty:
        return None
    drawn = cohort_figures.kaplan_meier(curves, run.association, report_dir)
    if drawn is None:
        return None
    paths, features = drawn
    return Section("survival", "Kaplan–Meier curves", image=paths[0], files=paths,
                   caption=f"Overall survival of samples above (high) and at or below (low) "
                           f"the cohort median of {len(features)} features with the smallest "
                           "log-rank p; shaded: pointwise confidence intervals.")


def prediction_section(run: RunData, report_dir: Path) -> Section | None:
    """ROC of the cross-validated spatial model against the composition baseline."""
    prediction = run.prediction
    if not prediction:
        return None
    paths = cohort_figures.roc_curves(prediction, report_dir)
    if paths is None:
        return None
    rows = []
    for name in ("spatial", "baseline"):
        summary = prediction.get(name)
        if summary:
            rows.append([name, _cell(summary.get("auc")), _cell(summary.get("ci_low")),
                         _cell(summary.get("ci_high")), _cell(summary.get("n_features"))])
    difference = prediction.get("difference")
    if difference:
        rows.append(["spatial − baseline", _cell(difference.get("auc")),
                     _cell(difference.get("ci_low")), _cell(difference.get("ci_high")), ""])
    return Section("prediction", "Prediction of response", image=paths[0], files=paths,
                   table=Table(["model", "AUC", "ci_low", "ci_high", "features"], rows),
                   caption=f"Out-of-fold ROC curves of {prediction.get('unit_count', '?')} "
                           f"units ({prediction.get('n_responders', '?')} responders), "
                           f"{prediction.get('n_folds', '?')}-fold cross-validation repeated "
                           f"{prediction.get('n_repeats', '?')} times. Model: "
                           f"{prediction.get('model', '')}. Baseline: cell-type proportions "
                           "only.")


def neighbourhood_section(run: RunData, report_dir: Path) -> Section | None:
    """Cell-type composition of each cellular neighbourhood (cohort fit)."""
    table = run.table(T.NEIGHBOURHOODS)
    if table is None or "table" not in table.columns:
        return None
    rows = table[table["table"] == T.NEIGHBOURHOOD_COMPOSITION]
    if rows.empty:
        return None
    wide = rows.pivot_table(index="neighbourhood", columns="cell_type", values="fraction",
                            aggfunc="first")
    chart = svg.heatmap(wide.to_numpy(np.float64), [f"CN{int_label(c)}" for c in wide.index],
                        [str(t) for t in wide.columns], title="Neighbourhood composition",
                        cmap="magma_r", vmin=0.0, unit="fraction")
    markup, path = save_svg(chart, report_dir, "cohort.neighbourhoods")
    return Section("neighbourhoods", "Cellular neighbourhoods", svg=markup, files=[path],
                   caption="Mean fraction of each cell type among the k nearest neighbours "
                           "of the cells of each neighbourhood (CN), fitted across the cohort.")


_LESION_COLUMNS = ["cell_type", "outcome", "test", "effect", "ci_low", "ci_high", "p", "q",
                   "n_lesions", "n_patients", "note"]


def lesion_exclusion_section(run: RunData, report_dir: Path) -> Section | None:
    """Lesion size against CD8 (infiltration-type) exclusion across lesions and patients."""
    table = run.cohort_table("lesion_size_exclusion")
    if table is None or table.empty:
        return None
    shown = [c for c in _LESION_COLUMNS if c in table.columns]
    rows = [[_cell(v) for v in row] for row in table[shown].itertuples(index=False)]
    feature = str(table["feature"].iloc[0]) if "feature" in table.columns else "log10 size"
    return Section("lesion_exclusion", "Lesion size and immune exclusion",
                   table=Table(shown, rows),
                   caption=f"Each lesion of every sample against its size ({feature}). "
                           "Spearman: rho across lesions (lesions of one patient treated as "
                           "independent). mixedlm: slope per tenfold size of a linear mixed "
                           "model with a patient random intercept (needs a patient with several "
                           "lesions). A negative effect on relative_infiltration_depth (median "
                           "depth inside over the equivalent radius) or core_border_ratio means "
                           "larger lesions exclude the type more; the raw "
                           "infiltration_depth_um grows with size even under uniform "
                           "infiltration, so do not read it as exclusion. Full table: "
                           "cohort/lesion_size_exclusion.parquet.")


COHORT_SECTIONS = [feature_section, association_section, survival_section, prediction_section,
                   neighbourhood_section, lesion_exclusion_section]


def cohort_sections(run: RunData, report_dir: Path) -> list[Section]:
    """Every cohort section that has its input (figures written under ``report_dir``)."""
    return [s for s in (build(run, report_dir) for build in COHORT_SECTIONS) if s is not None]
