"""grammar.recombination: are intermediate steps a help from recombination, or from the data?

In the default world a held-out composition f∘g never occurs as a direct iteration but does occur
with its step shown, so a step-by-step prompt for it is in-distribution: the chain-of-thought gain
of grammar.cot is partly built into the data. The recombination world (`heldout_in_cot=False`)
shows a held-out composition in no form at all; only f and g occur, each alone and in other
compositions. The same model size, data and seeds are trained on both worlds and prompted directly
and with steps on the same held-out tasks, beside the grammar's exact posterior of each world.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from iclab.runtime import Estimate, Results, RunContext, experiment
from iclab.runtime import IclabError
from iclab.runtime import subplots

from .._evaluate import ideal_curve, prompt_inputs
from .._theory import IdealPredictor
from .._world import World
from ._common import (
    PAPER_DATA,
    PAPER_SIZES,
    PAPER_TRAINING,
    QUICK_ONE_SEED,
    key,
    load_point,
    mean_and_bars,
    mean_diff,
    name_of,
    over_seeds,
    pretrain_config,
    train_points,
)
from .cot import KINDS, MODES, CotConfig, score_seed

WORLDS = {"steps_shown": "held-out pairs shown with steps (default)",
          "recombination": "held-out pairs never shown (recombination)"}
PAPER = "Hahn & Goyal 2023, abstract, claims 1, 3 and 7 (docs/grammar.md#the-papers-claims)"
STEPS_GAIN = 0.2  # generated steps − direct on held-out compositions that counts as "steps help" (declared)
ABOVE_CHANCE = 5  # accuracy ≥ 5 × chance counts as solving the task in context (declared)


class RecombinationConfig(CotConfig):
    worlds: list[Literal["steps_shown", "recombination"]] = Field(
        list(WORLDS), min_length=1, description="World variants: held-out pairs shown with their step "
        "(heldout_in_cot), or in no form at all. Each is trained at every seed.")


def variant(name: str) -> dict:
    return dict(heldout_in_cot=name == "steps_shown")


def ideal_rows(world: World, cfg: RecombinationConfig) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The exact posterior of the world on the same prompts: direct, and its greedy chain with steps."""
    predictor, tasks = IdealPredictor(world), world.tasks()
    rows, correct = [], {}
    for kind in KINDS:
        inputs = prompt_inputs(world, tasks[kind], max(cfg.ns) + 1, cfg.n_prompts, cfg.seed)
        direct, steps = [], []
        for t in tasks[kind]:
            direct.append(ideal_curve(predictor, world, t, inputs[t.name]).correct[:, cfg.ns].astype(float))
            try:
                c = ideal_curve(predictor, world, t, inputs[t.name], cot=True)
                steps.append((c.step_correct & c.correct)[:, cfg.ns].astype(float))
            except IclabError:  # the stepwise form of a pair the world never shows: probability 0, undefined
                steps.append(np.full((cfg.n_prompts, len(cfg.ns)), np.nan))
        for mode, c in (("direct", np.concatenate(direct)), ("generated", np.concatenate(steps))):
            correct[key(kind, mode)] = c
            rows += [dict(type=kind, mode=mode, n_demos=n, accuracy=float(np.mean(c[:, i]))) for i, n in enumerate(cfg.ns)]
    return rows, correct


@experiment(
    "grammar.recombination",
    RecombinationConfig,
    presets={"quick": QUICK_ONE_SEED, "quick-3seeds": {},
             "paper": dict(PAPER_TRAINING, size=PAPER_SIZES[-1], data_tokens=PAPER_DATA[-1], n_prompts=200)},
    title="Recombination: steps on compositions never shown in any form",
    paper="Hahn & Goyal 2023: ICL relies on recombining compositional operations; intermediate steps help",
)
def compute(cfg: RecombinationConfig, ctx: RunContext) -> None:
    """Every world variant × training seed is a `grammar.train` run (the steps-shown models are
    grammar.cot's); each is scored direct, with generated steps and with the oracle step on seen
    and held-out compositions (grammar.cot's scorer), and each world's ideal predictor alongside."""
    points = [(w, s) for w in cfg.worlds for s in cfg.train_seeds]
    runs = train_points(ctx, cfg, [pretrain_config(cfg, cfg.size, cfg.data_tokens, seed=s, **variant(w))
                                   for w, s in points])
    rows, arrays = [], {}
    for (w, s), run in zip(points, runs):
        model, world, _ = load_point(run, cfg.device)
        r, correct = score_seed(model, world, cfg)
        rows += [dict(world=w, seed=s, **x) for x in r]
        arrays |= {key(w, s, k): c for k, c in correct.items()}
        ctx.log(f"scored {w}, training seed {s}")
    df = pd.DataFrame(rows)
    mean = df.groupby(["world", "seed", "type", "mode", "n_demos"], as_index=False)[["accuracy", "step_accuracy"]]
    table = mean.mean()
    for w in cfg.worlds:
        r, correct = ideal_rows(World(cfg.world.model_copy(update=variant(w))), cfg)
        table = pd.concat([table, pd.DataFrame([dict(world=w, seed=-1, **x) for x in r])], ignore_index=True)
        arrays |= {key(w, "ideal", k): c for k, c in correct.items()}
    ctx.table(df, "per_task")
    ctx.table(table, "metrics")
    ctx.arrays("correct", **arrays)
    ctx.note("Seed −1 is the world's exact posterior predictor. In the recombination world a held-out pair has no "
             "derivation in either form: a direct prompt is explained only by the random-pairs template (the ideal "
             "is at chance), and a prompt with its steps has probability 0 under the grammar, so the ideal is "
             "undefined there (blank). Anything a trained model does above chance on these tasks is recombination "
             "beyond the grammar's posterior.")


@compute.figures
def figures(cfg: RecombinationConfig, res: Results, ctx: RunContext) -> None:
    mean = res.table("metrics")
    fig, axes = subplots(1, len(cfg.worlds), size=(3.9, 3.1))
    for ax, w in zip(axes[0], cfg.worlds):
        for mode, label in MODES.items():
            d = mean[(mean.world == w) & (mean.type == "heldout") & (mean["mode"] == mode) & (mean.seed >= 0)]
            d = d.pivot(index="n_demos", columns="seed", values="accuracy")
            m, lo, hi = np.array([mean_and_bars(row) for row in d.to_numpy()]).T
            ax.errorbar(d.index, m, yerr=[lo, hi], marker="o", capsize=2, label=label)
        for mode, ls in (("direct", ":"), ("generated", "--")):
            d = mean[(mean.world == w) & (mean.type == "heldout") & (mean["mode"] == mode) & (mean.seed < 0)]
            ax.plot(d.n_demos, d.accuracy, color="k", ls=ls, lw=1, label=f"ideal, {mode}")
        ax.axhline(1 / cfg.world.n_objects, color="gray", ls=":", lw=0.8)
        ax.set(xscale="symlog", xlabel="demonstrations", ylabel="final-answer accuracy", ylim=(-0.02, 1.02),
               title=WORLDS[w])
    axes[0, 0].legend(fontsize=6)
    ctx.figure(fig, "recombination", caption=(
        f"Held-out compositions, {name_of(cfg.size)} trained on {cfg.data_tokens:,} tokens of each world; "
        f"{cfg.n_prompts} prompts per task and n; mean over training seeds {cfg.train_seeds} with 95% t-intervals "
        "over seeds; black: the world's exact posterior (direct dotted, greedy steps dashed); gray: chance."))


@compute.verdicts
def verdicts(cfg: RecombinationConfig, res: Results, ctx: RunContext) -> None:
    correct = res.arrays("correct")
    i, n_hi, name = cfg.ns.index(max(cfg.ns)), max(cfg.ns), name_of(cfg.size)
    chance = 1 / cfg.world.n_objects

    def at(w: str, mode: str, kind: str = "heldout") -> list[np.ndarray]:
        return [correct[key(w, s, kind, mode)][:, i] for s in cfg.train_seeds]

    for w in cfg.worlds:
        where = "never shown in any form" if w == "recombination" else "shown in pretraining only with their step"
        ctx.claim(f"{w}: held-out compositions at n = {n_hi}, generated steps − direct, {name}", kind="paper-shape",
                  paper="prompting for intermediate steps helps on compositions (claims 3, 7)", source=PAPER,
                  ours=over_seeds(list(zip(at(w, "generated"), at(w, "direct"))), mean_diff), expect=(">", STEPS_GAIN),
                  note=f"Held-out pairs {where}. Final-answer accuracy gain on the same prompts; > {STEPS_GAIN} "
                       "counts as helping.")
        ctx.claim(f"{w}: held-out compositions with generated steps at n = {n_hi}, {name}", kind="paper-shape",
                  paper="ICL recombines the compositional operations seen in pretraining (claim 1)", source=PAPER,
                  ours=over_seeds([(a,) for a in at(w, "generated")], np.mean), expect=(">=", ABOVE_CHANCE * chance),
                  note=f"Accuracy; ≥ {ABOVE_CHANCE} × chance counts as solved in context.")
        ideal = correct[key(w, "ideal", "heldout", "generated")][:, i]
        ctx.claim(f"{w}: the ideal predictor's held-out accuracy with steps at n = {n_hi}", kind="engineering",
                  paper="(ours) what the grammar's exact posterior can do on these prompts",
                  ours=Estimate.bootstrap(ideal, unit="prompts") if np.isfinite(ideal).all() else
                  Estimate(float("nan"), n=0, method="undefined: these prompts have probability 0 under the grammar"))
    if set(WORLDS) <= set(cfg.worlds):
        ctx.claim(f"held-out with generated steps at n = {n_hi}: steps-shown world − recombination world, {name}",
                  kind="engineering", paper="(ours) how much of the steps' gain the data builds in",
                  ours=over_seeds(list(zip(at("steps_shown", "generated"), at("recombination", "generated"))),
                                  mean_diff),
                  note="Same seeds, model and prompts inputs; the worlds differ only in heldout_in_cot.")
