"""What every task-vector experiment shares: the config fields, model loading, per-task evaluation."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from iclab.models import DeviceConfig
from iclab.runtime import Estimate, IclabError, RunContext
from iclab.runtime import lm_threads, torch_threads

from .._evaluate import CONDITIONS, TaskResult, evaluate_task
from .._method import TaskVectorRunner
from .._paper import paper_reference
from .._prompts import TEMPLATES, get_template, prepare_task
from .._stats import accuracy_estimate, passes_filter, ratio_of_means, two_level_estimate
from .._tasks import Task, resolve_tasks


class TaskVectorConfig(DeviceConfig):
    # The device is not part of a run's identity here: inference only, the same predictions up to rounding.
    UNHASHED: ClassVar[frozenset[str]] = frozenset({"device"})

    model: str = Field("smollm2-135m", description="Bundled model name (smollm2-135m, gemma3-270m), tiny:<family> "
                       "(a random test model) or a local HF causal-LM directory.")
    tasks: str = Field("all", description="'all', a category, or comma-separated task names / .json/.csv task files.")
    template: str = Field("paper", description="Prompt template: paper (example:{x}->{y}), arrow ({x} -> {y}) or qa (Q: {x}\\nA: {y}).")
    k: int = Field(5, ge=1, description="Demonstrations per prompt (the paper: 5).")
    n_dev: int = Field(50, ge=1, description="Dev episodes per task, for choosing the layer.")
    n_test: int = Field(50, ge=1, description="Test episodes per task (ICL and task vector).")
    n_baseline: int = Field(100, ge=1, description="Zero-shot episodes per task for the baseline.")
    n_dummy: int = Field(2, ge=1, description="Dummy queries averaged into θ(S) (the paper's code: 2).")
    mode: Literal["replace", "add"] = Field("replace", description="Patch by replacing the state (the paper) or adding θ.")
    scoring: Literal["auto", "first-token", "full"] = Field(
        "auto", description="first-token: the paper's (first generated token, single-token answers); full: greedy "
        "decoding to the end of the line, exact match on the whole answer; auto: first-token for library tasks, "
        "full for task files.")
    batch_size: int = Field(32, ge=1, description="Prompts per forward pass (an upper bound: it halves on a CUDA "
                            "out-of-memory error).")
    episode_seeds: int = Field(1, ge=1, description="Independent episode draws per task (dev/test split, "
                               "episodes, dev-chosen layer), pooled: one draw is a hint, several a result.")

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        """Fail before anything runs: a bundled model must be installed, a path must hold a model."""
        import importlib.util
        from pathlib import Path

        from iclab.models import BUNDLED_MODELS

        if v.startswith("tiny:"):
            from iclab.models import TINY_FAMILIES

            if v.removeprefix("tiny:") not in TINY_FAMILIES:
                raise ValueError(f"no tiny model {v!r}; use tiny:<family> with one of {', '.join(TINY_FAMILIES)}")
        elif v in BUNDLED_MODELS:
            if importlib.util.find_spec(BUNDLED_MODELS[v].package) is None:
                raise ValueError(f"model {v!r} is not installed; install it with: {BUNDLED_MODELS[v].install}")
        elif not (Path(v).expanduser() / "config.json").is_file():
            raise ValueError(f"not a bundled model ({', '.join(BUNDLED_MODELS)}), tiny:<family>, nor a directory "
                             "with a config.json")
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


def load_runner(cfg: TaskVectorConfig) -> TaskVectorRunner:
    """The model on the config's device and dtype; an architecture iclab cannot map is refused here."""
    from iclab.models import architecture_map, load_model

    lm = load_model(cfg.model, dtype=cfg.torch_dtype, device=cfg.device)
    if not architecture_map(lm.model).blocks_by_name:
        raise IclabError(f"model {cfg.model!r}: {type(lm.model).__name__} is not an architecture iclab maps (its "
                         f"decoder blocks are not at a known name); run `iclab doctor {cfg.model}` for details")
    return TaskVectorRunner(lm, batch_size=cfg.batch_size)


def scoring_for(cfg: TaskVectorConfig, task: Task) -> str:
    """The config's scoring; `auto`: the paper's first token for library tasks, whole answers for task files."""
    if cfg.scoring != "auto":
        return cfg.scoring
    return "full" if task.category == "user" else "first-token"


def warn_and_note(ctx: RunContext) -> Callable[[str], None]:
    """A warning that reaches the terminal (always) and the run's report."""
    def warn(msg: str) -> None:
        print(f"iclab: warning: {msg}", file=sys.stderr)
        ctx.note(f"Warning: {msg}")
    return warn


def run_tasks(cfg: TaskVectorConfig, ctx: RunContext, runner: TaskVectorRunner, tasks: list[Task],
              template: str | None = None, keep_thetas: bool = False) -> Iterator[TaskResult]:
    """Evaluate each task once per episode seed (dev layer sweep, then baseline / ICL / task vector on
    test episodes), tasks outermost."""
    tmpl = get_template(template or cfg.template)
    with torch_threads(lm_threads()):
        for task in ctx.progress(tasks, f"{cfg.model} [{tmpl.name}]", total=len(tasks)):
            prepared = prepare_task(task, runner.lm.tokenizer, tmpl, scoring=scoring_for(cfg, task),
                                    warn=warn_and_note(ctx))
            for e in range(cfg.episode_seeds):
                yield evaluate_task(runner, prepared, tmpl, seed=cfg.seed, episode_seed=e, n_dev=cfg.n_dev,
                                    n_test=cfg.n_test, n_baseline=cfg.n_baseline, k=cfg.k, n_dummy=cfg.n_dummy,
                                    mode=cfg.mode, keep_thetas=keep_thetas)  # fmt: skip


def tasks_of(cfg: TaskVectorConfig) -> list[Task]:
    return resolve_tasks(cfg.tasks)


def by_task(results: list[TaskResult]) -> dict[str, list[TaskResult]]:
    """Task -> its results, one per episode seed (in run order)."""
    out: dict[str, list[TaskResult]] = {}
    for r in results:
        out.setdefault(r.task, []).append(r)
    return out


def pooled_layer(runs: list[TaskResult]) -> int:
    """One layer for a task over its episode seeds: argmax of the dev curve averaged over the seeds
    (dev only; ties to the lowest layer)."""
    return int(np.argmax(np.mean([r.dev_curve for r in runs], axis=0)))


def task_table(results: list[TaskResult]) -> pd.DataFrame:
    """One row per task, pooled over episode seeds: counts, accuracies with bootstrap intervals over the
    test prompts, the dev-chosen layers, and whether the task passes the paper's filter on dev (`kept`)
    and, as the paper applies it, on test (`kept_on_test`)."""
    rows = []
    for task, runs in by_task(results).items():
        seeds = pd.DataFrame([r.row() for r in runs])
        counts = {c: int(seeds[c].sum()) for c in seeds.columns if c.endswith(("_correct", "_n"))}
        row = {"task": task, "category": runs[0].category, "episode_seeds": len(runs), "n_pairs": runs[0].n_pairs,
               "n_pairs_before_filter": runs[0].n_pairs_before_filter,
               "best_layer": int(seeds["best_layer"].mode().min()),
               "best_layers": " ".join(str(int(x)) for x in seeds["best_layer"]), "best_dev": seeds["best_dev"].mean()}
        for c in CONDITIONS:
            est = accuracy_estimate(np.concatenate([r.correct[c] for r in runs]))
            row.update({c: est.value, f"{c}_lo": est.lo, f"{c}_hi": est.hi})
        row["kept"] = passes_filter(counts["dev_icl_correct"], counts["dev_icl_n"], counts["dev_baseline_correct"],
                                    counts["dev_baseline_n"])
        row["kept_on_test"] = passes_filter(counts["icl_correct"], counts["icl_n"], counts["baseline_correct"],
                                            counts["baseline_n"])
        rows.append({**row, **counts, **paper_reference(task)})
    return pd.DataFrame(rows)


def scores(predictions: pd.DataFrame, task: str, conditions: tuple[str, ...], split: str = "test") -> np.ndarray:
    """0/1 scores of one task's prompts from the saved predictions, (n_prompts, len(conditions)); the
    conditions must be scored on the same episodes (ICL and task vector)."""
    sub = predictions[(predictions["task"] == task) & (predictions["split"] == split)]
    cols = [sub[sub["condition"] == c]["correct"].to_numpy(dtype=float) for c in conditions]
    return np.stack(cols, axis=1)


def is_true(column: pd.Series) -> pd.Series:
    """A flag column as saved or read back from CSV (bools, or 'True'/'False' beside blanks)."""
    return column.astype(str).eq("True")


def filtered_estimates(metrics: pd.DataFrame, predictions: pd.DataFrame, kept: str = "kept") -> dict[str, Estimate]:
    """The paper's summary over the tasks passing the filter (column `kept`): mean baseline, task vector
    and ICL accuracy and TV / ICL, each with a two-level bootstrap interval (tasks, then test prompts)."""
    tasks = metrics.loc[is_true(metrics[kept]), "task"].tolist()
    pairs = [scores(predictions, t, ("task_vector", "icl")) for t in tasks]
    return {"baseline": two_level_estimate([scores(predictions, t, ("baseline",)) for t in tasks]),
            "task_vector": two_level_estimate([p[:, :1] for p in pairs]),
            "icl": two_level_estimate([p[:, 1:] for p in pairs]),
            "tv_over_icl": two_level_estimate(pairs, ratio_of_means)}  # fmt: skip


def summary_row(metrics: pd.DataFrame, predictions: pd.DataFrame) -> dict:
    """The summary table's numbers: the filtered means on dev-kept tasks (with intervals), the same on the
    tasks the paper's procedure keeps (its filter on the test numbers), and the means over all tasks."""
    row: dict = {"n_tasks": int(is_true(metrics["kept"]).sum())}
    for name, est in filtered_estimates(metrics, predictions).items():
        row.update({name: est.value, f"{name}_lo": est.lo, f"{name}_hi": est.hi})
    on_test = filtered_estimates(metrics, predictions, "kept_on_test")
    row.update({"n_tasks_test_filter": int(is_true(metrics["kept_on_test"]).sum()),
                "tv_over_icl_test_filter": on_test["tv_over_icl"].value})
    row.update({f"all_{c}": float(metrics[c].mean()) for c in CONDITIONS})
    return row


def predictions_frame(results: list[TaskResult]) -> pd.DataFrame:
    """Every scored prompt: task, episode seed, split, condition, layer, query, gold, prediction, correct, prompt."""
    return pd.DataFrame([{"task": r.task, **rec} for r in results for rec in r.records])


def episode_traces(results: list[TaskResult]) -> dict:
    """Every episode, task -> episode seed -> split, so each number traces to its prompts."""
    return {task: {str(r.episode_seed): r.episodes for r in runs} for task, runs in by_task(results).items()}


def dev_curves(results: list[TaskResult]) -> np.ndarray:
    """(n_tasks, episode_seeds, n_layers) dev accuracy of the task vector at each layer."""
    return np.stack([np.stack([r.dev_curve for r in runs]) for runs in by_task(results).values()])


def split_overlap(episodes: dict) -> int:
    """Test or baseline queries that are also dev queries, over every task and episode seed (0 when the
    dev and test query pools are disjoint), from the saved episodes."""
    return sum(len({e["item"] for e in eps["dev"]} & {e["item"] for e in eps["test"] + eps["baseline"]})
               for seeds in episodes.values() for eps in seeds.values())
