"""Fig. 3: the energy landscape at small (P=10) and large (P=1000) task diversity."""

from __future__ import annotations

from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import LogNorm
from pydantic import Field, field_validator

from iclab.linear.analysis import icl_error_floor, population_optimum
from iclab.linear.data import features, sample_prompts, sufficient_stats
from iclab.linear.spinglass import SpinGlass
from iclab.runtime import ExperimentConfig, RunContext, experiment
from iclab.runtime.plots import subplots


class Fig3Config(ExperimentConfig):
    D: int = Field(10, gt=0, description="Input dimension.")
    N: int = Field(50, gt=0, description="Prompt length.")
    lam0: float = Field(0.01, gt=0, description="L2 strength lambda0 (> 0 so the Boltzmann measure exists).")
    Ps: list[int] = Field([10, 1000], description="Training-set sizes compared (small and large task diversity).")
    n_random: int = Field(1000, gt=1, description="Random W ~ N(0, I) embedded by t-SNE (official mc_steps).")
    perplexity: float = Field(30.0, gt=0, description="t-SNE perplexity (sklearn default, as the official code).")
    grid: int = Field(200, gt=2, description="Interpolation grid points per axis (official 200).")
    rbf_neighbors: int = Field(100, gt=0, description="RBFInterpolator neighbors (official 100).")
    rbf_smoothing: float = Field(50.0, ge=0, description="RBFInterpolator smoothing (official 50).")
    energy: Literal["exact", "official"] = Field(
        "exact", description="exact: H(W); official: H + 1/2 sum_k S_kk W_k^2 (diag(J) counted twice, spec §7.7)."
    )
    betas: list[float] = Field([10.0, 100.0, 1000.0], description="Inverse temperatures of the Boltzmann samples.")
    n_samples: int = Field(1000, gt=1, description="Exact Boltzmann samples per (P, beta).")
    pca_beta: float = Field(100.0, gt=0, description="Temperature whose samples define the 2-D PCA plane.")
    P_test: int = Field(1000, gt=0, description="Fresh test prompts for the ICL error of the samples.")

    @field_validator("Ps", "betas")
    @classmethod
    def _positive(cls, v: list) -> list:
        if not v or any(x <= 0 for x in v):
            raise ValueError("must be a non-empty list of positive numbers")
        return v


def quadratic_r2(X1: np.ndarray, X2: np.ndarray, Z: np.ndarray) -> float:
    """Share of the surface's variance explained by a 2-D quadratic: ~1 for a funnel (or a ridge)."""
    x, y, z = X1.ravel(), X2.ravel(), Z.ravel()
    basis = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], 1)
    coef, *_ = np.linalg.lstsq(basis, z, rcond=None)
    return float(1 - ((z - basis @ coef) ** 2).sum() / ((z - z.mean()) ** 2).sum())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation; with b the distance from the t-SNE centre it is a funnel index (E grows outward)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def local_minima(Z: np.ndarray) -> int:
    """Interior grid points strictly below their 8 neighbours: the valleys of a surface."""
    c = Z[1:-1, 1:-1]
    lower = np.ones_like(c, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                lower &= c < Z[1 + di : Z.shape[0] - 1 + di, 1 + dj : Z.shape[1] - 1 + dj]
    return int(lower.sum())


@experiment(
    "spinglass.fig3",
    Fig3Config,
    presets={
        "quick": {"n_random": 300, "grid": 60, "rbf_neighbors": 50, "n_samples": 300, "P_test": 500},
        "paper": {"D": 10, "N": 50, "lam0": 0.01, "Ps": [10, 1000], "n_random": 1000, "grid": 200},
    },
    title="Energy landscape at small and large task diversity",
    paper="Li, Bai, Huang 2024, Fig. 3",
)
def run(cfg: Fig3Config, ctx: RunContext) -> None:
    """The paper's t-SNE picture of the landscape, and the exact Boltzmann measure beside it.

    Why: the paper shows a rugged surface at P=10 and a funnel at P=1000 from a t-SNE embedding
    of random weights. Because H is quadratic, the Boltzmann measure is exactly N(A^-1 h, (beta A)^-1)
    and the landscape is fully described by the Hessian A = lambda0 I + S: at P < D(D+1) most
    relevant directions are flat (held only by lambda0), a degenerate valley rather than many
    minima; above it every relevant direction is curved, a single funnel. We quantify both.
    """
    from scipy.interpolate import RBFInterpolator
    from sklearn.manifold import TSNE

    D, N = cfg.D, cfg.N
    n, rel = (D + 1) ** 2, D * (D + 1)
    relevant = (torch.arange(n) % (D + 1)) != D  # (n,) not in the last column of W
    test = sample_prompts(D, N, cfg.P_test, generator=torch.Generator().manual_seed(cfg.seed * 1000 + 99))
    s_test = features(test.Z).reshape(cfg.P_test, n)  # (P_test, n)
    W_pop = population_optimum(D, N).reshape(n)
    floor = icl_error_floor(D, N)

    def test_mse(W: torch.Tensor) -> torch.Tensor:
        return ((W @ s_test.T - test.y) ** 2).mean(-1)  # (...,)

    rows, surf, planes, spectra = [], {}, {}, {}
    for k, P in enumerate(ctx.progress(cfg.Ps, "task diversities", total=len(cfg.Ps))):
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + k)
        sg = SpinGlass.from_stats(sufficient_stats(D, N, P, generator=gen), cfg.lam0)
        S = sg.S
        W_star = sg.ground_state()  # (n,)
        E_star = float(sg.energy(W_star))

        # the paper's way: random W, energies, t-SNE, RBF surface
        W_rand = torch.randn(cfg.n_random, n, generator=gen, dtype=torch.float64)  # (n_random, n)
        E = sg.energy(W_rand)  # (n_random,)
        if cfg.energy == "official":
            E = E + 0.5 * (torch.diagonal(S) * W_rand**2).sum(-1)
        Y = TSNE(2, perplexity=min(cfg.perplexity, (cfg.n_random - 1) / 3), random_state=cfg.seed).fit_transform(
            W_rand.numpy())  # (n_random, 2)
        gx = np.linspace(Y[:, 0].min(), Y[:, 0].max(), cfg.grid)
        gy = np.linspace(Y[:, 1].min(), Y[:, 1].max(), cfg.grid)
        X1, X2 = np.meshgrid(gx, gy)
        rbf = RBFInterpolator(Y, E.numpy(), neighbors=min(cfg.rbf_neighbors, cfg.n_random),
                              smoothing=cfg.rbf_smoothing, kernel="linear")
        Zs = rbf(np.stack([X1.ravel(), X2.ravel()], 1)).reshape(cfg.grid, cfg.grid)
        surf[P] = (X1, X2, Zs)

        # the exact measure: Hessian spectrum, zero modes, Boltzmann samples
        A_rel = S[relevant][:, relevant] + cfg.lam0 * torch.eye(rel, dtype=S.dtype)  # (rel, rel)
        curv, U = torch.linalg.eigh(A_rel)  # ascending curvatures of the relevant directions
        eig_S = torch.linalg.eigvalsh(S)
        n_zero = int((eig_S <= 1e-9 * eig_S[-1]).sum())
        spectra[P] = torch.linalg.eigvalsh(sg.precision()).numpy()
        flat = curv < 2 * cfg.lam0  # directions held only by the regulariser
        devs = {}
        row = {"P": P, "D": D, "N": N, "lam0": cfg.lam0, "n_zero_modes": n_zero,
               "n_zero_law": n - min(P, rel), "n_flat_relevant": int(flat.sum()), "ground_energy": E_star,
               "ground_test_mse": float(test_mse(W_star)), "population_test_mse": float(test_mse(W_pop)),
               "icl_floor": floor, "ground_dist_to_population": float((W_star - W_pop)[relevant].norm()),
               "tsne_minima": local_minima(Zs), "tsne_quadratic_r2": quadratic_r2(X1, X2, Zs),
               "tsne_funnel_index": spearman(E.numpy(), np.linalg.norm(Y - Y.mean(0), axis=1)),
               "tsne_energy_std": float(E.std()),
               "corr_energy_norm2": float(np.corrcoef(E.numpy(), (W_rand**2).sum(1).numpy())[0, 1])}
        rows.append(row)
        for beta in cfg.betas:
            Ws = sg.sample_boltzmann(beta, cfg.n_samples, gen)  # (n_samples, n)
            dev = (Ws - W_star)[:, relevant]  # (n_samples, rel)
            coords = dev @ U  # (n_samples, rel) in the Hessian eigenbasis
            var_dir = (coords**2).mean(0)  # (rel,)
            rows.append({**{key: row[key] for key in ("P", "D", "N", "lam0")}, "beta": beta,
                         "mean_dist_to_ground": float(dev.norm(dim=1).mean()),
                         "predicted_mean_sq_dist": float((1 / (beta * curv)).sum()),
                         "flat_variance_fraction": float(var_dir[flat].sum() / var_dir.sum()),
                         "predicted_flat_fraction": float((1 / curv[flat]).sum() / (1 / curv).sum()),
                         "sample_test_mse": float(test_mse(Ws).mean()),
                         "sample_energy_excess": float((sg.energy(Ws) - E_star).mean()),
                         "equipartition_excess": n / (2 * beta)})
            devs[beta] = dev
        pca_dev = devs.get(cfg.pca_beta)
        if pca_dev is None:
            pca_dev = (sg.sample_boltzmann(cfg.pca_beta, cfg.n_samples, gen) - W_star)[:, relevant]
        _, _, V = torch.linalg.svd(pca_dev - pca_dev.mean(0), full_matrices=False)
        planes[P] = (sg, W_star, V[:2], devs)  # V[:2] (2, rel): top-2 principal axes
    df = pd.DataFrame(rows)
    ctx.table(df, "metrics")

    # figure 1: the paper's surfaces
    fig = plt.figure(figsize=(4.2 * len(cfg.Ps), 3.6))
    for j, P in enumerate(cfg.Ps):
        ax = fig.add_subplot(1, len(cfg.Ps), j + 1, projection="3d")
        X1, X2, Zs = surf[P]
        ax.plot_surface(X1, X2, Zs, cmap="coolwarm", linewidth=0)
        zlo, zhi = ax.get_zlim()
        off = zlo - 0.3 * (zhi - zlo)
        ax.contour(X1, X2, Zs, 8, zdir="z", offset=off, cmap="coolwarm", linewidths=0.7)
        ax.set_zlim(off, zhi)
        ax.view_init(elev=15, azim=-45)
        ax.set_xticks([])
        ax.set_yticks([])
        r = df[(df.P == P) & df.beta.isna()].iloc[0]
        ax.set_title(f"P={P}: funnel index {r.tsne_funnel_index:.2f}")
    ctx.figure(
        fig,
        "landscape_tsne",
        caption=(
            f"Fig. 3 (the paper's method): energies ({cfg.energy} H) of {cfg.n_random} random W ~ N(0, I), embedded "
            f"in 2-D by t-SNE (perplexity {cfg.perplexity}) and interpolated by an RBF (linear kernel, "
            f"{cfg.rbf_neighbors} neighbours, smoothing {cfg.rbf_smoothing}) on a {cfg.grid}^2 grid; D={D}, N={N}, "
            f"lambda0={cfg.lam0}, P={cfg.Ps}, seed={cfg.seed}. Paper: rugged at P=10, a single funnel at P=1000."
        ),
    )

    # figure 2: the exact landscape on the plane of the top-2 principal axes of the Boltzmann samples
    fig, axes = subplots(1, len(cfg.Ps) + 1, size=(3.5, 3.2))
    half = max(float((p[3][min(p[3])] @ p[2].T).abs().quantile(0.99)) for p in planes.values())  # hottest samples
    a = np.linspace(-half, half, 121)
    levels = np.geomspace(1e-3, 1e2, 11)
    for j, P in enumerate(cfg.Ps):
        ax = axes[0, j]
        sg, W_star, V, devs = planes[P]
        full = torch.zeros(2, n, dtype=torch.float64)
        full[:, relevant] = V
        Aa, Bb = np.meshgrid(a, a)
        ab = torch.as_tensor(np.stack([Aa.ravel(), Bb.ravel()], 1))  # (grid^2, 2)
        grid_W = W_star + ab @ full  # (grid^2, n)
        dE = (sg.energy(grid_W) - sg.energy(W_star)).reshape(a.size, a.size).numpy()
        dE = np.maximum(dE, levels[0] / 10)  # the log-spaced levels need dE > 0 (dE = 0 at the ground state)
        cs = ax.contour(Aa, Bb, dE, levels=levels, cmap="viridis", linewidths=0.8,
                        norm=LogNorm(levels[0], levels[-1]))
        ax.clabel(cs, fontsize=5, fmt="%.2g")
        for beta in sorted(devs):
            xy = (devs[beta] @ V.T).numpy()
            ax.scatter(xy[:, 0], xy[:, 1], s=2, alpha=0.5, label=f"beta={beta:g}")
        ax.set_xlim(-half, half)
        ax.set_ylim(-half, half)
        ax.set_aspect("equal")
        r = df[(df.P == P) & df.beta.isna()].iloc[0]
        ax.set_title(f"P={P}: {int(r.n_flat_relevant)}/{rel} flat directions")
        ax.set_xlabel("PC 1 of Boltzmann samples")
        ax.set_ylabel("PC 2")
        if j == 0:
            ax.legend(fontsize=6, markerscale=3, loc="lower left")
    ax = axes[0, -1]
    for P in cfg.Ps:
        ax.semilogy(np.arange(n), spectra[P], ".", ms=3, label=f"P={P}")
    ax.axhline(cfg.lam0, color="k", ls=":", lw=0.8, label="lambda0")
    ax.set_xlabel("index")
    ax.set_ylabel("Hessian eigenvalue (lambda0 I + S)")
    ax.legend(fontsize=7)
    ax.set_title("Hessian spectrum")
    ctx.figure(
        fig,
        "landscape_boltzmann",
        caption=(
            f"Fig. 3 beyond the paper: exact energy H - H* on the plane through the ground state spanned by the top-2 "
            f"principal axes of exact Boltzmann samples at beta={cfg.pca_beta:g} (relevant spins; contour levels "
            f"{levels[0]:g}..{levels[-1]:g}, shared), with samples at beta={cfg.betas} projected on it "
            f"({cfg.n_samples} "
            f"each); right: the Hessian spectrum. D={D}, N={N}, lambda0={cfg.lam0}, seed={cfg.seed}. At P=10 the "
            "samples spread along flat directions held only by lambda0 (a degenerate valley); at P=1000 every "
            "relevant direction is curved (one funnel)."
        ),
    )

    # claims
    base = df[df.beta.isna()].set_index("P")
    samp = df[df.beta == cfg.pca_beta].set_index("P")
    Plo, Phi = min(cfg.Ps), max(cfg.Ps)
    ok = all(int(base.n_zero_modes[P]) == int(base.n_zero_law[P]) for P in cfg.Ps)
    ctx.claim("zero modes: degenerate at small P",
              paper="rugged / degenerate landscape at P=10, unique minimum at P=1000",
              ours=", ".join(f"P={P}: {int(base.n_zero_modes[P])} zero modes of S (law {int(base.n_zero_law[P])}, "
                             f"{D + 1} of them the last column)" for P in cfg.Ps),
              target="number of zero modes = (D+1)^2 - min(P, D(D+1))", passed=ok)
    ff_lo, ff_hi = float(samp.flat_variance_fraction[Plo]), float(samp.flat_variance_fraction[Phi])
    ctx.claim("Boltzmann samples spread along flat directions at small P",
              paper="P=10: many valleys; P=1000: a single funnel",
              ours=(f"beta={cfg.pca_beta:g}: fraction of sample variance in flat directions P={Plo}: {ff_lo:.3f}, "
                    f"P={Phi}: {ff_hi:.3f}; mean distance to the ground state "
                    f"{float(samp.mean_dist_to_ground[Plo]):.2f} "
                    f"vs {float(samp.mean_dist_to_ground[Phi]):.2f}"),
              target="flat fraction > 0.9 at the small P and < 0.1 at the large P; spread larger at the small P",
              passed=ff_lo > 0.9 and ff_hi < 0.1
              and float(samp.mean_dist_to_ground[Plo]) > float(samp.mean_dist_to_ground[Phi]))
    g_lo, g_hi = float(base.ground_test_mse[Plo]), float(base.ground_test_mse[Phi])
    ctx.claim("the funnel's minimum is the ICL solution",
              paper="at large P the unique minimum is the correct solution; at small P it fails on new tasks",
              ours=(f"ground-state test MSE P={Plo}: {g_lo:.3f}, P={Phi}: {g_hi:.3f} (floor (D+1)/(N+D+1) "
                    f"= {floor:.3f}, "
                    f"trivial predictor 1); Boltzmann samples at beta={cfg.pca_beta:g}: "
                    f"{float(samp.sample_test_mse[Plo]):.3f} vs {float(samp.sample_test_mse[Phi]):.3f}"),
              target="test MSE at the large P within 0.1 of the floor, at the small P above 0.8",
              passed=abs(g_hi - floor) < 0.1 and g_lo > 0.8)
    m_lo, m_hi = int(base.tsne_minima[Plo]), int(base.tsne_minima[Phi])
    q_lo, q_hi = float(base.tsne_quadratic_r2[Plo]), float(base.tsne_quadratic_r2[Phi])
    f_lo, f_hi = float(base.tsne_funnel_index[Plo]), float(base.tsne_funnel_index[Phi])
    ctx.claim("t-SNE surface: rugged vs funnel", paper="several valleys at P=10, a single funnel at P=1000",
              ours=(f"funnel index (rank corr. of E with the distance from the t-SNE centre) P={Plo}: {f_lo:.2f}, "
                    f"P={Phi}: {f_hi:.2f}; quadratic R^2 of the surface {q_lo:.2f} vs {q_hi:.2f}; grid-level local "
                    f"minima {m_lo} vs {m_hi}; corr(E, |W|^2) {float(base.corr_energy_norm2[Plo]):.2f} vs "
                    f"{float(base.corr_energy_norm2[Phi]):.2f}"),
              target=None, passed=None)  # qualitative (spec §5): seed-sensitive at quick size, so not judged
    ctx.note("Energies are the exact H of the spin glass; the official energy_landscape adds 1/2 sum_k S_kk W_k^2 "
             "(diag(J) counted twice, spec §7.7). Set energy=official to reproduce it.")
    ctx.note("The t-SNE picture is qualitative: random W ~ N(0, I) in (D+1)^2 = "
             f"{n} dimensions are nearly equidistant, so the 2-D embedding carries little information about H "
             "(H is quadratic and, for lambda0 > 0, has exactly one minimum at every P). The exact statements are "
             "the zero-mode count and the Boltzmann spread along flat directions.")
    ctx.note("Why t-SNE still shows a funnel at large P: t-SNE puts random W of large norm at the rim, and at "
             "P >= D(D+1) the curvature is spread over all relevant directions, so H(W) tracks |W|^2 (see "
             "corr_energy_norm2); at P=10 a few huge eigenvalues of S dominate H, which is then unrelated to the "
             "layout. We measure this with a funnel index, the rank correlation of E with the distance from the t-SNE "
             "centre. Two other surface statistics we tried do not separate the two P and are only reported: the "
             "grid-level local minima (they count interpolation noise at both P) and the R^2 of a 2-D quadratic fit.")
    ctx.note("Flat directions: eigenvalues of the relevant-spin Hessian below 2 lambda0 (held only by the L2 term). "
             f"The {D + 1} last-column spins never affect the output and are flat at every P; they are left out of "
             "the projections and the spread.")
