"""Stage ``zonation``: liver lobule zonation of the host tissue around the tumour.

Tables: ``zonation`` (type × η bin per subset) and ``zonation_enrichment`` (periportal over
pericentral density), written only when the sample has portal and central landmark cells.
Per-cell column ``zonation_eta`` (NaN without landmarks or inside tumour). Method in
:mod:`metaniche.analyses.zonation`.
"""

from __future__ import annotations

import math

import numpy as np

from metaniche import tables as T
from metaniche.analyses.zonation import zonation
from metaniche.context import SampleContext, StageOutput
from metaniche.features import feature_namer

__all__ = ["FEATURES", "run"]

FEATURES: dict[str, tuple[str, str]] = {
    "zonation_portal_fraction": ("fraction", "periportal over periportal + pericentral density "
                                 "beyond the border band (0.5 = no zonation)"),
    "zonation_log2_ratio": ("log2 ratio", "log2 periportal / pericentral density beyond the "
                            "border band"),
}

_name = feature_namer(FEATURES)


def run(context: SampleContext) -> StageOutput:
    """Zonation coordinate, profiles and periportal/pericentral enrichment of one sample."""
    params = context.config.zonation
    result = context.compartments
    labels = context.labels
    zone = zonation(context.x_um, context.y_um, context.type_codes, context.cell_types,
                    result.signed_distance_um, np.isin(labels, list(params.portal_types)),
                    np.isin(labels, list(params.central_types)), result.grid, result.tissue,
                    result.pixel_signed_distance_um,
                    params.beyond_um or context.config.compartments.border_um, params.n_bins)
    tables = {}
    features: dict[str, object] = {}
    if not zone.profiles.empty:
        tables[T.ZONATION] = zone.profiles
        tables[T.ZONATION_ENRICHMENT] = zone.enrichment
        beyond = zone.enrichment[zone.enrichment["subset"] == T.ZONATION_BEYOND_BORDER]
        for row in beyond.itertuples(index=False):
            features[_name("zonation_portal_fraction", row.cell_type)] = row.portal_fraction
            features[_name("zonation_log2_ratio", row.cell_type)] = (
                row.log2_ratio if np.isfinite(row.log2_ratio) or math.isnan(row.log2_ratio)
                else math.nan)
    return StageOutput(tables=tables, features=features,
                       cell_columns={"zonation_eta": zone.eta})
