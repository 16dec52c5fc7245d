"""Progress events of a run: samples and their stages starting and finishing.

The pipeline reports progress through one callback, ``progress(event)``, never by printing;
the command line turns the events into a rich progress bar, plain log lines or nothing.

Events of a sample's stages are produced where the sample runs: in this process they reach
the callback directly; in local worker processes they travel through a queue (see
:class:`QueueEmitter` and :func:`metaniche.executor.map_tasks`); on a Dask cluster they are
logged as worker events on a topic the client subscribes to (:class:`DaskEmitter`), and any
stage event that has not arrived when the sample's record does is replayed from the record's
per-stage times.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["RUN_STAGES", "DaskEmitter", "ProgressCallback", "ProgressEvent", "QueueEmitter",
           "StageClock", "sample_stage_names"]

#: Run-level stages after the per-sample tasks, in order (each only when it runs): ``gather``
#: (per-sample tables into ``tables/``), the run-level steps that emit features
#: (:data:`metaniche.cohort.steps.RUN_STEPS`), ``features`` (features.parquet written once),
#: the steps that read the features, ``report``.
RUN_STAGES = ("gather", "neighbourhoods", "lesions", "lesion_states", "state_changes", "features",
              "cohort", "report")


@dataclass(frozen=True)
class ProgressEvent:
    """One progress event.

    Attributes
    ----------
    sample
        Sample name; None for the run-level stages (:data:`RUN_STAGES`).
    stage
        Stage name; None for a change of the sample's own status.
    status
        For a stage: ``started``, ``finished`` or ``failed``. For a sample (``stage`` None):
        ``started``, ``ok``, ``skipped`` (unchanged since the last run) or ``failed``.
    seconds
        Wall time of the finished / failed stage or sample (s); None on ``started``.
    message
        The error message of a failed sample.
    total
        Only on the run's first event (``sample`` and ``stage`` None, ``started``): the
        number of samples to analyse.
    """

    sample: str | None
    stage: str | None
    status: str
    seconds: float | None = None
    message: str | None = None
    total: int | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def sample_stage_names() -> list[str]:
    """Stages of every sample in execution order: ``compartments`` (context build), each
    registered stage of :data:`metaniche.stages.SAMPLE_STAGES`, ``writing`` (tables and
    cells) and ``tissue_map`` (figures)."""
    from metaniche.stages import SAMPLE_STAGES

    return ["compartments", *(name for name, _, _ in SAMPLE_STAGES), "writing", "tissue_map"]


class StageClock:
    """Times the named stages of one sample (or of the run) and reports them.

    Parameters
    ----------
    sample
        Sample name carried by the events (None for run-level stages).
    emit
        Receives a :class:`ProgressEvent` as each stage starts and finishes; None: timing only.
        If it raises, it is dropped (progress is never allowed to fail a sample).

    Attributes
    ----------
    seconds
        Stage name → wall time (s, rounded to ms), in execution order; a failed stage is
        included with the time until it failed.
    """

    def __init__(self, sample: str | None, emit: ProgressCallback | None = None) -> None:
        self.sample = sample
        self.emit = emit
        self.seconds: dict[str, float] = {}

    def _send(self, stage: str, status: str, seconds: float | None = None) -> None:
        if self.emit is None:
            return
        try:
            self.emit(ProgressEvent(self.sample, stage, status, seconds))
        except Exception:  # a broken display must never fail an analysis
            self.emit = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as stage ``name`` (events ``started`` then ``finished`` or
        ``failed``; exceptions propagate)."""
        self._send(name, "started")
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.seconds[name] = round(time.perf_counter() - started, 3)
            self._send(name, "failed", self.seconds[name])
            raise
        self.seconds[name] = round(time.perf_counter() - started, 3)
        self._send(name, "finished", self.seconds[name])


class QueueEmitter:
    """A picklable progress callback that puts events on a queue (for worker processes).

    Parameters
    ----------
    queue
        A queue shared with the parent, e.g. ``multiprocessing.SimpleQueue()``, whose
        ``put`` has returned once the event is in the queue (so the parent sees every event
        of a task before the task's result).
    """

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def __call__(self, event: ProgressEvent) -> None:
        """Put ``event`` on the queue; a broken queue never fails the sample."""
        try:
            self.queue.put(event)
        except Exception:  # progress is best effort; the record has the stage times
            pass


class DaskEmitter:
    """A picklable progress callback for tasks on Dask workers: logs each event on a topic.

    The event travels as a plain dict (worker events must be msgpack-serialisable) through
    the scheduler to the client, whose ``subscribe_topic`` handler rebuilds it
    (:func:`event_from_dict`). Outside a Dask worker, and on any failure, events are dropped
    (progress is best effort; the sample's record has the stage times).

    Parameters
    ----------
    topic
        The topic the client subscribed to for this run.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def __call__(self, event: ProgressEvent) -> None:
        """Log ``event`` on the worker running this task."""
        try:
            from distributed import get_worker

            get_worker().log_event(self.topic, dataclasses.asdict(event))
        except Exception:  # not on a worker, or the scheduler is gone
            pass


def event_from_dict(message: Any) -> ProgressEvent | None:
    """The :class:`ProgressEvent` a :class:`DaskEmitter` logged (None for anything else)."""
    if isinstance(message, tuple) and len(message) == 2:  # (timestamp, message)
        message = message[1]
    if not isinstance(message, dict):
        return None
    names = {f.name for f in dataclasses.fields(ProgressEvent)}
    try:   # the scheduler adds keys of its own (e.g. ``worker``)
        return ProgressEvent(**{k: v for k, v in message.items() if k in names})
    except TypeError:
        return None
