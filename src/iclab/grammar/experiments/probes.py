"""grammar.probes: linear probes per layer for the derivation's structure (role, template, g(x))."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from iclab.runtime import Results, RunContext, experiment
from iclab.runtime import subplots

from .._corpus import sample_corpus
from .._evaluate import model_curve, prompt_inputs
from .._probes import ProbeResult, fit_probes
from .._prompts import prompt_tokens
from .._world import ROLES, World
from ._common import (
    QUICK_ONE_SEED,
    HEADLINE,
    PAPER_DATA,
    PAPER_SIZES,
    PAPER_TRAINING,
    QUICK_DATA,
    QUICK_SIZES,
    DataTokens,
    Size,
    TrainingRunsConfig,
    TrainSeeds,
    TRAIN_SEEDS,
    key,
    load_point,
    mean_and_bars,
    metrics_of,
    name_of,
    over_seeds,
    pretrain_config,
    stream_seed,
    train_points,
)

TARGETS = {"role": "token role (x, y, z, separators, facts, words)",
           "iter_index": "iteration index at an input x (copies 0–6, and 7 or later)",
           "template": "template τ at '->' (copy ≥ 3 of an ITER)",
           "mid": "hidden g(x) at the query's '->' (direct composite prompts)"}
ITER_CLASSES = 8  # the iteration-index probe's classes: copies 0..6 and "7 or later" (long lists are rare)
ICL_OF = {"role": "prim", "iter_index": "prim", "template": "prim", "mid": "comp"}  # the ICL each probe is set beside
PAPER = "Hahn & Goyal 2023, abstract, claim 8 (docs/grammar.md#the-papers-claims); probe protocol ours"
OVER_RANDOM = 0.1  # accuracy above the random-init model that counts as "the probe finds structure" (declared)


class ProbesConfig(TrainingRunsConfig):
    sizes: list[Size] = Field(QUICK_SIZES, min_length=1,
                              description="(d_model, n_layers) probed at the first training seed (probe vs ICL).")
    size: Size = Field(HEADLINE, description="(d_model, n_layers) the claims are judged on, at every training seed.")
    train_seeds: TrainSeeds = Field(TRAIN_SEEDS, description="Training seeds of `size` (and of its random-init "
                                    "baseline); the claims are judged over them (one seed: over test groups).")
    data_tokens: DataTokens = Field(QUICK_DATA[-1], description="Pretraining tokens of every model.")
    probe_tokens: int = Field(8000, ge=1000, description="Held-out corpus tokens probed (role, template).")
    mid_prompts: int = Field(24, gt=0, description="Direct prompts per seen composition (the g(x) target).")
    mid_demos: int = Field(8, ge=0, le=16, description="Demonstrations in those prompts.")
    max_train: int = Field(3000, gt=0, description="Probe training rows (subsampled).")
    dev_fraction: float = Field(0.25, gt=0, lt=1, description="Share of the training documents / prompts held "
                                "out to choose the layer; the claims score the test split at that layer.")

    def model_sizes(self) -> list[tuple[int, int]]:
        return [*self.sizes, self.size]


@torch.no_grad()
def hidden_states(model, ids: np.ndarray, batch: int = 64) -> np.ndarray:
    """(B, T, L+1, D) residual states of (B, T) token ids: embeddings, then every block's output."""
    out = []
    x = torch.as_tensor(ids, dtype=torch.long)
    device = model.get_input_embeddings().weight.device
    for i in range(0, len(x), batch):
        hs = model(input_ids=x[i:i + batch].to(device), output_hidden_states=True).hidden_states
        out.append(torch.stack(hs, 2).float().cpu().numpy())  # (b, T, L+1, D)
    return np.concatenate(out)


def probe_datasets(world: World, cfg: ProbesConfig) -> dict:
    """The tokens probed, shared by every model: a held-out corpus and direct composite prompts."""
    corpus = sample_corpus(world.grammar, cfg.probe_tokens, stream_seed(cfg.seed, "probe-corpus"), roles=ROLES)
    T = cfg.seq_len
    n = len(corpus) // T
    windows = corpus.ids[: n * T].reshape(n, T)
    tasks = world.tasks()["comp"]
    inputs = prompt_inputs(world, tasks, cfg.mid_demos + 1, cfg.mid_prompts, cfg.seed, stream="probe-mid")
    prompts, mids, queries = [], [], []
    for t in tasks:
        for xs in inputs[t.name]:
            prompts.append([world.token_id[s] for s in prompt_tokens(world, t, xs)])
            mids.append(world.mid(t, xs[-1]))
            queries.append(world.obj(xs[-1]))
    return dict(corpus=corpus, windows=windows, n=n * T, prompts=np.asarray(prompts), mids=np.asarray(mids),
                queries=np.asarray(queries))


def probe_model(model, data: dict, cfg: ProbesConfig) -> dict[str, ProbeResult]:
    """The three probing targets of one model, each with a dev split for choosing its layer."""
    c, n = data["corpus"], data["n"]
    kw = dict(seed=cfg.seed, max_train=cfg.max_train, dev_fraction=cfg.dev_fraction)
    H = hidden_states(model, data["windows"])  # (W, T, L+1, D)
    H = H.reshape(n, H.shape[2], H.shape[3])  # (n, L+1, D) corpus positions in order
    ids, docs = c.ids[:n], c.doc[:n]
    keep = np.arange(n) % cfg.seq_len >= 1  # the first position of a window has no context
    out = {"role": fit_probes(H[keep], c.role[:n][keep], types=ids[keep], groups=docs[keep], target="role", **kw)}
    xs = (c.role[:n] == ROLES.index("x")) & (c.iter_index[:n] >= 0) & keep  # the inputs of ITER copies
    out["iter_index"] = fit_probes(H[xs], np.minimum(c.iter_index[:n][xs], ITER_CLASSES - 1), types=ids[xs],
                                   groups=docs[xs], target="iter_index", **kw)
    task = c.tags["task"][:n]
    rand = c.tag_values["task"].index("rand") if "rand" in c.tag_values["task"] else -2
    sel = (c.role[:n] == ROLES.index("sep_io")) & (c.iter_index[:n] >= 2) & (task >= 0) & (task != rand) & keep
    out["template"] = fit_probes(H[sel], task[sel], types=np.roll(ids, 1)[sel], groups=docs[sel], target="template",
                                 **kw)
    P = hidden_states(model, data["prompts"])[:, -1]  # (P, L+1, D) at the query's "->"
    out["mid"] = fit_probes(P, data["mids"], types=data["queries"], groups=np.arange(len(P)), target="mid", **kw)
    return out


def composite_icl(model, world: World, cfg: ProbesConfig, n: int = 8) -> float:
    """Accuracy on seen compositions, direct, after n demonstrations: the ICL the g(x) probe is set beside."""
    tasks = world.tasks()["comp"]
    inputs = prompt_inputs(world, tasks, n + 1, cfg.mid_prompts, cfg.seed, stream="probe-icl")
    return float(np.mean([model_curve(model, world, t, inputs[t.name]).correct[:, n].mean() for t in tasks]))


def chosen_counts(r: ProbeResult) -> tuple[int, np.ndarray]:
    """(layer chosen on dev, (G, 3) per test group: rows, probe right at that layer, type-only right)."""
    i = r.best_dev_layer()
    groups, inverse = np.unique(r.test_groups, return_inverse=True)
    counts = np.stack([np.bincount(inverse, minlength=len(groups)),
                       np.bincount(inverse, weights=r.test_correct[i], minlength=len(groups)),
                       np.bincount(inverse, weights=r.type_only_correct, minlength=len(groups))], 1)
    return r.layers[i], counts.astype(np.int64)


@experiment(
    "grammar.probes",
    ProbesConfig,
    presets={"quick": QUICK_ONE_SEED, "quick-3seeds": {}, "paper": dict(**PAPER_TRAINING, sizes=PAPER_SIZES, size=PAPER_SIZES[-1],
                                        data_tokens=PAPER_DATA[-1], probe_tokens=40_000, mid_prompts=40,
                                        max_train=10_000)},
    title="Probing the compositional structure of the input",
    paper="Hahn & Goyal 2023: probing shows ICL is supported by a representation of the input's structure",
)
def compute(cfg: ProbesConfig, ctx: RunContext) -> None:
    """Multinomial logistic probes on frozen residual states, per layer, with a train / dev / test
    split by document (or prompt): the reported layer is the best on dev, scored on test. Baselines:
    the same probes on a randomly initialised model of `size` (one init per training seed), the token
    type alone, and Hewitt & Liang's control task (random labels per token type) for selectivity."""
    from iclab.models import ModelSize, build_causal_lm

    models = list(dict.fromkeys([(tuple(s), cfg.train_seeds[0]) for s in cfg.sizes] +
                                [(tuple(cfg.size), s) for s in cfg.train_seeds]))
    runs = train_points(ctx, cfg, [pretrain_config(cfg, size, cfg.data_tokens, seed=s) for size, s in models])
    rows, chosen, arrays, icl, data = [], [], {}, {}, None

    def record(name: str, seed: int, trained: bool, results: dict[str, ProbeResult]) -> None:
        for target, r in results.items():
            rows.extend(dict(model=name, seed=seed, trained=trained, **row) for row in r.rows())
            layer, counts = chosen_counts(r)
            arrays[key(name, seed, target)] = counts
            chosen.append(dict(model=name, seed=seed, trained=trained, target=target, layer=layer,
                               accuracy=counts[:, 1].sum() / counts[:, 0].sum(), type_only=r.type_only,
                               control=float(r.control[r.layers.index(layer)]), majority=r.majority))

    for (size, s), run in zip(models, runs):
        model, world, _ = load_point(run, cfg.device)
        if data is None:  # the same tokens for every model (the worlds are equal)
            data = probe_datasets(world, cfg)
        icl[key(name_of(size), s)] = dict(prim=metrics_of(run)["prim_acc"][8], comp=composite_icl(model, world, cfg))
        record(name_of(size), s, True, probe_model(model, data, cfg))
        ctx.log(f"probed {name_of(size)}, training seed {s}")
    d, L = cfg.size
    for s in cfg.train_seeds:
        random_model = build_causal_lm(ModelSize(d_model=d, n_layers=L, arch=cfg.arch, context=max(256, cfg.seq_len)),
                                       len(world.vocab), seed=stream_seed(s, "random-init")).eval().to(cfg.device)
        record(f"random {name_of(cfg.size)}", s, False, probe_model(random_model, data, cfg))
    df = pd.DataFrame(rows)
    df["depth"] = df.layer / df.model.str.split("-L").str[-1].astype(int)
    ctx.table(df, "metrics")
    ctx.table(pd.DataFrame(chosen), "chosen")
    ctx.arrays("test_groups", **arrays)
    ctx.json("icl", icl)
    ctx.note("Hewitt & Liang's control task gives each token type a random label. With a vocabulary of a few dozen "
             "types a linear probe memorises any such map (control accuracy ≈ 1 from the first layer on), so "
             "selectivity is mostly negative here and is reported, not judged; the informative baselines are the "
             "randomly initialised model and the best guess from the token type alone.")


@compute.figures
def figures(cfg: ProbesConfig, res: Results, ctx: RunContext) -> None:
    df, chosen, icl = res.table("metrics"), res.table("chosen"), res.json("icl")
    head, rnd, first = name_of(cfg.size), f"random {name_of(cfg.size)}", cfg.train_seeds[0]
    fig, axes = subplots(1, len(TARGETS) + 1, size=(3.5, 3.0))
    for ax, target in zip(axes[0], TARGETS):
        t = df[df.target == target]
        for size in cfg.sizes:
            if name_of(size) != head:
                s = t[(t.model == name_of(size)) & (t.seed == first)]
                ax.plot(s.depth, s.accuracy, marker="o", alpha=0.6, label=f"{name_of(size)} (seed {first})")
        for name, style in ((head, dict(color="k")), (rnd, dict(color="k", ls="--"))):
            acc = t[t.model == name].pivot(index="depth", columns="seed", values="accuracy")
            m, lo, hi = np.array([mean_and_bars(row) for row in acc.to_numpy()]).T
            ax.errorbar(acc.index, m, yerr=[lo, hi], marker="o", capsize=2, label=f"{name} (seeds)", **style)
        ctrl = t[t.model == head].groupby("depth").control.mean()
        ax.plot(ctrl.index, ctrl.to_numpy(), color="gray", ls=":", label=f"control task ({head})")
        ax.axhline(t.majority.iloc[0], color="gray", lw=0.8, label="majority")
        ax.axhline(t.type_only.iloc[0], color="tab:red", lw=0.8, ls="-.", label="token type alone")
        ax.set(xlabel="layer (fraction of depth; 0 = embeddings)", ylabel="test probe accuracy", ylim=(-0.02, 1.02),
               title=TARGETS[target])
    axes[0, 0].legend(fontsize=6)
    ax = axes[0, -1]
    trained = chosen[chosen.trained.astype(str) == "True"]
    for target, label in (("template", "τ vs primitive ICL"), ("iter_index", "iteration index vs primitive ICL"),
                          ("mid", "g(x) vs composite ICL")):
        t = trained[trained.target == target]
        x = [icl[key(m, s)][ICL_OF[target]] for m, s in zip(t.model, t.seed)]
        ax.scatter(x, t.accuracy, label=label)
        for m, s, xi, yi in zip(t.model, t.seed, x, t.accuracy):
            ax.annotate(f"{m}/{s}", (xi, yi), fontsize=5)
    ax.set(xlabel="ICL accuracy, 8 demos (primitive; composite for g(x))",
           ylabel="probe accuracy (dev-chosen layer, test)", title="probe vs ICL")
    ax.legend(fontsize=7)
    ctx.figure(fig, "probes", caption=(
        f"Test accuracy of linear probes per layer ({cfg.probe_tokens:,} corpus tokens; {cfg.mid_prompts} prompts "
        f"per seen composition with {cfg.mid_demos} demonstrations for g(x)), models trained on {cfg.data_tokens:,} "
        f"tokens. Black: {head} over training seeds {cfg.train_seeds} (95% t-intervals); dashed: randomly "
        f"initialised {head}, one init per seed; dotted: the control task. Right: at the layer chosen on dev."))


@compute.verdicts
def verdicts(cfg: ProbesConfig, res: Results, ctx: RunContext) -> None:
    groups = res.arrays("test_groups")
    head, rnd = name_of(cfg.size), f"random {name_of(cfg.size)}"

    def acc_diff(n: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return float((a.sum() - b.sum()) / n.sum())

    for target in TARGETS:
        mine = [groups[key(head, s, target)] for s in cfg.train_seeds]  # (G, 3) each: rows, probe, type-only
        base = [groups[key(rnd, s, target)] for s in cfg.train_seeds]
        ctx.claim(f"{target}: probe − random-init model's probe, {head}", kind="paper-shape",
                  paper="probing finds a representation of the input's compositional structure", source=PAPER,
                  ours=over_seeds([(m[:, 0], m[:, 1], b[:, 1]) for m, b in zip(mine, base)], acc_diff),
                  expect=(">", OVER_RANDOM),
                  note=f"Test accuracy, each model at the layer its dev split chose; > {OVER_RANDOM} counts as found. "
                       "One seed: bootstrap over test documents / prompts.")
        ctx.claim(f"{target}: probe − token type alone, {head}", kind="paper-shape",
                  paper="the structure is read from context, not from the current token alone", source=PAPER,
                  ours=over_seeds([(m[:, 0], m[:, 1], m[:, 2]) for m in mine], acc_diff), expect=(">", 0),
                  note="Test accuracy at the dev-chosen layer vs the most frequent label of the token type "
                       "(a baseline of ours).")
