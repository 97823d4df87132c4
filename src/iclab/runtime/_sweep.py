"""Sweeps: a grid over config fields, run point by point through an `Executor`.

Each grid point is an ordinary run keyed by its config hash, so a sweep is resumable for
free: rerunning it skips every point whose run is finished. Backends plug in behind the
small `Executor` protocol (`executors`): a local process pool, in-process serial, or Ray
(`_ray_backend`) for a cluster. Every backend writes into the same run store, so a sweep can start on one
and finish on another.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._config import parse_value
from ._errors import IclabError, TaskLost
from ._executors import Executor, LocalExecutor, SerialExecutor, make_executor
from ._experiment import get_experiment
from ._store import RunResult, ensure_writable, execute

__all__ = ["Executor", "LocalExecutor", "RunSpec", "SerialExecutor", "expand_grid", "make_executor", "parse_grid",
           "run_spec", "sweep"]


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


def run_spec(spec: RunSpec) -> RunResult:
    """Run one grid point. Top-level so process pools (and later cluster backends) can call it."""
    exp = get_experiment(spec.experiment)
    cfg = exp.make_config(spec.preset, spec.overrides)
    return execute(exp, cfg, Path(spec.runs_dir), preset=spec.preset, force=spec.force, quiet=True)


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
