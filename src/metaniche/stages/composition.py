"""Stage: immune composition per compartment, lesion geometry and immune phenotype."""

from __future__ import annotations

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.analyses.compartments import WHOLE, CompartmentResult
from metaniche.analyses.composition import composition_table, immune_phenotype
from metaniche.context import SampleContext, StageOutput
from metaniche.features import FEATURE_FAMILIES, composition_features

__all__ = ["FEATURES", "run"]

FEATURES = FEATURE_FAMILIES


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
    tables = {T.COMPARTMENTS: compartment_counts(result), T.COMPOSITION: composition,
              T.LESIONS: result.lesions}
    return StageOutput(tables=tables, features=features)


def compartment_counts(result: CompartmentResult) -> pd.DataFrame:
    """Areas per lesion × compartment with their cell counts (whole sample: null lesion)."""
    cells = pd.DataFrame({"lesion_id": result.lesion_id, "compartment": result.compartment})
    counts = pd.concat([
        cells.value_counts(["lesion_id", "compartment"]).rename("n_cells").reset_index(),
        cells.value_counts("compartment").rename("n_cells").reset_index().assign(lesion_id=0),
        pd.DataFrame({"lesion_id": [0], "compartment": [WHOLE], "n_cells": [len(cells)]}),
    ])
    table = result.areas.merge(counts, on=["lesion_id", "compartment"], how="left")
    table["n_cells"] = table["n_cells"].fillna(0).astype(np.int64)
    table["lesion_id"] = table["lesion_id"].astype("Int64").mask(table["lesion_id"] == 0)
    return table[["lesion_id", "compartment", "n_cells", "area_mm2"]]
