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
from metaniche.analyses.compartments import WHOLE, CompartmentResult
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
    cells = pd.DataFrame({"lesion_id": result.lesion_id, "compartment": result.compartment})
    counts = pd.concat([
        cells.value_counts(["lesion_id", "compartment"]).rename("n_cells").reset_index(),
        cells.value_counts("compartment").rename("n_cells").reset_index().assign(lesion_id=0),
        pd.DataFrame({"lesion_id": [0], "compartment": [WHOLE], "n_cells": [len(cells)]}),
    ])
    table = result.areas.merge(counts, on=["lesion_id", "compartment"], how="left")
    table["n_cells"] = table["n_cells"].fillna(0).astype(np.int64)
    table["lesion_id"] = table["lesion_id"].astype("Int64").mask(table["lesion_id"] == 0)
    table = table[["lesion_id", "compartment", "n_cells", "area_mm2"]]
    return table.assign(**{name: float(value) for name, value in result.scales.items()})
