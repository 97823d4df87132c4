"""Fig. S4: ICL test error vs token correlation c, AMP vs Adam."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from iclab.runtime import ExperimentConfig, RunContext, experiment
from iclab.runtime.plots import subplots

from iclab.runtime.seeding import make_gen, torch_threads

from ..amp import amp
from ..data import stack_stats
from ..sampling import reduced_sufficient_stats
from ..spinglass import SpinGlass
from ..train import train_quadratic

CS = [round(float(c), 4) for c in np.linspace(0.05, 0.95, 19)]
PAPER = dict(D=20, N=200, P_train=10_000, P_test=1000, cs=CS, token_model="equicorrelated", weight_decay=0.01,
             amp_lam0=None, lr=1e-3, epochs=5000, repeats=10, beta=100.0, damping=0.9, amp_steps=200, amp_tol=5e-6)


class FigS4Config(ExperimentConfig):
    D: int = Field(20, gt=0, description="Input dimension.")
    N: int = Field(200, ge=2, description="Prompt length (context examples); >= 2 for correlated tokens.")
    P_train: int = Field(10_000, gt=0, description="Training prompts (= tasks) per repeat.")
    P_test: int = Field(1000, gt=0, description="Test prompts per repeat, fresh tasks, same c.")
    cs: list[float] = Field(CS, min_length=2, description="Token correlations c in [0, 1).")
    weight_decay: float = Field(0.01, ge=0, description="Adam's coupled weight decay wd.")
    amp_lam0: float | None = Field(None, gt=0, description="λ0 of AMP and ridge; None = wd (the paper's choice).")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate (not stated for S4: Fig. 4b's).")
    epochs: int = Field(5000, gt=0, description="Full-batch Adam steps (not stated for S4: Fig. 4b's).")
    repeats: int = Field(10, gt=0, description="Independent repeats per c (not stated in the paper).")
    beta: float = Field(100.0, gt=0, description="Inverse temperature of AMP.")
    damping: float = Field(0.9, ge=0, lt=1, description="AMP damping θ.")
    amp_steps: int = Field(200, gt=0, description="Maximum AMP sweeps (200 in the official S4 code).")
    amp_tol: float = Field(5e-6, gt=0, description="AMP convergence threshold (5e-6 in the official S4 code).")
    adam_dtype: str = Field("float32", pattern="^(float32|float64)$", description="Precision of the Adam runs.")
    token_model: str = Field("equicorrelated", pattern="^(equicorrelated|official)$", description=(
        "equicorrelated: token covariance (1−c) I + c 11ᵀ (the intended model); official: the official code's "
        "X ← X L, covariance Lᵀ L (spec §7.6; full prompts, ~20x slower)."))

    @field_validator("cs")
    @classmethod
    def _in_range(cls, v: list[float]) -> list[float]:
        if any(not 0.0 <= c < 1.0 for c in v):
            raise ValueError("every c must be in [0, 1)")
        return v


def _coupling_ratio(sg: SpinGlass) -> torch.Tensor:
    """max_i Σ_{j≠i} J_ij² / λ_i²: the cavity variance's feedback gain (at β-scaled u = βv ~ 1/λ).
    Near or above 1 the naive cavity denominators λ_i − Σ_j J_ij² u_j can reach 0 and AMP diverges."""
    J_off = sg.J - torch.diag_embed(torch.diagonal(sg.J, dim1=-2, dim2=-1))  # (R, n, n)
    return ((J_off**2).sum(-1) / sg.lam**2).amax(-1)  # (R,)


@experiment(
    "spinglass.figS4",
    FigS4Config,
    presets={"quick": dict(cs=CS[::3], repeats=3, epochs=3000), "paper": PAPER},
    title="Correlated tokens: ICL test error vs token correlation c",
    paper="Li, Bai, Huang 2024, Fig. S4",
)
def run(cfg: FigS4Config, ctx: RunContext) -> None:
    """The paper reports that with correlated tokens the theory (AMP mean m) still predicts what Adam
    reaches, along a non-monotonic curve in c. We test it with the intended equicorrelated tokens (per
    input coordinate, Cov over the N+1 tokens = (1−c) I + c 11ᵀ, query included) and, as an option,
    the official code's X ← X L tokens; the exact ground state (ridge) is the third curve."""
    lam0 = cfg.weight_decay if cfg.amp_lam0 is None else cfg.amp_lam0
    dtype = getattr(torch, cfg.adam_dtype)
    rows, conv = [], []
    with torch_threads(1):
        for i, c in enumerate(ctx.progress(cfg.cs, "token correlations", total=len(cfg.cs))):
            data = dict(token_corr=c, token_model=cfg.token_model)
            train = [reduced_sufficient_stats(cfg.D, cfg.N, cfg.P_train, generator=make_gen(cfg.seed, 0, i, r), **data)
                     for r in range(cfg.repeats)]
            test = stack_stats([reduced_sufficient_stats(cfg.D, cfg.N, cfg.P_test, generator=make_gen(cfg.seed, 1, i, r),
                                                         **data) for r in range(cfg.repeats)])
            batch = stack_stats(train)
            sg = SpinGlass.from_stats(batch, lam0)
            amp_res = amp(sg.J, sg.h, sg.lam, beta=cfg.beta, damping=cfg.damping, steps=cfg.amp_steps,
                          tol=cfg.amp_tol, generator=make_gen(cfg.seed, 2, i))
            ratio = _coupling_ratio(SpinGlass.from_stats(batch, lam0))  # (R,)
            W = {
                "amp": amp_res.m.reshape(-1, cfg.D + 1, cfg.D + 1),
                "ridge": SpinGlass.from_stats(batch, lam0).ground_state().reshape(-1, cfg.D + 1, cfg.D + 1),
                "adam": train_quadratic(batch.S, batch.h, batch.yy, epochs=cfg.epochs, lr=cfg.lr,
                                        weight_decay=cfg.weight_decay, generator=make_gen(cfg.seed, 3, i),
                                        dtype=dtype, record_every=cfg.epochs).W.double(),
            }
            for method, Wm in W.items():
                test_mse = test.mse(Wm)  # (R,)
                for r in range(cfg.repeats):
                    rows.append(dict(c=c, repeat=r, method=method, test_mse=float(test_mse[r]),
                                     converged=bool(amp_res.converged[r]) if method == "amp" else None,
                                     coupling_ratio=float(ratio[r]) if method == "amp" else None))
    df = pd.DataFrame(rows)
    ok = df[(df.method != "amp") | df.converged.fillna(False).astype(bool)]  # AMP: converged runs only
    summ = ok.groupby(["method", "c"]).test_mse.agg(["mean", "std", "count"]).reset_index()
    ctx.table(df, "metrics")
    ctx.table(summ, "summary")
    mean = summ.pivot(index="c", columns="method", values="mean").reindex(cfg.cs)
    std = summ.pivot(index="c", columns="method", values="std").reindex(cfg.cs)
    ctx.arrays("curves", cs=np.array(cfg.cs), **{f"{m}_{s}": (mean if s == "mean" else std)[m].to_numpy()
                                                 for m in W for s in ("mean", "std")})

    conv_c = df[df.method == "amp"].assign(converged=lambda d: d.converged.astype(bool)).groupby("c").converged.mean()
    conv_c = conv_c.reindex(cfg.cs)
    fig, axes = subplots(1, 2, size=(4.4, 3.4))
    ax = axes[0, 0]
    ax.plot(cfg.cs, mean["amp"], "o-", ms=3, color="C0", label=f"AMP, converged runs (λ0={lam0:g})")
    ax.plot(cfg.cs, mean["ridge"], "--", color="C2", label=f"ridge ground state (λ0={lam0:g})")
    ax.errorbar(cfg.cs, mean["adam"], yerr=std["adam"].fillna(0), fmt="o", ms=4, capsize=2, color="C3",
                label=f"Adam (wd={cfg.weight_decay:g})")
    ax.set(xlabel="token correlation c", ylabel="ICL test MSE", title=f"test error vs c ({cfg.token_model} tokens)")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    ax.plot(cfg.cs, conv_c.to_numpy(), "o-", color="C0")
    ax.set(xlabel="token correlation c", ylabel="fraction of AMP runs converged", ylim=(-0.05, 1.05),
           title=f"AMP convergence (≤{cfg.amp_steps} sweeps, tol {cfg.amp_tol:g})")
    ctx.figure(fig, "test_loss_vs_c", caption=(
        f"ICL test MSE on fresh tasks vs token correlation c (equicorrelated tokens, test prompts with the same "
        f"c). D={cfg.D}, N={cfg.N}, P_train={cfg.P_train}, P_test={cfg.P_test}; Adam lr={cfg.lr:g}, "
        f"wd={cfg.weight_decay:g}, {cfg.epochs} epochs; AMP λ0={lam0:g}, β={cfg.beta:g}, θ={cfg.damping:g}, "
        f"≤{cfg.amp_steps} sweeps, tol {cfg.amp_tol:g}; {cfg.repeats} repeats (mean ± std), seed {cfg.seed}. "
        "Paper: a non-monotonic curve in c, AMP ≈ SGD/Adam. Right: fraction of AMP runs that converged "
        "(non-converged runs are left out of the AMP curve, as the paper's NaNs)."))

    gap = (mean["amp"] - mean["adam"]).abs()
    ctx.claim("max |AMP − Adam| over c", paper="AMP ≈ SGD at every c", ours=round(float(gap.max()), 4))
    ctx.claim("mean |AMP − Adam| over c", paper="AMP ≈ SGD at every c", ours=round(float(gap.mean()), 4))
    y = mean["adam"].to_numpy()
    d = np.sign(np.diff(y))
    turns = int(np.sum(d[1:] != d[:-1]))
    i_max, i_min = int(np.argmax(y)), int(np.argmin(y))
    interior = 0 < i_max < len(y) - 1 or 0 < i_min < len(y) - 1
    ctx.claim("Adam test error non-monotonic in c (interior extremum)", paper="non-monotonic in c",
              ours=f"max {y[i_max]:.4f} at c={cfg.cs[i_max]}, min {y[i_min]:.4f} at c={cfg.cs[i_min]}, "
                   f"{turns} changes of direction", target="an interior extremum", passed=bool(interior))
    conv = df[df.method == "amp"].converged.astype(bool)
    ctx.claim("AMP converged fraction", paper=f"runs with error >= {cfg.amp_tol:g} are discarded",
              ours=round(float(conv.mean()), 4))
    failed = [c for c in cfg.cs if conv_c[c] < 0.5]
    ctx.claim("c values where most AMP runs diverge", paper="(AMP curve drawn over the whole c range)",
              ours=failed)
    ratio_c = df[df.method == "amp"].groupby("c").coupling_ratio.mean().reindex(cfg.cs)
    ctx.claim("coupling gain max_i Σ_j J_ij²/λ_i² at the smallest / largest c",
              paper="(not in paper) AMP needs it well below 1",
              ours=[round(float(ratio_c.iloc[0]), 3), round(float(ratio_c.iloc[-1]), 3)])
    gap_r = (mean["ridge"] - mean["adam"]).abs()
    ctx.claim("max |ridge ground state − Adam| over c", paper="(not in paper) the exact ground state vs Adam",
              ours=round(float(gap_r.max()), 4))
    ctx.note("Equicorrelated tokens, the intended model: for every input coordinate the N+1 tokens (query "
             "included) have covariance (1−c) I + c 11ᵀ, as data.sample_prompts(token_corr=c). The official "
             "X ← X L construction gives L^T L instead (spec §7.6). Test prompts use the same c.")
    if failed:
        ctx.note(f"With {cfg.token_model} tokens most AMP runs diverge for c in {failed}: correlated tokens make "
                 "the couplings J strongly structured, the gain max_i Σ_j J_ij²/λ_i² (metrics column "
                 "coupling_ratio) grows with c, and once it nears 1 the cavity variance β² Σ_j J_ij² v_j "
                 "overtakes βλ_i and the denominators change sign. The exact ground state (ridge) still tracks "
                 "Adam. Compare token_model=official (the official X ← X L tokens).")
    ctx.note("Prompts drawn by the exact reduced sampler: x_i = √c f + √(1−c) e_i, and Σ_i x_i x_iᵀ w is "
             "drawn "
             "from f, Σ e_i and a Wishart(N−1) term (same distribution as data.sample_prompts).")
    ctx.note(f"The paper states neither the Adam settings nor the repeats for S4: Fig. 4b's Adam (lr {cfg.lr:g}, "
             f"{cfg.epochs} epochs) and {cfg.repeats} repeats. AMP λ0 = {lam0:g}"
             + (" = wd (the paper's choice)." if cfg.amp_lam0 is None else " (amp_lam0)."))
