"""What the function-vector experiment and `iclab profile` share: the config, the compute, the figures.

Per task and episode seed: Hendel et al.'s evaluation (dev layer sweep; baseline, ICL, task vector on
test) under the Q:/A: template with the FV paper's shot count, then head effects on dev prompts.
Across tasks: the top heads by AIE (mean over tasks), each task's function vector, one FV layer
chosen on dev (mean over tasks of the dev zero-shot accuracy), then the FV conditions on the test
episodes of the task vector.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from pydantic import Field

from iclab.models import head_geometry
from iclab.runtime import IclabError, Results, RunContext
from iclab.runtime import heatmap, subplots
from iclab.runtime import lm_threads, torch_threads

from .._function_vectors import (FV_CONDITIONS, NATURAL_TEMPLATES, NATURAL_TOKENS, FVResult, HeadEffects,
                                aie_interval, episodes_of, evaluate_function_vector, fv_layer_curve, head_effects,
                                ies_by_task, rank_stability, task_function_vector, universal_heads)
from .._prompts import get_template, prepare_task
from .._stats import accuracy_estimate
from ._common import TaskVectorConfig, load_runner, run_tasks, scoring_for, tasks_of

# The FV paper's six headline tasks -> this library's counterparts (see the notes of a run).
FV_TASKS = ("linguistic_antonyms,algorithmic_to_upper,knowledge_country_capital,translation_en_fr,"
            "linguistic_present_simple_past_simple,linguistic_plural_singular")
NAMES = {"zero_shot": "zero-shot", "icl": "ICL", "task_vector": "task vector (TV)", "fv_zero_shot": "FV zero-shot",
         "icl_shuffled": "shuffled ICL", "fv_shuffled": "FV + shuffled ICL"}


class FunctionVectorConfig(TaskVectorConfig):
    tasks: str = Field(FV_TASKS, description="'all', a category, or comma-separated task names / .json/.csv task "
                       "files (default: the library's counterparts of the FV paper's six headline tasks).")
    template: str = Field("qa", description="Prompt template (the FV paper's: qa, Q: {x}\\nA: {y} joined by blank lines).")
    k: int = Field(10, ge=1, description="Demonstrations per prompt, for ICL, the TV and the head effects (the FV paper: 10).")
    n_clean: int = Field(100, ge=1, description="Clean ICL prompts per task for the mean head activations (the paper: 100).")
    n_corrupt: int = Field(25, ge=2, description="Shuffled-label prompts per task for the indirect effects (the paper: 25).")
    n_top_heads: int = Field(10, ge=1, description="Heads summed into the function vector (the paper: 10).")
    natural: bool = Field(True, description="Also score natural-text sentences with and without the FV (portability).")


def compute_function_vectors(cfg: FunctionVectorConfig, ctx: RunContext) -> None:
    """Everything both experiments save: tables metrics, conditions, natural, heads, fv_layers, stability,
    predictions; arrays heads (per-task indirect effects) and tv_layers; json timing."""
    t0 = time.perf_counter()
    runner = load_runner(cfg)
    n_layers, n_heads, _ = head_geometry(runner.model)  # a model whose heads cannot be found stops here
    if cfg.n_top_heads > n_layers * n_heads:
        raise IclabError(f"n_top_heads = {cfg.n_top_heads}, but {cfg.model} has {n_layers * n_heads} heads "
                         f"({n_layers} layers × {n_heads}); pass --n_top_heads {n_layers * n_heads} or fewer")
    tmpl = get_template(cfg.template)
    tasks = tasks_of(cfg)
    prepared = {t.name: prepare_task(t, runner.lm.tokenizer, tmpl, scoring=scoring_for(cfg, t))  # run_tasks warns
                for t in tasks}
    with torch_threads(lm_threads()):
        tv_results = list(run_tasks(cfg, ctx, runner, tasks))
        t_tv = time.perf_counter()
        tokens_before = runner.tokens
        effects: list[HeadEffects] = []
        for tv in ctx.progress(tv_results, f"{cfg.model}: head effects", total=len(tv_results)):
            effects.append(head_effects(runner, prepared[tv.task], tmpl, seed=cfg.seed, episode_seed=tv.episode_seed,
                                        n_clean=cfg.n_clean, n_corrupt=cfg.n_corrupt, shots=cfg.k))
        t_heads, aie_tokens = time.perf_counter(), runner.tokens - tokens_before
        heads = universal_heads(effects, cfg.n_top_heads)
        fvs = {t.name: task_function_vector(runner, [e for e in effects if e.task == t.name], heads) for t in tasks}
        curves = {tv.task + f"#{tv.episode_seed}": fv_layer_curve(runner, prepared[tv.task], tmpl, fvs[tv.task],
                                                                  episodes_of(tv, "dev")) for tv in tv_results}
        layer = int(np.argmax(np.mean(list(curves.values()), axis=0)))  # dev only; ties to the lowest layer
        fv_results = [evaluate_function_vector(runner, prepared[tv.task], tmpl, tv, fvs[tv.task], layer, seed=cfg.seed,
                                               natural=cfg.natural)
                      for tv in ctx.progress(tv_results, f"{cfg.model}: function vectors", total=len(tv_results))]
    seconds = time.perf_counter() - t0

    ctx.table(_metrics(tv_results, fv_results), "metrics")
    ctx.table(_natural(fv_results), "natural")
    ctx.table(pd.DataFrame([{"task": f"{tv.task}", "episode_seed": tv.episode_seed, "layer": l, "fv_dev": c[l],
                             "tv_dev": tv.dev_curve[l]} for tv, c in zip(tv_results, curves.values())
                            for l in range(n_layers)]), "layers")  # fmt: skip
    ies = ies_by_task(effects)
    value, lo, hi = aie_interval(list(ies.values()))
    order = np.argsort(-value.flatten(), kind="stable")
    ctx.table(pd.DataFrame([{"rank": r + 1, "layer": int(i) // n_heads, "head": int(i) % n_heads,
                             "aie": value.flat[i], "aie_lo": lo.flat[i], "aie_hi": hi.flat[i],
                             "in_fv": r < cfg.n_top_heads} for r, i in enumerate(order)]), "heads")  # fmt: skip
    ctx.table(pd.DataFrame(rank_stability(list(ies.values()), cfg.n_top_heads, seed=cfg.seed)), "stability")
    ctx.table(pd.DataFrame([{"task": r.task, **rec} for r in fv_results for rec in r.records]), "predictions")
    ctx.arrays("heads", ie=np.stack([v.numpy() for v in ies.values()]), tasks=np.array(list(ies), dtype=str))
    naive = sum(e.prompt_tokens for e in effects) * (1 + n_layers * n_heads)
    ctx.json("timing", {"seconds": seconds, "tv_seconds": t_tv - t0, "head_seconds": t_heads - t_tv,
                        "tokens": runner.tokens, "aie_tokens": aie_tokens, "aie_naive_tokens": naive,
                        "fv_layer": layer, "n_layers": n_layers, "n_heads": n_heads, "lm_threads": lm_threads(),
                        "top_heads": [list(h) for h in heads]})  # fmt: skip
    ctx.note(f"Model {cfg.model} ({n_layers} layers × {n_heads} heads): 135M-270M parameters against the FV paper's "
             "6B-70B models (GPT-J, GPT-NeoX, Llama 2), so effects are expected to be smaller; the claims compare "
             "shapes, not values.")
    ctx.note(f"Heads are ranked by the AIE averaged over the {len(tasks)} tasks (the paper's universal head set) from "
             f"{cfg.n_corrupt} shuffled-label {cfg.k}-shot prompts per task and episode seed; mean activations from "
             f"{cfg.n_clean} clean prompts. Both use only dev queries; the FV layer ({layer}) is the argmax of the mean "
             "dev zero-shot accuracy; every FV number is scored on the task vector's test episodes.")
    ctx.note("The function vector is added at the prompt's last token only (later generated tokens run unpatched). "
             "Natural-text prompts are our own three sentences (the paper's portability test uses its own); an answer "
             f"counts when it appears as a whole word in the {NATURAL_TOKENS} generated tokens.")
    ctx.note("The FV paper's six headline tasks map to this library's: antonym -> linguistic_antonyms, capitalize "
             "(word -> Word) -> algorithmic_to_upper (letter -> LETTER), country-capital, english-french, present-past "
             "-> their counterparts, singular-plural -> linguistic_plural_singular (the reverse direction). Unlike "
             "the paper, scores are not restricted to the queries clean ICL solves.")


def _pooled(results: list[FVResult], task: str, key: str, natural: bool = False) -> np.ndarray:
    return np.concatenate([(r.natural if natural else r.correct)[key] for r in results if r.task == task])


def _metrics(tv_results, fv_results: list[FVResult]) -> pd.DataFrame:
    """One row per task: every condition's test accuracy with its interval, pooled over episode seeds."""
    rows = []
    for task in dict.fromkeys(r.task for r in fv_results):
        tvs = [r for r in tv_results if r.task == task]
        row = {"task": task, "category": tvs[0].category, "tv_layers": " ".join(str(r.best_layer) for r in tvs),
               "n_test": int(sum(len(r.correct["icl"]) for r in tvs))}
        for c in FV_CONDITIONS:
            est = accuracy_estimate(_pooled(fv_results, task, c))
            row.update({c: est.value, f"{c}_lo": est.lo, f"{c}_hi": est.hi})
        rows.append(row)
    return pd.DataFrame(rows)


def _natural(fv_results: list[FVResult]) -> pd.DataFrame:
    rows = []
    for task in dict.fromkeys(r.task for r in fv_results):
        for t, sentence in enumerate(NATURAL_TEMPLATES):
            if f"{t}:none" not in fv_results[0].natural:
                continue
            row = {"task": task, "template": sentence}
            for kind in ("none", "fv"):
                est = accuracy_estimate(_pooled(fv_results, task, f"{t}:{kind}", natural=True))
                row.update({kind: est.value, f"{kind}_lo": est.lo, f"{kind}_hi": est.hi})
            rows.append(row)
    return pd.DataFrame(rows, columns=["task", "template", "none", "none_lo", "none_hi", "fv", "fv_lo", "fv_hi"])


def scored(res: Results, conditions: tuple[str, ...]) -> list[np.ndarray]:
    """Per task, (n_test, len(conditions)) 0/1 scores of the same test episodes, from the saved predictions."""
    pred = res.table("predictions")
    out = []
    for task in dict.fromkeys(pred["task"]):
        sub = pred[pred["task"] == task]
        out.append(np.stack([sub[sub["condition"] == c]["correct"].to_numpy(dtype=float) for c in conditions], 1))
    return out


# -- figures -------------------------------------------------------------------------------------------


def draw_heatmap(cfg, res: Results, ctx: RunContext) -> None:
    value, _, _ = aie_interval(list(res.arrays("heads")["ie"]))
    timing = res.json("timing")
    fig, axes = subplots(1, 1, size=(max(3.0, 0.3 * timing["n_heads"] + 2), max(3.0, 0.16 * timing["n_layers"] + 1)))
    ax = axes[0, 0]
    heatmap(ax, value, f"{cfg.model}: AIE per head")
    for rank, (l, h) in enumerate(timing["top_heads"]):
        ax.text(h, l, str(rank + 1), ha="center", va="center", fontsize=5)
    ax.set_xticks(range(timing["n_heads"]))
    ax.set(xlabel="head", ylabel="layer (0-based)")
    ctx.figure(fig, "aie_heatmap", caption=f"Average indirect effect of each attention head (gain in the correct "
               f"answer's probability when the head's output at the last token of a shuffled-label prompt is set to "
               f"its task mean), mean over {len(res.arrays('heads')['tasks'])} tasks; numbers mark the top "
               f"{len(timing['top_heads'])} heads summed into the function vector.")


def draw_top_heads(cfg, res: Results, ctx: RunContext, n: int = 20) -> None:
    df = res.table("heads").head(n)
    fig, axes = subplots(1, 1, size=(max(4.0, 0.28 * len(df) + 1), 3.0))
    ax, x = axes[0, 0], np.arange(len(df))
    ax.errorbar(x, df["aie"], yerr=[df["aie"] - df["aie_lo"], df["aie_hi"] - df["aie"]], fmt="o", ms=3, capsize=2)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xticks(x, [f"{l}.{h}" for l, h in zip(df["layer"], df["head"])], rotation=70, fontsize=6)
    ax.set(xlabel="layer.head", ylabel="AIE", title=f"{cfg.model}: top {len(df)} heads")
    ctx.figure(fig, "top_heads", caption="The heads of largest AIE with 95% bootstrap intervals (each task's corrupted "
               "prompts resampled); the first n_top_heads make the function vector.")


def draw_layers(cfg, res: Results, ctx: RunContext) -> None:
    df = res.table("layers")
    layer = res.json("timing")["fv_layer"]
    fig, axes = subplots(1, 2, size=(4.2, 3.2))
    for ax, col, title in ((axes[0, 0], "fv_dev", f"FV added (layer {layer} chosen)"),
                           (axes[0, 1], "tv_dev", "TV patched (Hendel et al.)")):
        for task, sub in df.groupby("task", sort=False):
            ax.plot(sub["layer"], sub[col], lw=0.8, alpha=0.7, label=task.split("_", 1)[-1])
        mean = df.groupby("layer")[col].mean()
        ax.plot(mean.index, mean.values, color="k", lw=1.5, label="mean")
        ax.set(xlabel="layer (0-based)", ylabel="dev zero-shot accuracy", title=title, ylim=(-0.02, 1.02))
    axes[0, 0].axvline(layer, color="grey", ls=":")
    axes[0, 1].legend(fontsize=5)
    ctx.figure(fig, "layers", caption="Dev accuracy of the bare query with the function vector added at each layer "
               "(left) and with the task vector patched at each layer (right), per task and episode seed.")


def draw_conditions(cfg, res: Results, ctx: RunContext, conditions: tuple[str, ...] = FV_CONDITIONS) -> None:
    df = res.table("metrics")
    fig, axes = subplots(1, 1, size=(max(5.0, 0.9 * len(df) + 1), 3.4))
    ax, idx = axes[0, 0], np.arange(len(df))
    w = 0.8 / len(conditions)
    for j, c in enumerate(conditions):
        ax.bar(idx + (j - (len(conditions) - 1) / 2) * w, df[c], w, color=f"C{j}", label=NAMES[c],
               yerr=[df[c] - df[f"{c}_lo"], df[f"{c}_hi"] - df[c]], capsize=1, error_kw={"lw": 0.6})
    ax.set_xticks(idx, [t.split("_", 1)[-1] for t in df["task"]], rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="test accuracy", ylim=(0, 1.3), title=f"{cfg.model}: {cfg.k}-shot ICL, TV and FV")
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(fontsize=6, ncol=3, loc="upper center")  # above the bars, which end at 1
    ctx.figure(fig, "tv_vs_fv", caption="Test accuracy per task on the same episodes: zero-shot, ICL, the task vector "
               "(patched at its dev layer), the function vector added to the zero-shot prompt and to a shuffled-label "
               "prompt, and shuffled-label ICL alone; 95% bootstrap intervals over the test prompts.")


def draw_natural(cfg, res: Results, ctx: RunContext) -> None:
    df = res.table("natural")
    if df.empty:
        return
    g = df.groupby("template", sort=False)[["none", "fv"]].mean()
    fig, axes = subplots(1, 1, size=(4.8, 3.0))
    ax, idx = axes[0, 0], np.arange(len(g))
    ax.bar(idx - 0.2, g["none"], 0.4, label="no FV")
    ax.bar(idx + 0.2, g["fv"], 0.4, label="FV added")
    ax.set_xticks(idx, [t.replace("{x}", "x") for t in g.index], rotation=15, ha="right", fontsize=6)
    ax.set(ylabel="answer in generation", ylim=(0, 1.05), title=f"{cfg.model}: natural text (mean over tasks)")
    ax.legend(fontsize=6)
    ctx.figure(fig, "portability", caption="Natural-text sentences with and without the function vector: the fraction "
               "of test queries whose answer appears in the generated continuation, mean over tasks (per task, with "
               "intervals, in the natural table).")


def draw_stability(cfg, res: Results, ctx: RunContext) -> None:
    df = res.table("stability")
    fig, axes = subplots(1, 1, size=(3.8, 3.0))
    ax = axes[0, 0]
    ax.plot(df["n_prompts"], df["overlap"], "o-", ms=3)
    ax.fill_between(df["n_prompts"], df["overlap_lo"], df["overlap_hi"], alpha=0.2)
    ax.set(xlabel="corrupted prompts per task (each of two disjoint sets)", ylabel=f"top-{int(df['k'].iloc[0])} overlap",
           ylim=(0, 1.02), title=f"{cfg.model}: rank stability")
    ctx.figure(fig, "stability", caption="How many prompts a stable head ranking needs: two disjoint sets of n "
               "corrupted prompts per task each give a top-k list; the overlap of the two lists (mean and 95% range "
               "over random splits). At the run's own count the ranking rests on twice n prompts.")
