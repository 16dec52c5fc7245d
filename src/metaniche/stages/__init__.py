"""Registered per-sample analysis stages, run in this order by the pipeline.

Each entry is ``(name, stage, feature_families)``: ``stage(context) -> StageOutput`` adapts a
:class:`~metaniche.context.SampleContext` to the pure functions of ``metaniche.analyses`` and
``feature_families`` maps each feature family the stage emits to ``(unit, description)`` — the
one registry of feature names, used for the data dictionary. Feature names are built with
:func:`metaniche.features.feature_namer` bound to the stage's registry; table names come from
:mod:`metaniche.tables`; cell roles from the context's masks (:mod:`metaniche.roles`). Every
stage passes the common checks of ``tests/stages/test_stage_common.py``. Add a stage by adding
one line.
"""

from __future__ import annotations

from collections.abc import Callable

from metaniche.context import SampleContext, StageOutput
from metaniche.stages import communities as communities_stage
from metaniche.stages import composition, gradients, zonation
from metaniche.stages import contact as contact_stage
from metaniche.stages import relations as relations_stage
from metaniche.stages import spots as spots_stage
from metaniche.stages import states as states_stage

__all__ = ["SAMPLE_STAGES", "Stage", "feature_families"]

Stage = Callable[[SampleContext], StageOutput]

SAMPLE_STAGES: list[tuple[str, Stage, dict[str, tuple[str, str]]]] = [
    # first, so that the cell stages after it own the feature families both emit
    ("spots", spots_stage.run, spots_stage.FEATURES),
    ("composition", composition.run, composition.FEATURES),
    ("gradients", gradients.run, gradients.FEATURES),
    ("zonation", zonation.run, zonation.FEATURES),
    ("relations", relations_stage.run, relations_stage.FEATURES),
    ("communities", communities_stage.run, communities_stage.FEATURES),
    ("states", states_stage.run, states_stage.FEATURES),
    ("contact", contact_stage.run, contact_stage.FEATURES),
]


def feature_families() -> dict[str, tuple[str, str]]:
    """Every registered feature family → (unit, description)."""
    families: dict[str, tuple[str, str]] = {}
    for _, _, stage_families in SAMPLE_STAGES:
        families.update(stage_families)
    return families
