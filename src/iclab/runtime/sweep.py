"""Sweeps: a grid over config fields, run point by point through an `Executor`.

Each grid point is an ordinary run keyed by its config hash, so a sweep is resumable for
free: rerunning it skips every point whose run is finished. Backends plug in behind the
small `Executor` protocol: a local process pool, in-process serial, or Ray (`ray_backend`)
for a cluster. Every backend writes into the same run store, so a sweep can start on one
and finish on another.
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
    cpus: float = 1.0  # resources the run asks of a cluster scheduler (from its config)
    gpus: float = 0.0


@dataclass(frozen=True)
class TaskLost:
    """What an executor yields for an item whose worker died and whose retries ran out."""

    error: str


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


def _ray_executor(workers: int | None, address: str | None, max_retries: int) -> Executor:
    from .ray_backend import RayExecutor

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
    specs, hashes = [], []
    for point in expand_grid(grid):
        overrides = {**(base or {}), **point}
        cfg = exp.make_config(preset, overrides)  # validate now: one-line error naming the field
        # absolute: a cluster's workers do not share our working directory
        specs.append(RunSpec(experiment, overrides, str(Path(runs_dir).resolve()), preset, force, cfg.cpus, cfg.gpus))
        hashes.append(cfg.hash())
    executor = executor or LocalExecutor()
    results = []
    for spec, res in executor.map_unordered(run_spec, specs):
        if isinstance(res, TaskLost):  # the worker died (and its retries): the run is lost, not the sweep
            h = hashes[specs.index(spec)]
            res = RunResult(experiment, h, str(Path(runs_dir) / experiment / h), "failed", error=res.error)
        results.append(res)
        if on_result:
            on_result(res)
    return results
