"""Sections of the cohort page (index.html), each present only when its input exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.cohort.families import FAMILIES
from metaniche.plotting.prepare import survival_time_unit
from metaniche.report import cohort_figures, svg
from metaniche.report.cohort_figures import EFFECT_UNITS
from metaniche.report.contact import contact_cohort_section
from metaniche.report.overview import overview_section
from metaniche.report.rundata import RunData
from metaniche.report.sections import Section, Table, int_label, save_svg

__all__ = ["cohort_sections"]

def _cell(value: object) -> str:
    if isinstance(value, float | np.floating | int | np.integer) and not isinstance(value, bool):
        return svg.fmt(float(value))
    return "–" if value is None or value is pd.NA else str(value)


def feature_section(run: RunData, report_dir: Path) -> Section | None:
    """Heatmap of z-scored per-sample features."""
    features = run.features
    if features is None or len(features) < 2:
        return None
    drawn = cohort_figures.feature_heatmap(features, run.association, report_dir,
                                           units=_feature_units(run))
    if drawn is None:
        return None
    paths, n_features = drawn
    how = ("smallest association p first" if run.association is not None
           else "largest interquartile range over median")
    return Section("features", "Features across samples", image=paths[0], files=paths,
                   caption=f"{len(features)} samples × {n_features} features ({how}; features "
                           "with > 20 % missing, constant, or one value in more than "
                           f"{cohort_figures.MAX_MODE_SHARE:.0%} of samples dropped; unit in "
                           "brackets), each z-scored across "
                           "samples (colour clipped at ±3); rows and columns ordered by "
                           "average-linkage clustering. All features: features.csv.")


def _feature_units(run: RunData) -> dict[str, str]:
    """Feature name (or family) → unit from features_dictionary.csv (empty when absent)."""
    path = run.dir.dictionary_path
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError):
        return {}
    if not {"name", "unit"} <= set(table.columns):
        return {}
    return dict(zip(table["name"].astype(str), table["unit"].fillna("").astype(str),
                    strict=True))


#: Panels of the volcano plot at most (the first in the association table's outcome order).
VOLCANO_PANELS = 9


def _effect_legend(table: pd.DataFrame) -> str:
    """``name = unit`` of every effect type in ``table`` ('' without an effect_name)."""
    if "effect_name" not in table.columns:
        return "as named on each axis"
    names = [n for n in pd.unique(table["effect_name"].dropna().astype(str)) if n]
    return "; ".join(f"{n} = {EFFECT_UNITS.get(n, n)}" for n in names) or "as named"


def association_section(run: RunData, report_dir: Path) -> Section | None:
    """The associations that passed the FDR (units, effects, CIs, unit of analysis), then the
    volcano plot."""
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
    paths = cohort_figures.volcano(table, report_dir, max_panels=VOLCANO_PANELS) or []
    n_panels = len(cohort_figures.volcano_panels(table))
    q = pd.to_numeric(table["q"], errors="coerce") if "q" in table.columns else None
    passed = table[q <= 0.05] if q is not None else table.iloc[:0]
    units = _feature_units(run)
    unit_of_analysis = (sorted(set(table["unit"].astype(str))) if "unit" in table.columns
                        else [str((run.manifest.steps.get("cohort") or {}).get("unit", "?"))])
    family = ["family"] if "family" in table.columns else []
    contrast = ["contrast"] if "contrast" in table.columns else []
    head = ["feature", "feature unit", *family, "outcome", *contrast, "test", "effect",
            "effect (unit)", "ci_low", "ci_high", "p", "q", "n", "unit of analysis"]
    rank = {name: k for k, name in enumerate(FAMILIES)}
    keys = (["_family"] if "family" in passed.columns else []) + [
        c for c in ("q", "p") if c in passed.columns]
    ordered = (passed.assign(_family=passed["family"].map(rank).fillna(len(rank)))
               if "family" in passed.columns else passed)
    shown = ordered.sort_values(keys, kind="stable").head(200)
    rows = []
    for row in shown.to_dict("records"):
        feature = str(row["feature"])
        unit = units.get(feature) or units.get(feature.split(".")[0], "")
        effect_name = str(row.get("effect_name") or "effect")
        rows.append([feature, unit, *(_cell(row.get(c)) for c in family),
                     str(row.get("outcome", "")), *(_cell(row.get(c)) for c in contrast),
                     str(row.get("test", "")), _cell(row.get("effect")),
                     EFFECT_UNITS.get(effect_name, effect_name), _cell(row.get("ci_low")),
                     _cell(row.get("ci_high")), _cell(row.get("p")), _cell(row.get("q")),
                     _cell(row.get("n")), str(row.get("unit", "") or unit_of_analysis[0])])
    n_sig = len(passed)
    scope = ("outcome × test × family (primary features, [cohort] primary_features, apart "
             "from exploratory ones)" if "family" in table.columns else "outcome × test")
    table_caption = (f"{n_sig} of {len(table)} feature × outcome tests computed pass q ≤ 0.05 "
                     f"(Benjamini–Hochberg within each {scope}; symmetric pair statistics "
                     "such as enrichment_z.A.B are tested once per unordered pair)."
                     + (" Contrast: the groups compared (effects are for the first against "
                        "the second; groups joined by / for omnibus tests)."
                        if "contrast" in table.columns else "")
                     + f" Unit of analysis: {', '.join(unit_of_analysis)}. Click a header to "
                     "sort; type in the box to filter rows."
                     + (" Showing the 200 smallest q." if n_sig > 200 else "")
                     + " Full table: association.parquet.")
    passed_section = Section("associations-passed", "Passed the false-discovery rate",
                             table=Table(head, rows, sortable=True) if rows else None,
                             caption=table_caption if rows else
                             f"None of the {len(table)} tests computed passes q ≤ 0.05 "
                             "(Benjamini–Hochberg). Unit of analysis: "
                             f"{', '.join(unit_of_analysis)}. Full table: "
                             "association.parquet; the volcano below shows all.")
    volcano_section = Section(
        "volcano", "Volcano plot", image=paths[0] if paths else None, files=paths,
        caption="Effect against −log10 p of every test, one panel per outcome × test × "
                "effect type (effects of different kinds — AUC, epsilon², SD differences, "
                "hazard ratios — never share an axis; the contrasts of one test share its "
                "panel, their number in the title); red: q ≤ 0.05; ratio effects on a log2 "
                "axis; undefined effects not drawn; bounded effects (AUC, Cliff's delta, "
                "epsilon², rank-biserial) on their natural range, other effects on the "
                "1st–99th percentile of the effects (widened 8 %), effects beyond drawn on the "
                "limit as open triangles (counted in the panel title); five smallest p "
                f"labelled. Effect units: {_effect_legend(table)}."
                + (f" First {VOLCANO_PANELS} of {n_panels} panels shown."
                   if n_panels > VOLCANO_PANELS else ""))
    return Section("associations", "Associations with outcome",
                   subsections=[passed_section, volcano_section],
                   caption=f"{len(table)} feature × outcome tests computed, {n_sig} with "
                           "q ≤ 0.05.")


#: Cell size (px) of the cohort's neighbourhood heat map: a handful of neighbourhoods × types,
#: drawn large enough to read (the default 18 px made a 5 × 6 map about 100 px wide).
COHORT_CELL_PX = 34.0


def survival_section(run: RunData, report_dir: Path) -> Section | None:
    """Kaplan–Meier curves with numbers at risk, the log-rank p and the split stated."""
    curves = run.table("km_curves")
    if curves is None or curves.empty:
        return None
    time_unit = survival_time_unit(run.config)
    unit = str((run.manifest.steps.get("cohort") or {}).get("unit", "sample"))
    unit_name = "patients" if unit == "patient" else "samples"
    drawn = cohort_figures.kaplan_meier(curves, run.association, report_dir,
                                        features=run.features, time_unit=time_unit,
                                        unit_name=unit_name)
    if drawn is None:
        return None
    paths, features, splits = drawn
    how = "; ".join(f"{f}: {s}" for f, s in zip(features, splits, strict=True))
    return Section("survival", "Kaplan–Meier curves", image=paths[0], files=paths,
                   caption=f"Overall survival of the {unit_name} in two groups of each of the "
                           f"{len(features)} features with the smallest log-rank p ({how}); "
                           "shaded: pointwise confidence intervals; numbers at risk under "
                           "each panel at the labelled times; time in "
                           f"{time_unit or 'the unit of the clinical table'}.")


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
                        cmap="magma_r", vmin=0.0, unit="fraction",
                        cell_px=COHORT_CELL_PX)
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


def _overview(run: RunData, report_dir: Path) -> Section:
    return overview_section(run, report_dir)


#: Cohort sections in page order: the answer first, then associations, volcano and the rest.
COHORT_SECTIONS = [_overview, association_section, survival_section, prediction_section,
                   feature_section, neighbourhood_section, lesion_exclusion_section,
                   contact_cohort_section]


def cohort_sections(run: RunData, report_dir: Path) -> list[Section]:
    """Every cohort section that has its input (figures written under ``report_dir``)."""
    return [s for s in (build(run, report_dir) for build in COHORT_SECTIONS) if s is not None]
