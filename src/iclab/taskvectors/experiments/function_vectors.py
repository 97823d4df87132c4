"""Function vectors (Todd et al. 2024) beside task vectors: which heads carry the task, and where a
sum of their outputs, added to the residual stream, restores the task without demonstrations."""

from __future__ import annotations

import numpy as np

from iclab.runtime import Estimate, Results, RunContext, experiment

from .._function_vectors import concentration, top_depth
from .._stats import two_level_estimate
from ._fv import (FV_TASKS, FunctionVectorConfig, compute_function_vectors, draw_conditions, draw_heatmap, draw_layers,
                  draw_natural, draw_stability, draw_top_heads, scored)

# quick: the two tasks of the line's other quick presets (taskvectors.templates), minutes on 2 cores
QUICK = dict(tasks="algorithmic_to_upper,linguistic_present_simple_past_simple", n_dev=8, n_test=16,
             n_baseline=8, n_clean=20, n_corrupt=8)
PAPER = dict(tasks=FV_TASKS, n_dev=50, n_test=50, n_baseline=50, n_clean=100, n_corrupt=25, k=10, episode_seeds=1)

# Expectations, declared before any run (the paper states shapes; its numbers are for 6B-70B models):
CONCENTRATION = 3.0  # "a small set of heads": the top k carry >= 3x their share of the heads' positive AIE
EARLY_MIDDLE = (0.2, 0.6)  # the FV paper's top heads sit in the early-middle layers (GPT-J: about 9-15 of 28)
RECOVERED = 0.5  # "much of" ICL's gain over zero-shot comes back with the FV alone: at least half
SOURCE = "Todd et al. 2024, Function Vectors in Large Language Models (ICLR 2024)"


class FunctionVectorsConfig(FunctionVectorConfig):
    pass


@experiment("taskvectors.function_vectors", FunctionVectorsConfig, presets={"quick": QUICK, "paper": PAPER},
            title="Function vectors: the heads that carry the task, and the FV beside the TV",
            paper="Todd et al. 2024, Fig. 2 (AIE heatmap), Table 1 (zero-shot, shuffled), portability")
def compute(cfg: FunctionVectorsConfig, ctx: RunContext) -> None:
    """Task vectors first (dev layer sweep, then baseline / ICL / TV on test, Q:/A: template, 10 shots),
    then the indirect effect of every attention head on shuffled-label dev prompts, the function vector of
    the top heads, its layer chosen on dev, and the FV on the TV's test episodes: zero-shot, added to a
    shuffled-label prompt, and in natural-text sentences."""
    compute_function_vectors(cfg, ctx)


@compute.figures
def figures(cfg: FunctionVectorsConfig, res: Results, ctx: RunContext) -> None:
    draw_heatmap(cfg, res, ctx)
    draw_top_heads(cfg, res, ctx)
    draw_layers(cfg, res, ctx)
    draw_conditions(cfg, res, ctx)
    draw_natural(cfg, res, ctx)
    draw_stability(cfg, res, ctx)


def _gain_ratio(means: np.ndarray) -> float:
    """(FV zero-shot - zero-shot) / (ICL - zero-shot), from per-task means (T, 3) [fv, zero-shot, icl]."""
    den = float((means[:, 2] - means[:, 1]).mean())
    return float((means[:, 0] - means[:, 1]).mean()) / den if den > 0 else float("nan")


def _difference(means: np.ndarray) -> float:
    return float((means[:, 0] - means[:, 1]).mean())


@compute.verdicts
def verdicts(cfg: FunctionVectorsConfig, res: Results, ctx: RunContext) -> None:
    timing, heads = res.json("timing"), res.arrays("heads")
    ies, k = list(heads["ie"]), cfg.n_top_heads
    n_heads = timing["n_layers"] * timing["n_heads"]
    v, lo, hi = concentration(ies, k, seed=cfg.seed)
    ctx.claim(f"top-{k} heads' share of the positive AIE / their share of heads", kind="paper-shape",
              paper="a small number of attention heads carry the task (most heads have AIE near 0)", source=SOURCE,
              ours=Estimate(v, lo, hi, len(ies), f"95% bootstrap over the scoring half's prompts of {len(ies)} tasks"),
              expect=(">=", CONCENTRATION),
              note=f"Heads chosen on one half of each task's corrupted prompts, their share measured on the other "
                   f"half; {k} of {n_heads} heads ({k / n_heads:.1%}) would hold that share of the AIE by chance (1).")
    v, lo, hi = top_depth(ies, k, seed=cfg.seed)
    ctx.claim(f"median depth of the top-{k} heads (layer / n_layers)", kind="paper-shape",
              paper="the heads with the largest AIE sit in the early-middle layers", source=SOURCE,
              ours=Estimate(v, lo, hi, len(ies), "95% bootstrap over prompts, heads re-ranked each time"),
              expect=("between", *EARLY_MIDDLE))

    zs = scored(res, ("fv_zero_shot", "zero_shot", "icl"))
    ctx.claim("FV zero-shot - zero-shot accuracy (mean over tasks)", kind="paper-shape",
              paper="the FV makes the model perform the task zero-shot", source=SOURCE,
              ours=two_level_estimate(zs, _difference), expect=(">", 0.0))
    ctx.claim("(FV zero-shot - zero-shot) / (ICL - zero-shot)", kind="paper-shape",
              paper="the FV restores much of the ICL accuracy without demonstrations", source=SOURCE,
              ours=two_level_estimate(zs, _gain_ratio), expect=(">=", RECOVERED),
              note="'Much of' read as at least half of ICL's gain over the zero-shot prompt, a bar set before any run.")
    sh = scored(res, ("fv_shuffled", "icl_shuffled"))
    ctx.claim("FV + shuffled ICL - shuffled ICL accuracy", kind="paper-shape",
              paper="adding the FV to shuffled-label prompts restores the task", source=SOURCE,
              ours=two_level_estimate(sh, _difference), expect=(">", 0.0))
    if not res.table("natural").empty:
        nat = _natural_scores(res)
        ctx.claim("natural text: answer rate with FV - without (mean over tasks and sentences)", kind="paper-shape",
                  paper="the FV transfers to natural-text prompts (portability)", source=SOURCE,
                  ours=two_level_estimate(nat, _difference), expect=(">", 0.0),
                  note="Our three sentences, not the paper's; the answer must appear as a whole word.")
    ctx.claim("forward tokens of the head measurements: naive / ours", kind="engineering",
              paper="(issue 13) >= 20x fewer forward tokens than rerunning the prompt per head (SmolLM2's 270 heads)",
              ours=Estimate.exact(timing["aie_naive_tokens"] / timing["aie_tokens"], "counted tokens"),
              expect=(">=", 20.0) if n_heads >= 270 else None,
              note=f"Ours counts every token of the head measurements, the clean prompts of the mean activations "
                   f"included; the naive count only the corrupted prompts, once plus once per head (a conservative "
                   f"ratio). The ratio cannot exceed n_heads + 1 = {n_heads + 1}, so the 20x target is checked on "
                   "models with at least 270 heads, as the issue states it, and reported otherwise.")
    ctx.claim("wall time (s)", kind="engineering", paper="(issue) the quick preset stays small",
              ours=Estimate.single(timing["seconds"], "one run"))


def _natural_scores(res: Results) -> list[np.ndarray]:
    """Per task, (n_test * sentences, 2) [with FV, without] natural-text scores on the same prompts."""
    pred = res.table("predictions")
    out = []
    for task in dict.fromkeys(pred["task"]):
        sub = pred[pred["task"] == task]
        cols = [np.concatenate([sub[sub["condition"] == c]["correct"].to_numpy(dtype=float)
                                for c in sorted(set(sub["condition"])) if c.startswith("natural") and c.endswith(s)])
                for s in ("_fv", "_none")]
        out.append(np.stack(cols, 1))
    return out
