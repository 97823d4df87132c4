"""Conflicting tasks (paper §4.5, "overriding"): task A's demonstrations, task B's vector θ_B."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from iclab.runtime import Estimate, IclabError, Results, RunContext, experiment
from iclab.runtime import subplots
from iclab.runtime import make_rng

from .._episodes import Episode, sample_episodes, split_queries
from .._evaluate import dev_layer_curve, extract_thetas
from .._prompts import PreparedTask, get_template, prepare_task
from .._scoring import is_correct
from .._stats import accuracy_estimate
from .._tasks import get_task, task_names
from iclab.runtime import lm_threads, torch_threads

from ._common import TaskVectorConfig, load_runner

# The paper's pairs (A: demonstrations -> B: patched θ) and its numbers, LLaMA 13B, n = 100, k = 4
# (roeehendel/icl_task_vectors, outputs/figures/overriding_results_llama_13B.tex; §4.5):
# (ICL acc. vs A(x), ICL acc. vs B(x), task-vector acc. vs A(x), task-vector acc. vs B(x)).
PAPER_CONFLICT: dict[tuple[str, str], tuple[float, float, float, float]] = {
    ("algorithmic_next_letter", "algorithmic_to_upper"): (0.91, 0.00, 0.10, 0.77),
    ("algorithmic_list_last", "algorithmic_list_first"): (0.95, 0.05, 0.20, 0.78),
    ("algorithmic_prev_letter", "algorithmic_next_letter"): (0.51, 0.14, 0.08, 0.74),
    ("linguistic_present_simple_past_simple", "linguistic_present_simple_gerund"): (0.98, 0.00, 0.01, 0.97),
    ("translation_en_es", "translation_en_fr"): (0.93, 0.04, 0.91, 0.07),
}
SOURCE = "overriding table, LLaMA 13B (overriding_results_llama_13B.tex), §4.5"
CONFLICT_TOLERANCE = 0.15  # declared before any run: the per-task tolerance of taskvectors.main

QUICK = dict(pairs="algorithmic_next_letter:algorithmic_to_upper,"
                   "linguistic_present_simple_past_simple:linguistic_present_simple_gerund",
             n_dev=16, n_test=16)  # fmt: skip
PAPER = dict(pairs="all", k=4, n_dev=100, n_test=100, episode_seeds=3)


def parse_pairs(spec: str) -> list[tuple[str, str]]:
    if spec.strip() == "all":
        return list(PAPER_CONFLICT)
    names = set(task_names())
    pairs = []
    for item in (p.strip() for p in spec.split(",") if p.strip()):
        a, sep, b = item.partition(":")
        a, b = a.strip(), b.strip()
        if not sep or not a or not b:
            raise ValueError(f"write each pair as A:B (A's demonstrations, B's task vector), got {item!r}")
        for t in (a, b):
            if t not in names:
                raise ValueError(f"unknown task {t!r} in pair {item!r}; `iclab tasks` lists them")
        if a == b:
            raise ValueError(f"pair {item!r}: A and B must differ")
        pairs.append((a, b))
    if not pairs:
        raise ValueError("no pairs given")
    return pairs


class ConflictConfig(TaskVectorConfig):
    pairs: str = Field("all", description="'all' (the paper's five pairs) or comma-separated A:B task pairs; "
                                          "A gives the demonstrations and the query, B the patched task vector.")
    tasks: str = Field("all", description="Not used here (the tasks come from `pairs`); must stay 'all'.")
    k: int = Field(4, ge=1, description="Demonstrations per prompt, for A's prompts and B's θ (the paper: 4).")
    n_dev: int = Field(100, ge=1, description="Dev episodes of task B for choosing B's layer (the paper: 100).")
    n_test: int = Field(100, ge=1, description="Conflict prompts per pair (the paper: 100).")
    n_baseline: int = Field(100, ge=1, description="Not used here.")

    @field_validator("pairs")
    @classmethod
    def _pairs(cls, v: str) -> str:
        parse_pairs(v)
        return v

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: str) -> str:
        if v != "all":
            raise ValueError("this experiment takes its tasks from `pairs` (A:B,...), not from `tasks`")
        return v


def conflict_episodes(A: PreparedTask, B: PreparedTask, b_test_pool: np.ndarray, n: int, k: int, n_dummy: int,
                      rng: np.random.Generator) -> tuple[list[tuple[Episode, Episode]], int, int]:
    """n (A episode, B episode) pairs sharing one query x, a valid input of both tasks whose B index lies
    in B's test half. A's episode: k A-demonstrations and x as A writes it; B's episode: k B-demonstrations
    and n_dummy dummies, none of them x. Queries whose A and B answers are interchangeable are left out.
    Returns the pairs, the number of usable queries and the number left out as ambiguous."""
    a_index = {x: i for i, x in reversed(list(enumerate(A.originals)))}
    b_index = {x: i for i, x in reversed(list(enumerate(B.originals)))}
    b_test = set(int(i) for i in b_test_pool)
    shared = sorted(x for x in a_index if x in b_index and b_index[x] in b_test)
    usable, ambiguous = [], 0
    for x in shared:
        ia, ib = a_index[x], b_index[x]
        if is_correct(A.pairs[ia][1], B, ib) or is_correct(B.pairs[ib][1], A, ia):
            ambiguous += 1
        else:
            usable.append(x)
    if not usable:
        raise IclabError(f"tasks {A.task.name!r} and {B.task.name!r} share no usable query (inputs of both, in "
                         f"B's test half, with different answers); pick another pair")
    reps = -(-n // len(usable))
    order = np.concatenate([rng.permutation(len(usable)) for _ in range(reps)])[:n]
    out = []
    for j in order:
        x = usable[j]
        ea = sample_episodes(A, np.array([a_index[x]]), 1, k, 0, rng)[0]
        eb = sample_episodes(B, np.array([b_index[x]]), 1, k, n_dummy, rng)[0]
        out.append((ea, eb))
    return out, len(usable), ambiguous


def run_pair(cfg: ConflictConfig, runner, tmpl, a_name: str, b_name: str, episode_seed: int) -> tuple[dict, list, list]:
    """One pair under one episode seed: B's layer chosen on B's dev episodes (the split of taskvectors.main for
    that seed), then the conflict prompts scored against A(x) and B(x). Returns (row, records, traces)."""
    A = prepare_task(get_task(a_name), runner.lm.tokenizer, tmpl)
    B = prepare_task(get_task(b_name), runner.lm.tokenizer, tmpl)
    b_rng = make_rng(cfg.seed, b_name, episode_seed)
    b_dev_pool, b_test_pool = split_queries(len(B.pairs), b_rng)
    dev = sample_episodes(B, b_dev_pool, cfg.n_dev, cfg.k, cfg.n_dummy, b_rng)
    curve = dev_layer_curve(runner, B, tmpl, dev, cfg.mode)
    layer = int(np.argmax(curve))

    rng = make_rng(cfg.seed, "conflict", a_name, b_name, episode_seed)
    eps, n_queries, n_ambiguous = conflict_episodes(A, B, b_test_pool, cfg.n_test, cfg.k, cfg.n_dummy, rng)
    prompts = [tmpl.prompt(list(ea.demos), ea.query) for ea, _ in eps]
    icl_pred = runner.decode(runner.predict(prompts))
    thetas = extract_thetas(runner, tmpl, [eb for _, eb in eps])[:, layer]
    tv_pred = runner.decode(runner.predict_patched(prompts, thetas, layer, mode=cfg.mode))

    def score(preds: list[str], task: PreparedTask, which: int) -> np.ndarray:
        return np.array([is_correct(p, task, e[which].item) for p, e in zip(preds, eps)])

    ok = {"icl_correct_A": score(icl_pred, A, 0), "icl_correct_B": score(icl_pred, B, 1),
          "tv_correct_A": score(tv_pred, A, 0), "tv_correct_B": score(tv_pred, B, 1)}  # fmt: skip
    pair = f"{a_name} -> {b_name}"
    row = {"pair": pair, "A": a_name, "B": b_name, "episode_seed": episode_seed, "layer": layer,
           "best_dev_B": float(curve[layer]), "n": len(eps), "n_queries": n_queries, "n_ambiguous": n_ambiguous,
           **{k.replace("_correct_", "_acc_"): float(v.mean()) for k, v in ok.items()}}  # fmt: skip
    records = [{"pair": pair, "episode_seed": episode_seed, "i": i, "query": ea.query, "gold_A": ea.answer,
                "gold_B": eb.answer, "icl_prediction": icl_pred[i], "tv_prediction": tv_pred[i],
                **{k: bool(v[i]) for k, v in ok.items()}, "layer": layer}
               for i, (ea, eb) in enumerate(eps)]  # fmt: skip
    traces = [{"pair": pair, "episode_seed": episode_seed, "i": i, "prompt": p,
               "theta_B_prompts": [tmpl.prompt(list(eb.demos), d) for d in eb.dummies],
               "episode_A": ea.to_json(), "episode_B": eb.to_json()}
              for i, ((ea, eb), p) in enumerate(zip(eps, prompts))]  # fmt: skip
    return row, records, traces


COLUMNS = ("icl_acc_A", "icl_acc_B", "tv_acc_A", "tv_acc_B")  # the paper's four columns, in its order


@experiment("taskvectors.conflict", ConflictConfig, presets={"quick": QUICK, "paper": PAPER},
            title="Task vectors: conflicting tasks (A's demonstrations, B's task vector)",
            paper="Hendel et al. 2023, conflicting tasks (Table 2, overriding)")
def compute(cfg: ConflictConfig, ctx: RunContext) -> None:
    """For each pair (A, B) and episode seed: choose B's layer on B's dev episodes, then build prompts with k
    demonstrations of A and a query x valid for both tasks, and patch θ_B (B's demonstrations with dummy
    queries) at the last token of the full A prompt. Score regular ICL and the patched prediction against
    A(x) and B(x)."""
    t0 = time.perf_counter()
    runner = load_runner(cfg)
    tmpl = get_template(cfg.template)
    rows, records, traces = [], [], []
    with torch_threads(lm_threads()):
        for a_name, b_name in ctx.progress(parse_pairs(cfg.pairs), f"{cfg.model} [{tmpl.name}]"):
            for e in range(cfg.episode_seeds):
                row, recs, tr = run_pair(cfg, runner, tmpl, a_name, b_name, e)
                rows.append(row)
                records.extend(recs)
                traces.extend(tr)
    seeds, pred = pd.DataFrame(rows), pd.DataFrame(records)
    ctx.table(_pair_table(seeds, pred), "metrics")
    ctx.table(seeds, "seeds")
    ctx.table(pred, "predictions")
    ctx.json("prompts", traces)
    ctx.json("timing", {"seconds": time.perf_counter() - t0, "tokens": runner.tokens, "passes": runner.passes})
    ctx.note(f"Model {cfg.model} (135M-270M) against the paper's LLaMA 13B; k={cfg.k}; {cfg.episode_seeds} "
             f"episode seed(s), pooled. B's layer is chosen on {cfg.n_dev} dev episodes of B per seed (bare queries "
             "from B's dev half, the same split as taskvectors.main); the conflict queries come from the inputs of "
             "both tasks whose B index lies in B's test half.")
    ctx.note("θ_B's dummy queries are drawn from B's inputs, differing from x and B's demonstrations (the paper's "
             "script draws them from A's input space). Queries whose A and B answers are interchangeable (e.g. a "
             "list whose first and last letters agree) are left out: they cannot tell A from B (column n_ambiguous).")
    ctx.note("With few shared inputs (letters; en->es and en->fr share few single-token words) the n prompts repeat "
             "queries with fresh demonstrations (column n_queries: distinct queries).")


def _pair_table(seeds: pd.DataFrame, pred: pd.DataFrame) -> pd.DataFrame:
    """One row per pair, pooled over episode seeds, with 95% bootstrap intervals over its prompts and the
    paper's four numbers."""
    rows = []
    for pair, sub in seeds.groupby("pair", sort=False):
        p = pred[pred["pair"] == pair]
        row = {"pair": pair, "A": sub["A"].iloc[0], "B": sub["B"].iloc[0],
               "layers": " ".join(str(int(x)) for x in sub["layer"]), "best_dev_B": sub["best_dev_B"].mean(),
               "n": int(sub["n"].sum()), "n_queries": int(sub["n_queries"].max()),
               "n_ambiguous": int(sub["n_ambiguous"].max())}  # fmt: skip
        for col in COLUMNS:
            est = accuracy_estimate(p[col.replace("_acc_", "_correct_")], unit="conflict prompts")
            row.update({col: est.value, f"{col}_lo": est.lo, f"{col}_hi": est.hi})
        paper = PAPER_CONFLICT.get((row["A"], row["B"]), (np.nan,) * 4)
        row.update({f"paper_{c}": v for c, v in zip(COLUMNS, paper)})
        rows.append(row)
    return pd.DataFrame(rows)


@compute.figures
def figures(cfg: ConflictConfig, res: Results, ctx: RunContext) -> None:
    df = res.table("metrics")
    fig, axes = subplots(1, 2, size=(0.9 + 1.1 * len(df), 3.4), sharey=True)
    labels = [f"{r.A.split('_', 1)[1]}\n-> {r.B.split('_', 1)[1]}" for r in df.itertuples()]
    bars = [("icl_acc_A", "ICL, A(x)"), ("icl_acc_B", "ICL, B(x)"), ("tv_acc_A", "θ_B patched, A(x)"),
            ("tv_acc_B", "θ_B patched, B(x)")]
    idx, w = np.arange(len(df)), 0.2
    for ax, prefix, title in [(axes[0, 0], "", f"{cfg.model}, k={cfg.k}"), (axes[0, 1], "paper_", "paper (LLaMA 13B)")]:
        for j, (col, label) in enumerate(bars):
            err = None if prefix else np.vstack([df[col] - df[f"{col}_lo"], df[f"{col}_hi"] - df[col]])
            ax.bar(idx + (j - 1.5) * w, df[prefix + col], w, yerr=err, capsize=1.5, label=label, color=f"C{j}",
                   error_kw={"lw": 0.7})
        ax.set_xticks(idx, labels, fontsize=6)
        ax.set(ylim=(0, 1.05), title=title)
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=6)
    ctx.figure(fig, "conflict", caption="Prompts with task A's demonstrations and θ of task B patched at B's best "
               "layer: accuracy against A(x) and B(x), for regular ICL and with θ_B patched (paper Table 2); ours "
               "with 95% bootstrap intervals over the prompts of every episode seed.")


@compute.verdicts
def verdicts(cfg: ConflictConfig, res: Results, ctx: RunContext) -> None:
    df, pred = res.table("metrics"), res.table("predictions")
    words = {"icl_acc_A": "ICL accuracy vs A(x)", "icl_acc_B": "ICL accuracy vs B(x)",
             "tv_acc_A": "θ_B patched: accuracy vs A(x)", "tv_acc_B": "θ_B patched: accuracy vs B(x)"}
    for r in df.itertuples():
        paper = PAPER_CONFLICT.get((r.A, r.B))
        if paper is None:
            continue  # a pair the paper did not run
        p = pred[pred["pair"] == r.pair]
        ok = {c: p[c.replace("_acc_", "_correct_")].to_numpy(dtype=float) for c in COLUMNS}
        for c, v in zip(COLUMNS, paper):
            ctx.claim(f"{words[c]}: {r.pair}", kind="paper-value", paper=f"{words[c]} (LLaMA 13B, k = 4)",
                      paper_value=v, source=SOURCE, ours=accuracy_estimate(ok[c], unit="conflict prompts"),
                      tolerance=CONFLICT_TOLERANCE)
        overrides = paper[3] > paper[2]
        ctx.claim(f"θ_B overrides A's demonstrations (B(x) - A(x) accuracy): {r.pair}", kind="paper-shape",
                  paper="θ_B makes the model answer B(x) despite A's demonstrations" if overrides
                  else "θ_B does not override A's demonstrations (the paper's exception)",
                  source=SOURCE, ours=Estimate.bootstrap(ok["tv_acc_B"] - ok["tv_acc_A"], unit="conflict prompts"),
                  expect=(">", 0.0) if overrides else ("<", 0.0))
    ctx.claim("wall time (s)", kind="engineering", paper="(issue) the quick preset stays small",
              ours=Estimate.single(res.json("timing")["seconds"], "one run"))
