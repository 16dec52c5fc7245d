"""The cohort page's first section: the answer (phenotype calls, effector density, gradients).

Everything is read from the run directory: the phenotype call and warnings of each sample
(run.json), the whole-sample composition and gradient rows of the effector types
(``tables/composition.parquet``, ``tables/gradients.parquet``) and, when given, the outcome
group of each sample (the response column of ``clinical.parquet``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.analyses.compartments import ADJACENT, BORDER, CORE
from metaniche.config import PhenotypeParams
from metaniche.plotting import prepare
from metaniche.plotting.prepare import (
    MIN_BAND_AREA_MM2,
    MIN_POOLED_SAMPLES,
    MIN_SAMPLE_SHARE,
    OVERLAY_BINS,
)
from metaniche.report import cohort_figures, svg
from metaniche.report.rundata import RunData
from metaniche.report.sections import Section, Table

__all__ = ["OVERLAY_BINS", "call_explanation", "effector_densities", "outcome_groups",
           "overview_section", "sample_call_explanation"]

def _phenotype_params(run: RunData) -> PhenotypeParams:
    """The run's ``[phenotype]`` parameters as recorded in run.json (defaults when absent)."""
    return prepare.phenotype_params(run.config)


def effector_labels(run: RunData, labels: list[str]) -> list[str]:
    """The run's effector labels among ``labels`` (:func:`metaniche.roles.effector_types`)."""
    return prepare.effector_labels(run.config, labels)


def effector_densities(run: RunData) -> tuple[pd.DataFrame, list[str]] | None:
    """Sample × compartment effector density (cells/mm²; effector types summed) and the types
    (:func:`metaniche.plotting.prepare.effector_densities` of the run's composition table)."""
    return prepare.effector_densities(run.table(T.COMPOSITION), run.config)


def outcome_groups(run: RunData) -> tuple[str, pd.Series] | None:
    """The response column's name and sample → label (string; missing → 'no outcome')."""
    path = run.dir.clinical_path
    if not path.is_file():
        return None
    return prepare.outcome_groups(pd.read_parquet(path), run.config)


def call_explanation(phenotype: str | None, core: float, border: float,
                     params: PhenotypeParams, reason: str = "") -> str:
    """The phenotype rule applied to one sample's effector densities, in words."""
    d, r = params.desert_max_per_mm2, params.inflamed_min_core_border_ratio
    if phenotype == "undetermined" or not (np.isfinite(core) and np.isfinite(border)):
        return f"undetermined: {reason}" if reason else "undetermined (see the warnings)"
    if phenotype == "desert":
        return f"core {svg.fmt(core)} and border {svg.fmt(border)} < {d:g} cells/mm² → desert"
    ratio = core / border if border > 0 else np.inf
    ratio_text = "∞" if not np.isfinite(ratio) else svg.fmt(ratio)
    if phenotype == "excluded":
        return f"not desert; core / border = {ratio_text} < {r:g} → excluded"
    if phenotype == "inflamed":
        return f"not desert; core / border = {ratio_text} ≥ {r:g} → inflamed"
    return str(phenotype or "not called")


def sample_call_explanation(run: RunData, sample: str) -> str:
    """The phenotype rule applied to one sample (its ``effector_density`` features and, when
    undetermined, the reason among its warnings); '' without a call."""
    record = run.samples.get(sample)
    if record is None or not record.phenotype:
        return ""
    features = run.features
    core = border = np.nan
    if features is not None and "sample" in features.columns:
        row = features[features["sample"].astype(str) == sample]
        if not row.empty:
            core = float(pd.to_numeric(row[f"effector_density.{CORE}"],
                                       errors="coerce").iloc[0]) \
                if f"effector_density.{CORE}" in row else np.nan
            border = float(pd.to_numeric(row[f"effector_density.{BORDER}"],
                                         errors="coerce").iloc[0]) \
                if f"effector_density.{BORDER}" in row else np.nan
    reason = (_undetermined_reason(list(record.warnings))
              if record.phenotype == "undetermined" else "")
    return call_explanation(record.phenotype, core, border, _phenotype_params(run), reason)


#: Prefix of the composition stage's warning that carries the reason of an undetermined call.
_UNDETERMINED = "immune phenotype undetermined:"


def _undetermined_reason(warnings: list[str]) -> str:
    """The reason of an undetermined call among a sample's warnings (run.json): the
    composition stage's phenotype warning, else every warning."""
    hits = [w.strip()[len(_UNDETERMINED):].strip().rstrip(".") for w in warnings
            if w.strip().lower().startswith(_UNDETERMINED)]
    return "; ".join(hits or warnings)


def _call_tables(run: RunData, density: pd.DataFrame | None, groups: pd.Series | None,
                 params: PhenotypeParams) -> tuple[Table, Table]:
    calls: list[dict[str, Any]] = []
    for name, record in run.samples.items():
        if density is not None and name in density.index:
            core, border, adjacent = (float(density.loc[name, c])
                                      for c in (CORE, BORDER, ADJACENT))
        else:
            core = border = adjacent = np.nan
        phenotype = record.phenotype or ("failed" if record.status == "failed" else "–")
        reason = _undetermined_reason(list(record.warnings)) if phenotype == "undetermined" \
            else ""
        explain = (call_explanation(phenotype, core, border, params, reason)
                   if record.status != "failed" else f"failed: {record.error or ''}")
        calls.append({"sample": name, "group": groups.get(name, "no outcome")
                      if groups is not None else None, "call": phenotype, "core": core,
                      "border": border, "adjacent": adjacent, "why": explain})
    frame = pd.DataFrame(calls)
    head = ["sample"] + (["outcome group"] if groups is not None else []) + [
        "call", "effector core (cells/mm²)", "effector border (cells/mm²)",
        "effector adjacent (cells/mm²)", "rule applied"]
    rows = [[str(c["sample"])] + ([str(c["group"])] if groups is not None else [])
            + [str(c["call"]), svg.fmt(float(c["core"])), svg.fmt(float(c["border"])),
               svg.fmt(float(c["adjacent"])), str(c["why"])] for c in calls]
    order = ["inflamed", "excluded", "desert", "undetermined"]
    present = order + sorted(set(frame["call"]) - set(order))
    if groups is not None:
        counts = pd.crosstab(frame["call"], frame["group"].astype(str))
        columns = [str(c) for c in counts.columns]
        count_rows = [[call] + [str(int(counts.loc[call, c])) for c in counts.columns]
                      + [str(int(counts.loc[call].sum()))]
                      for call in present if call in counts.index]
        count_table = Table(["call"] + [f"n ({c})" for c in columns] + ["n (all)"], count_rows)
    else:
        counts_all = frame["call"].value_counts()
        count_table = Table(["call", "n samples"], [[call, str(int(counts_all[call]))]
                                                    for call in present
                                                    if call in counts_all.index])
    return Table(head, rows, sortable=True), count_table


def _gradient_profiles(run: RunData, types: list[str], groups: pd.Series | None,
                       ) -> dict[str, Any] | None:
    return prepare.gradient_profiles(run.table(T.GRADIENTS), types, groups)


def overview_section(run: RunData, report_dir: Path) -> Section:
    """The answer first: calls per sample and group, effector densities, gradient overlay."""
    params = _phenotype_params(run)
    found = effector_densities(run)
    density, types = found if found is not None else (None, [])
    grouping = outcome_groups(run)
    group_name, groups = grouping if grouping is not None else ("", None)
    calls, counts = _call_tables(run, density, groups, params)
    parts = []
    effector_text = " + ".join(types) if types else "no effector label found"
    rule = (f"Rule (Chen & Mellman 2017, densities of the effector cells {effector_text}): "
            f"desert when core and border are both below {params.desert_max_per_mm2:g} "
            "cells/mm²; otherwise excluded when core / border is below "
            f"{params.inflamed_min_core_border_ratio:g}, inflamed when at or above; "
            "undetermined when the core or border has no tissue or no effector label "
            "matched (the reason is given).")
    parts.append(Section("overview-calls", "Phenotype calls", table=counts,
                         caption="Number of samples per call" + (
                             f" and per outcome group ({group_name})" if groups is not None
                             else "") + ". " + rule))
    parts.append(Section("overview-samples", "Call of each sample", table=calls,
                         caption="Each sample's call with the measured effector densities "
                                 "against the thresholds. Click a column header to sort."))
    if density is not None and np.isfinite(density.to_numpy(np.float64)).any():
        sample_groups = (groups.reindex(density.index).fillna("no outcome").astype(str)
                         if groups is not None else None)
        paths = cohort_figures.effector_strip(density, sample_groups, params, types,
                                              report_dir)
        if paths:
            parts.append(Section(
                "overview-density", "Effector density per compartment", image=paths[0],
                files=paths,
                caption=f"{effector_text} cells per mm² of the core, border and adjacent "
                        "tissue of each sample (one dot per sample, lines join a sample's "
                        "compartments; log scale, labelled ticks; samples with none in a "
                        "compartment sit on the line marked 0). Black bars: the median of "
                        "each group in each compartment. Dashed: the desert threshold "
                        f"({params.desert_max_per_mm2:g} cells/mm²)."
                        + (f" Colour: outcome group ({group_name})." if groups is not None
                           else "")))
    profiles = _gradient_profiles(run, types, groups) if types else None
    if profiles is not None:
        border = float((run.config.get("compartments") or {}).get("border_um", np.nan))
        paths = cohort_figures.gradient_overlay(profiles, border, effector_text, report_dir)
        if paths:
            parts.append(Section(
                "overview-gradients", "Effector gradient across the boundary", image=paths[0],
                files=paths,
                caption=f"{effector_text} density against the signed distance to the tumour "
                        "boundary (µm, negative inside tumour), pooled per "
                        + ("outcome group" if groups is not None else "cohort")
                        + " as Σ cells / Σ band area over its samples in "
                        f"{profiles['bin_um']:g} µm bins; shaded: 95 % bootstrap interval "
                        "over samples (per-sample curves: each sample page). Bins whose band "
                        f"area is below {MIN_BAND_AREA_MM2:g} mm², or where fewer than "
                        f"{MIN_SAMPLE_SHARE:.0%} of the group's samples (at least "
                        f"{MIN_POOLED_SAMPLES}) have tissue, are masked (not drawn: far from "
                        "the boundary only a few samples reach). Log "
                        "scale; shaded vertical band: the border compartment."))
    return Section("overview", "Overview: the answer", subsections=parts,
                   caption=f"{len(run.samples)} samples. Immune phenotype of each sample "
                           "from its effector density in the tumour core and border.")
