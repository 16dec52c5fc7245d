"""Immune composition per compartment and the per-sample immune phenotype.

Density is the number of cells of a type divided by the tissue area of the compartment they
lie in (cells/mm²; areas from the tissue mask of :mod:`metaniche.analyses.compartments`, not
from a bounding box). Proportion is the type's share of all cells in that compartment.

The immune phenotype follows the three immune profiles of Chen & Mellman [1]_ and Hegde et
al. [2]_ — *inflamed* (effector T cells in the tumour core), *excluded* (effector T cells held
at the invasive border, not the core) and *desert* (few effector T cells anywhere) — applied to
effector-cell densities in the core and border compartments as in Kather et al. [3]_:

* ``desert``   : core and border effector densities both < ``desert_max_per_mm2`` (50);
* ``excluded`` : otherwise, when core / border density < ``inflamed_min_core_border_ratio`` (0.3);
* ``inflamed`` : otherwise;
* ``undetermined`` : no effector label is present, or the sample has no core or no border
  tissue to compare (no tumour, all tumour, or a border band wider than every lesion); the
  reason is :attr:`ImmunePhenotype.reason`.

References
----------
.. [1] Chen D.S., Mellman I. (2017) Elements of cancer immunity and the cancer–immune set
   point. Nature 541:321–330.
.. [2] Hegde P.S., Karanikas V., Evers S. (2016) The where, the when, and the how of immune
   monitoring for cancer immunotherapies in the era of checkpoint inhibition. Clin Cancer Res
   22:1865–1874.
.. [3] Kather J.N. et al. (2018) Topography of cancer-associated immune cells in human solid
   tumors. eLife 7:e36967.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metaniche.analyses.compartments import BORDER, COMPARTMENTS, CORE, WHOLE
from metaniche.config import PhenotypeParams

__all__ = ["ImmunePhenotype", "composition_table", "immune_phenotype"]

COMPOSITION_COLUMNS = ["lesion_id", "compartment", "cell_type", "n_cells", "area_mm2",
                       "density_per_mm2", "proportion"]


def composition_table(cell_type: np.ndarray, compartment: np.ndarray, lesion_id: np.ndarray,
                      areas: pd.DataFrame, cell_types: Sequence[str] | None = None
                      ) -> pd.DataFrame:
    """Count, density (cells/mm²) and proportion of every cell type per compartment and lesion.

    Parameters
    ----------
    cell_type, compartment, lesion_id
        Per-cell labels, shape (n,); compartments as in
        :func:`~metaniche.analyses.compartments.assign_compartments`.
    areas
        ``lesion_id, compartment, area_mm2`` table from the same call; lesion_id 0 holds the
        whole-sample areas.
    cell_types
        Types to report (all of them, zeros included, so features are stable across samples).
        Default: the types present.

    Returns
    -------
    pandas.DataFrame
        Columns ``lesion_id`` (nullable integer; null for whole-sample rows), ``compartment``
        (core/border/adjacent, and ``all`` for the whole sample), ``cell_type``, ``n_cells``,
        ``area_mm2``, ``density_per_mm2`` (NaN when the area is 0) and ``proportion`` (NaN when
        the compartment holds no cells).
    """
    types = list(cell_types) if cell_types is not None else sorted(pd.unique(cell_type))
    lesion = np.asarray(lesion_id, dtype=np.int64)
    # Codes -1: a compartment or type outside the lists (not counted, as in a groupby).
    comp = pd.Categorical(compartment, categories=[*COMPARTMENTS]).codes.astype(np.int64)
    kind = pd.Categorical(cell_type, categories=types).codes.astype(np.int64)
    n_comp, n_types = len(COMPARTMENTS), len(types)
    lesions = np.unique(lesion)
    lesions = lesions[lesions > 0]
    counted = (comp >= 0) & (kind >= 0)
    in_lesion = counted & (lesion > 0)
    slot = np.searchsorted(lesions, lesion[in_lesion])
    per_lesion = np.bincount(
        (slot * n_comp + comp[in_lesion]) * n_types + kind[in_lesion],
        minlength=len(lesions) * n_comp * n_types).reshape(len(lesions), n_comp, n_types)
    whole = np.bincount(comp[counted] * n_types + kind[counted],
                        minlength=n_comp * n_types).reshape(n_comp, n_types)
    everything = np.bincount(kind[kind >= 0], minlength=n_types)
    # Rows: lesion × compartment × type, then the whole sample per compartment, then "all";
    # the whole-sample rows only when there is a type to report ("all" also needs a cell).
    blocks = [(np.repeat(lesions, n_comp), np.tile(np.arange(n_comp), len(lesions)),
               per_lesion.reshape(len(lesions) * n_comp, n_types))]
    if n_types:
        blocks.append((np.zeros(n_comp, np.int64), np.arange(n_comp), whole))
    if n_types and len(lesion):
        blocks.append((np.zeros(1, np.int64), np.full(1, n_comp), everything[None, :]))
    names = np.asarray([*COMPARTMENTS, WHOLE], dtype=object)
    row_lesion = np.concatenate([b[0] for b in blocks])
    row_comp = np.concatenate([b[1] for b in blocks])
    counts = np.concatenate([b[2] for b in blocks]).astype(np.int64)   # (groups, n_types)
    area_of = {(int(k), str(c)): float(a) for k, c, a in zip(
        areas["lesion_id"], areas["compartment"], areas["area_mm2"], strict=True)}
    group_area = np.array([area_of.get((int(k), str(names[c])), np.nan)
                           for k, c in zip(row_lesion, row_comp, strict=True)], dtype=np.float64)
    group_area = np.nan_to_num(group_area, nan=0.0)
    totals = counts.sum(axis=1, keepdims=True)
    n_cells = counts.ravel()
    area = np.repeat(group_area, n_types)
    with np.errstate(divide="ignore", invalid="ignore"):
        density = np.where(area > 0, n_cells / area, np.nan)
        proportion = np.where(np.repeat(totals[:, 0], n_types) > 0,
                              n_cells / np.repeat(totals[:, 0], n_types), np.nan)
    table = pd.DataFrame({
        "lesion_id": pd.array(np.repeat(row_lesion, n_types), dtype="Int64"),
        "compartment": names[np.repeat(row_comp, n_types)],
        "cell_type": np.tile(np.asarray([str(t) for t in types], dtype=object),
                             len(row_lesion)),
        "n_cells": n_cells, "area_mm2": area, "density_per_mm2": density,
        "proportion": proportion,
    })
    table["lesion_id"] = table["lesion_id"].mask(table["lesion_id"] == 0)
    return table[COMPOSITION_COLUMNS]


@dataclass(frozen=True)
class ImmunePhenotype:
    """Per-sample immune phenotype and the densities (cells/mm²) it was decided from.

    ``reason`` says why the phenotype is ``undetermined`` (empty otherwise).
    """

    phenotype: str
    effector_types: tuple[str, ...]
    core_density_per_mm2: float
    border_density_per_mm2: float
    core_border_ratio: float
    reason: str = ""


def immune_phenotype(composition: pd.DataFrame, effector_types: Sequence[str],
                     params: PhenotypeParams | None = None) -> ImmunePhenotype:
    """Classify a sample as inflamed, excluded or desert from effector densities.

    Parameters
    ----------
    composition
        Output of :func:`composition_table` for one sample.
    effector_types
        Labels of the effector cells (e.g. ``["CD8_T"]``); their densities are summed.
    params
        Thresholds; see the module docstring for the rules and their references.
    """
    params = params or PhenotypeParams()
    whole = (composition["lesion_id"].isna()
             & composition["cell_type"].isin(list(effector_types))).to_numpy()
    compartment = composition["compartment"].to_numpy()
    n_cells = composition["n_cells"].to_numpy()
    area = composition["area_mm2"].to_numpy(np.float64)
    core = _density(whole & (compartment == CORE), n_cells, area)
    border = _density(whole & (compartment == BORDER), n_cells, area)
    ratio = core / border if border > 0 else (np.inf if core > 0 else np.nan)
    reason = ""
    if np.isnan(core) or np.isnan(border):
        label = "undetermined"
        reason = _undetermined_reason(composition, effector_types)
    elif core < params.desert_max_per_mm2 and border < params.desert_max_per_mm2:
        label = "desert"
    elif ratio < params.inflamed_min_core_border_ratio:
        label = "excluded"
    else:
        label = "inflamed"
    return ImmunePhenotype(label, tuple(effector_types), core, border, float(ratio), reason)


def _undetermined_reason(composition: pd.DataFrame, effector_types: Sequence[str]) -> str:
    """Why core or border effector density is undefined, naming the fix."""
    whole = composition[composition["lesion_id"].isna()]
    totals = whole[whole["compartment"] == WHOLE].set_index("cell_type")["n_cells"]
    present = ", ".join(f"{label} ({count:,})" for label, count
                        in totals[totals > 0].sort_values(ascending=False).head(12).items())
    reasons = []
    areas = whole.groupby("compartment")["area_mm2"].first()
    has_core, has_border = areas.get(CORE, 0) > 0, areas.get(BORDER, 0) > 0
    if not has_core and not has_border:
        reasons.append("no tumour region (see the tumour warning)")
    elif not has_core:
        reasons.append("no core tissue: every tumour pixel lies within border_um of the "
                       "boundary; set [compartments] border_um smaller")
    elif not has_border:
        reasons.append("no border tissue: the tumour region covers the tissue (see the "
                       "tumour warning)")
    if not any(totals.get(label, 0) > 0 for label in effector_types):
        looked_for = (f"the effector labels {list(effector_types)}" if effector_types
                      else "an effector label (default: labels containing 'CD8')")
        reasons.append(f"no cell matched {looked_for}; labels present: {present or 'none'}; "
                       "set [phenotype] effector_types")
    return "; and ".join(reasons)


def _density(rows: np.ndarray, n_cells: np.ndarray, area: np.ndarray) -> float:
    """Summed cells of the selected rows (one compartment's effector types) over their
    first non-null area; NaN without rows or area."""
    known = area[rows][~np.isnan(area[rows])]
    if not len(known) or not known[0] > 0:
        return float("nan")
    return float(n_cells[rows].sum() / known[0])
