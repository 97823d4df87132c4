"""Conflicting tasks (paper §4.5, "overriding"): task A's demonstrations, task B's vector θ_B."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from iclab.runtime import IclabError, RunContext, experiment
from iclab.runtime.plots import subplots
from iclab.runtime.seeding import torch_threads

from ..episodes import Episode, sample_episodes, split_queries
from ..evaluate import dev_layer_curve, extract_thetas, task_rng
from ..prompts import PreparedTask, get_template, prepare_task
from ..scoring import is_correct
from ..tasks import get_task, task_names
from ._common import TaskVectorConfig, lm_threads, load_runner

# The paper's pairs (A: demonstrations -> B: patched θ) and its numbers, LLaMA 13B, n = 100, k = 4
# (roeehendel/icl_task_vectors, outputs/figures/overriding_results_llama_13B.tex):
# (ICL acc. vs A(x), ICL acc. vs B(x), task-vector acc. vs A(x), task-vector acc. vs B(x)).
PAPER_CONFLICT: dict[tuple[str, str], tuple[float, float, float, float]] = {
    ("algorithmic_next_letter", "algorithmic_to_upper"): (0.91, 0.00, 0.10, 0.77),
    ("algorithmic_list_last", "algorithmic_list_first"): (0.95, 0.05, 0.20, 0.78),
    ("algorithmic_prev_letter", "algorithmic_next_letter"): (0.51, 0.14, 0.08, 0.74),
    ("linguistic_present_simple_past_simple", "linguistic_present_simple_gerund"): (0.98, 0.00, 0.01, 0.97),
    ("translation_en_es", "translation_en_fr"): (0.93, 0.04, 0.91, 0.07),
}
PAPER_PAIRS = ",".join(f"{a}:{b}" for a, b in PAPER_CONFLICT)

QUICK = dict(pairs="algorithmic_next_letter:algorithmic_to_upper,"
                   "linguistic_present_simple_past_simple:linguistic_present_simple_gerund",
             n_dev=16, n_test=16)  # fmt: skip
PAPER = dict(pairs="all", k=4, n_dev=100, n_test=100)


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


@experiment("taskvectors.conflict", ConflictConfig, presets={"quick": QUICK, "paper": PAPER},
            title="Task vectors: conflicting tasks (A's demonstrations, B's task vector)",
            paper="Hendel et al. 2023, conflicting tasks (Table 2, overriding)")
def run(cfg: ConflictConfig, ctx: RunContext) -> None:
    """For each pair (A, B): choose B's layer on B's dev episodes, then build prompts with k demonstrations
    of A and a query x valid for both tasks, and patch θ_B (B's demonstrations with dummy queries) at the
    last token of the full A prompt. Score regular ICL and the patched prediction against A(x) and B(x)."""
    runner = load_runner(cfg)
    tmpl = get_template(cfg.template)
    pairs = parse_pairs(cfg.pairs)
    rows, records, traces = [], [], []
    with torch_threads(lm_threads()):
        for a_name, b_name in ctx.progress(pairs, f"{cfg.model} [{tmpl.name}]", total=len(pairs)):
            A = prepare_task(get_task(a_name), runner.lm.tokenizer, tmpl)
            B = prepare_task(get_task(b_name), runner.lm.tokenizer, tmpl)
            # B's layer: the same dev/test split of B's queries as taskvectors.main (task_rng stream 0).
            b_rng = task_rng(cfg.seed, b_name)
            b_dev_pool, b_test_pool = split_queries(len(B.pairs), b_rng)
            dev = sample_episodes(B, b_dev_pool, cfg.n_dev, cfg.k, cfg.n_dummy, b_rng)
            curve = dev_layer_curve(runner, B, tmpl, dev, cfg.mode)
            layer = int(np.argmax(curve))

            rng = task_rng(cfg.seed, f"conflict:{a_name}->{b_name}")
            eps, n_queries, n_ambiguous = conflict_episodes(A, B, b_test_pool, cfg.n_test, cfg.k, cfg.n_dummy, rng)
            prompts = [tmpl.prompt(list(ea.demos), ea.query) for ea, _ in eps]
            icl_pred = runner.decode(runner.predict(prompts))
            thetas = extract_thetas(runner, tmpl, [eb for _, eb in eps])[:, layer]
            tv_pred = runner.decode(runner.predict_patched(prompts, thetas, layer, mode=cfg.mode))

            def score(preds: list[str], task: PreparedTask, which: int) -> np.ndarray:
                return np.array([is_correct(p, task, e[which].item) for p, e in zip(preds, eps)])

            icl_a, icl_b, tv_a, tv_b = score(icl_pred, A, 0), score(icl_pred, B, 1), score(tv_pred, A, 0), score(tv_pred, B, 1)
            paper = PAPER_CONFLICT.get((a_name, b_name), (np.nan,) * 4)
            rows.append({"pair": f"{a_name} -> {b_name}", "A": a_name, "B": b_name, "layer": layer,
                         "best_dev_B": float(curve[layer]), "n": len(eps), "n_queries": n_queries,
                         "n_ambiguous": n_ambiguous, "icl_acc_A": icl_a.mean(), "icl_acc_B": icl_b.mean(),
                         "tv_acc_A": tv_a.mean(), "tv_acc_B": tv_b.mean(), "paper_icl_acc_A": paper[0],
                         "paper_icl_acc_B": paper[1], "paper_tv_acc_A": paper[2], "paper_tv_acc_B": paper[3]})  # fmt: skip
            for i, ((ea, eb), p) in enumerate(zip(eps, prompts)):
                records.append({"pair": rows[-1]["pair"], "i": i, "query": ea.query, "gold_A": ea.answer,
                                "gold_B": eb.answer, "icl_prediction": icl_pred[i], "tv_prediction": tv_pred[i],
                                "icl_correct_A": bool(icl_a[i]), "icl_correct_B": bool(icl_b[i]),
                                "tv_correct_A": bool(tv_a[i]), "tv_correct_B": bool(tv_b[i]), "layer": layer})  # fmt: skip
                traces.append({"pair": rows[-1]["pair"], "i": i, "prompt": p, "theta_B_prompts":
                               [tmpl.prompt(list(eb.demos), d) for d in eb.dummies],
                               "episode_A": ea.to_json(), "episode_B": eb.to_json()})  # fmt: skip

    df = pd.DataFrame(rows)
    ctx.table(df, "metrics")
    ctx.table(pd.DataFrame(records), "predictions")
    ctx.json("prompts", traces)

    fig, axes = subplots(1, 2, size=(0.9 + 1.1 * len(df), 3.4), sharey=True)
    labels = [f"{r.A.split('_', 1)[1]}\n-> {r.B.split('_', 1)[1]}" for r in df.itertuples()]
    bars = [("icl_acc_A", "ICL, A(x)"), ("icl_acc_B", "ICL, B(x)"), ("tv_acc_A", "θ_B patched, A(x)"),
            ("tv_acc_B", "θ_B patched, B(x)")]
    idx, w = np.arange(len(df)), 0.2
    for ax, prefix, title in [(axes[0, 0], "", f"{cfg.model}, k={cfg.k}"), (axes[0, 1], "paper_", "paper (LLaMA 13B)")]:
        for j, (col, label) in enumerate(bars):
            ax.bar(idx + (j - 1.5) * w, df[prefix + col], w, label=label, color=f"C{j}")
        ax.set_xticks(idx, labels, fontsize=6)
        ax.set(ylim=(0, 1.05), title=title)
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=6)
    ctx.figure(fig, "conflict", caption="Prompts with task A's demonstrations and θ of task B patched at B's best "
               "layer: accuracy against A(x) and B(x), for regular ICL and with θ_B patched (paper Table 2).")

    overrides = df["tv_acc_B"] > df["tv_acc_A"]
    paper_over = sum(p[3] > p[2] for p in (PAPER_CONFLICT.get((a, b)) for a, b in pairs) if p is not None)
    ctx.claim("pairs where θ_B overrides A's demonstrations (tv_acc_B > tv_acc_A)",
              paper=f"4 of 5 (all but en->es / en->fr); {paper_over} of the {len(pairs)} pairs run here",
              ours=f"{int(overrides.sum())} of {len(df)}", target="as many as the paper on the pairs run",
              passed=int(overrides.sum()) >= paper_over)
    ctx.claim("pairs where regular ICL follows A (icl_acc_A > icl_acc_B)", paper="5 of 5",
              ours=f"{int((df['icl_acc_A'] > df['icl_acc_B']).sum())} of {len(df)}")
    ctx.claim("mean tv_acc_B / tv_acc_A over the pairs", paper="0.66 / 0.26 (5 pairs, LLaMA 13B)",
              ours=f"{df['tv_acc_B'].mean():.3f} / {df['tv_acc_A'].mean():.3f}")
    ctx.note(f"Model {cfg.model} (135M-270M) against the paper's LLaMA 13B; k={cfg.k}. B's layer is chosen on "
             f"{cfg.n_dev} dev episodes of B (bare queries from B's dev half, the same split as taskvectors.main); "
             "the conflict queries come from the inputs of both tasks whose B index lies in B's test half.")
    ctx.note("θ_B's dummy queries are drawn from B's inputs, differing from x and B's demonstrations (the paper's "
             "script draws them from A's input space). Queries whose A and B answers are interchangeable (e.g. a "
             "list whose first and last letters agree) are left out: they cannot tell A from B (column n_ambiguous).")
    ctx.note("With few shared inputs (letters; en->es and en->fr share few single-token words) the n prompts repeat "
             "queries with fresh demonstrations (column n_queries: distinct queries).")
