"""Fig. S8: ICL test error vs prompt length for several attention architectures.

At the Fig. 4b settings (D = 20, P = 10^4 pre-training prompts with one fresh task each,
P_test = 1000, weight decay 0.01) the paper compares the merged linear attention (SLA) with
full linear attention (FLA), multi-head linear attention (MHLA), softmax attention (SA) and a
full transformer (TF), beside the AMP prediction: the linear models follow the AMP curve, SA
and TF are clearly worse. The paper gives no code or hyper-parameters for FLA/MHLA/SA/TF;
ours are the `iclab.spinglass._attention` definitions:

- sla: full-batch Adam on the sufficient statistics (`train_quadratic`, exactly Adam on the
  prompts), the Fig. 4b protocol (lr 1e-3, coupled weight decay 0.01, 5000 epochs);
- fla, mhla (H heads): the same full-batch protocol through the `forward_stats` fast path;
- sa (one softmax head with Q, K, V and residual) and tf (pre-LN GPT-2 block stack,
  non-causal, no positional embedding): attention over all N+1 tokens costs O(P N) per epoch
  and more, so they get mini-batch Adam with a warm-up + cosine learning-rate schedule for a
  stated number of passes over the same P prompts.

Whether a model is trained is measured, not assumed: every model is also scored after half its
budget (the same run's record at T/2 for the constant-rate full-batch models; a second run with
half the passes, same init and schedule shape, for SA and TF), and a claim about an architecture
is judged only if doubling its budget gains less than `CONVERGED_GAIN` in test error and it has
left the trivial predictor's plateau (test error < `LEARNED_FRAC` of y_hat = 0's); otherwise the
claim's estimate is withheld (inconclusive) and its note gives the undertrained value.

The AMP curve runs the cavity iteration (lambda0 = wd, as the official code) on the statistics of
the very training prompts the models see. It is never replaced: where AMP does not converge its
test error is NaN and every claim against it is inconclusive; the exact ridge ground state is a
separate sanity check.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator, model_validator

from iclab.runtime import Estimate, Results, RunContext, experiment
from iclab.runtime import subplots
from iclab.runtime import make_gen
from iclab.runtime import IncreasingPositiveInts

from .._amp import amp
from .._analysis import icl_error_floor
from .._data import SuffStats, features, prompt_stream, sample_prompts, sufficient_stats_from
from .._attention import ARCHITECTURES, build_model
from .._hamiltonian import SpinGlass
from .._train import SCHEDULES, train_architecture, train_quadratic
from ._settings import AdamSettings, AmpSettings, ModelDevice

LINEAR = ("sla", "fla", "mhla")
MINIBATCH = ("sa", "tf")
LABELS = {"sla": "SLA (merged linear)", "fla": "FLA (full linear)", "mhla": "MHLA (multi-head linear)",
          "sa": "SA (softmax attention)", "tf": "TF (transformer)", "amp": "AMP"}
COLORS = {"sla": "#00b0F0", "fla": "#92D050", "mhla": "#F2A900", "sa": "#4472C4", "tf": "#9355B0", "amp": "#1c3c63"}

# The paper's curves: mean test error vs N, saved data fig-S8/data/{AMP,SLA,FLA,MHLA,SA,TF}_{N,mean}.npy of the
# authors' repository (Fig. S8; 4 significant digits).
PAPER = {
    "amp": ([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200],
            [0.6985, 0.5343, 0.4336, 0.3618, 0.3175, 0.2773, 0.2517, 0.224, 0.2065, 0.1923, 0.1791, 0.1663, 0.1569,
             0.1484, 0.1417, 0.1353, 0.1288, 0.1235, 0.118, 0.1128]),
    "sla": ([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200],
            [0.696, 0.5364, 0.4331, 0.3584, 0.3151, 0.2749, 0.2476, 0.2195, 0.2013, 0.1885, 0.1746, 0.1611, 0.1514,
             0.142, 0.1352, 0.1293, 0.122, 0.1163, 0.1111, 0.1057]),
    "fla": ([30, 50, 70, 90, 110, 130, 150, 170, 190],
            [0.4241, 0.3324, 0.2593, 0.2085, 0.1728, 0.1615, 0.1347, 0.1289, 0.1128]),
    "mhla": ([20, 40, 60, 80, 100, 120, 140, 160, 180, 200],
             [0.5437, 0.3629, 0.2714, 0.2204, 0.1802, 0.1551, 0.1374, 0.1215, 0.1094, 0.1009]),
    "sa": ([40, 60, 80, 100, 120, 140, 160, 180, 200],
           [0.6072, 0.5276, 0.4458, 0.398, 0.3504, 0.3254, 0.2935, 0.282, 0.2786]),
    "tf": ([50, 70, 90, 110, 130, 150, 170, 190],
           [0.5656, 0.478, 0.4096, 0.3724, 0.3286, 0.2964, 0.2785, 0.2661]),
}
SOURCE = "Fig. S8, saved data fig-S8/data/*.npy (the authors' repository)"

# Tolerances, declared before any run.
CONVERGED_GAIN = 0.03  # trained: doubling the budget lowers the test error by < 3% (max over N) ...
LEARNED_FRAC = 0.9  # ... and the test error is < 90% of the trivial predictor's (y_hat = 0): off the initial plateau
LINEAR_REL_TOL = 0.10  # our linear models' curve vs the paper's: max relative deviation over N
SOFTMAX_REL_TOL = 0.25  # SA/TF: architectures and hyper-parameters unknown, only the level is comparable
AMP_REL_TOL = 0.10  # our AMP curve vs the paper's
FOLLOWS_AMP_TOL = 0.10  # "lies on the AMP curve": max relative gap to AMP over N
WORSE_RATIO = 1.5  # "clearly worse": at least 1.5x SLA's test error at the largest N
RIDGE_TOL = 0.02  # SLA's Adam end point vs its exact stationary point (ridge, lambda0 = wd/2)
QUICK_BUDGET_S = 150  # the quick preset's compute CPU time on one core


class FigS8Config(AmpSettings, AdamSettings, ModelDevice):
    D: int = Field(20, gt=0, description="Input dimension D.")
    Ns: IncreasingPositiveInts = Field([20 * k for k in range(1, 11)],
                                       description="Prompt lengths N (as the saved Fig. 4b data: 20, 40, ..., 200).")
    P: int = Field(10_000, gt=0, description="Pre-training prompts (one fresh task each).")
    P_test: int = Field(1000, gt=0, description="Test prompts (fresh tasks) per N and repeat.")
    archs: list[str] = Field(["sla", "fla", "mhla", "sa", "tf"], min_length=1,
                             description="Architectures from iclab.spinglass._attention.ARCHITECTURES.")
    repeats: int = Field(2, gt=0, description="Independent data sets and inits per N.")
    sa_lr: float = Field(1e-2, gt=0, description="Peak Adam learning rate of SA (our choice).")
    sa_epochs: int = Field(32, gt=0, description="Passes over the P prompts of SA (mini-batch; our choice).")
    tf_lr: float = Field(1e-3, gt=0, description="Peak Adam learning rate of TF (our choice).")
    tf_epochs: int = Field(8, gt=0, description="Passes over the P prompts of TF (mini-batch; our choice).")
    batch_size: int = Field(64, gt=0, description="Mini-batch size of SA and TF (our choice).")
    schedule: str = Field("cosine", description=f"Learning-rate schedule of SA and TF: one of {SCHEDULES}.")
    warmup: float = Field(0.05, ge=0, lt=1, description="Linear warm-up of SA and TF, as a fraction of their steps.")
    budget_check: bool = Field(True, description="Also train SA and TF with half the passes (measures convergence; "
                               "without it their claims are not judged).")
    n_heads: int = Field(4, gt=0, description="Heads of MHLA and of every TF block.")
    d_model: int = Field(64, gt=0, description="TF residual width (a multiple of n_heads).")
    n_layers: int = Field(2, gt=0, description="TF blocks.")

    @field_validator("archs")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(ARCHITECTURES))
        if unknown:
            raise ValueError(f"unknown architectures {unknown}; choose from {sorted(ARCHITECTURES)}")
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        if v not in SCHEDULES:
            raise ValueError(f"unknown schedule {v!r}; choose one of {SCHEDULES}")
        return v

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if "tf" in self.archs and self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")
        return self


QUICK = {"Ns": [50, 100], "repeats": 2, "lr": 2e-2, "epochs": 400, "sa_epochs": 24, "tf_epochs": 1, "d_model": 16,
         "n_layers": 1}
PAPER_PRESET = {"D": 20, "Ns": [20 * k for k in range(1, 11)], "P": 10_000, "P_test": 1000, "weight_decay": 0.01,
                "lr": 1e-3, "epochs": 5000, "repeats": 2, "sa_lr": 1e-2, "sa_epochs": 32, "tf_lr": 1e-3,
                "tf_epochs": 8, "batch_size": 64, "n_heads": 4, "d_model": 64, "n_layers": 2}


def draw_data(D: int, N: int, P: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, SuffStats]:
    """Training prompts in float32 for the models plus their float64 sufficient statistics."""
    n = (D + 1) ** 2
    S = torch.zeros(n, n, dtype=torch.float64)
    h = torch.zeros(n, dtype=torch.float64)
    yy = torch.zeros((), dtype=torch.float64)
    Zs, ys = [], []
    for batch in prompt_stream(D, N, P, generator=gen):
        f = features(batch.Z).reshape(-1, n)  # (chunk, n)
        S.addmm_(f.T, f)
        h.addmv_(f.T, batch.y)
        yy += batch.y @ batch.y
        Zs.append(batch.Z.float())
        ys.append(batch.y.float())
    return torch.cat(Zs), torch.cat(ys), SuffStats(S / P, h / P, yy / P, P, D, N)  # (P, D+1, N+1), (P,)


def half_record(total: int) -> tuple[int, int]:
    """(record_every, T//2): a recording interval that hits T//2 exactly, ~20 records per run."""
    return max(1, math.gcd(total // 2, max(1, total // 20))), total // 2


def train_linear(arch: str, cfg: FigS8Config, data, test, key: tuple[int, int]) -> dict:
    """Full-batch Adam at constant rate (the paper's protocol): the T/2 record is the half-budget run."""
    Z, y, st, Zt, yt, st_test = data + test
    every, half = half_record(cfg.epochs)
    if arch == "sla":  # exactly Adam on the prompts, from the statistics (train.py, tested)
        out = train_quadratic(st.S, st.h, st.yy, epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                              generator=make_gen(cfg.seed, "init", arch, *key), dtype=getattr(torch, cfg.adam_dtype),
                              test_stats=st_test, record_every=every)
        steps, train, test_loss = out.epochs, out.train_loss[0], out.test_loss[0]
    else:
        model = build_model(arch, cfg.D, generator=make_gen(cfg.seed, "init", arch, *key), n_heads=cfg.n_heads)
        model = model.to(cfg.device)
        out = train_architecture(model, (Z, y), (Zt, yt), epochs=cfg.epochs, lr=cfg.lr,
                                 weight_decay=cfg.weight_decay, record_every=every)
        steps, train, test_loss = out.epochs, out.train_loss, out.test_loss
    j = int((steps == half).nonzero()[0, 0])
    return {"steps": steps.numpy(), "train": train.numpy(), "test": test_loss.numpy(),
            "half_test": float(test_loss[j]), "half_steps": half}


def train_minibatch(arch: str, cfg: FigS8Config, data, test, key: tuple[int, int]) -> dict:
    """Mini-batch Adam with the configured schedule; the half-budget check is a second run (same init, same
    schedule shape, half the passes), because a decaying rate makes the T/2 record of one run no half-budget run."""
    Z, y, _, Zt, yt, _ = data + test
    lr, epochs = (cfg.sa_lr, cfg.sa_epochs) if arch == "sa" else (cfg.tf_lr, cfg.tf_epochs)
    per_epoch = math.ceil(Z.shape[0] / cfg.batch_size)
    kw = {"n_heads": cfg.n_heads, "d_model": cfg.d_model, "n_layers": cfg.n_layers}

    def run(passes: int, every: int):
        model = build_model(arch, cfg.D, generator=make_gen(cfg.seed, "init", arch, *key), **kw).to(cfg.device)
        return train_architecture(model, (Z, y), (Zt, yt), epochs=passes, lr=lr, weight_decay=cfg.weight_decay,
                                  batch_size=cfg.batch_size, schedule=cfg.schedule, warmup=cfg.warmup,
                                  generator=make_gen(cfg.seed, "batches", arch, *key),
                                  record_every=every)

    out = run(epochs, max(1, epochs // 4))  # each record is a pass over all P prompts: few of them
    half = run(epochs // 2, epochs // 2) if cfg.budget_check and epochs >= 2 else None
    return {"steps": out.epochs.numpy() * per_epoch, "train": out.train_loss.numpy(), "test": out.test_loss.numpy(),
            "half_test": float(half.test_loss[-1]) if half is not None else float("nan"),
            "half_steps": (epochs // 2) * per_epoch if half is not None else 0}


@experiment("spinglass.figS8", FigS8Config, presets={"quick": QUICK, "paper": PAPER_PRESET},
            title="Architectures: ICL test error vs prompt length", paper="Li, Bai, Huang 2024, Fig. S8")
def compute(cfg: FigS8Config, ctx: RunContext) -> None:
    """Train SLA/FLA/MHLA/SA/TF at the Fig. 4b settings; AMP on the same training statistics; each model
    also scored after half its budget (the convergence check)."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    D, rows, curves = cfg.D, [], {}
    jobs = [(i, N, r) for i, N in enumerate(cfg.Ns) for r in range(cfg.repeats)]
    for i, N, r in ctx.progress(jobs, "prompt lengths x repeats", total=len(jobs)):
        data = draw_data(D, N, cfg.P, make_gen(cfg.seed, "train", i, r))
        tp = sample_prompts(D, N, cfg.P_test, generator=make_gen(cfg.seed, "test", i, r))
        st_test = sufficient_stats_from(features(tp.Z), tp.y, N)
        test = (tp.Z.float(), tp.y.float(), st_test)
        base = {"N": N, "repeat": r}

        sg = SpinGlass.from_stats(data[2], cfg.weight_decay)  # lambda0 = wd, as the official code
        res = amp(sg.J, sg.h, sg.lam, **cfg.amp_kwargs(), generator=make_gen(cfg.seed, "amp", i, r))
        amp_mse = float(st_test.mse(res.m.reshape(D + 1, D + 1)))
        rows.append(base | {"model": "amp", "test_mse": amp_mse if bool(res.converged) else float("nan"),
                            "amp_converged": float(bool(res.converged)), "amp_sweeps": int(res.sweeps)})
        W_gs = SpinGlass.from_stats(data[2], cfg.weight_decay / 2).ground_state()  # Adam's stationary point (SLA)
        rows.append(base | {"model": "ridge", "test_mse": float(st_test.mse(W_gs))})
        rows.append(base | {"model": "zero", "test_mse": float(st_test.yy)})  # the trivial predictor y_hat = 0

        for arch in cfg.archs:
            t1 = time.perf_counter()
            out = (train_linear if arch in LINEAR else train_minibatch)(arch, cfg, data, test, (i, r))
            rows.append(base | {"model": arch, "test_mse": float(out["test"][-1]), "train_mse": float(out["train"][-1]),
                                "steps": int(out["steps"][-1]), "half_test_mse": out["half_test"],
                                "half_steps": out["half_steps"], "seconds": time.perf_counter() - t1})
            for k in ("steps", "train", "test"):
                curves[f"{arch}_N{N}_r{r}_{k}"] = out[k]
        del data
    df = pd.DataFrame(rows)
    ctx.table(df, "metrics")
    ctx.arrays("curves", **curves)
    ctx.json("timing", {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu0,
                        "train_seconds": df.dropna(subset=["seconds"]).groupby("model").seconds.sum().to_dict()})
    ctx.note("FLA/MHLA/SA/TF and their hyper-parameters are not given by the paper; ours: FLA "
             "F = Z + W_PV Z Z^T W_KQ Z/(N+1); "
             f"MHLA {cfg.n_heads} such heads summed; SA one softmax head (Q, K, V, residual); TF pre-LN GPT-2 blocks "
             f"(d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads, MLP x4, non-causal, no positions). "
             "Every attention matrix starts N(0, 1/(D+1)); the TF uses nanoGPT's init.")
    ctx.note(f"Linear models: full-batch Adam, lr {cfg.lr:g}, {cfg.epochs} epochs, constant rate (the paper's Fig. 4b "
             f"protocol is lr 1e-3, 5000 epochs). SA: lr {cfg.sa_lr:g}, passes {cfg.sa_epochs}; TF: lr {cfg.tf_lr:g}, "
             f"passes {cfg.tf_epochs}; both mini-batch {cfg.batch_size}, {cfg.schedule} schedule with "
             f"{cfg.warmup:.0%} warm-up (the paper does not say how SA and TF were trained).")
    ctx.note("AMP uses lambda0 = wd (the official code); the ridge rows are the exact ground state at lambda0 = wd/2, "
             "the stationary point of Adam with coupled weight decay on the MSE (docs/spinglass.md: loss), i.e. where SLA is heading.")


# -- reading the saved results -------------------------------------------------------------------


def paper_at(model: str, Ns: list[int]) -> np.ndarray:
    """The paper's curve at our N (linear in log N, log error between its saved points); NaN outside its range."""
    pn, pe = (np.asarray(v, dtype=float) for v in PAPER[model])
    out = np.exp(np.interp(np.log(Ns), np.log(pn), np.log(pe)))
    return np.where((np.asarray(Ns) >= pn[0]) & (np.asarray(Ns) <= pn[-1]), out, np.nan)


def matrix(df: pd.DataFrame, model: str, col: str = "test_mse") -> np.ndarray:
    """(R, n_N) values of one model: repeats along rows, prompt lengths (increasing) along columns."""
    return df[df.model == model].pivot(index="repeat", columns="N", values=col).sort_index(axis=1).to_numpy(float)


def max_rel_dev(cols: list[np.ndarray], ref: np.ndarray) -> float:
    """max over N of |mean over repeats / ref − 1|."""
    return float(max(abs(np.mean(c) / p - 1) for c, p in zip(cols, ref)))


def over_repeats(mat: np.ndarray, statistic, missing: str) -> Estimate:
    """A statistic of the per-N columns of an (R, n_N) matrix, with a bootstrap over repeats; no estimate
    (inconclusive, saying `missing`) when an entry is missing."""
    if not np.isfinite(mat).all():
        return withheld(missing)
    return Estimate.bootstrap(*mat.T, statistic=statistic, unit="repeats")


def withheld(why: str) -> Estimate:
    return Estimate(float("nan"), n=0, method=f"withheld: {why}")


@compute.figures
def figures(cfg: FigS8Config, res: Results, ctx: RunContext) -> None:
    df = res.table("metrics")
    Ns = np.array(sorted(df.N.unique()))
    fig, axes = subplots(1, 1, size=(5.6, 4.0))
    ax = axes[0, 0]
    Ng = np.linspace(10, 200, 100)
    ax.plot(Ng, [icl_error_floor(cfg.D, n) for n in Ng], "k:", lw=1, label="(D+1)/(N+D+1)")
    amp_m = np.array([np.nanmean(c) if np.isfinite(c).any() else np.nan for c in matrix(df, "amp").T])
    ax.plot(Ns, amp_m, "-", color=COLORS["amp"], lw=1.5, label="AMP, ours (λ0 = wd)")
    ax.plot(Ns, matrix(df, "ridge").mean(0), "-", color="0.6", lw=1, label="ridge, ours (λ0 = wd/2)")
    ax.plot(*PAPER["amp"], "--", color=COLORS["amp"], lw=1, label="AMP, paper")
    for arch in cfg.archs:
        m = matrix(df, arch)
        sd = m.std(0, ddof=1) if m.shape[0] > 1 else np.zeros(len(Ns))
        ax.errorbar(Ns, m.mean(0), yerr=sd, fmt="o", ms=4, capsize=2, color=COLORS[arch], label=f"{arch.upper()}, ours")
        ax.plot(*PAPER[arch], "x--", ms=3, lw=0.7, color=COLORS[arch], alpha=0.7, label=f"{arch.upper()}, paper")
    ax.set(xlabel="prompt length N", ylabel="ICL test MSE (fresh tasks)", yscale="log")
    ax.legend(fontsize=6, ncol=2)
    ctx.figure(fig, "architectures", caption=(
        f"Test MSE vs N for each architecture, ours (markers, mean ± std over {df.repeat.nunique()} repeats; D={cfg.D}, "
        f"P={cfg.P}, P_test={cfg.P_test}, wd={cfg.weight_decay}, seed={cfg.seed}) beside the paper's saved curves "
        "(crosses, dashed). Lines: AMP on the same training statistics (NaN where it did not converge), the exact "
        "ridge ground state, the population optimum (dotted). Paper: SLA/FLA/MHLA follow the AMP curve, SA and TF "
        "are clearly worse. Training budgets and their convergence: see the notes and the training-curve figure."))

    c = res.arrays("curves")
    fig, axes = subplots(1, len(cfg.archs), size=(2.8, 2.6))
    for ax, arch in zip(axes[0], cfg.archs):
        for j, N in enumerate(Ns):
            key = f"{arch}_N{N}_r0"
            ax.plot(c[f"{key}_steps"], c[f"{key}_train"], ".-", color=f"C{j}", lw=1, ms=3, label=f"N={N} train")
            ax.plot(c[f"{key}_steps"], c[f"{key}_test"], ".--", color=f"C{j}", lw=1, ms=3, label=f"N={N} test")
            half = df[(df.model == arch) & (df.N == N) & (df.repeat == 0)].iloc[0]
            if half.half_steps > 0:
                ax.plot(half.half_steps, half.half_test_mse, "s", color=f"C{j}", ms=4, mfc="none")
        ax.set(yscale="log", xlabel="Adam steps", title=LABELS[arch])
    axes[0, 0].set_ylabel("MSE")
    axes[0, 0].legend(fontsize=6)
    ctx.figure(fig, "training_curves", caption=(
        "Training (solid) and test (dashed) MSE vs Adam steps, repeat 0; open squares: the test MSE after half the "
        "budget (the same run at T/2 for the constant-rate linear models, a separate half-length run for SA and TF, "
        "whose schedule decays). A curve still falling at the end means the model is undertrained."))


@compute.verdicts
def verdicts(cfg: FigS8Config, res: Results, ctx: RunContext) -> None:
    df = res.table("metrics")
    Ns = sorted(int(n) for n in df.N.unique())
    amp_e = matrix(df, "amp")  # (R, n_N), NaN where AMP did not converge
    amp_ok = bool(matrix(df, "amp", "amp_converged").min() >= 1)
    diverged = df[(df.model == "amp") & (df.amp_converged < 1)].groupby("N").size().to_dict()
    why_amp = "AMP did not converge at " + ", ".join(f"N={n} ({k} of {df.repeat.nunique()} repeats)"
                                                      for n, k in diverged.items())

    ctx.claim("AMP converged at every N and repeat", kind="sanity",
              paper=f"(ours) the cavity iteration converges within {cfg.amp_steps} sweeps",
              ours=Estimate.exact(float(matrix(df, "amp", "amp_converged").mean()), "fraction of (N, repeat) runs"),
              expect=(">=", 1.0))
    pv = paper_at("amp", Ns)
    ctx.claim("AMP test error vs N: max relative deviation from the paper's AMP curve", kind="paper-value",
              paper="the AMP curve of Fig. S8", paper_value=[round(float(x), 4) for x in pv], source=SOURCE,
              ours=over_repeats(amp_e, lambda *cols: max_rel_dev(cols, pv), why_amp),
              expect=("<=", AMP_REL_TOL), note="" if amp_ok else why_amp + ": no AMP curve there, nothing replaces it.")
    ctx.claim("AMP − (D+1)/(N+D+1), mean over N", kind="paper-shape",
              paper="the AMP curve tracks the closed form from slightly above", source="Fig. S8 and Fig. 4b",
              ours=Estimate.mean((amp_e - [icl_error_floor(cfg.D, n) for n in Ns]).mean(1))
              if amp_ok else withheld(why_amp), expect=(">", 0.0), note="" if amp_ok else why_amp + ".")

    trained = {}
    for arch in cfg.archs:
        full, half = matrix(df, arch), matrix(df, arch, "half_test_mse")
        gain = over_repeats(half / full - 1, lambda *cols: float(max(np.mean(c) for c in cols)),
                            "no half-budget run (budget_check off, or a single pass)")
        ctx.claim(f"{arch.upper()} converged: test-error gain from doubling the budget (max over N)", kind="sanity",
                  paper="(ours) a trained model: a longer run would not do better", ours=gain,
                  expect=("<", CONVERGED_GAIN),
                  note="test MSE after half the budget / after the full budget − 1, per N averaged over repeats; "
                       "negative: the second half overfits. Claims about an architecture are judged only when this "
                       "and the next claim hold.")
        converged = ctx.claims[-1].verdict == "holds"
        ctx.claim(f"{arch.upper()} learned in context: test error / trivial predictor's (max over N)", kind="sanity",
                  paper="(ours) a trained model is off the initial plateau of y_hat = 0",
                  ours=over_repeats(full / matrix(df, "zero"), lambda *cols: float(max(np.mean(c) for c in cols)),
                                    "a test error is missing"),
                  expect=("<", LEARNED_FRAC),
                  note="A model still at the trivial predictor's error has not started to learn in context; a flat "
                       "training curve there is a plateau, not convergence (transformers sit on it for many steps).")
        trained[arch] = converged and ctx.claims[-1].verdict == "holds"

    def gate(arch: str, estimate, *others: str) -> tuple[Estimate, str]:
        """The estimate if `arch` (and `others`) are trained, else withheld with the reason."""
        lazy = [a for a in (arch, *others) if not trained.get(a, False)]
        if not lazy:
            return estimate(), ""
        raw = estimate().value
        would = f" the undertrained value would be {raw:.3g}." if math.isfinite(raw) else ""
        return withheld(f"{', '.join(a.upper() for a in lazy)} not trained to convergence"), (
            f"Not reproduced: {', '.join(a.upper() for a in lazy)} undertrained at this budget (the sanity claims "
            f"'converged' and 'learned in context' do not both hold);{would} The paper preset trains longer.")

    for arch in cfg.archs:
        pv, tol = paper_at(arch, Ns), LINEAR_REL_TOL if arch in LINEAR else SOFTMAX_REL_TOL
        ok = np.isfinite(pv)
        mat = matrix(df, arch)[:, ok]
        est, note = gate(arch, lambda: over_repeats(mat, lambda *cols: max_rel_dev(cols, pv[ok]),
                                                    "a test error is missing"))
        span = f"N in [{PAPER[arch][0][0]}, {PAPER[arch][0][-1]}]"
        ctx.claim(f"{arch.upper()} test error vs N: max relative deviation from the paper's curve", kind="paper-value",
                  paper=f"the {arch.upper()} markers of Fig. S8", paper_value=[round(float(x), 4) for x in pv[ok]],
                  source=SOURCE, ours=est if ok.any() else withheld(f"no N of ours in the paper's {span}"),
                  expect=("<=", tol), note=" ".join(filter(None, [
                      note, f"Paper values interpolated (log-log) at our N within its {span}"
                      + ("" if ok.all() else f"; N = {[n for n, o in zip(Ns, ok) if not o]} outside it, not compared")
                      + ".", "" if arch in LINEAR else "Our SA/TF are our own designs (the paper gives none)."])))

    for arch in [a for a in cfg.archs if a in LINEAR]:
        ratio = matrix(df, arch) / amp_e  # (R, n_N), paired: same training prompts
        est, note = gate(arch, lambda: over_repeats(
            ratio, lambda *cols: float(max(abs(np.mean(c) - 1) for c in cols)), why_amp))
        ctx.claim(f"{arch.upper()} follows the AMP curve: max |test error / AMP − 1| over N", kind="paper-shape",
                  paper="all the linear-attention variants lie on the AMP curve", source="Fig. S8",
                  ours=est, expect=("<=", FOLLOWS_AMP_TOL), note=" ".join(filter(None, [
                      note, "" if amp_ok else why_amp + ": the comparison is not replaced by any other curve."])))
    if "sla" in cfg.archs:
        for arch in [a for a in cfg.archs if a in MINIBATCH]:
            r = matrix(df, arch)[:, -1] / matrix(df, "sla")[:, -1]  # (R,), paired
            est, note = gate(arch, lambda: Estimate.mean(r), "sla")
            ctx.claim(f"{arch.upper()} / SLA test error at N={Ns[-1]}", kind="paper-shape",
                      paper=f"softmax attention and the transformer are clearly worse (paper at N≈190-200: "
                            f"{PAPER[arch][1][-1] / PAPER['sla'][1][-1]:.2g}x)", source="Fig. S8",
                      ours=est, expect=(">", WORSE_RATIO), note=note)
        dev = np.abs(matrix(df, "sla") / matrix(df, "ridge") - 1)
        ctx.claim("SLA (Adam) vs its exact stationary point, ridge at λ0 = wd/2: max |test error ratio − 1|",
                  kind="sanity", paper="(ours) full-batch Adam reaches the ridge ground state of its own loss",
                  ours=Estimate.exact(float(dev.max()), "max over N and repeats"), expect=("<", RIDGE_TOL),
                  note="A check of our training, not of the paper: the ridge ground state is never used in place of "
                       "AMP.")

    t = res.json("timing")
    quick = all(getattr(cfg, k) == v for k, v in QUICK.items())
    ctx.claim("compute CPU time (s)", kind="engineering", paper=f"(ours) the quick preset in < {QUICK_BUDGET_S} s of "
              "one core", ours=Estimate.single(t["cpu_seconds"], "one run"), expect=("<", QUICK_BUDGET_S) if quick else None,
              note="CPU time of this process: unlike wall time it does not grow when other jobs share the cores.")
    ctx.claim("compute wall time (s)", kind="engineering", paper="(ours) reported", ours=Estimate.single(t["seconds"],
              "one run"), note="Wall seconds spent training each architecture: "
              + ", ".join(f"{k} {v:.0f}" for k, v in t["train_seconds"].items()))
    ctx.claim("grid: prompt lengths × repeats × architectures", kind="engineering",
              paper=f"(paper) {len(PAPER['amp'][0])} N for SLA/AMP, 8-10 for the others",
              ours=Estimate.exact(len(Ns) * df.repeat.nunique() * len(cfg.archs), "count of trained models"))
