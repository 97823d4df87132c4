"""Fig. S8: ICL test error vs prompt length for several attention architectures.

At the Fig. 4b settings (D = 20, P = 10^4 pre-training prompts with one fresh task each,
P_test = 1000, weight decay 0.01) the paper compares the merged linear attention (SLA) with
full linear attention (FLA), multi-head linear attention (MHLA), softmax attention (SA) and a
full transformer (TF), beside the AMP prediction and the closed form (D+1)/(N+D+1): the
linear models follow the AMP curve, SA and TF are clearly worse. The paper gives no code or
hyper-parameters for FLA/MHLA/SA/TF; ours are the `iclab.linear.models` definitions:

- sla, fla, mhla (H heads): full-batch Adam (lr 1e-3, coupled weight decay 0.01, 5000 epochs),
  the Fig. 4b protocol, trained through the `forward_stats` fast path (C = Z Z^T/(N+1), z_q);
- sa (one softmax head with Q, K, V and residual) and tf (pre-LN GPT-2 block stack, non-causal,
  d_model 64, 2 layers, 4 heads, MLP x4, no positional embedding): attention over all N+1 tokens
  costs O(P N^2) per epoch, so instead of 5000 full-batch epochs they get mini-batch Adam
  (same lr and weight decay) for a stated number of passes over the same P prompts.

The AMP curve runs the cavity iteration (lambda0 = wd, beta = 100, theta = 0.9, 100 sweeps)
on the statistics of the very training prompts the models see, and its mean m is evaluated on
the same test prompts.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator, model_validator

from iclab.linear.amp import amp
from iclab.linear.analysis import icl_error_floor
from iclab.linear.data import features, predict, prompt_stream, sample_prompts
from iclab.linear.models import ARCHITECTURES, build_model
from iclab.linear.train import train_architecture
from iclab.runtime import ExperimentConfig, RunContext, experiment
from iclab.runtime.plots import subplots

LINEAR = ("sla", "fla", "mhla")
LABELS = {"sla": "SLA (merged linear)", "fla": "FLA (full linear)", "mhla": "MHLA (multi-head linear)",
          "sa": "SA (softmax attention)", "tf": "TF (transformer)"}


class FigS8Config(ExperimentConfig):
    D: int = Field(20, gt=0, description="Input dimension D.")
    Ns: list[int] = Field([20 * k for k in range(1, 11)], min_length=1,
                          description="Prompt lengths N (as the saved Fig. 4b data: 20, 40, ..., 200).")
    P: int = Field(10_000, gt=0, description="Pre-training prompts (one fresh task each).")
    P_test: int = Field(1000, gt=0, description="Test prompts (fresh tasks).")
    archs: list[str] = Field(["sla", "fla", "mhla", "sa", "tf"], min_length=1,
                             description="Architectures from iclab.linear.models.ARCHITECTURES.")
    repeats: int = Field(1, gt=0, description="Independent data sets and inits per N.")
    wd: float = Field(0.01, ge=0, description="Adam coupled weight decay of every model; also AMP's lambda0 "
                      "(as the official code).")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate of the full-batch linear models (Fig. 4b: 1e-3).")
    epochs: int = Field(5000, gt=0, description="Full-batch Adam steps of the linear models (Fig. 4b: 5000).")
    softmax_lr: float = Field(1e-3, gt=0, description="Adam learning rate of SA and TF (our choice).")
    softmax_epochs: int = Field(5, gt=0, description="Passes over the P prompts of SA and TF (mini-batch; our choice).")
    batch_size: int = Field(64, gt=0, description="Mini-batch size of SA and TF (our choice).")
    n_heads: int = Field(4, gt=0, description="Heads of MHLA and of every TF block.")
    d_model: int = Field(64, gt=0, description="TF residual width (a multiple of n_heads).")
    n_layers: int = Field(2, gt=0, description="TF blocks.")
    beta: float = Field(100.0, gt=0, description="AMP inverse temperature.")
    amp_steps: int = Field(100, gt=0, description="AMP sweeps (tolerance 1e-6).")

    @field_validator("Ns")
    @classmethod
    def _increasing_positive(cls, v: list[int]) -> list[int]:
        if any(x <= 0 for x in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("prompt lengths must be > 0 and strictly increasing")
        return v

    @field_validator("archs")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(ARCHITECTURES))
        if unknown:
            raise ValueError(f"unknown architectures {unknown}; choose from {sorted(ARCHITECTURES)}")
        return v

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if "tf" in self.archs and self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")
        return self


def _gen(*keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(keys)).generate_state(1)[0]))


def draw_data(D: int, N: int, P: int, gen: torch.Generator):
    """Training prompts in float32 for the models plus their float64 sufficient statistics for AMP."""
    n = (D + 1) ** 2
    S = torch.zeros(n, n, dtype=torch.float64)
    h = torch.zeros(n, dtype=torch.float64)
    Zs, ys = [], []
    for batch in prompt_stream(D, N, P, generator=gen):
        f = features(batch.Z).reshape(-1, n)  # (chunk, n)
        S.addmm_(f.T, f)
        h.addmv_(f.T, batch.y)
        Zs.append(batch.Z.float())
        ys.append(batch.y.float())
    return torch.cat(Zs), torch.cat(ys), S / P, h / P  # (P, D+1, N+1), (P,), (n, n), (n,)


@experiment(
    "spinglass.figS8",
    FigS8Config,
    presets={
        "quick": {"Ns": [20, 100], "P": 2000, "P_test": 500, "epochs": 600, "lr": 1e-2, "softmax_epochs": 3,
                  "batch_size": 64, "d_model": 16, "n_layers": 1},
        "paper": {"D": 20, "Ns": [20 * k for k in range(1, 11)], "P": 10_000, "P_test": 1000, "wd": 0.01,
                  "lr": 1e-3, "epochs": 5000, "repeats": 1, "softmax_lr": 1e-3, "softmax_epochs": 5,
                  "batch_size": 64, "n_heads": 4, "d_model": 64, "n_layers": 2},
    },
    title="Architectures: ICL test error vs prompt length",
    paper="Li, Bai, Huang 2024, Fig. S8",
)
def run(cfg: FigS8Config, ctx: RunContext) -> None:
    """Train SLA/FLA/MHLA/SA/TF at the Fig. 4b settings; compare with AMP and (D+1)/(N+D+1)."""
    D = cfg.D
    model_kw = {"n_heads": cfg.n_heads, "d_model": cfg.d_model, "n_layers": cfg.n_layers}
    rows = []
    jobs = [(i, N, r) for i, N in enumerate(cfg.Ns) for r in range(cfg.repeats)]
    for i, N, r in ctx.progress(jobs, "prompt lengths x repeats", total=len(jobs)):
        gen = _gen(cfg.seed, i, r)
        Z, y, S, h = draw_data(D, N, cfg.P, gen)
        test = sample_prompts(D, N, cfg.P_test, generator=gen)
        Zt, yt = test.Z.float(), test.y.float()
        base = {"N": N, "repeat": r}

        res = amp(-S, h, cfg.wd + torch.diagonal(S), beta=cfg.beta, steps=cfg.amp_steps, generator=gen)
        amp_mse = float(((predict(res.m.reshape(D + 1, D + 1), features(test.Z)) - test.y) ** 2).mean())
        rows.append(base | {"model": "amp", "test_mse": amp_mse if bool(res.converged) else float("nan"),
                            "train_mse": float("nan"), "steps": int(res.sweeps), "seconds": float("nan")})
        n = S.shape[-1]
        W_gs = torch.linalg.solve(S + cfg.wd / 2 * torch.eye(n, dtype=S.dtype), h)  # Adam's stationary point (SLA)
        gs_mse = float(((predict(W_gs.reshape(D + 1, D + 1), features(test.Z)) - test.y) ** 2).mean())
        rows.append(base | {"model": "ground_state", "test_mse": gs_mse, "train_mse": float("nan"), "steps": 0,
                            "seconds": float("nan")})
        rows.append(base | {"model": "closed_form", "test_mse": icl_error_floor(D, N), "train_mse": float("nan"),
                            "steps": 0, "seconds": 0.0})

        for a, arch in enumerate(cfg.archs):
            model = build_model(arch, D, generator=_gen(cfg.seed, i, r, 100 + a), **model_kw)
            t0 = time.perf_counter()
            if arch in LINEAR:
                out = train_architecture(model, (Z, y), (Zt, yt), epochs=cfg.epochs, lr=cfg.lr,
                                         weight_decay=cfg.wd, record_every=cfg.epochs)
                steps = cfg.epochs
            else:
                out = train_architecture(model, (Z, y), (Zt, yt), epochs=cfg.softmax_epochs, lr=cfg.softmax_lr,
                                         weight_decay=cfg.wd, batch_size=cfg.batch_size,
                                         generator=_gen(cfg.seed, i, r, 200 + a), record_every=cfg.softmax_epochs)
                steps = cfg.softmax_epochs * math.ceil(cfg.P / cfg.batch_size)
            rows.append(base | {"model": arch, "test_mse": float(out.test_loss[-1]),
                                "train_mse": float(out.train_loss[-1]), "steps": steps,
                                "seconds": time.perf_counter() - t0})
        del Z, y
    df = pd.DataFrame(rows)
    ctx.table(df, "metrics")

    # -- figure ------------------------------------------------------------------------------
    agg = df.groupby(["model", "N"])["test_mse"].agg(["mean", "std"]).reset_index()
    curve = {m: g.set_index("N").reindex(cfg.Ns) for m, g in agg.groupby("model")}
    Ns = np.array(cfg.Ns)
    fig, axes = subplots(1, 1, size=(5.2, 3.8))
    ax = axes[0, 0]
    ax.plot(Ns, curve["amp"]["mean"], "k-", lw=1.5, label="AMP (lambda0 = wd)")
    ax.plot(Ns, curve["ground_state"]["mean"], "-", color="0.6", lw=1, label="exact ground state (lambda0 = wd/2)")
    ax.plot(Ns, curve["closed_form"]["mean"], "k:", lw=1, label="(D+1)/(N+D+1)")
    markers = dict(zip(ARCHITECTURES, "osD^v"))
    for arch in cfg.archs:
        c = curve[arch]
        ax.errorbar(Ns, c["mean"], yerr=c["std"].fillna(0), fmt=markers[arch], ms=4, capsize=2, ls="none",
                    label=LABELS[arch])
    ax.set(xlabel="prompt length N", ylabel="ICL test MSE (fresh tasks)", yscale="log")
    ax.legend(fontsize=7)
    sm = f"mini-batch Adam ({cfg.softmax_epochs} passes, batch {cfg.batch_size}, lr {cfg.softmax_lr})"
    ctx.figure(fig, "architectures", caption=(
        f"Test MSE vs N for each architecture (D={D}, P={cfg.P}, P_test={cfg.P_test}, wd={cfg.wd}, {cfg.repeats} "
        f"repeat(s), seed={cfg.seed}); linear models: full-batch Adam lr {cfg.lr}, {cfg.epochs} epochs; SA/TF: {sm}; "
        "line: AMP mean on the same training statistics; dotted: population optimum. Paper: SLA/FLA/MHLA follow the "
        "AMP curve, SA and TF are clearly worse."))

    # -- claims ------------------------------------------------------------------------------
    amp_c = curve["amp"]["mean"].to_numpy()
    converged = np.isfinite(amp_c)
    theory = np.where(converged, amp_c, curve["ground_state"]["mean"].to_numpy())  # AMP, else exact ground state
    which = "AMP curve"
    if not converged.all():
        which += f" ({converged.sum()}/{len(Ns)} N converged; else ground state)"
    for arch in [a for a in cfg.archs if a in LINEAR]:
        rel = curve[arch]["mean"].to_numpy() / theory - 1  # signed: < 0 means below (better than) the curve
        j = int(np.argmax(np.abs(rel)))
        gap = float(abs(rel[j]))
        side = "below" if rel[j] < 0 else "above"
        ctx.claim(f"{arch.upper()}: max relative gap to the {which} over N", paper="follows the AMP curve",
                  ours=f"{gap:.3f} ({side} it at N={cfg.Ns[j]})", target="<= 0.1", passed=gap <= 0.1)
    if "sla" in cfg.archs:
        e_sla = float(curve["sla"]["mean"].iloc[-1])
        for arch in [a for a in cfg.archs if a not in LINEAR]:
            ratio = float(curve[arch]["mean"].iloc[-1]) / e_sla
            ctx.claim(f"{arch.upper()} / SLA test error at N={cfg.Ns[-1]}",
                      paper="clearly worse than the linear models", ours=round(ratio, 2), target="> 1.2",
                      passed=ratio > 1.2)
    if converged.any():
        above = float(np.mean((amp_c - curve["closed_form"]["mean"].to_numpy())[converged]))
        ctx.claim("AMP minus (D+1)/(N+D+1), mean over converged N",
                  paper="the AMP curve tracks the closed form from slightly above", ours=round(above, 4), target="> 0",
                  passed=above > 0)

    secs = df[df.model.isin(cfg.archs)].groupby("model")["seconds"].sum()
    ctx.note("FLA/MHLA/SA/TF and their hyper-parameters are not given by the paper; ours: FLA "
             "F = Z + W_PV Z Z^T W_KQ Z/(N+1); "
             f"MHLA {cfg.n_heads} such heads summed; SA one softmax head (Q, K, V, residual); TF pre-LN GPT-2 blocks "
             f"(d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads, MLP x4, non-causal, no positions). "
             "Every attention matrix starts N(0, 1/(D+1)); the TF uses nanoGPT's init.")
    ctx.note(f"Deviation: SA and TF get {sm} = {cfg.softmax_epochs * math.ceil(cfg.P / cfg.batch_size)} steps instead "
             f"of {cfg.epochs} full-batch epochs (attention over N+1 tokens is O(P N^2) per epoch on CPU). "
             f"Linear models follow the Fig. 4b protocol (full batch, lr {cfg.lr}, {cfg.epochs} epochs).")
    ctx.note("Training seconds per architecture (all N, repeats): "
             + ", ".join(f"{k} {v:.0f}s" for k, v in secs.items()))
    soft = [a for a in cfg.archs if a not in LINEAR]
    if soft:
        last = df[df.model.isin(soft)].groupby("model")[["train_mse", "test_mse"]].mean()
        ctx.note("SA/TF mean train / test MSE over N: " + ", ".join(
            f"{k} {v.train_mse:.3f} / {v.test_mse:.3f}" for k, v in last.iterrows()) + " (the trivial predictor 0 "
            "scores 1). Values near 1 mean they did not learn in context within this budget: a softmax head "
            "normalises its attention, so it can only mimic linear attention in a small-logit regime, and "
            "transformers are known to need ~10^5 steps for in-context regression (Garg et al. 2022); our SA/TF "
            "numbers are budget-limited, not the architectures' best.")
    lin = df[df.model.isin([a for a in cfg.archs if a in LINEAR])].groupby("model")[["train_mse", "test_mse"]].mean()
    if len(lin):
        ctx.note("Linear models' mean train / test MSE over N: " + ", ".join(
            f"{k} {v.train_mse:.3f} / {v.test_mse:.3f}" for k, v in lin.iterrows()) + "; a larger test-train gap "
            "than SLA's means overfitting (FLA/MHLA have more effective parameters: they also read the x-x block of "
            "Z Z^T).")
    if not converged.all():
        ctx.note(f"AMP (lambda0 = wd = {cfg.wd}) did not converge (tol 1e-6) at N = "
                 f"{[int(x) for x in Ns[~converged]]}: small P and weak confinement (spec §3); those points are NaN "
                 "and the claims use the exact ground state there.")
    ctx.note("Two theory curves: AMP with lambda0 = wd as the official code, and the exact ground state (ridge) with "
             "lambda0 = wd/2, the stationary point of Adam with coupled weight decay on the MSE (spec §1.4).")
