"""The per-sample chain: context, registered stages, and the sample task of a run.

:func:`analyse_sample` is pure (no file I/O): it builds the
:class:`~metaniche.context.SampleContext` (:func:`build_context`, compartments included) and runs
every stage of :data:`metaniche.stages.SAMPLE_STAGES` in order. :func:`sample_task` is what the
executor runs for each sample of a run: it decides whether the sample's cached outputs can be
reused, else analyses it and writes its outputs through :class:`metaniche.rundir.RunDir`, and
returns a :class:`~metaniche.rundir.SampleRecord`; it never raises for a bad sample.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from metaniche.analyses.compartments import CompartmentResult, sample_compartments
from metaniche.analyses.spots import sample_spot_compartments
from metaniche.config import Config
from metaniche.context import SampleContext
from metaniche.errors import MetanicheError
from metaniche.genes import GeneMatrix
from metaniche.io import SampleInput
from metaniche.io.annotations import find_annotation, read_geojson_polygons
from metaniche.io.cells import reload_sample
from metaniche.progress import ProgressCallback, StageClock
from metaniche.rundir import (
    FAILED,
    OK,
    SKIPPED,
    CacheCheck,
    DoneMarker,
    RunDir,
    SampleRecord,
    safe_name,
)
from metaniche.stages import SAMPLE_STAGES
from metaniche.stages.spots import SPOT_SAMPLE_STAGES, spot_data

__all__ = ["CELL_COLUMNS", "CRASH_ENV", "SampleAnalysis", "SampleTask", "analyse_sample",
           "build_context", "crash_point", "sample_task"]

#: First columns of every ``cells/<file>.parquet``, then the stages' cell columns, then the
#: input's own extra columns (markers, metadata).
CELL_COLUMNS = ["cell_id", "x", "y", "cell_type", "lesion_id", "signed_distance_um",
                "compartment"]


@dataclass
class SampleAnalysis:
    """Everything computed for one sample: per-cell columns, long tables, named features."""

    cells: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    features: dict[str, Any]
    compartments: CompartmentResult
    #: Stage name → wall time (s) of ``compartments`` and every registered stage.
    stage_seconds: dict[str, float] = field(default_factory=dict)


def build_context(name: str, cells: pd.DataFrame, config: Config,
                  annotation: Sequence[Any] | None = None,
                  genes: GeneMatrix | None = None,
                  compartments: CompartmentResult | None = None) -> SampleContext:
    """Type codes, roles and compartments of one standardised cell table (µm coordinates);
    ``genes`` is its sparse expression matrix, if any (:mod:`metaniche.genes`).
    ``compartments``, when given, is the result this function computed earlier for the same
    cells and configuration (the notebook API's memo, :func:`metaniche._api._adapter.
    contexts`) and is used instead of computing it again."""
    labels = cells["cell_type"].astype(str).to_numpy()
    codes, types = pd.factorize(labels, sort=True)    # = np.unique(labels), by hashing
    types = [str(t) for t in types]
    roles = config.cell_types
    tumor_types = [t for t, yes in zip(types, roles.is_tumor(types), strict=True) if yes]
    immune_types = [t for t, yes in zip(types, roles.is_immune(types), strict=True) if yes]
    x = cells["x"].to_numpy(np.float64)
    y = cells["y"].to_numpy(np.float64)
    is_tumor = np.isin(codes, [types.index(t) for t in tumor_types])
    is_immune = np.isin(codes, [types.index(t) for t in immune_types])
    spots = spot_data(cells, config)
    if compartments is not None:
        result = compartments
    elif spots is None:
        result = sample_compartments(cells, x, y, is_tumor, is_immune, config, annotation)
    else:  # a spot sample: roles apply to the deconvolved types, not the dominant labels
        result = sample_spot_compartments(
            cells, x, y, spots, [t for t, yes in zip(spots.types, roles.is_tumor(spots.types),
                                                     strict=True) if yes],
            [t for t, yes in zip(spots.types, roles.is_immune(spots.types), strict=True)
             if yes], config, annotation)
    return SampleContext(name, cells, config, x, y, types, codes.astype(np.int32),
                         tumor_types, immune_types, result, spots=spots, genes=genes)


def analyse_sample(cells: pd.DataFrame, config: Config,
                   annotation: Sequence[Any] | None = None, name: str = "",
                   clock: StageClock | None = None,
                   genes: GeneMatrix | None = None) -> SampleAnalysis:
    """Run the per-sample analysis chain on one standardised cell table (µm coordinates).

    Pure: no file I/O. Builds the :class:`~metaniche.context.SampleContext` (compartments
    included), runs every stage of :data:`metaniche.stages.SAMPLE_STAGES` in order and returns
    the per-cell output (``CELL_COLUMNS`` then the stages' cell columns), the stages' tables
    (without the ``sample`` column; those named in :data:`metaniche.rundir.PRIVATE_TABLES` stay
    in the sample's cache) and their named features. ``clock`` (optional) times the context
    build (stage ``compartments``) and every stage and reports their start and finish (see
    :class:`metaniche.progress.StageClock`); results never depend on it. ``genes`` is the
    sample's sparse expression matrix (:attr:`metaniche.io.cells.SampleInput.genes`), from
    which stages take only the genes the config names.
    """
    if not name and "sample" in cells.columns and len(cells):
        name = str(cells["sample"].iloc[0])
    clock = clock or StageClock(name)
    with clock.stage("compartments"):
        context = build_context(name, cells, config, annotation, genes)
    result = context.compartments
    out = pd.DataFrame({
        "cell_id": cells["cell_id"].astype(str).to_numpy(),
        "x": context.x_um, "y": context.y_um, "cell_type": context.labels.astype(str),
        "lesion_id": pd.array(result.lesion_id, dtype="Int64"),
        "signed_distance_um": result.signed_distance_um,
        "compartment": result.compartment.astype(str),
    })
    out["lesion_id"] = out["lesion_id"].mask(out["lesion_id"] == 0)
    tables: dict[str, pd.DataFrame] = {}
    features: dict[str, Any] = {}
    for stage_name, stage, _ in SAMPLE_STAGES:
        if context.spots is not None and stage_name not in SPOT_SAMPLE_STAGES:
            continue  # cell stages do not apply to spots (see metaniche.stages.spots)
        with clock.stage(stage_name):
            output = stage(context)
        clash = set(output.tables) & set(tables)
        if clash:
            raise RuntimeError(f"stage {stage_name} re-emits tables {sorted(clash)}")
        tables.update(output.tables)
        features.update(output.features)
        result.warnings.extend(output.warnings)
        for column, values in output.cell_columns.items():
            out[column] = values
        context.previous[stage_name] = output
    return SampleAnalysis(out, tables, features, result, dict(clock.seconds))


@dataclass(frozen=True)
class SampleTask:
    """One sample of a run, as handed to the executor (picklable).

    Attributes
    ----------
    sample
        The sample as read from its input.
    config
        Run configuration.
    out_dir
        Run directory (a path string, so the task pickles cheaply).
    config_sha256
        :func:`metaniche.rundir.config_hash` of ``config``.
    force
        Recompute even when the cached outputs are current.
    """

    sample: SampleInput
    config: Config
    out_dir: str
    config_sha256: str
    force: bool = False


def sample_task(task: SampleTask, emit: ProgressCallback | None = None) -> SampleRecord:
    """Analyse one sample and write its outputs; never raises (errors are recorded).

    The sample is ``skipped`` (outputs reused, stage times of the run that made them) when
    :meth:`metaniche.rundir.RunDir.check_sample` finds its cached outputs made from these cells
    and this configuration and intact (every file matching its recorded checksum), unless
    ``task.force``; damaged outputs are recomputed and a published file that was damaged is
    restored, each with a warning on the record. Otherwise its cells file, cached tables,
    features and tissue map are written into a new generation of its cache, which becomes
    current in one atomic step (:meth:`~metaniche.rundir.RunDir.write_done`), so a kill at any
    moment leaves the previous outputs or the new ones. The record's ``stages`` maps each stage
    run (see :func:`metaniche.progress.sample_stage_names`) to its wall time; ``emit``
    receives the stage events as they happen.
    """
    sample, config = task.sample, task.config
    run = RunDir(task.out_dir)
    name = safe_name(sample.name)
    record = SampleRecord(sample=sample.name, file_name=name, source=str(sample.source),
                          warnings=list(sample.warnings), input_sha256=sample.checksum,
                          config_sha256=task.config_sha256)
    started = time.perf_counter()
    if not sample.ok:
        record.status, record.error, record.seconds = FAILED, sample.error, 0.0
        return record
    if not task.force:
        try:
            check = run.check_sample(name, sample.checksum, task.config_sha256)
        except OSError as err:
            check = CacheCheck(None, [f"cached outputs of this sample could not be checked "
                                      f"({err}); the sample is recomputed."])
        record.warnings.extend(check.warnings)
        if check.marker is not None:
            previous = check.marker
            record.status, record.seconds = SKIPPED, previous.seconds
            record.stages = previous.stages
            record.warnings.extend(previous.warnings)
            record.phenotype = previous.phenotype
            return record
    crash_point("sample", sample.name)
    clock = StageClock(sample.name, emit)
    # A cluster run ships the sample's path: its cells are read here, on the worker.
    sample = reload_sample(sample, config)
    if not sample.ok:
        record.status, record.error, record.seconds = FAILED, sample.error, 0.0
        return record
    assert sample.cells is not None
    record.status = OK
    try:
        annotation = _annotation_for(sample.name, name, config)
        analysis = analyse_sample(sample.cells, config, annotation, name=sample.name,
                                  clock=clock, genes=sample.genes)
        if sample.genes is not None:
            analysis.compartments.warnings.append(
                f"the {sample.genes.n_genes:,} genes of the sparse expression matrix are not "
                f"copied into cells/{name}.parquet (one column per gene would be as large as "
                "the dense matrix); read them from the input, joined on cell_id.")
        crash_point("analysed", sample.name)
        with clock.stage("writing"):
            generation = run.write_sample(name, _with_markers(analysis.cells, sample),
                                          analysis.tables, analysis.features)
        crash_point("written", sample.name)
        from metaniche.report.figures import save_tissue_map

        with clock.stage("tissue_map"):
            save_tissue_map(analysis, sample.name, run.generation_map_path(name, generation),
                            config)
        crash_point("mapped", sample.name)
        record.stages = dict(clock.seconds)
        record.seconds = round(time.perf_counter() - started, 3)
        phenotype = analysis.features.get("phenotype")
        record.phenotype = None if phenotype is None else str(phenotype)
        record.warnings.extend(analysis.compartments.warnings)
        run.write_done(name, DoneMarker(sample.checksum, task.config_sha256, record.seconds,
                                        record.stages, generation=generation,
                                        warnings=list(analysis.compartments.warnings),
                                        phenotype=record.phenotype))
        crash_point("done", sample.name)
    except MetanicheError as err:
        record.status, record.error = FAILED, str(err)
    except Exception as err:
        record.status = FAILED
        record.error = f"{sample.source}: sample '{sample.name}' failed in analysis: {err!r}"
        record.traceback = traceback.format_exc()
    record.stages = dict(clock.seconds)
    record.seconds = round(time.perf_counter() - started, 3)
    return record


#: Environment variable of the crash tests: ``<point>:<sample>[:<marker file>]`` makes the
#: process running that sample's task exit at once (``os._exit(70)``) when it reaches
#: ``<point>`` (see :func:`crash_point`), as a kill would. With a marker file, only while the
#: file does not exist (it is created just before exiting), so the next attempt goes through.
CRASH_ENV = "METANICHE_TEST_CRASH"


def crash_point(point: str, sample: str) -> None:
    """Die here when :data:`CRASH_ENV` names this point and sample (crash tests only).

    Points of a sample's task: ``sample`` (before analysing it), ``analysed``, ``written``
    (its new generation written), ``mapped`` (tissue map drawn), ``done`` (switched to it);
    of the run (sample ``run``): ``gather``, ``gathered``, ``report``, ``manifest``.
    """
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    where, _, rest = spec.partition(":")
    target, _, marker = rest.partition(":")
    if where != point or target != sample:
        return
    if marker:
        if os.path.exists(marker):
            return
        with open(marker, "w", encoding="utf-8"):
            pass
    os._exit(70)


def _with_markers(cells_out: pd.DataFrame, sample: SampleInput) -> pd.DataFrame:
    """Per-cell output columns followed by the input's own extra columns (markers, metadata)."""
    assert sample.cells is not None
    extra = [c for c in sample.cells.columns if c not in (*CELL_COLUMNS, "sample")]
    return pd.concat([cells_out, sample.cells[extra].reset_index(drop=True)], axis=1)


def _annotation_for(sample: str, name: str, config: Config) -> list | None:
    location = config.compartments.annotations
    if not location:
        return None
    path = find_annotation(location, sample, name)
    if path is None:
        return None
    return read_geojson_polygons(path, config.um_per_unit)
