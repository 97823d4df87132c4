"""Fig. 1: the structure of the fields h and couplings J of the pre-training Hamiltonian."""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from iclab.spinglass._data import features, sample_prompts
from iclab.spinglass._sampling import sample_reduced
from iclab.spinglass._hamiltonian import SpinGlass
from iclab.runtime import Estimate, ExperimentConfig, Results, RunContext, experiment
from iclab.runtime import heatmap, subplots
from iclab.runtime import make_gen, make_rng

from . import _blocks as st
from ._blocks import settings_differ

SOURCE = "Fig. 1 (the authors' fig-1/plot.py and its saved draw fig-1/data/*-matrix.npy)"
# The paper's numbers. The diagonal of J is read from its one saved draw; the block curves are hand-set in
# fig-1/plot.py: A = 0.82 N(0, 0.02^2) + 0.18 N(0.2, 0.02^2), B-E = a N(0, sigma^2).
PAPER_DIAG_J = {"W11": -0.21, "last_row": -1.34}
PAPER_A = {"w_high": 0.18, "mu_high": 0.2, "sd_high": 0.02, "sd_low": 0.02}
PAPER_SIGMA = {"B": 0.06, "C": 0.024, "D": 0.027, "E": 0.08}
PAPER_AMPLITUDE = {"B": 1.0, "C": 3.0, "D": 1.04, "E": 1.04}
# fig-1/plot.py evaluates the C curve 3*N(x; 0, 0.024^2) on linspace(-0.3, 0.3) but draws it against
# linspace(-0.1, 0.1): the curve on screen is 3*N(3x; 0, 0.024^2) = N(x; 0, 0.008^2).
PAPER_SIGMA_DRAWN = {"B": 0.06, "C": 0.008, "D": 0.027, "E": 0.08}
PAPER_AMPLITUDE_DRAWN = {"B": 1.0, "C": 1.0, "D": 1.04, "E": 1.04}

# Tolerances, declared before any run.
DIAG_J_TOL = {"W11": 0.01, "last_row": 0.02}  # ~1.5%: the size of the 1/N vs 1/(N+1) feature convention (2%)
A_MU_TOL = 0.015  # half the range 0.19-0.22 of the diagonal entries in the paper's saved draw
A_W_TOL = 0.01  # a hand-set mixture weight quoted to two decimals
A_SD_TOL = 0.005  # "0.02" has one significant figure
SIGMA_REL_TOL = 0.15  # the paper's curves are hand-set, not fitted: 15% of the width
CLOSED_FORM_REL = {"diag": 0.02, "std": 0.05}  # sanity: our sampler vs our closed forms
N_GROUPS = 10  # the draws are split into this many independent groups; fits get t-intervals over them
PAPER = {"D": 5, "N": 100, "P": 1000, "lam0": 0.0, "draws": 100_000}
SETTINGS = ("D", "N", "P")  # what the paper's numbers depend on (lambda0 only shifts lambda, not J or h)


class Fig1Config(ExperimentConfig):
    D: int = Field(5, gt=0, description="Input dimension.")
    N: int = Field(100, gt=0, description="Context length (N >= D for the Wishart sampler).")
    P: int = Field(1000, gt=0, description="Training prompts per draw of (J, h).")
    lam0: float = Field(0.0, ge=0, description="L2 strength lambda0 (only enters lambda_k = lambda0 - J_kk).")
    draws: int = Field(100_000, gt=0, description="Independent draws of (J, h) pooled in the histograms.")
    batch: int = Field(200, gt=0, description="Draws computed at once (memory ~ batch * P * D^2 * 8 bytes).")
    bins: int = Field(400, gt=1, description="Histogram bins over each block's paper window.")
    gmm_max_points: int = Field(200_000, gt=10, description="At most this many A-block values go to the GMM fit.")
    norm: Literal["N+1", "N"] = Field(
        "N+1", description="Feature normalisation: N+1 tokens (ours, docs/spinglass.md: readout) or N (official gen_field, §7.1)."
    )


def _centers(k: str, bins: int) -> tuple[np.ndarray, float]:
    lo, hi = st.PAPER_WINDOWS[k]
    width = (hi - lo) / bins
    return lo + width * (np.arange(bins) + 0.5), width


def _gmm(values: np.ndarray, seed: int) -> dict[str, float]:
    """Two-component mixture fit of block A, components ordered low -> high."""
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(2, random_state=seed).fit(values[:, None])
    o = np.argsort(gmm.means_[:, 0])
    w, mu, sd = gmm.weights_[o], gmm.means_[o, 0], np.sqrt(gmm.covariances_[o, 0, 0])
    return {"w_high": float(w[1]), "mu_high": float(mu[1]), "sd_high": float(sd[1]), "w_low": float(w[0]),
            "mu_low": float(mu[0]), "sd_low": float(sd[0])}


def _fits(counts: dict[str, np.ndarray], moments: dict[str, st.Moments], a_values: np.ndarray, cfg: Fig1Config,
          seed: int) -> dict[str, float]:
    """GMM of A, and per block B-E a normal MLE and a least-squares a*N(0, s^2) fit to the density."""
    out = {f"A_{k}": v for k, v in _gmm(a_values, seed).items()}
    for k in ("B", "C", "D", "E"):
        centers, width = _centers(k, cfg.bins)
        amp, sig = st.fit_scaled_gaussian(centers, counts[k] / (moments[k].n * width), moments[k].std)
        out |= {f"{k}_mle_mean": moments[k].mean, f"{k}_mle_std": moments[k].std, f"{k}_lsq_amplitude": amp,
                f"{k}_lsq_sigma": sig, f"{k}_fraction_outside_window": 1 - counts[k].sum() / moments[k].n}
    return out


def _single_draw(cfg: Fig1Config) -> tuple[np.ndarray, np.ndarray]:
    """One draw of (h, J) through the core prompt -> features path: h (D+1, D+1), J (n, n)."""
    D, N = cfg.D, cfg.N
    scale = 1.0 if cfg.norm == "N+1" else (N + 1) / N
    prompts = sample_prompts(D, N, cfg.P, generator=make_gen(cfg.seed, "single"))
    sg = SpinGlass.from_features(features(prompts.Z) * scale, prompts.y, cfg.lam0)
    return sg.h.reshape(D + 1, D + 1).numpy(), sg.J.numpy()


@experiment(
    "spinglass.fig1",
    Fig1Config,
    presets={"quick": {"draws": 2000}, "paper": PAPER},
    title="Structure of fields and couplings",
    paper="Li, Bai, Huang 2024, Fig. 1",
)
def compute(cfg: Fig1Config, ctx: RunContext) -> None:
    """Heatmaps of one draw of h and J, and block histograms A-E pooled over many draws.

    Why: the fields carry the identity (bimodal A block, diagonal ~ N/((N+1)D)), the couplings
    are small, zero-mean and block-structured; these statistics are what Figs. S2/S3 build on.
    The pooled draws use the exact reduced sampler `sampling.sample_reduced` (same distribution,
    ~N times fewer random numbers); one draw is also built with the core prompt -> features path for the heatmaps.
    """
    t0 = time.perf_counter()
    D, N, P = cfg.D, cfg.N, cfg.P
    if N < D:
        raise ValueError(f"fig1 needs N >= D for the Wishart sampler, got N={N}, D={D}")
    h_mat, J = _single_draw(cfg)

    # pooled block statistics, streamed over batches of draws; batch b belongs to group b % G
    gen = make_gen(cfg.seed, "draws")
    n_batches = -(-cfg.draws // cfg.batch)
    G = min(N_GROUPS, n_batches)
    counts = [{k: np.zeros(cfg.bins, dtype=np.int64) for k in st.BLOCKS} for _ in range(G)]
    moments = [{k: st.Moments() for k in st.BLOCKS} for _ in range(G)]
    pooled = {k: st.Moments() for k in st.BLOCKS}
    a_values, w11_diag, last_diag, a_diag = [[] for _ in range(G)], [], [], []
    for i in ctx.progress(range(n_batches), "draws", total=n_batches):
        g = i % G
        B = min(cfg.batch, cfg.draws - i * cfg.batch)
        draw = sample_reduced(D, N, (B, P), generator=gen)
        s, y = draw.features(cfg.norm), draw.y  # (B, P, D+1, D), (B, P)
        Jr, hr = st.reduced_fields(s, y)  # (B, n_red, n_red), (B, D+1, D)
        dj = torch.diagonal(Jr, dim1=-2, dim2=-1)  # (B, n_red)
        w11_diag.append(dj[:, : D * D].mean(1))
        last_diag.append(dj[:, D * D :].mean(1))
        a_diag.append(torch.diagonal(hr[:, :D, :D], dim1=-2, dim2=-1).mean(1))
        for k, v in st.block_values(Jr, hr, D).items():
            lo, hi = st.PAPER_WINDOWS[k]
            counts[g][k] += torch.histc(v.reshape(-1), cfg.bins, lo, hi).long().numpy()
            moments[g][k].update(v)
            pooled[k].update(v)
            if k == "A":
                a_values[g].append(v.reshape(-1).numpy())
    a_groups = [np.concatenate(a) for a in a_values]
    per_group = max(10, cfg.gmm_max_points // G)
    rows = []
    for g in ctx.progress(range(G), "fits per group", total=G):
        rng = make_rng(cfg.seed, "gmm", g)
        a = a_groups[g] if a_groups[g].size <= per_group else rng.choice(a_groups[g], per_group, replace=False)
        draws = sum(min(cfg.batch, cfg.draws - i * cfg.batch) for i in range(g, n_batches, G))
        rows.append({"group": g, "draws": draws, **_fits(counts[g], moments[g], a, cfg, cfg.seed)})
    ctx.table(pd.DataFrame(rows), "groups")

    all_a = np.concatenate(a_groups)
    rng = make_rng(cfg.seed, "gmm", "pooled")
    a_fit = all_a if all_a.size <= cfg.gmm_max_points else rng.choice(all_a, cfg.gmm_max_points, replace=False)
    total = {k: sum(c[k] for c in counts) for k in st.BLOCKS}
    fits = _fits(total, pooled, a_fit, cfg, cfg.seed)
    w11_diag, last_diag, a_diag = (torch.cat(x).numpy() for x in (w11_diag, last_diag, a_diag))
    ctx.table(_metrics(cfg, fits, w11_diag, last_diag, a_diag, J), "metrics")
    ctx.json("fits", fits)
    ctx.arrays("blocks", **{f"counts_{k}": total[k] for k in st.BLOCKS}, h_single=h_mat, J_single=J,
               diagJ_w11_per_draw=w11_diag, diagJ_last_per_draw=last_diag, a_diag_per_draw=a_diag)
    ctx.json("timing", {"seconds": time.perf_counter() - t0})
    _notes(cfg, ctx)


def _metrics(cfg: Fig1Config, fits: dict[str, float], w11: np.ndarray, last: np.ndarray, a_diag: np.ndarray,
             J: np.ndarray) -> pd.DataFrame:
    """Pooled statistics beside our closed forms (both feature conventions) and the paper's numbers."""
    D, N, P = cfg.D, cfg.N, cfg.P
    pred = st.predicted_stats(D, N, P, cfg.norm)
    pred_off = st.predicted_stats(D, N, P, "N" if cfg.norm == "N+1" else "N+1")
    head = D * (D + 1)
    dj = np.diag(J)
    rows = [
        ("diagJ_W11_mean", float(w11.mean()), pred["diagJ_W11"], pred_off["diagJ_W11"], PAPER_DIAG_J["W11"]),
        ("diagJ_last_row_mean", float(last.mean()), pred["diagJ_last_row"], pred_off["diagJ_last_row"],
         PAPER_DIAG_J["last_row"]),
        ("diagJ_W11_single_draw", float(dj[:head].reshape(D, D + 1)[:, :D].mean()), pred["diagJ_W11"],
         pred_off["diagJ_W11"], PAPER_DIAG_J["W11"]),
        ("diagJ_last_row_single_draw", float(dj[head : head + D].mean()), pred["diagJ_last_row"],
         pred_off["diagJ_last_row"], PAPER_DIAG_J["last_row"]),
        ("A_diag_mean", float(a_diag.mean()), pred["A_diag_mean"], pred_off["A_diag_mean"], PAPER_A["mu_high"]),
        ("A_gmm_weight_high", fits["A_w_high"], 1 / D, 1 / D, PAPER_A["w_high"]),
        ("A_gmm_mean_high", fits["A_mu_high"], pred["A_diag_mean"], pred_off["A_diag_mean"], PAPER_A["mu_high"]),
        ("A_gmm_mean_low", fits["A_mu_low"], 0.0, 0.0, 0.0),
        ("A_gmm_std_high", fits["A_sd_high"], np.nan, np.nan, PAPER_A["sd_high"]),
        ("A_gmm_std_low", fits["A_sd_low"], np.nan, np.nan, PAPER_A["sd_low"]),
    ]
    for k in ("B", "C", "D", "E"):
        rows += [
            (f"{k}_mle_mean", fits[f"{k}_mle_mean"], 0.0, 0.0, 0.0),
            (f"{k}_mle_std", fits[f"{k}_mle_std"], pred.get(f"{k}_std", np.nan), pred_off.get(f"{k}_std", np.nan),
             PAPER_SIGMA[k]),
            (f"{k}_lsq_sigma", fits[f"{k}_lsq_sigma"], np.nan, np.nan, PAPER_SIGMA[k]),
            (f"{k}_lsq_amplitude", fits[f"{k}_lsq_amplitude"], np.nan, np.nan, PAPER_AMPLITUDE[k]),
            (f"{k}_fraction_outside_window", fits[f"{k}_fraction_outside_window"], np.nan, np.nan, np.nan),
        ]
    rows.append(("fraction_draws_last_row_diag_below_paper", float((last <= PAPER_DIAG_J["last_row"]).mean()),
                 np.nan, np.nan, np.nan))
    df = pd.DataFrame(rows, columns=["statistic", "ours", "predicted", "predicted_other_norm", "paper"])
    df.insert(0, "norm", cfg.norm)
    df.insert(0, "draws", cfg.draws)
    return df


def _notes(cfg: Fig1Config, ctx: RunContext) -> None:
    ctx.note("Pooled draws sample (C w, w^T C w) of the context Gram matrix C = sum_i x_i x_i^T ~ Wishart(N, I) "
             "exactly (iclab.spinglass._sampling: the inputs' components along w and orthogonal to it are independent, "
             "D+1 variates per prompt) instead of drawing the N tokens: the features only see C, so the distribution "
             "is identical (the test suite checks the formula against the core features); one draw uses the core "
             "path for panels a, b.")
    ctx.note(f"Features use our convention ({cfg.norm}); the official gen_field divides by N and transposes the D x D "
             "block (docs/spinglass.md: quirks). The transposition only relabels spins (histograms unchanged); the normalisation "
             "rescales h by (N+1)/N and J by ((N+1)/N)^2, which is why the predicted_other_norm column is given.")
    ctx.note("The paper's 'fits' are hand-set curves in fig-1/plot.py (C is drawn as 3*N(0,0.024^2), D "
             "and E with a 1.04 factor), not normalised fits; we compare the paper's widths with a least-squares "
             "a*N(0,s^2) fit to our histogram density (the form of the paper's curves) and also report a normal MLE "
             "(sample std). The pooled C and D distributions are heavy-tailed mixtures (different variances for pairs "
             "sharing a row or column index), so the two differ.")
    ctx.note(f"Fit intervals are t-intervals over {N_GROUPS} independent groups of draws (batch b in group "
             f"b mod {N_GROUPS}); diagonal means are t-intervals over the draws.")
    if cfg.draws < 100_000:
        ctx.note(f"Histograms pool {cfg.draws} draws (paper: 100 000).")


@compute.figures
def figures(cfg: Fig1Config, res: Results, ctx: RunContext) -> None:
    D, N, P = cfg.D, cfg.N, cfg.P
    arr, fits = res.arrays("blocks"), res.json("fits")
    h_mat, J = arr["h_single"], arr["J_single"]
    head = D * (D + 1)
    fig, axes = subplots(1, 2, size=(4.2, 3.6))
    heatmap(axes[0, 0], h_mat, "(a) fields h")
    axes[0, 0].axhline(D - 0.5, color="k", ls="--", lw=0.8)
    axes[0, 0].axvline(D - 0.5, color="k", ls="--", lw=0.8)
    axes[0, 0].text(D / 2 - 0.5, D / 2 - 0.5, "A", ha="center", va="center", color="k")
    axes[0, 0].text(D / 2 - 0.5, D, "B", ha="center", va="center", color="k")
    off = np.abs(J[~np.eye(J.shape[0], dtype=bool)]).max()
    im = heatmap(axes[0, 1], J, f"(b) couplings J (colours clipped at +-{off:.2f})")
    im.set_clim(-off, off)  # the diagonal (~ -0.2 and ~ -1.4) would otherwise hide blocks C, D, E
    axes[0, 1].axhline(head - 0.5, color="k", ls="--", lw=0.8)
    axes[0, 1].axvline(head - 0.5, color="k", ls="--", lw=0.8)
    for label, (r, c) in {"C": (head / 4, 3 * head / 4), "D": (head / 2, head + D / 2),
                          "E": (head + D / 2, head + D / 4)}.items():
        axes[0, 1].text(c, r, label, ha="center", va="center", color="k")
    ctx.figure(fig, "fields_couplings", caption=(
        f"Fig. 1a,b: one draw of the fields h ((D+1)x(D+1)) and couplings J ((D+1)^2 x (D+1)^2), "
        f"D={D}, N={N}, P={P}, lambda0={cfg.lam0}, features normalised by {cfg.norm}, seed={cfg.seed}. "
        "Paper: h has a diagonal D x D block (A) and a small last row (B), the last column is 0; "
        "J is dominated by its negative diagonal (paper's draw: ~ -0.21 on W11 spins, ~ -1.34 on the last row; "
        "colours clipped at the largest off-diagonal |J| so that the small off-diagonal blocks C, D, E show)."))

    fig, axes = subplots(1, 5, size=(2.6, 2.4))
    for j, k in enumerate(st.BLOCKS):
        ax = axes[0, j]
        lo, hi = st.PAPER_WINDOWS[k]
        counts = arr[f"counts_{k}"]
        _, width = _centers(k, cfg.bins)
        n = counts.sum() / (1 - fits.get(f"{k}_fraction_outside_window", 0.0))
        ax.stairs(counts / (n * width), np.linspace(lo, hi, cfg.bins + 1), fill=True, color="#97999a")
        x = np.linspace(lo, hi, 400)
        if k == "A":
            curve = sum(fits[f"A_w_{c}"] * st.gaussian_pdf(x, fits[f"A_mu_{c}"], fits[f"A_sd_{c}"])
                        for c in ("low", "high"))
            ax.plot(x, curve, "r", lw=0.8, label="GMM fit")
            paper = ((1 - PAPER_A["w_high"]) * st.gaussian_pdf(x, 0.0, PAPER_A["sd_low"])
                     + PAPER_A["w_high"] * st.gaussian_pdf(x, PAPER_A["mu_high"], PAPER_A["sd_high"]))
            ax.plot(x, paper, "k:", lw=0.8, label="paper curve")
        else:
            ax.plot(x, st.gaussian_pdf(x, fits[f"{k}_mle_mean"], fits[f"{k}_mle_std"]), "r", lw=0.8,
                    label="normal (MLE)")
            ax.plot(x, fits[f"{k}_lsq_amplitude"] * st.gaussian_pdf(x, 0, fits[f"{k}_lsq_sigma"]), "b--", lw=0.8,
                    label="a N(0, s^2) (LSQ)")
            ax.plot(x, PAPER_AMPLITUDE_DRAWN[k] * st.gaussian_pdf(x, 0, PAPER_SIGMA_DRAWN[k]), "k:", lw=0.8,
                    label="paper curve (as drawn)")
            if PAPER_SIGMA[k] != PAPER_SIGMA_DRAWN[k]:
                ax.plot(x, PAPER_AMPLITUDE[k] * st.gaussian_pdf(x, 0, PAPER_SIGMA[k]), color="gray", ls="-.", lw=0.8,
                        label=f"paper curve (as labelled: {PAPER_AMPLITUDE[k]:g} N(0, {PAPER_SIGMA[k]}^2))")
        ax.set_title(f"block {k}")
        ax.set_xlim(lo, hi)
        if j in (0, 2):
            ax.legend(fontsize=6)
    ctx.figure(fig, "block_histograms", caption=(
        f"Fig. 1c: histograms of blocks A-E pooled over {cfg.draws} draws (paper: 100 000), D={D}, N={N}, P={P}, "
        f"{cfg.bins} bins over the paper's windows, features normalised by {cfg.norm}, seed={cfg.seed}. "
        "A (h over W11, diagonal kept) is bimodal (red: 2-component GMM); B-E with a normal MLE fit (red), "
        "a least-squares a*N(0,s^2) fit to the density (blue dashed) and the paper's hand-set curve as fig-1/plot.py "
        "draws it (dotted; for C that is N(0, 0.008^2); dash-dotted: the labelled 3 N(0, 0.024^2)). Zeros and the "
        "diagonal are removed for C, D, E."))


@compute.verdicts
def verdicts(cfg: Fig1Config, res: Results, ctx: RunContext) -> None:
    arr, grp = res.arrays("blocks"), res.table("groups")
    differ = settings_differ(cfg, PAPER, SETTINGS)
    if differ:
        ctx.note(f"No paper claims: settings differ from the paper's ({', '.join(differ)}).")
    else:
        _paper_claims(cfg, arr, grp, ctx)
    _sanity_claims(cfg, arr, grp, ctx)
    ctx.claim("compute wall time (s)", kind="engineering", paper="(ours) about a minute at the paper preset",
              ours=Estimate.single(res.json("timing")["seconds"], "one run"))


def _paper_claims(cfg: Fig1Config, arr: dict[str, np.ndarray], grp: pd.DataFrame, ctx: RunContext) -> None:
    """The paper's numbers (at its D, N, P) beside ours."""
    D, N, P = cfg.D, cfg.N, cfg.P
    pred = st.predicted_stats(D, N, P, cfg.norm)
    w11, last, a_diag = arr["diagJ_w11_per_draw"], arr["diagJ_last_per_draw"], arr["a_diag_per_draw"]
    groups = f"groups of draws ({len(grp)})"
    for key, per_draw, name in (("W11", w11, "W11 spins"), ("last_row", last, "last-row spins")):
        ctx.claim(f"mean diagonal of J on {name}", kind="paper-value", paper=f"≈ {PAPER_DIAG_J[key]}",
                  paper_value=PAPER_DIAG_J[key], source=SOURCE, ours=Estimate.mean(per_draw, unit="draws"),
                  tolerance=DIAG_J_TOL[key],
                  note="The paper's value is read from its one saved draw" + (
                      f"; the exact expectation is -(D+2)N(N+2)/(D k^2) = {pred['diagJ_last_row']:.4f} (k = N+1, "
                      f"ours; {st.predicted_stats(D, N, P, 'N')['diagJ_last_row']:.4f} with k = N), and the paper's "
                      "own formula -E[(|w|^2/D)^2] = -(D+2)/D = -1.4 disagrees with its -1.34: a single draw"
                      if key == "last_row" else "") + ".")
    ctx.claim("share of single draws with last-row diagonal mean <= the paper's -1.34", kind="paper-shape",
              paper="-1.34 (the paper's one draw of P = 1000 prompts)", source=SOURCE,
              ours=Estimate.proportion(int((last <= PAPER_DIAG_J["last_row"]).sum()), last.size, unit="draws"),
              expect=("between", 0.025, 0.975), note="Is the paper's draw a typical single draw of ours?")
    ctx.claim("A block: mean of the diagonal (high) mode", kind="paper-value",
              paper=f"{PAPER_A['w_high']} N({PAPER_A['mu_high']}, {PAPER_A['sd_high']}^2) (+ the low mode)",
              paper_value=PAPER_A["mu_high"], source=SOURCE, ours=Estimate.mean(a_diag, unit="draws"),
              tolerance=A_MU_TOL, note="The high mode is exactly the D diagonal entries: their mean per draw.")
    for key, what in (("w_high", "weight of the high mode"), ("sd_high", "std of the high mode"),
                      ("sd_low", "std of the low mode")):
        ctx.claim(f"A block: {what} (GMM)", kind="paper-value",
                  paper=f"{1 - PAPER_A['w_high']:.2f} N(0, {PAPER_A['sd_low']}^2) + {PAPER_A['w_high']} "
                        f"N({PAPER_A['mu_high']}, {PAPER_A['sd_high']}^2)",
                  paper_value=PAPER_A[key], source=SOURCE, ours=Estimate.mean(grp[f"A_{key}"], unit=groups),
                  tolerance=A_W_TOL if key == "w_high" else A_SD_TOL,
                  note=f"The diagonal holds exactly D of the D^2 entries: weight 1/D = {1 / D:.3f}; the paper's curve "
                       "is hand-set." if key == "w_high" else "")
    for k in ("B", "C", "D", "E"):
        note = "Our width: least-squares a N(0, s^2) fit to the histogram density (the form of the paper's curves)."
        if k == "C":
            note += (" fig-1/plot.py labels C as 3 N(0, 0.024^2) but evaluates it on linspace(-0.3, 0.3) and draws "
                     "it against linspace(-0.1, 0.1): the curve in the figure is N(0, 0.008^2); our width is compared "
                     "with the stated 0.024.")
        ctx.claim(f"block {k}: width sigma", kind="paper-value",
                  paper=f"{PAPER_AMPLITUDE[k]:g} N(0, {PAPER_SIGMA[k]}^2) (hand-set curve)",
                  paper_value=PAPER_SIGMA[k], source=SOURCE, ours=Estimate.mean(grp[f"{k}_lsq_sigma"], unit=groups),
                  rel_tolerance=SIGMA_REL_TOL, note=note)


def _sanity_claims(cfg: Fig1Config, arr: dict[str, np.ndarray], grp: pd.DataFrame, ctx: RunContext) -> None:
    """Our sampler against our closed forms (st.predicted_stats)."""
    pred = st.predicted_stats(cfg.D, cfg.N, cfg.P, cfg.norm)
    w11, last, a_diag = arr["diagJ_w11_per_draw"], arr["diagJ_last_per_draw"], arr["a_diag_per_draw"]
    groups = f"groups of draws ({len(grp)})"

    def closed_form(name: str, ours: Estimate, value: float, rel: float, what: str) -> None:
        band = sorted((value * (1 - rel), value * (1 + rel)))
        ctx.claim(name, kind="sanity", paper=f"(ours) closed form {what} = {value:.4f}", ours=ours,
                  expect=("between", *band))

    r = CLOSED_FORM_REL
    closed_form("diag J on W11 spins vs closed form", Estimate.mean(w11, unit="draws"), pred["diagJ_W11"],
                r["diag"], "-N(N+D+1)/(D k^2)")
    closed_form("diag J on last-row spins vs closed form", Estimate.mean(last, unit="draws"),
                pred["diagJ_last_row"], r["diag"], "-(D+2)N(N+2)/(D k^2)")
    closed_form("A-block diagonal vs closed form", Estimate.mean(a_diag, unit="draws"), pred["A_diag_mean"],
                r["diag"], "N/(D k)")
    for k in ("B", "E"):
        closed_form(f"block {k} std (MLE) vs closed form", Estimate.mean(grp[f"{k}_mle_std"], unit=groups),
                    pred[f"{k}_std"], r["std"], f"std of block {k}")
