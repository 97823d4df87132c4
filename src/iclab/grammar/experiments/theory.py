"""grammar.theory: the theory's predictions over every task type and the size × data × seed grid.

Theorem 1 (as we reconstruct it in docs/grammar.md#the-papers-claims) bounds the ideal predictor's cumulative
answer loss by D[τ] + R_n, so it predicts an *order*: tasks with longer descriptions need more
demonstrations. This experiment asks whether trained models follow that order (the rank
correlation of D[τ] with their cumulative loss, per model), how close they get to the exact
posterior (KL(ideal ‖ model) per position and task type), and how ICL on primitives, seen and
held-out compositions, three-function compositions and binary operations grows over the grid.
Its `medium` preset is the compositional line at the scale where emergence is a curve.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from iclab.runtime import Estimate, Results, RunContext, experiment
from iclab.runtime import IclabError
from iclab.runtime import heatmap, subplots

from .._evaluate import answer_log_probs, kl_to_ideal, prompt_inputs
from .._theory import IdealPredictor
from .._world import World, WorldConfig
from ._common import (
    MEDIUM_DATA,
    MEDIUM_SIZES,
    MEDIUM_WORLD,
    PAPER_DATA,
    PAPER_SIZES,
    PAPER_TRAINING,
    QUICK_DATA,
    QUICK_SIZES,
    THEORY_WORLD,
    TRAIN_SEEDS,
    DataTokens,
    Size,
    TrainingRunsConfig,
    TrainSeeds,
    key,
    load_point,
    metrics_of,
    name_of,
    over_seeds,
    pretrain_config,
    train_points,
)

TYPES = ("prim", "comp", "heldout", "comp3", "bin")
LABELS = {"prim": "primitive f", "comp": "seen f∘g", "heldout": "held-out f∘g (direct)",
          "comp3": "f∘g∘h", "bin": "binary G(x, c)"}
NEEDS = {"comp3": ("n_triples", "three-function compositions"), "bin": ("n_binary", "binary operations"),
         "heldout": ("heldout_fraction", "held-out compositions")}
PAPER = "Hahn & Goyal 2023, Theorem 1 as we reconstruct it, abstract claims 5–6 (docs/grammar.md#the-papers-claims)"
ABOVE_CHANCE = 5  # ICL counts as present at >= 5 × chance accuracy (declared before any run)
INF_RANK = 1e6  # D = ∞ (no derivation) ranks above every finite description length


class TheoryConfig(TrainingRunsConfig):
    world: WorldConfig = Field(default_factory=lambda: WorldConfig(**THEORY_WORLD),
                               description="The world: every task type needs its part (n_triples, n_binary).")
    sizes: list[Size] = Field([QUICK_SIZES[1], QUICK_SIZES[2]], min_length=1,
                              description="(d_model, n_layers), smallest first; claims use the last.")
    data: list[DataTokens] = Field([QUICK_DATA[2]], min_length=1,
                                   description="Pretraining tokens, fewest first; claims use the last.")
    train_seeds: TrainSeeds = Field([0], description="Training seeds of every grid point; claims are judged over "
                                    "them (one seed: a hint, bootstrap over tasks or prompts).")
    types: list[Literal[TYPES]] = Field(list(TYPES), min_length=1,  # type: ignore[valid-type]
                                        description="Task types scored (each must exist in the world).")
    ns_max: int = Field(16, ge=1, description="Demonstrations scored: 0..ns_max, from one pass per prompt.")
    n_prompts: int = Field(16, gt=0, description="Prompts per task (model and ideal alike).")
    reach: float = Field(0.8, gt=0, le=1, description="Accuracy whose first n is a task's sample complexity.")
    only_finished: bool = Field(False, description="Measure only the grid points already trained (a report "
                                "from a partial grid); never trains. Rerun with --force as more finish.")

    def model_sizes(self) -> list[tuple[int, int]]:
        return list(self.sizes)

    @model_validator(mode="after")
    def _types_exist_in_the_world(self) -> TheoryConfig:
        for t in self.types:
            if t in NEEDS and not getattr(self.world, NEEDS[t][0]):
                field, what = NEEDS[t]
                raise ValueError(f"task type {t!r} needs {what}, and this world has none: set world {field} > 0 "
                                 f"or leave {t!r} out of types (the grammar builds compositions of 2 functions, "
                                 "and of 3 with n_triples)")
        if self.ns_max + 1 > self.world.iter_max:
            raise ValueError(f"ns_max = {self.ns_max} needs world.iter_max >= {self.ns_max + 1} "
                             f"(got {self.world.iter_max})")
        return self


def measure(source, world: World, cfg: TheoryConfig, ideal: dict[str, np.ndarray] | None = None
            ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per task type, (tasks, prompts, ns_max + 1) arrays: greedy answer right, log-probability of the
    true answer, and KL(ideal ‖ source) at every answer position. `source` is a trained model or the
    IdealPredictor; `ideal` the ideal's log-probabilities per type (None: `source` is the ideal).
    Also returns `source`'s whole next-token log-probabilities per type, (K, P, n, V): the reference
    for every model when `source` is the ideal, kept in memory only."""
    out: dict[str, np.ndarray] = {}
    full: dict[str, np.ndarray] = {}
    for kind in cfg.types:
        group = world.tasks()[kind]
        inputs = prompt_inputs(world, group, cfg.ns_max + 1, cfg.n_prompts, cfg.seed, stream="theory")
        logp = np.stack([answer_log_probs(source, world, t, inputs[t.name]) for t in group])  # (K, P, n, V)
        truth = np.asarray([[[world.obj(world.apply(t, x)) for x in xs] for xs in inputs[t.name]]
                            for t in group])  # (K, P, n)
        out[f"{kind}__correct"] = logp.argmax(-1) == truth
        out[f"{kind}__logp"] = np.take_along_axis(logp, truth[..., None], -1)[..., 0].astype(np.float32)
        ref = logp if ideal is None else ideal[kind]
        out[f"{kind}__kl"] = kl_to_ideal(ref, logp).astype(np.float32)
        full[kind] = logp
    return out, full


def description_lengths(world: World, predictor: IdealPredictor, kinds) -> dict[str, np.ndarray]:
    return {k: np.asarray([predictor.description_length(t) for t in world.tasks()[k]]) for k in kinds}


def _grid(cfg: TheoryConfig) -> list[tuple[tuple[int, int], int, int]]:
    return [(tuple(s), d, seed) for s in cfg.sizes for d in cfg.data for seed in cfg.train_seeds]


@experiment(
    "grammar.theory",
    TheoryConfig,
    presets={
        "quick": {},
        "quick-3seeds": dict(train_seeds=TRAIN_SEEDS, data=[QUICK_DATA[1], QUICK_DATA[2]]),
        "medium": dict(world=MEDIUM_WORLD, sizes=MEDIUM_SIZES, data=MEDIUM_DATA, train_seeds=TRAIN_SEEDS,
                       n_prompts=12),
        "paper": dict(PAPER_TRAINING, sizes=PAPER_SIZES, data=PAPER_DATA, train_seeds=TRAIN_SEEDS, n_prompts=32,
                      world=dict(PAPER_TRAINING["world"], n_triples=64)),
    },
    title="The theory's predictions over task types and scale: ICL curves, description length, distance to the ideal",
    paper="Hahn & Goyal 2023, Theorem 1 and the emergence of ICL with parameters and data",
    lane_minutes=4,  # its world is its own: no model shared with the line's other experiments
)
def compute(cfg: TheoryConfig, ctx: RunContext) -> None:
    """Every (size, data, seed) point is a `grammar.train` run (trained if missing, unless
    `only_finished`), scored on the same prompts as the grammar's exact posterior: accuracy, the true
    answer's log-probability and KL(ideal ‖ model) at every one of 0..ns_max demonstrations."""
    from iclab.runtime import is_complete, run_dir

    grid = _grid(cfg)
    points = [pretrain_config(cfg, size, data, seed=seed) for size, data, seed in grid]
    if cfg.only_finished:
        if ctx.runs_dir is None:
            raise IclabError("only_finished reads the run store: run it through iclab")
        keep = [i for i, p in enumerate(points) if is_complete(run_dir(ctx.runs_dir, "grammar.train", p))]
        if not keep:
            raise IclabError(f"none of the {len(points)} grid points is trained yet; run without only_finished "
                             "to train them")
        ctx.note(f"Partial grid: {len(keep)} of {len(points)} points were finished when this ran (only_finished); "
                 "missing points are blank in the figures and left out of the claims.")
        grid, points = [grid[i] for i in keep], [points[i] for i in keep]
    runs = train_points(ctx, cfg, points)
    world = World(cfg.world)
    predictor = IdealPredictor(world)
    ideal, full = measure(predictor, world, cfg)
    arrays = {key("ideal", 0, -1, name): a for name, a in ideal.items()}
    rows = _rows("ideal", 0, 0, -1, ideal, cfg)
    for (size, data, seed), run in zip(grid, runs):
        model, _, _ = load_point(run, cfg.device)
        scores, _ = measure(model, world, cfg, ideal=full)
        arrays |= {key(name_of(size), data, seed, name): a for name, a in scores.items()}
        rows += _rows(name_of(size), metrics_of(run)["params"], data, seed, scores, cfg)
        ctx.log(f"scored {name_of(size)}, {data:,} tokens, training seed {seed}")
    ctx.table(pd.DataFrame(rows), "curves")
    ctx.arrays("scores", **arrays)
    d = description_lengths(world, predictor, cfg.types)
    tasks = [dict(type=k, task=t.name, depth=t.depth, D=float(dl)) for k in cfg.types
             for t, dl in zip(world.tasks()[k], d[k])]
    ctx.table(pd.DataFrame(tasks), "tasks")
    ctx.json("grid", {"points": [[name_of(s), dt, sd] for s, dt, sd in grid],
                      "R_n": [predictor.iteration_cost(n) if n else 0.0 for n in range(cfg.ns_max + 1)]})
    ctx.note("Sample complexity of a task = its answer loss summed over the first ns_max demonstrations (Theorem 1's "
             f"left-hand side) and the first n at which accuracy reaches {cfg.reach}. Held-out compositions have "
             "no direct derivation (D = ∞) and rank above every other task. KL(ideal ‖ model) is over the whole "
             "vocabulary at each answer position.")


def _rows(model: str, params: int, data: int, seed: int, scores: dict, cfg: TheoryConfig) -> list[dict]:
    out = []
    for kind in cfg.types:
        c, lp, kl = scores[f"{kind}__correct"], scores[f"{kind}__logp"], scores[f"{kind}__kl"]
        cum = -np.cumsum(lp, -1).mean((0, 1))  # (n,) answer loss summed over the first n answers
        out += [dict(model=model, params=params, data_tokens=data, seed=seed, type=kind, n_demos=n,
                     accuracy=float(c[..., n].mean()), cum_loss=float(cum[n - 1]) if n else 0.0,
                     kl=float(kl[..., n].mean())) for n in range(cfg.ns_max + 1)]
    return out


def per_task(scores, kinds, cfg: TheoryConfig, name: str, data: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative answer loss over ns_max answers, first n reaching `reach` accuracy) per task, in
    `kinds` order; never reached: ns_max + 1."""
    loss, reach = [], []
    for k in kinds:
        lp = scores[key(name, data, seed, f"{k}__logp")]  # (K, P, n)
        acc = scores[key(name, data, seed, f"{k}__correct")].mean(1)  # (K, n)
        loss += list(-lp[..., : cfg.ns_max].sum(-1).mean(-1))
        hit = acc >= cfg.reach
        reach += [int(np.argmax(h)) if h.any() else cfg.ns_max + 1 for h in hit]
    return np.asarray(loss), np.asarray(reach, dtype=float)


def spearman(d: np.ndarray, y: np.ndarray) -> float:
    d = np.where(np.isfinite(d), d, INF_RANK)
    if np.ptp(d) == 0 or np.ptp(y) == 0:
        return float("nan")
    from scipy import stats  # here: scipy.stats takes half a second to import

    return float(stats.spearmanr(d, y).statistic)


def _points(res: Results) -> list[tuple[str, int, int]]:
    return [(m, int(d), int(s)) for m, d, s in res.json("grid")["points"]]


@compute.figures
def figures(cfg: TheoryConfig, res: Results, ctx: RunContext) -> None:
    df, tasks, scores = res.table("curves"), res.table("tasks"), res.arrays("scores")
    models = [name_of(s) for s in cfg.sizes]
    done = {(m, d) for m, d, _ in _points(res)}
    top = max(d for _, d in done)
    chance = 1 / cfg.world.n_objects
    fig, axes = subplots(1, len(cfg.types), size=(3.1, 2.8))
    for ax, kind in zip(axes[0], cfg.types):
        for m in models + ["ideal"]:
            sel = df[(df.model == m) & (df.type == kind) & ((df.data_tokens == top) | (m == "ideal"))]
            if len(sel):
                g = sel.groupby("n_demos").accuracy
                mean, sd = g.mean(), g.std().fillna(0)
                ax.plot(mean.index, mean, marker=".", ls="--" if m == "ideal" else "-", label=m)
                ax.fill_between(mean.index, mean - sd, mean + sd, alpha=0.15)
        ax.axhline(chance, color="gray", ls=":", lw=1)
        ax.set(xlabel="demonstrations", ylabel="accuracy", ylim=(-0.02, 1.02), title=LABELS[kind])
    axes[0, 0].legend(fontsize=6)
    ctx.figure(fig, "icl_by_type", caption=(
        f"Greedy accuracy after n demonstrations per task type ({cfg.n_prompts} prompts per task), models trained on "
        f"{top:,} tokens, mean over training seeds {cfg.train_seeds} (band: ± one s.d. over seeds), and the "
        f"grammar's exact posterior (dashed). World: {cfg.world.n_objects} objects, {cfg.world.n_functions} maps, "
        f"{cfg.world.n_triples} three-function compositions, {cfg.world.n_binary} binary operation(s); chance dotted."))

    kinds = list(cfg.types)
    D = np.concatenate([tasks[tasks.type == k].D.to_numpy() for k in kinds])
    shown = [m for m in models if (m, top) in done] + ["ideal"]
    fig, axes = subplots(1, len(shown), size=(3.0, 2.8))
    finite_max = D[np.isfinite(D)].max()
    x = np.where(np.isfinite(D), D, finite_max + 1.0)
    for ax, m in zip(axes[0], shown):
        seeds = [-1] if m == "ideal" else [s for mm, d, s in _points(res) if mm == m and d == top]
        data = 0 if m == "ideal" else top
        losses = np.stack([per_task(scores, kinds, cfg, m, data, s)[0] for s in seeds])  # (S, tasks)
        rhos = [spearman(D, row) for row in losses]
        for k in kinds:
            i = np.flatnonzero(np.concatenate([[kk == k] * int((tasks.type == kk).sum()) for kk in kinds]))
            ax.scatter(x[i] + np.linspace(-0.15, 0.15, len(i)), losses.mean(0)[i], s=10, label=LABELS[k])
        ax.set(xlabel="D[τ] (nats; right: ∞)", ylabel=f"Σ loss, {cfg.ns_max} answers", yscale="log",
               title=f"{m}: ρ = {np.nanmean(rhos):.2f}")
    axes[0, 0].legend(fontsize=6)
    ctx.figure(fig, "description_length", caption=(
        f"Each task's description length D[τ] against its answer loss summed over {cfg.ns_max} demonstrations "
        f"(mean over prompts and training seeds; models trained on {top:,} tokens); ρ: Spearman rank correlation "
        "(mean over seeds). Held-out compositions (no direct derivation) sit at the right edge."))

    data = sorted(df[df.model != "ideal"].data_tokens.unique())
    fig, axes = subplots(1, 2, size=(4.2, 3.2))
    kl = df[(df.model != "ideal") & (df.n_demos > 0)].groupby(["model", "data_tokens", "type"]).kl.mean()
    M = np.full((len(models), len(data)), np.nan)
    for (m, d), v in kl.groupby(level=[0, 1]).mean().items():
        M[models.index(m), data.index(d)] = v
    heatmap(axes[0, 0], M, "KL(ideal ‖ model), mean over n ≥ 1 and types", cmap="viridis", symmetric=False)
    axes[0, 0].set_xticks(range(len(data)), [f"{d / 1e6:g}M" for d in data])
    axes[0, 0].set_yticks(range(len(models)), models)
    for (i, j), v in np.ndenumerate(M):
        if np.isfinite(v):
            axes[0, 0].text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=_ink(v, M))
    ax = axes[0, 1]
    big = next(m for m in reversed(models) if (m, top) in done)
    for kind in cfg.types:
        s = df[(df.model == big) & (df.data_tokens == top) & (df.type == kind)].groupby("n_demos").kl.mean()
        ax.plot(s.index, s, marker=".", label=LABELS[kind])
    ax.set(xlabel="demonstrations", ylabel="KL (nats)", yscale="log", title=f"{big}, {top / 1e6:g}M tokens")
    ax.legend(fontsize=6)
    ctx.figure(fig, "kl_to_ideal", caption=(
        "KL(ideal ‖ model) of the next-token distribution at the answer positions: left, averaged over n = 1.."
        f"{cfg.ns_max} and task types, per model size and data size (mean over seeds; blank: not trained yet); right, "
        "per position and task type for the largest model."))

    if "prim" not in cfg.types or cfg.ns_max < 8:
        return
    acc = df[(df.model != "ideal") & (df.type == "prim") & (df.n_demos == 8)]
    cell = acc.groupby(["model", "data_tokens"]).accuracy
    mean, half = cell.mean(), cell.apply(lambda v: _half_width(v.to_numpy()))
    M = np.full((len(models), len(data)), np.nan)
    fig, axes = subplots(1, 1, size=(4.2, 3.2))
    ax = axes[0, 0]
    for (m, d), v in mean.items():
        M[models.index(m), data.index(d)] = v
    heatmap(ax, M, "primitive ICL, 8 demonstrations", cmap="viridis", symmetric=False)
    for (m, d), v in mean.items():
        h = half[(m, d)]
        ax.text(data.index(d), models.index(m), f"{v:.2f}" + (f"\n±{h:.2f}" if np.isfinite(h) else ""),
                ha="center", va="center", fontsize=6, color=_ink(v, M))
    ax.set_xticks(range(len(data)), [f"{d / 1e6:g}M" for d in data])
    ax.set_yticks(range(len(models)), models)
    ax.set_xlabel("pretraining tokens")
    ctx.figure(fig, "emergence", caption=(
        "Primitive-task accuracy after 8 demonstrations over the grid: mean over training seeds "
        f"{cfg.train_seeds} ± the half-width of its 95% t-interval (none for one seed); blank: not trained yet."))


def _ink(v: float, M: np.ndarray) -> str:
    """White text on the dark end of viridis, black on the light end."""
    lo, hi = np.nanmin(M), np.nanmax(M)
    return "w" if hi == lo or (v - lo) / (hi - lo) < 0.6 else "k"


def _half_width(v: np.ndarray) -> float:
    est = Estimate.mean(v, unit="training seeds")
    return (est.hi - est.lo) / 2 if est.lo is not None else float("nan")


@compute.verdicts
def verdicts(cfg: TheoryConfig, res: Results, ctx: RunContext) -> None:
    tasks, scores, grid = res.table("tasks"), res.arrays("scores"), res.json("grid")
    kinds = list(cfg.types)
    D = np.concatenate([tasks[tasks.type == k].D.to_numpy() for k in kinds])
    R = grid["R_n"][cfg.ns_max]
    chance = 1 / cfg.world.n_objects
    done = _points(res)
    top = max(d for _, d, _ in done)
    big = next(name_of(s) for s in reversed(cfg.sizes) if any(m == name_of(s) and d == top for m, d, _ in done))
    seeds = [s for m, d, s in done if m == big and d == top]

    ideal_loss, _ = per_task(scores, kinds, cfg, "ideal", 0, -1)
    finite = np.isfinite(D)
    ctx.claim(f"idealised predictor: worst task's cumulative loss − (D[τ] + R_{cfg.ns_max})", kind="sanity",
              paper="Theorem 1 holds per task for the grammar's own posterior (a consequence of the chain rule)",
              ours=Estimate.exact(float(np.max(ideal_loss[finite] - D[finite] - R)),
                                  f"max over {int(finite.sum())} derivable tasks of the mean over prompts"),
              expect=("<=", 0))
    ideal_kl = max(float(np.abs(scores[key("ideal", 0, -1, f"{k}__kl")]).max()) for k in kinds)
    ctx.claim("KL(ideal ‖ ideal), largest over positions", kind="sanity", paper="(ours) the divergence is zero at "
              "the reference", ours=Estimate.exact(ideal_kl), expect=("<", 1e-9))
    ctx.claim("rank correlation of D[τ] with the ideal predictor's cumulative loss", kind="sanity",
              paper="(ours) the theory's own predictor orders tasks by description length",
              ours=Estimate.bootstrap(D, ideal_loss, statistic=spearman, unit="tasks"), expect=(">", 0))

    per_seed = [per_task(scores, kinds, cfg, big, top, s) for s in seeds]  # (loss, reach) per seed
    samples = [(D, loss) for loss, _ in per_seed]
    ctx.claim(f"rank correlation of D[τ] with cumulative answer loss ({cfg.ns_max} answers), {big}, {top:,} tokens",
              kind="paper-shape", paper="tasks with a shorter description are learnt from fewer demonstrations",
              source=PAPER, ours=_rank_estimate(samples), expect=(">", 0),
              note="Spearman ρ over tasks; D = ∞ ranks last. Several seeds: t-interval over seeds; one seed: "
                   "bootstrap over tasks, a hint.")
    samples = [(D, reach) for _, reach in per_seed]
    ctx.claim(f"rank correlation of D[τ] with demonstrations to reach {cfg.reach:.0%} accuracy, {big}",
              kind="paper-shape", paper="tasks with a shorter description are learnt from fewer demonstrations",
              source=PAPER, ours=_rank_estimate(samples), expect=(">", 0),
              note=f"Never reached within {cfg.ns_max}: ranked last.")
    within = [float(np.mean(loss[finite] <= D[finite] + R)) for loss, _ in per_seed]
    ctx.claim(f"share of derivable tasks whose cumulative loss is within D[τ] + R_{cfg.ns_max}, {big}",
              kind="engineering", paper="(ours) how far from the ideal predictor's guarantee a trained model is",
              ours=Estimate.mean(within, unit="training seeds"))
    for kind in ("comp3", "bin"):
        if kind in kinds:
            acc = [(scores[key(big, top, s, f"{kind}__correct")][..., cfg.ns_max].reshape(-1),) for s in seeds]
            ctx.claim(f"{LABELS[kind]}: accuracy at n = {cfg.ns_max}, {big}", kind="paper-shape",
                      paper="ICL works on a range of tasks", source=PAPER, ours=over_seeds(acc, np.mean),
                      expect=(">=", ABOVE_CHANCE * chance), note=f"≥ {ABOVE_CHANCE} × chance counts as ICL.")
    small = name_of(cfg.sizes[0])
    pairs = [s for s in seeds if (small, top, s) in done]
    if small != big and pairs:
        kl = [(np.concatenate([scores[key(small, top, s, f"{k}__kl")][..., 1:].reshape(-1) for k in kinds]),
               np.concatenate([scores[key(big, top, s, f"{k}__kl")][..., 1:].reshape(-1) for k in kinds]))
              for s in pairs]
        ctx.claim(f"KL(ideal ‖ model) over answers with n ≥ 1: {small} − {big}", kind="paper-shape",
                  paper="a better next-token predictor is closer to the ideal one, the premise of the theory's account "
                        "of emergence", source=PAPER,
                  ours=over_seeds(kl, lambda a, b: float(np.mean(a) - np.mean(b))), expect=(">", 0),
                  note="Same prompts; nats per answer position.")


def _rank_estimate(samples: list[tuple[np.ndarray, np.ndarray]]) -> Estimate:
    if len(samples) >= 2:
        return Estimate.mean([spearman(*s) for s in samples], unit="training seeds")
    from dataclasses import replace

    return replace(Estimate.bootstrap(*samples[0], statistic=spearman, unit="tasks of one training seed"), hint=True)

