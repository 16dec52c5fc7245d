"""Where per-sample tasks run: in this process, in local processes, or on a Dask cluster.

Every executor maps a task function over items and yields results as they finish; the task
itself never raises for a bad sample (it returns a failure record), so an exception reaching
the executor means infrastructure trouble (a lost worker). A task whose local worker process
dies is retried in a fresh pool (:data:`MAX_ATTEMPTS` attempts); Dask reschedules tasks of a
lost worker on another one (up to ``allowed-failures`` times, 3 by default); a task still lost
after that, or cut off by a lost scheduler, becomes the caller's failure record
(``on_lost``), so the run goes on and records it. A sample that fails deterministically is
recorded once by the task and never retried. Results are identical
whichever executor runs them, because every task is a pure function of its inputs and seeds.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from metaniche.errors import MetanicheError

__all__ = ["MAX_ATTEMPTS", "WorkerLost", "map_tasks", "process_pool", "start_workers"]

Item = TypeVar("Item")
Result = TypeVar("Result")


#: Attempts of a task whose worker process dies (the last one alone in a fresh pool).
MAX_ATTEMPTS = 2


class WorkerLost(Exception):
    """A task's worker process or the scheduler was lost; ``str(err)`` says how."""


def map_tasks(task: Callable[[Item, Callable[[Any], None] | None], Result],
              items: list[Item], workers: int = 1, scheduler: str | None = None,
              on_start: Callable[[Item], None] | None = None,
              on_event: Callable[[Any], None] | None = None,
              on_lost: Callable[[Item, str], Result] | None = None) -> Iterator[Result]:
    """Yield ``task(item, emit)`` for every item, in completion order.

    Parameters
    ----------
    task
        A picklable top-level function ``task(item, emit)`` returning a record; it must not
        raise for bad input. ``emit`` (or None) passes progress events back to ``on_event``.
    items
        Task inputs.
    workers
        Local processes when no scheduler is given; 1 runs in this process.
    scheduler
        Address of a running Dask distributed scheduler (``tcp://host:port``).
    on_start
        Called with an item when its task is handed out (in-process runs call it just before
        running the task; a retried task is handed out again).
    on_event
        Receives the events a task emits, always in this process and thread: in-process
        tasks call it directly; local worker processes put events on a pipe
        (:class:`multiprocessing.SimpleQueue`, see :func:`_process_map`) that is drained here
        while waiting, and completely before a task's result is yielded. Dask tasks log
        events on a topic this client subscribes to
        (:class:`metaniche.progress.DaskEmitter`), drained here while waiting;
        they may arrive after the task's result, so the record should carry what the caller
        needs and the caller should ignore events of a task already yielded.
    on_lost
        ``on_lost(item, reason)`` builds the result of a task that could not finish because
        its worker was lost, so the caller can record it and go on; without it, the
        executor raises :class:`WorkerLost`.

    Notes
    -----
    Worker loss. A local worker process that dies (killed, out of memory) breaks the whole
    process pool: every task still queued is resubmitted to a fresh pool, and every task that
    had been handed out and not finished is retried once more, alone in a one-process pool,
    after the others (so a task that kills its worker cannot take an innocent one with it); if
    it dies again it is lost (:data:`MAX_ATTEMPTS` attempts in all). On a Dask cluster the
    scheduler reschedules the tasks of a lost worker on another one (up to its
    ``allowed-failures``, 3 by default) and then gives up on the task (``KilledWorker``): that
    task is lost. Dask charges a failure to every task on the dying worker, including one
    queued there beside the task that killed it (a worker holds up to
    ``ceil(worker-saturation * nthreads)`` tasks; ``worker-saturation`` is 1.1 by default, so
    a one-thread worker holds two); set ``distributed.scheduler.worker-saturation: 1.0`` to
    keep one sample per worker thread so that a crashing sample fails alone. A lost sample is
    recorded with its reason and a rerun resumes it. When the connection to the scheduler is
    lost, every unfinished task is lost. Results already yielded stay valid in every case.
    """
    if scheduler:
        yield from _dask_map(task, items, scheduler, on_start, on_event, on_lost)
    elif workers <= 1 or len(items) <= 1:
        for item in items:
            if on_start:
                on_start(item)
            yield task(item, on_event)
    else:
        yield from _process_map(task, items, workers, on_start, on_event, on_lost)


def _lost(item: Any, reason: str, on_lost: Callable[[Any, str], Any] | None) -> Any:
    if on_lost is None:
        raise WorkerLost(reason)
    return on_lost(item, reason)


def _context() -> multiprocessing.context.BaseContext:
    """Start method of the worker processes: forkserver (spawn where unavailable), never a
    plain fork, which copies the parent's thread pools (Numba, BLAS) and can kill workers of
    a process that already ran an analysis."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def start_workers(modules: list[str]) -> None:
    """Start the process that local worker processes are forked from, importing ``modules``.

    Call it before slow work of this process (reading the inputs): the forkserver imports
    ``modules`` (NumPy, pandas, Numba, the analyses) on another core meanwhile, and every
    worker of every later pool (:func:`process_pool`) is a fork of it that starts with them
    imported instead of importing them itself: a 2-process pool's first task waited 4.7 s
    for the imports, 0.1 s with them preloaded (machine busy with tests); the NSCLC example
    reads its 880k-row table meanwhile. Without forkserver (spawn), or once the forkserver
    runs (``multiprocessing.forkserver`` keeps its pid in a private attribute, read
    defensively), it does nothing. The modules must only import: a module that started
    threads at import would make the forks unsafe. Results do not change.
    """
    context = _context()
    if context.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    if getattr(forkserver._forkserver, "_forkserver_pid", None) is not None:
        return
    context.set_forkserver_preload(modules)
    forkserver.ensure_running()


def process_pool(workers: int, queues: tuple[Any, Any] | None = None) -> ProcessPoolExecutor:
    """A local pool of ``workers`` processes for any parallel map of this package.

    Started by forkserver (:func:`_context`), never a plain fork: a process that already
    ran a Numba parallel kernel holds an OpenMP thread pool, and a forked child of it is
    killed ("fork() called from a process already using GNU OpenMP"). Each worker gets its
    share of the cores (:func:`_share_cores`) and, when given, the ``(events, starts)``
    queues of :func:`_process_map` (handed over at process start, the only way a
    ``multiprocessing`` queue can reach a pool's worker).
    """
    return ProcessPoolExecutor(max_workers=workers, mp_context=_context(),
                               initializer=_init_worker, initargs=(workers, queues))


#: The ``(events, starts)`` queues of this worker process's pool (set by _init_worker).
_QUEUES: tuple[Any, Any] | None = None


def _init_worker(workers: int, queues: tuple[Any, Any] | None) -> None:
    """Worker-process initialiser: :func:`_share_cores`, and keep the pool's queues."""
    global _QUEUES
    _QUEUES = queues
    _share_cores(workers)


def _process_map(task, items: list, workers: int, on_start, on_event,
                 on_lost) -> Iterator[Any]:
    """Run ``items`` on local processes; retry the tasks of a broken pool (see map_tasks).

    Workers pass events and task starts back on two pipes (``multiprocessing.SimpleQueue``),
    new for every pool. A put writes the whole message before it returns (so a task's events
    are readable before its result) in one ``write`` of at most ``PIPE_BUF`` bytes for these
    small messages (so a worker killed at any moment leaves no partial message). A
    ``multiprocessing.Manager`` queue, used before, made every put and every poll a round
    trip to a server process: on the NSCLC example (761 images, about 18,000 events) the
    run took 75.4 s with the events against 73.4 s with none.
    """
    suspects: list[Any] = []
    todo = list(items)
    while todo:
        # A pool per round: a dead worker breaks its pool for good.
        todo, handed_out = yield from _pool_round(task, todo, workers, on_start, on_event)
        suspects.extend(handed_out)
    for item in suspects:
        _, again = yield from _pool_round(task, [item], 1, on_start, on_event)
        if again:
            yield _lost(item, f"its worker process died twice while running it (killed, "
                              f"or out of memory); {MAX_ATTEMPTS} attempts made.", on_lost)


def _share_cores(workers: int) -> None:
    """Worker-process initialiser: give each of ``workers`` processes its share of the cores
    for Numba's parallel kernels and BLAS/OpenMP (``cpu_count // workers``, at least 1).

    Without it every worker's kernels start one thread per core, so ``workers`` processes
    oversubscribe the machine and many small samples pay thread hand-offs more than they
    gain. Results do not change: every parallel kernel gives the same output for any
    number of threads (the worker-invariance tests).
    """
    import os

    import numba
    from threadpoolctl import threadpool_limits

    threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    threadpool_limits(threads)


def _tracked(task, index: int, item, with_events: bool) -> Any:
    """Run in a worker: say that task ``index`` started (before it can die), then run it
    with an emitter on the pool's events queue (none when ``with_events`` is false)."""
    from metaniche.progress import QueueEmitter

    assert _QUEUES is not None, "a tracked task runs in a pool made by _pool_round"
    events, starts = _QUEUES
    starts.put(index)
    return task(item, QueueEmitter(events) if with_events else None)


def _pool_round(task, items: list, workers: int, on_start, on_event):
    """Run ``items`` in one fresh pool, yielding results as they finish.

    Returns ``(not_started, started)`` when a worker died and broke the pool: the items whose
    task never started, and those whose task started without finishing (one of them killed
    the worker); two empty lists otherwise. Both queues are drained at every wake-up, so a
    full pipe never holds a worker up for long.
    """
    context = _context()
    events, starts = context.SimpleQueue(), context.SimpleQueue()
    started: set[int] = set()
    finished: set[int] = set()
    with process_pool(workers, (events, starts)) as pool:
        pending = {}
        broken = False
        for index, item in enumerate(items):
            try:
                future = pool.submit(_tracked, task, index, item, on_event is not None)
            except BrokenProcessPool:   # a worker died already: the rest wait for a new pool
                broken = True
                break
            pending[future] = index
            if on_start:
                on_start(item)
        while pending:
            # Once the pool is broken, every pending future resolves at once: collect them all.
            done, _ = (wait(pending) if broken else
                       wait(pending, timeout=0.2, return_when=FIRST_COMPLETED))
            _drain(starts, started.add)
            if on_event is not None:
                # A task's put() returned before it did, so its events are all queued by now.
                _drain(events, on_event)
            for future in done:
                index = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                finished.add(index)
                yield result
    _drain(starts, started.add)
    for queue in (events, starts):
        queue.close()
    if not broken:
        return [], []
    return ([item for i, item in enumerate(items) if i not in started],
            [item for i, item in enumerate(items) if i in started and i not in finished])


def _drain(queue: Any, on_event: Callable[[Any], None]) -> None:
    """Pass every message already in ``queue`` (a ``SimpleQueue``) to ``on_event``."""
    while not queue.empty():
        on_event(queue.get())


#: Loggers of distributed that print tracebacks of a lost connection the run reports itself.
_DASK_LOGGERS = ("distributed", "distributed.client", "distributed.comm", "distributed.core",
                 "distributed.utils", "distributed.batched")


@contextlib.contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """Silence distributed's own error logs while the client runs (the run records and prints
    a lost worker or scheduler itself, in one line per sample, without a traceback)."""
    loggers = [logging.getLogger(name) for name in _DASK_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _dask_map(task, items: list, scheduler: str, on_start, on_event,
              on_lost) -> Iterator[Any]:
    import queue
    import uuid

    from distributed import Client, KilledWorker
    from distributed import as_completed as dask_completed

    from metaniche.progress import DaskEmitter, event_from_dict

    try:
        client = Client(scheduler, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise MetanicheError(f"cannot reach the Dask scheduler at {scheduler} ({err}); start "
                             "it with 'dask scheduler' or check the address.") from None
    unfinished: dict[Any, Any] = {}
    lost: str | None = None
    # Live stage events: workers log them on a topic of this run; the subscription handler
    # runs on the client's event-loop thread, so it only queues them for this thread.
    events: queue.SimpleQueue = queue.SimpleQueue()
    topic = f"metaniche-progress-{uuid.uuid4().hex}"
    emit = DaskEmitter(topic) if on_event is not None else None

    def drain() -> None:
        if on_event is None:
            return
        while True:
            try:
                event = event_from_dict(events.get_nowait())
            except queue.Empty:
                return
            if event is not None:
                on_event(event)

    with _quiet_dask_logs(), client:
        _check_worker_versions(client, scheduler)
        if emit is not None:
            client.subscribe_topic(topic, events.put)
        # pure=False: identical inputs must still run (a rerun after --force, for example).
        for item in items:
            if on_start:
                on_start(item)
            unfinished[client.submit(task, item, emit, pure=False)] = item
        try:
            finished = dask_completed(list(unfinished), loop=client.loop)
            while not finished.is_empty():
                if not finished.has_ready():
                    drain()
                    time.sleep(0.1)
                    continue
                drain()
                for future in finished.next_batch(block=False):
                    item = unfinished.pop(future)
                    try:
                        result = future.result()
                    except KilledWorker as err:
                        result = _lost(item, f"the Dask workers running it died repeatedly "
                                             f"({_first_line(err)}); check their memory and "
                                             "logs.", on_lost)
                    except (OSError, TimeoutError, CancelledError) as err:
                        unfinished[future] = item
                        lost = f"{type(err).__name__}: {_first_line(err)}"
                        break
                    yield result
                if lost is not None:
                    break
        except (OSError, TimeoutError, CancelledError) as err:
            lost = f"{type(err).__name__}: {_first_line(err)}"
        drain()
    if lost is not None:
        # The scheduler (or the connection to it) is gone: what finished stays recorded.
        reason = (f"the connection to the Dask scheduler at {scheduler} was lost before it "
                  f"finished ({lost}); rerun to resume.")
        for item in list(unfinished.values()):
            yield _lost(item, reason, on_lost)


def _installed_version() -> str:
    """The metaniche version importable in this process (run on each Dask worker)."""
    from metaniche import __version__

    return __version__


def _check_worker_versions(client: Any, scheduler: str) -> None:
    """Refuse a cluster whose workers run another metaniche version than this client.

    Tables and features from mixed versions would be silently inconsistent, so the run stops
    before any sample is submitted, naming the first mismatching workers. Workers that join
    after this check are not checked. A worker without metaniche installed fails the same way.
    """
    from metaniche import __version__

    try:
        found = client.run(_installed_version)
    except Exception as err:  # a worker without metaniche raises ModuleNotFoundError here
        raise MetanicheError(f"the Dask workers at {scheduler} cannot import metaniche "
                             f"({_first_line(err)}); install metaniche {__version__} in the "
                             "workers' environment.") from None
    other = {worker: version for worker, version in found.items() if version != __version__}
    if other:
        shown = ", ".join(f"{w} has {v}" for w, v in list(other.items())[:3])
        raise MetanicheError(f"the Dask workers at {scheduler} run another metaniche version "
                             f"than this client ({__version__}): {shown}; install "
                             f"metaniche {__version__} on every worker.")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
