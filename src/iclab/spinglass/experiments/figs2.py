"""Fig. S2: how the block statistics of (J, h) change with the prompt length N."""

from __future__ import annotations

import time
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from iclab.spinglass._analysis import kl_divergence_counts
from iclab.spinglass._sampling import sample_reduced
from iclab.runtime import Estimate, ExperimentConfig, Results, RunContext, experiment
from iclab.runtime import subplots
from iclab.runtime import make_gen
from iclab.runtime import PositiveInts

from . import _blocks as st
from ._blocks import settings_differ

# D_KL[P_20 || P_200] per block (the paper's text on Fig. S2: "C up to ≈ 0.7 at 10×, D ≈ 0.33, E ≈ 0.2, A and B
# ≈ 0.12").
PAPER_KL_AT_10X = {"A": 0.12, "B": 0.12, "C": 0.7, "D": 0.33, "E": 0.2}
SOURCE = "Fig. S2 and its text"
# Tolerance, declared before any run: the values are quoted with one or two significant figures ("≈"),
# so we allow 10% of the value and at least 0.02.
KL_REL_TOL, KL_TOL = 0.1, 0.02
PAPER = {"D": 20, "P": 1000, "repeats": 1000, "norm": "N", "bins": 100, "a_diagonal": False,
         "Ns": [20, 21, 40, 60, 80, 100, 120, 140, 160, 180, 200]}
SETTINGS = ("D", "P", "norm", "bins", "a_diagonal")  # what the KL values depend on (besides N and N')


class FigS2Config(ExperimentConfig):
    D: int = Field(20, gt=0, description="Input dimension.")
    P: int = Field(1000, gt=0, description="Training prompts per draw of (J, h).")
    Ns: Annotated[PositiveInts, Field(min_length=2)] = Field(
        [20, 21, 40, 60, 80, 100, 120, 140, 160, 180, 200],
        description="Prompt lengths; the first is the reference N of D_KL[P_N || P_N'] (each >= D).",
    )
    repeats: int = Field(1000, gt=0, description="Independent draws per N; KL is computed per draw and averaged.")
    bins: int = Field(100, gt=1, description="Histogram bins over each block's fixed window.")
    batch: int = Field(8, gt=0, description="Draws computed at once (memory ~ batch * P * D^2 * 8 bytes).")
    a_diagonal: bool = Field(False, description="Keep the diagonal of block A (the official S2 script drops it).")
    norm: Literal["N+1", "N"] = Field(
        "N",
        description="Feature normalisation: N (official gen_field, which Fig. S2 used, docs/spinglass.md: quirks; the default "
        "here because the KL values are sensitive to it) or N+1 tokens (our model's convention, docs/spinglass.md: readout).",
    )


@experiment(
    "spinglass.figS2",
    FigS2Config,
    presets={
        "quick": {"repeats": 64, "Ns": [20, 21, 60, 100, 140, 200]},
        "paper": PAPER,
    },
    title="KL divergence of block statistics vs prompt length",
    paper="Li, Bai, Huang 2024, Fig. S2",
)
def compute(cfg: FigS2Config, ctx: RunContext) -> None:
    """D_KL[P_N || P_N'] (bits) between the block histograms of one draw at N = Ns[0] and one at N'.

    Why: it shows which part of the Hamiltonian depends on the prompt length. As in the official
    script, each repeat pairs one draw at the reference N with one draw at N', histograms each
    block on fixed windows (100 bins, +1 pseudo-count, out-of-window values dropped), and the
    curve is the mean +- std over repeats. Features come from the exact reduced sampler.
    """
    t0 = time.perf_counter()
    D, P = cfg.D, cfg.P
    if min(cfg.Ns) < D:
        raise ValueError(f"figS2 needs every N >= D for the Wishart sampler, got Ns={cfg.Ns}, D={D}")

    def histograms(j: int, N: int) -> torch.Tensor:
        """Per-draw counts (R, 5, bins) at prompt length N (stream j)."""
        gen, out = make_gen(cfg.seed, j), []
        for start in range(0, cfg.repeats, cfg.batch):
            B = min(cfg.batch, cfg.repeats - start)
            draw = sample_reduced(D, N, (B, P), generator=gen)
            s, y = draw.features(cfg.norm), draw.y  # (B, P, D+1, D), (B, P)
            J, h = st.reduced_fields(s, y)  # (B, n_red, n_red), (B, D+1, D)
            c = st.block_counts(J, h, D, cfg.bins, st.PAPER_WINDOWS, cfg.a_diagonal)
            out.append(torch.stack([c[k] for k in st.BLOCKS], dim=1))  # (B, 5, bins)
        return torch.cat(out)  # (R, 5, bins)

    ref = histograms(0, cfg.Ns[0])  # (R, 5, bins)
    rows, pooled, kls = [], {cfg.Ns[0]: ref.sum(0)}, []
    for j, N in enumerate(ctx.progress(cfg.Ns[1:], "prompt lengths", total=len(cfg.Ns) - 1), start=1):
        cur = histograms(j, N)  # (R, 5, bins)
        pooled[N] = cur.sum(0)
        kl = kl_divergence_counts(ref, cur)  # (R, 5)
        kls.append(kl.numpy())
        for b, k in enumerate(st.BLOCKS):
            rows.append({"N_ref": cfg.Ns[0], "N": N, "ratio": N / cfg.Ns[0], "block": k,
                         "kl_mean": float(kl[:, b].mean()), "kl_std": float(kl[:, b].std()),
                         "repeats": cfg.repeats})
    ctx.table(pd.DataFrame(rows), "metrics")
    ctx.arrays("kl", Ns=np.array(cfg.Ns[1:]), kl=np.stack(kls))  # kl (len(Ns)-1, R, 5), blocks in st.BLOCKS order
    ctx.arrays("pooled_counts", Ns=np.array(list(pooled)), counts=torch.stack(list(pooled.values())).numpy(),
               windows=np.array([st.PAPER_WINDOWS[k] for k in st.BLOCKS]))
    ctx.json("timing", {"seconds": time.perf_counter() - t0})
    ctx.note("Histogram windows are the official ones (A: [-0.2, 0.4], B: [-0.3, 0.3], C: [-0.1, 0.1], "
             "D: [-0.3, 0.3], E: [-0.5, 0.5]), values outside are dropped as in the official pandas.cut.")
    ctx.note(f"Features normalised by {cfg.norm}. The official gen_field (used for this figure) divides by N; our "
             "model's convention divides by N+1 tokens, which rescales J by N^2/(N+1)^2 (-9% at N=20, -1% at N=200) "
             "and lowers the KL values (e.g. C ~0.54 instead of ~0.72 at 10x): the absolute numbers depend on the "
             "convention, the ordering of the blocks does not. Set norm=N+1 to see it.")
    ctx.note("Draws use the exact reduced sampler iclab.spinglass._sampling (draw of C w, w^T C w) instead "
             "of sampling N tokens per prompt; block A drops its diagonal as in the official S2 script.")
    if cfg.repeats < 1000:
        ctx.note(f"{cfg.repeats} repeats per N (paper: 1000).")


def _compared(cfg: FigS2Config) -> bool:
    """The paper's values are D_KL[P_20 || P_200] at its settings."""
    return not settings_differ(cfg, PAPER, SETTINGS) and cfg.Ns[0] == 20 and cfg.Ns[-1] == 200


@compute.figures
def figures(cfg: FigS2Config, res: Results, ctx: RunContext) -> None:
    df, pc = res.table("metrics"), res.arrays("pooled_counts")
    compared = _compared(cfg)
    fig, axes = subplots(1, 2, size=(4.4, 3.4))
    ax = axes[0, 0]
    for j, k in enumerate(st.BLOCKS):
        d = df[df.block == k]
        ax.plot(d.ratio, d.kl_mean, "o-", ms=4, color=f"C{j}", label=k)
        ax.fill_between(d.ratio, d.kl_mean - d.kl_std, d.kl_mean + d.kl_std, color=f"C{j}", alpha=0.15)
        if compared:
            ax.plot(10, PAPER_KL_AT_10X[k], "*", ms=11, mec="k", color=f"C{j}",
                    label="paper at 10x" if j == 0 else None)
    ax.set_xlabel(f"N' / {cfg.Ns[0]}")
    ax.set_ylabel(f"D_KL[P_{cfg.Ns[0]} || P_N'] (bits)")
    ax.set_title("(a) change of block statistics")
    ax.legend(title="block")
    ax = axes[0, 1]
    lo, hi = st.PAPER_WINDOWS["C"]
    edges = np.linspace(lo, hi, cfg.bins + 1)
    Ns = pc["Ns"].tolist()
    for N in (Ns[0], Ns[-1]):
        c = pc["counts"][Ns.index(N), st.BLOCKS.index("C")].astype(float)
        ax.stairs(c / c.sum() / (edges[1] - edges[0]), edges, label=f"N={N}")
    ax.set_yscale("log")
    ax.locator_params(axis="x", nbins=5)
    ax.set_xlabel("coupling value")
    ax.set_title("(b) block C pooled over repeats")
    ax.legend()
    ctx.figure(fig, "kl_vs_prompt_length", caption=(
        f"Fig. S2: D_KL[P_N || P_N'] (base 2, {cfg.bins} bins on the official windows, +1 pseudo-count) between "
        f"block histograms of single draws at N={cfg.Ns[0]} and N', mean +- std over {cfg.repeats} paired repeats "
        f"(paper: 1000); D={cfg.D}, P={cfg.P}, features normalised by {cfg.norm}, A without its diagonal="
        f"{not cfg.a_diagonal}, seed={cfg.seed}. Stars: the paper's values at N'=10N (C ~0.7, D ~0.33, E ~0.2, "
        "A and B ~0.12). (b) The pooled C histograms at the two extreme N."))


@compute.verdicts
def verdicts(cfg: FigS2Config, res: Results, ctx: RunContext) -> None:
    a = res.arrays("kl")
    Ns, kl = a["Ns"].tolist(), a["kl"]  # kl (len(Ns), R, 5)
    last = kl[-1]  # (R, 5) at the largest N'
    differ = settings_differ(cfg, PAPER, SETTINGS)
    if differ:
        ctx.note(f"No paper-value claims: settings differ from the paper's ({', '.join(differ)}).")
    if _compared(cfg):
        for b, k in enumerate(st.BLOCKS):
            ctx.claim(f"KL of block {k} at N' = 10 N", kind="paper-value", paper=f"≈ {PAPER_KL_AT_10X[k]}",
                      paper_value=PAPER_KL_AT_10X[k], source=SOURCE,
                      ours=Estimate.mean(last[:, b], unit="repeats"), tolerance=KL_TOL, rel_tolerance=KL_REL_TOL,
                      note=f"Features normalised by {cfg.norm} (the paper's gen_field uses N).")
    others = np.delete(last, st.BLOCKS.index("C"), axis=1).max(1)  # (R,)
    ctx.claim(f"KL of block C minus the largest other block at N'={Ns[-1]}", kind="paper-shape",
              paper="block C changes most with N", source=SOURCE,
              ours=Estimate.mean(last[:, st.BLOCKS.index("C")] - others, unit="repeats"), expect=(">", 0.0),
              note="Per repeat: KL(C) − max over A, B, D, E.")
    if len(Ns) > 1 and Ns[0] - cfg.Ns[0] <= 2:
        cde = [st.BLOCKS.index(k) for k in "CDE"]
        rise = [last[:, b] - kl[0, :, b] for b in cde]  # 3 x (R,)
        ctx.claim(f"KL rise from N'={Ns[0]} to N'={Ns[-1]}, smallest over blocks C, D, E", kind="sanity",
                  paper=f"(ours) N'={Ns[0]} ~ N is the sampling floor of the KL estimate",
                  ours=Estimate.bootstrap(*rise, statistic=lambda *x: min(float(np.mean(v)) for v in x),
                                          unit="repeats"),
                  expect=(">", 0.0))
    ctx.claim("compute wall time (s)", kind="engineering", paper="(ours) about two minutes at the paper preset",
              ours=Estimate.single(res.json("timing")["seconds"], "one run"))
