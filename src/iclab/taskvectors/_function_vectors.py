"""Function vectors (Todd et al. 2024) on the task-vector line's tasks, episodes and scoring.

Per task: mean head activations over clean ICL prompts and the indirect effect of every head on
corrupted (shuffled-label) prompts (`_heads.py`), both from the dev half of the task's queries; the
function vector sums the top heads' mean outputs and is *added* at one layer, chosen on dev, of
prompts the model never saw demonstrations in: the bare query (zero-shot), a shuffled-label prompt,
and natural-text sentences. Test conditions are scored on the same test episodes as Hendel et al.'s
task vector, so baseline, ICL, TV and FV compare prompt by prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch

from iclab.runtime import IclabError
from iclab.runtime import make_rng

from ._episodes import Episode, sample_episodes, split_queries
from ._evaluate import TaskResult, _score
from ._heads import function_vector, indirect_effects, mean_head_activations, top_heads
from ._method import TaskVectorRunner
from ._prompts import PreparedTask, Template
from ._scoring import acceptable, could_still_match

# Natural-text prompts for the portability test (the paper's idea; these sentences are ours): no
# demonstrations and no Q:/A: format, so an answer here comes from the vector, not the template.
NATURAL_TEMPLATES = (
    'The word "{x}" means',
    "When I think of {x}, I usually think of",
    "{x}, in other words,",
)
NATURAL_TOKENS = 8  # tokens generated after a natural-text prompt; the answer may appear anywhere in them


@dataclass
class HeadEffects:
    """One task's head-level measurements (one episode seed): `means` (n_layers, n_heads, head_dim) over
    clean prompts; `ie` (n_corrupt, n_layers, n_heads) indirect effects on corrupted prompts."""

    task: str
    means: torch.Tensor
    ie: torch.Tensor
    prompt_tokens: int  # tokens of the corrupted prompts (for the naive cost: each reruns once per head)


def shuffled(demos: tuple[tuple[str, str], ...], rng: np.random.Generator) -> list[tuple[str, str]]:
    """The demonstrations with their labels permuted among them (the paper's corrupted prompts)."""
    perm = rng.permutation(len(demos))
    return [(x, demos[j][1]) for (x, _), j in zip(demos, perm)]


def first_answer_tokens(runner: TaskVectorRunner, prompts: list[str], answers: list[str], space: str) -> torch.Tensor:
    """The first token of each answer as it follows its prompt (the token the indirect effect scores): (N,)."""
    tok = runner.lm.tokenizer
    enc_p = tok(prompts)["input_ids"]
    enc_f = tok([p + space + a for p, a in zip(prompts, answers)])["input_ids"]
    out = []
    for p, f, a in zip(enc_p, enc_f, answers):
        if len(f) <= len(p) or f[: len(p)] != p:
            raise IclabError(f"answer {a!r} changes its prompt's tokens; the task's writing does not fit this "
                             "template (choose another template)")
        out.append(f[len(p)])
    return torch.tensor(out)


def head_effects(runner: TaskVectorRunner, prepared: PreparedTask, template: Template, *, seed: int,
                 episode_seed: int = 0, n_clean: int = 100, n_corrupt: int = 25, shots: int = 10,
                 heads_per_pass: int | None = None) -> HeadEffects:
    """Mean head activations over `n_clean` clean `shots`-shot prompts and every head's indirect effect on
    `n_corrupt` shuffled-label prompts, all with queries from the task's dev half (the same split as
    `evaluate_task` for this seed and episode seed), on an episode stream of their own."""
    dev_pool, _ = split_queries(len(prepared.pairs), make_rng(seed, prepared.task.name, episode_seed))
    rng = make_rng(seed, prepared.task.name, episode_seed, "function-vector")
    clean = sample_episodes(prepared, dev_pool, n_clean, shots, 0, rng)
    corrupt = sample_episodes(prepared, dev_pool, n_corrupt, shots, 0, rng)
    means = mean_head_activations(runner, [template.prompt(list(e.demos), e.query) for e in clean])
    prompts = [template.prompt(shuffled(e.demos, rng), e.query) for e in corrupt]
    answers = first_answer_tokens(runner, prompts, [e.answer for e in corrupt], template.answer_space)
    ie = indirect_effects(runner, prompts, answers, means, heads_per_pass=heads_per_pass)
    n_tokens = sum(len(ids) for ids in runner.lm.tokenizer(prompts)["input_ids"])
    return HeadEffects(prepared.task.name, means, ie, n_tokens)


def aie_interval(ies: list[torch.Tensor] | list[np.ndarray], level: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The AIE of every head (mean over tasks of each task's mean over its prompts) with a percentile
    bootstrap interval that resamples each task's prompts: (value, lo, hi), each (n_layers, n_heads)."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(x, dtype=np.float64) for x in ies]
    value = np.mean([a.mean(0) for a in arrays], axis=0)
    boots = np.zeros((n_resamples, *value.shape))
    for a in arrays:
        idx = rng.integers(0, len(a), (n_resamples, len(a)))
        boots += a[idx].mean(1)
    boots /= len(arrays)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return value, np.minimum(lo, value), np.maximum(hi, value)


def rank_stability(ies: list[torch.Tensor] | list[np.ndarray], k: int, sizes: list[int] | None = None,
                   n_splits: int = 50, seed: int = 0) -> list[dict]:
    """How many prompts a stable top-k needs: for n prompts per task, draw two disjoint sets of n prompts
    (per task), rank heads by each set's AIE, and record the overlap of the two top-k lists (1: the same
    heads). Two independent estimates of equal size, so the curve is not biased towards the full set.
    Returns one row per n: overlap mean and its 2.5 / 97.5 percentiles over the splits."""
    arrays = [np.asarray(x, dtype=np.float64) for x in ies]
    most = min(len(a) for a in arrays) // 2
    if most < 1:
        raise IclabError("rank stability needs at least 2 corrupted prompts per task")
    sizes = sorted({n for n in (sizes or [1, 2, 3, 5, 8, 12, 16, 25, 50]) if 1 <= n <= most} | {most})
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        overlaps = []
        for _ in range(n_splits):
            halves = [np.zeros(arrays[0].shape[1:]), np.zeros(arrays[0].shape[1:])]
            for a in arrays:
                perm = rng.permutation(len(a))
                halves[0] += a[perm[:n]].mean(0)
                halves[1] += a[perm[n:2 * n]].mean(0)
            tops = [set(top_heads(torch.from_numpy(h), k)) for h in halves]
            overlaps.append(len(tops[0] & tops[1]) / k)
        o = np.array(overlaps)
        rows.append({"n_prompts": n, "overlap": float(o.mean()), "overlap_lo": float(np.quantile(o, 0.025)),
                     "overlap_hi": float(np.quantile(o, 0.975)), "k": k, "splits": n_splits})
    return rows


def task_function_vector(runner: TaskVectorRunner, effects: list[HeadEffects],
                         heads: list[tuple[int, int]]) -> torch.Tensor:
    """One task's function vector from its mean activations pooled over episode seeds: (D,)."""
    means = torch.stack([e.means for e in effects]).mean(0)
    return function_vector(runner, means, heads)


def fv_layer_curve(runner: TaskVectorRunner, prepared: PreparedTask, template: Template, fv: torch.Tensor,
                   episodes: list[Episode]) -> np.ndarray:
    """Zero-shot accuracy on `episodes` (their bare queries) with the FV added at each layer: (n_layers,)."""
    queries = [template.query(e.query) for e in episodes]
    answers = [acceptable(prepared, e.item) for e in episodes]
    vectors = fv.expand(len(queries), runner.n_layers, -1)
    sweep = runner.sweep_patched(queries, vectors, range(runner.n_layers), mode="add",
                                 max_new_tokens=prepared.max_new_tokens,
                                 viable=lambda i, text: could_still_match(text, answers[i]))
    return np.stack([_score(runner, prepared, episodes, sweep[:, l])[0] for l in range(runner.n_layers)], 1).mean(0)


def episodes_of(result: TaskResult, split: str) -> list[Episode]:
    """A task-vector result's saved episodes of one split, as Episodes again."""
    return [Episode(tuple(tuple(d) for d in e["demos"]), e["query"], e["answer"], tuple(e["dummies"]), e["item"])
            for e in result.episodes[split]]


def contains_answer(text: str, answers: tuple[str, ...]) -> bool:
    """Whether any acceptable answer appears as a whole word in a natural-text generation."""
    return any(a and re.search(rf"(?<!\w){re.escape(a)}(?!\w)", text) for a in answers)


@dataclass
class FVResult:
    """One task, one episode seed: 0/1 per test episode for each condition, and the natural-text scores."""

    task: str
    correct: dict[str, np.ndarray]
    natural: dict[str, np.ndarray] = field(default_factory=dict)  # "<template index>:<none|fv>" -> (n_test,)
    records: list[dict] = field(default_factory=list)


FV_CONDITIONS = ("zero_shot", "icl", "task_vector", "fv_zero_shot", "icl_shuffled", "fv_shuffled")


def evaluate_function_vector(runner: TaskVectorRunner, prepared: PreparedTask, template: Template, tv: TaskResult,
                             fv: torch.Tensor, layer: int, *, seed: int, natural: bool = True) -> FVResult:
    """Score the FV (added at `layer`) on the task vector's test episodes: the bare query, a shuffled-label
    prompt with and without it, and natural-text sentences with and without it; ICL and the TV are the
    task-vector result's own scores of those episodes, and the bare query is scored here on them too."""
    test = episodes_of(tv, "test")
    rng = make_rng(seed, prepared.task.name, tv.episode_seed, "function-vector-test")
    n, n_new = len(test), prepared.max_new_tokens
    queries = [template.query(e.query) for e in test]
    shuffled_prompts = [template.prompt(shuffled(e.demos, rng), e.query) for e in test]
    vectors = fv.expand(n, -1)
    out = FVResult(prepared.task.name, {"icl": tv.correct["icl"], "task_vector": tv.correct["task_vector"]})
    out.records += [{k: v for k, v in rec.items() if k != "split"} for rec in tv.records
                    if rec["split"] == "test" and rec["condition"] in ("icl", "task_vector")]

    def score(condition: str, prompts: list[str], ids: torch.Tensor, with_fv: bool) -> None:
        ok, preds = _score(runner, prepared, test, ids)
        out.correct[condition] = ok
        out.records += [{"episode_seed": tv.episode_seed, "condition": condition, "layer": layer if with_fv else None,
                         "query": e.query, "gold": e.answer, "prediction": p, "correct": bool(c), "prompt": q}
                        for e, q, p, c in zip(test, prompts, preds, ok)]  # fmt: skip

    score("zero_shot", queries, runner.predict(queries, n_new), False)
    score("fv_zero_shot", queries, runner.predict_patched(queries, vectors, layer, mode="add", max_new_tokens=n_new),
          True)
    score("icl_shuffled", shuffled_prompts, runner.predict(shuffled_prompts, n_new), False)
    score("fv_shuffled", shuffled_prompts,
          runner.predict_patched(shuffled_prompts, vectors, layer, mode="add", max_new_tokens=n_new), True)
    if natural:
        golds = [acceptable(prepared, e.item) for e in test]
        for t, sentence in enumerate(NATURAL_TEMPLATES):
            prompts = [sentence.replace("{x}", prepared.originals[e.item]) for e in test]
            for kind, ids in (("none", runner.predict(prompts, NATURAL_TOKENS)),
                              ("fv", runner.predict_patched(prompts, vectors, layer, mode="add",
                                                            max_new_tokens=NATURAL_TOKENS))):
                texts = runner.decode(ids)
                ok = np.array([contains_answer(text, g) for text, g in zip(texts, golds)])
                out.natural[f"{t}:{kind}"] = ok
                out.records += [{"episode_seed": tv.episode_seed, "condition": f"natural{t}_{kind}",
                                 "layer": layer if kind == "fv" else None, "query": e.query, "gold": e.answer,
                                 "prediction": text, "correct": bool(c), "prompt": p}
                                for e, p, text, c in zip(test, prompts, texts, ok)]  # fmt: skip
    return out


def ies_by_task(effects: list[HeadEffects]) -> dict[str, torch.Tensor]:
    """Each task's indirect effects, prompts pooled over episode seeds: task -> (P, n_layers, n_heads)."""
    out: dict[str, list[torch.Tensor]] = {}
    for e in effects:
        out.setdefault(e.task, []).append(e.ie)
    return {t: torch.cat(v) for t, v in out.items()}


def universal_heads(effects: list[HeadEffects], k: int) -> list[tuple[int, int]]:
    """The k heads of largest AIE averaged over tasks (each task's prompts pooled over episode seeds)."""
    return top_heads(torch.stack([ie.mean(0) for ie in ies_by_task(effects).values()]).mean(0), k)


def _halves(arrays: list[np.ndarray], rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    perms = [rng.permutation(len(a)) for a in arrays]
    return [a[p[: len(a) // 2]] for a, p in zip(arrays, perms)], [a[p[len(a) // 2:]] for a, p in zip(arrays, perms)]


def concentration(ies: list[torch.Tensor] | list[np.ndarray], k: int, *, n_resamples: int = 2000, level: float = 0.95,
                  seed: int = 0) -> tuple[float, float, float]:
    """How much more of the positive AIE the top-k heads carry than their share of the heads: the top k are
    chosen on one half of each task's prompts and their share of the summed positive AIE is measured on
    the other half (no head is scored on the prompts that chose it), divided by k / n_heads (1: no
    concentration). Returns (value, lo, hi), the interval from resampling the scoring half's prompts."""
    arrays = [np.asarray(x, dtype=np.float64) for x in ies]
    if min(len(a) for a in arrays) < 4:
        raise IclabError("the concentration of the AIE needs at least 4 corrupted prompts per task")
    rng = np.random.default_rng(seed)
    choose, score = _halves(arrays, rng)
    chosen = top_heads(torch.from_numpy(np.mean([a.mean(0) for a in choose], 0)), k)
    mask = np.zeros(arrays[0].shape[1:], dtype=bool)
    for l, h in chosen:
        mask[l, h] = True
    uniform = k / mask.size

    def ratio(aie: np.ndarray) -> np.ndarray:  # (..., L, H) -> (...)
        pos = np.clip(aie, 0, None)
        return pos[..., mask].sum(-1) / np.maximum(pos.sum((-2, -1)), 1e-12) / uniform

    value = float(ratio(np.mean([a.mean(0) for a in score], 0)))
    boots = np.mean([a[rng.integers(0, len(a), (n_resamples, len(a)))].mean(1) for a in score], 0)
    lo, hi = np.quantile(ratio(boots), [(1 - level) / 2, (1 + level) / 2])
    return value, min(float(lo), value), max(float(hi), value)


def top_depth(ies: list[torch.Tensor] | list[np.ndarray], k: int, *, n_resamples: int = 500, level: float = 0.95,
              seed: int = 0) -> tuple[float, float, float]:
    """Median relative depth (layer / n_layers) of the top-k heads, with a bootstrap interval that resamples
    each task's prompts and re-ranks the heads every time (the interval includes ranking noise)."""
    arrays = [np.asarray(x, dtype=np.float64) for x in ies]
    n_layers = arrays[0].shape[1]

    def depth(aie: np.ndarray) -> float:
        return float(np.median([l / n_layers for l, _ in top_heads(torch.from_numpy(aie), k)]))

    value = depth(np.mean([a.mean(0) for a in arrays], 0))
    rng = np.random.default_rng(seed)
    stats = [depth(np.mean([a[rng.integers(0, len(a), len(a))].mean(0) for a in arrays], 0)) for _ in range(n_resamples)]
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return value, min(float(lo), value), max(float(hi), value)
