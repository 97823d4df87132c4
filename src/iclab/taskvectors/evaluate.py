"""One task, end to end: dev layer sweep, then baseline / ICL / task vector on the test episodes."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from .episodes import Episode, sample_episodes, split_queries
from .method import TaskVectorRunner
from .prompts import PreparedTask, Template
from .scoring import is_correct


def task_rng(seed: int, name: str, stream: int = 0) -> np.random.Generator:
    """Per-task random stream: adding or reordering tasks never changes another task's episodes."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), stream])


def extract_thetas(runner: TaskVectorRunner, template: Template, episodes: list[Episode]) -> torch.Tensor:
    """θ(S) of each episode at every layer: last-token states of [S, x'] averaged over its dummies x'.
    Returns (N, n_layers, D)."""
    m = len(episodes[0].dummies)
    prompts = [template.prompt(list(e.demos), d) for e in episodes for d in e.dummies]
    states = runner.last_token_states(prompts)  # (N*m, L, D)
    return states.view(len(episodes), m, *states.shape[1:]).mean(1)


@dataclass
class TaskResult:
    task: str
    category: str
    n_pairs: int  # after the single-token filter
    n_pairs_before_filter: int
    leading_space: bool
    dev_curve: np.ndarray  # (n_layers,) dev accuracy of the task vector patched at each layer
    best_layer: int
    baseline: float
    icl: float
    task_vector: float
    records: list[dict] = field(default_factory=list)  # one row per scored prompt (traceability)
    episodes: dict[str, list[dict]] = field(default_factory=dict)
    test_thetas: torch.Tensor | None = None  # (n_test, n_layers, D), kept for the analyses

    def row(self) -> dict:
        return {
            "task": self.task, "category": self.category, "n_pairs": self.n_pairs,
            "n_pairs_before_filter": self.n_pairs_before_filter, "best_layer": self.best_layer,
            "baseline": self.baseline, "icl": self.icl, "task_vector": self.task_vector,
            "best_dev": float(self.dev_curve[self.best_layer]),
        }  # fmt: skip


def _score(runner: TaskVectorRunner, prepared: PreparedTask, episodes: list[Episode], ids: torch.Tensor) -> np.ndarray:
    preds = runner.decode(ids)
    return np.array([is_correct(p, prepared, e.item) for p, e in zip(preds, episodes)]), preds


def dev_layer_curve(runner: TaskVectorRunner, prepared: PreparedTask, template: Template, episodes: list[Episode],
                    mode: str = "replace") -> np.ndarray:
    """Task-vector accuracy on `episodes` with θ patched at each layer: (n_layers,)."""
    thetas = extract_thetas(runner, template, episodes)
    queries = [template.query(e.query) for e in episodes]
    sweep = runner.sweep_patched(queries, thetas, range(runner.n_layers), mode=mode)  # (N, L)
    return np.stack([_score(runner, prepared, episodes, sweep[:, l])[0] for l in range(runner.n_layers)], 1).mean(0)


def evaluate_task(
    runner: TaskVectorRunner,
    prepared: PreparedTask,
    template: Template,
    *,
    seed: int,
    n_dev: int = 50,
    n_test: int = 50,
    n_baseline: int = 100,
    k: int = 5,
    n_dummy: int = 2,
    mode: str = "replace",
    keep_thetas: bool = False,
) -> TaskResult:
    name = prepared.task.name
    rng = task_rng(seed, name)
    dev_pool, test_pool = split_queries(len(prepared.pairs), rng)
    dev = sample_episodes(prepared, dev_pool, n_dev, k, n_dummy, rng)
    test = sample_episodes(prepared, test_pool, n_test, k, n_dummy, rng)
    base = sample_episodes(prepared, test_pool, n_baseline, 0, 0, rng)
    records: list[dict] = []

    def log(split: str, condition: str, episodes, prompts, preds, correct, layer=None):
        for e, p, pred, c in zip(episodes, prompts, preds, correct):
            records.append({"split": split, "condition": condition, "layer": layer, "query": e.query,
                            "gold": e.answer, "prediction": pred, "correct": bool(c), "prompt": p})  # fmt: skip

    # Dev: choose L by sweeping every layer (ties go to the lowest layer, as in the paper's code).
    dev_curve = dev_layer_curve(runner, prepared, template, dev, mode)
    best = int(np.argmax(dev_curve))

    # Test: baseline (bare query), regular ICL, and the task vector patched at the chosen layer.
    base_prompts = [template.query(e.query) for e in base]
    base_ok, base_pred = _score(runner, prepared, base, runner.predict(base_prompts))
    log("test", "baseline", base, base_prompts, base_pred, base_ok)
    icl_prompts = [template.prompt(list(e.demos), e.query) for e in test]
    icl_ok, icl_pred = _score(runner, prepared, test, runner.predict(icl_prompts))
    log("test", "icl", test, icl_prompts, icl_pred, icl_ok)
    test_thetas = extract_thetas(runner, template, test)
    test_queries = [template.query(e.query) for e in test]
    tv_ids = runner.predict_patched(test_queries, test_thetas[:, best], best, mode=mode)
    tv_ok, tv_pred = _score(runner, prepared, test, tv_ids)
    log("test", "task_vector", test, test_queries, tv_pred, tv_ok, layer=best)

    return TaskResult(
        task=name, category=prepared.task.category, n_pairs=len(prepared.pairs),
        n_pairs_before_filter=prepared.n_before_filter, leading_space=prepared.leading_space,
        dev_curve=dev_curve, best_layer=best, baseline=float(base_ok.mean()), icl=float(icl_ok.mean()),
        task_vector=float(tv_ok.mean()), records=records,
        episodes={"dev": [e.to_json() for e in dev], "test": [e.to_json() for e in test],
                  "baseline": [e.to_json() for e in base]},
        test_thetas=test_thetas if keep_thetas else None,
    )  # fmt: skip
