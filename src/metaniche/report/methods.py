"""Methods text of the cohort page: prose generated from what ran, then every parameter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from metaniche.report.bands import MIN_BAND_AREA_MM2

__all__ = ["flatten_parameters", "methods_paragraphs"]


def flatten_parameters(config: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Every configuration key as ``(dotted.key, value)`` in recorded order (lists joined)."""
    rows: list[tuple[str, str]] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(flatten_parameters(value, name + "."))
        elif isinstance(value, list | tuple):
            rows.append((name, ", ".join(str(v) for v in value) if value else "(none)"))
        elif isinstance(value, dict):
            rows.append((name, "(none)"))
        else:
            rows.append((name, "(none)" if value in ("", None) else str(value)))
    return rows


def _value(config: dict[str, Any], section: str, key: str) -> str:
    value = config.get(section, {}).get(key)
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "(none)"
    return "(none)" if value in ("", None) else str(value)


def _used(config: dict[str, Any], used: pd.DataFrame | None, key: str, unit: str,
          automatic: str) -> str:
    """The value of ``[compartments] key`` that was used: the configured one, or when it is
    0 (automatic) the values the run recorded per sample (``tables/compartments`` column)."""
    configured = config.get("compartments", {}).get(key)
    try:
        automatic_chosen = float(configured) == 0.0
    except (TypeError, ValueError):
        automatic_chosen = False
    if not automatic_chosen:
        return f"{configured} {unit}".strip()
    if used is None or key not in used.columns:
        return f"chosen automatically ({automatic})"
    values = pd.to_numeric(used[key], errors="coerce").dropna()
    if values.empty:
        return f"chosen automatically ({automatic})"
    low, high = float(values.min()), float(values.max())
    shown = f"{low:.3g} {unit}" if np.isclose(low, high) else f"{low:.3g}–{high:.3g} {unit}"
    return f"{shown.strip()} (automatic: {automatic})"


def methods_paragraphs(config: dict[str, Any], version: str,
                       ran: dict[str, pd.DataFrame | None] | None = None) -> list[str]:
    """Plain-text paragraphs describing what was computed, with the parameter values used.

    Parameters
    ----------
    config
        The run's configuration as recorded in run.json.
    version
        metaniche version of the run.
    ran
        The run's tables by name (None or missing: not written). A paragraph appears only for
        an analysis whose table exists: zonation needs ``zonation`` rows (portal and central
        landmarks found), the aggregate paragraph names the FDC / germinal-centre rules only
        when a TLS was graded with them; parameters set to 0 = automatic are shown with the
        values used per sample (``compartments`` table).
    """
    ran = ran or {}

    def v(section: str, key: str) -> str:
        return _value(config, section, key)

    def has(name: str) -> bool:
        table = ran.get(name)
        return table is not None and not table.empty

    used = ran.get("compartments")
    text = [f"Analysed with metaniche {version}. Coordinates were scaled by "
            f"{config.get('um_per_unit', 1.0)} µm per unit; samples with fewer than "
            f"{config.get('min_cells', '?')} cells were not analysed."]
    if "compartments" in config:
        fraction = config.get("compartments", {}).get("tumor_fraction")
        try:
            threshold = ("chosen per sample by the isodata method, clipped to [0.2, 0.6]"
                         if float(fraction) == 0.0 else f"{fraction}")
        except (TypeError, ValueError):
            threshold = str(fraction)
        text.append(
            "Tumour regions were detected on a raster of "
            f"{_used(config, used, 'grid_um', 'µm', '5 µm scaled by the cell spacing')} "
            "pixels from the local fraction of tumour cells (Gaussian smoothing sigma "
            f"{_used(config, used, 'smoothing_um', 'µm', '20 µm scaled by the cell spacing')}"
            f", immune weight {v('compartments', 'immune_weight')}, threshold {threshold}), "
            "dropping lesions smaller than "
            f"{_used(config, used, 'min_lesion_area_um2', 'µm²', '20,000 µm² scaled')} and "
            "filling holes smaller than "
            f"{_used(config, used, 'min_hole_area_um2', 'µm²', '20,000 µm² scaled')}; "
            "tissue = discs of radius "
            f"{_used(config, used, 'tissue_radius_um', 'µm', 'half the median nearest-neighbour distance')}"  # noqa: E501
            " closed by "
            f"{_used(config, used, 'tissue_closing_um', 'µm', '30 µm scaled by the cell spacing')}"
            ". Every cell got a signed distance d to the tumour boundary (negative inside) "
            "and a compartment: core d < −w, border |d| ≤ w, adjacent d > w with w = "
            f"{v('compartments', 'border_um')} µm. Densities are cells per mm² of each "
            "compartment's tissue area.")
    if "phenotype" in config:
        effectors = v("phenotype", "effector_types")
        text.append(
            "Immune phenotype (Chen & Mellman 2017) from the effector density ("
            + (effectors if effectors != "(none)" else "labels containing CD8")
            + f"): desert when core and border are both below "
            f"{v('phenotype', 'desert_max_per_mm2')} cells/mm², else excluded when core / "
            f"border is below {v('phenotype', 'inflamed_min_core_border_ratio')}, else "
            "inflamed.")
    if "gradients" in config and has("gradients"):
        text.append(
            f"Gradients: densities in {v('gradients', 'bin_um')} µm bins of signed distance "
            f"from {v('gradients', 'min_um')} to {v('gradients', 'max_um')} µm (slopes within "
            f"±{v('gradients', 'window_um')} µm); the report masks display bins whose band "
            f"area is below {MIN_BAND_AREA_MM2:g} mm².")
    if "relations" in config and has("enrichment"):
        permutations = v("relations", "n_permutations")
        null = "analytic null" if permutations == "0" else f"{permutations} permutations"
        text.append(
            f"Cell–cell relations: contact graph '{v('relations', 'graph')}' (radius "
            f"{v('relations', 'contact_radius_um')} µm, k = {v('relations', 'k')}); "
            f"neighbourhood enrichment ({null}); counts within "
            f"{v('relations', 'count_within_um')} µm; {_ripley_text(config)}; "
            f"seed {v('relations', 'seed')}. "
            "Symmetric pair statistics (enrichment z, Ripley L) are features once per "
            "unordered pair (types in sorted order); nearest distances keep both directions.")
    if "neighbourhoods" in config and has("neighbourhoods"):
        text.append(f"Cellular neighbourhoods: parameters {_section(config, 'neighbourhoods')}.")
    if "aggregates" in config and has("aggregates"):
        aggregates = ran["aggregates"]
        graded = aggregates is not None and (
            ("n_fdc" in aggregates.columns and (aggregates["n_fdc"].fillna(0) > 0).any())
            or ("n_gc" in aggregates.columns and (aggregates["n_gc"].fillna(0) > 0).any()))
        text.append(
            "Aggregates: density clusters of B and T cells (a core cell has at least "
            f"{v('aggregates', 'min_neighbours')} other B/T cells within "
            f"{v('aggregates', 'radius_um')} µm; clusters of at least "
            f"{v('aggregates', 'min_cells')} cells listed); TLS when at least "
            f"{v('aggregates', 'tls_min_cells')} B + T cells with a B fraction of at least "
            f"{v('aggregates', 'tls_min_b_fraction')}."
            + (f" TLS maturity graded by follicular dendritic cells ("
               f"{v('aggregates', 'fdc_types')}) and germinal-centre B cells ("
               f"{v('aggregates', 'gc_types')})." if graded else ""))
    if "zonation" in config and has("zonation"):
        text.append(
            "Zonation: eta = d_portal / (d_portal + d_central) with portal landmarks "
            f"{v('zonation', 'portal_types')} and central landmarks "
            f"{v('zonation', 'central_types')}, {v('zonation', 'n_bins')} bins.")
    if "cohort" in config and ran.get("association") is not None:
        text.append(
            f"Cohort: analyses {v('cohort', 'analyses')}; each test uses the units in which "
            "the feature was measured (n in the association table), with groups of at least "
            f"{v('cohort', 'min_group')} units and {v('cohort', 'min_events')} events; "
            "q-values by Benjamini–Hochberg within each outcome × test"
            + (" × family (primary features apart from exploratory ones)"
               if _has_families(ran.get("association")) else "")
            + "; prediction from the features measured in a fraction of at least "
            f"{v('cohort', 'min_non_missing')} of the units (missing values imputed) by "
            f"{v('cohort', 'n_folds')}-fold nested "
            f"cross-validation ({v('cohort', 'n_inner_folds')} inner folds, "
            f"{v('cohort', 'n_repeats')} repeats, l1_ratio {v('cohort', 'l1_ratio')}), "
            f"{v('cohort', 'n_bootstrap')} bootstrap resamples for "
            f"{v('cohort', 'confidence')} intervals, seed {v('cohort', 'seed')}.")
    return text


def _has_families(association: Any) -> bool:
    """Whether the association table carries more than one multiple-testing family."""
    return (association is not None and "family" in getattr(association, "columns", ())
            and association["family"].nunique() > 1)


def _section(config: dict[str, Any], section: str) -> str:
    return "; ".join(f"{k} = {v}" for k, v in flatten_parameters(config.get(section, {})))


def _ripley_text(config: dict[str, Any]) -> str:
    """How Ripley K/L was estimated: edge correction, window and radius grid (the
    ``[relations] ripley_*`` keys; see :mod:`metaniche.analyses.relations.ripley_modes`)."""
    correction = _value(config, "relations", "ripley_correction")
    window = _value(config, "relations", "ripley_window")
    max_um = _value(config, "relations", "ripley_max_um")
    where = "the image frame (bounding rectangle)" if window == "rectangle" else "the tissue mask"
    grid = ("spatstat's default grid per target type (513 radii from 0 to the smaller of a "
            "quarter of the short side and sqrt(1000/(π λ)))" if max_um == "auto" else
            f"radii up to {max_um} µm in steps of "
            f"{_value(config, 'relations', 'ripley_step_um')} µm")
    return f"Ripley K/L with the {correction} edge correction on {where}, {grid}"
