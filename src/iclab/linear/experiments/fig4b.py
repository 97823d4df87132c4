"""Fig. 4b: ICL test error vs prompt length N, theory (AMP) vs gradient training (Adam)."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from iclab.runtime import ExperimentConfig, RunContext, experiment
from iclab.runtime.plots import subplots

from ..analysis import icl_error_floor
from iclab.runtime.seeding import make_gen, torch_threads

from ..amp import amp
from ..data import stack_stats
from ..sampling import reduced_sufficient_stats
from ..spinglass import SpinGlass
from ..train import train_quadratic

PAPER = dict(D=20, Ns=list(range(20, 201, 20)), P_train=10_000, P_test=1000, weight_decay=0.01, amp_lam0=None,
             lr=1e-3, epochs=5000, repeats=50, beta=100.0, damping=0.9, amp_steps=100, amp_tol=1e-6)


class Fig4bConfig(ExperimentConfig):
    D: int = Field(20, gt=0, description="Input dimension.")
    Ns: list[int] = Field(PAPER["Ns"], min_length=1, description="Prompt lengths N (context examples).")
    P_train: int = Field(10_000, gt=0, description="Training prompts (= tasks) per repeat.")
    P_test: int = Field(1000, gt=0, description="Test prompts per repeat, fresh tasks.")
    weight_decay: float = Field(0.01, ge=0, description="Adam's coupled weight decay wd.")
    amp_lam0: float | None = Field(
        None, gt=0, description="λ0 of AMP and of the ridge ground state; None = wd (the paper's choice). "
        "Adam's stationary point corresponds to λ0 = wd/2 (spec §1.4).")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    epochs: int = Field(5000, gt=0, description="Full-batch Adam steps.")
    repeats: int = Field(50, gt=0, description="Independent repeats (data, init) per N.")
    beta: float = Field(100.0, gt=0, description="Inverse temperature of AMP.")
    damping: float = Field(0.9, ge=0, lt=1, description="AMP damping θ.")
    amp_steps: int = Field(100, gt=0, description="Maximum AMP sweeps.")
    amp_tol: float = Field(1e-6, gt=0, description="AMP convergence threshold on the sweep error.")
    adam_dtype: str = Field("float32", pattern="^(float32|float64)$",
                            description="Precision of the Adam runs (float32: 3-4x faster, same curves).")

    @field_validator("Ns")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(n <= 0 for n in v):
            raise ValueError("every N must be > 0")
        return v


@experiment(
    "spinglass.fig4b",
    Fig4bConfig,
    presets={"quick": dict(Ns=[20, 60, 100, 200], repeats=5), "paper": PAPER},
    title="ICL test loss vs prompt length: AMP vs Adam vs (D+1)/(N+D+1)",
    paper="Li, Bai, Huang 2024, Fig. 4b",
)
def run(cfg: Fig4bConfig, ctx: RunContext) -> None:
    """The paper's flagship comparison: the mean m of the cavity/AMP fixed point on the training
    data, used as W, predicts unseen tasks as well as full-batch Adam training does, and both
    track the population optimum (D+1)/(N+D+1) from slightly above. The exact ridge ground
    state of the same Hamiltonian is a third curve (AMP has no reaction term, spec §3)."""
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    lam0 = cfg.weight_decay if cfg.amp_lam0 is None else cfg.amp_lam0
    dtype = getattr(torch, cfg.adam_dtype)
    rows = []
    with torch_threads(1):
        for i, N in enumerate(ctx.progress(cfg.Ns, "prompt lengths", total=len(cfg.Ns))):
            train = [reduced_sufficient_stats(cfg.D, N, cfg.P_train, generator=make_gen(cfg.seed, 0, i, r))
                     for r in range(cfg.repeats)]
            test = stack_stats([reduced_sufficient_stats(cfg.D, N, cfg.P_test, generator=make_gen(cfg.seed, 1, i, r))
                                for r in range(cfg.repeats)])
            batch = stack_stats(train)
            sg = SpinGlass.from_stats(batch, lam0)
            amp_res = amp(sg.J, sg.h, sg.lam, beta=cfg.beta, damping=cfg.damping, steps=cfg.amp_steps,
                          tol=cfg.amp_tol, generator=make_gen(cfg.seed, 2, i))
            W = {
                "amp": amp_res.m.reshape(-1, cfg.D + 1, cfg.D + 1),
                "ridge": SpinGlass.from_stats(batch, lam0).ground_state().reshape(-1, cfg.D + 1, cfg.D + 1),
                "ridge_wd/2": SpinGlass.from_stats(batch, cfg.weight_decay / 2).ground_state()
                .reshape(-1, cfg.D + 1, cfg.D + 1),
                "adam": train_quadratic(batch.S, batch.h, batch.yy, epochs=cfg.epochs, lr=cfg.lr,
                                        weight_decay=cfg.weight_decay, generator=make_gen(cfg.seed, 3, i),
                                        dtype=dtype, record_every=cfg.epochs).W.double(),
            }
            for method, Wm in W.items():
                test_mse, train_mse = test.mse(Wm), batch.mse(Wm)  # (R,) each
                for r in range(cfg.repeats):
                    amp_only = method == "amp"
                    rows.append(dict(N=N, repeat=r, method=method, test_mse=float(test_mse[r]),
                                     train_mse=float(train_mse[r]),
                                     converged=bool(amp_res.converged[r]) if amp_only else None,
                                     amp_sweeps=int(amp_res.sweeps[r]) if amp_only else None))
    df = pd.DataFrame(rows)
    ok = df[(df.method != "amp") | df.converged.fillna(False).astype(bool)]  # AMP: converged runs only
    summ = ok.groupby(["method", "N"]).test_mse.agg(["mean", "std", "count"]).reset_index()
    summ["floor"] = [icl_error_floor(cfg.D, n) for n in summ.N]
    ctx.table(df, "metrics")
    ctx.table(summ, "summary")
    ctx.arrays("curves", Ns=np.array(cfg.Ns), **{
        f"{m}_{s}": summ[summ.method == m].set_index("N").reindex(cfg.Ns)[s].to_numpy()
        for m in W for s in ("mean", "std")})

    # every method a column even when none of its runs counts (AMP diverging at every N: all NaN)
    mean = summ.pivot(index="N", columns="method", values="mean").reindex(index=cfg.Ns, columns=list(W))
    std = summ.pivot(index="N", columns="method", values="std").reindex(index=cfg.Ns, columns=list(W))
    floor = np.array([icl_error_floor(cfg.D, n) for n in cfg.Ns])
    fig, axes = subplots(1, 2, size=(4.4, 3.4))
    ax = axes[0, 0]
    Ngrid = np.linspace(min(cfg.Ns), max(cfg.Ns), 200)
    ax.plot(Ngrid, [icl_error_floor(cfg.D, n) for n in Ngrid], "k:", label="(D+1)/(N+D+1)")
    ax.plot(cfg.Ns, mean["amp"], "-", color="C0", label=f"AMP (λ0={lam0:g})")
    ax.plot(cfg.Ns, mean["ridge"], "--", color="C2", label=f"ridge ground state (λ0={lam0:g})")
    ax.errorbar(cfg.Ns, mean["adam"], yerr=std["adam"].fillna(0), fmt="o", color="C3", ms=4, capsize=2,
                label=f"Adam (wd={cfg.weight_decay:g})")
    ax.set(xlabel="prompt length N", ylabel="ICL test MSE", title="test error vs N")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    ax.axhline(0, color="k", lw=0.8)
    ax.plot(cfg.Ns, mean["amp"] - mean["adam"], "o-", color="C0", label="AMP − Adam")
    ax.plot(cfg.Ns, mean["adam"] - floor, "s-", color="C3", label="Adam − closed form")
    ax.plot(cfg.Ns, mean["amp"] - floor, "^-", color="C1", label="AMP − closed form")
    for y in (0.02, 0.03):
        ax.axhline(y, color="gray", ls="--", lw=0.7)
    ax.set(xlabel="prompt length N", ylabel="difference of mean test MSE", title="gaps (targets 0.02, 0.03 dashed)")
    ax.legend(fontsize=7)
    ctx.figure(fig, "test_loss_vs_N", caption=(
        f"ICL test MSE on fresh tasks vs prompt length N. D={cfg.D}, P_train={cfg.P_train}, P_test={cfg.P_test}, "
        f"Adam lr={cfg.lr:g}, wd={cfg.weight_decay:g}, {cfg.epochs} full-batch epochs; AMP λ0={lam0:g}, "
        f"β={cfg.beta:g}, θ={cfg.damping:g}, ≤{cfg.amp_steps} sweeps; {cfg.repeats} repeats (mean ± std), "
        f"seed {cfg.seed}. Paper: AMP (line) and SGD/Adam (markers) agree and track (D+1)/(N+D+1) from above."))

    # -- claims -------------------------------------------------------------------------------
    conv = df[df.method == "amp"].converged.astype(bool)
    gap = (mean["amp"] - mean["adam"]).abs()
    Nmax = max(cfg.Ns)
    e_min = icl_error_floor(cfg.D, Nmax)
    d_adam, d_amp = mean.loc[Nmax, "adam"] - e_min, mean.loc[Nmax, "amp"] - e_min
    ctx.claim("max |AMP − Adam| over N", paper="AMP curve and SGD markers agree closely at every N",
              ours=round(float(gap.max()), 4), target="<= 0.02", passed=bool(gap.max() <= 0.02))
    ctx.claim(f"Adam − (D+1)/(N+D+1) at N={Nmax}", paper="tracks the closed form from slightly above",
              ours=round(float(d_adam), 4), target="0 < x <= 0.03", passed=bool(0 < d_adam <= 0.03))
    ctx.claim(f"AMP − (D+1)/(N+D+1) at N={Nmax}", paper="tracks the closed form from slightly above",
              ours=round(float(d_amp), 4), target="0 < x <= 0.03", passed=bool(0 < d_amp <= 0.03))
    mono = bool(np.all(np.diff(mean["adam"].to_numpy()) < 0))
    ctx.claim("Adam test error decreases with N", paper="ICL error decreases with prompt length",
              ours=mono, passed=mono)
    ctx.claim("AMP converged fraction", paper="non-converged AMP runs are discarded (NaN)",
              ours=round(float(conv.mean()), 4))
    ridge_gap = float((mean["ridge"] - mean["amp"]).abs().max())
    ctx.claim("max |ridge − AMP| over N", paper="(not in paper) exact ground state vs AMP fixed point",
              ours=round(ridge_gap, 4))
    adam_gap = float((mean["adam"] - mean["ridge_wd/2"]).abs().max())
    ctx.claim("max |Adam − ridge(λ0 = wd/2)| over N", paper="(not in paper) Adam's exact stationary point",
              ours=round(adam_gap, 5))
    elapsed = time.perf_counter() - t0
    is_paper = all(getattr(cfg, k) == v for k, v in PAPER.items())
    ctx.claim("wall time of this run (s)", paper="(issue) the paper preset runs in < 5 min on 2 cores",
              ours=round(elapsed, 1), target="< 300 s (paper preset)" if is_paper else None,
              passed=(elapsed < 300) if is_paper else None)

    # -- notes --------------------------------------------------------------------------------
    ctx.note(f"AMP and the ridge curve use λ0 = {lam0:g}"
             + (" = wd, the paper's choice" if cfg.amp_lam0 is None else " (amp_lam0)")
             + "; Adam's coupled weight decay on the MSE (no ½) has its stationary point at λ0 = wd/2 "
             "(spec §1.4), so the metrics also hold 'ridge_wd/2', the exact minimiser Adam is heading to.")
    ctx.note("N grid 20, 40, …, 200 as in the saved Fig. 4b data (the script says linspace(10, 200, 20), "
             "spec §7.3).")
    ctx.note("Prompts are drawn by an exact reduced sampler: the readout sees a prompt only through "
             "(Z Zᵀ)[D, :] and the query, and Σ_i x_i x_iᵀ w = |w|(r² ŵ + r P⊥ξ), r² ~ χ²_N, is drawn "
             "directly "
             "(same distribution as data.sample_prompts, O(D) numbers per prompt).")
    ctx.note(f"Each repeat has its own training set, test set (P_test={cfg.P_test}, fresh tasks), Adam init "
             "and AMP init; test MSE is computed exactly from the test sufficient statistics.")
    ctx.note(f"Adam runs in {cfg.adam_dtype} on the sufficient statistics (exactly torch.optim.Adam's update); "
             "losses are evaluated in float64. AMP: mean over converged runs only (the paper stores NaN otherwise).")
    ctx.note(f"Wall time {elapsed:.1f} s with torch on 1 intra-op thread; machine load average "
             f"{load0:.2f} at start, {os.getloadavg()[0]:.2f} at end ({os.cpu_count()} cores).")
