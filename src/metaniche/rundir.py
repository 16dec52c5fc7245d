"""The run directory: every path of its layout, its typed records, its only writer and reader.

Layout (DESIGN.md "Outputs")::

    OUT/
      run.json                          Manifest (typed: Manifest, SampleRecord)
      cells/<file>.parquet              per-cell output of each sample
      tables/<name>.parquet             long tables, ``sample`` first
      features.parquet, features.csv    one row per sample
      features_dictionary.csv           name, analysis, unit, description of every feature
      clinical.parquet                  the validated clinical table (when given)
      association.parquet               cohort associations (when a clinical table is given)
      prediction.json                   cross-validated prediction (when it ran)
      cohort/<name>.parquet             other run-level tables (lesion size vs exclusion)
      report/index.html, report/<file>.html, report/figures/<file>.map.png, …
      .lock                             held (fcntl.flock) by the run using the directory
      .samples/<file>/                  per-sample cache of the last analysis of the sample:
          done.json                     DoneMarker: what the outputs were computed from, the
                                        current generation and the checksum of its every file
          published.json                checksums of the sample's files published from it
          gen-<n>/                      one generation of the sample's outputs:
              features.json             the sample's features
              cells.parquet             its cells file (published as cells/<file>.parquet)
              map/<file>.map.png, …     its tissue map (published to report/figures/)
              tables/<name>.arrow       its long tables (gathered into tables/)
              <name>.arrow              sample-private tables (PRIVATE_TABLES; not gathered)

``<file>`` is :func:`safe_name` of the sample name (recorded as ``SampleRecord.file_name``):
never a path separator, never hidden, so every file stays inside ``OUT``. Every write is
atomic: outside a generation each file is written to a temporary name and renamed
(:mod:`metaniche._atomic`); a generation becomes current in one step (below), so its cached
tables (:func:`write_cache_table`) are written in place. Nothing else in metaniche builds a
path of this layout.

Crash safety: a sample's outputs become visible in one atomic step. Its task writes a new
generation directory (:meth:`RunDir.write_sample`), then :meth:`RunDir.write_done` records the
checksums (size and SHA-256) of every file in it and atomically replaces ``done.json`` (the
switch), then publishes the cells file and tissue map (hard links, or copies, renamed into
place) and removes the other generations. A kill at any moment leaves either the previous
complete generation or the new one current. The skip decision (:meth:`RunDir.check_sample`)
verifies every file of the current generation against its checksum and restores a missing or
differing published file from it; a damaged generation is recomputed. Only one run uses a
directory at a time (:meth:`RunDir.lock`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from metaniche._atomic import arrow_table, write_json, write_parquet, write_text
from metaniche.errors import InputError, MetanicheError
from metaniche.tables import CN_WINDOWS, PRIVATE_TABLES

if TYPE_CHECKING:
    from metaniche.config import Config

__all__ = ["CN_WINDOWS", "LAYOUT_VERSION", "MAX_STEM", "PRIVATE_TABLES", "CacheCheck", "DoneMarker",
           "Manifest", "RunDir", "RunDirLocked", "SampleRecord", "config_hash", "safe_name"]

_log = logging.getLogger("metaniche")

#: Version of the ``.samples/`` cache layout; a cache written by another layout is recomputed.
#: 4: cached tables are Arrow IPC files (``.arrow``; Parquet before).
LAYOUT_VERSION = 4
#: Suffix of a generation's cached tables (Arrow IPC files, :func:`write_cache_table`).
_CACHE_SUFFIX = ".arrow"
#: Tables larger than this in memory (bytes) are cached LZ4-compressed (see write_cache_table).
_COMPRESS_BYTES = 1 << 16
#: Longest stem :func:`safe_name` keeps of a name before its hash suffix (file names must stay
#: under the usual 255-byte limit with their longest extension, ``.map.zoom.json``).
MAX_STEM = 100

#: Sample status values.
OK, SKIPPED, FAILED = "ok", "skipped", "failed"

#: The alphabet of safe_name, no leading dot.
_SAFE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


def safe_name(sample: str) -> str:
    """A file-system-safe, non-hidden file stem for a sample name (never leaves its directory).

    Characters outside ``[A-Za-z0-9_.-]`` become ``_``, leading/trailing dots and underscores
    are stripped and the result is cut to its first :data:`MAX_STEM` characters; when anything
    changed, the first 6 hex digits of the name's SHA-1 are appended so distinct names stay
    distinct. At most ``MAX_STEM + 7`` characters; stable across versions and platforms.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", sample).strip("._") or "sample"
    cleaned = cleaned[:MAX_STEM]
    if cleaned != sample:
        cleaned += "-" + hashlib.sha1(sample.encode()).hexdigest()[:6]
    return cleaned


def config_hash(config: Config) -> str:
    """SHA-256 (hex) of the configuration as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()


def _is_safe(stem: str) -> bool:
    return bool(_SAFE.match(stem)) and stem not in (".", "..")


def _checked(stem: str, what: str) -> str:
    if not _is_safe(stem):
        raise ValueError(f"{what} {stem!r} is not a safe file stem; build it with safe_name().")
    return stem


@dataclass
class SampleRecord:
    """The run.json record of one sample (``samples.<name>``).

    Attributes
    ----------
    sample
        Sample name as read from the input.
    file_name
        File stem of its outputs (:func:`safe_name` of ``sample``).
    source
        Input file it came from.
    warnings
        Input warnings.
    input_sha256, config_sha256
        Checksums of its cells and of the configuration (the skip decision).
    status
        ``ok``, ``skipped`` (unchanged since the last run, outputs reused) or ``failed``.
    error
        Message of a failed sample (None otherwise).
    seconds
        Wall time of the analysis (s); for a skipped sample, that of the run that made it.
    stages
        Stage name → wall time (s), in execution order.
    phenotype
        Immune phenotype (feature ``phenotype``) of an analysed sample.
    traceback
        Python traceback of an unexpected failure (None otherwise).
    """

    sample: str
    file_name: str
    source: str = ""
    warnings: list[str] = field(default_factory=list)
    input_sha256: str | None = None
    config_sha256: str | None = None
    status: str = FAILED
    error: str | None = None
    seconds: float | None = None
    stages: dict[str, float] = field(default_factory=dict)
    phenotype: str | None = None
    traceback: str | None = None

    @property
    def succeeded(self) -> bool:
        """True when the sample's outputs are in the run (``ok`` or ``skipped``)."""
        return self.status in (OK, SKIPPED)

    @property
    def stem(self) -> str:
        """File stem of the sample's outputs: ``file_name`` when safe, else :func:`safe_name`.

        Never contains a path separator or starts with a dot, whatever run.json holds.
        """
        return self.file_name if _is_safe(str(self.file_name or "")) else safe_name(self.sample)

    def to_dict(self) -> dict[str, Any]:
        """The run.json form (``traceback`` only when set)."""
        data = asdict(self)
        if data["traceback"] is None:
            del data["traceback"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], sample: str | None = None) -> SampleRecord:
        """Read a run.json record; missing keys take their defaults, unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("sample", sample if sample is not None else "")
        values.setdefault("file_name", "")
        values["warnings"] = list(values.get("warnings") or [])
        values["stages"] = dict(values.get("stages") or {})
        return cls(**values)


#: run.json keys that are fields of :class:`Manifest`; every other top-level key is the
#: record of a run-level step (see :data:`metaniche.cohort.steps.RUN_STEPS`).
_MANIFEST_HEAD = ("metaniche_version", "config", "config_sha256", "inputs", "clinical",
                  "samples")
_MANIFEST_TAIL = ("stages", "seconds")


@dataclass
class Manifest:
    """run.json: what ran, on what, with which configuration, and how each part ended.

    Attributes
    ----------
    metaniche_version
        Version that wrote the run.
    config
        The configuration as plain data (:meth:`metaniche.config.Config.to_dict`).
    config_sha256
        :func:`config_hash` of it.
    inputs
        ``{"path", "bytes", "sha256"}`` of every input given.
    clinical
        Path of the clinical table (None when not given).
    samples
        Sample name → :class:`SampleRecord`, in input order.
    steps
        run.json key → record of each run-level step (``status`` ``ok``, ``skipped`` or
        ``failed``, and the step's own fields); None for a step that did not apply (e.g.
        ``cohort`` without a clinical table). Written as top-level keys of run.json.
    stages
        Run-level stage → wall time (s).
    seconds
        Wall time of the run (s).
    """

    metaniche_version: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    config_sha256: str = ""
    inputs: list[dict[str, Any]] = field(default_factory=list)
    clinical: str | None = None
    samples: dict[str, SampleRecord] = field(default_factory=dict)
    steps: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None

    @property
    def failed_samples(self) -> list[str]:
        """Names of the samples that failed."""
        return [name for name, rec in self.samples.items() if rec.status == FAILED]

    @property
    def failed_steps(self) -> list[str]:
        """run.json keys of the run-level steps that failed."""
        return [key for key, rec in self.steps.items()
                if isinstance(rec, dict) and rec.get("status") == FAILED]

    def to_dict(self) -> dict[str, Any]:
        """The run.json form (the same keys as every earlier run.json)."""
        data: dict[str, Any] = {
            "metaniche_version": self.metaniche_version, "config": self.config,
            "config_sha256": self.config_sha256, "inputs": self.inputs,
            "clinical": self.clinical,
            "samples": {name: rec.to_dict() for name, rec in self.samples.items()}}
        data.update(self.steps)
        data["stages"] = self.stages
        data["seconds"] = self.seconds
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Read run.json content (missing keys take their defaults)."""
        samples = data.get("samples") or {}
        return cls(
            metaniche_version=str(data.get("metaniche_version") or ""),
            config=dict(data.get("config") or {}),
            config_sha256=str(data.get("config_sha256") or ""),
            inputs=list(data.get("inputs") or []),
            clinical=data.get("clinical"),
            samples={str(name): SampleRecord.from_dict(rec, str(name))
                     for name, rec in samples.items() if isinstance(rec, dict)},
            steps={key: value for key, value in data.items()
                   if key not in _MANIFEST_HEAD + _MANIFEST_TAIL
                   and (value is None or isinstance(value, dict))},
            stages=dict(data.get("stages") or {}),
            seconds=data.get("seconds"))


@dataclass
class DoneMarker:
    """``.samples/<file>/done.json``: what a sample's cached outputs were computed from.

    Attributes
    ----------
    input_sha256, config_sha256
        Checksums of the sample's cells and of the configuration.
    seconds, stages
        Wall time of the analysis (s) and of each of its stages.
    layout
        :data:`LAYOUT_VERSION` of the cache.
    generation
        Name of the current generation directory (``gen-<n>``).
    files
        Path inside the generation (``/``-separated) → ``{"bytes", "sha256"}`` of every file
        it holds (filled in by :meth:`RunDir.write_done`).
    warnings
        The analysis's own warnings (the reasons of its NA values, e.g. no tumour found), so
        that a rerun that skips the sample still records them; the reader's warnings are
        found again when the input is read.
    phenotype
        The sample's immune phenotype call, for the same reason.
    """

    input_sha256: str
    config_sha256: str
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)
    layout: int = LAYOUT_VERSION
    generation: str = ""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    phenotype: str | None = None

    def matches(self, input_sha256: str | None, config_sha256: str) -> bool:
        """True when the cache was made from these cells and this configuration."""
        return (bool(input_sha256) and self.layout == LAYOUT_VERSION
                and self.input_sha256 == input_sha256 and self.config_sha256 == config_sha256)


@dataclass
class CacheCheck:
    """Outcome of :meth:`RunDir.check_sample`.

    Attributes
    ----------
    marker
        The done marker when the cached outputs are current and intact (skip the sample);
        None when the sample must be computed.
    warnings
        What was found wrong and done about it: a damaged generation (then ``marker`` is None
        and the sample is recomputed) or a published file restored from the generation.
    """

    marker: DoneMarker | None
    warnings: list[str] = field(default_factory=list)


class RunDirLocked(MetanicheError):
    """Another live process is running on the same run directory (exit code 2)."""


#: Names of the generation directories.
_GENERATION = re.compile(r"^gen-([0-9]+)$")
#: Files of a generation that every finished analysis has.
_REQUIRED_FILES = ("cells.parquet", "features.json")


def _digest(path: Path) -> dict[str, Any]:
    """``{"bytes", "sha256"}`` of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _matches_digest(path: Path, expected: Any) -> bool:
    """True when ``path`` is a file of the recorded size and SHA-256 (size first: cheap)."""
    if not isinstance(expected, dict) or not path.is_file():
        return False
    try:
        return (path.stat().st_size == expected.get("bytes")
                and _digest(path)["sha256"] == expected.get("sha256"))
    except OSError:
        return False


def _link_or_copy(source: Path, target: Path) -> None:
    """Atomically make ``target`` a hard link to ``source`` (a copy where links fail)."""
    from metaniche._atomic import atomic_path

    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


#: Threads of :func:`in_threads` (reads and rewrites of many small files).
_READ_THREADS = 4
T = TypeVar("T")
R = TypeVar("R")


def concat_table_files(paths: list[Path], labels: list[str], label_column: str,
                       ) -> pd.DataFrame:
    """``pd.concat`` of the files (empty ones dropped unless all are) with column
    ``label_column`` first holding each row's file label, as reading each file with
    :func:`read_frame` (``pd.read_parquet`` for Parquet), inserting the column and
    concatenating would give. The files are Parquet or Arrow IPC (:func:`read_arrow`).

    When every file has the same Arrow schema (pandas metadata included) and no dictionary
    (categorical) column, the files are concatenated as Arrow tables and converted to pandas
    once; otherwise (pandas would unify differing dtypes its own way) each is converted and
    :func:`pandas.concat` joins them. Measured on the NSCLC example's 761 samples (19 tables
    each, 14,459 files): the run's gather took 24.1 s reading each file into pandas, 11.7 s
    this way.
    """
    import pyarrow as pa

    tables = _read_arrow_files(paths, None)
    keep = [k for k, t in enumerate(tables) if t.num_rows > 0] or list(range(len(tables)))[:1]
    tables = [tables[k] for k in keep]
    labels = [labels[k] for k in keep]
    if not tables:
        frame = pd.DataFrame()
    elif _one_plain_schema(tables):
        frame = pa.concat_tables(tables).to_pandas()
    else:
        frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    frame.insert(0, label_column, np.repeat(np.array(labels, dtype=object),
                                            [t.num_rows for t in tables]))
    return frame


def _one_plain_schema(tables: list[Any]) -> bool:
    """Whether the Arrow tables share one schema (pandas metadata included) without
    dictionary (categorical) columns, so that concatenating them as Arrow gives what
    :func:`pandas.concat` of their frames would."""
    import pyarrow as pa

    schema = tables[0].schema
    return (all(t.schema.equals(schema, check_metadata=True) for t in tables)
            and not any(pa.types.is_dictionary(f.type) for f in schema))


def read_arrow(path: str | os.PathLike[str], columns: list[str] | None = None) -> Any:
    """One table file as a ``pyarrow.Table`` (only ``columns`` when given), schema metadata
    included.

    An Arrow IPC file (suffix ``.arrow``, a generation's cached tables) is read whole into
    memory (not memory-mapped: the generation may be removed while the table lives). A
    Parquet file gives ``pyarrow.parquet.read_table(path, columns=columns)``, read through
    :class:`pyarrow.parquet.ParquetFile` on the calling thread, without the dataset layer
    ``read_table`` builds for every file (about half the time per small file: 430 against
    910 µs on the NSCLC example's per-sample tables).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if os.fspath(path).endswith(_CACHE_SUFFIX):
        with pa.OSFile(os.fspath(path), "rb") as handle:
            table = pa.ipc.open_file(handle).read_all()
        return table if columns is None else table.select(columns)
    with pq.ParquetFile(path) as handle:
        return handle.read(columns=columns, use_threads=False, use_pandas_metadata=True)


def read_frame(path: str | os.PathLike[str], columns: list[str] | None = None) -> pd.DataFrame:
    """:func:`read_arrow` then ``to_pandas``: for Parquet, ``pd.read_parquet(path,
    columns=columns)`` without its per-call overhead."""
    return read_arrow(path, columns).to_pandas()


def write_cache_table(path: str | os.PathLike[str], table: pd.DataFrame) -> None:
    """Write one cached table of a generation as an Arrow IPC file, in place.

    The table is converted as :func:`metaniche._atomic.write_parquet` converts it
    (:func:`metaniche._atomic.arrow_table`), so :func:`read_frame` gives back what reading
    that Parquet file would. Tables over :data:`_COMPRESS_BYTES` (64 KiB) in memory are
    LZ4-compressed, smaller ones not. No temporary file and rename: the generation becomes
    current only once complete (:meth:`RunDir.write_done`), and a generation a killed task
    left unfinished is never read and is removed by the next :meth:`RunDir.write_sample`.

    Arrow IPC instead of Parquet, because these files are written once and read once (by
    the gather): on the NSCLC example's per-sample tables (21 per image, mostly a few KB) the
    tables of an image took 9.9 ms to write this way against 24.6 ms as snappy Parquet through
    temporary files (best of 6 interleaved runs over 90 images), and a file reads in about a
    third of the time. The price is larger files: 17 MB for those 90 images against 11 MB as
    Parquet (31 MB uncompressed; compressing from 1 MiB, 64 or 16 KiB cost the same time
    within noise, 16 KiB saved only 3 MB more).
    """
    import pyarrow as pa

    arrow = arrow_table(table)
    options = pa.ipc.IpcWriteOptions(
        compression="lz4" if arrow.nbytes > _COMPRESS_BYTES else None)
    with (pa.OSFile(os.fspath(path), "wb") as handle,
          pa.ipc.new_file(handle, arrow.schema, options=options) as writer):
        writer.write_table(arrow)


def _gather_table(job: tuple[Path, list[Path], list[str]]) -> None:
    """Write ``target`` as :func:`concat_table_files` of ``paths`` labelled by sample."""
    target, paths, labels = job
    write_parquet(target, concat_table_files(paths, labels, "sample"))


def _read_arrow_files(paths: list[Path], columns: list[str] | None) -> list[Any]:
    """:func:`read_arrow` of each path on :data:`_READ_THREADS` threads."""
    return in_threads(lambda path: read_arrow(path, columns), paths)


def in_threads(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[function(item) for item in items]`` on a pool of :data:`_READ_THREADS` threads,
    in the order of ``items`` (for file I/O that releases the GIL; the first exception is
    raised)."""
    from concurrent.futures import ThreadPoolExecutor

    if len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(min(_READ_THREADS, len(items))) as pool:
        return list(pool.map(function, items))


class RunDir:
    """Paths, writers and readers of one run directory (see the module docstring).

    Parameters
    ----------
    root
        The run directory (``--out``). Nothing is created until something is written.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # --- paths ------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        """``run.json``."""
        return self.root / "run.json"

    def cells_path(self, file_name: str) -> Path:
        """``cells/<file>.parquet``."""
        return self.root / "cells" / f"{_checked(file_name, 'sample file name')}.parquet"

    @property
    def tables_dir(self) -> Path:
        """``tables/``."""
        return self.root / "tables"

    def table_path(self, name: str) -> Path:
        """``tables/<name>.parquet``."""
        return self.tables_dir / f"{_checked(name, 'table name')}.parquet"

    @property
    def features_path(self) -> Path:
        """``features.parquet``."""
        return self.root / "features.parquet"

    @property
    def features_csv_path(self) -> Path:
        """``features.csv``."""
        return self.root / "features.csv"

    @property
    def dictionary_path(self) -> Path:
        """``features_dictionary.csv``."""
        return self.root / "features_dictionary.csv"

    @property
    def clinical_path(self) -> Path:
        """``clinical.parquet``."""
        return self.root / "clinical.parquet"

    @property
    def association_path(self) -> Path:
        """``association.parquet``."""
        return self.root / "association.parquet"

    @property
    def prediction_path(self) -> Path:
        """``prediction.json``."""
        return self.root / "prediction.json"

    def cohort_table_path(self, name: str) -> Path:
        """``cohort/<name>.parquet``."""
        return self.root / "cohort" / f"{_checked(name, 'cohort table name')}.parquet"

    @property
    def report_dir(self) -> Path:
        """``report/``."""
        return self.root / "report"

    @property
    def index_path(self) -> Path:
        """``report/index.html``."""
        return self.report_dir / "index.html"

    def page_path(self, file_name: str) -> Path:
        """``report/<file>.html``."""
        return self.report_dir / f"{_checked(file_name, 'sample file name')}.html"

    def map_path(self, file_name: str) -> Path:
        """``report/figures/<file>.map.png`` (the tissue map drawn by the sample task)."""
        return self.report_dir / "figures" / f"{_checked(file_name, 'sample file name')}.map.png"

    def sample_dir(self, file_name: str) -> Path:
        """``.samples/<file>/``: the sample's cache."""
        return self.root / ".samples" / _checked(file_name, "sample file name")

    def done_path(self, file_name: str) -> Path:
        """``.samples/<file>/done.json``."""
        return self.sample_dir(file_name) / "done.json"

    def published_path(self, file_name: str) -> Path:
        """``.samples/<file>/published.json``."""
        return self.sample_dir(file_name) / "published.json"

    def generation_dir(self, file_name: str, generation: str | None = None) -> Path:
        """``.samples/<file>/<generation>/``; the current generation when None.

        Raises
        ------
        LookupError
            When ``generation`` is None and the sample has no finished analysis.
        """
        if generation is None:
            marker = self.read_done(file_name)
            if marker is None:
                raise LookupError(f"sample file {file_name!r} has no finished analysis in "
                                  f"{self.root}")
            generation = marker.generation
        if not _GENERATION.match(generation):
            raise ValueError(f"generation {generation!r} is not a generation directory name.")
        return self.sample_dir(file_name) / generation

    def sample_features_path(self, file_name: str, generation: str | None = None) -> Path:
        """``.samples/<file>/<generation>/features.json`` (current generation when None)."""
        return self.generation_dir(file_name, generation) / "features.json"

    def sample_table_path(self, file_name: str, name: str,
                          generation: str | None = None) -> Path:
        """``.samples/<file>/<generation>/tables/<name>.arrow``, or
        ``.samples/<file>/<generation>/<name>.arrow`` for a :data:`PRIVATE_TABLES` name
        (current generation when None)."""
        stem = f"{_checked(name, 'table name')}{_CACHE_SUFFIX}"
        folder = self.generation_dir(file_name, generation)
        return folder / stem if name in PRIVATE_TABLES else folder / "tables" / stem

    def generation_map_path(self, file_name: str, generation: str) -> Path:
        """Where a generation holds the tissue map (:meth:`map_path` once published)."""
        return (self.generation_dir(file_name, generation) / "map"
                / self.map_path(file_name).name)

    @property
    def lock_path(self) -> Path:
        """``.lock``."""
        return self.root / ".lock"

    # --- the run's lock and housekeeping ----------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``.lock`` (``fcntl.flock``, exclusive) while the block runs.

        The lock file holds the pid of its holder. The operating system releases the lock when
        the holding process dies, however it dies; a lock file left by a dead run is taken
        over with a logged warning.

        Raises
        ------
        RunDirLocked
            When another live process holds the lock (its pid is named).
        MetanicheError
            When the lock file cannot be created (the directory is not writable).
        """
        import fcntl

        path = self.lock_path
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            while True:
                handle = open(path, "a+", encoding="utf-8")  # held until the run ends
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as err:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    handle.close()
                    if err.errno in (errno.EAGAIN, errno.EACCES):
                        raise RunDirLocked(
                            f"{self.root} is in use by another metaniche run (pid {holder}); "
                            f"wait for it to finish or give another --out.") from None
                    raise
                # The file may have been removed by its last holder since we opened it.
                with contextlib.suppress(FileNotFoundError):
                    if os.path.samestat(os.fstat(handle.fileno()), os.stat(path)):
                        break
                handle.close()
        except OSError as err:
            raise MetanicheError(f"{path}: cannot create the run's lock file "
                                 f"({err.strerror or err}); give a run directory you can "
                                 f"write to.") from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous:
            _log.warning("%s: a previous run (pid %s) on this directory did not finish; "
                         "taking over its lock and resuming.", self.root, previous)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            handle.close()

    def clean_stale(self) -> list[Path]:
        """Remove what an interrupted run left behind; return the paths removed.

        The atomic writer's temporary files (``.<name>.<random>[.ext].tmp``) anywhere in the run
        directory, and every sample generation that is not the current one. Call only while
        holding :meth:`lock`.
        """
        removed = [path for path in self.root.rglob(".*.tmp") if path.is_file()]
        for path in removed:
            path.unlink(missing_ok=True)
        cache = self.root / ".samples"
        for folder in sorted(cache.iterdir()) if cache.is_dir() else []:
            if not (folder.is_dir() and _is_safe(folder.name)):
                continue
            marker = self.read_done(folder.name)
            for entry in folder.iterdir():
                if _GENERATION.match(entry.name) and (marker is None
                                                      or entry.name != marker.generation):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
        return removed

    # --- manifest ---------------------------------------------------------------------------
    def write_manifest(self, manifest: Manifest) -> None:
        """Write run.json."""
        write_json(self.manifest_path, manifest.to_dict())

    def read_manifest(self) -> Manifest:
        """Read run.json.

        Raises
        ------
        InputError
            When the directory holds no readable run.json.
        """
        path = self.manifest_path
        if not path.is_file():
            raise InputError(f"{self.root}: no run.json here; give the --out directory of a "
                             "finished 'metaniche run'.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"{path}: unreadable run.json ({err}); rerun 'metaniche run' "
                             "on this directory.") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: run.json must hold a JSON object; rerun 'metaniche "
                             "run' on this directory.")
        return Manifest.from_dict(data)

    # --- one sample's cache and cells -------------------------------------------------------
    def read_done(self, file_name: str) -> DoneMarker | None:
        """The sample's done marker, or None when absent or unreadable."""
        path = self.done_path(file_name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files = data.get("files") or {}
            if not isinstance(files, dict):
                return None
            warnings = data.get("warnings") or []
            phenotype = data.get("phenotype")
            return DoneMarker(str(data["input_sha256"]), str(data["config_sha256"]),
                              float(data["seconds"]), dict(data.get("stages") or {}),
                              int(data.get("layout", 1)), str(data.get("generation") or ""),
                              dict(files), [str(w) for w in warnings],
                              None if phenotype is None else str(phenotype))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _published(self, file_name: str, generation: str) -> dict[Path, str]:
        """Published path → its source inside ``generation`` (the cells file, the map files)."""
        folder = self.generation_dir(file_name, generation)
        pairs = {self.cells_path(file_name): "cells.parquet"}
        figures = self.map_path(file_name).parent
        for source in sorted((folder / "map").glob("*")):
            if source.is_file():
                pairs[figures / source.name] = f"map/{source.name}"
        return pairs

    def check_sample(self, file_name: str, input_sha256: str | None,
                     config_sha256: str) -> CacheCheck:
        """The skip decision for one sample: are its cached outputs current and intact?

        Current: the done marker was made from these cells and this configuration. Intact:
        every file of the current generation has its recorded size and SHA-256, and the
        generation holds the cells file and features. A published file (``cells/<file>.parquet``,
        the tissue map) that is missing or differs from what was published is restored from
        the generation (a warning says so); a damaged generation makes the sample be
        recomputed (a warning names the damaged file).
        """
        marker = self.read_done(file_name)
        if marker is None or not marker.matches(input_sha256, config_sha256):
            return CacheCheck(None)
        cache = self.sample_dir(file_name)
        try:
            folder = self.generation_dir(file_name, marker.generation)
        except ValueError:
            return CacheCheck(None, [f"{self.done_path(file_name)} names no generation; "
                                     "the sample is recomputed."])
        missing = [name for name in _REQUIRED_FILES if name not in marker.files]
        damaged = missing or [name for name, expected in marker.files.items()
                              if not _matches_digest(folder / name, expected)]
        if damaged:
            where = ", ".join(str(cache / marker.generation / name) for name in damaged)
            return CacheCheck(None, [f"cached outputs of this sample are missing or damaged "
                                     f"({where}); the sample is recomputed."])
        restored = self._publish(file_name, marker, check=True)
        return CacheCheck(marker, [f"{path} was missing or did not match the sample's finished "
                                   f"analysis; restored from {cache / marker.generation}."
                                   for path in restored])

    def is_current(self, file_name: str, input_sha256: str | None,
                   config_sha256: str) -> DoneMarker | None:
        """The done marker when :meth:`check_sample` finds the outputs current and intact."""
        return self.check_sample(file_name, input_sha256, config_sha256).marker

    def write_sample(self, file_name: str, cells: pd.DataFrame, tables: dict[str, pd.DataFrame],
                     features: dict[str, Any]) -> str:
        """Write one sample's cells file, cached tables and features into a new generation.

        Nothing becomes visible (the current generation, ``cells/``) until :meth:`write_done`
        switches to it; the tissue map may be added at :meth:`generation_map_path` before.
        Returns the new generation's name.
        """
        folder = self.sample_dir(file_name)
        folder.mkdir(parents=True, exist_ok=True)
        current = self.read_done(file_name)
        keep = current.generation if current is not None else None
        numbers = [int(m.group(1)) for m in map(_GENERATION.match, os.listdir(folder)) if m]
        for entry in folder.iterdir():   # generations a killed task left unfinished
            if _GENERATION.match(entry.name) and entry.name != keep:
                shutil.rmtree(entry, ignore_errors=True)
        number = max(numbers, default=0) + 1
        while True:
            generation = f"gen-{number}"
            try:
                (folder / generation).mkdir()
                break
            except FileExistsError:
                number += 1
        write_parquet(self.generation_dir(file_name, generation) / "cells.parquet", cells)
        (folder / generation / "tables").mkdir()
        for name, table in tables.items():
            write_cache_table(self.sample_table_path(file_name, name, generation), table)
        write_json(self.sample_features_path(file_name, generation), features)
        return generation

    def write_done(self, file_name: str, marker: DoneMarker) -> None:
        """Switch the sample to ``marker.generation``: its outputs are complete.

        Records the checksum of every file of the generation in the marker, replaces
        ``done.json`` atomically (the switch), publishes the cells file and tissue map, then
        removes every other generation and any file of an older cache layout.
        """
        folder = self.generation_dir(file_name, marker.generation)
        if not folder.is_dir():
            raise LookupError(f"generation {marker.generation!r} of sample file {file_name!r} "
                              f"was not written; write it with write_sample() first.")
        marker.files = {path.relative_to(folder).as_posix(): _digest(path)
                        for path in sorted(folder.rglob("*")) if path.is_file()}
        write_json(self.done_path(file_name), asdict(marker))
        self._publish(file_name, marker, check=False)
        keep = {marker.generation, "done.json", "published.json"}
        for entry in self.sample_dir(file_name).iterdir():
            if entry.name not in keep and not entry.name.endswith(".tmp"):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def _read_published(self, file_name: str) -> dict[str, Any]:
        try:
            data = json.loads(self.published_path(file_name).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _publish(self, file_name: str, marker: DoneMarker, check: bool) -> list[Path]:
        """Publish the generation's cells file and map files; return the paths (re)written.

        With ``check``, a published file is left alone when it is the generation's file (a
        hard link) or matches the checksum ``published.json`` recorded for this generation
        (e.g. the cells file after :meth:`set_cell_column`).
        """
        folder = self.generation_dir(file_name, marker.generation)
        recorded = self._read_published(file_name)
        record = (recorded.get("files") or {}) if recorded.get("generation") == (
            marker.generation) else {}
        written: list[Path] = []
        files: dict[str, Any] = {}
        for target, inside in self._published(file_name, marker.generation).items():
            key = target.relative_to(self.root).as_posix()
            source = folder / inside
            if check and target.is_file():
                with contextlib.suppress(OSError):
                    if os.path.samefile(target, source):
                        files[key] = marker.files.get(inside) or _digest(target)
                        continue
                if _matches_digest(target, record.get(key)):
                    files[key] = record[key]
                    continue
            _link_or_copy(source, target)
            written.append(target)
            files[key] = ((os.path.samefile(target, source) and marker.files.get(inside))
                          or _digest(target))
        if written or record != files:
            write_json(self.published_path(file_name),
                       {"generation": marker.generation, "files": files})
        return written if check else []

    def sample_table_names(self, file_name: str) -> list[str]:
        """Names of the gathered (non-private) tables cached for a sample."""
        try:
            folder = self.generation_dir(file_name) / "tables"
        except LookupError:
            return []
        return sorted(path.stem for path in folder.glob(f"*{_CACHE_SUFFIX}"))

    def read_sample_table(self, file_name: str, name: str) -> pd.DataFrame | None:
        """A cached table of one sample (None when absent)."""
        path = self._sample_table_file(file_name, name)
        return None if path is None else read_frame(path)

    def read_sample_features(self, file_name: str) -> dict[str, Any]:
        """The cached features of one sample."""
        return json.loads(self.sample_features_path(file_name).read_text(encoding="utf-8"))

    def read_cells(self, file_name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """``cells/<file>.parquet`` (only ``columns`` when given)."""
        return read_frame(self.cells_path(file_name), columns)

    def set_cell_column(self, file_name: str, column: str, values: np.ndarray) -> bool:
        """Set one column of a sample's cells file (appended when new).

        The file is rewritten only when the column differs from what it holds (so a rerun
        with unchanged results rewrites nothing). Returns True when the file was rewritten; its
        new checksum is then recorded in ``published.json`` (so the skip decision keeps it).
        """
        import pyarrow as pa

        path = self.cells_path(file_name)
        values = np.asarray(values)
        table = read_arrow(path)
        new = pa.array(values)
        if column in table.column_names:
            index = table.column_names.index(column)
            current = table.column(index)
            if (current.type == new.type and current.null_count == 0
                    and np.array_equal(current.to_numpy(), values)):
                return False
            table = table.set_column(index, column, new)
        else:
            table = table.append_column(column, new)
        # Arrow in, Arrow out: the other columns are not converted to pandas and back (a
        # NumPy column outside the pandas metadata reads back as the same dtype); 14 ms per
        # small NSCLC cells file through pandas.
        write_parquet(path, table)
        recorded = self._read_published(file_name)
        if recorded.get("generation"):
            files = dict(recorded.get("files") or {})
            files[path.relative_to(self.root).as_posix()] = _digest(path)
            write_json(self.published_path(file_name), {**recorded, "files": files})
        return True

    # --- run-level outputs ------------------------------------------------------------------
    def gather_tables(self, samples: dict[str, str], workers: int = 1) -> list[str]:
        """Concatenate the samples' cached tables into ``tables/`` (``sample`` column first).

        Parameters
        ----------
        samples
            Sample name → file stem, in output order.
        workers
            Processes gathering whole tables at once (largest first), each reading its
            files on threads; 1 gathers here. Reading many small files is bound by the
            interpreter lock, so threads alone use one core: on the NSCLC example (19
            tables of 761 samples) 7.8–8.1 s in one process, 5.5–6.7 s on 2 (two runs each).

        Returns the names of the tables written. Empty per-sample parts are dropped unless
        every part is empty (then the first keeps the columns).
        """
        # each sample's current generation looked up once (its done.json), not once per table
        folders = {}
        for sample, stem in samples.items():
            try:
                folders[sample] = self.generation_dir(stem) / "tables"
            except LookupError:
                continue
        present = {sample: {path.stem for path in folder.glob(f"*{_CACHE_SUFFIX}")}
                   for sample, folder in folders.items()}
        names = sorted(set().union(*present.values()))
        jobs = []
        for name in names:
            found = [(sample, folders[sample] / f"{name}{_CACHE_SUFFIX}")
                     for sample in folders if name in present[sample]]
            jobs.append((self.table_path(name), [p for _, p in found],
                         [sample for sample, _ in found]))
        if workers > 1 and len(jobs) > 1:
            from concurrent.futures.process import BrokenProcessPool

            from metaniche.executor import process_pool

            jobs.sort(key=lambda job: -sum(p.stat().st_size for p in job[1]))
            try:
                with process_pool(min(workers, len(jobs))) as pool:
                    for _ in pool.map(_gather_table, jobs):
                        pass
            except BrokenProcessPool:
                raise MetanicheError(
                    f"gathering the per-sample tables into {self.tables_dir} failed: a worker "
                    "process died (killed, or out of memory); rerun (the analysed samples are "
                    "reused), with --workers 1 if memory is short.") from None
        else:
            for job in jobs:
                _gather_table(job)
        return names

    def _sample_table_file(self, file_name: str, name: str) -> Path | None:
        """The path of a sample's cached table, None when absent."""
        try:
            path = self.sample_table_path(file_name, name)
        except LookupError:
            return None
        return path if path.is_file() else None

    def write_table(self, name: str, table: pd.DataFrame) -> None:
        """Write ``tables/<name>.parquet``."""
        write_parquet(self.table_path(name), table)

    def read_table(self, name: str, columns: list[str] | None = None) -> pd.DataFrame | None:
        """``tables/<name>.parquet`` or None when absent."""
        path = self.table_path(name)
        return pd.read_parquet(path, columns=columns) if path.is_file() else None

    def has_table(self, name: str) -> bool:
        """True when ``tables/<name>.parquet`` exists."""
        return self.table_path(name).is_file()

    def write_features(self, features: pd.DataFrame, dictionary: pd.DataFrame) -> None:
        """Write features.parquet and features.csv (when there is a row) and the dictionary."""
        if not features.empty:
            write_parquet(self.features_path, features)
            write_text(self.features_csv_path, features.to_csv(index=False))
        write_text(self.dictionary_path, dictionary.to_csv(index=False))

    def read_features(self) -> pd.DataFrame | None:
        """features.parquet or None."""
        path = self.features_path
        return pd.read_parquet(path) if path.is_file() else None

    def write_clinical(self, table: pd.DataFrame) -> None:
        """Write clinical.parquet."""
        write_parquet(self.clinical_path, table)

    def write_association(self, table: pd.DataFrame) -> None:
        """Write association.parquet."""
        write_parquet(self.association_path, table)

    def read_association(self) -> pd.DataFrame | None:
        """association.parquet or None."""
        path = self.association_path
        return pd.read_parquet(path) if path.is_file() else None

    def write_prediction(self, prediction: dict[str, Any]) -> None:
        """Write prediction.json."""
        write_json(self.prediction_path, prediction)

    def read_prediction(self) -> dict[str, Any] | None:
        """prediction.json or None."""
        path = self.prediction_path
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_cohort_table(self, name: str, table: pd.DataFrame) -> None:
        """Write ``cohort/<name>.parquet``."""
        write_parquet(self.cohort_table_path(name), table)

    def read_cohort_table(self, name: str) -> pd.DataFrame | None:
        """``cohort/<name>.parquet`` or None."""
        path = self.cohort_table_path(name)
        return pd.read_parquet(path) if path.is_file() else None

    def remove_cohort_table(self, name: str) -> None:
        """Delete ``cohort/<name>.parquet`` when present (a stale result of an earlier run)."""
        self.cohort_table_path(name).unlink(missing_ok=True)
