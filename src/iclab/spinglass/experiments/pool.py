"""Task diversity with a finite task pool (Raventós et al. 2023; docs/spinglass.md: anchors), for merged linear attention.

The spin-glass paper draws a fresh task for every pre-training prompt, so its "task diversity"
is P (the single-instance corner M = P of a pool model). Raventós et al. instead fix a pool of
M tasks w^(1..M) ~ N(0, I_D), draw every pre-training prompt's task uniformly from it, and ask
when a model trained on the pool solves *new* tasks in context: below a task-diversity
threshold it behaves like dMMSE (the Bayes predictor whose prior is the pool, i.e. it
memorises), above it it approaches ridge (the Bayes predictor for the Gaussian task prior).

Here the model is the paper's merged linear attention, trained by full-batch Adam on the
sufficient statistics of P pool prompts (one batched `train_quadratic` over every M and
repeat), and evaluated on (i) prompts with fresh tasks and (ii) prompts with pool tasks,
beside dMMSE (pool prior) and ridge (Gaussian prior, lambda = D sigma^2) on the same prompts.
Two references show where the model can go as M grows: the same model trained with a fresh
task per prompt ("single", the spin-glass setting) and the class optimum, the merged linear
attention that minimises the Gaussian-prior MSE (least squares on P_opt fresh-task prompts).
A one-layer linear attention cannot implement ridge at finite N/D, so the class optimum lies
above ridge: "approaches ridge" is tested literally (the gap to ridge) and within the class.

Settings follow Raventós et al.'s defaults where they apply: D = 8, N = 16 context examples,
label noise sigma^2 = 0.25 in their units (y = w.x + eps), i.e. 0.25 / D on our label scale
y = w.x / sqrt(D) + eps. Differences: one layer of linear attention, not an 8-layer GPT-2;
every prompt predicts only its query (not every position); the model is trained to
(near) convergence on a fixed set of P prompts rather than on a stream.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import Tensor

from iclab.runtime import Estimate, Results, RunContext, experiment
from iclab.runtime import subplots
from iclab.runtime import make_gen
from iclab.runtime import torch_threads
from iclab.runtime import IncreasingPositiveInts

from .._data import Prompts, TaskPool, dmmse_predict, features, predict, ridge_predict, sample_prompts
from .._train import train_quadratic
from ._settings import AdamSettings

RAVENTOS = "Raventós et al. 2023 (docs/spinglass.md: anchors), Fig. 2"
LU = "Lu et al. 2024 (docs/spinglass.md: anchors): g_task = e_ICL − e_IDG and the memorisation → ICL transition at κ = k/d ≈ 1"

# Tolerances, declared before any run (statistics are per repeat, paired on the same test prompts).
GAP_SHRINK_MAX = 0.5  # "approaches ridge": the gap to ridge at the largest M is < half that at the smallest M
RIDGE_REL_TOL = 0.2  # "approaches ridge": at the largest M, fresh-task MSE within 20% of ridge's
CLASS_REL_TOL = 0.1  # within the class: at the largest M, within 10% of the class optimum's MSE
DMMSE_SIDE_MIN = 0.5  # dMMSE regime at the smallest M: at least half-way (log scale) from ridge to dMMSE
G_TASK_SMALL_MIN = 0.5  # memorising: pool tasks at least 2x easier than fresh ones (1 − e_pool/e_fresh)
G_TASK_LARGE_TOL = 0.05  # in-context learning: |1 − e_pool/e_fresh| < 5% at the largest M
KAPPA_BAND = (0.25, 4.0)  # Lu et al.'s transition at κ = M/D ≈ 1, to within a factor of 4 either way


class PoolConfig(AdamSettings):
    D: int = Field(8, gt=0, description="Input dimension (Raventós et al.'s default n_dims = 8).")
    N: int = Field(16, gt=0, description="Context examples per prompt (Raventós et al.: 16 points).")
    Ms: IncreasingPositiveInts = Field([2**k for k in range(1, 15)], min_length=2,
                                       description="Task-pool sizes M (strictly increasing); paper preset 2^1..2^14.")
    P: int = Field(2**15, gt=0, description="Pre-training prompts (tasks drawn from the pool with replacement).")
    P_test: int = Field(2**11, gt=0, description="Test prompts per test set and repeat (fresh tasks; pool tasks).")
    P_opt: int = Field(2**17, gt=0, description="Fresh-task prompts whose least squares gives the class optimum.")
    noise_var: float = Field(0.25 / 8, gt=0, description="Label-noise variance on our scale (signal variance 1): "
                             "0.25/8 = Raventós' sigma^2 = 0.25 at D = 8 divided by D.")
    repeats: int = Field(3, gt=0, description="Independent pools, prompt sets, test sets and inits per M.")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate.")
    epochs: int = Field(3000, gt=0, description="Full-batch Adam steps of the merged linear attention.")
    weight_decay: float = Field(1e-3, ge=0, description="Adam (coupled) weight decay; lambda0 = wd/2 in the energy.")
    dmmse_chunk: int = Field(64, gt=0, description="Test prompts per dMMSE batch (bounds (chunk, M, D) temporaries).")


def noisy_prompts(D: int, N: int, tasks: Tensor, noise_var: float, gen: torch.Generator) -> tuple[Prompts, Tensor]:
    """Prompts with the given tasks (P, D) and Gaussian label noise on context labels and target."""
    P = tasks.shape[0]
    pr = sample_prompts(D, N, P, generator=gen, tasks=tasks)
    eps = torch.randn(P, N + 1, generator=gen, dtype=pr.Z.dtype) * math.sqrt(noise_var)  # (P, N+1)
    pr.Z[:, D, :N] += eps[:, :N]  # noisy context labels; the query slot stays 0
    return pr, pr.y + eps[:, N]  # noisy query target


def pool_stats(D: int, N: int, tasks: Tensor, noise_var: float, gen: torch.Generator, chunk: int = 4096):
    """(S, h, yy) of the prompts with the given tasks, streamed in chunks."""
    n = (D + 1) ** 2
    S = torch.zeros(n, n, dtype=torch.float64)
    h = torch.zeros(n, dtype=torch.float64)
    yy = torch.zeros((), dtype=torch.float64)
    for start in range(0, tasks.shape[0], chunk):
        pr, y = noisy_prompts(D, N, tasks[start : start + chunk], noise_var, gen)
        f = features(pr.Z).reshape(-1, n)  # (chunk, n)
        S.addmm_(f.T, f)
        h.addmv_(f.T, y)
        yy += y @ y
    P = tasks.shape[0]
    return S / P, h / P, yy / P


def class_optimum(D: int, N: int, P: int, noise_var: float, gen: torch.Generator) -> Tensor:
    """The merged W (D+1, D+1) minimising the fresh-task MSE: least squares on P prompts (minimum norm,
    since the last column of W never reaches the prediction)."""
    S, h, _ = pool_stats(D, N, torch.randn(P, D, generator=gen, dtype=torch.float64), noise_var, gen)
    return torch.linalg.lstsq(S, h.unsqueeze(-1), driver="gelsd").solution.reshape(D + 1, D + 1)


def dmmse_mse(Z: Tensor, y: Tensor, pool: Tensor, noise_var: float, chunk: int) -> float:
    """Test MSE of the pool-prior Bayes predictor, in chunks of prompts."""
    pred = torch.cat([dmmse_predict(Z[i : i + chunk], pool, noise_var) for i in range(0, Z.shape[0], chunk)])
    return float(((pred - y) ** 2).mean())


def mse(W: Tensor, Z: Tensor, y: Tensor) -> float:
    return float(((predict(W, features(Z)) - y) ** 2).mean())


def log_crossing(x: np.ndarray, e: np.ndarray, level: float) -> float:
    """First x where the decreasing curve e(x) reaches `level`, interpolated linearly in (log x, log e)."""
    hit = np.flatnonzero(e <= level)
    if hit.size == 0 or hit[0] == 0:
        return float("nan")
    j = hit[0]
    t = (math.log(e[j - 1]) - math.log(level)) / (math.log(e[j - 1]) - math.log(e[j]))
    return float(math.exp(math.log(x[j - 1]) + t * (math.log(x[j]) - math.log(x[j - 1]))))


QUICK = {"Ms": [2**k for k in range(1, 12, 2)], "P": 2**13, "P_test": 2**11, "P_opt": 2**16, "repeats": 4}


@experiment(
    "spinglass.pool",
    PoolConfig,
    presets={
        "quick": QUICK,
        "paper": {"D": 8, "N": 16, "Ms": [2**k for k in range(1, 15)], "P": 2**15, "P_test": 2**11, "P_opt": 2**17,
                  "noise_var": 0.25 / 8, "repeats": 3, "epochs": 3000, "lr": 1e-2, "weight_decay": 1e-3},
    },
    title="Finite task pool: memorisation vs in-context learning as task diversity M grows",
    paper="Raventós, Paul, Chen, Ganguli 2023 (Fig. 1-2 setting) applied to Li, Bai, Huang 2024's model",
)
def compute(cfg: PoolConfig, ctx: RunContext) -> None:
    """Train merged linear attention on pools of M tasks; ICL error on fresh and pool tasks vs M,
    beside dMMSE, ridge and the class optimum on the same prompts."""
    t0 = time.perf_counter()
    D, N, R = cfg.D, cfg.N, cfg.repeats
    Ms = cfg.Ms + [cfg.P]  # the last one is "single": a fresh task per prompt (the M = P corner)
    with torch_threads(1):
        pools: dict[tuple[int, int], Tensor] = {}
        stats = []
        for k, M in ctx.progress(list(enumerate(Ms)), "training statistics", total=len(Ms)):
            for r in range(R):
                gen = make_gen(cfg.seed, "train", k, r)
                if k < len(cfg.Ms):
                    pool = TaskPool(M, D, gen)
                    pools[k, r] = pool.tasks
                    tasks = pool.sample_tasks(cfg.P, gen)  # (P, D)
                else:
                    tasks = torch.randn(cfg.P, D, generator=gen, dtype=torch.float64)  # (P, D)
                stats.append(pool_stats(D, N, tasks, cfg.noise_var, gen))
        S, h, yy = (torch.stack([s[i] for s in stats]) for i in range(3))  # (K R, n, n), (K R, n), (K R,)
        res = train_quadratic(S, h, yy, epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                              generator=make_gen(cfg.seed, "init"), dtype=getattr(torch, cfg.adam_dtype),
                              record_every=cfg.epochs)
        W = res.W.double().reshape(len(Ms), R, D + 1, D + 1)
        # exact stationary point of Adam with coupled wd: (S + wd/2 I) w = h
        W_exact = torch.linalg.solve(S + cfg.weight_decay / 2 * torch.eye(S.shape[-1], dtype=S.dtype), h)
        W_exact = W_exact.reshape(len(Ms), R, D + 1, D + 1)
        W_opt = class_optimum(D, N, cfg.P_opt, cfg.noise_var, make_gen(cfg.seed, "optimum"))

        rows = []
        for r in ctx.progress(range(R), "evaluation", total=R):
            # fresh- and pool-task test prompts share their inputs and noise (common random numbers): only the
            # tasks differ, so e_fresh − e_pool measures the tasks, not two draws of test prompts
            def test_prompts(tasks: Tensor) -> tuple[Prompts, Tensor]:
                return noisy_prompts(D, N, tasks, cfg.noise_var, make_gen(cfg.seed, "test-prompts", r))

            fresh, y_fresh = test_prompts(torch.randn(cfg.P_test, D, generator=make_gen(cfg.seed, "fresh-tasks", r),
                                                      dtype=torch.float64))
            common = {"repeat": r, "ridge_fresh": float(((ridge_predict(fresh.Z, D * cfg.noise_var) - y_fresh) ** 2)
                                                        .mean()),
                      "optimum_fresh": mse(W_opt, fresh.Z, y_fresh)}
            for k, M in enumerate(Ms):
                row = {"setting": "pool" if k < len(cfg.Ms) else "single", "M": M} | common | {
                    "model_fresh": mse(W[k, r], fresh.Z, y_fresh), "exact_fresh": mse(W_exact[k, r], fresh.Z, y_fresh)}
                if k < len(cfg.Ms):
                    pool = pools[k, r]
                    idx = torch.randint(M, (cfg.P_test,), generator=make_gen(cfg.seed, "pool-tasks", k, r))
                    seen, y_seen = test_prompts(pool[idx])
                    row |= {"model_pool": mse(W[k, r], seen.Z, y_seen), "exact_pool": mse(W_exact[k, r], seen.Z, y_seen),
                            "dmmse_fresh": dmmse_mse(fresh.Z, y_fresh, pool, cfg.noise_var, cfg.dmmse_chunk),
                            "dmmse_pool": dmmse_mse(seen.Z, y_seen, pool, cfg.noise_var, cfg.dmmse_chunk),
                            "ridge_pool": float(((ridge_predict(seen.Z, D * cfg.noise_var) - y_seen) ** 2).mean())}
                rows.append(row)
    ctx.table(pd.DataFrame(rows), "metrics")
    ctx.arrays("weights", W=W.numpy(), W_opt=W_opt.numpy(), M=np.array(Ms))
    ctx.json("timing", {"seconds": time.perf_counter() - t0})
    ctx.note("Model: the paper's one-layer merged linear attention, not Raventós et al.'s 8-layer GPT-2; it predicts "
             "only the query of each prompt and cannot implement ridge at finite N/D, so at large M it can at best "
             "reach the class optimum (the least-squares merged W under the Gaussian task prior), which lies above "
             "ridge.")
    ctx.note(f"Label noise sigma^2 = {cfg.noise_var:g} on our scale y = w.x/sqrt(D) + eps (the spin-glass paper is "
             "noise-free); ridge uses lambda = D sigma^2 and dMMSE the exact noise variance, both Bayes-optimal.")
    ctx.note("Every repeat has its own pools, training prompts, Adam init, fresh-task test set and pool-task test sets; "
             "within a repeat all M and all predictors are scored on the same fresh-task prompts (paired), and the "
             "pool-task prompts share the fresh ones' inputs and noise (only the tasks differ). The "
             "'single' rows (M = P) train the same model with a fresh task per prompt, the spin-glass setting.")


def per_repeat(df: pd.DataFrame, col: str) -> np.ndarray:
    """(n_M, R) matrix of a metric over the pool sizes (rows, increasing M) and repeats."""
    pool = df[df.setting == "pool"]
    return pool.pivot(index="M", columns="repeat", values=col).sort_index().to_numpy(dtype=float)


def thresholds(Ms: np.ndarray, fresh: np.ndarray, optimum: np.ndarray) -> np.ndarray:
    """Per repeat, the M where the fresh-task error is halfway (log scale) from its smallest-M value to the
    class optimum (the midpoint of the memorisation → ICL transition); NaN when the grid has no crossing."""
    return np.array([log_crossing(Ms, fresh[:, r], math.sqrt(fresh[0, r] * optimum[r])) for r in range(fresh.shape[1])])


@compute.figures
def figures(cfg: PoolConfig, res: Results, ctx: RunContext) -> None:
    df = res.table("metrics")
    Ms = np.array(sorted(df[df.setting == "pool"].M.unique()), dtype=float)
    R = df.repeat.nunique()
    ref = df[df.setting == "pool"].groupby("repeat")[["ridge_fresh", "optimum_fresh"]].first()
    single = df[df.setting == "single"].set_index("repeat").model_fresh
    M_half = float(np.nanmean(thresholds(Ms, per_repeat(df, "model_fresh"), ref.optimum_fresh.to_numpy())))

    def band(ax, col, style, label, color):
        x = per_repeat(df, col)  # (n_M, R)
        sd = x.std(axis=1, ddof=1) if R > 1 else np.zeros(len(Ms))
        ax.errorbar(Ms, x.mean(1), yerr=sd, fmt=style, ms=3, capsize=2, label=label, color=color)

    fig, axes = subplots(1, 3, size=(4.4, 3.5))
    ax = axes[0, 0]
    band(ax, "model_fresh", "o-", "linear attention", "C0")
    band(ax, "dmmse_fresh", "s--", "dMMSE (pool prior)", "C1")
    ax.axhline(ref.ridge_fresh.mean(), color="k", ls=":", label="ridge (Gaussian prior)")
    ax.axhline(ref.optimum_fresh.mean(), color="C3", ls="--", lw=1, label="class optimum (lin. attn.)")
    ax.axhline(single.mean(), color="C2", ls="-.", label="lin. attn., fresh task per prompt")
    if math.isfinite(M_half):
        ax.axvline(M_half, color="0.5", lw=0.8, label=f"threshold M* = {M_half:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="task pool size M", ylabel="MSE", title="(i) fresh tasks")
    ax.legend(fontsize=6)
    ax = axes[0, 1]
    band(ax, "model_pool", "o-", "linear attention", "C0")
    band(ax, "dmmse_pool", "s--", "dMMSE (pool prior)", "C1")
    band(ax, "ridge_pool", ":", "ridge (Gaussian prior)", "k")
    ax.set(xscale="log", yscale="log", xlabel="task pool size M", ylabel="MSE", title="(ii) pool tasks")
    ax.legend(fontsize=6)
    ax = axes[0, 2]
    gap = per_repeat(df, "model_fresh") - ref.ridge_fresh.to_numpy()  # (n_M, R), paired per repeat
    ax.errorbar(Ms, gap.mean(1), yerr=gap.std(1, ddof=1) if R > 1 else 0 * Ms, fmt="o-", ms=3, capsize=2,
                color="C0", label="linear attention − ridge")
    ax.axhline((ref.optimum_fresh - ref.ridge_fresh).mean(), color="C3", ls="--", lw=1,
               label="class optimum − ridge (its floor)")
    ax.set(xscale="log", yscale="log", xlabel="task pool size M", ylabel="fresh-task MSE gap to ridge",
           title="(iii) approach to ridge")
    ax.legend(fontsize=6)
    ctx.figure(fig, "task_diversity", caption=(
        f"Merged linear attention trained on P={cfg.P} prompts whose tasks come from a pool of M tasks (D={cfg.D}, "
        f"N={cfg.N}, label noise {cfg.noise_var:g}, Adam lr {cfg.lr}, wd {cfg.weight_decay}, {cfg.epochs} epochs, "
        f"mean ± std over {R} repeats, seed={cfg.seed}); test MSE on {cfg.P_test} prompts with fresh (i) and pool "
        "(ii) tasks beside the Bayes predictors dMMSE (pool prior) and ridge (Gaussian prior); (iii) the gap to ridge "
        "on fresh tasks and its floor for this model class; grey: the transition midpoint M*. Raventós et al.: below "
        "a task-diversity threshold the model tracks dMMSE, above it it approaches ridge on fresh tasks."))


@compute.verdicts
def verdicts(cfg: PoolConfig, res: Results, ctx: RunContext) -> None:
    df = res.table("metrics")
    Ms = np.array(sorted(df[df.setting == "pool"].M.unique()), dtype=float)
    m_lo, m_hi = int(Ms[0]), int(Ms[-1])
    ref = df[df.setting == "pool"].groupby("repeat")[["ridge_fresh", "optimum_fresh"]].first()
    ridge, opt = ref.ridge_fresh.to_numpy(), ref.optimum_fresh.to_numpy()  # (R,) each
    fresh, seen = per_repeat(df, "model_fresh"), per_repeat(df, "model_pool")  # (n_M, R)
    dmmse_fresh, dmmse_seen = per_repeat(df, "dmmse_fresh"), per_repeat(df, "dmmse_pool")
    gap = fresh - ridge  # (n_M, R): paired on the same fresh-task prompts

    ctx.claim("gap to ridge on fresh tasks: largest M / smallest M", kind="paper-shape",
              paper="above the threshold the model departs from dMMSE and approaches ridge on new tasks",
              source=RAVENTOS, ours=Estimate.mean(gap[-1] / gap[0], unit="repeats"), expect=("<", GAP_SHRINK_MAX),
              note=f"(e_model − e_ridge) at M={m_hi} over the same at M={m_lo}, per repeat, on the same fresh-task "
                   "prompts: < 0.5 means the gap at least halves over the grid.")
    ctx.claim(f"fresh-task MSE / ridge − 1 at the largest M={m_hi}", kind="paper-shape",
              paper="at large task diversity the model approaches ridge (the Gaussian-prior Bayes predictor)",
              source=RAVENTOS, ours=Estimate.mean(fresh[-1] / ridge - 1, unit="repeats"),
              expect=("<=", RIDGE_REL_TOL),
              note="Raventós et al.'s model is an 8-layer GPT-2, which can implement ridge; ours is the one-layer "
                   "linear attention, which cannot at finite N/D (its best fresh-task error is the class optimum's, "
                   "next claim), so a difference here is architectural.")
    ctx.claim(f"fresh-task MSE / class optimum − 1 at the largest M={m_hi}", kind="paper-shape",
              paper="at large task diversity the model approaches the best Gaussian-prior predictor it can express",
              source=RAVENTOS, ours=Estimate.mean(fresh[-1] / opt - 1, unit="repeats"),
              expect=("between", -CLASS_REL_TOL, CLASS_REL_TOL),
              note="Our reading of 'approaches ridge' for a model class that cannot express ridge: the class optimum "
                   "is the merged W minimising the fresh-task MSE (least squares on P_opt fresh-task prompts).")
    side = np.log(fresh[0] / ridge) / np.log(dmmse_fresh[0] / ridge)
    ctx.claim(f"dMMSE regime at the smallest M={m_lo}: fresh-task position between ridge (0) and dMMSE (1)",
              kind="paper-shape", paper="below the threshold the model behaves like dMMSE: it fails on new tasks",
              source=RAVENTOS, ours=Estimate.mean(side, unit="repeats"), expect=(">=", DMMSE_SIDE_MIN),
              note="log(e_model/e_ridge) / log(e_dMMSE/e_ridge) on the same fresh-task prompts, per repeat: >= 0.5 is "
                   "closer (log scale) to the memorising Bayes predictor than to ridge.")
    ctx.claim(f"task generalisation gap 1 − e_pool/e_fresh at the smallest M={m_lo}", kind="paper-shape",
              paper="memorisation: pool tasks are solved much better than new ones", source=LU,
              ours=Estimate.mean(1 - seen[0] / fresh[0], unit="repeats"), expect=(">", G_TASK_SMALL_MIN))
    ctx.claim(f"task generalisation gap 1 − e_pool/e_fresh at the largest M={m_hi}", kind="paper-shape",
              paper="in-context learning: new tasks are solved as well as pool tasks (g_task -> 0)", source=LU,
              ours=Estimate.mean(1 - seen[-1] / fresh[-1], unit="repeats"),
              expect=("between", -G_TASK_LARGE_TOL, G_TASK_LARGE_TOL))
    kappa = thresholds(Ms, fresh, opt) / cfg.D  # (R,), NaN: no crossing inside the grid
    missing = Estimate(float("nan"), n=0, method=f"no crossing inside the grid in {np.isnan(kappa).sum()} repeat(s)")
    ctx.claim("task-diversity threshold M*/D", kind="paper-shape",
              paper="a memorisation → ICL transition near κ = M/D ≈ 1 for linear attention (Lu et al.); Raventós "
                    "et al.: ~2^13-2^14 tasks for GPT-2 at D = 8 (recalled, not verified)",
              source=LU, ours=missing if np.isnan(kappa).any() else Estimate.mean(kappa, unit="repeats"),
              expect=("between", *KAPPA_BAND),
              note="M* per repeat: the pool size where the fresh-task error is halfway (log scale, interpolated in "
                   "log M) from its smallest-M value to the class optimum.")

    ctx.claim("ridge is never beaten on fresh tasks: min over M of e_model − e_ridge", kind="sanity",
              paper="(identity) ridge is the Bayes predictor for Gaussian tasks",
              ours=Estimate.exact(float(gap.min()), "min over M and repeats"), expect=(">", 0.0))
    ctx.claim("dMMSE is never beaten on pool tasks: min over M of e_model − e_dMMSE", kind="sanity",
              paper="(identity) dMMSE is the Bayes predictor for pool tasks",
              ours=Estimate.exact(float((seen - dmmse_seen).min()), "min over M and repeats"), expect=(">", 0.0))
    adam = pd.concat([df.model_fresh / df.exact_fresh, df.model_pool / df.exact_pool]) - 1
    ctx.claim("Adam vs its exact stationary point (S + wd/2 I)^-1 h: max |relative test-MSE difference|",
              kind="sanity", paper="(ours) full-batch Adam has converged (on both test sets)",
              ours=Estimate.exact(float(adam.abs().max()), "max over M, repeats and test sets"), expect=("<", 0.01))
    t = res.json("timing")["seconds"]
    ctx.claim("compute wall time (s)", kind="engineering", paper="(ours) seconds at the quick preset",
              ours=Estimate.single(t, "one run"))
    ctx.claim("grid: pool sizes × repeats", kind="engineering",
              paper=f"(Raventós et al.) M = 2^1 .. 2^20; here M = {m_lo} .. {m_hi}",
              ours=Estimate.exact(len(Ms) * df.repeat.nunique(), "count of trained pool models"))
