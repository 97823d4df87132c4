"""grammar.cot: direct prompts vs intermediate steps (model-generated and oracle) on compositions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from iclab.runtime import RunContext, experiment
from iclab.runtime.plots import subplots

from ..evaluate import generated_cot_accuracy, model_curve, prompt_inputs
from ._common import (
    PAPER_DATA,
    PAPER_SIZES,
    PAPER_TRAINING,
    QUICK_SIZES,
    Size,
    TrainedModelsConfig,
    load_point,
    pretrain_config,
    train_point,
)

MODES = {"direct": "direct x → y", "generated": "steps, model-generated z", "oracle": "steps, oracle z given"}


class CotConfig(TrainedModelsConfig):
    size: Size = Field(QUICK_SIZES[-1], description="(d_model, n_layers) of the model.")

    def model_sizes(self) -> list[tuple[int, int]]:
        return [self.size]


@experiment(
    "grammar.cot",
    CotConfig,
    presets={"quick": {}, "paper": dict(**PAPER_TRAINING, size=PAPER_SIZES[-1], data_tokens=PAPER_DATA[-1],
                                        n_prompts=200)},
    title="Chain of thought: direct vs intermediate steps on seen and held-out compositions",
    paper="Hahn & Goyal 2023, Theorem 2 and the intermediate-steps experiment",
)
def run(cfg: CotConfig, ctx: RunContext) -> None:
    """Held-out pairs f∘g never occur as a direct iteration in pretraining, so a direct prompt has
    no short derivation; showing x → g(x) => f(g(x)) splits it into two cheap ones (Theorem 2).
    'generated' lets the model write the step itself; 'oracle' gives it the true step."""
    model, world, _ = load_point(train_point(ctx, pretrain_config(cfg, cfg.size, cfg.data_tokens)))
    tasks = world.tasks()
    n_items = max(cfg.ns) + 1
    rows = []
    for kind in ("comp", "heldout"):
        inputs = prompt_inputs(world, tasks[kind], n_items, cfg.n_prompts, cfg.seed)
        for task in tasks[kind]:
            direct = model_curve(model, world, task, inputs[task.name])
            steps = model_curve(model, world, task, inputs[task.name], cot=True)
            for n in cfg.ns:
                gen, gen_step = generated_cot_accuracy(model, world, task, inputs[task.name], n)
                rows += [dict(type=kind, task=task.name, n_demos=n, mode="direct",
                              accuracy=float(direct.correct[:, n].mean()), step_accuracy=np.nan),
                         dict(type=kind, task=task.name, n_demos=n, mode="generated", accuracy=gen,
                              step_accuracy=gen_step),
                         dict(type=kind, task=task.name, n_demos=n, mode="oracle",
                              accuracy=float(steps.correct[:, n].mean()),
                              step_accuracy=float(steps.step_correct[:, n].mean()))]
    df = pd.DataFrame(rows)
    ctx.table(df, "per_task")
    mean = df.groupby(["type", "mode", "n_demos"], as_index=False)[["accuracy", "step_accuracy"]].mean()
    ctx.table(mean, "metrics")

    fig, axes = subplots(1, 2, size=(3.8, 3.0))
    for ax, kind in zip(axes[0], ("comp", "heldout")):
        for mode, label in MODES.items():
            d = mean[(mean.type == kind) & (mean["mode"] == mode)]
            ax.plot(d.n_demos, d.accuracy, marker="o", label=label)
        ax.axhline(1 / cfg.world.n_objects, color="gray", ls=":", lw=1, label="chance")
        ax.set(xscale="symlog", xlabel="demonstrations", ylabel="final-answer accuracy", ylim=(-0.02, 1.02),
               title=f"{'seen' if kind == 'comp' else 'held-out'} compositions ({len(tasks[kind])} tasks)")
    axes[0, 0].legend(fontsize=7)
    ctx.figure(fig, "cot", caption=(
        f"d{cfg.size[0]}-L{cfg.size[1]} trained on {cfg.data_tokens:,} tokens, {cfg.n_prompts} prompts per task and "
        f"n, seed {cfg.seed}. Direct: x → y demonstrations, query answered in one token. Steps: demonstrations "
        "x → z => y; 'generated' greedily writes z, '=>' and y (scored on y), 'oracle' is given the true z."))

    def acc(kind: str, mode: str, n: int) -> float:
        return float(mean[(mean.type == kind) & (mean["mode"] == mode) & (mean.n_demos == n)].accuracy.iloc[0])

    n_hi = max(cfg.ns)
    ctx.claim(f"held-out compositions, n = {n_hi}: generated steps vs direct", paper="intermediate steps help",
              ours=[round(acc("heldout", "generated", n_hi), 3), round(acc("heldout", "direct", n_hi), 3)],
              target="generated > direct + 0.2",
              passed=acc("heldout", "generated", n_hi) > acc("heldout", "direct", n_hi) + 0.2)
    ctx.claim(f"held-out compositions, n = {n_hi}: oracle step vs generated", paper="(not in paper) the oracle step "
              "isolates the second application", ours=[round(acc("heldout", "oracle", n_hi), 3),
                                                        round(acc("heldout", "generated", n_hi), 3)])
    ctx.claim(f"seen compositions, n = {n_hi}: direct", paper="seen compositions are learnt in context directly",
              ours=round(acc("comp", "direct", n_hi), 3))
