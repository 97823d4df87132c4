"""Fig. S2: how the block statistics of (J, h) change with the prompt length N."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from iclab.linear.analysis import kl_divergence_counts
from iclab.linear.sampling import sample_reduced
from iclab.runtime import ExperimentConfig, RunContext, experiment
from iclab.runtime.plots import subplots

from . import _blocks as st

PAPER_KL_AT_10X = {"A": 0.12, "B": 0.12, "C": 0.7, "D": 0.33, "E": 0.2}  # spec §2.2, read from the figure


class FigS2Config(ExperimentConfig):
    D: int = Field(20, gt=0, description="Input dimension.")
    P: int = Field(1000, gt=0, description="Training prompts per draw of (J, h).")
    Ns: list[int] = Field(
        [20, 21, 40, 60, 80, 100, 120, 140, 160, 180, 200],
        description="Prompt lengths; the first is the reference N of D_KL[P_N || P_N'] (each >= D).",
    )
    repeats: int = Field(1000, gt=0, description="Independent draws per N; KL is computed per draw and averaged.")
    bins: int = Field(100, gt=1, description="Histogram bins over each block's fixed window.")
    batch: int = Field(8, gt=0, description="Draws computed at once (memory ~ batch * P * D^2 * 8 bytes).")
    a_diagonal: bool = Field(False, description="Keep the diagonal of block A (the official S2 script drops it).")
    norm: Literal["N+1", "N"] = Field(
        "N",
        description="Feature normalisation: N (official gen_field, which Fig. S2 used, spec §7.1; the default "
        "here because the KL values are sensitive to it) or N+1 tokens (our model's convention, spec §1.3).",
    )

    @field_validator("Ns")
    @classmethod
    def _check_Ns(cls, v: list[int]) -> list[int]:
        if len(v) < 2 or any(n <= 0 for n in v):
            raise ValueError("give a reference N and at least one more, all > 0")
        return v


@experiment(
    "spinglass.figS2",
    FigS2Config,
    presets={
        "quick": {"repeats": 64, "Ns": [20, 21, 60, 100, 140, 200]},
        "paper": {"D": 20, "P": 1000, "repeats": 1000, "norm": "N",
                  "Ns": [20, 21, 40, 60, 80, 100, 120, 140, 160, 180, 200]},
    },
    title="KL divergence of block statistics vs prompt length",
    paper="Li, Bai, Huang 2024, Fig. S2",
)
def run(cfg: FigS2Config, ctx: RunContext) -> None:
    """D_KL[P_N || P_N'] (bits) between the block histograms of one draw at N = Ns[0] and one at N'.

    Why: it shows which part of the Hamiltonian depends on the prompt length. As in the official
    script, each repeat pairs one draw at the reference N with one draw at N', histograms each
    block on fixed windows (100 bins, +1 pseudo-count, out-of-window values dropped), and the
    curve is the mean +- std over repeats. Features come from the exact reduced sampler.
    """
    D, P = cfg.D, cfg.P
    if min(cfg.Ns) < D:
        raise ValueError(f"figS2 needs every N >= D for the Wishart sampler, got Ns={cfg.Ns}, D={D}")
    gen = torch.Generator().manual_seed(cfg.seed * 1000)

    def histograms(N: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-draw counts (R, 5, bins) and pooled counts per block at prompt length N."""
        out = []
        for start in range(0, cfg.repeats, cfg.batch):
            B = min(cfg.batch, cfg.repeats - start)
            draw = sample_reduced(D, N, (B, P), generator=gen)
            s, y = draw.features(cfg.norm), draw.y  # (B, P, D+1, D), (B, P)
            J, h = st.reduced_fields(s, y)  # (B, n_red, n_red), (B, D+1, D)
            c = st.block_counts(J, h, D, cfg.bins, st.PAPER_WINDOWS, cfg.a_diagonal)
            out.append(torch.stack([c[k] for k in st.BLOCKS], dim=1))  # (B, 5, bins)
        return torch.cat(out)  # (R, 5, bins)

    ref = histograms(cfg.Ns[0])  # (R, 5, bins)
    rows, pooled = [], {cfg.Ns[0]: ref.sum(0)}
    for N in ctx.progress(cfg.Ns[1:], "prompt lengths", total=len(cfg.Ns) - 1):
        cur = histograms(N)  # (R, 5, bins)
        pooled[N] = cur.sum(0)
        kl = kl_divergence_counts(ref, cur)  # (R, 5)
        for j, k in enumerate(st.BLOCKS):
            rows.append({"N_ref": cfg.Ns[0], "N": N, "ratio": N / cfg.Ns[0], "block": k,
                         "kl_mean": float(kl[:, j].mean()), "kl_std": float(kl[:, j].std()),
                         "repeats": cfg.repeats})
    df = pd.DataFrame(rows)
    ctx.table(df, "metrics")
    ctx.arrays("pooled_counts", Ns=np.array(list(pooled)), counts=torch.stack(list(pooled.values())).numpy(),
               windows=np.array([st.PAPER_WINDOWS[k] for k in st.BLOCKS]))

    fig, axes = subplots(1, 2, size=(4.4, 3.4))
    ax = axes[0, 0]
    for k in st.BLOCKS:
        d = df[df.block == k]
        ax.plot(d.ratio, d.kl_mean, "o-", ms=4, label=k)
        ax.fill_between(d.ratio, d.kl_mean - d.kl_std, d.kl_mean + d.kl_std, alpha=0.15)
    ax.set_xlabel(f"N' / {cfg.Ns[0]}")
    ax.set_ylabel(f"D_KL[P_{cfg.Ns[0]} || P_N'] (bits)")
    ax.set_title("(a) change of block statistics")
    ax.legend(title="block")
    ax = axes[0, 1]
    lo, hi = st.PAPER_WINDOWS["C"]
    edges = np.linspace(lo, hi, cfg.bins + 1)
    for N in (cfg.Ns[0], cfg.Ns[-1]):
        c = pooled[N][st.BLOCKS.index("C")].double()
        ax.stairs((c / c.sum() / (edges[1] - edges[0])).numpy(), edges, label=f"N={N}")
    ax.set_yscale("log")
    ax.locator_params(axis="x", nbins=5)
    ax.set_xlabel("coupling value")
    ax.set_title("(b) block C pooled over repeats")
    ax.legend()
    ctx.figure(
        fig,
        "kl_vs_prompt_length",
        caption=(
            f"Fig. S2: D_KL[P_N || P_N'] (base 2, {cfg.bins} bins on the official windows, +1 pseudo-count) between "
            f"block histograms of single draws at N={cfg.Ns[0]} and N', mean +- std over {cfg.repeats} paired repeats "
            f"(paper: 1000); D={D}, P={P}, features normalised by {cfg.norm}, A without its diagonal="
            f"{not cfg.a_diagonal}, seed={cfg.seed}. Paper: block C changes most (~0.7 at 10x), D ~0.33, E ~0.2, "
            "A and B ~0.12. (b) The pooled C histograms at the two extreme N."
        ),
    )

    last = df[df.N == cfg.Ns[-1]].set_index("block")
    top = str(last.kl_mean.idxmax())
    max_kl = df.groupby("block").kl_mean.max()
    ctx.claim(
        "block C changes most with N",
        paper="C changes most (KL ~0.7 at N'=10N); D ~0.33, E ~0.2, A, B ~0.12",
        ours=", ".join(f"{k}: {max_kl[k]:.3f}" for k in st.BLOCKS) + " (max over N')",
        target="argmax over blocks of the KL at the largest N' is C",
        passed=top == "C",
    )
    if cfg.Ns[1] - cfg.Ns[0] <= 2 and len(cfg.Ns) > 2:
        floor = df[df.N == cfg.Ns[1]].set_index("block").kl_mean
        ctx.claim(
            "KL at N' ~ N is the sampling floor",
            paper=f"the N'={cfg.Ns[1]} point sits lowest",
            ours=", ".join(f"{k}: {floor[k]:.3f}" for k in st.BLOCKS),
            target="for C, D, E: KL(N'=Ns[1]) < KL(largest N')",
            passed=all(floor[k] < last.kl_mean[k] for k in ("C", "D", "E")),
        )
    ctx.note("Histogram windows are the official ones (A: [-0.2, 0.4], B: [-0.3, 0.3], C: [-0.1, 0.1], "
             "D: [-0.3, 0.3], E: [-0.5, 0.5]), values outside are dropped as in the official pandas.cut.")
    ratio = cfg.Ns[-1] / cfg.Ns[0]
    if abs(ratio - 10) < 1e-9:
        dev = {k: abs(last.kl_mean[k] - PAPER_KL_AT_10X[k]) / PAPER_KL_AT_10X[k] for k in st.BLOCKS}
        ctx.claim(
            "KL values at N' = 10 N",
            paper=", ".join(f"{k}: {v}" for k, v in PAPER_KL_AT_10X.items()) + " (read from the figure)",
            ours=", ".join(f"{k}: {last.kl_mean[k]:.3f}" for k in st.BLOCKS) + f" (norm {cfg.norm})",
            target="every block within 25% of the paper's value",
            passed=max(dev.values()) < 0.25,
        )
    ctx.note(f"Features normalised by {cfg.norm}. The official gen_field (used for this figure) divides by N; our "
             "model's convention divides by N+1 tokens, which rescales J by N^2/(N+1)^2 (-9% at N=20, -1% at N=200) "
             "and lowers the KL values (e.g. C ~0.54 instead of ~0.72 at 10x): the absolute numbers depend on the "
             "convention, the ordering of the blocks does not. Set norm=N+1 to see it.")
    ctx.note("Draws use the exact reduced sampler iclab.linear.sampling (draw of C w, w^T C w) instead "
             "of sampling N tokens per prompt; block A drops its diagonal as in the official S2 script.")
    if cfg.repeats < 1000:
        ctx.note(f"{cfg.repeats} repeats per N (paper: 1000).")
