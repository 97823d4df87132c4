"""grammar.ablation: take the shared iterated structure out of pretraining, and ICL does not emerge."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from iclab.runtime import Results, RunContext, experiment
from iclab.runtime import subplots

from .._evaluate import model_curve, prompt_inputs
from ._common import (
    QUICK_ONE_SEED,
    HEADLINE,
    PAPER_DATA,
    PAPER_SIZES,
    PAPER_TRAINING,
    Size,
    TrainedModelsConfig,
    key,
    load_point,
    mean_and_bars,
    metrics_of,
    name_of,
    over_seeds,
    pretrain_config,
    train_points,
)

DESCRIBE = {"shared": "full CAG (copies share τ)", "unshared": "each copy draws its own τ",
            "none": "no ITER blocks"}
PAPER = ("Hahn & Goyal 2023, abstract, claim 2 (docs/grammar.md#the-papers-claims); the ablation is "
         "ours, after GINC's random-data ablation")
AT_MOST = 0.5  # ablated / full accuracy that counts as "ICL does not emerge" (declared before any run)


def below_fraction(ablated: np.ndarray, full: np.ndarray) -> float:
    """Ablated accuracy − AT_MOST × full accuracy (≤ 0: at most that fraction; linear, so defined at 0)."""
    return float(np.mean(ablated) - AT_MOST * np.mean(full))


class AblationConfig(TrainedModelsConfig):
    size: Size = Field(HEADLINE, description="(d_model, n_layers) of every model.")
    variants: list[Literal["unshared", "none"]] = Field(["unshared"], min_length=1,
                                                        description="Ablated worlds, each against the full one.")

    def model_sizes(self) -> list[tuple[int, int]]:
        return [self.size]


@experiment(
    "grammar.ablation",
    AblationConfig,
    presets={"quick": QUICK_ONE_SEED, "quick-3seeds": {}, "paper": dict(**PAPER_TRAINING, size=PAPER_SIZES[-1], data_tokens=PAPER_DATA[-1],
                                        variants=["unshared", "none"], n_prompts=200)},
    title="Ablation: pretraining without shared iterated structure",
    paper="Hahn & Goyal 2023 (compositional structure is what makes ICL emerge); GINC's random-data ablation",
)
def compute(cfg: AblationConfig, ctx: RunContext) -> None:
    """Same model, data size and optimiser; only the world's iteration changes. 'unshared' keeps
    the x -> y ; format, facts and free text but every copy draws a fresh template, so a list no
    longer has one function to induce; 'none' drops iterated blocks altogether. One model per world
    and training seed, all scored on the same prompts."""
    variants = ["shared", *cfg.variants]
    points = [(v, s) for v in variants for s in cfg.train_seeds]
    runs = train_points(ctx, cfg, [pretrain_config(cfg, cfg.size, cfg.data_tokens, seed=s, iteration=v)
                                   for v, s in points])
    n_items = max(cfg.ns) + 1
    rows, arrays = [], {}
    for (variant, s), run in zip(points, runs):
        model, world, _ = load_point(run, cfg.device)
        prim = world.tasks()["prim"]
        inputs = prompt_inputs(world, prim, n_items, cfg.n_prompts, cfg.seed)
        right = np.concatenate([model_curve(model, world, t, inputs[t.name]).correct[:, cfg.ns] for t in prim])
        arrays[key(variant, s)] = right  # (tasks * prompts, len(ns))
        val_loss = metrics_of(run)["val_loss"]
        rows += [dict(world=variant, seed=s, n_demos=n, accuracy=float(right[:, i].mean()), val_loss=val_loss)
                 for i, n in enumerate(cfg.ns)]
    ctx.table(pd.DataFrame(rows), "metrics")
    ctx.arrays("correct", **arrays)
    ctx.note("Validation loss is on each model's own world, so it is not comparable across worlds.")


@compute.figures
def figures(cfg: AblationConfig, res: Results, ctx: RunContext) -> None:
    df = res.table("metrics")
    fig, axes = subplots(1, 1)
    ax = axes[0, 0]
    for variant in ["shared", *cfg.variants]:
        d = df[df.world == variant]
        acc = d.pivot(index="n_demos", columns="seed", values="accuracy")
        m, lo, hi = np.array([mean_and_bars(row) for row in acc.to_numpy()]).T
        ax.errorbar(acc.index, m, yerr=[lo, hi], marker="o", capsize=2,
                    label=f"{DESCRIBE[variant]} (val loss {d.val_loss.mean():.2f})")
    ax.axhline(1 / cfg.world.n_objects, color="gray", ls=":", lw=1, label="chance")
    ax.set(xscale="symlog", xlabel="demonstrations", ylabel="primitive-task accuracy", ylim=(-0.02, 1.02))
    ax.legend(fontsize=7)
    ctx.figure(fig, "ablation", caption=(
        f"{name_of(cfg.size)}, {cfg.data_tokens:,} pretraining tokens, {cfg.n_prompts} prompts per primitive task; "
        f"mean over training seeds {cfg.train_seeds} with 95% t-intervals over seeds. Validation loss (mean over "
        "seeds) is on each model's own world (not comparable across)."))


@compute.verdicts
def verdicts(cfg: AblationConfig, res: Results, ctx: RunContext) -> None:
    correct = res.arrays("correct")
    i, n_hi = cfg.ns.index(max(cfg.ns)), max(cfg.ns)
    for variant in cfg.variants:
        pairs = [(correct[key(variant, s)][:, i], correct[key("shared", s)][:, i]) for s in cfg.train_seeds]
        ctx.claim(f"primitive ICL at n = {n_hi}: '{variant}' world − {AT_MOST} × full world, {name_of(cfg.size)}",
                  kind="paper-shape", paper="without shared compositional (iterated) structure in pretraining, "
                  "ICL does not emerge", source=PAPER, ours=over_seeds(pairs, below_fraction), expect=("<=", 0),
                  note=f"Accuracies on the same prompts; ≤ 0 (the ablated model at most {AT_MOST} × the full one's "
                       "accuracy) counts as ICL not emerging.")
