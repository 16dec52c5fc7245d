"""Stage: immune composition per compartment, lesion geometry and immune phenotype.

Besides the composition families (:data:`metaniche.features.FEATURE_FAMILIES`) it emits, when
the cells carry the export's tissue category, the agreement of the tumour region with it
(``region_agreement.kappa``). The reason of an undetermined phenotype becomes a sample warning
and the compartment scales used (:func:`metaniche.analyses.compartments.resolve_scales`)
columns of the ``compartments`` table: they describe the run, so they stay out of the
feature table and the cohort's tests.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.analyses.compartments import COMPARTMENTS, WHOLE, CompartmentResult
from metaniche.analyses.composition import composition_table, immune_phenotype
from metaniche.context import SampleContext, StageOutput
from metaniche.features import FEATURE_FAMILIES, composition_features, feature_namer

__all__ = ["FEATURES", "run"]

FEATURES: dict[str, tuple[str, str]] = {
    **FEATURE_FAMILIES,
    "region_agreement": ("kappa", "Cohen's kappa between inside/outside tumour and the "
                         "export's tissue category (when the cells carry one)"),
}
_name = feature_namer(FEATURES)


def run(context: SampleContext) -> StageOutput:
    """Composition table, compartment areas with counts, lesions and phenotype features."""
    result = context.compartments
    labels = context.labels
    composition = composition_table(labels, result.compartment, result.lesion_id,
                                    result.areas, cell_types=context.cell_types)
    config = context.config
    phenotype = immune_phenotype(composition, context.effector_types, config.phenotype)
    features = composition_features(composition, phenotype, context.immune_types,
                                    n_lesions=len(result.lesions))
    if result.region_agreement_kappa is not None:
        features[_name("region_agreement", "kappa")] = result.region_agreement_kappa
    warnings = ([f"immune phenotype undetermined: {phenotype.reason}."]
                if phenotype.reason else [])
    if math.isinf(phenotype.core_border_ratio):
        warnings.append(
            "effector_core_border_ratio is NA: no effector cell in the border "
            f"({', '.join(context.effector_types)}; core density "
            f"{phenotype.core_density_per_mm2:.3g} cells/mm²), so core/border is infinite.")
    tables = {T.COMPARTMENTS: compartment_counts(result), T.COMPOSITION: composition,
              T.LESIONS: result.lesions}
    return StageOutput(tables=tables, features=features, warnings=warnings)


def compartment_counts(result: CompartmentResult) -> pd.DataFrame:
    """Areas per lesion × compartment with their cell counts (whole sample: null lesion).

    Then one column per compartment scale used for the sample (``median_nn_um``,
    ``scale_factor``, ``grid_um``, ``smoothing_um``, ``tissue_closing_um``,
    ``min_lesion_area_um2``, ``min_hole_area_um2``, ``tissue_radius_um``; µm, µm²), the same
    on every row, so that the automatic scales are visible (see
    :func:`metaniche.analyses.compartments.resolve_scales`).
    """
    n_comp = len(COMPARTMENTS)
    lesion = np.asarray(result.lesion_id, dtype=np.int64)
    code = pd.Categorical(result.compartment, categories=[*COMPARTMENTS]).codes.astype(np.int64)
    known = code >= 0
    # Cell counts per (lesion, compartment) key: each lesion's (cells of a lesion > 0), then
    # the whole sample's (lesion 0), then every cell. Cells without a lesion (no tumour)
    # count in the whole-sample rows only, so every key has one row.
    found: dict[tuple[int, str], int] = {}
    per_lesion = known & (lesion > 0)
    keys, counts = np.unique(lesion[per_lesion] * n_comp + code[per_lesion],
                             return_counts=True)
    for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
        found[(key // n_comp, COMPARTMENTS[key % n_comp])] = count
    for index, count in enumerate(np.bincount(code[known], minlength=n_comp).tolist()):
        found[(0, COMPARTMENTS[index])] = count
    found[(0, WHOLE)] = len(lesion)
    rows = [(lesion_id, compartment, found.get((lesion_id, compartment), 0), area)
            for lesion_id, compartment, area in zip(
                result.areas["lesion_id"].tolist(), result.areas["compartment"].tolist(),
                result.areas["area_mm2"].tolist(), strict=True)]
    lesion_ids = np.array([row[0] for row in rows], dtype=np.int64)
    return pd.DataFrame({
        "lesion_id": pd.arrays.IntegerArray(lesion_ids, lesion_ids == 0),
        "compartment": np.array([row[1] for row in rows], dtype=object),
        "n_cells": np.array([row[2] for row in rows], dtype=np.int64),
        "area_mm2": np.array([row[3] for row in rows], dtype=np.float64),
        **{name: np.full(len(rows), float(value)) for name, value in result.scales.items()},
    })
