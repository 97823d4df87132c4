"""Sweeps: a grid over config fields, run point by point through an `Executor`.

Each grid point is an ordinary run keyed by its config hash, so a sweep is resumable for
free: rerunning it skips every point whose run is finished. Backends plug in behind the
small `Executor` protocol (local process pool today; a distributed one later).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from .config import parse_value
from .errors import IclabError
from .experiment import get_experiment
from .store import RunResult, ensure_writable, execute


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to run one grid point (plain data, so it crosses process boundaries)."""

    experiment: str
    overrides: dict[str, Any]
    runs_dir: str
    preset: str | None = None
    force: bool = False


def run_spec(spec: RunSpec) -> RunResult:
    """Run one grid point. Top-level so process pools (and later cluster backends) can call it."""
    exp = get_experiment(spec.experiment)
    cfg = exp.make_config(spec.preset, spec.overrides)
    return execute(exp, cfg, Path(spec.runs_dir), preset=spec.preset, force=spec.force, quiet=True)


class Executor(Protocol):
    """Runs `fn` over `items`, yielding `(item, result)` pairs as they finish (any order)."""

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[Any, Any]]: ...


class SerialExecutor:
    """In-process, one at a time: for debugging and for single-point sweeps."""

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        for item in items:
            yield item, fn(item)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ["ICLAB_NO_PROGRESS"] = "1"
    os.environ["ICLAB_WORKER_THREADS"] = str(threads)  # compute-bound runs (training) use all of their share


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
                                   initializer=_init_worker, initargs=(threads,))
        try:
            pending: dict[Future, Any] = {pool.submit(fn, item): item for item in items}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    item = pending.pop(fut)
                    yield item, fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


BACKENDS: dict[str, Callable[[int | None], Executor]] = {
    "local": lambda workers: LocalExecutor(workers or (os.cpu_count() or 1)),
    "serial": lambda workers: SerialExecutor(),
}


def make_executor(backend: str, workers: int | None = None) -> Executor:
    if backend not in BACKENDS:
        raise IclabError(f"unknown sweep backend {backend!r}; choose one of {sorted(BACKENDS)}")
    if workers is not None and workers < 1:
        raise IclabError(f"--workers must be at least 1 (got {workers})")
    return BACKENDS[backend](workers)


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`["P=100,1000", "seed=[0,1]"]` -> `{"P": [100, 1000], "seed": [0, 1]}`."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise IclabError(f"bad grid axis {item!r}: write it as FIELD=V1,V2,... e.g. --grid P=100,1000")
        text = text.strip()
        values = parse_value(text) if text.startswith("[") else [parse_value(v) for v in text.split(",")]
        if not isinstance(values, list) or not values:
            raise IclabError(f"bad grid axis {item!r}: give at least one value")
        grid[key.strip()] = values
    return grid


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def sweep(
    experiment: str,
    grid: dict[str, list[Any]],
    runs_dir: Path,
    *,
    preset: str | None = None,
    base: dict[str, Any] | None = None,
    executor: Executor | None = None,
    force: bool = False,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Run every grid point (validated up front, so a bad value fails before any work starts)."""
    exp = get_experiment(experiment)
    ensure_writable(runs_dir)
    specs = []
    for point in expand_grid(grid):
        overrides = {**(base or {}), **point}
        exp.make_config(preset, overrides)  # validate now: one-line error naming the field
        specs.append(RunSpec(experiment, overrides, str(runs_dir), preset, force))
    executor = executor or LocalExecutor()
    results = []
    for _, res in executor.map_unordered(run_spec, specs):
        results.append(res)
        if on_result:
            on_result(res)
    return results
