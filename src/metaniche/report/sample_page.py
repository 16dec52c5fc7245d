"""Sections of a per-sample page, each built from one long table of the run directory.

Every builder returns None when its table is absent or holds no rows for the sample, so a
section appears exactly when its analysis ran. Columns used are the DESIGN.md contracts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.analyses.compartments import COMPARTMENTS, WHOLE
from metaniche.config import CompartmentParams
from metaniche.plotting.prepare import (
    MAX_DISPLAY_BINS,
    MIN_BAND_AREA_MM2,
    composition_grid,
    enrichment_grid,
    enrichment_limit,
    gradient_intervals,
    gradient_panels,
    grids,
    merge_bins,
    whole_sample,
)
from metaniche.report import svg
from metaniche.report.colours import COMPARTMENT_COLOURS, categorical
from metaniche.report.contact import contact_sample_section
from metaniche.report.overview import effector_labels
from metaniche.report.rundata import RunData
from metaniche.report.sections import Section, Table, inline_svg, int_label, preferred

__all__ = ["GLANCE", "KEY_GRADIENT_PANELS", "SAMPLE_SECTIONS", "key_gradient_section", "merge_bins",
           "sample_sections", "state_gradient_section", "state_section"]

#: Cell size (px) of the sample-page heatmaps: 15 types give a ≈ 400 px square, readable.
SAMPLE_CELL_PX = 26.0


_whole_sample = whole_sample
_grids = grids


def _pivot(rows: pd.DataFrame, index: str, columns: str, values: str,
           labels: list | None = None) -> pd.DataFrame:
    """Wide table ``index × columns`` of ``values`` (first row wins; :func:`grids`)."""
    return grids(rows, index, columns, [values], labels)[values]


def density_section(run: RunData, sample: str, stem: str, report_dir: Path) -> Section | None:
    """Density (cells/mm²) of every cell type per compartment: grouped bars and a table."""
    rows = run.sample_rows(T.COMPOSITION, sample)
    if rows is None or rows.empty:
        return None
    rows = _whole_sample(rows)
    grid = composition_grid(rows)
    wide, counts = grid["density_per_mm2"], grid["n_cells"]
    groups = [c for c in COMPARTMENTS if c in wide.columns]
    if not groups and WHOLE not in wide.columns:
        return None
    types = [str(t) for t in wide.index]
    chart = svg.grouped_hbars(types, groups, wide[groups].to_numpy(np.float64),
                              title="Density by compartment",
                              colours=[COMPARTMENT_COLOURS[g] for g in groups],
                              unit="cells/mm²", tooltips=False)   # the table holds them
    markup, download = inline_svg(chart, f"{stem}.density")
    shown = groups + ([WHOLE] if WHOLE in wide.columns else [])
    table = Table(["cell type"] + [f"{c} (cells/mm²)" for c in shown] + ["n cells (all)"],
                  [[t] + [svg.fmt(wide.loc[t, c]) for c in shown]
                   + [svg.fmt(counts.loc[t, WHOLE]) if WHOLE in counts.columns else "–"]
                   for t in wide.index], sortable=True)
    areas = rows.drop_duplicates("compartment").set_index("compartment")["area_mm2"]
    area_text = ", ".join(f"{c} {areas[c]:.3g} mm²" for c in shown if c in areas.index)
    return Section("density", "Density by compartment", svg=markup, download=download,
                   table=table,
                   caption="Cells per mm² of each compartment's tissue area, log scale with "
                           "every decade labelled (core: signed "
                           "distance d < −w, border: |d| ≤ w, adjacent: d > w). Areas: "
                           f"{area_text}.")


def _gradient_panels(run: RunData, sample: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(cell type, bin centres, density)`` of every type with cells in the sample's
    whole-sample gradient (the first lesion's when there is no whole-sample row):
    :func:`metaniche.plotting.prepare.gradient_panels`, as ``mn.pl.gradients`` draws them."""
    return run.derived("gradient_panels", sample,
                       lambda: gradient_panels(run.sample_rows(T.GRADIENTS, sample)))


def _gradient_intervals(run: RunData, sample: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """95% exact Poisson interval of every panel's bins
    (:func:`metaniche.plotting.prepare.gradient_intervals`)."""
    return run.derived("gradient_intervals", sample,
                       lambda: gradient_intervals(run.sample_rows(T.GRADIENTS, sample)))


#: What the shaded band around a gradient line is, for the captions.
_INTERVAL_TEXT = ("the shaded band around each line is the 95% exact Poisson interval of the "
                  "bin's density (its cell count in its area: counting noise, wide where a "
                  "type is rare)")

#: Panels of the key gradient chart beside the tissue map (effector and tumour types).
KEY_GRADIENT_PANELS = 4


def key_gradient_section(run: RunData, sample: str, stem: str,
                         report_dir: Path) -> Section | None:
    """The gradients a reader looks at first: the effector types of the phenotype call and the
    tumour types (at most :data:`KEY_GRADIENT_PANELS` panels, two per row), shown beside the
    tissue map; every type's panel is in the collapsed section below."""
    panels = _gradient_panels(run, sample)
    if not panels:
        return None
    labels = [label for label, *_ in panels]
    key = effector_labels(run, labels)
    tumour = (run.config.get("cell_types") or {}).get("tumor") or []
    key += [t for t in labels if (t in tumour if tumour else t.lower().startswith("tumo"))
            and t not in key]
    chosen = [p for p in panels if p[0] in key][:KEY_GRADIENT_PANELS]
    if not chosen:
        return None
    width = float(run.config.get("compartments", {}).get("border_um",
                                                         CompartmentParams.border_um))
    chart = svg.small_multiples(chosen, title="Key gradients", ncols=2, panel_px=(230, 120),
                                xlabel="signed distance to the tumour boundary (µm, < 0 "
                                       "inside tumour)", ylabel="cells/mm²",
                                band=(-width, width), vline=0.0,
                                intervals=_gradient_intervals(run, sample))
    markup, download = inline_svg(chart, f"{stem}.key_gradients")
    return Section("key-gradients", "Key gradients", svg=markup, download=download,
                   caption="Effector (phenotype call) and tumour cells per mm² against the "
                           f"signed distance to the boundary; shaded: border (±{width:g} µm); "
                           f"{_INTERVAL_TEXT}; a band taller than the panel is cut at its top. "
                           "Every type: Gradients of every cell type below.")


def gradient_section(run: RunData, sample: str, stem: str, report_dir: Path) -> Section | None:
    """Density of each cell type against signed distance to the tumour boundary."""
    panels = _gradient_panels(run, sample)
    if not panels:
        return None
    width = float(run.config.get("compartments", {}).get("border_um",
                                                         CompartmentParams.border_um))
    chart = svg.small_multiples(panels, title="Gradients of every cell type",
                                xlabel="signed distance to the tumour boundary (µm, negative "
                                       "inside tumour)", ylabel="cells/mm²",
                                band=(-width, width), vline=0.0)
    markup, download = inline_svg(chart, f"{stem}.gradients")
    return Section("gradients", "Gradients of every cell type", svg=markup, download=download,
                   caption="Density (cells per mm² of tissue in each distance bin) of every "
                           "cell type against the signed distance to the tumour boundary; "
                           f"the shaded band is the border (±{width:g} µm), the dashed line "
                           "the boundary. Each panel has its own y scale; the 95% interval "
                           "of each bin is drawn in Key gradients above and by "
                           "mn.pl.gradients (here it would add 0.4 MB to a 150-sample "
                           "report); bins are merged to "
                           f"at most {MAX_DISPLAY_BINS} for display and bins whose band area "
                           f"is below {MIN_BAND_AREA_MM2:g} mm² are masked (not drawn: one "
                           "cell in a sliver of tissue would read as thousands per mm²; full "
                           "resolution: tables/gradients.parquet).")


def enrichment_section(run: RunData, sample: str, stem: str, report_dir: Path) -> Section | None:
    """Neighbourhood-enrichment z-scores as a type × type heatmap."""
    rows = run.sample_rows(T.ENRICHMENT, sample)
    if rows is None or rows.empty:
        return None
    types, grid, null = enrichment_grid(rows)
    null_note = f" Null model: labels permuted within the {null}." if null else ""
    z = grid["z"]
    tips = {name: grid[name].to_numpy(np.float64) for name in ("observed", "expected", "z", "p")}
    limit = enrichment_limit(z.to_numpy(np.float64))
    chart = svg.heatmap(z.to_numpy(np.float64), [str(t) for t in types],
                        [str(t) for t in types], title="Neighbourhood enrichment (z)",
                        cmap="RdBu_r", vmin=-limit, vmax=limit, unit="z", tip_values=tips,
                        tip_joiner="–", cell_px=SAMPLE_CELL_PX)
    markup, download = inline_svg(chart, f"{stem}.enrichment")
    return Section("enrichment", "Neighbourhood enrichment", svg=markup, download=download,
                   caption="z = (observed − expected) / sd of the number of contacts between "
                           "cells of type a (row) and type b (column); red: more contacts "
                           f"than expected, blue: fewer (colour clipped at ±{limit:.3g})."
                           + null_note + " Hover a cell for observed, expected and p.")


def distance_section(run: RunData, sample: str, stem: str, report_dir: Path) -> Section | None:
    """Median nearest-neighbour distance from each source type to each target type."""
    rows = run.sample_rows(T.DISTANCES, sample)
    if rows is None or rows.empty:
        return None
    if "compartment" in rows.columns and (rows["compartment"] == WHOLE).any():
        rows = rows[rows["compartment"] == WHOLE]
    rows = _whole_sample(rows)
    grids = _grids(rows, "source_type", "target_type", ["median_um", "mean_um", "n_source"])
    median = grids["median_um"]
    if median.empty:
        return None
    tips = {name: frame.to_numpy(np.float64) for name, frame in grids.items()}
    chart = svg.heatmap(median.to_numpy(np.float64), [str(t) for t in median.index],
                        [str(t) for t in median.columns], title="Nearest-neighbour distance",
                        cmap="viridis_r", unit="median µm", tip_values=tips,
                        tip_joiner="→", cell_px=SAMPLE_CELL_PX)
    markup, download = inline_svg(chart, f"{stem}.distances")
    return Section("distances", "Distances between cell types", svg=markup, download=download,
                   caption="Median distance (µm) from each cell of the source type (row) to "
                           "its nearest cell of the target type (column), whole sample. "
                           "Hover for the mean and number of source cells.")


def neighbourhood_section(run: RunData, sample: str, stem: str,
                          report_dir: Path) -> Section | None:
    """Fraction of the sample's cells in each cellular neighbourhood, per compartment."""
    rows = run.sample_rows(T.NEIGHBOURHOODS, sample)
    if rows is None or rows.empty:
        return None
    if "table" in rows.columns:
        rows = rows[rows["table"] == T.NEIGHBOURHOOD_ABUNDANCE]
    if rows.empty or "fraction" not in rows.columns:
        return None
    wide = _pivot(rows, "compartment", "neighbourhood", "fraction").fillna(0.0)
    order = [c for c in (WHOLE, *COMPARTMENTS) if c in wide.index]
    order += [c for c in wide.index if c not in order]
    wide = wide.reindex(order)
    names = [f"CN{int_label(c)}" for c in wide.columns]
    chart = svg.stacked_bars([str(c) for c in wide.index], names, wide.to_numpy(np.float64),
                             title="Cellular neighbourhoods", colours=categorical(len(names)))
    markup, download = inline_svg(chart, f"{stem}.neighbourhoods")
    return Section("neighbourhoods", "Neighbourhood composition", svg=markup,
                   download=download,
                   caption="Fraction of the cells of each compartment assigned to each "
                           "cellular neighbourhood (CNs fitted across the cohort; their "
                           "cell-type composition is on the cohort page).")


def zonation_section(run: RunData, sample: str, stem: str, report_dir: Path) -> Section | None:
    """Density of each cell type along the portal→central lobule axis."""
    rows = run.sample_rows(T.ZONATION, sample)
    if rows is None or rows.empty:
        return None
    subset = ""
    if "subset" in rows.columns:
        subset = preferred(rows["subset"], T.ZONATION_OUTSIDE) or ""
        rows = rows[rows["subset"] == subset] if subset else rows
    panels = []
    for cell_type, part in rows.groupby("cell_type", sort=True):
        part = part.sort_values("eta_start")
        density = part["density_per_mm2"].to_numpy(np.float64)
        if np.nansum(density) > 0:
            centre = (part["eta_start"].to_numpy() + part["eta_end"].to_numpy()) / 2
            panels.append((str(cell_type), centre, density))
    if not panels:
        return None
    chart = svg.small_multiples(panels, title="Zonation", xlabel="lobule coordinate eta "
                                "(0 portal, 1 central)", ylabel="cells/mm²")
    markup, download = inline_svg(chart, f"{stem}.zonation")
    return Section("zonation", "Liver zonation", svg=markup, download=download,
                   caption="Density of each cell type along the portal (0) → central (1) axis "
                           "eta = d_portal / (d_portal + d_central), host tissue "
                           f"({subset or 'all'} cells).")


def aggregate_section(run: RunData, sample: str, stem: str, report_dir: Path) -> Section | None:
    """Table of the sample's multicellular aggregates (TLS, lymphoid clusters, units)."""
    rows = run.sample_rows(T.AGGREGATES, sample)
    if rows is None or rows.empty:
        return None
    wanted = [c for c in ("aggregate_id", "kind", "n_cells", "area_mm2", "signed_distance_um",
                          "grade") if c in rows.columns]
    table = Table(wanted, [[_cell(v) for v in row] for row in rows[wanted].itertuples(
        index=False)])
    return Section("aggregates", "Aggregates and TLS", table=table,
                   caption="Multicellular aggregates found by density (outlined dashed on the "
                           "tissue map); signed distance of the centroid to the tumour "
                           "boundary (negative inside tumour).")


#: A state-fraction band is drawn only when it holds at least this many cells of the type
#: (one PD-L1+ cell among two would read as 50 %); tables/state_gradients.parquet keeps all.
MIN_STATE_BAND_CELLS = 5


def state_section(run: RunData, sample: str, stem: str, report_dir: Path) -> Section | None:
    """Fraction of each cell type's cells carrying each state, per compartment (table)."""
    rows = run.sample_rows(T.STATES, sample)
    if rows is None or rows.empty:
        return None
    rows = _whole_sample(rows)
    if rows.empty:
        return None
    pairs = pd.MultiIndex.from_arrays([rows["cell_type"].astype(str),
                                       rows["state"].astype(str)])
    codes, uniques = pd.factorize(pairs)
    rows = rows.assign(key=codes)
    shown = [c for c in (*COMPARTMENTS, WHOLE) if c in set(rows["compartment"])]
    grids = _grids(rows, "key", "compartment", ["fraction", "n_positive", "n_cells"])
    fraction = grids["fraction"].reindex(columns=shown)
    positive, cells = grids["n_positive"], grids["n_cells"]
    table_rows = []
    for key in fraction.index:
        cell_type, state = uniques[key]
        whole = [f"{svg.fmt(positive.loc[key, WHOLE])} / {svg.fmt(cells.loc[key, WHOLE])}"
                 if WHOLE in positive.columns else "–"]
        table_rows.append([state, cell_type]
                          + [svg.fmt(100 * fraction.loc[key, c]) for c in shown] + whole)
    table_rows.sort(key=lambda r: (r[0], r[1]))
    table = Table(["state", "cell type"] + [f"{c} (% positive)" for c in shown]
                  + ["positive / cells (all)"], table_rows, sortable=True)
    return Section("states", "Cell states", table=table,
                   caption="Share (%) of the cells of each type carrying each state, in the "
                           "tumour core, border and adjacent tissue and the whole sample "
                           "(positive cells / cells of the type there; – where the "
                           "compartment has no cell of the type). States are defined in "
                           "[states] of the configuration; full table: tables/states.parquet.")


def state_gradient_section(run: RunData, sample: str, stem: str,
                           report_dir: Path) -> Section | None:
    """Fraction of a type's cells carrying a state against the signed distance (bands)."""
    rows = run.sample_rows(T.STATE_GRADIENTS, sample)
    if rows is None or rows.empty:
        return None
    rows = rows.sort_values(["cell_type", "state", "bin_start_um"], kind="stable")
    panels = []
    for (cell_type, state), part in rows.groupby(["cell_type", "state"], sort=True):
        factor = max(1, -(-len(part) // MAX_DISPLAY_BINS))
        group = np.arange(len(part)) // factor
        n = np.bincount(group, weights=pd.to_numeric(part["n_cells"]).to_numpy(np.float64))
        k = np.bincount(group, weights=pd.to_numeric(part["n_positive"]).to_numpy(np.float64))
        first = part["bin_start_um"].to_numpy(np.float64)[::factor]
        last = part["bin_end_um"].to_numpy(np.float64)[
            np.minimum(np.arange(len(n)) * factor + factor - 1, len(part) - 1)]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(n >= MIN_STATE_BAND_CELLS, 100 * k / np.maximum(n, 1), np.nan)
        if np.isfinite(share).any():
            panels.append((f"{state} · {cell_type}", (first + last) / 2, share))
    if not panels:
        return None
    width = float(run.config.get("compartments", {}).get("border_um",
                                                         CompartmentParams.border_um))
    chart = svg.small_multiples(panels, title="State profiles across the boundary",
                                xlabel="signed distance to the tumour boundary (µm, negative "
                                       "inside tumour)", ylabel="% positive",
                                band=(-width, width), vline=0.0)
    markup, download = inline_svg(chart, f"{stem}.state_gradients")
    return Section("state-gradients", "State profiles across the boundary", svg=markup,
                   download=download,
                   caption="Share (%) of the cells of each type carrying each state, per "
                           "signed-distance band (bins merged to at most "
                           f"{MAX_DISPLAY_BINS}); bands with fewer than {MIN_STATE_BAND_CELLS} "
                           "cells of the type are masked (not drawn). Shaded: the border "
                           f"(±{width:g} µm); dashed: the boundary. Full resolution: "
                           "tables/state_gradients.parquet.")


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        return svg.fmt(float(value))
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


SectionBuilder = Callable[[RunData, str, str, Path], Section | None]
#: Per-sample sections in page order.
SAMPLE_SECTIONS: list[SectionBuilder] = [density_section, key_gradient_section,
                                         gradient_section, enrichment_section,
                                         distance_section, neighbourhood_section,
                                         state_section, state_gradient_section,
                                         zonation_section, aggregate_section,
                                         contact_sample_section]
#: Sections shown at a glance beside the tissue map (the rest are collapsed below).
GLANCE = ("density", "key-gradients")


def sample_sections(run: RunData, sample: str, stem: str, report_dir: Path) -> list[Section]:
    """Every section that has data for ``sample`` (figures written under ``report_dir``)."""
    sections = []
    for build in SAMPLE_SECTIONS:
        section = build(run, sample, stem, report_dir)
        if section is not None:
            sections.append(section)
    return sections
