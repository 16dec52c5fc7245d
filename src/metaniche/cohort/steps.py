"""Registered run-level steps, run in this order by the pipeline after the per-sample tasks.

The run-level counterpart of :data:`metaniche.stages.SAMPLE_STAGES`. Each entry of
:data:`RUN_STEPS` is a :class:`RunStep`: its name (progress stage), its run.json key, the step
function ``step(state) -> StepResult``, the feature families it emits (``family → (unit,
description)``, for the data dictionary) and whether it reads the assembled features. Steps
that emit features come first; the pipeline then writes ``features.parquet`` once (per-sample
features plus every step's), then runs the steps that read them. :func:`run_step` never
raises: a failure becomes the step's record (``status`` ``failed``, ``error``), the other
steps and every per-sample output are kept, and :attr:`metaniche.rundir.Manifest.failed_steps`
lists it.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from metaniche import tables as T
from metaniche.cohort.matrix import PATIENT, feature_patients
from metaniche.cohort.state_changes import state_change_record
from metaniche.config import Config
from metaniche.errors import MetanicheError
from metaniche.rundir import CN_WINDOWS, FAILED, OK, SKIPPED, RunDir, SampleRecord, in_threads

__all__ = ["RUN_STEPS", "RunState", "RunStep", "StepResult", "feature_dictionary",
           "lesion_state_step", "lesion_step", "neighbourhood_step", "outcome_step", "run_step",
           "with_patients"]

#: Samples whose cached neighbourhood windows are read at once (on threads).
_READ_CHUNK = 64
#: Data-dictionary row of the ``patient`` column of the features (not a feature).
_PATIENT_ENTRY = ("input", "", "patient id of the sample, from the cell table's [columns] "
                               "patient (every row of a sample carries the same id); empty "
                               "when the cell table has none. Not a feature: the clinical "
                               "table is joined through it when keyed by patient, and it "
                               "groups a patient's images in the cohort analyses")


@dataclass
class RunState:
    """What the run-level steps see.

    Attributes
    ----------
    run
        The run directory (steps read and write through it).
    config
        Run configuration.
    samples
        Name → record of every sample whose outputs are in the run (``ok`` or ``skipped``),
        in input order.
    clinical
        The validated clinical table, or None.
    features
        One row per sample of ``samples`` (column ``sample`` first): the per-sample features,
        joined with the features of every step run so far.
    """

    run: RunDir
    config: Config
    samples: dict[str, SampleRecord]
    clinical: pd.DataFrame | None = None
    features: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class StepResult:
    """A step's run.json record and the features it adds (sample → name → value)."""

    record: dict[str, Any]
    features: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RunStep:
    """One registered run-level step (see the module docstring)."""

    name: str
    key: str
    function: Callable[[RunState], StepResult]
    families: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Runs after ``features.parquet`` is written (and may read it).
    reads_features: bool = False
    #: Limit OpenMP/BLAS to one thread (many small scikit-learn fits).
    single_threaded: bool = False
    #: Whether the step applies to this run; when not, its record is None and it is not timed.
    applies: Callable[[RunState], bool] = lambda state: True


def neighbourhood_step(state: RunState) -> StepResult:
    """Cohort cellular neighbourhoods from the windows the communities stage saved.

    Fits on ``tables/cn_training``, labels every cell from its sample's cached ``cn_windows``
    counts (:func:`metaniche.cohort.neighbourhoods.cohort_neighbourhoods`; no tree rebuilt),
    sets column ``neighbourhood`` of every ``cells/<file>.parquet`` (rewritten only when its
    labels change), writes ``tables/neighbourhoods`` and returns the ``cn_fraction.*``
    features.
    """
    from metaniche.cohort.neighbourhoods import cohort_neighbourhoods

    run = state.run
    training = run.read_table("cn_training")
    assert training is not None  # see applies

    samples = list(state.samples.items())

    def window(item: tuple[str, SampleRecord]) -> tuple[str, pd.DataFrame, np.ndarray]:
        name, record = item
        counts = run.read_sample_table(record.stem, CN_WINDOWS)
        if counts is None:
            raise MetanicheError(f"sample '{name}': no cached {CN_WINDOWS} table; rerun "
                                 "with --force.")
        compartment = run.read_cells(record.stem, ["compartment"])["compartment"]
        return name, counts, compartment.to_numpy()

    def windows() -> Iterator[tuple[str, pd.DataFrame, np.ndarray]]:
        # read on threads, a bounded chunk of samples at a time (memory stays per chunk)
        for start in range(0, len(samples), _READ_CHUNK):
            yield from in_threads(window, samples[start:start + _READ_CHUNK])

    labels, table, features = cohort_neighbourhoods(training, windows(), state.config)
    rewritten = sum(in_threads(
        lambda item: run.set_cell_column(item[1].stem, "neighbourhood", labels[item[0]]),
        samples))
    run.write_table("neighbourhoods", table)
    n_cn = int(table.loc[table["table"] == "composition", "neighbourhood"].nunique())
    return StepResult({"status": OK, "n_neighbourhoods": n_cn,
                       "cells_files_rewritten": int(rewritten)}, features)


def lesion_step(state: RunState) -> StepResult:
    """Lesion size vs exclusion over the run's lesions.

    :func:`metaniche.cohort.lesions.lesion_exclusion_table` over ``tables/lesion_metrics``
    goes to ``cohort/lesion_size_exclusion.parquet``, with the patient of each sample from
    :func:`metaniche.cohort.matrix.sample_patients` (the clinical table's per-sample patient
    column, else the ``patient`` column of the features, i.e. the cell table's ``[columns]
    patient``, else the sample itself); the record gives ``n_patients``, ``n_samples`` and
    ``patients_from`` (``clinical``, ``cells`` or ``samples``, with a ``note`` for the last).
    Skipped (and a stale table removed) when the run has no lesion metrics.
    """
    from metaniche.cohort.lesions import lesion_exclusion_table, pool_lesions

    run = state.run
    lesions = run.read_table("lesion_metrics")
    if lesions is None:
        run.remove_cohort_table("lesion_size_exclusion")
        return StepResult({"status": SKIPPED, "reason": "no tables/lesion_metrics.parquet"})
    columns = state.config.clinical
    patients = feature_patients(state.features) if not state.features.empty else None
    table = lesion_exclusion_table(lesions, state.clinical, columns, patients)
    run.write_cohort_table("lesion_size_exclusion", table)
    pooled = pool_lesions(lesions, state.clinical, columns, patients)
    record: dict[str, Any] = {"status": OK, "rows": len(table),
                              "n_samples": int(pooled["sample"].nunique()),
                              "n_patients": int(pooled["patient"].nunique())}
    clinical = state.clinical
    if (clinical is not None and "sample" in clinical.columns
            and columns.patient in clinical.columns):
        record["patients_from"] = "clinical"
    elif patients is not None and patients.notna().any():
        record["patients_from"] = "cells"
    else:
        record["patients_from"] = "samples"
        record["note"] = ("no patient ids (set [columns] patient, or give the clinical table "
                          "sample and patient columns): each sample is its own patient.")
    return StepResult(record)


def outcome_step(state: RunState) -> StepResult:
    """:func:`metaniche.cohort.analyse_cohort` on features.parquet and the clinical table
    (with ``tables/ripley`` for the whole-curve tests unless ``[cohort] curve_permutations``
    is 0).

    Writes ``association.parquet``, ``prediction.json`` (when prediction ran),
    ``tables/km_curves.parquet`` and ``tables/pooled_gradients.parquet`` (each response /
    condition group's pooled gradient, with ``tables/gradients``); the record carries the
    analysis unit, the skipped analyses, warnings and the number of features used.
    """
    from metaniche.cohort.run import analyse_cohort

    run = state.run
    features = run.read_features()
    if features is None:
        return StepResult({"status": FAILED,
                           "error": "no features.parquet (no sample succeeded)."})
    assert state.clinical is not None  # see applies
    curves = run.read_table("ripley") if state.config.cohort.curve_permutations else None
    result = analyse_cohort(features, state.clinical, state.config, ripley_curves=curves,
                            gradients=run.read_table(T.GRADIENTS))
    run.write_association(result.association)
    if result.prediction:
        run.write_prediction(result.prediction)
    run.write_table("km_curves", result.km_curves)
    if not result.pooled_gradients.empty:
        run.write_table(T.POOLED_GRADIENTS, result.pooled_gradients)
    return StepResult({"status": OK, "unit": result.unit, "skipped": result.skipped,
                       "warnings": result.warnings, "n_features": int(result.matrix.shape[1]),
                       "dropped_features": len(result.dropped_features)})


def lesion_state_step(state: RunState) -> StepResult:
    """Lesion size vs cell states over the run's lesions.

    :func:`metaniche.cohort.lesion_states.lesion_state_table` over ``tables/states`` and
    ``tables/lesions`` goes to ``cohort/lesion_size_states.parquet`` (patients as
    :func:`lesion_step`). Skipped (and a stale table removed) without a states table.
    """
    from metaniche.cohort.lesion_states import lesion_state_table

    run = state.run
    states, lesions = run.read_table("states"), run.read_table("lesions")
    if states is None or lesions is None:
        run.remove_cohort_table("lesion_size_states")
        return StepResult({"status": SKIPPED, "reason": "no tables/states.parquet (no "
                                                        "[states]) or no lesions"})
    patients = feature_patients(state.features) if not state.features.empty else None
    table = lesion_state_table(states, lesions, state.clinical, state.config.clinical, patients)
    run.write_cohort_table("lesion_size_states", table)
    return StepResult({"status": OK, "rows": len(table)})


#: The registered run-level steps, in run order (feature producers before readers).
RUN_STEPS: list[RunStep] = [
    RunStep("neighbourhoods", "neighbourhoods", neighbourhood_step,
            {"cn_fraction": ("fraction", "fraction of the sample's cells in a cellular "
                                         "neighbourhood (CNs fitted across the cohort; "
                                         "Schürch et al. 2020)")},
            single_threaded=True,
            applies=lambda state: bool(state.samples) and state.run.has_table("cn_training")),
    RunStep("lesions", "lesion_size_exclusion", lesion_step),
    RunStep("lesion_states", "lesion_size_states", lesion_state_step),
    RunStep("state_changes", "state_changes", lambda state: StepResult(state_change_record(
        state.run, state.config, state.clinical, state.features)),
        applies=lambda state: state.run.has_table("state_changes")),
    RunStep("cohort", "cohort", outcome_step, reads_features=True, single_threaded=True,
            applies=lambda state: state.clinical is not None),
]


def run_step(step: RunStep, state: RunState) -> StepResult:
    """Run one step; never raises (a failure is returned as a ``failed`` record).

    Features the step returns are joined to ``state.features`` (replacing columns of the
    same names) so later steps see them.
    """
    try:
        with _single_threaded() if step.single_threaded else nullcontext():
            result = step.function(state)
    except MetanicheError as err:
        return StepResult({"status": FAILED, "error": str(err)})
    except Exception as err:
        return StepResult({"status": FAILED, "error": f"{step.name} step failed: {err!r}",
                           "traceback": traceback.format_exc()})
    if result.features and not state.features.empty:
        extra = pd.DataFrame.from_dict(result.features, orient="index")
        kept = state.features.drop(columns=[c for c in extra.columns
                                            if c in state.features.columns])
        state.features = kept.join(extra, on="sample")
    return result


def feature_dictionary(features: pd.DataFrame) -> pd.DataFrame:
    """name, analysis, unit, description of every feature column.

    Families come from the per-sample stages (:data:`metaniche.stages.SAMPLE_STAGES`, analysis =
    stage name) and the run-level steps (:data:`RUN_STEPS`, analysis = step name); a feature's
    family is its name up to the first dot. The ``patient`` column (:func:`with_patients`)
    is described as an input column, not a feature.
    """
    from metaniche.stages import SAMPLE_STAGES

    owner = {family: (stage, unit, text) for stage, _, families in SAMPLE_STAGES
             for family, (unit, text) in families.items()}
    owner.update({family: (step.name, unit, text) for step in RUN_STEPS
                  for family, (unit, text) in step.families.items()})
    rows = []
    for column in features.columns.drop("sample", errors="ignore"):
        family = column.split(".", 1)[0]
        stage, unit, text = (_PATIENT_ENTRY if column == PATIENT
                             else owner.get(family, ("", "", "")))
        rows.append({"name": column, "analysis": stage, "unit": unit, "description": text})
    return pd.DataFrame(rows, columns=["name", "analysis", "unit", "description"])


def with_patients(features: pd.DataFrame, patients: dict[str, str | None]) -> pd.DataFrame:
    """``features`` with a ``patient`` column after ``sample`` (the sample's patient id from
    ``patients``, None when unknown); unchanged when no sample has a patient id."""
    if features.empty or not any(v is not None for v in patients.values()):
        return features
    out = features.drop(columns=[PATIENT], errors="ignore")
    ids = out["sample"].map(lambda name: patients.get(str(name)))
    out.insert(1, PATIENT, ids.astype(object).to_numpy())
    return out


def _single_threaded() -> threadpool_limits:
    """Limit OpenMP/BLAS to one thread for the steps' many small scikit-learn fits (3-10x
    faster than threaded on 2 busy cores).

    threadpoolctl only limits libraries already loaded, so scikit-learn's compiled modules
    (and their OpenMP runtime) are imported first.
    """
    import sklearn.cluster
    import sklearn.linear_model  # noqa: F401

    return threadpool_limits(1)

