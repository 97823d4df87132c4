"""Executors: run a function over items, yielding results as they finish. The small `Executor`
protocol that sweeps and the grammar line's training grids run through: a local process pool (the
default), in-process serial, or Ray (`_ray_backend`, imported only when asked for).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, Protocol

from ._errors import IclabError, TaskLost
from ._threads import init_worker

__all__ = ["BACKENDS", "Executor", "LocalExecutor", "SerialExecutor", "TaskLost", "make_executor"]


class Executor(Protocol):
    """Runs `fn` over `items`, yielding `(item, result)` pairs as they finish (any order)."""

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[Any, Any]]: ...


class SerialExecutor:
    """In-process, one at a time: for debugging and for single-point sweeps."""

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        for item in items:
            yield item, fn(item)


@dataclass
class LocalExecutor:
    """A process pool over this machine's cores (the default backend).

    Workers are spawned (not forked) so torch's thread pools start clean, and each gets
    cores // workers threads so the pool never oversubscribes the machine.
    """

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                   initializer=init_worker, initargs=(threads,))
        try:
            pending: dict[Future, Any] = {pool.submit(fn, item): item for item in items}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    item = pending.pop(fut)
                    yield item, fut.result()
        except (KeyboardInterrupt, SystemExit):
            # Ctrl-C or `kill` (the CLI turns SIGTERM into KeyboardInterrupt): end the workers now rather
            # than wait for their runs; the store keeps only finished runs, so a rerun resumes.
            for proc in list((pool._processes or {}).values()):  # no public API before Python 3.14
                proc.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _ray_executor(workers: int | None, address: str | None, max_retries: int) -> Executor:
    from ._ray_backend import RayExecutor

    return RayExecutor(address=address, num_cpus=workers, max_retries=max_retries)


BACKENDS: dict[str, Callable[[int | None, str | None, int], Executor]] = {
    "local": lambda workers, address, retries: LocalExecutor(workers or (os.cpu_count() or 1)),
    "serial": lambda workers, address, retries: SerialExecutor(),
    "ray": _ray_executor,
}


def make_executor(backend: str = "local", workers: int | None = None, *, address: str | None = None,
                  max_retries: int = 2) -> Executor:
    """The executor behind `iclab sweep --backend ...`; `address` and `max_retries` are Ray's."""
    if backend not in BACKENDS:
        raise IclabError(f"unknown sweep backend {backend!r}; choose one of {sorted(BACKENDS)}")
    if workers is not None and workers < 1:
        raise IclabError(f"--workers must be at least 1 (got {workers})")
    if address is not None and backend != "ray":
        raise IclabError(f"--address is for the ray backend; add --backend ray (got --backend {backend})")
    if max_retries < 0:
        raise IclabError(f"--max-retries must be 0 or more (got {max_retries})")
    return BACKENDS[backend](workers, address, max_retries)
