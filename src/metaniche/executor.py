"""Where per-sample tasks run: in this process, in local processes, or on a Dask cluster.

Every executor maps a task function over items and yields results as they finish; the task
itself never raises for a bad sample (it returns a failure record), so an exception reaching
the executor means infrastructure trouble (a lost worker). Dask reschedules tasks of a lost
worker on another one (up to ``allowed-failures`` times, 3 by default); a sample that fails
deterministically is recorded once by the task and never retried. Results are identical
whichever executor runs them, because every task is a pure function of its inputs and seeds.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from queue import Empty
from typing import Any, TypeVar

from metaniche.errors import MetanicheError

__all__ = ["map_tasks"]

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_tasks(task: Callable[[Item, Callable[[Any], None] | None], Result],
              items: list[Item], workers: int = 1, scheduler: str | None = None,
              on_start: Callable[[Item], None] | None = None,
              on_event: Callable[[Any], None] | None = None) -> Iterator[Result]:
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
        running the task).
    on_event
        Receives the events a task emits, always in this process and thread: in-process
        tasks call it directly; local worker processes put events on a
        ``multiprocessing.Manager`` queue that is drained here while waiting, and completely
        before a task's result is yielded. Dask tasks get ``emit=None`` (no live events; the
        record should carry what the caller needs).
    """
    if scheduler:
        yield from _dask_map(task, items, scheduler, on_start)
    elif workers <= 1 or len(items) <= 1:
        for item in items:
            if on_start:
                on_start(item)
            yield task(item, on_event)
    else:
        yield from _process_map(task, items, workers, on_start, on_event)


def _context() -> multiprocessing.context.BaseContext:
    """Start method of the worker processes: forkserver (spawn where unavailable), never a
    plain fork, which copies the parent's thread pools (Numba, BLAS) and can kill workers of
    a process that already ran an analysis."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _process_map(task, items: list, workers: int, on_start,
                 on_event) -> Iterator[Any]:
    context = _context()
    if on_event is None:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = []
            for item in items:
                if on_start:
                    on_start(item)
                futures.append(pool.submit(task, item, None))
            for future in as_completed(futures):
                yield future.result()
        return
    from metaniche.progress import QueueEmitter

    with context.Manager() as manager, ProcessPoolExecutor(max_workers=workers,
                                                          mp_context=context) as pool:
        queue = manager.Queue()
        emit = QueueEmitter(queue)
        pending = set()
        for item in items:
            if on_start:
                on_start(item)
            pending.add(pool.submit(task, item, emit))
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            # A task's put() returned before it did, so its events are all queued by now.
            _drain(queue, on_event)
            for future in done:
                yield future.result()


def _drain(queue, on_event: Callable[[Any], None]) -> None:
    while True:
        try:
            event = queue.get_nowait()
        except Empty:
            return
        on_event(event)


def _dask_map(task, items: list, scheduler: str, on_start) -> Iterator[Any]:
    from distributed import Client
    from distributed import as_completed as dask_completed

    try:
        client = Client(scheduler, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise MetanicheError(f"cannot reach the Dask scheduler at {scheduler} ({err}); start "
                             "it with 'dask scheduler' or check the address.") from None
    with client:
        # pure=False: identical inputs must still run (a rerun after --force, for example).
        futures = []
        for item in items:
            if on_start:
                on_start(item)
            futures.append(client.submit(task, item, None, pure=False))
        for future in dask_completed(futures, loop=client.loop):
            yield future.result()


