#!/usr/bin/env python
"""Print the task-vector results tables for docs/taskvectors.md from finished runs (never typed in).

For each task-vector experiment and model: the latest finished run of the chosen preset, its main
table, and one line per claim: the paper's claim | the paper's value (source) | ours with its 95%
interval | the tolerance declared in the code | the verdict the runtime computes.

    .venv/bin/python scripts/taskvector_tables.py [--runs-dir runs] [--preset paper]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from iclab.runtime import Claim, finished_runs

EXPERIMENTS = ("taskvectors.main", "taskvectors.conflict", "taskvectors.vocab", "taskvectors.tsne",
               "taskvectors.templates", "taskvectors.function_vectors", "taskvectors.profile")


def latest_runs(runs: Path, name: str, preset: str) -> dict[str, Path]:
    """model -> the directory of the latest finished run of `name` with `preset`."""
    out: dict[str, Path] = {}
    for r in finished_runs(runs, name):  # oldest first
        if r["meta"].get("preset") == preset:
            out[r["meta"]["config"]["model"]] = Path(r["path"])
    return out


def ci(value: float, lo: float, hi: float, digits: int = 2) -> str:
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def number(v: float) -> str:
    """A claim's number as the docs print it: counts as integers, seconds whole, tiny values in e-notation."""
    if v != v:
        return "nan"
    if v == int(v):
        return str(int(v))
    if abs(v) >= 10 or abs(v) < 1e-3:
        return f"{v:.0f}" if abs(v) >= 10 else f"{v:.1e}"
    return f"{v:.3f}"


def estimate(c: Claim) -> str:
    o = c.ours
    if o.lo is None or o.lo == o.hi:
        return f"{number(o.value)} ({o.method})"
    return f"{number(o.value)} [{number(o.lo)}, {number(o.hi)}] ({o.method})"


def claims_table(run: Path) -> None:
    """One row per claim of the run, verdicts recomputed from the saved numbers."""
    claims = [Claim.from_dict(d) for d in json.loads((run / "summary.json").read_text())["claims"]]
    print("\n| claim | kind | paper's claim | paper's value (source) | ours [95% CI] | tolerance | verdict |")
    print("|---|---|---|---|---|---|---|")
    for c in claims:
        value = "" if c.paper_value is None else f"{c.paper_value:g} "
        source = f"({c.source})" if c.source else ""
        print(f"| {c.name} | {c.kind} | {c.paper} | {value}{source} | {estimate(c)} | {c.target or '—'} | "
              f"**{c.verdict}** |")


def header(name: str, model: str, run: Path) -> None:
    meta = json.loads((run / "config.json").read_text())
    env = json.loads((run / "env.json").read_text())
    cfg = meta["config"]
    print(f"\n#### {name} — {model} (preset {meta['preset']}, run `{run.name}`, {env['seconds']:.0f} s, "
          f"{cfg.get('episode_seeds', 1)} episode seed(s))")


def main_table(run: Path) -> None:
    df = pd.read_csv(run / "tables" / "metrics.csv")
    s = pd.read_csv(run / "tables" / "summary.csv").iloc[0]
    print("\n| task | pairs (after filter) | L* per seed | baseline | task vector | ICL | passes the filter (dev) |")
    print("|---|---|---|---|---|---|---|")
    for r in df.itertuples():
        cells = [ci(getattr(r, c), getattr(r, f"{c}_lo"), getattr(r, f"{c}_hi")) for c in ("baseline", "task_vector", "icl")]
        print(f"| {r.task} | {r.n_pairs} / {r.n_pairs_before_filter} | {r.best_layers} | {' | '.join(cells)} | "
              f"{'yes' if str(r.kept) == 'True' else 'no'} |")
    print(f"\nAll {len(df)} tasks: baseline {s.all_baseline:.3f}, task vector {s.all_task_vector:.3f}, ICL "
          f"{s.all_icl:.3f}. Tasks whose dev ICL beats the dev baseline by ≥ 0.20: **{int(s.n_tasks)}**; on them "
          f"baseline {ci(s.baseline, s.baseline_lo, s.baseline_hi, 3)}, task vector "
          f"{ci(s.task_vector, s.task_vector_lo, s.task_vector_hi, 3)}, ICL {ci(s.icl, s.icl_lo, s.icl_hi, 3)}, "
          f"**TV / ICL = {ci(s.tv_over_icl, s.tv_over_icl_lo, s.tv_over_icl_hi, 3)}**. The paper's procedure "
          f"(the filter on the test numbers) keeps {int(s.n_tasks_test_filter)} tasks, TV / ICL "
          f"{s.tv_over_icl_test_filter:.3f}.")


def conflict_table(run: Path) -> None:
    df = pd.read_csv(run / "tables" / "metrics.csv")
    print("\n| A (demos) -> B (θ) | B's layer per seed | n | ICL: A(x) | ICL: B(x) | θ_B patched: A(x) | θ_B patched: B(x) |")
    print("|---|---|---|---|---|---|---|")
    for r in df.itertuples():
        cells = [ci(getattr(r, c), getattr(r, f"{c}_lo"), getattr(r, f"{c}_hi"))
                 for c in ("icl_acc_A", "icl_acc_B", "tv_acc_A", "tv_acc_B")]
        print(f"| {r.pair} | {r.layers} | {r.n} | {' | '.join(cells)} |")


def vocab_table(run: Path) -> None:
    df = pd.read_csv(run / "tables" / "metrics.csv")
    print("\n| task | dev layer | hits at the dev layer: θ / zero-shot / other tasks' θ | hits at dev layer + 2: θ / "
          "zero-shot / other tasks' θ | top tokens at the dev layer + 2 (the paper's choice) |")
    print("|---|---|---|---|---|")
    for r in df.itertuples():
        toks = ", ".join(str(r.tokens_later).split(", ")[:10])
        print(f"| {r.task} | {r.best_layer} | {r.hits_theta:.2f} / {r.hits_zero_shot:.2f} / {r.hits_other_tasks:.2f} | "
              f"{r.hits_theta_later:.2f} / {r.hits_zero_shot_later:.2f} / {r.hits_other_tasks_later:.2f} | {toks} |")


def tsne_table(run: Path) -> None:
    s = pd.read_csv(run / "tables" / "summary.csv").iloc[0]
    print(f"\n{int(s.n_vectors)} task vectors ({int(s.n_tasks)} tasks) at layer {int(s.layer)} (chosen on dev): "
          f"within-task cosine distance below between-task for {int(s.tasks_within_lt_between)} of {int(s.n_tasks)} "
          f"tasks; leave-one-out 1-NN task accuracy {s.nn_accuracy:.3f} (chance {s.chance:.3f}); silhouette "
          f"(cosine) {s.silhouette_cosine:.3f}.")


def templates_table(run: Path) -> None:
    sm = pd.read_csv(run / "tables" / "summary.csv")
    print("\n| template | tasks run (skipped) | pass the filter (dev) | baseline | task vector | ICL | TV / ICL | "
          "all tasks: TV / ICL |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sm.itertuples():
        print(f"| `{r.demo!r}` | {r.n_run} ({r.n_skipped}) | {r.n_tasks} | {r.baseline:.3f} | {r.task_vector:.3f} | "
              f"{r.icl:.3f} | {ci(r.tv_over_icl, r.tv_over_icl_lo, r.tv_over_icl_hi, 3)} | "
              f"{r.all_task_vector:.3f} / {r.all_icl:.3f} |")


def fv_table(run: Path) -> None:
    df = pd.read_csv(run / "tables" / "metrics.csv")
    timing = json.loads((run / "data" / "timing.json").read_text())
    conds = ("zero_shot", "icl", "task_vector", "fv_zero_shot", "icl_shuffled", "fv_shuffled")
    print("\n| task | n | TV layer | zero-shot | ICL | task vector | FV zero-shot | shuffled ICL | FV + shuffled |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in df.itertuples():
        cells = [ci(getattr(r, c), getattr(r, f"{c}_lo"), getattr(r, f"{c}_hi")) for c in conds]
        print(f"| {r.task} | {r.n_test} | {r.tv_layers} | {' | '.join(cells)} |")
    heads = pd.read_csv(run / "tables" / "heads.csv").head(10)
    top = ", ".join(f"{r.layer}.{r.head} {ci(r.aie, r.aie_lo, r.aie_hi, 3)}" for r in heads.itertuples())
    print(f"\nFV added at layer {timing['fv_layer']} of {timing['n_layers']} (chosen on dev). Top heads (layer.head, "
          f"AIE [95% CI]): {top}.")
    nat = pd.read_csv(run / "tables" / "natural.csv")
    if len(nat):
        print("\n| natural-text sentence | answer in generation, no FV (mean over tasks) | with the FV |")
        print("|---|---|---|")
        for sentence, sub in nat.groupby("template", sort=False):
            print(f"| `{sentence}` | {sub['none'].mean():.3f} | {sub['fv'].mean():.3f} |")
    st = pd.read_csv(run / "tables" / "stability.csv")
    print("\nTop-10 overlap of two disjoint prompt sets of n prompts per task: " +
          ", ".join(f"n={r.n_prompts}: {r.overlap:.2f}" for r in st.itertuples()) + ".")


TABLES = {"taskvectors.main": main_table, "taskvectors.conflict": conflict_table, "taskvectors.vocab": vocab_table,
          "taskvectors.tsne": tsne_table, "taskvectors.templates": templates_table,
          "taskvectors.function_vectors": fv_table, "taskvectors.profile": fv_table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"))
    ap.add_argument("--preset", default="paper", help="the preset whose runs to print (paper or quick)")
    ap.add_argument("--experiments", default=",".join(EXPERIMENTS), help="comma-separated experiments to print")
    args = ap.parse_args()
    found = False
    for name in (n for n in EXPERIMENTS if n in args.experiments.split(",")):
        for model, run in latest_runs(args.runs_dir, name, args.preset).items():
            found = True
            header(name, model, run)
            TABLES[name](run)
            claims_table(run)
    if not found:
        print(f"no finished {args.preset}-preset task-vector runs in {args.runs_dir}/")


if __name__ == "__main__":
    main()
