"""The run: per-sample analysis tasks, then the cohort step, then the report.

``run()`` reads every input, analyses each sample independently (a failing sample is recorded
and the rest go on), skips samples whose cells and configuration are unchanged since the last
run in the same directory, gathers the per-sample tables into the run directory of DESIGN.md,
and renders the report. Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from metaniche import __version__
from metaniche._atomic import write_json, write_parquet, write_text
from metaniche.analyses.compartments import CompartmentResult, assign_compartments
from metaniche.config import Config
from metaniche.context import SampleContext
from metaniche.errors import InputError, MetanicheError
from metaniche.executor import map_tasks
from metaniche.io import SampleInput, read_clinical, read_samples
from metaniche.io.annotations import find_annotation, read_geojson_polygons
from metaniche.progress import ProgressCallback, ProgressEvent, StageClock
from metaniche.stages import SAMPLE_STAGES

__all__ = ["RunResult", "SampleAnalysis", "analyse_sample", "build_context", "run", "safe_name"]

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


@dataclass
class RunResult:
    """Summary of a run: the output directory and per-sample status records."""

    out_dir: Path
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        """Names of the samples that failed."""
        return [name for name, rec in self.samples.items() if rec["status"] == "failed"]


def build_context(name: str, cells: pd.DataFrame, config: Config,
                  annotation: Sequence[Any] | None = None) -> SampleContext:
    """Type codes, roles and compartments of one standardised cell table (µm coordinates)."""
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
    result = assign_compartments(x, y, is_tumor, is_immune, config.compartments,
                                 annotation=annotation)
    return SampleContext(name, cells, config, x, y, types, codes.astype(np.int32),
                         tumor_types, immune_types, result)


def analyse_sample(cells: pd.DataFrame, config: Config,
                   annotation: Sequence[Any] | None = None, name: str = "",
                   clock: StageClock | None = None) -> SampleAnalysis:
    """Run the per-sample analysis chain on one standardised cell table (µm coordinates).

    Pure: no file I/O. Builds the :class:`~metaniche.context.SampleContext` (compartments
    included), runs every stage of :data:`metaniche.stages.SAMPLE_STAGES` in order and returns
    the per-cell output (``CELL_COLUMNS`` then the stages' cell columns), the stages' tables
    (without the ``sample`` column) and their named features. ``clock`` (optional) times
    the context build (stage ``compartments``) and every stage and reports their start and
    finish (see :class:`metaniche.progress.StageClock`); results never depend on it.
    """
    if not name and "sample" in cells.columns and len(cells):
        name = str(cells["sample"].iloc[0])
    clock = clock or StageClock(name)
    with clock.stage("compartments"):
        context = build_context(name, cells, config, annotation)
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
        with clock.stage(stage_name):
            output = stage(context)
        clash = set(output.tables) & set(tables)
        if clash:
            raise RuntimeError(f"stage {stage_name} re-emits tables {sorted(clash)}")
        tables.update(output.tables)
        features.update(output.features)
        for column, values in output.cell_columns.items():
            out[column] = values
    return SampleAnalysis(out, tables, features, result, dict(clock.seconds))


def safe_name(sample: str) -> str:
    """A file-system-safe, non-hidden name for a sample (never leaves its directory)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", sample).strip("._") or "sample"
    if cleaned != sample:
        cleaned += "-" + hashlib.sha1(sample.encode()).hexdigest()[:6]
    return cleaned


def config_hash(config: Config) -> str:
    """SHA-256 of the configuration as canonical JSON."""
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()


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
        tasks on instead; workers must see the same file system paths.
    progress
        Called with a :class:`metaniche.progress.ProgressEvent` as each sample and each of
        its stages (:func:`metaniche.progress.sample_stage_names`) starts and finishes, then
        for the run-level stages (:data:`metaniche.progress.RUN_STAGES`). Stage events of
        samples run on a Dask scheduler arrive when the sample completes. Per-stage times
        are recorded in run.json either way (``samples.<name>.stages``, ``stages``).

    Raises
    ------
    MetanicheError
        When nothing can be run at all (no readable input, bad clinical table).
    """
    config = config or Config()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notify = progress or (lambda event: None)
    started = time.perf_counter()
    samples = read_samples(inputs, config)
    if not samples:
        raise InputError("no cell tables found in the inputs; give .csv/.tsv/.parquet/.h5ad "
                         "files or folders holding them.")
    clinical_table = read_clinical(clinical, config) if clinical else None
    chash = config_hash(config)
    tasks = [(s, config, str(out), chash, force) for s in samples]
    notify(ProgressEvent(None, None, "started", total=len(tasks)))
    records: dict[str, dict[str, Any]] = {}
    reported: set[tuple[str | None, str | None]] = set()

    def on_event(event: ProgressEvent) -> None:
        if event.status in ("finished", "failed"):
            reported.add((event.sample, event.stage))
        notify(event)

    for record in map_tasks(_sample_task, tasks, workers, scheduler,
                            on_start=lambda task: notify(ProgressEvent(task[0].name, None,
                                                                       "started")),
                            on_event=on_event):
        if record["status"] != "skipped":
            # Stage events a worker could not send live (Dask) are replayed from the record.
            stages = record.get("stages") or {}
            for k, (stage_name, seconds) in enumerate(stages.items()):
                if (record["sample"], stage_name) not in reported:
                    # A failed sample's last timed stage is the one that failed.
                    last = record["status"] == "failed" and k == len(stages) - 1
                    notify(ProgressEvent(record["sample"], stage_name,
                                         "failed" if last else "finished", seconds))
        notify(ProgressEvent(record["sample"], None, record["status"], record.get("seconds"),
                             record.get("error")))
        records[record["sample"]] = record
    # Completion order depends on the executor; the manifest keeps input order.
    records = {s.name: records[s.name] for s in samples if s.name in records}
    ok = [name for name, rec in records.items() if rec["status"] in ("ok", "skipped")]
    clock = StageClock(None, notify)
    with clock.stage("gather"):
        _gather(out, ok, records)
    if ok and (out / "tables" / "cn_training.parquet").is_file():
        # Many small k-means / logistic fits: OpenMP/BLAS threads cost more than they give
        # (3-10x slower on 2 busy cores), so the cohort steps run single-threaded.
        with clock.stage("neighbourhoods"), _single_threaded():
            _neighbourhood_step(out, ok, records, config)
    with clock.stage("lesions"):
        lesion_record = _lesion_step(out, clinical_table, config)
    cohort = None
    if clinical_table is not None:
        write_parquet(out / "clinical.parquet", clinical_table)
        with clock.stage("cohort"), _single_threaded():
            cohort = _cohort_step(out, clinical_table, config)
    manifest = {
        "metaniche_version": __version__,
        "config": config.to_dict(),
        "config_sha256": chash,
        "inputs": [_describe_input(p) for p in inputs],
        "clinical": str(clinical) if clinical else None,
        "samples": records,
        "cohort": cohort,
        "lesion_size_exclusion": lesion_record,
        "stages": clock.seconds,
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_json(out / "run.json", manifest)
    from metaniche.report import render_report

    with clock.stage("report"):
        render_report(out)
    # The report's own time is known only after rendering it.
    manifest["seconds"] = round(time.perf_counter() - started, 3)
    write_json(out / "run.json", manifest | {"stages": clock.seconds})
    return RunResult(out, records)


def _single_threaded() -> threadpool_limits:
    """Limit OpenMP/BLAS to one thread for the cohort steps' many small scikit-learn fits.

    threadpoolctl only limits libraries already loaded, so scikit-learn's compiled modules
    (and their OpenMP runtime) are imported first.
    """
    import sklearn.cluster
    import sklearn.linear_model  # noqa: F401

    return threadpool_limits(1)


def _lesion_step(out: Path, clinical_table: pd.DataFrame | None,
                 config: Config) -> dict[str, Any]:
    """Lesion size vs exclusion over the run's lesions; writes its table, never raises.

    :func:`metaniche.cohort.lesions.lesion_exclusion_table` over
    ``tables/lesion_metrics.parquet`` goes to ``cohort/lesion_size_exclusion.parquet``
    (patients from the clinical table when given, else each sample is its own patient).
    Returns the run.json record.
    """
    from metaniche.cohort.lesions import lesion_exclusion_table

    lesion_in = out / "tables" / "lesion_metrics.parquet"
    lesion_out = out / "cohort" / "lesion_size_exclusion.parquet"
    try:
        if not lesion_in.is_file():
            if lesion_out.is_file():
                lesion_out.unlink()
            return {"status": "skipped", "reason": "no tables/lesion_metrics.parquet"}
        table = lesion_exclusion_table(pd.read_parquet(lesion_in), clinical_table,
                                       config.clinical)
        write_parquet(lesion_out, table)
        return {"status": "ok", "rows": len(table)}
    except Exception as err:
        return {"status": "failed", "error": f"lesion size vs exclusion failed: {err!r}"}


def _cohort_step(out: Path, clinical_table: pd.DataFrame, config: Config) -> dict[str, Any]:
    """Run :func:`metaniche.cohort.analyse_cohort` and write its outputs; never raises.

    Writes ``association.parquet``, ``prediction.json`` (when prediction ran) and
    ``tables/km_curves.parquet``; returns the run.json record (status, skipped analyses,
    warnings, or the error), so a cohort failure never loses the per-sample outputs.
    """
    from metaniche.cohort import analyse_cohort

    path = out / "features.parquet"
    if not path.is_file():
        return {"status": "failed", "error": "no features.parquet (no sample succeeded)."}
    try:
        result = analyse_cohort(pd.read_parquet(path), clinical_table, config)
        write_parquet(out / "association.parquet", result.association)
        if result.prediction:
            write_json(out / "prediction.json", result.prediction)
        write_parquet(out / "tables" / "km_curves.parquet", result.km_curves)
    except MetanicheError as err:
        return {"status": "failed", "error": str(err)}
    except Exception as err:
        return {"status": "failed", "error": f"cohort analysis failed: {err!r}",
                "traceback": traceback.format_exc()}
    return {"status": "ok", "unit": result.unit, "skipped": result.skipped,
            "warnings": result.warnings, "n_features": int(result.matrix.shape[1]),
            "dropped_features": len(result.dropped_features)}


def _sample_task(item: tuple[SampleInput, Config, str, str, bool],
                 emit: ProgressCallback | None = None) -> dict[str, Any]:
    """Analyse one sample and write its outputs; never raises (errors are recorded).

    The record's ``stages`` maps each stage run (see
    :func:`metaniche.progress.sample_stage_names`) to its wall time; ``emit`` receives the
    stage events as they happen.
    """
    sample, config, out_dir, chash, force = item
    out = Path(out_dir)
    name = safe_name(sample.name)
    record: dict[str, Any] = {"sample": sample.name, "file_name": name,
                              "source": str(sample.source), "warnings": list(sample.warnings),
                              "input_sha256": sample.checksum, "config_sha256": chash}
    started = time.perf_counter()
    if sample.error is not None or sample.cells is None:
        return record | {"status": "failed", "error": sample.error, "seconds": 0.0}
    cache = out / ".samples" / name
    done = cache / "done.json"
    if not force and _is_current(done, sample.checksum, chash, out / "cells" / f"{name}.parquet"):
        previous = json.loads(done.read_text())
        return record | {"status": "skipped", "error": None, "seconds": previous["seconds"],
                         "stages": previous.get("stages", {})}
    clock = StageClock(sample.name, emit)
    try:
        annotation = _annotation_for(sample.name, name, config)
        analysis = analyse_sample(sample.cells, config, annotation, name=sample.name,
                                  clock=clock)
        with clock.stage("writing"):
            write_parquet(out / "cells" / f"{name}.parquet",
                          _with_markers(analysis.cells, sample))
            for stale in cache.glob("*.parquet") if cache.is_dir() else ():
                stale.unlink()
            for table_name, table in analysis.tables.items():
                write_parquet(cache / f"{table_name}.parquet", table)
            write_json(cache / "features.json", analysis.features)
        from metaniche.report.figures import save_tissue_map

        with clock.stage("tissue_map"):
            save_tissue_map(analysis, sample.name,
                            out / "report" / "figures" / f"{name}.map.png", config)
    except MetanicheError as err:
        return record | {"status": "failed", "error": str(err), "stages": clock.seconds,
                         "seconds": round(time.perf_counter() - started, 3)}
    except Exception as err:
        message = f"{sample.source}: sample '{sample.name}' failed in analysis: {err!r}"
        return record | {"status": "failed", "error": message, "stages": clock.seconds,
                         "traceback": traceback.format_exc(),
                         "seconds": round(time.perf_counter() - started, 3)}
    seconds = round(time.perf_counter() - started, 3)
    write_json(done, {"input_sha256": sample.checksum, "config_sha256": chash,
                      "seconds": seconds, "stages": clock.seconds})
    return record | {"status": "ok", "error": None, "seconds": seconds, "stages": clock.seconds,
                     "phenotype": analysis.features.get("phenotype")}


def _with_markers(cells_out: pd.DataFrame, sample: SampleInput) -> pd.DataFrame:
    """Per-cell output columns followed by the input's own extra columns (markers, metadata)."""
    assert sample.cells is not None
    extra = [c for c in sample.cells.columns if c not in (*CELL_COLUMNS, "sample")]
    return pd.concat([cells_out, sample.cells[extra].reset_index(drop=True)], axis=1)


def _is_current(done: Path, input_sha: str, config_sha: str, cells_file: Path) -> bool:
    if not (done.is_file() and cells_file.is_file() and input_sha):
        return False
    try:
        marker = json.loads(done.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return marker.get("input_sha256") == input_sha and marker.get("config_sha256") == config_sha


def _annotation_for(sample: str, name: str, config: Config) -> list | None:
    location = config.compartments.annotations
    if not location:
        return None
    path = find_annotation(location, sample, name)
    if path is None:
        return None
    return read_geojson_polygons(path, config.um_per_unit)


def _gather(out: Path, names: list[str], records: dict[str, dict[str, Any]]) -> None:
    """Concatenate per-sample tables (``sample`` first) and write tables/ and features."""
    caches = {name: out / ".samples" / records[name]["file_name"] for name in names}
    table_names = sorted({path.stem for cache in caches.values()
                          for path in cache.glob("*.parquet")})
    for table_name in table_names:
        parts = []
        for name, cache in caches.items():
            path = cache / f"{table_name}.parquet"
            if path.is_file():
                table = pd.read_parquet(path)
                table.insert(0, "sample", name)
                parts.append(table)
        parts = [part for part in parts if not part.empty] or parts[:1]
        write_parquet(out / "tables" / f"{table_name}.parquet",
                      pd.concat(parts, ignore_index=True))
    rows = [{"sample": name, **json.loads((cache / "features.json").read_text())}
            for name, cache in caches.items()]
    features = pd.DataFrame(rows)
    if not features.empty:
        write_parquet(out / "features.parquet", features)
        write_text(out / "features.csv", features.to_csv(index=False))
    write_text(out / "features_dictionary.csv", _feature_dictionary(features).to_csv(index=False))


def _neighbourhood_step(out: Path, names: list[str], records: dict[str, dict[str, Any]],
                        config: Config) -> None:
    """Cohort CNs: fit on every sample's ``cn_training``, label ``cells/<sample>.parquet``
    (column ``neighbourhood``), write ``tables/neighbourhoods.parquet`` and the
    ``cn_fraction.*`` features (see :func:`metaniche.stages.communities.cohort_neighbourhoods`)."""
    training_path = out / "tables" / "cn_training.parquet"
    if not names or not training_path.is_file():
        return
    from metaniche.stages.communities import cohort_neighbourhoods

    paths = {name: out / "cells" / f"{records[name]['file_name']}.parquet" for name in names}
    cells = {name: pd.read_parquet(path) for name, path in paths.items()}
    labels, table, cn_features = cohort_neighbourhoods(pd.read_parquet(training_path), cells,
                                                       config)
    for name, path in paths.items():
        write_parquet(path, cells[name].assign(neighbourhood=labels[name]))
    write_parquet(out / "tables" / "neighbourhoods.parquet", table)
    if (out / "features.parquet").is_file():
        features = pd.read_parquet(out / "features.parquet")
        extra = pd.DataFrame.from_dict(cn_features, orient="index")
        features = features.drop(columns=[c for c in features if c.startswith("cn_fraction.")])
        features = features.join(extra, on="sample")
        write_parquet(out / "features.parquet", features)
        write_text(out / "features.csv", features.to_csv(index=False))
        write_text(out / "features_dictionary.csv",
                   _feature_dictionary(features).to_csv(index=False))


def _feature_dictionary(features: pd.DataFrame) -> pd.DataFrame:
    """name, analysis, unit, description of every feature column (families from the stages)."""
    owner = {family: (stage, unit, text) for stage, _, families in SAMPLE_STAGES
             for family, (unit, text) in families.items()}
    rows = []
    for column in features.columns.drop("sample", errors="ignore"):
        family = column.split(".", 1)[0]
        stage, unit, text = owner.get(family, ("", "", ""))
        rows.append({"name": column, "analysis": stage, "unit": unit, "description": text})
    return pd.DataFrame(rows, columns=["name", "analysis", "unit", "description"])


def _describe_input(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    return {"path": str(path), "bytes": None, "sha256": None}
