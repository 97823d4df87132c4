"""The main experiment: baseline vs ICL vs task vector on every task, and the layer sweep (paper §4.1-4.3)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from iclab.runtime import Estimate, Results, RunContext, experiment
from iclab.runtime import subplots
from iclab.runtime import lm_threads

from .._evaluate import CONDITIONS
from .._paper import PAPER_MODELS, SOURCE, SOURCE_AVERAGES, paper_model_means, paper_original, paper_tv_over_icl
from .._stats import accuracy_estimate

from ._common import (TaskVectorConfig, dev_curves, episode_traces, filtered_estimates, is_true, load_runner,
                      predictions_frame, run_tasks, scores, split_overlap, summary_row, task_table, tasks_of)

QUICK = dict(tasks="algorithmic_to_upper,linguistic_present_simple_past_simple,knowledge_country_capital",
             n_dev=16, n_test=16, n_baseline=16)
PAPER = dict(tasks="all", n_dev=50, n_test=50, n_baseline=100, k=5, episode_seeds=3)

# Tolerances, declared before any run (never derived from our results):
TV_ICL_TOLERANCE = 0.05  # the paper's seven models give 0.83-0.91 around their mean 0.876: ±0.05 holds them all
MEAN_TOLERANCE = 0.10  # filtered means: the paper's models spread ±0.06 (TV), ±0.05 (ICL), ±0.03 (baseline)
TASK_TOLERANCE = 0.15  # one task: about two binomial standard errors at the paper's 50 prompts (0.07)
DEPTH, DEPTH_TOLERANCE = 0.375, 0.075  # §4.3: the best layer sits at about 30-45% of the depth
PEAK_DROP = 0.20  # §4.3: after its peak the dev accuracy falls sharply (to about 0 outside knowledge tasks)
NAMES = {"baseline": "baseline", "task_vector": "task vector", "icl": "ICL"}


class MainConfig(TaskVectorConfig):
    pass


@experiment("taskvectors.main", MainConfig, presets={"quick": QUICK, "paper": PAPER},
            title="Task vectors: baseline vs ICL vs task vector, per task", paper="Hendel et al. 2023, Table 1 / Fig. 3-4")
def compute(cfg: MainConfig, ctx: RunContext) -> None:
    """For each task and episode seed choose the patch layer L on dev episodes, then score the zero-shot
    baseline, regular ICL and the task vector θ(S) patched at L into the bare query on test episodes.
    The paper's summary keeps the tasks where ICL beats the baseline by >= 0.20, decided on dev."""
    t0 = time.perf_counter()
    runner = load_runner(cfg)
    results = list(run_tasks(cfg, ctx, runner, tasks_of(cfg)))
    seconds = time.perf_counter() - t0
    metrics = task_table(results)
    predictions = predictions_frame(results)
    ctx.table(metrics, "metrics")
    ctx.table(pd.DataFrame([r.row() for r in results]), "seeds")
    ctx.table(predictions, "predictions")
    ctx.json("episodes", episode_traces(results))
    curves = dev_curves(results)
    ctx.arrays("layer_sweep", dev_accuracy=curves, tasks=metrics["task"].to_numpy(str))
    ctx.table(pd.DataFrame([{"model": cfg.model, "lm_threads": lm_threads(), "episode_seeds": cfg.episode_seeds,
                             **summary_row(metrics, predictions)}]), "summary")  # fmt: skip
    ctx.json("timing", {"seconds": seconds, "tokens": runner.tokens, "passes": runner.passes})
    _notes(cfg, ctx)


@compute.figures
def figures(cfg: MainConfig, res: Results, ctx: RunContext) -> None:
    df, sm = res.table("metrics"), res.table("summary").iloc[0]
    curves = res.arrays("layer_sweep")["dev_accuracy"].mean(1)  # (tasks, layers): mean over episode seeds

    fig, axes = subplots(1, 2, size=(5.2, 3.4))
    ax, x = axes[0, 0], np.arange(curves.shape[1])
    for t, c in zip(df["task"], curves):
        ax.plot(x, c, lw=0.8, alpha=0.6, label=t.split("_", 1)[-1])
    ax.set(xlabel="patched layer L (block output, 0-based)", ylabel="dev accuracy", title=f"{cfg.model}: per task")
    ax.legend(fontsize=5, ncol=2)
    ax = axes[0, 1]
    m, s = curves.mean(0), curves.std(0)
    ax.plot(x, m, color="C0")
    ax.fill_between(x, m - s, m + s, color="C0", alpha=0.2)
    ax.set(xlabel="patched layer L", ylabel="dev accuracy", title=f"mean ± std over {len(df)} tasks")
    ctx.figure(fig, "layer_sweep", caption=f"Task-vector dev accuracy vs patched layer, mean over {cfg.episode_seeds} "
               "episode seed(s) (paper Fig. 3: a rise to a peak in the middle layers, then a drop).")

    fig, axes = subplots(1, 1, size=(max(6, 0.55 * len(df)), 3.6))
    ax, idx, w = axes[0, 0], np.arange(len(df)), 0.27
    for j, c in enumerate(("baseline", "task_vector", "icl")):
        err = np.vstack([df[c] - df[f"{c}_lo"], df[f"{c}_hi"] - df[c]])
        ax.bar(idx + (j - 1) * w, df[c], w, yerr=err, capsize=1.5, color=f"C{j}", label=f"ours: {NAMES[c]}",
               error_kw={"lw": 0.7})
        pe = np.vstack([df[f"paper_{c}"] - df[f"paper_{c}_min"], df[f"paper_{c}_max"] - df[f"paper_{c}"]])
        ax.errorbar(idx + (j - 1) * w, df[f"paper_{c}"], yerr=pe, fmt="D", ms=3, color="k", mfc=f"C{j}",
                    lw=0.7, capsize=1.5, label="paper: 7-model mean, min-max" if j == 0 else None)
    labels = [t.split("_", 1)[-1] + ("*" if paper_original(t) != t else "") for t in df["task"]]
    ax.set_xticks(idx, labels, rotation=60, ha="right", fontsize=7)
    ax.set(ylabel="test accuracy", ylim=(0, 1.08))
    ax.set_title(f"{cfg.model}, k={cfg.k}, template {cfg.template}", pad=20)
    ax.legend(fontsize=6, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ctx.figure(fig, "accuracy", caption="Baseline (no demonstrations), task vector and regular ICL accuracy per task "
               "(bars: ours, 95% bootstrap intervals over the test prompts of every episode seed) beside the paper's "
               "numbers for the same task (diamonds: mean over its seven 2.8B-30B models, whiskers: their range). "
               "* a substitute task: the paper's numbers are for the task it replaces.")

    fig, axes = subplots(1, 1, size=(5.0, 3.0))
    ax = axes[0, 0]
    paper = [tv / icl for _, tv, icl, _ in paper_model_means().values()]
    ax.bar(np.arange(len(paper)), paper, color="0.7", label="paper (appendix table)")
    ours = len(paper)
    if np.isfinite(sm["tv_over_icl"]):
        ax.bar([ours], [sm["tv_over_icl"]], color="C1", label=f"ours ({int(sm['n_tasks'])} tasks)",
               yerr=[[sm["tv_over_icl"] - sm["tv_over_icl_lo"]], [sm["tv_over_icl_hi"] - sm["tv_over_icl"]]], capsize=3)
    ax.axhspan(paper_tv_over_icl() - TV_ICL_TOLERANCE, paper_tv_over_icl() + TV_ICL_TOLERANCE, color="C0", alpha=0.12,
               label="tolerance of the claim")
    ax.set_xticks(np.arange(len(paper) + 1), [*PAPER_MODELS, cfg.model], rotation=45, ha="right", fontsize=7)
    ax.set(ylabel="TV / ICL (filtered tasks)", ylim=(0, 1.1))
    ax.legend(fontsize=6, loc="lower right")
    ctx.figure(fig, "tv_over_icl", caption="Task-vector over ICL accuracy on the tasks where ICL beats the baseline "
               "by >= 0.20: the paper's seven models (from its appendix table) and ours with its two-level bootstrap "
               "interval (tasks, then test prompts); the band is the claim's tolerance.")


@compute.verdicts
def verdicts(cfg: MainConfig, res: Results, ctx: RunContext) -> None:
    df, pred = res.table("metrics"), res.table("predictions")
    est = filtered_estimates(df, pred)
    kept = df[is_true(df["kept"])]
    means = np.mean([m[:3] for m in paper_model_means().values()], axis=0)  # baseline, TV, ICL over 7 models
    filt = f"the {len(kept)} of {len(df)} tasks whose dev ICL beats the dev baseline by >= 0.20"
    ctx.claim("TV / ICL accuracy, filtered tasks", kind="paper-value",
              paper="the task vector recovers most of ICL's accuracy: TV / ICL 0.83-0.91 per model",
              paper_value=round(paper_tv_over_icl(), 3), source=f"{SOURCE_AVERAGES}; mean over the 7 models",
              ours=est["tv_over_icl"], tolerance=TV_ICL_TOLERANCE,
              note=f"Ours: mean TV over mean ICL on {filt} (the paper filters on the numbers it scores; we decide on "
                   f"dev, compared as counts). {cfg.model} is far smaller than the paper's 2.8B-30B models.")
    for j, c in enumerate(("baseline", "task_vector", "icl")):
        ctx.claim(f"mean {NAMES[c]} accuracy, filtered tasks", kind="paper-value",
                  paper=f"mean {NAMES[c]} accuracy over the filtered tasks (7-model mean)",
                  paper_value=round(float(means[j]), 3), source=SOURCE_AVERAGES, ours=est[c],
                  tolerance=MEAN_TOLERANCE, note=f"Ours on {filt}; our tasks and model differ (see the notes).")
    for r in df.itertuples():
        if paper_original(r.task) != r.task or not isinstance(r.paper_task, str):
            continue  # a substitute task, or not one of the paper's: nothing to compare
        for c in CONDITIONS:
            ctx.claim(f"{NAMES[c]} accuracy: {r.task}", kind="paper-value",
                      paper=f"{NAMES[c]} accuracy on {r.task} (7-model mean; range "
                            f"{getattr(r, f'paper_{c}_min'):.2f}-{getattr(r, f'paper_{c}_max'):.2f})",
                      paper_value=float(getattr(r, f"paper_{c}")), source=SOURCE,
                      ours=accuracy_estimate(scores(pred, r.task, (c,))[:, 0]), tolerance=TASK_TOLERANCE)
    _layer_claims(cfg, res, ctx, kept)
    ctx.claim("dev / test query overlap", kind="sanity", paper="(ours) dev and test queries are disjoint halves",
              ours=Estimate.exact(split_overlap(res.json("episodes")), "count over every task and episode seed"),
              expect=("<=", 0))
    ctx.claim("tasks passing the filter (on dev)", kind="engineering", paper="(the paper) 17-18 of 18 per model",
              ours=Estimate.exact(len(kept), f"count of {len(df)} tasks"))
    ctx.claim("wall time (s)", kind="engineering", paper="(issue) the quick preset stays small",
              ours=Estimate.single(res.json("timing")["seconds"], "one run"))


def _layer_claims(cfg: MainConfig, res: Results, ctx: RunContext, kept: pd.DataFrame) -> None:
    """§4.3 on the filtered tasks: where the best dev layer sits, and the drop after the peak."""
    sweep = res.arrays("layer_sweep")
    curves = sweep["dev_accuracy"]  # (tasks, seeds, layers)
    rows = np.isin(sweep["tasks"], kept["task"].to_numpy(str))
    n_layers = curves.shape[-1]
    depth = np.median(np.argmax(curves[rows], axis=-1), axis=1) / n_layers  # per task, over seeds
    ctx.claim("best layer / depth, median over filtered tasks", kind="paper-value",
              paper="the best layer sits at about 30-45% of the depth (later for knowledge tasks)", paper_value=DEPTH,
              source="§4.3 layer sweep (per-task best layers of LLaMA 7B, GPT-J, Pythia 6.9B)",
              ours=Estimate.bootstrap(depth, statistic=np.median, unit="tasks"), tolerance=DEPTH_TOLERANCE,
              note=f"0-based layer index / {n_layers} blocks, as the paper's 14/32; each task's layer chosen on dev "
                   "(median over its episode seeds).")
    mean_curve = curves[rows].mean(1)  # (tasks, layers)
    drop = mean_curve.max(1) - mean_curve[:, -1]
    ctx.claim("dev accuracy: peak - last layer, mean over filtered tasks", kind="paper-shape",
              paper="a sharp rise to a peak in the middle layers, then a sharp drop",
              source="§4.3 layer sweep (Fig. 3)", ours=Estimate.bootstrap(drop, unit="tasks"),
              expect=(">=", PEAK_DROP))


def _notes(cfg: MainConfig, ctx: RunContext) -> None:
    ctx.note(f"Model {cfg.model}: far smaller (135M-270M) than the paper's 2.8B-30B models, and dequantised from "
             "4-bit GGUF weights, so absolute accuracies are not expected to match; the per-task claims compare "
             "with the mean over the paper's seven models.")
    ctx.note(f"{cfg.episode_seeds} episode seed(s) per task: each redraws the dev/test split, the episodes and the "
             "dev-chosen layer; per-task intervals bootstrap the pooled test prompts, the filtered means a two-level "
             "bootstrap over tasks and then their prompts.")
    ctx.note("The paper's filter (ICL - baseline >= 0.20) is decided on the dev episodes and compared as exact "
             "fractions of counts (a gap of exactly 0.20 passes); table summary also gives the paper's procedure, "
             "the filter on the test numbers (n_tasks_test_filter, tv_over_icl_test_filter).")
    ctx.note("Dev and test queries come from disjoint halves of each task's pairs (the paper's code samples both "
             "from one pool); dummy queries differ from the query and the demonstrations.")
    ctx.note("Two knowledge tasks are substitutes (CounterFact is not offline): person->sport for "
             "person->language, landmark->country for location->religion; they get no per-task claim. Translation "
             "counts any translation the source data lists for a word as correct (no WordNet synonym data offline).")
