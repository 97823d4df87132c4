"""Fig. S1: separate (W_Q, W_K) vs merged W without weight decay: sample-wise double descent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from iclab.runtime import ExperimentConfig, RunContext, experiment
from iclab.runtime.plots import heatmap, subplots

from ..analysis import contrast_ratio, icl_error_floor
from iclab.runtime.seeding import make_gen, torch_threads

from ..data import SuffStats, stack_stats
from ..sampling import reduced_sufficient_stats
from ..train import train_quadratic

ALPHAS = [round(0.1 * k, 1) for k in range(1, 21)]
PAPER = dict(D=20, N=100, P_test=1000, alphas=ALPHAS, extra_alphas=[], curve_alphas=[0.3, 1.7], lr=0.01,
             weight_decay=0.0, epochs=3000, repeats=50)
MODELS = ("separate", "merged")


class FigS1Config(ExperimentConfig):
    D: int = Field(20, gt=0, description="Input dimension.")
    N: int = Field(100, gt=0, description="Prompt length (context examples).")
    P_test: int = Field(1000, gt=0, description="Test prompts per repeat, fresh tasks.")
    alphas: list[float] = Field(ALPHAS, min_length=2, description="Task diversities α = P/D² (the paper's grid).")
    extra_alphas: list[float] = Field([], description="Extra α points (e.g. the threshold D(D+1)/D²); drawn but "
                                      "not used to locate the peak on the paper's grid.")
    curve_alphas: list[float] = Field([0.3, 1.7], min_length=2, max_length=2,
                                      description="The two α of the train/test-vs-epoch panels and heatmaps.")
    lr: float = Field(0.01, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Adam's coupled weight decay (none in the paper).")
    epochs: int = Field(3000, gt=0, description="Full-batch Adam steps.")
    repeats: int = Field(50, gt=0, description="Independent repeats (data, init) per α and model.")
    n_records: int = Field(60, gt=1, description="Recorded points of the train/test curves (log-spaced epochs).")
    adam_dtype: str = Field("float32", pattern="^(float32|float64)$", description="Precision of the Adam runs.")

    @field_validator("alphas", "extra_alphas", "curve_alphas")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(a <= 0 for a in v):
            raise ValueError("every α must be > 0")
        return v


def _concat(stats: list[SuffStats]) -> SuffStats:
    """Concatenate batched statistics of equal D, N along the run axis (P may differ: unused)."""
    first = stats[0]
    return SuffStats(S=torch.cat([s.S for s in stats]), h=torch.cat([s.h for s in stats]),
                     yy=torch.cat([torch.as_tensor(s.yy) for s in stats]), P=first.P, D=first.D, N=first.N)


@experiment(
    "spinglass.figS1",
    FigS1Config,
    presets={"quick": dict(repeats=3, P_test=500, alphas=[0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 1.1, 1.2, 1.4, 1.7, 2.0]),
             "paper": PAPER},
    title="Separate vs merged linear attention: double descent at P = D(D+1)",
    paper="Li, Bai, Huang 2024, Fig. S1",
)
def run(cfg: FigS1Config, ctx: RunContext) -> None:
    """Without weight decay the merged model's D(D+1) relevant weights interpolate the P training
    prompts once P >= D(D+1): the test loss peaks at that threshold (α = P/D² ≈ 1 + 1/D) and then
    falls fast (double descent). The factorised W_Qᵀ W_K, trained by the same Adam, is implicitly
    regularised and does better below the threshold; above it the two coincide."""
    D = cfg.D
    alphas = sorted(set(cfg.alphas) | set(cfg.extra_alphas) | set(cfg.curve_alphas))
    dtype = getattr(torch, cfg.adam_dtype)
    rows, curves, weights = [], {}, {}
    records = np.unique(np.geomspace(1, cfg.epochs, cfg.n_records).round().astype(int)).tolist()
    per_chunk = max(1, 48 // cfg.repeats)  # α values trained together, so Adam groups stay full
    chunks = [alphas[k : k + per_chunk] for k in range(0, len(alphas), per_chunk)]
    with torch_threads(1):
        for c, chunk in enumerate(ctx.progress(chunks, "task diversities α", total=len(chunks))):
            Ps = [max(1, round(a * D * D)) for a in chunk]
            idx = [alphas.index(a) for a in chunk]
            train = [stack_stats([reduced_sufficient_stats(D, cfg.N, P, generator=make_gen(cfg.seed, 0, i, r))
                                  for r in range(cfg.repeats)]) for i, P in zip(idx, Ps)]
            test = [stack_stats([reduced_sufficient_stats(D, cfg.N, cfg.P_test, generator=make_gen(cfg.seed, 1, i, r))
                                 for r in range(cfg.repeats)]) for i in idx]
            train_all, test_all = _concat(train), _concat(test)  # (len(chunk) * R, n, n)
            for j, model in enumerate(MODELS):
                res = train_quadratic(train_all.S, train_all.h, train_all.yy, model=model, epochs=cfg.epochs,
                                      lr=cfg.lr, weight_decay=cfg.weight_decay, generator=make_gen(cfg.seed, 2 + j, c),
                                      test_stats=test_all, record_at=records, dtype=dtype)
                W = res.W.double()  # (len(chunk) * R, D+1, D+1) effective W
                cr = contrast_ratio(W)
                for q, (a, P) in enumerate(zip(chunk, Ps)):
                    sl = slice(q * cfg.repeats, (q + 1) * cfg.repeats)
                    train_mse, test_mse = res.train_loss[sl, -1], res.test_loss[sl, -1]  # (R,) float64
                    for r in range(cfg.repeats):
                        rows.append(dict(alpha=a, P=P, model=model, repeat=r, on_paper_grid=a in cfg.alphas,
                                         train_mse=float(train_mse[r]), test_mse=float(test_mse[r]),
                                         contrast_ratio=float(cr[sl][r])))
                    curves[(model, a)] = (res.epochs.numpy(), res.train_loss[sl].numpy(), res.test_loss[sl].numpy())
                    weights[(model, a)] = W[sl][0].numpy()
    df = pd.DataFrame(rows)
    ctx.table(df, "metrics")
    summ = df.groupby(["model", "alpha"]).agg(P=("P", "first"), test_mean=("test_mse", "mean"),
                                              test_std=("test_mse", "std"), train_mean=("train_mse", "mean"),
                                              on_paper_grid=("on_paper_grid", "first")).reset_index()
    ctx.table(summ, "summary")
    ctx.arrays("curves", **{f"{k}_{m}_a{a}": x for (m, a), c in curves.items()
                            for k, x in zip(("epochs", "train", "test"), c) if k != "epochs"},
               epochs=next(iter(curves.values()))[0])
    ctx.arrays("weights", **{f"W_{m}_a{a}": W for (m, a), W in weights.items() if a in cfg.curve_alphas})

    # -- figures ------------------------------------------------------------------------------
    a_lo, a_hi = cfg.curve_alphas
    thr = D * (D + 1) / D**2
    e_min = icl_error_floor(D, cfg.N)
    fig, axes = subplots(1, 3, size=(3.8, 3.2))
    style = {"separate": ("C0", "W_Q, W_K separate"), "merged": ("C3", "W merged")}
    for ax, a, tag in ((axes[0, 0], a_lo, "(a)"), (axes[0, 2], a_hi, "(c)")):
        for model in MODELS:
            ep, tr, te = curves[(model, a)]
            col, lab = style[model]
            ax.plot(ep, te.mean(0), color=col, label=f"test, {lab}")
            ax.plot(ep, tr.mean(0), color=col, ls="--", lw=0.8, label=f"train, {lab}")
        ax.axhline(e_min, color="gray", ls="-.", lw=0.8, label="(D+1)/(N+D+1)")
        ax.set(yscale="log", xscale="symlog", xlim=(0, cfg.epochs * 1.1), xlabel="epoch (symlog)", ylabel="MSE",
               title=f"{tag} α = {a}")
        ax.legend(fontsize=6)
    ax = axes[0, 1]
    for model in MODELS:
        s = summ[summ.model == model]
        col, lab = style[model]
        ax.errorbar(s.alpha, s.test_mean, yerr=s.test_std, fmt="o-", ms=3, capsize=2, color=col, label=lab)
    ax.axvline(thr, color="k", ls=":", lw=1, label=f"P = D(D+1) (α={thr:.3g})")
    ax.axhline(e_min, color="gray", ls="-.", lw=0.8, label="(D+1)/(N+D+1)")
    ax.set(yscale="log", xlabel="α = P / D²", ylabel="test MSE", title="(b) test loss vs α")
    ax.legend(fontsize=6)
    caption = (f"D={D}, N={cfg.N}, P_test={cfg.P_test}, no weight decay (wd={cfg.weight_decay:g}), full-batch Adam "
               f"lr={cfg.lr:g}, {cfg.epochs} epochs, {cfg.repeats} repeats, seed {cfg.seed}.")
    ctx.figure(fig, "double_descent", caption=(
        f"{caption} (b) test MSE vs α = P/D² (mean ± std) for the separate (W_Qᵀ W_K, d_k = D+1) and merged "
        f"models; (a, c) mean train (dashed) / test MSE vs epoch at α = {a_lo} and α = {a_hi}. Paper: a sharp "
        "peak at the interpolation threshold P = D(D+1), separate better below it, the two coincide above."))
    fig, axes = subplots(1, 4, size=(3.3, 3.0))
    for k, (model, a) in enumerate([(m, a) for m in MODELS for a in (a_lo, a_hi)]):
        heatmap(axes[0, k], weights[(model, a)], f"{style[model][1]}, α={a}")
    ctx.figure(fig, "weights", caption=(
        f"{caption} Effective W (W_Qᵀ W_K for the separate model) of repeat 0 after training. Paper (d, e): "
        f"random at α = {a_lo}, diagonal at α = {a_hi}."))

    # -- claims -------------------------------------------------------------------------------
    grid = summ[summ.on_paper_grid]
    step = float(np.min(np.diff(sorted(cfg.alphas))))
    lo_t, hi_t = thr - step / 2 - 1e-9, thr + step / 2 + 1e-9  # the grid points nearest the threshold
    for model in MODELS:
        s = grid[grid.model == model]
        peak = float(s.alpha.iloc[int(np.argmax(s.test_mean.to_numpy()))])
        ctx.claim(f"test-loss peak α on the paper grid ({model})", paper="a sharp peak at P = D(D+1), α ≈ 1",
                  ours=peak, target=f"in [{lo_t:.2f}, {hi_t:.2f}] (grid points next to α = {thr:.3g})",
                  passed=lo_t <= peak <= hi_t)
    if cfg.extra_alphas:
        s = summ[summ.model == "merged"]
        ctx.claim("test-loss peak α incl. extra points (merged)", paper=f"peak at α = D(D+1)/D² = {thr:.3g}",
                  ours=float(s.alpha.iloc[int(np.argmax(s.test_mean.to_numpy()))]))
    piv = grid.pivot(index="alpha", columns="model", values="test_mean")
    below, above = piv[piv.index < 1.0], piv[piv.index > thr + 0.1]
    frac_better = float((below.separate < below.merged).mean()) if len(below) else float("nan")
    ctx.claim("fraction of α < 1 where separate beats merged", paper="separate does better below the threshold",
              ours=round(frac_better, 3), target="= 1", passed=frac_better == 1.0)
    rel = float(((above.separate - above.merged).abs() / above.merged).max()) if len(above) else float("nan")
    ctx.claim(f"max relative |separate − merged| for α > {thr + 0.1:.3g}",
              paper="the two coincide above the threshold",
              ours=round(rel, 4))
    cr = df[df.alpha.isin(cfg.curve_alphas)].groupby(["model", "alpha"]).contrast_ratio.mean()
    ctx.claim(f"contrast ratio of W, α={a_lo} vs α={a_hi} (separate, merged)",
              paper="random at small α, diagonal at large α",
              ours=[round(float(cr[(m, a)]), 3) for m in MODELS for a in (a_lo, a_hi)],
              target="larger at the larger α for both", passed=all(cr[(m, a_hi)] > cr[(m, a_lo)] for m in MODELS))
    ctx.note(f"P = round(α D²); the interpolation threshold is P = D(D+1) = {D * (D + 1)} (α = {thr:.4g}), "
             "which the paper's grid brackets by α = 1.0 and 1.1.")
    ctx.note("Both models train with full-batch Adam on the training sufficient statistics (exactly torch's "
             f"update, {cfg.adam_dtype}); the separate model's gradients are W_K Gᵀ and W_Q G with G = ∂MSE/∂W. "
             "d_k = D+1; init N(0, 1/(D+1)) for every entry. Test MSE from the test sufficient statistics (float64).")
    ctx.note("Prompts drawn by the exact reduced sampler (see spinglass.fig4b); each repeat has its own "
             "training set, test set (fresh tasks) and init.")
    ctx.note("The heatmaps show W_Qᵀ W_K, the model's effective matrix (the official plot computes W_q W_kᵀ, "
             "spec §7.5).")
