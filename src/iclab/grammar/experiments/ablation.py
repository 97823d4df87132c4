"""grammar.ablation: take the shared iterated structure out of pretraining, and ICL does not emerge."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from iclab.runtime import RunContext, experiment
from iclab.runtime.plots import subplots

from ..evaluate import model_curve, prompt_inputs
from ._common import (
    PAPER_DATA,
    PAPER_SIZES,
    PAPER_TRAINING,
    QUICK_SIZES,
    Size,
    TrainedModelsConfig,
    load_point,
    metrics_of,
    pretrain_config,
    train_point,
)

DESCRIBE = {"shared": "full CAG (copies share τ)", "unshared": "each copy draws its own τ",
            "none": "no ITER blocks"}


class AblationConfig(TrainedModelsConfig):
    size: Size = Field(QUICK_SIZES[-1], description="(d_model, n_layers) of every model.")
    variants: list[Literal["unshared", "none"]] = Field(["unshared"], min_length=1,
                                                        description="Ablated worlds, each against the full one.")

    def model_sizes(self) -> list[tuple[int, int]]:
        return [self.size]


@experiment(
    "grammar.ablation",
    AblationConfig,
    presets={"quick": {}, "paper": dict(**PAPER_TRAINING, size=PAPER_SIZES[-1], data_tokens=PAPER_DATA[-1],
                                        variants=["unshared", "none"], n_prompts=200)},
    title="Ablation: pretraining without shared iterated structure",
    paper="Hahn & Goyal 2023 (compositional structure is what makes ICL emerge); GINC's random-data ablation",
)
def run(cfg: AblationConfig, ctx: RunContext) -> None:
    """Same model, data size and optimiser; only the world's iteration changes. 'unshared' keeps
    the x -> y ; format, facts and free text but every copy draws a fresh template, so a list no
    longer has one function to induce; 'none' drops iterated blocks altogether."""
    n_items = max(cfg.ns) + 1
    rows, losses = [], {}
    for variant in ["shared", *cfg.variants]:
        run_dir = train_point(ctx, pretrain_config(cfg, cfg.size, cfg.data_tokens, iteration=variant))
        model, world, _ = load_point(run_dir)
        losses[variant] = metrics_of(run_dir)["val_loss"]
        prim = world.tasks()["prim"]
        inputs = prompt_inputs(world, prim, n_items, cfg.n_prompts, cfg.seed)
        acc = np.mean([model_curve(model, world, t, inputs[t.name]).correct.mean(0) for t in prim], 0)
        rows += [dict(world=variant, n_demos=n, accuracy=float(acc[n]), val_loss=losses[variant]) for n in cfg.ns]
    df = pd.DataFrame(rows)
    ctx.table(df, "metrics")

    fig, axes = subplots(1, 1)
    ax = axes[0, 0]
    for variant in ["shared", *cfg.variants]:
        d = df[df.world == variant]
        ax.plot(d.n_demos, d.accuracy, marker="o", label=f"{DESCRIBE[variant]} (val loss {losses[variant]:.2f})")
    ax.axhline(1 / cfg.world.n_objects, color="gray", ls=":", lw=1, label="chance")
    ax.set(xscale="symlog", xlabel="demonstrations", ylabel="primitive-task accuracy", ylim=(-0.02, 1.02))
    ax.legend(fontsize=7)
    ctx.figure(fig, "ablation", caption=(
        f"d{cfg.size[0]}-L{cfg.size[1]}, {cfg.data_tokens:,} pretraining tokens, {cfg.n_prompts} prompts per "
        f"primitive task, seed {cfg.seed}. Validation loss is on each model's own world (not comparable across)."))
    n_hi = max(cfg.ns)
    full = float(df[(df.world == "shared") & (df.n_demos == n_hi)].accuracy.iloc[0])
    for variant in cfg.variants:
        abl = float(df[(df.world == variant) & (df.n_demos == n_hi)].accuracy.iloc[0])
        ctx.claim(f"primitive ICL at n = {n_hi}: full vs '{variant}'", paper="no compositional structure, no ICL",
                  ours=[round(full, 3), round(abl, 3)], target="ablated ≤ full / 2",
                  passed=abl <= full / 2)
