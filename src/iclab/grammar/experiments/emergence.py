"""grammar.emergence: primitive-task ICL over the model-size × data-size grid, with pretraining loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from iclab.runtime import Estimate, Results, RunContext, experiment
from iclab.runtime import heatmap, subplots

from ._common import (
    PAPER_DATA,
    PAPER_SIZES,
    PAPER_TRAINING,
    QUICK_DATA,
    QUICK_SIZES,
    DataTokens,
    Size,
    TrainingRunsConfig,
    key,
    mean_diff,
    metrics_of,
    pretrain_config,
    train_points,
)

PAPER = "Hahn & Goyal 2023, abstract, claim 6 (docs/grammar.md#the-papers-claims)"
EMERGES = 0.2  # accuracy gain that counts as ICL emerging along an axis (declared before any run)


class EmergenceConfig(TrainingRunsConfig):
    sizes: list[Size] = Field(QUICK_SIZES, min_length=2, description="(d_model, n_layers) grid axis.")
    data: list[DataTokens] = Field(QUICK_DATA, min_length=2, description="Pretraining-token grid axis.")
    n_eval: int = Field(8, ge=1, le=16, description="Demonstrations at which the heatmap reads ICL accuracy.")

    def model_sizes(self) -> list[tuple[int, int]]:
        return list(self.sizes)


@experiment(
    "grammar.emergence",
    EmergenceConfig,
    presets={"quick": {}, "paper": dict(**PAPER_TRAINING, sizes=PAPER_SIZES, data=PAPER_DATA, workers=1)},
    title="Emergence of ICL with model size and data",
    paper="Hahn & Goyal 2023: ICL emerges when scaling parameters and data",
)
def compute(cfg: EmergenceConfig, ctx: RunContext) -> None:
    """Every grid point is a `grammar.train` run (training seed = the experiment's seed), trained
    through the sweep executor, so the grid is resumable and each point is reused by the other
    experiments. Saves each point's per-prompt correctness at n_eval for the claims' intervals."""
    points = [pretrain_config(cfg, size, data) for size in cfg.sizes for data in cfg.data]
    rows, correct = [], {}
    for p, path in zip(points, train_points(ctx, cfg, points)):
        m = metrics_of(path)
        rows.append(dict(size=m["size"], params=m["params"], data_tokens=m["data_tokens"], val_loss=m["val_loss"],
                         train_loss=m["train_loss"], acc_0=m["prim_acc"][0], acc_1=m["prim_acc"][1],
                         acc_n=m["prim_acc"][cfg.n_eval], acc_16=m["prim_acc"][16], seconds=m["seconds"],
                         tokens_per_s=m["tokens_per_s"]))
        with np.load(path / "arrays" / "icl.npz") as z:
            correct[key(m["size"], m["data_tokens"])] = z["correct"][:, :, cfg.n_eval].reshape(-1)  # (K * P,)
    df = pd.DataFrame(rows).sort_values(["params", "data_tokens"]).reset_index(drop=True)
    ctx.table(df, "metrics")
    ctx.arrays("correct", **correct)
    ctx.note("Data size = pretraining tokens, each seen once, so data and compute grow together (an open choice "
             "of ours, docs/grammar.md); a fixed-compute variant repeats a smaller corpus (TrainConfig.steps).")
    ctx.note(f"One training seed ({cfg.seed}) per grid point: the intervals are over the evaluation prompts of that "
             "seed, not over seeds (grammar.icl judges primitive ICL over several training seeds).")


@compute.figures
def figures(cfg: EmergenceConfig, res: Results, ctx: RunContext) -> None:
    df = res.table("metrics")
    sizes = list(dict.fromkeys(df["size"]))
    data = sorted(df.data_tokens.unique())
    acc = df.pivot(index="size", columns="data_tokens", values="acc_n").loc[sizes, data].to_numpy()
    loss = df.pivot(index="size", columns="data_tokens", values="val_loss").loc[sizes, data].to_numpy()
    fig, axes = subplots(1, 4, size=(3.6, 3.1))
    for ax, M, title in ((axes[0, 0], acc, f"ICL accuracy, {cfg.n_eval} demos"), (axes[0, 1], loss, "validation loss")):
        heatmap(ax, M, title, cmap="viridis", symmetric=False)
        ax.set_xticks(range(len(data)), [f"{d / 1e6:g}M" for d in data])
        ax.set_yticks(range(len(sizes)), sizes)
        ax.set_xlabel("pretraining tokens")
        for (i, j), v in np.ndenumerate(M):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < M.max() * 0.6 else "k")
    ax = axes[0, 2]
    correct = res.arrays("correct")
    for d in data:
        s = df[df.data_tokens == d]
        ci = [Estimate.bootstrap(correct[key(z, d)]).interval for z in s["size"]]
        bars = np.abs(np.array([[lo, hi] for lo, hi in ci]).T - s.acc_n.to_numpy())  # (2, n_sizes)
        ax.errorbar(s.params, s.acc_n, yerr=bars, marker="o", capsize=2, label=f"{d / 1e6:g}M tokens")
    ax.axhline(1 / cfg.world.n_objects, color="gray", ls=":", lw=1)
    ax.set(xscale="log", xlabel="parameters", ylabel=f"accuracy ({cfg.n_eval} demos)", ylim=(-0.02, 1.02))
    ax.legend(fontsize=7)
    ax = axes[0, 3]
    ax.scatter(df.val_loss, df.acc_n, c=np.log10(df.params), cmap="viridis")
    ax.set(xlabel="validation loss", ylabel=f"accuracy ({cfg.n_eval} demos)", title="ICL vs pretraining loss")
    ctx.figure(fig, "emergence", caption=(
        f"Primitive-task ICL (greedy accuracy after {cfg.n_eval} demonstrations, mean over the "
        f"{cfg.world.n_functions} primitive tasks) and validation loss over {len(sizes)} model sizes × {len(data)} "
        f"data sizes (each token seen once), world of {cfg.world.n_objects} objects; chance "
        f"{1 / cfg.world.n_objects:.3f}; one training seed ({cfg.seed}); error bars: 95% bootstrap over prompts."))


@compute.verdicts
def verdicts(cfg: EmergenceConfig, res: Results, ctx: RunContext) -> None:
    df = res.table("metrics")
    correct = res.arrays("correct")
    sizes = list(dict.fromkeys(df["size"]))
    big, small, most, least = sizes[-1], sizes[0], int(df.data_tokens.max()), int(df.data_tokens.min())
    ctx.claim("parameter span of the grid (largest / smallest)", kind="engineering",
              paper="(issue) ≥ 4 sizes over ≥ 30× parameters", ours=Estimate.exact(df.params.max() / df.params.min()),
              expect=(">=", 30))
    ctx.claim("data span of the grid (most / least tokens)", kind="engineering",
              paper="(issue) ≥ 3 data sizes over ≥ 10×", ours=Estimate.exact(most / least), expect=(">=", 10))
    ctx.claim("training time of the grid (s, summed over points)", kind="engineering", paper="(ours) cost",
              ours=Estimate.exact(df.seconds.sum(), "measured once"))
    ctx.claim(f"ICL with parameters: accuracy at n = {cfg.n_eval}, {big} − {small} ({most:,} tokens)",
              kind="paper-shape", paper="ICL emerges when scaling parameters", source=PAPER,
              ours=Estimate.bootstrap(correct[key(big, most)], correct[key(small, most)], statistic=mean_diff,
                                      unit="prompts of one training seed"),
              expect=(">=", EMERGES), note=f"A gain of {EMERGES} in accuracy counts as emerging; one training seed.")
    ctx.claim(f"ICL with data: accuracy at n = {cfg.n_eval}, {big}, {most:,} − {least:,} tokens", kind="paper-shape",
              paper="ICL emerges when scaling data", source=PAPER,
              ours=Estimate.bootstrap(correct[key(big, most)], correct[key(big, least)], statistic=mean_diff,
                                      unit="prompts of one training seed"),
              expect=(">=", EMERGES), note=f"A gain of {EMERGES} in accuracy counts as emerging; one training seed.")
