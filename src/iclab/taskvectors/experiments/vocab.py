"""What θ promotes in the vocabulary (paper §4.6): the mean task vector through the final norm and unembedding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from iclab.models import residual_to_logits
from iclab.runtime import RunContext, experiment
from iclab.runtime.plots import subplots
from iclab.runtime.seeding import torch_threads

from ..evaluate import TaskResult
from ..prompts import PreparedTask, get_template, prepare_task
from ._common import TaskVectorConfig, lm_threads, load_runner, run_tasks, tasks_of

QUICK = dict(tasks="algorithmic_to_upper,linguistic_present_simple_gerund,knowledge_country_capital",
             n_dev=16, n_test=8, n_baseline=4)  # fmt: skip
PAPER = dict(tasks="all", n_dev=50, n_test=50, n_baseline=100, k=5)


class VocabConfig(TaskVectorConfig):
    top: int = Field(20, ge=1, description="Tokens listed per task and layer (the paper's table: 20).")
    candidates: int = Field(150, ge=1, description="Highest-logit tokens scanned for alphabetic, case-insensitively "
                                                   "distinct ones (the paper's pickles keep the top 150).")
    layer_offset: int = Field(2, ge=0, description="Also list layer best + offset, clipped to the last layer "
                                                   "(the paper's table: best dev layer + 2).")


def top_tokens(logits: torch.Tensor, tokenizer, top: int, candidates: int) -> list[str]:
    """The paper's filter: the highest-logit tokens, decoded and stripped, purely alphabetic ones only,
    deduplicated case-insensitively (first occurrence kept), at most `top` of the first `candidates`."""
    ids = logits.topk(min(candidates, logits.shape[-1])).indices.tolist()
    out: list[str] = []
    seen: set[str] = set()
    for i in ids:
        s = tokenizer.decode([i]).strip()
        if s.isalpha() and s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
            if len(out) == top:
                break
    return out


def output_first_tokens(prepared: PreparedTask, tokenizer) -> set[str]:
    """The task's output space in tokens, lowercased: the first token of each gold output, as written in
    the prompt or with a leading space (the word-initial token a logit lens shows), kept only where it is
    the output's whole first word ("Paris", "Abu" of "Abu Dhabi"). Fragments ("K" of "Kabul", "an" of
    "Ankara") are left out: they would count promoted letters and function words as hits."""
    out = set()
    for _, y in prepared.pairs:
        words = y.strip().lower().split()
        if not words:
            continue
        for variant in (y, " " + y.strip()):
            ids = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if ids and tokenizer.decode(ids[:1]).strip().lower() == words[0]:
                out.add(words[0])
    return out


def hit_rate(tokens: list[str], outputs: set[str]) -> float:
    return float(np.mean([t.lower() in outputs for t in tokens])) if tokens else float("nan")


@experiment("taskvectors.vocab", VocabConfig, presets={"quick": QUICK, "paper": PAPER},
            title="Task vectors: top vocabulary tokens of the mean θ",
            paper="Hendel et al. 2023, vocabulary projection of θ (top-tokens table)")
def run(cfg: VocabConfig, ctx: RunContext) -> None:
    """For each task, average θ over the test episodes at every layer and project it with the final norm
    and unembedding (logit lens). List the top alphabetic tokens at the best dev layer and at best + 2, and
    measure how many of them are first tokens of the task's outputs, against two controls."""
    runner = load_runner(cfg)
    tmpl = get_template(cfg.template)
    tok = runner.lm.tokenizer
    tasks = tasks_of(cfg)
    results: list[TaskResult] = list(run_tasks(cfg, ctx, runner, tasks, keep_thetas=True))
    n_layers = runner.n_layers
    with torch_threads(lm_threads()):
        mean_theta = torch.stack([r.test_thetas.mean(0) for r in results])  # (T, L, D)
        zero_shot = torch.stack([runner.last_token_states([tmpl.query(e["query"]) for e in r.episodes["test"]]).mean(0)
                                 for r in results])  # fmt: skip  # (T, L, D): bare queries, no demonstrations
    n_tasks = len(results)
    other = ((mean_theta.sum(0, keepdim=True) - mean_theta) / (n_tasks - 1)) if n_tasks > 1 else None

    def tokens(states: torch.Tensor) -> list[list[str]]:  # (L, D) -> top tokens per layer
        lg = residual_to_logits(runner.lm.model, states).float()
        return [top_tokens(lg[l], tok, cfg.top, cfg.candidates) for l in range(states.shape[0])]

    rows, curves = [], {"theta": [], "zero_shot": [], "other_tasks": []}
    for t, (r, task) in enumerate(zip(results, tasks)):
        outputs = output_first_tokens(prepare_task(task, tok, tmpl), tok)
        tok_theta, tok_zero = tokens(mean_theta[t]), tokens(zero_shot[t])
        tok_other = tokens(other[t]) if other is not None else [[] for _ in range(n_layers)]
        curves["theta"].append([hit_rate(x, outputs) for x in tok_theta])
        curves["zero_shot"].append([hit_rate(x, outputs) for x in tok_zero])
        curves["other_tasks"].append([hit_rate(x, outputs) for x in tok_other])
        best, later = r.best_layer, min(r.best_layer + cfg.layer_offset, n_layers - 1)
        rows.append({"task": r.task, "best_layer": best, "task_vector": r.task_vector, "icl": r.icl,
                     "tokens_best": ", ".join(tok_theta[best]), "layer_later": later,
                     "tokens_later": ", ".join(tok_theta[later]), "n_output_first_tokens": len(outputs),
                     "hits_theta": curves["theta"][-1][best], "hits_zero_shot": curves["zero_shot"][-1][best],
                     "hits_other_tasks": curves["other_tasks"][-1][best],
                     "hits_theta_later": curves["theta"][-1][later],
                     "hits_zero_shot_later": curves["zero_shot"][-1][later],
                     "hits_other_tasks_later": curves["other_tasks"][-1][later],
                     "tokens_zero_shot_best": ", ".join(tok_zero[best])})  # fmt: skip
    df = pd.DataFrame(rows)
    ctx.table(df, "metrics")
    arr = {k: np.array(v, dtype=float) for k, v in curves.items()}
    ctx.arrays("vocab", mean_theta=mean_theta.numpy(), zero_shot=zero_shot.numpy(),
               tasks=np.array([r.task for r in results]), **{f"hits_{k}": v for k, v in arr.items()})

    fig, axes = subplots(1, 2, size=(4.6, 3.4))
    ax, x = axes[0, 0], np.arange(n_layers)
    for (key, label), c in zip([("theta", "mean θ of the task"), ("zero_shot", "bare query (zero-shot)"),
                                ("other_tasks", "mean θ of the other tasks")], ("C0", "C1", "C2")):  # fmt: skip
        if key == "other_tasks" and other is None:
            continue
        ax.plot(x, np.nanmean(arr[key], 0), color=c, label=label)
    ax.set(xlabel="layer", ylabel=f"output-space hits in top {cfg.top}", ylim=(0, 1.02),
           title=f"{cfg.model}: mean over {n_tasks} tasks")
    ax.legend(fontsize=6)
    ax = axes[0, 1]
    idx, w = np.arange(n_tasks), 0.27
    for j, (col, label) in enumerate([("hits_theta", "θ"), ("hits_zero_shot", "zero-shot"),
                                      ("hits_other_tasks", "other tasks' θ")]):  # fmt: skip
        ax.bar(idx + (j - 1) * w, df[col].fillna(0), w, label=label, color=f"C{j}")
    ax.set_xticks(idx, [t.split("_", 1)[1] for t in df["task"]], rotation=60, ha="right", fontsize=6)
    ax.set(ylabel="hits at the best layer", ylim=(0, 1.02), title="per task, best dev layer")
    ax.legend(fontsize=6)
    ctx.figure(fig, "output_space_hits", caption=f"Fraction of the top {cfg.top} alphabetic tokens of the logit-lens "
               "projection that are first tokens of the task's outputs: the task's mean θ against the mean state "
               "of bare queries and the mean θ of the other tasks, projected at the same layer.")

    beats = df["hits_theta"] > df["hits_zero_shot"]
    if other is not None:
        beats &= df["hits_theta"] > df["hits_other_tasks"]
    ctx.claim("tasks whose mean θ (best layer) hits the output space more than both controls",
              paper="θ often promotes tokens describing the task or its output space, but not for every model "
                    "(qualitative: Pythia 12B's top tokens are uninformative)",
              ours=f"{int(beats.sum())} of {n_tasks}", target="at least half of the tasks",
              passed=int(beats.sum()) >= n_tasks / 2)  # fmt: skip
    beats_later = df["hits_theta_later"] > df["hits_zero_shot_later"]
    if other is not None:
        beats_later &= df["hits_theta_later"] > df["hits_other_tasks_later"]
    ctx.claim(f"the same at the paper's layer (best + {cfg.layer_offset})",
              paper="the paper's top-tokens table is taken at the best dev layer + 2",
              ours=f"{int(beats_later.sum())} of {n_tasks}", target="at least half of the tasks",
              passed=int(beats_later.sum()) >= n_tasks / 2)  # fmt: skip
    ctx.claim("mean output-space hits at the best layer: θ / zero-shot / other tasks' θ", paper="(not measured)",
              ours=f"{df['hits_theta'].mean():.2f} / {df['hits_zero_shot'].mean():.2f} / "
                   f"{df['hits_other_tasks'].mean():.2f}")  # fmt: skip
    ctx.note("Output-space hits are our measure (the paper only lists tokens): the share of the top "
             f"{cfg.top} tokens that are, lowercased, the first token of some gold output of the task and that token is the "
             "output's whole first word (fragments such as 'K' of 'Kabul' are not counted). It can fail: "
             "the controls project, at the same layer, the mean last-token state of the bare test queries (no "
             "demonstrations) and the mean θ of the other tasks run; θ passes for a task only if it beats both. "
             "Tokens that describe the task ('capital', 'alphabet') are not counted, and tasks with overlapping "
             "output spaces (letters) cannot be told apart by it.")
    ctx.note(f"Mean θ over {cfg.n_test} test episodes per task (the paper: 50), projected with the model's final "
             "norm and unembedding; the paper's table uses the best dev layer + 2, listed here as tokens_later.")
