"""What every task-vector experiment shares: the config fields, model loading, per-task evaluation."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from iclab.runtime import ExperimentConfig, IclabError, RunContext
from iclab.runtime.seeding import torch_threads

from ..evaluate import TaskResult, evaluate_task
from ..method import TaskVectorRunner
from ..prompts import TEMPLATES, get_template, prepare_task
from ..tasks import Task, resolve_tasks


class TaskVectorConfig(ExperimentConfig):
    model: str = Field("smollm2-135m", description="Bundled model name (smollm2-135m, gemma3-270m) or a local HF causal-LM directory.")
    tasks: str = Field("all", description="'all', a category, or comma-separated task names / .json/.csv task files.")
    template: str = Field("paper", description="Prompt template: paper (example:{x}->{y}), arrow ({x} -> {y}) or qa (Q: {x}\\nA: {y}).")
    k: int = Field(5, ge=1, description="Demonstrations per prompt (the paper: 5).")
    n_dev: int = Field(50, ge=1, description="Dev episodes per task, for choosing the layer.")
    n_test: int = Field(50, ge=1, description="Test episodes per task (ICL and task vector).")
    n_baseline: int = Field(100, ge=1, description="Zero-shot episodes per task for the baseline.")
    n_dummy: int = Field(2, ge=1, description="Dummy queries averaged into θ(S) (the paper's code: 2).")
    mode: Literal["replace", "add"] = Field("replace", description="Patch by replacing the state (the paper) or adding θ.")
    batch_size: int = Field(32, ge=1, description="Prompts per forward pass.")

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        """Fail before anything runs: a bundled model must be installed, a path must hold a model."""
        import importlib.util
        from pathlib import Path

        from iclab.models import BUNDLED_MODELS

        if v in BUNDLED_MODELS:
            if importlib.util.find_spec(BUNDLED_MODELS[v].package) is None:
                raise ValueError(f"model {v!r} is not installed; install it with: {BUNDLED_MODELS[v].install}")
        elif not (Path(v).expanduser() / "config.json").is_file():
            raise ValueError(f"not a bundled model ({', '.join(BUNDLED_MODELS)}) nor a directory with a config.json")
        return v

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: str) -> str:
        try:
            resolve_tasks(v)
        except IclabError as err:
            raise ValueError(str(err)) from None
        return v

    @field_validator("template")
    @classmethod
    def _known_template(cls, v: str) -> str:
        if v not in TEMPLATES:
            raise ValueError(f"unknown template; choose one of {', '.join(TEMPLATES)}")
        return v


def lm_threads() -> int:
    """Torch threads for LM forward passes: ICLAB_LM_THREADS, else all cores. Unlike the tiny-op
    spin-glass loops, these are large matmuls that do use a second core."""
    value = os.environ.get("ICLAB_LM_THREADS", str(os.cpu_count() or 1))
    if not value.isdigit() or int(value) < 1:
        raise IclabError(f"ICLAB_LM_THREADS must be a positive integer (got {value!r})")
    return int(value)


def load_runner(cfg: TaskVectorConfig) -> TaskVectorRunner:
    from iclab.models import load_model

    return TaskVectorRunner(load_model(cfg.model), batch_size=cfg.batch_size)


def run_tasks(cfg: TaskVectorConfig, ctx: RunContext, runner: TaskVectorRunner, tasks: list[Task],
              template: str | None = None, keep_thetas: bool = False) -> Iterator[TaskResult]:
    """Evaluate each task (dev layer sweep, then baseline / ICL / task vector on test episodes)."""
    tmpl = get_template(template or cfg.template)
    with torch_threads(lm_threads()):
        for task in ctx.progress(tasks, f"{cfg.model} [{tmpl.name}]", total=len(tasks)):
            prepared = prepare_task(task, runner.lm.tokenizer, tmpl)
            yield evaluate_task(runner, prepared, tmpl, seed=cfg.seed, n_dev=cfg.n_dev, n_test=cfg.n_test,
                                n_baseline=cfg.n_baseline, k=cfg.k, n_dummy=cfg.n_dummy, mode=cfg.mode,
                                keep_thetas=keep_thetas)  # fmt: skip


def tasks_of(cfg: TaskVectorConfig) -> list[Task]:
    return resolve_tasks(cfg.tasks)


def filtered_means(df: pd.DataFrame, min_gain: float = 0.20) -> dict[str, float]:
    """The paper's summary: means over tasks where ICL beats the baseline by at least `min_gain`."""
    keep = df[df["icl"] - df["baseline"] >= min_gain]
    out = {"n_tasks": int(len(keep))}
    for col in ("baseline", "icl", "task_vector"):
        out[col] = float(keep[col].mean()) if len(keep) else float("nan")
    out["tv_over_icl"] = out["task_vector"] / out["icl"] if len(keep) and out["icl"] > 0 else float("nan")
    return out


def save_traces(ctx: RunContext, results: list[TaskResult], prefix: str = "") -> None:
    """Every scored prompt (CSV) and every episode (JSON), so each number traces to its prompts."""
    rows = [{"task": r.task, **rec} for r in results for rec in r.records]
    ctx.table(pd.DataFrame(rows), f"{prefix}predictions")
    ctx.json(f"{prefix}episodes", {r.task: r.episodes for r in results})


def dev_curves(results: list[TaskResult]) -> np.ndarray:
    return np.stack([r.dev_curve for r in results])  # (n_tasks, n_layers)
