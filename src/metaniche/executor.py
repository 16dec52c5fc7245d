"""Where per-sample tasks run: in this process, in local processes, or on a Dask cluster.

Every executor maps a task function over items and yields results as they finish; the task
itself never raises for a bad sample (it returns a failure record), so an exception reaching
the executor means infrastructure trouble (a lost worker). Dask reschedules tasks of a lost
worker on another one (up to ``allowed-failures`` times, 3 by default); a sample that fails
deterministically is recorded once by the task and never retried. Results are identical
whichever executor runs them, because every task is a pure function of its inputs and seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

from metaniche.errors import MetanicheError

__all__ = ["map_tasks"]

Item = TypeVar("Item")


def map_tasks(task: Callable[[Item], dict[str, Any]], items: list[Item], workers: int = 1,
              scheduler: str | None = None,
              on_start: Callable[[Item], None] | None = None) -> Iterator[dict[str, Any]]:
    """Yield ``task(item)`` for every item, in completion order.

    Parameters
    ----------
    task
        A picklable top-level function returning a record; it must not raise for bad input.
    items
        Task inputs.
    workers
        Local processes when no scheduler is given; 1 runs in this process.
    scheduler
        Address of a running Dask distributed scheduler (``tcp://host:port``).
    on_start
        Called with an item when its task is handed out (in-process runs call it just before
        running the task).
    """
    if scheduler:
        yield from _dask_map(task, items, scheduler, on_start)
    elif workers <= 1 or len(items) <= 1:
        for item in items:
            if on_start:
                on_start(item)
            yield task(item)
    else:
        yield from _process_map(task, items, workers, on_start)


def _process_map(task, items: list, workers: int, on_start) -> Iterator[dict[str, Any]]:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = []
        for item in items:
            if on_start:
                on_start(item)
            futures.append(pool.submit(task, item))
        for future in as_completed(futures):
            yield future.result()


def _dask_map(task, items: list, scheduler: str, on_start) -> Iterator[dict[str, Any]]:
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
            futures.append(client.submit(task, item, pure=False))
        for future in dask_completed(futures, loop=client.loop):
            yield future.result()


