"""One task, end to end: dev layer sweep, then baseline / ICL / task vector on the test episodes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from iclab.runtime import make_rng

from ._episodes import Episode, sample_episodes, split_queries
from ._method import TaskVectorRunner
from ._prompts import PreparedTask, Template
from ._scoring import acceptable, could_still_match, is_correct


def extract_thetas(runner: TaskVectorRunner, template: Template, episodes: list[Episode]) -> torch.Tensor:
    """θ(S) of each episode at every layer: last-token states of [S, x'] averaged over its dummies x'.
    Returns (N, n_layers, D)."""
    m = len(episodes[0].dummies)
    prompts = [template.prompt(list(e.demos), d) for e in episodes for d in e.dummies]
    states = runner.last_token_states(prompts)  # (N*m, L, D)
    return states.view(len(episodes), m, *states.shape[1:]).mean(1)


CONDITIONS = ("baseline", "icl", "task_vector")  # scored on test
DEV_CONDITIONS = ("dev_baseline", "dev_icl")  # scored on dev, for the task filter (never on test)


@dataclass
class TaskResult:
    task: str
    category: str
    n_pairs: int  # after the single-token filter
    n_pairs_before_filter: int
    leading_space: bool
    dev_curve: np.ndarray  # (n_layers,) dev accuracy of the task vector patched at each layer
    best_layer: int
    correct: dict[str, np.ndarray]  # condition (CONDITIONS + DEV_CONDITIONS) -> (n_prompts,) bool
    episode_seed: int = 0
    records: list[dict] = field(default_factory=list)  # one row per scored prompt (traceability)
    episodes: dict[str, list[dict]] = field(default_factory=dict)
    test_thetas: torch.Tensor | None = None  # (n_test, n_layers, D), kept for the analyses

    @property
    def baseline(self) -> float:
        return float(self.correct["baseline"].mean())

    @property
    def icl(self) -> float:
        return float(self.correct["icl"].mean())

    @property
    def task_vector(self) -> float:
        return float(self.correct["task_vector"].mean())

    def row(self) -> dict:
        """Accuracies with the counts they come from (the task filter compares counts, not floats)."""
        counts = {f"{c}_{s}": int(v) for c in CONDITIONS + DEV_CONDITIONS
                  for s, v in (("correct", self.correct[c].sum()), ("n", self.correct[c].size))}
        return {
            "task": self.task, "category": self.category, "episode_seed": self.episode_seed,
            "n_pairs": self.n_pairs, "n_pairs_before_filter": self.n_pairs_before_filter,
            "best_layer": self.best_layer, "best_dev": float(self.dev_curve[self.best_layer]),
            "baseline": self.baseline, "icl": self.icl, "task_vector": self.task_vector, **counts,
        }  # fmt: skip


def _score(runner: TaskVectorRunner, prepared: PreparedTask, episodes: list[Episode],
           ids: torch.Tensor) -> tuple[np.ndarray, list[str]]:
    """0/1 per episode and the prediction as generated: the first token, or (N, n) tokens of a whole answer."""
    preds = runner.decode(ids)
    return np.array([is_correct(p, prepared, e.item, prepared.scoring) for p, e in zip(preds, episodes)]), preds


def dev_layer_curve(runner: TaskVectorRunner, prepared: PreparedTask, template: Template, episodes: list[Episode],
                    mode: str = "replace") -> np.ndarray:
    """Task-vector accuracy on `episodes` with θ patched at each layer: (n_layers,)."""
    thetas = extract_thetas(runner, template, episodes)
    queries = [template.query(e.query) for e in episodes]
    answers = [acceptable(prepared, e.item) for e in episodes]
    sweep = runner.sweep_patched(queries, thetas, range(runner.n_layers), mode=mode,
                                 max_new_tokens=prepared.max_new_tokens,  # (N, L) or (N, L, n)
                                 viable=lambda i, text: could_still_match(text, answers[i]))
    return np.stack([_score(runner, prepared, episodes, sweep[:, l])[0] for l in range(runner.n_layers)], 1).mean(0)


def evaluate_task(
    runner: TaskVectorRunner,
    prepared: PreparedTask,
    template: Template,
    *,
    seed: int,
    episode_seed: int = 0,
    n_dev: int = 50,
    n_test: int = 50,
    n_baseline: int = 100,
    k: int = 5,
    n_dummy: int = 2,
    mode: str = "replace",
    keep_thetas: bool = False,
) -> TaskResult:
    """Episodes come from stream (seed, task, episode_seed): another episode seed redraws the dev/test
    split and every episode, so repeats vary everything but the model. Dev chooses L (and scores ICL and
    the baseline for the task filter); test scores the three conditions. Under `full` scoring (set on
    `prepared`) every condition decodes the whole answer; θ is patched at the query's last token only."""
    name = prepared.task.name
    rng = make_rng(seed, name, episode_seed)
    dev_pool, test_pool = split_queries(len(prepared.pairs), rng)
    dev = sample_episodes(prepared, dev_pool, n_dev, k, n_dummy, rng)
    test = sample_episodes(prepared, test_pool, n_test, k, n_dummy, rng)
    base = sample_episodes(prepared, test_pool, n_baseline, 0, 0, rng)
    records: list[dict] = []
    correct: dict[str, np.ndarray] = {}
    n_new = prepared.max_new_tokens  # 1 under first-token scoring

    def run(split: str, condition: str, episodes: list[Episode], prompts: list[str], ids: torch.Tensor,
            layer: int | None = None) -> None:
        ok, preds = _score(runner, prepared, episodes, ids)
        correct[condition if split == "test" else f"dev_{condition}"] = ok
        for e, p, pred, c in zip(episodes, prompts, preds, ok):
            records.append({"episode_seed": episode_seed, "split": split, "condition": condition, "layer": layer,
                            "query": e.query, "gold": e.answer, "prediction": pred, "correct": bool(c),
                            "prompt": p})  # fmt: skip

    # Dev: choose L by sweeping every layer (ties go to the lowest layer, as in the paper's code);
    # ICL and the bare query on the same dev episodes decide whether the task passes the paper's filter.
    dev_curve = dev_layer_curve(runner, prepared, template, dev, mode)
    best = int(np.argmax(dev_curve))
    for condition, prompts in (("baseline", [template.query(e.query) for e in dev]),
                               ("icl", [template.prompt(list(e.demos), e.query) for e in dev])):  # fmt: skip
        run("dev", condition, dev, prompts, runner.predict(prompts, n_new))

    # Test: baseline (bare query), regular ICL, and the task vector patched at the chosen layer.
    base_prompts = [template.query(e.query) for e in base]
    run("test", "baseline", base, base_prompts, runner.predict(base_prompts, n_new))
    icl_prompts = [template.prompt(list(e.demos), e.query) for e in test]
    run("test", "icl", test, icl_prompts, runner.predict(icl_prompts, n_new))
    test_thetas = extract_thetas(runner, template, test)
    test_queries = [template.query(e.query) for e in test]
    run("test", "task_vector", test, test_queries,
        runner.predict_patched(test_queries, test_thetas[:, best], best, mode=mode, max_new_tokens=n_new), layer=best)

    return TaskResult(
        task=name, category=prepared.task.category, n_pairs=len(prepared.pairs),
        n_pairs_before_filter=prepared.n_before_filter, leading_space=prepared.leading_space,
        dev_curve=dev_curve, best_layer=best, correct=correct, episode_seed=episode_seed, records=records,
        episodes={"dev": [e.to_json() for e in dev], "test": [e.to_json() for e in test],
                  "baseline": [e.to_json() for e in base]},
        test_thetas=test_thetas if keep_thetas else None,
    )  # fmt: skip
