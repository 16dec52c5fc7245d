"""Methods text of the cohort page: prose naming the parameters, then every parameter."""

from __future__ import annotations

from typing import Any

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


def methods_paragraphs(config: dict[str, Any], version: str) -> list[str]:
    """Plain-text paragraphs describing what was computed, with the parameter values used.

    Paragraphs appear for the configuration sections the run recorded; the full table of
    :func:`flatten_parameters` follows them in the report.
    """
    def v(section: str, key: str) -> str:
        return _value(config, section, key)

    text = [f"Analysed with metaniche {version}. Coordinates were scaled by "
            f"{config.get('um_per_unit', 1.0)} µm per unit; samples with fewer than "
            f"{config.get('min_cells', '?')} cells were not analysed."]
    if "compartments" in config:
        text.append(
            "Tumour regions were detected on a raster of "
            f"{v('compartments', 'grid_um')} µm pixels from the local fraction of tumour cells "
            f"(Gaussian smoothing sigma {v('compartments', 'smoothing_um')} µm, immune weight "
            f"{v('compartments', 'immune_weight')}, threshold "
            f"{v('compartments', 'tumor_fraction')} where 0 means automatic), dropping lesions "
            f"and filling holes smaller than {v('compartments', 'min_lesion_area_um2')} and "
            f"{v('compartments', 'min_hole_area_um2')} µm²; tissue = discs of radius "
            f"{v('compartments', 'tissue_radius_um')} µm (0: half the median nearest-neighbour "
            f"distance) closed by {v('compartments', 'tissue_closing_um')} µm. Every cell got "
            "a signed distance d to the tumour boundary (negative inside) and a compartment: "
            f"core d < −w, border |d| ≤ w, adjacent d > w with w = "
            f"{v('compartments', 'border_um')} µm. Densities are cells per mm² of each "
            "compartment's tissue area.")
    if "gradients" in config:
        text.append(
            f"Gradients: densities in {v('gradients', 'bin_um')} µm bins of signed distance "
            f"from {v('gradients', 'min_um')} to {v('gradients', 'max_um')} µm (slopes within "
            f"±{v('gradients', 'window_um')} µm).")
    if "relations" in config:
        text.append(
            f"Cell–cell relations: contact graph '{v('relations', 'graph')}' (radius "
            f"{v('relations', 'contact_radius_um')} µm, k = {v('relations', 'k')}); "
            f"neighbourhood enrichment with {v('relations', 'n_permutations')} permutations "
            "(0: analytic null); counts within "
            f"{v('relations', 'count_within_um')} µm; Ripley K/L up to "
            f"{v('relations', 'ripley_max_um')} µm in steps of "
            f"{v('relations', 'ripley_step_um')} µm; seed {v('relations', 'seed')}.")
    if "neighbourhoods" in config:
        text.append(f"Cellular neighbourhoods: parameters {_section(config, 'neighbourhoods')}.")
    if "aggregates" in config:
        text.append(f"Aggregates and TLS: parameters {_section(config, 'aggregates')}.")
    if "zonation" in config:
        text.append(
            "Zonation: eta = d_portal / (d_portal + d_central) with portal landmarks "
            f"{v('zonation', 'portal_types')} and central landmarks "
            f"{v('zonation', 'central_types')}, {v('zonation', 'n_bins')} bins.")
    if "cohort" in config:
        text.append(
            f"Cohort: analyses {v('cohort', 'analyses')}; features kept with ≥ "
            f"{v('cohort', 'min_non_missing')} non-missing fraction; groups of at least "
            f"{v('cohort', 'min_group')} and {v('cohort', 'min_events')} events; q-values by "
            f"Benjamini–Hochberg; prediction by {v('cohort', 'n_folds')}-fold nested "
            f"cross-validation ({v('cohort', 'n_inner_folds')} inner folds, "
            f"{v('cohort', 'n_repeats')} repeats, l1_ratio {v('cohort', 'l1_ratio')}), "
            f"{v('cohort', 'n_bootstrap')} bootstrap resamples for "
            f"{v('cohort', 'confidence')} intervals, seed {v('cohort', 'seed')}.")
    return text


def _section(config: dict[str, Any], section: str) -> str:
    return "; ".join(f"{k} = {v}" for k, v in flatten_parameters(config.get(section, {})))
