"""Ordered, bounded parallel map: results come back in input order, memory stays flat.

``multiprocessing.Pool.imap`` would read its whole input ahead of the workers (a dump would end up
in memory), so batches are submitted through a window of at most ``max_in_flight`` futures.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def resolve_workers(requested: int) -> int:
    """0 means one per usable core (honours CPU affinity, e.g. a SLURM allocation)."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _apply_batch(fn: Callable[[T], R], batch: list[T]) -> list[R]:
    return [fn(item) for item in batch]


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    batch_size: int = 64,
    max_in_flight: int | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` over ``workers`` processes, in order; ``workers == 1`` stays in-process.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
    """
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    window = max_in_flight or workers * 3
    # fork is cheap but unsafe once the parent has threads (ZenML, MLflow start some): then forkserver.
    method = "fork" if threading.active_count() == 1 else "forkserver"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[Future[list[R]]] = deque()
        for batch in _batches(items, batch_size):
            pending.append(pool.submit(_apply_batch, fn, batch))
            if len(pending) >= window:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
