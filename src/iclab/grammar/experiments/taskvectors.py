"""grammar.taskvectors: does θ(S) appear in our own trained models, and at which layer, as they grow?"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from iclab.models import Batch, forward_last, head_geometry, patch_heads, patch_residual, record_heads, record_residual
from iclab.runtime import Estimate, Results, RunContext, experiment
from iclab.runtime import heatmap, subplots
from iclab.runtime import make_rng

from .._prompts import draw_inputs, prompt_tokens
from .._world import Task, World
from ._common import (
    PAPER_DATA,
    PAPER_SIZES,
    PAPER_TRAINING,
    QUICK_DATA,
    QUICK_SIZES,
    DataTokens,
    Size,
    TrainingRunsConfig,
    key,
    load_point,
    mean_diff,
    mean_ratio,
    name_of,
    over_seeds,
    pretrain_config,
    train_points,
)

HENDEL = "Hendel, Geva & Globerson 2023, §4.2"
TV_OVER_ICL = 0.88  # θ accuracy / ICL accuracy, mean over 7 LMs of 2.8B–30B parameters (per-model 0.83–0.91)
TV_OVER_ICL_TOL = 0.05  # about the spread of that ratio over the paper's models
OVER_BASELINE = 0.2  # θ − bare-query accuracy that counts as "θ carries the task" (declared before any run)


class TaskVectorConfig(TrainingRunsConfig):
    sizes: list[Size] = Field(QUICK_SIZES, min_length=1, description="(d_model, n_layers) of the models.")
    data_tokens: DataTokens = Field(QUICK_DATA[-1], description="Pretraining tokens of every model.")
    k: int = Field(8, ge=1, le=16, description="Demonstrations in S.")
    n_prompts: int = Field(32, gt=0, description="Episodes per task in each of the dev and test splits.")
    n_dummy: int = Field(4, ge=1, le=8, description="Dummy queries θ(S) is averaged over.")
    modes: list[Literal["replace", "add"]] = Field(["replace", "add"], min_length=1,
                                                   description="How θ enters the bare query's residual stream.")
    task_types: list[Literal["prim", "comp", "heldout", "bin"]] = Field(
        ["prim", "comp"], min_length=1, description="World task types tested.")

    def model_sizes(self) -> list[tuple[int, int]]:
        return list(self.sizes)


def _ids(world: World, tokens: list[list[str]]) -> Batch:
    ids = torch.tensor([[world.token_id[t] for t in p] for p in tokens], dtype=torch.long)  # (B, T)
    return Batch(ids, torch.ones_like(ids))


def draw_episodes(world: World, task: Task, k: int, n_dummy: int, n_dev: int, n_test: int,
                  seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """(dev, test) episodes of one task: inputs [k demonstrations, the query, n_dummy dummy queries].
    No (demonstrations, query) pair occurs twice, so the two splits are disjoint."""
    rng = make_rng(seed, "taskvector-episodes", task.name)
    seen, episodes = set(), []
    while len(episodes) < n_dev + n_test:
        xs = draw_inputs(rng, world.cfg.n_objects, k + 1 + n_dummy)
        if tuple(xs[:k + 1]) not in seen:
            seen.add(tuple(xs[:k + 1]))
            episodes.append(xs)
    return episodes[:n_dev], episodes[n_dev:]


def shared_episodes(dev: list[list[int]], test: list[list[int]], k: int) -> int:
    """How many test episodes have the (demonstrations, query) of a dev episode."""
    return len({tuple(x[:k + 1]) for x in dev} & {tuple(x[:k + 1]) for x in test})


@torch.no_grad()
def task_vector_scores(model, world: World, task: Task, episodes: list[list[int]], k: int,
                       modes: list[str]) -> dict[str, np.ndarray]:
    """Hendel et al.'s protocol in our token format: θ(S) is the state at the last "->" of
    [S, x' ->], averaged over the episode's dummy queries x', then written into "<eos> x ->" at one
    layer (replace, as in the paper, or add); scored greedily. Returns per episode whether each is
    right: per mode (L, P), and "icl", "baseline" (P,)."""
    n_dummy = len(episodes[0]) - k - 1
    demos = [prompt_tokens(world, task, xs[:k] + [x]) for xs in episodes for x in xs[k + 1:]]
    queries = [xs[k] for xs in episodes]
    answers = torch.tensor([world.obj(world.apply(task, x)) for x in queries])
    bare = _ids(world, [prompt_tokens(world, task, [x]) for x in queries])
    icl = _ids(world, [d[:-2] + [f"o{x}", "->"] for d, x in zip(demos[::n_dummy], queries)])
    with record_residual(model) as rec:
        forward_last(model, _ids(world, demos))
    states = rec.states  # (P * n_dummy, L, D)
    theta = states.view(len(episodes), n_dummy, *states.shape[1:]).mean(1)  # (P, L, D)
    out = {}
    for mode in modes:
        per_layer = []
        for layer in range(theta.shape[1]):
            with patch_residual(model, theta[:, layer], layers=layer, mode=mode):
                logits, _ = forward_last(model, bare)
            per_layer.append((logits.argmax(-1) == answers).numpy())
        out[mode] = np.stack(per_layer)
    out["icl"] = (forward_last(model, icl)[0].argmax(-1) == answers).numpy()
    out["baseline"] = (forward_last(model, bare)[0].argmax(-1) == answers).numpy()
    return out


@torch.no_grad()
def head_effects(model, world: World, task: Task, episodes: list[list[int]], k: int, seed: int) -> np.ndarray:
    """Todd et al.'s indirect effect of every head, in our format: each head's mean output at the query's
    "->" over clean ICL prompts is written into prompts whose demonstrations' answers are shuffled, and
    the gain in the true answer's probability is recorded. Returns (P, n_layers, n_heads) per prompt."""
    n_layers, n_heads, head_dim = head_geometry(model)
    rng = make_rng(seed, "head-effects", task.name)
    clean = [prompt_tokens(world, task, xs[:k + 1]) for xs in episodes]
    corrupt = []
    for xs in episodes:
        ys = [world.apply(task, x) for x in xs[:k]]
        perm = rng.permutation(k) if k > 1 else np.arange(k)
        tokens = ["<eos>"]
        for x, j in zip(xs[:k], perm):
            tokens += [f"o{x}", "->", f"o{ys[j]}", ";"]
        corrupt.append(tokens + [f"o{xs[k]}", "->"])
    answers = torch.tensor([world.obj(world.apply(task, xs[k])) for xs in episodes])
    with record_heads(model) as rec:
        forward_last(model, _ids(world, clean))
    means = rec.values.mean(0)  # (L, H, d): the task's mean head outputs at the query's "->"
    batch = _ids(world, corrupt)
    logits, _ = forward_last(model, batch)
    base = torch.softmax(logits.float(), -1)[torch.arange(len(episodes)), answers]  # (P,)
    P, n = len(episodes), n_layers * n_heads
    layers = torch.arange(n_layers).repeat_interleave(n_heads).repeat(P)  # rows: prompt-major, then (layer, head)
    heads = torch.arange(n_heads).repeat(n_layers).repeat(P)
    values = means[layers, heads]  # (P * n, d)
    rows = Batch(batch.input_ids.repeat_interleave(n, 0), batch.attention_mask.repeat_interleave(n, 0))
    with patch_heads(model, values, layers, heads):
        logits, _ = forward_last(model, rows)
    patched = torch.softmax(logits.float(), -1)[torch.arange(P * n), answers.repeat_interleave(n)]
    return (patched.view(P, n_layers, n_heads) - base[:, None, None]).numpy()


def choose(dev: dict[str, np.ndarray], modes: list[str]) -> tuple[str, int]:
    """(mode, layer) with the best mean dev accuracy (ties: the first mode, then the lowest layer).
    Reads the dev episodes only: the test episodes are scored at this choice."""
    best = max(((dev[m].mean(1)[layer], -i, -layer) for i, m in enumerate(modes)
                for layer in range(dev[m].shape[0])))
    return modes[-best[1]], -best[2]


@experiment(
    "grammar.taskvectors",
    TaskVectorConfig,
    presets={"quick": {}, "paper": dict(**PAPER_TRAINING, sizes=PAPER_SIZES, data_tokens=PAPER_DATA[-1],
                                        n_prompts=100)},
    title="Task vectors in models trained on the compositional world",
    paper="Hendel, Geva, Globerson 2023 applied to Hahn & Goyal's setting",
)
def compute(cfg: TaskVectorConfig, ctx: RunContext) -> None:
    """The task-vector tools of iclab.models, unchanged, on our from-scratch models: for each size,
    accuracy of the bare query with θ(S) patched in at each layer, beside ICL and the zero-shot
    baseline. As in Hendel et al., the layer (and here the patch mode) is chosen on dev episodes and
    scored on separate test episodes."""
    runs = train_points(ctx, cfg, [pretrain_config(cfg, size, cfg.data_tokens) for size in cfg.sizes])
    per_layer, metrics, test, shared, heads, effects_of = [], [], {}, 0, [], {}
    for size, run in zip(cfg.sizes, runs):
        model, world, _ = load_point(run, cfg.device)
        tasks = world.tasks()
        for kind in [t for t in cfg.task_types if t in tasks]:
            scores = {"dev": [], "test": []}
            for task in tasks[kind]:
                dev, tst = draw_episodes(world, task, cfg.k, cfg.n_dummy, cfg.n_prompts, cfg.n_prompts, cfg.seed)
                shared += shared_episodes(dev, tst, cfg.k)
                scores["dev"].append(task_vector_scores(model, world, task, dev, cfg.k, cfg.modes))
                scores["test"].append(task_vector_scores(model, world, task, tst, cfg.k, cfg.modes))
                effects = head_effects(model, world, task, dev, cfg.k, cfg.seed)  # (P, L, H), dev episodes
                effects_of[key(name_of(size), kind, task.name)] = effects
                heads += [dict(size=name_of(size), type=kind, task=task.name, layer=layer, head=h,
                               aie=float(effects[:, layer, h].mean()))
                          for layer in range(effects.shape[1]) for h in range(effects.shape[2])]
            split = {name: {m: np.concatenate([s[m] for s in ss], -1) for m in ss[0]} for name, ss in scores.items()}
            for name, s in split.items():  # every layer and mode, both splits (the figure)
                per_layer += [dict(size=name_of(size), n_layers=size[1], type=kind, split=name, mode=m, layer=layer,
                                   tv=float(s[m][layer].mean()), icl=float(s["icl"].mean()),
                                   baseline=float(s["baseline"].mean()))
                              for m in cfg.modes for layer in range(s[m].shape[0])]
            mode, layer = choose(split["dev"], cfg.modes)
            t = split["test"]
            test |= {key(name_of(size), kind, "tv"): t[mode][layer], key(name_of(size), kind, "icl"): t["icl"],
                     key(name_of(size), kind, "baseline"): t["baseline"]}
            metrics.append(dict(size=name_of(size), n_layers=size[1], type=kind, mode=mode, layer=layer,
                                relative_depth=(layer + 1) / size[1], dev_tv=float(split["dev"][mode][layer].mean()),
                                tv=float(t[mode][layer].mean()), icl=float(t["icl"].mean()),
                                baseline=float(t["baseline"].mean())))
    ctx.table(pd.DataFrame(per_layer), "per_layer")
    ctx.table(pd.DataFrame(metrics), "metrics")
    ctx.table(pd.DataFrame(heads), "heads")
    ctx.arrays("head_effects", **effects_of)
    ctx.arrays("test", **test)
    ctx.json("episodes", {"per_split_and_task": cfg.n_prompts, "shared_between_dev_and_test": shared})
    ctx.note("In these shallow models the last position's state at a layer also carries the dummy query x' (the "
             "bare query's x is re-read only by the layers above), so replacing it loses x; adding θ keeps it.")
    ctx.note(f"One training seed ({cfg.seed}) per size: the intervals are over the test episodes of that seed.")


@compute.figures
def figures(cfg: TaskVectorConfig, res: Results, ctx: RunContext) -> None:
    per_layer, metrics = res.table("per_layer"), res.table("metrics")
    test = per_layer[per_layer.split == "test"]
    fig, axes = subplots(len(cfg.modes), len(cfg.task_types), size=(3.8, 3.0))
    for row, mode in enumerate(cfg.modes):
        for ax, kind in zip(axes[row], cfg.task_types):
            for size in dict.fromkeys(test["size"]):
                d = test[(test["size"] == size) & (test.type == kind) & (test["mode"] == mode)]
                if d.empty:
                    continue
                line, = ax.plot((d.layer + 1) / d.n_layers, d.tv, marker="o", label=f"{size}")
                ax.axhline(d.icl.iloc[0], color=line.get_color(), ls="--", lw=0.8)
                ax.axhline(d.baseline.iloc[0], color=line.get_color(), ls=":", lw=0.8)
                pick = metrics[(metrics["size"] == size) & (metrics.type == kind) & (metrics["mode"] == mode)]
                for _, p in pick.iterrows():  # the dev choice, where it fell on this mode
                    ax.plot((p.layer + 1) / p.n_layers, p.tv, marker="*", ms=12, color=line.get_color())
            ax.set(xlabel="patched layer (fraction of depth)", ylabel="test accuracy", ylim=(-0.02, 1.02),
                   title=f"{kind} tasks, θ: {mode}")
    axes[0, 0].legend(fontsize=7)
    ctx.figure(fig, "task_vectors", caption=(
        f"θ(S) from {cfg.k} demonstrations, averaged over {cfg.n_dummy} dummy queries, written at the last position "
        f"of '<eos> x ->' (replace: the paper's patch; add: added to the state), on test episodes; star: the layer "
        f"and mode chosen on the dev episodes; dashed: ICL with {cfg.k} demonstrations; dotted: the bare query. "
        f"{cfg.n_prompts} dev and {cfg.n_prompts} test episodes per task, models trained on {cfg.data_tokens:,} "
        f"tokens, training seed {cfg.seed}."))

    heads = res.table("heads")
    sizes = list(dict.fromkeys(heads["size"]))
    fig, axes = subplots(len(cfg.task_types), len(sizes), size=(2.6, 2.4))
    for row, kind in enumerate(cfg.task_types):
        for ax, size in zip(axes[row], sizes):
            d = heads[(heads["size"] == size) & (heads.type == kind)].groupby(["layer", "head"]).aie.mean().unstack()
            if d.empty:
                continue
            heatmap(ax, d.to_numpy(), f"{size}, {kind}", cmap="viridis", symmetric=False)
            ax.set(xlabel="head", ylabel="layer")
    ctx.figure(fig, "head_effects", caption=(
        "Average indirect effect of each attention head (Todd et al. 2024, in our format): the gain in the true "
        f"answer's probability when the head's mean output over clean {cfg.k}-shot prompts is written at the query "
        "of prompts with shuffled demonstration answers; mean over the dev episodes of every task of the type."))


@compute.verdicts
def verdicts(cfg: TaskVectorConfig, res: Results, ctx: RunContext) -> None:
    metrics, test = res.table("metrics"), res.arrays("test")
    big = name_of(cfg.sizes[-1])
    for _, r in metrics[metrics["size"] == big].iterrows():
        tv, icl, base = (test[key(big, r.type, x)] for x in ("tv", "icl", "baseline"))
        where = f"{big}, {r.type} tasks (dev-chosen: {r['mode']}, layer {int(r.layer)})"
        ctx.claim(f"θ − bare query, test episodes, {where}", kind="paper-shape",
                  paper="θ(S) patched into the bare query carries the task: far above the zero-shot baseline",
                  source=HENDEL, ours=over_seeds([(tv, base)], mean_diff), expect=(">=", OVER_BASELINE),
                  note=f"Accuracy gain on the same test episodes; ≥ {OVER_BASELINE} counts as carrying the task. "
                       "One training seed.")
        ctx.claim(f"θ / ICL accuracy, test episodes, {where}", kind="paper-value",
                  paper="θ(S) recovers most of ICL's accuracy (≈ 0.88 of it)", paper_value=TV_OVER_ICL,
                  source=f"{HENDEL}: per-model averages over 18 tasks, 0.83–0.91 over 7 LMs",
                  ours=over_seeds([(tv, icl)], mean_ratio), tolerance=TV_OVER_ICL_TOL,
                  note="Not like for like: the paper's 2.8B–30B pretrained LMs on natural-language tasks, ours "
                       f"{big} trained from scratch on the world; the same statistic (ratio of mean accuracies), "
                       "one training seed.")
    effects = res.arrays("head_effects")
    for kind in cfg.task_types:
        per_task = [e for name, e in effects.items() if name.startswith(key(big, kind, ""))]
        if per_task:
            e = np.concatenate(per_task)  # (prompts of every task, L, H)
            layer, head = np.unravel_index(int(np.argmax(e.mean(0))), e.shape[1:])
            ctx.claim(f"largest head indirect effect, {big}, {kind} tasks (head {layer}.{head}, dev episodes)",
                      kind="engineering", paper="(Todd et al. 2024) a few heads carry the task: their mean output "
                      "restores the answer in prompts with shuffled labels",
                      ours=Estimate.bootstrap(e[:, layer, head], unit="dev prompts of one training seed"),
                      note="Chosen as the largest and measured on the same dev prompts, so it is a description of "
                           "this model's heads, not a test.")
    n_shared = res.json("episodes")["shared_between_dev_and_test"]
    ctx.claim("test episodes that are also dev episodes", kind="sanity",
              paper="(ours) the layer and mode are chosen on episodes the claims do not score",
              ours=Estimate.exact(n_shared, "a count"), expect=("<=", 0))
