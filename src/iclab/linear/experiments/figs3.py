"""Fig. S3: a synthetic spin model with i.i.d. couplings: the diagonal fields alone give the identity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from iclab.linear.amp import amp
from iclab.linear.analysis import contrast_ratio
from iclab.linear.sampling import sample_reduced
from iclab.runtime import ExperimentConfig, RunContext, experiment
from iclab.runtime.plots import heatmap, subplots

from . import _blocks as st


class FigS3Config(ExperimentConfig):
    D: int = Field(10, gt=0, description="Input dimension of the synthetic model ((D+1)^2 spins).")
    fit_N: int = Field(100, gt=0, description="Prompt length of the real model the block distributions are fitted on.")
    fit_P: int = Field(1000, gt=0, description="Prompts per draw of the real model used for the fits.")
    fit_draws: int = Field(200, gt=0, description="Draws of the real (J, h) pooled for the fits.")
    lam: float = Field(1.0, gt=0, description="Site confinement lambda_i of every synthetic spin.")
    instances: int = Field(50, gt=0, description="Independent synthetic models (the paper shows one).")
    beta: float = Field(100.0, gt=0, description="AMP inverse temperature.")
    damping: float = Field(0.9, ge=0, lt=1, description="AMP damping theta.")
    steps: int = Field(100, gt=0, description="AMP sweeps.")
    tol: float = Field(1e-6, gt=0, description="AMP convergence threshold.")


def fit_blocks(cfg: FigS3Config, gen: torch.Generator) -> dict[str, tuple[float, float]]:
    """(mean, std) of every block of the real (J, h) at D: a 2-component GMM splits A into its
    diagonal (high) and off-diagonal (low) parts; B-E get normal MLE fits."""
    from sklearn.mixture import GaussianMixture

    D = cfg.D
    moments = {k: st.Moments() for k in "BCDE"}
    a_vals = []
    for start in range(0, cfg.fit_draws, 20):
        B = min(20, cfg.fit_draws - start)
        draw = sample_reduced(D, cfg.fit_N, (B, cfg.fit_P), generator=gen)
        s, y = draw.features(), draw.y  # (B, P, D+1, D)
        J, h = st.reduced_fields(s, y)
        for k, v in st.block_values(J, h, D).items():
            if k == "A":
                a_vals.append(v.reshape(-1))
            else:
                moments[k].update(v)
    a = torch.cat(a_vals).numpy()[:, None]
    gmm = GaussianMixture(2, random_state=cfg.seed).fit(a)
    lo, hi = np.argsort(gmm.means_[:, 0])
    sd = np.sqrt(gmm.covariances_[:, 0, 0])
    fits = {"A_diag": (float(gmm.means_[hi, 0]), float(sd[hi])), "A_off": (float(gmm.means_[lo, 0]), float(sd[lo]))}
    fits.update({k: (m.mean, m.std) for k, m in moments.items()})
    fits["A_weight_high"] = (float(gmm.weights_[hi]), float("nan"))
    return fits


def synthetic_model(fits: dict, D: int, R: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """R instances of symmetric i.i.d. block couplings J (R, n, n) and block-structured fields h (R, n).

    Layout as the official Fig. S3 (n = (D+1)^2, row-major W): C among the D(D+1) spins of rows
    1..D, D between them and the last row, E among the last row; zero diagonal. h has the A
    block (diagonal / off-diagonal from the GMM components), B on the last row, 0 on the last column.
    """
    n, head = (D + 1) ** 2, D * (D + 1)

    def normal(shape, key):
        mu, sd = fits[key]
        return mu + sd * torch.randn(*shape, generator=gen, dtype=torch.float64)

    in_head = torch.arange(n) < head
    J = torch.where(in_head[:, None] & in_head[None, :], normal((R, n, n), "C"),
                    torch.where(~in_head[:, None] & ~in_head[None, :], normal((R, n, n), "E"), normal((R, n, n), "D")))
    J = J.triu(1)
    J = J + J.mT  # (R, n, n), symmetric, zero diagonal
    h = torch.zeros(R, D + 1, D + 1, dtype=torch.float64)
    h[:, :D, :D] = normal((R, D, D), "A_off")
    idx = torch.arange(D)
    h[:, idx, idx] = normal((R, D), "A_diag")
    h[:, D, :D] = normal((R, D), "B")
    return J, h.reshape(R, n)


@experiment(
    "spinglass.figS3",
    FigS3Config,
    presets={"quick": {"fit_draws": 40, "instances": 20}, "paper": {"D": 10, "lam": 1.0, "fit_draws": 200}},
    title="Synthetic spin model with i.i.d. couplings",
    paper="Li, Bai, Huang 2024, Fig. S3",
)
def run(cfg: FigS3Config, ctx: RunContext) -> None:
    """AMP on a spin model whose couplings are i.i.d. draws from the fitted block distributions.

    Why: if the AMP mean is still diagonal-dominated with structureless couplings, the diagonal
    of the fields (block A) is what selects the identity solution. The control shuffles the
    entries of block A (same values, no diagonal structure) and reruns AMP on the same couplings.
    """
    D = cfg.D
    gen = torch.Generator().manual_seed(cfg.seed * 1000)
    fits = fit_blocks(cfg, gen)
    J, h = synthetic_model(fits, D, cfg.instances, gen)  # (R, n, n), (R, n)
    R, n = h.shape

    # control: permute the D^2 entries of block A independently in every instance
    h_mat = h.reshape(R, D + 1, D + 1)
    A = h_mat[:, :D, :D].reshape(R, -1)  # (R, D^2)
    perm = torch.argsort(torch.rand(R, D * D, generator=gen), dim=1)
    h_ctrl = h_mat.clone()
    h_ctrl[:, :D, :D] = torch.gather(A, 1, perm).reshape(R, D, D)
    h_ctrl = h_ctrl.reshape(R, n)

    lam = torch.full((R, n), cfg.lam, dtype=torch.float64)
    kw = dict(beta=cfg.beta, damping=cfg.damping, steps=cfg.steps, tol=cfg.tol)
    res = amp(J, h, lam, generator=torch.Generator().manual_seed(cfg.seed * 1000 + 1), **kw)
    ctrl = amp(J, h_ctrl, lam, generator=torch.Generator().manual_seed(cfg.seed * 1000 + 2), **kw)
    A_mat = cfg.lam * torch.eye(n, dtype=torch.float64) - J  # Hessian of the synthetic H
    exact = torch.linalg.solve(A_mat, h[..., None])[..., 0]  # (R, n) ground state
    exact_ctrl = torch.linalg.solve(A_mat, h_ctrl[..., None])[..., 0]

    def cr(m: torch.Tensor) -> torch.Tensor:
        return contrast_ratio(m.reshape(-1, D + 1, D + 1))  # (R,)

    yes = torch.ones(R, dtype=torch.bool)
    out = {"amp": (res.m, res.converged), "amp_control": (ctrl.m, ctrl.converged), "exact": (exact, yes),
           "exact_control": (exact_ctrl, yes), "fields": (h, yes), "fields_control": (h_ctrl, yes)}
    rows = []
    for name, (m, ok) in out.items():
        c = cr(m)
        for r in range(R):
            rows.append({"solution": name, "instance": r, "converged": bool(ok[r]), "contrast_ratio": float(c[r])})
    rows += [{"solution": f"fit_{k}", "instance": -1, "converged": True, "contrast_ratio": np.nan,
              "fit_mean": v[0], "fit_std": v[1]} for k, v in fits.items()]
    ctx.table(pd.DataFrame(rows), "metrics")
    ctx.arrays("synthetic", J0=J[0].numpy(), h=h.numpy(), h_control=h_ctrl.numpy(), m=res.m.numpy(), v=res.v.numpy(),
               m_control=ctrl.m.numpy(), converged=res.converged.numpy(), converged_control=ctrl.converged.numpy())

    fig, axes = subplots(1, 4, size=(3.0, 2.7))
    heatmap(axes[0, 0], h[0].reshape(D + 1, D + 1).numpy(), "(a) synthetic fields h\n")
    heatmap(axes[0, 1], res.m[0].reshape(D + 1, D + 1).numpy(), f"(b) AMP mean m\nCR={float(cr(res.m)[0]):.2f}")
    heatmap(axes[0, 2], res.v[0].reshape(D + 1, D + 1).numpy(), "(c) AMP variance v\n", cmap="viridis", symmetric=False)
    heatmap(axes[0, 3], ctrl.m[0].reshape(D + 1, D + 1).numpy(),
            f"(d) control: A shuffled\nCR={float(cr(ctrl.m)[0]):.2f}")
    ctx.figure(
        fig,
        "synthetic_amp",
        caption=(
            f"Fig. S3: AMP on a synthetic model, D={D}, lambda_i={cfg.lam}, beta={cfg.beta}, theta={cfg.damping}, "
            f"{cfg.steps} sweeps, seed={cfg.seed}. Couplings i.i.d. (symmetric) from normal fits of "
            f"blocks C, D, E of the "
            f"real model (D={D}, N={cfg.fit_N}, P={cfg.fit_P}, {cfg.fit_draws} draws); fields: diagonal "
            f"and off-diagonal "
            "of A from the two GMM components, B from its normal fit. Instance 0 of "
            f"{cfg.instances} shown; (d) the same couplings with the entries of block A shuffled. Paper: m is "
            "diagonal-dominated."
        ),
    )

    ok = res.converged
    ok_c = ctrl.converged
    cr_amp, cr_ctrl = cr(res.m), cr(ctrl.m)
    m_mean = float(cr_amp[ok].mean()) if ok.any() else float("nan")
    c_mean = float(cr_ctrl[ok_c].mean()) if ok_c.any() else float("nan")
    ctx.claim(
        "diagonal fields drive the identity solution",
        paper="AMP mean m of the synthetic model is diagonal-dominated",
        ours=(f"CR(m) = {m_mean:.3f} +- {float(cr_amp[ok].std()):.3f} vs control (A shuffled) {c_mean:.3f} +- "
              f"{float(cr_ctrl[ok_c].std()):.3f}; exact ground state {float(cr(exact).mean()):.3f} vs "
              f"{float(cr(exact_ctrl).mean()):.3f}; {int(ok.sum())}/{R} and {int(ok_c.sum())}/{R} AMP runs converged"),
        target="over converged runs: mean CR(m) > 0.5 and > 3x the control's; >= 90% of runs converged",
        passed=bool(ok.double().mean() >= 0.9 and ok_c.double().mean() >= 0.9) and m_mean > 0.5
        and m_mean > 3 * abs(c_mean),
    )
    ctx.claim(
        "fitted A block is bimodal with weight 1/D on the diagonal",
        paper="0.82 N(0, 0.02^2) + 0.18 N(0.2, 0.02^2) (D=5)",
        ours=(f"diag N({fits['A_diag'][0]:.4f}, {fits['A_diag'][1]:.4f}^2) weight {fits['A_weight_high'][0]:.3f}; "
              f"off N({fits['A_off'][0]:.4f}, {fits['A_off'][1]:.4f}^2) at D={D}; N/((N+1)D) = "
              f"{cfg.fit_N / ((cfg.fit_N + 1) * D):.4f}"),
        target="high-component weight within 0.03 of 1/D",
        passed=abs(fits["A_weight_high"][0] - 1 / D) < 0.03,
    )
    ctx.note("Block distributions are fitted in the run on the real model at the same D (normal MLE for B-E, a GMM for "
             "A) instead of reusing the D=5 hand-set curves of Fig. 1 as the official script does. The official "
             "script samples from unnormalised pdfs with scipy's rv_continuous (spec §7.6), which makes every "
             "C-coupling negative; we sample the normalised fits.")
    ctx.note("Couplings are symmetrised (upper triangle drawn, mirrored) with a zero diagonal; the official J is "
             "not symmetric. The block layout follows the official one: every spin, including the last-column "
             "ones, gets i.i.d. couplings; the last column of h is 0.")
    ctx.note("AMP starts from the official random init m, v ~ N(0, 1); a few runs need slightly more than the "
             f"official {cfg.steps} sweeps to reach err < {cfg.tol} (an init transient, the fixed point is stable) and "
             "count as non-converged, as in the official code; CR means are over converged runs.")
    ctx.note(f"AMP runs on {cfg.instances} independent instances (the paper shows one); the exact ground state "
             f"(lambda I - J)^-1 h is reported beside it. sigma_C of the fit: {fits['C'][1]:.2e}, "
             f"sum_j J_ij^2 ~ {n * fits['C'][1] ** 2:.2e} << lambda = {cfg.lam}: the couplings barely move m away "
             "from h / lambda.")
