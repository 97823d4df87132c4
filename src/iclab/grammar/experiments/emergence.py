"""grammar.emergence: primitive-task ICL over the model-size × data-size grid, with pretraining loss."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from iclab.runtime import RunContext, experiment
from iclab.runtime.errors import IclabError
from iclab.runtime.plots import heatmap, subplots
from iclab.runtime.sweep import RunSpec, make_executor, run_spec

from ._common import (
    PAPER_DATA,
    PAPER_SIZES,
    PAPER_TRAINING,
    QUICK_DATA,
    QUICK_SIZES,
    DataTokens,
    GrammarConfig,
    Size,
    metrics_of,
    pretrain_config,
)


class EmergenceConfig(GrammarConfig):
    sizes: list[Size] = Field(QUICK_SIZES, min_length=1, description="(d_model, n_layers) grid axis.")
    data: list[DataTokens] = Field(QUICK_DATA, min_length=1, description="Pretraining-token grid axis.")
    n_eval: int = Field(8, ge=1, le=16, description="Demonstrations at which the heatmap reads ICL accuracy.")
    backend: str = Field("local", description="Sweep executor for the grid points (local process pool, serial).")
    workers: int | None = Field(None, ge=1, description="Worker processes (default: all cores).")

    def model_sizes(self) -> list[tuple[int, int]]:
        return list(self.sizes)


@experiment(
    "grammar.emergence",
    EmergenceConfig,
    presets={"quick": {}, "paper": dict(**PAPER_TRAINING, sizes=PAPER_SIZES, data=PAPER_DATA, workers=1)},
    title="Emergence of ICL with model size and data",
    paper="Hahn & Goyal 2023: ICL emerges when scaling parameters and data",
)
def run(cfg: EmergenceConfig, ctx: RunContext) -> None:
    """Every grid point is a `grammar.train` run, run through the sweep executor (so the grid is
    resumable and each point is reused by the other experiments)."""
    if ctx.runs_dir is None:
        raise IclabError("grammar.emergence needs a run store; run it through iclab")
    points = [pretrain_config(cfg, size, data) for size in cfg.sizes for data in cfg.data]
    points.sort(key=lambda p: -p.d_model ** 2 * p.n_layers * p.data_tokens)  # longest first: better packing
    specs = [RunSpec("grammar.train", p.model_dump(mode="json"), str(ctx.runs_dir)) for p in points]
    executor = make_executor(cfg.backend, min(cfg.workers or os.cpu_count() or 1, len(specs)))
    results = []
    for _, res in executor.map_unordered(run_spec, specs):
        results.append(res)
        ctx.log(f"grid point {len(results)}/{len(specs)}: {res.status} ({res.seconds:.0f} s)")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise IclabError(f"{len(failed)} grid point(s) failed; first: {failed[0].error.splitlines()[0]}")
    rows = []
    for r in results:
        m = metrics_of(Path(r.path))
        rows.append(dict(size=m["size"], params=m["params"], data_tokens=m["data_tokens"], val_loss=m["val_loss"],
                         train_loss=m["train_loss"], acc_0=m["prim_acc"][0], acc_1=m["prim_acc"][1],
                         acc_n=m["prim_acc"][cfg.n_eval], acc_16=m["prim_acc"][16], seconds=m["seconds"],
                         tokens_per_s=m["tokens_per_s"]))
    df = pd.DataFrame(rows).sort_values(["params", "data_tokens"]).reset_index(drop=True)
    ctx.table(df, "metrics")

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
    for d in data:
        s = df[df.data_tokens == d]
        ax.plot(s.params, s.acc_n, marker="o", label=f"{d / 1e6:g}M tokens")
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
        f"{1 / cfg.world.n_objects:.3f}; seed {cfg.seed}."))

    big, small = df[df["size"] == sizes[-1]], df[df["size"] == sizes[0]]
    top = big[big.data_tokens == data[-1]].acc_n.iloc[0]
    ctx.claim("grid span", paper="≥ 4 sizes over ≥ 30× parameters, ≥ 3 data sizes over ≥ 10×",
              ours=f"{len(sizes)} sizes, {df.params.max() / df.params.min():.0f}×; {len(data)} data sizes, "
                   f"{data[-1] / data[0]:.0f}×",
              passed=len(sizes) >= 4 and df.params.max() / df.params.min() >= 30 and len(data) >= 3
              and data[-1] / data[0] >= 10)
    ctx.claim("ICL at the largest size and data vs the smallest size", paper="emerges with parameters",
              ours=[round(float(top), 3), round(float(small[small.data_tokens == data[-1]].acc_n.iloc[0]), 3)],
              target="largest ≥ smallest + 0.2",
              passed=top >= small[small.data_tokens == data[-1]].acc_n.iloc[0] + 0.2)
    ctx.claim("ICL of the largest model vs its smallest data size", paper="emerges with data",
              ours=[round(float(top), 3), round(float(big[big.data_tokens == data[0]].acc_n.iloc[0]), 3)],
              target="most data ≥ least data + 0.2",
              passed=top >= big[big.data_tokens == data[0]].acc_n.iloc[0] + 0.2)
    ctx.note("Data size = pretraining tokens, each seen once, so data and compute grow together (spec §7.7 leaves "
             "this open); a fixed-compute variant repeats a smaller corpus (TrainConfig.steps).")
