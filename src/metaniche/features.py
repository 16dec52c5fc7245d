"""Composition features: flatten the composition table into one row of named features.

Feature names are stable and readable, ``<family>.<qualifier>...`` such as
``density.border.CD8_T``. Each stage declares the families it emits with their unit and
description (this module's :data:`FEATURE_FAMILIES` for composition); the pipeline gathers
them from :data:`metaniche.stages.SAMPLE_STAGES` into ``features_dictionary.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import pandas as pd

from metaniche.analyses.compartments import BORDER, CORE, WHOLE
from metaniche.analyses.composition import ImmunePhenotype

__all__ = ["FEATURE_FAMILIES", "composition_features", "feature_name", "feature_namer"]

#: Feature family → (unit, description); used for the data dictionary and the report.
FEATURE_FAMILIES: dict[str, tuple[str, str]] = {
    "n_cells": ("cells", "number of cells in the sample"),
    "n_lesions": ("lesions", "number of detected tumour lesions"),
    "area_mm2": ("mm²", "tissue area of a compartment"),
    "density": ("cells/mm²", "cells of a type per mm² of a compartment's tissue area"),
    "proportion": ("fraction", "share of a compartment's cells that are of a type"),
    "immune_density": ("cells/mm²", "all immune cells per mm² of a compartment"),
    "effector_density": ("cells/mm²", "effector (e.g. CD8 T) cells per mm², used for phenotype"),
    "effector_core_border_ratio": ("ratio", "core over border effector density (NA when the "
                                             "border has no effector cell)"),
    "phenotype": ("label", "immune phenotype: inflamed / excluded / desert / undetermined"),
}


def feature_name(family: str, *parts: object,
                 families: Mapping[str, tuple[str, str]] = FEATURE_FAMILIES) -> str:
    """The one builder of feature names: ``<family>.<part>.<part>…``.

    ``feature_name("density", "core", "CD8_T")`` → ``"density.core.CD8_T"``. Parts are
    formatted with ``str`` (as an f-string would). ``family`` must be registered in
    ``families`` (a stage's ``FEATURES``; default the composition families), so that every
    emitted name is in the data dictionary.

    Raises
    ------
    KeyError
        When ``family`` is not in ``families`` (a programming error, not a user input).
    """
    if family not in families:
        raise KeyError(f"unregistered feature family {family!r}")
    return ".".join([family, *(str(part) for part in parts)])


def feature_namer(families: Mapping[str, tuple[str, str]]) -> Callable[..., str]:
    """:func:`feature_name` bound to one stage's registry: ``name = feature_namer(FEATURES)``."""
    return partial(feature_name, families=families)


def composition_features(composition: pd.DataFrame, phenotype: ImmunePhenotype,
                         immune_types: Sequence[str], n_lesions: int) -> dict[str, object]:
    """Named features of one sample from its composition table and phenotype.

    Whole-sample rows (null ``lesion_id``) only; per-lesion values stay in the tables.
    """
    whole = composition[composition["lesion_id"].isna()]
    compartments = whole["compartment"].tolist()
    cell_types = whole["cell_type"].tolist()
    n_cells = whole["n_cells"].tolist()
    features: dict[str, object] = {
        feature_name("n_cells"): int(sum(n for n, c in zip(n_cells, compartments, strict=True)
                                         if c == WHOLE)),
        feature_name("n_lesions"): int(n_lesions),
    }
    # The first non-null area of each compartment, in order of appearance.
    areas: dict[str, float] = {}
    for compartment, area in zip(compartments, whole["area_mm2"].tolist(), strict=True):
        if compartment not in areas or math.isnan(areas[compartment]):
            areas[compartment] = area
    for compartment, area in areas.items():
        features[feature_name("area_mm2", compartment)] = float(area)
    for compartment, cell_type, density, proportion in zip(
            compartments, cell_types, whole["density_per_mm2"].tolist(),
            whole["proportion"].tolist(), strict=True):
        features[feature_name("density", compartment, cell_type)] = density
        features[feature_name("proportion", compartment, cell_type)] = proportion
    immune = set(immune_types)
    immune_counts: dict[str, int] = {}
    for compartment, cell_type, count in zip(compartments, cell_types, n_cells, strict=True):
        if cell_type in immune:
            immune_counts[compartment] = immune_counts.get(compartment, 0) + count
    for compartment, count in immune_counts.items():
        area = areas.get(compartment, math.nan)
        features[feature_name("immune_density", compartment)] = (
            count / area if area > 0 else math.nan)
    features[feature_name("effector_density", CORE)] = phenotype.core_density_per_mm2
    features[feature_name("effector_density", BORDER)] = phenotype.border_density_per_mm2
    # x/0 is inf for the phenotype rule (inflamed), but NA as a feature: an infinite value
    # breaks every cohort statistic (means, SDs, models); the stage records the reason.
    ratio = phenotype.core_border_ratio
    features[feature_name("effector_core_border_ratio")] = (
        ratio if math.isfinite(ratio) else math.nan)
    features[feature_name("phenotype")] = phenotype.phenotype
    return features
