"""An ICL profile of any model (`iclab profile MODEL`): one page with its ICL accuracy per task category,
the task-vector layer curve, the heads that carry the task and TV vs FV, each with its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from iclab.runtime import Estimate, Results, RunContext, experiment
from iclab.runtime import subplots

from .._stats import accuracy_estimate, two_level_estimate
from ._fv import (FunctionVectorConfig, compute_function_vectors, draw_conditions, draw_heatmap, draw_layers,
                  draw_stability, draw_top_heads, scored)

# One task per category of the library (the quick preset), and every task for the paper-scale profile.
PER_CATEGORY = "algorithmic_to_upper,translation_en_fr,linguistic_antonyms,knowledge_country_capital"
QUICK = dict(tasks=PER_CATEGORY, n_dev=8, n_test=16, n_baseline=8, n_clean=16, n_corrupt=6, natural=False)
PAPER = dict(tasks="all", n_dev=50, n_test=50, n_baseline=50, n_clean=100, n_corrupt=25, natural=True)


class ProfileConfig(FunctionVectorConfig):
    tasks: str = Field(PER_CATEGORY, description="'all', a category, or comma-separated task names / task files "
                       "(default: one task per category).")


@experiment("taskvectors.profile", ProfileConfig, presets={"quick": QUICK, "paper": PAPER},
            title="ICL profile of a model: accuracy per category, task-vector layers, function-vector heads",
            paper="Hendel et al. 2023 and Todd et al. 2024 methods, applied to any model", reproduce=False)
def compute(cfg: ProfileConfig, ctx: RunContext) -> None:
    """The function-vector experiment's measurements on a spread of tasks, summarised per category:
    `iclab profile MODEL` runs this and prints its page in the report site."""
    compute_function_vectors(cfg, ctx)


@compute.figures
def figures(cfg: ProfileConfig, res: Results, ctx: RunContext) -> None:
    df = categories(res)
    fig, axes = subplots(1, 1, size=(max(4.0, 1.1 * len(df) + 1), 3.2))
    ax, idx = axes[0, 0], np.arange(len(df))
    for j, (c, label) in enumerate((("zero_shot", "zero-shot"), ("icl", f"{cfg.k}-shot ICL"),
                                    ("task_vector", "task vector"), ("fv_zero_shot", "function vector"))):
        ax.bar(idx + (j - 1.5) * 0.2, df[c], 0.2, label=label, color=f"C{j}",
               yerr=[df[c] - df[f"{c}_lo"], df[f"{c}_hi"] - df[c]], capsize=1.5, error_kw={"lw": 0.6})
    ax.set_xticks(idx, [f"{c}\n({n} tasks)" for c, n in zip(df["category"], df["n_tasks"])], fontsize=7)
    ax.set(ylabel="test accuracy", ylim=(0, 1.05), title=f"{cfg.model}: ICL per task category")
    ax.legend(fontsize=6, ncol=2)
    ctx.figure(fig, "categories", caption="Accuracy per task category (the category's test prompts pooled; 95% "
               "bootstrap intervals): zero-shot, ICL, the task vector and the function vector (both without "
               "demonstrations).")
    draw_layers(cfg, res, ctx)
    draw_heatmap(cfg, res, ctx)
    draw_top_heads(cfg, res, ctx, n=min(20, len(res.table("heads"))))
    draw_conditions(cfg, res, ctx, ("zero_shot", "icl", "task_vector", "fv_zero_shot"))
    draw_stability(cfg, res, ctx)


def categories(res: Results) -> pd.DataFrame:
    """Per category: each condition's accuracy over the pooled test prompts of its tasks, with intervals."""
    pred, metrics = res.table("predictions"), res.table("metrics")
    category = dict(zip(metrics["task"], metrics["category"]))
    rows = []
    for cat in dict.fromkeys(metrics["category"]):
        sub = pred[pred["task"].map(category) == cat]
        row = {"category": cat, "n_tasks": int((metrics["category"] == cat).sum())}
        for c in ("zero_shot", "icl", "task_vector", "fv_zero_shot"):
            est = accuracy_estimate(sub.loc[sub["condition"] == c, "correct"].to_numpy(dtype=float))
            row.update({c: est.value, f"{c}_lo": est.lo, f"{c}_hi": est.hi})
        rows.append(row)
    return pd.DataFrame(rows)


def _ratio(means: np.ndarray) -> float:
    den = float(means[:, 1].mean())
    return float(means[:, 0].mean()) / den if den > 0 else float("nan")


@compute.verdicts
def verdicts(cfg: ProfileConfig, res: Results, ctx: RunContext) -> None:
    """A profile states facts about one model; no paper claim (the function-vector experiment has those)."""
    timing = res.json("timing")
    for c, name in (("icl", f"{cfg.k}-shot ICL accuracy"), ("zero_shot", "zero-shot accuracy")):
        ctx.claim(f"{name} (mean over tasks)", kind="engineering", paper="(profile) reported",
                  ours=two_level_estimate(scored(res, (c,))))
    ctx.claim("TV / ICL accuracy", kind="engineering", paper="(profile) reported",
              ours=two_level_estimate(scored(res, ("task_vector", "icl")), _ratio))
    ctx.claim("FV zero-shot / ICL accuracy", kind="engineering", paper="(profile) reported",
              ours=two_level_estimate(scored(res, ("fv_zero_shot", "icl")), _ratio))
    ctx.claim("FV layer (chosen on dev) / n_layers", kind="engineering", paper="(profile) reported",
              ours=Estimate.exact(timing["fv_layer"] / timing["n_layers"], "chosen on dev"))
    ctx.claim("wall time (s)", kind="engineering", paper="(issue 13) SmolLM2 quick profile under 10 minutes",
              ours=Estimate.single(timing["seconds"], "one run"),
              expect=("<", 600.0) if cfg.model == "smollm2-135m" and cfg.device == "cpu" else None)
