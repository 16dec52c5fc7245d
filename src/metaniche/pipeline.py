"""The run: per-sample tasks, then the run-level steps, then the manifest and the report.

``run()`` is orchestration only: it reads every input, maps :func:`metaniche.sample.sample_task`
over the samples (a failing sample is recorded and the rest go on; unchanged samples are
skipped), gathers the per-sample tables, runs the registered run-level steps
(:data:`metaniche.cohort.steps.RUN_STEPS`), writes the features once, renders the report from
the in-memory manifest and writes run.json once. Every file of the run directory is written
through :class:`metaniche.rundir.RunDir`, atomically.

Crash safety: the run holds the directory's lock (:meth:`metaniche.rundir.RunDir.lock`; a
second run on it is refused, naming the pid of the first) and starts by removing what an
interrupted run left (:meth:`~metaniche.rundir.RunDir.clean_stale`). Each sample's outputs
become visible in one atomic step and are verified before being reused (see
:mod:`metaniche.rundir`), so a run killed at any point and then rerun gives the same run
directory as an uninterrupted run. A sample whose worker process is lost is retried, then
recorded as failed (:func:`metaniche.executor.map_tasks`); run.json is written either way.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from metaniche import __version__
from metaniche.cohort.steps import (
    RUN_STEPS,
    RunState,
    RunStep,
    feature_dictionary,
    run_step,
    with_patients,
)
from metaniche.config import Config
from metaniche.errors import InputError, MetanicheError
from metaniche.executor import map_tasks, start_workers
from metaniche.genes import with_gene_columns
from metaniche.io import read_clinical, read_samples
from metaniche.io._tables import file_stem
from metaniche.io.cells import (
    SampleInput,
    input_entries,
    reload_sample,
    scan_entry,
    unique_names,
)
from metaniche.progress import ProgressCallback, ProgressEvent, StageClock
from metaniche.rundir import FAILED, SKIPPED, Manifest, RunDir, SampleRecord, config_hash, safe_name
from metaniche.sample import SampleTask, crash_point, sample_task

__all__ = ["OutputError", "RunResult", "run"]

#: What the run's worker processes import: the sample task and the report's page renderer.
_WORKER_MODULES = ["metaniche.sample", "metaniche.report.html"]


@dataclass
class RunResult:
    """Summary of a run: the output directory, per-sample records and the manifest."""

    out_dir: Path
    samples: dict[str, SampleRecord] = field(default_factory=dict)
    manifest: Manifest = field(default_factory=Manifest)

    @property
    def failed(self) -> list[str]:
        """Names of the samples that failed."""
        return [name for name, rec in self.samples.items() if rec.status == FAILED]

    @property
    def failed_steps(self) -> list[str]:
        """run.json keys of the run-level steps that failed (e.g. ``cohort``)."""
        return self.manifest.failed_steps


def run(inputs: Sequence[str | Path], out_dir: str | Path, config: Config | None = None,
        clinical: str | Path | None = None, workers: int = 1, force: bool = False,
        progress: ProgressCallback | None = None, scheduler: str | None = None) -> RunResult:
    """Analyse every sample of ``inputs`` and write the run directory ``out_dir``.

    Parameters
    ----------
    inputs
        Cell-table files or folders (see :func:`metaniche.io.read_samples`).
    out_dir
        Run directory; created when missing. A previous run there is reused: samples whose
        cells and configuration are unchanged are not recomputed (unless ``force``).
    config
        Run configuration; defaults when None.
    clinical
        Optional clinical table (validated and recorded; outcome analyses use it).
    workers
        Local processes for the per-sample tasks; 1 runs in this process.
    scheduler
        Address of a Dask distributed scheduler (``tcp://host:port``) to run the per-sample
        tasks on instead; workers read their own input files (see :func:`_read_inputs`), so
        they must see the inputs and ``out_dir`` at the same paths.
    progress
        Called with a :class:`metaniche.progress.ProgressEvent` as each sample and each of
        its stages (:func:`metaniche.progress.sample_stage_names`) starts and finishes, then
        for the run-level stages (:data:`metaniche.progress.RUN_STAGES`). Stage events of
        samples run on a Dask scheduler arrive through the scheduler as they happen (any
        that has not arrived is replayed when the sample completes). Per-stage times
        are recorded in run.json either way (``samples.<name>.stages``, ``stages``).

    Returns
    -------
    RunResult
        Per-sample records, the manifest, and ``failed`` / ``failed_steps``.

    Raises
    ------
    MetanicheError
        When nothing can be run at all (no readable input, bad clinical table), or another
        run holds the directory (:class:`~metaniche.rundir.RunDirLocked`, exit code 2).
    OutputError
        When a run-level output cannot be written (exit code 1; the file is named).
    """
    config = config or Config()
    rundir = RunDir(out_dir)
    with rundir.lock():
        rundir.clean_stale()
        return _run_locked(inputs, rundir, config, clinical, workers, force,
                           progress or (lambda event: None), scheduler)


def _cohort_thresholds(config: Config, samples: Sequence[SampleInput], rundir: RunDir
                       ) -> Config:
    """The run-level pre-pass: per-cohort state thresholds over every readable sample
    (:func:`metaniche.cohort.state_thresholds.with_cohort_thresholds`), written to
    ``cohort/state_thresholds.parquet``; ``config`` unchanged without such a state."""
    from metaniche.cohort.state_thresholds import with_cohort_thresholds

    # Lazy: cells are (re)read only when some state pools a cohort threshold; a Dask
    # run's deferred samples are read here, on the scheduler, one at a time.
    loaded = (reload_sample(s, config) for s in samples if s.ok)
    markers = [rule.marker for rule in config.states.rules.values() if rule.marker]
    config, table = with_cohort_thresholds(
        config, ((s.name, with_gene_columns(s.cells, s.genes, markers))
                 for s in loaded if s.cells is not None))
    if table.empty:
        rundir.remove_cohort_table("state_thresholds")
    else:
        rundir.write_cohort_table("state_thresholds", table)
    return config


class OutputError(MetanicheError):
    """A run-level output could not be written (exit code 1): the samples' outputs stay."""

    exit_code = 1


def _run_locked(inputs: Sequence[str | Path], rundir: RunDir, config: Config,
                clinical: str | Path | None, workers: int, force: bool,
                notify: ProgressCallback, scheduler: str | None) -> RunResult:
    """:func:`run`, holding the directory's lock."""
    started = time.perf_counter()
    if workers > 1 and not scheduler:
        # The worker processes' imports overlap the reading (see start_workers).
        start_workers(_WORKER_MODULES)
    samples = _read_inputs(inputs, config, scheduler)
    if not samples:
        raise InputError("no cell tables found in the inputs; give .csv/.tsv/.parquet/.h5ad "
                         "files or folders holding them.")
    clinical_table = read_clinical(clinical, config) if clinical else None
    config = _cohort_thresholds(config, samples, rundir)
    chash = config_hash(config)
    tasks = [SampleTask(s, config, str(rundir.root), chash, force) for s in samples]
    notify(ProgressEvent(None, None, "started", total=len(tasks)))
    records = _run_samples(tasks, workers, scheduler, notify)
    # Completion order depends on the executor; the manifest keeps input order.
    records = {s.name: records[s.name] for s in samples if s.name in records}
    try:
        return _run_level(inputs, rundir, config, clinical, clinical_table, records,
                          {s.name: s.patient for s in samples}, chash, started, notify,
                          workers=1 if scheduler else workers)
    except OSError as err:
        # os.replace(temporary, target) names the target second.
        where = err.filename2 or err.filename or rundir.root
        raise OutputError(f"{where}: cannot write the run's outputs ({err.strerror or err}); "
                          f"make {rundir.root} writable (or give another --out) and rerun: "
                          f"the analysed samples are reused.") from None


def _read_inputs(inputs: Sequence[str | Path], config: Config,
                 scheduler: str | None) -> list[SampleInput]:
    """Every sample of the inputs: read here, or on the cluster's workers.

    On a Dask cluster the workers read and check their own files
    (:func:`metaniche.io.cells.scan_entry`, one task per file) and send back only each
    sample's record; each sample's task reads its cells again where it runs
    (:func:`metaniche.io.cells.reload_sample`). So the client never holds the cohort's cells,
    and workers must see the inputs at the same paths.
    """
    if not scheduler:
        return read_samples(inputs, config)
    entries = input_entries(inputs, config)
    scanned: dict[int, list[SampleInput]] = {}

    def lost(item: tuple[int, Any], reason: str) -> tuple[int, list[SampleInput]]:
        index, (entry, _) = item
        path = entry[0] if isinstance(entry, tuple) else entry
        return index, [SampleInput(file_stem(path), path, None,
                                   f"{path}: could not be read on the cluster: {reason}",
                                   file_error=True)]

    for index, found in map_tasks(_scan_indexed, list(enumerate((e, config) for e in entries)),
                                  scheduler=scheduler, on_lost=lost):
        scanned[index] = found
    return unique_names([s for i in sorted(scanned) for s in scanned[i]])


def _scan_indexed(item: tuple[int, tuple[Any, Config]],
                  emit: Any = None) -> tuple[int, list[SampleInput]]:
    """:func:`scan_entry` keeping the entry's position (tasks finish in any order)."""
    index, payload = item
    return index, scan_entry(payload)


def _run_level(inputs: Sequence[str | Path], rundir: RunDir, config: Config,
               clinical: str | Path | None, clinical_table: pd.DataFrame | None,
               records: dict[str, SampleRecord], patients: dict[str, str | None],
               chash: str, started: float, notify: ProgressCallback,
               workers: int = 1) -> RunResult:
    """Gather (on ``workers`` local processes), the run-level steps, the features, the
    report and run.json.

    ``patients`` maps each sample to the patient its cell table names (None when it names
    none); :func:`metaniche.cohort.steps.with_patients` reconciles it with the clinical table.
    """
    state = RunState(rundir, config, {n: r for n, r in records.items() if r.succeeded},
                     clinical_table)
    clock = StageClock(None, notify)
    crash_point("gather", "run")
    with clock.stage("gather"):
        rundir.gather_tables({name: rec.stem for name, rec in state.samples.items()},
                             workers=workers)
        crash_point("gathered", "run")
        state.features = with_patients(_sample_features(rundir, state.samples),
                                       patients)
    if clinical_table is not None:
        rundir.write_clinical(clinical_table)
    steps: dict[str, dict[str, Any] | None] = {}
    for step in (s for s in RUN_STEPS if not s.reads_features):
        steps[step.key] = _timed_step(step, state, clock)
    with clock.stage("features"):
        rundir.write_features(state.features, feature_dictionary(state.features))
    for step in (s for s in RUN_STEPS if s.reads_features):
        steps[step.key] = _timed_step(step, state, clock)
    manifest = Manifest(
        metaniche_version=__version__, config=config.to_dict(), config_sha256=chash,
        inputs=[_describe_input(p) for p in inputs], clinical=str(clinical) if clinical else None,
        samples=records, steps=steps, stages=clock.seconds,
        seconds=round(time.perf_counter() - started, 3))
    from metaniche.report import render_report

    crash_point("report", "run")
    with clock.stage("report"):
        render_report(rundir.root, manifest)
    # The report's own time is known only after rendering it: run.json is written once, now.
    manifest.stages = dict(clock.seconds)
    manifest.seconds = round(time.perf_counter() - started, 3)
    crash_point("manifest", "run")
    rundir.write_manifest(manifest)
    return RunResult(rundir.root, records, manifest)


def _run_samples(tasks: list[SampleTask], workers: int, scheduler: str | None,
                 notify: ProgressCallback) -> dict[str, SampleRecord]:
    """Map the sample tasks on the executor, forwarding their progress events."""
    records: dict[str, SampleRecord] = {}
    reported: set[tuple[str | None, str | None]] = set()

    def on_event(event: ProgressEvent) -> None:
        if event.sample in records:   # a Dask worker's event arriving after the record
            return
        if event.status in ("finished", "failed"):
            reported.add((event.sample, event.stage))
        notify(event)

    for record in map_tasks(sample_task, tasks, workers, scheduler,
                            on_start=lambda task: notify(ProgressEvent(task.sample.name, None,
                                                                       "started")),
                            on_event=on_event, on_lost=_lost_record):
        if record.status != SKIPPED:
            # Stage events a worker could not send live (Dask) are replayed from the record.
            for k, (stage_name, seconds) in enumerate(record.stages.items()):
                if (record.sample, stage_name) not in reported:
                    # A failed sample's last timed stage is the one that failed.
                    last = record.status == FAILED and k == len(record.stages) - 1
                    notify(ProgressEvent(record.sample, stage_name,
                                         "failed" if last else "finished", seconds))
        notify(ProgressEvent(record.sample, None, record.status, record.seconds, record.error))
        records[record.sample] = record
    return records


def _lost_record(task: SampleTask, reason: str) -> SampleRecord:
    """The failure record of a sample whose worker (or scheduler) was lost."""
    sample = task.sample
    return SampleRecord(sample=sample.name, file_name=safe_name(sample.name),
                        source=str(sample.source), warnings=list(sample.warnings),
                        input_sha256=sample.checksum, config_sha256=task.config_sha256,
                        status=FAILED, seconds=0.0,
                        error=f"{sample.source}: sample '{sample.name}' was not analysed: "
                              f"{reason}")


def _sample_features(rundir: RunDir, samples: dict[str, SampleRecord]) -> pd.DataFrame:
    """One row per sample (``sample`` first) of the features cached by its task."""
    return pd.DataFrame([{"sample": name, **rundir.read_sample_features(rec.stem)}
                         for name, rec in samples.items()])


class _StepFailed(Exception):
    """Marks a failed run-level step's stage as ``failed`` in the progress events."""


def _timed_step(step: RunStep, state: RunState, clock: StageClock) -> dict[str, Any] | None:
    """The step's record (None when it does not apply to this run), timed as its stage; a
    failed step's stage event is ``failed``."""
    if not step.applies(state):
        return None
    record: dict[str, Any] = {}
    try:
        with clock.stage(step.name):
            record = run_step(step, state).record
            if record.get("status") == FAILED:
                raise _StepFailed
    except _StepFailed:
        pass
    return record


def _describe_input(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    return {"path": str(path), "bytes": None, "sha256": None}
