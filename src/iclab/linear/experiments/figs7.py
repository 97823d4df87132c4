"""Fig. S7: the Hessian spectrum of the Hamiltonian and its zero modes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from iclab.linear.analysis import zero_ratio_law
from iclab.linear.sampling import sample_reduced
from iclab.runtime import ExperimentConfig, RunContext, experiment
from iclab.runtime.plots import subplots

from . import _blocks as st


class FigS7Config(ExperimentConfig):
    D: int = Field(20, gt=0, description="Input dimension of the spectrum panels.")
    N: int = Field(100, gt=0, description="Prompt length (spectra and zero-ratio grid; N >= max D).")
    Ps: list[int] = Field([100, 500, 1500], description="Training-set sizes of the spectrum panels.")
    repeats: int = Field(2000, gt=0, description="Draws of S pooled per spectrum panel.")
    batch: int = Field(8, gt=0, description="Draws computed at once in the spectrum panels.")
    grid_Ds: list[int] = Field([10, 15, 20, 25, 30, 35, 40], description="Input dimensions of the zero-ratio grid.")
    grid_Ps: list[int] = Field(
        list(range(25, 2001, 25)), description="Training-set sizes of the zero-ratio grid (official: "
                                               "linspace(25, 2000, 80))."
    )
    grid_repeats: int = Field(1, gt=0, description="Draws per grid cell (the rank is the same a.s.; official: 10).")
    bins: int = Field(200, gt=1, description="Histogram bins of the spectra.")

    @field_validator("Ps", "grid_Ds", "grid_Ps")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(x <= 0 for x in v):
            raise ValueError("must be a non-empty list of positive integers")
        return v


def feature_rank(F: torch.Tensor) -> int:
    """Numerical rank of a feature matrix F (P, n) from its singular values.

    Columns are scaled to unit norm first (rank-preserving; the W11 and last-row features differ
    in scale by ~sqrt(D)); the tolerance is numpy's matrix_rank default sigma_max * max(P, n) * eps.
    """
    F = F / F.norm(dim=0, keepdim=True).clamp_min(torch.finfo(F.dtype).tiny)
    sv = torch.linalg.svdvals(F)  # (min(P, n),)
    tol = sv[0] * max(F.shape) * torch.finfo(F.dtype).eps
    return int((sv > tol).sum())


@experiment(
    "spinglass.figS7",
    FigS7Config,
    presets={
        "quick": {"repeats": 40, "grid_Ds": [10, 15, 20], "grid_Ps": list(range(25, 701, 25))},
        "paper": {"D": 20, "N": 100, "Ps": [100, 500, 1500], "repeats": 2000, "grid_Ds": [10, 15, 20, 25, 30, 35, 40],
                  "grid_Ps": list(range(25, 2001, 25))},
    },
    title="Hessian spectrum and zero ratio",
    paper="Li, Bai, Huang 2024, Fig. S7",
)
def run(cfg: FigS7Config, ctx: RunContext) -> None:
    """Spectrum of the data Hessian S = -J (the full Hessian adds lambda0) and its zero modes.

    Why: the ground state is unique iff S has no zero modes among the D(D+1) relevant spins, so
    the zero ratio 1 - min(P, D(D+1))/(D+1)^2 locates the task-diversity threshold P = D(D+1).
    The D+1 last-column spins never enter the readout: their rows of S are exactly zero, so we
    diagonalise the D(D+1) relevant block and add those D+1 exact zeros.
    """
    D, N = cfg.D, cfg.N
    if N < max([D, *cfg.grid_Ds]):
        raise ValueError(f"figS7 needs N >= every D for the Wishart sampler, got N={N}")
    n = (D + 1) ** 2
    pred = st.predicted_stats(D, N, 1)
    gen = torch.Generator().manual_seed(cfg.seed * 1000)

    # spectra
    spectra, rows = {}, []
    for P in ctx.progress(cfg.Ps, "spectra", total=len(cfg.Ps)):
        eigs = []
        for start in range(0, cfg.repeats, cfg.batch):
            B = min(cfg.batch, cfg.repeats - start)
            draw = sample_reduced(D, N, (B, P), generator=gen)
            s, y = draw.features(), draw.y  # (B, P, D+1, D)
            J, _ = st.reduced_fields(s, y)  # (B, D(D+1), D(D+1))
            eigs.append(torch.linalg.eigvalsh(-J))  # (B, D(D+1)), ascending
        ev = torch.cat(eigs)  # (R, D(D+1))
        zero = ev.abs() <= 1e-9 * ev[:, -1:].abs()  # numerical zeros, relative tolerance
        n_zero = zero.sum(1) + (D + 1)  # + the last-column spins
        top = ev[:, -D:]  # D largest: the last-row bulk
        gap = ev[:, -D] / ev[:, -D - 1]  # smallest of the top D over the largest of the rest
        spectra[P] = torch.cat([ev, torch.zeros(ev.shape[0], D + 1, dtype=ev.dtype)], 1).reshape(-1).numpy()
        rows.append({"panel": "spectrum", "D": D, "N": N, "P": P, "repeats": cfg.repeats,
                     "zero_ratio": float(n_zero.double().mean()) / n, "zero_ratio_law": zero_ratio_law(P, D),
                     "top_D_mean": float(top.mean()), "top_D_predicted": -pred["diagJ_last_row"],
                     "w11_bulk_mean": float(ev[:, :-D][~zero[:, :-D]].mean()),
                     "w11_diag_predicted": -pred["diagJ_W11"], "gap_ratio_median": float(gap.median()),
                     "gap_ratio_min": float(gap.min())})

    # zero-ratio grid: rank of the P x D(D+1) feature matrix
    grid = np.zeros((len(cfg.grid_Ds), len(cfg.grid_Ps)))
    cells = [(i, j) for i in range(len(cfg.grid_Ds)) for j in range(len(cfg.grid_Ps))]
    for i, j in ctx.progress(cells, "zero-ratio grid", total=len(cells)):
        Dg, P = cfg.grid_Ds[i], cfg.grid_Ps[j]
        ratios = []
        for _ in range(cfg.grid_repeats):
            s = sample_reduced(Dg, N, P, generator=gen).features()  # (P, Dg+1, Dg)
            ratios.append(1.0 - feature_rank(s.reshape(P, -1)) / (Dg + 1) ** 2)
        grid[i, j] = np.mean(ratios)
        rows.append({"panel": "zero_ratio_grid", "D": Dg, "N": N, "P": P, "repeats": cfg.grid_repeats,
                     "zero_ratio": grid[i, j], "zero_ratio_law": zero_ratio_law(P, Dg)})
    df = pd.DataFrame(rows)
    ctx.table(df, "metrics")
    ctx.arrays("spectra", **{f"P{P}": v for P, v in spectra.items()}, grid=grid, grid_Ds=np.array(cfg.grid_Ds),
               grid_Ps=np.array(cfg.grid_Ps))

    # figures
    fig, axes = subplots(1, len(cfg.Ps), size=(3.4, 2.8), sharex=True)
    nonzero = {P: v[v > 1e-9 * v.max()] for P, v in spectra.items()}
    edges = np.geomspace(min(float(v.min()) for v in nonzero.values()) * 0.9,
                         max(float(v.max()) for v in nonzero.values()) * 1.1, cfg.bins + 1)
    for j, P in enumerate(cfg.Ps):
        ax = axes[0, j]
        weights = np.full(nonzero[P].size, 1.0 / spectra[P].size)
        ax.hist(nonzero[P], bins=edges, weights=weights, color="#4477aa")
        ax.set_xscale("log")
        r = df[(df.panel == "spectrum") & (df.P == P)].iloc[0]
        ax.axvline(r.top_D_predicted, color="r", ls="--", lw=0.8, label="last-row diag (D+2)N(N+2)/(D(N+1)^2)")
        ax.axvline(r.w11_diag_predicted, color="g", ls=":", lw=0.8, label="W11 diag N(N+D+1)/(D(N+1)^2)")
        ax.set_title(f"P={P} ({'<' if P < D * (D + 1) else '>='} D(D+1)={D * (D + 1)})\n"
                     f"zero modes (not drawn): {100 * r.zero_ratio:.1f}%")
        ax.set_xlabel("nonzero eigenvalue of S = -J")
        if j == 0:
            ax.set_ylabel("fraction of all eigenvalues")
            ax.legend(fontsize=6, loc="upper left")
    ctx.figure(
        fig,
        "hessian_spectrum",
        caption=(
            f"Fig. S7: eigenvalues of S = -J pooled over {cfg.repeats} draws (paper: 2000), D={D}, N={N}, "
            f"P={cfg.Ps}, seed={cfg.seed}; log axis, the zero modes (the spike at 0) are given in the "
            f"titles. Paper: a spike at 0 (zero modes), a bulk from the W11 spins (green: their "
            "mean diagonal) and a separate bulk near 1 from the D last-row spins (red: their diagonal)."
        ),
    )
    fig, axes = subplots(1, 1, size=(4.4, 3.2))
    ax = axes[0, 0]
    Pf = np.linspace(min(cfg.grid_Ps), max(cfg.grid_Ps), 400)
    for i, Dg in enumerate(cfg.grid_Ds):
        line = ax.plot(Pf, [zero_ratio_law(p, Dg) for p in Pf], lw=0.8)[0]
        ax.plot(cfg.grid_Ps, grid[i], "o", ms=2.5, color=line.get_color(), label=f"D={Dg}")
    ax.set_xlabel("P")
    ax.set_ylabel("zero ratio")
    ax.legend(fontsize=7, ncol=2)
    ctx.figure(
        fig,
        "zero_ratio",
        caption=(
            f"Fig. S7 inset: fraction of zero eigenvalues of S over D={cfg.grid_Ds} and P from {min(cfg.grid_Ps)} to "
            f"{max(cfg.grid_Ps)} (markers: 1 - rank(F)/(D+1)^2 from the SVD of the P x D(D+1) feature matrix, "
            f"{cfg.grid_repeats} draw(s) per cell, N={N}), lines: 1 - min(P, D(D+1))/(D+1)^2."
        ),
    )

    # claims
    g = df[df.panel == "zero_ratio_grid"]
    dev = float((g.zero_ratio - g.zero_ratio_law).abs().max())
    ctx.claim("zero ratio follows 1 - min(P, D(D+1))/(D+1)^2",
              paper="the inset follows the law exactly", ours=dev,
              target="max |measured - law| over the grid < 1e-12", passed=dev < 1e-12)
    sp = df[df.panel == "spectrum"]
    dev_sp = float((sp.zero_ratio - sp.zero_ratio_law).abs().max())
    ctx.claim("spike at zero in the spectra", paper="zero modes below P = D(D+1), only the last column above",
              ours=", ".join(f"P={r.P}: {r.zero_ratio:.4f} (law {r.zero_ratio_law:.4f})" for r in sp.itertuples()),
              target="max |mean zero ratio - law| < 1e-12", passed=dev_sp < 1e-12)
    big = sp.iloc[int(np.argmax(sp.P.values))]
    rel = abs(big.top_D_mean - big.top_D_predicted) / big.top_D_predicted
    ctx.claim("separate last-row bulk near 1",
              paper="a separate bulk ~1 from the last-row spins",
              ours=(f"P={big.P}: mean of the top D eigenvalues {big.top_D_mean:.3f} (predicted "
                    f"{big.top_D_predicted:.3f}); "
                    "median gap ratio lambda_(D)/lambda_(D+1) " + ", ".join(f"P={r.P}: {r.gap_ratio_median:.2f}"
                                                                           for r in sp.itertuples())),
              target=f"at P={big.P}: top-D mean within 5% of (D+2)N(N+2)/(D(N+1)^2) and gap ratio > 2 in every draw",
              passed=rel < 0.05 and big.gap_ratio_min > 2)
    ctx.note("Zero ratio from the rank of the feature matrix (SVD, numpy's default tolerance after unit-norm column "
             "scaling) instead of counting |eigenvalue| < 1e-5 of S in float32 as the official script does; "
             f"{cfg.grid_repeats} draw(s) per grid cell (official: 10; the rank is the same with probability 1).")
    ctx.note("Spectra count as zero the eigenvalues below 1e-9 times the largest; the D+1 last-column spins are exact "
             "zeros (their features vanish identically) and are appended without diagonalising them.")
    ctx.note("Features use our normalisation 1/(N+1) (official gen_field: 1/N, which moves the bulks by ~2%).")
    if cfg.repeats < 2000:
        ctx.note(f"Spectra pool {cfg.repeats} draws per P (paper: 2000).")
