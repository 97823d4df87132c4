"""Fig. S6: the "linear equation group" of the correct solution has one solution, W11 ≈ I, W21 = 0.

What the equation group is (read from the official `fig-S6/data.py`; the paper text is terse).
With noise-free labels y_i = w.x_i/sqrt(D), the reduced readout of merged linear attention
(spec §1.3) on a prompt with task w and context inputs X (D, N) is, up to the factor N/(N+1),

    y_hat = w^T C (W11 + w W21 / sqrt(D)) x_q / sqrt(D),      C = X X^T / N,

with W11 the D x D block and W21 the last row (a 1 x D row) of W. The model predicts every
task exactly iff the bracket inverts C. The official script imposes this as a matrix
identity for P tasks w^1..w^P sharing one context covariance C (it writes the bracket on the
left of C, a transposition convention, spec §7.1):

    (W11 + w^mu W21 / sqrt(D)) C = I_D,   mu = 1..P        (P D^2 linear equations, D^2 + D unknowns)

and solves it by full-batch Adam (lr 1e-2, 1000 steps) on the mean squared residual
(`nn.MSELoss` over all P D^2 entries) from a random start W11, W21 ~ N(0, 1), with a fresh C
(X ~ N(0,1), D x N) and fresh tasks w ~ N(0, I_D) per restart, 5000 restarts, P=10, D=10, N=50.
The "distance" is mean((W11 - I)^2) + mean(W21^2); the figure shows its trajectory for 50
restarts and, inset, the histogram of the final distances.

We implement exactly that, batched over restarts (one Adam over the stacked parameters on the
sum of per-restart losses, which is R independent Adams); the mean squared residual is
evaluated from the task mean and second moment (`mse_residual`), which is the same function
of (W11, W21) as the explicit (P, D, D) residuals (`residuals`, kept as the reference).
Beyond the paper we also give the
exact solution and a uniqueness certificate:

- if C is invertible and not all tasks are equal, the unique solution is W11 = C^{-1}, W21 = 0
  (subtract two equations: (w^mu - w^nu) W21 C = 0), so the final distance is the finite-N
  fluctuation mean((C^{-1} - I)^2) = O(D/N), which is why W11 is only ≈ I;
- the Gram matrix of the least-squares problem is M ⊗ (C C^T) with
  M = [[P I_D, s], [s^T, q]], s = sum_mu w^mu / sqrt(D), q = sum_mu |w^mu|^2 / D, so its
  smallest eigenvalue lambda_min(M) sigma_min(C)^2 > 0 certifies uniqueness per restart.

This equation group is *not* the training loss of the spin-glass model (whose ground state
at P=10 < D(D+1) is degenerate at lambda0 -> 0): it asks for the correct solution's
defining property on P tasks and shows that it pins W down already at P = 10.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch import Tensor

from iclab.runtime import ExperimentConfig, RunContext, experiment
from iclab.runtime.plots import subplots


class FigS6Config(ExperimentConfig):
    D: int = Field(10, gt=0, description="Input dimension D (W11 is D x D, W21 is 1 x D).")
    N: int = Field(50, gt=0, description="Context length N: C = X X^T / N with X (D, N) ~ N(0, 1).")
    P: int = Field(10, gt=0, description="Number of tasks w^mu, i.e. of matrix equations (W11 + w W21/sqrt D) C = I.")
    restarts: int = Field(5000, gt=0, description="Random restarts, each with its own C, tasks and init.")
    epochs: int = Field(1000, gt=0, description="Full-batch Adam steps per restart.")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate (official: 1e-2).")
    n_curves: int = Field(50, gt=0, description="Restarts whose distance trajectory is recorded and drawn.")
    chunk: int = Field(1000, gt=0, description="Restarts optimised together (bounds memory: R P D^2 residuals).")

    @model_validator(mode="after")
    def _curves_fit(self):
        if self.n_curves > self.restarts:
            raise ValueError(f"n_curves={self.n_curves} must be <= restarts={self.restarts}")
        return self


def residuals(W11: Tensor, W21: Tensor, w: Tensor, C: Tensor) -> Tensor:
    """(W11 + w W21 / sqrt D) C - I for every task; W11 (R, D, D), W21 (R, D), w (R, P, D), C (R, D, D)."""
    D = W11.shape[-1]
    W11C = W11 @ C - torch.eye(D, dtype=W11.dtype)  # (R, D, D)
    W21C = (W21[:, None, :] @ C)[:, 0] / math.sqrt(D)  # (R, D): the row W21 C / sqrt D
    return W11C[:, None] + w[..., :, None] * W21C[:, None, None, :]  # (R, P, D, D), same as expanding first


def mse_residual(W11: Tensor, W21: Tensor, w_mean: Tensor, w_sq: Tensor, C: Tensor) -> Tensor:
    """mean over tasks and entries of residuals(...)^2, per restart (R,), from task statistics only.

    With A = W11 C - I and u = W21 C / sqrt D: sum_mu |A + w^mu u^T|^2 = P |A|^2 + 2 P wbar^T A u
    + P <|w|^2> |u|^2, so the loss needs only wbar = mean_mu w^mu (R, D) and <|w|^2> (R,).
    Equal to the official nn.MSELoss over the (P, D, D) residuals, without forming them.
    """
    D = W11.shape[-1]
    A = W11 @ C - torch.eye(D, dtype=W11.dtype)  # (R, D, D)
    u = (W21[:, None, :] @ C)[:, 0] / math.sqrt(D)  # (R, D)
    cross = (w_mean[:, None, :] @ A @ u[:, :, None])[:, 0, 0]  # (R,)
    return ((A * A).sum((-2, -1)) + 2 * cross + w_sq * (u * u).sum(-1)) / (D * D)


def distance(W11: Tensor, W21: Tensor) -> Tensor:
    """The official distance mean((W11 - I)^2) + mean(W21^2), per restart (R,)."""
    D = W11.shape[-1]
    return ((W11 - torch.eye(D, dtype=W11.dtype)) ** 2).mean((-2, -1)) + (W21**2).mean(-1)


def gram_lambda_min(w: Tensor, C: Tensor) -> Tensor:
    """Smallest eigenvalue of the least-squares Gram M ⊗ C C^T (see module docstring), per restart (R,)."""
    R, P, D = w.shape
    s = w.sum(1) / math.sqrt(D)  # (R, D)
    q = (w * w).sum((1, 2)) / D  # (R,)
    M = torch.zeros(R, D + 1, D + 1, dtype=w.dtype)
    M[:, :D, :D] = P * torch.eye(D, dtype=w.dtype)
    M[:, :D, D], M[:, D, :D], M[:, D, D] = s, s, q
    sigma_min = torch.linalg.svdvals(C)[:, -1]  # (R,)
    return torch.linalg.eigvalsh(M)[:, 0] * sigma_min**2


def solve_chunk(cfg: FigS6Config, R: int, gen: torch.Generator, n_record: int):
    """Draw R systems and inits, run Adam, return finals, exact solutions and recorded curves."""
    D, N, P = cfg.D, cfg.N, cfg.P
    dt = torch.float64
    X = torch.randn(R, D, N, generator=gen, dtype=dt)  # (R, D, N)
    C = X @ X.mT / N  # (R, D, D)
    w = torch.randn(R, P, D, generator=gen, dtype=dt)  # (R, P, D)
    W11 = torch.randn(R, D, D, generator=gen, dtype=dt).requires_grad_(True)
    W21 = torch.randn(R, D, generator=gen, dtype=dt).requires_grad_(True)
    opt = torch.optim.Adam([W11, W21], lr=cfg.lr)
    curves = torch.empty(n_record, cfg.epochs, dtype=dt)  # distance after each step
    w_mean, w_sq = w.mean(1), (w * w).sum(-1).mean(1)  # (R, D), (R,)
    for t in range(cfg.epochs):
        loss = mse_residual(W11, W21, w_mean, w_sq, C)  # (R,) the official MSELoss per restart
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # each restart gets exactly its own gradient
        opt.step()
        if n_record:
            with torch.no_grad():
                curves[:, t] = distance(W11[:n_record], W21[:n_record])
    with torch.no_grad():
        W11, W21 = W11.detach(), W21.detach()
        final_loss = (residuals(W11, W21, w, C) ** 2).mean((1, 2, 3))  # (R,)
        C_inv = torch.linalg.inv(C)  # (R, D, D): the exact W11, with W21 = 0
        to_exact = torch.sqrt((((W11 - C_inv) ** 2).sum((-2, -1)) + (W21**2).sum(-1)) / (D * D + D))  # (R,)
        return {
            "final_distance": distance(W11, W21),
            "exact_distance": distance(C_inv, torch.zeros_like(W21)),
            "rms_to_exact": to_exact,
            "final_loss": final_loss,
            "W21_rms": W21.pow(2).mean(-1).sqrt(),
            "W11_diag_mean": torch.diagonal(W11, dim1=-2, dim2=-1).mean(-1),
            "W11_offdiag_rms": (W11 * (1 - torch.eye(D, dtype=dt))).pow(2).sum((-2, -1)).div(D * D - D).sqrt(),
            "gram_lambda_min": gram_lambda_min(w, C),
        }, curves


@experiment(
    "spinglass.figS6",
    FigS6Config,
    presets={
        "quick": {"restarts": 500, "epochs": 1000, "n_curves": 50},
        "paper": {"D": 10, "N": 50, "P": 10, "restarts": 5000, "epochs": 1000, "lr": 1e-2, "n_curves": 50},
    },
    title="Uniqueness of the solution of the linear equation group",
    paper="Li, Bai, Huang 2024, Fig. S6",
)
def run(cfg: FigS6Config, ctx: RunContext) -> None:
    """Adam from random restarts on (W11 + w W21/sqrt D) C = I: all end at W11 = C^{-1} ≈ I, W21 = 0."""
    gen = torch.Generator().manual_seed(cfg.seed)
    parts, curves = [], None
    starts = list(range(0, cfg.restarts, cfg.chunk))
    for start in ctx.progress(starts, "restart chunks", total=len(starts)):
        R = min(cfg.chunk, cfg.restarts - start)
        n_record = max(0, min(cfg.n_curves - start, R))
        out, c = solve_chunk(cfg, R, gen, n_record)
        parts.append(out)
        curves = c if curves is None else torch.cat([curves, c])
    res = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
    df = pd.DataFrame({"restart": np.arange(cfg.restarts), **res})
    ctx.table(df, "metrics")
    ctx.arrays("curves", distance=curves.numpy(), final_distance=res["final_distance"])

    # -- figure: trajectories with the histogram of final distances inset --------------------
    fd, ed = res["final_distance"], res["exact_distance"]
    fig, axes = subplots(1, 1, size=(5.5, 3.6))
    ax = axes[0, 0]
    epochs = np.arange(1, cfg.epochs + 1)
    for i in range(curves.shape[0]):
        ax.plot(epochs, curves[i].numpy(), lw=0.5)
    ax.set(xlabel="Adam steps", ylabel="distance to (W11, W21) = (I, 0)", yscale="log",
           title=f"{cfg.restarts} random restarts (first {cfg.n_curves} drawn)")
    inset = ax.inset_axes([0.56, 0.5, 0.42, 0.46])
    hi = max(0.3, float(fd.max()) * 1.05)
    bins = np.linspace(0, hi, 31)
    inset.hist(fd, bins=bins, density=True, alpha=0.6, label="Adam, final")
    inset.hist(ed, bins=bins, density=True, histtype="step", color="k", lw=0.8, label="exact C^-1")
    inset.set_xlabel("final distance", fontsize=7)
    inset.set_ylabel("density", fontsize=7)
    inset.tick_params(labelsize=6)
    inset.legend(fontsize=6)
    ctx.figure(fig, "uniqueness", caption=(
        f"Distance of W from the correct solution (W11 = I, W21 = 0) along full-batch Adam (lr {cfg.lr}, "
        f"{cfg.epochs} steps) on the equation group (W11 + w W21/sqrt D) C = I for P={cfg.P} tasks, D={cfg.D}, "
        f"N={cfg.N}, {cfg.restarts} restarts (fresh C, tasks, init each), seed={cfg.seed}. Inset: final distances "
        "(bars) and the exact solution's C^-1 distance (line). Paper: every restart converges, final distances "
        "peaked at 0.03-0.06, all < 0.15."))

    # -- claims ------------------------------------------------------------------------------
    counts, edges = np.histogram(fd, bins=np.linspace(0, 0.3, 31))
    mode = float((edges[counts.argmax()] + edges[counts.argmax() + 1]) / 2)
    ctx.claim("mode of the final-distance histogram", paper="peaked at 0.03-0.06", ours=round(mode, 4),
              target="in [0.03, 0.06]", passed=0.03 <= mode <= 0.06)
    ctx.claim("largest final distance (fraction of restarts >= 0.15)", paper="all < 0.15",
              ours=f"{float(fd.max()):.4f} ({float((fd >= 0.15).mean()):.4f})", target="< 0.15",
              passed=float(fd.max()) < 0.15)
    frac_exact = float((ed >= 0.15).mean())
    ctx.claim("fraction of restarts whose exact solution C^-1 is at distance >= 0.15",
              paper="(explains the tail: the distance of the unique solution itself is a finite-N fluctuation)",
              ours=round(frac_exact, 4))
    to_exact = res["rms_to_exact"]
    ctx.claim("rms distance of the Adam end point from the exact solution (C^-1, 0): median / max",
              paper="all restarts converge to the same (unique) solution (init is at rms distance ~1.2)",
              ours=f"{np.median(to_exact):.3f} / {to_exact.max():.3f}", target="median < 0.1",
              passed=float(np.median(to_exact)) < 0.1)
    lam_min = float(res["gram_lambda_min"].min())
    ctx.claim("min over restarts of the least-squares Gram's smallest eigenvalue",
              paper="the solution is unique", ours=f"{lam_min:.3g}", target="> 0", passed=lam_min > 1e-10)
    inv_diag = cfg.N / (cfg.N - cfg.D - 1) if cfg.N > cfg.D + 1 else float("nan")  # E[diag C^-1], Wishart
    ctx.claim("max |W21| rms and mean diag(W11) at the end", paper="W21 = 0, W11 ≈ I",
              ours=f"{float(res['W21_rms'].max()):.2e}, {float(res['W11_diag_mean'].mean()):.3f} "
                   f"(exact E[diag C^-1] = N/(N-D-1) = {inv_diag:.3f})")

    ctx.note("Interpretation (official fig-S6/data.py): the 'linear equation group' is the P matrix equations "
             "(W11 + w^mu W21/sqrt D) C = I, i.e. the condition that the reduced linear-attention readout reproduce "
             "every task exactly from a context with input covariance C = X X^T/N, solved by full-batch Adam on "
             "its mean squared residual from random restarts (W11, W21 ~ N(0,1)). It is not the spin-glass "
             "training loss; its unique solution is W11 = C^-1, W21 = 0.")
    ctx.note("Added beyond the paper: the exact solution C^-1 per restart and the Gram-eigenvalue uniqueness "
             "certificate; the distance is the official mean((W11-I)^2) + mean(W21^2).")
