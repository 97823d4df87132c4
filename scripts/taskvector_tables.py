#!/usr/bin/env python
"""Print the task-vector results tables for docs/taskvectors.md from finished runs (never typed in).

Main tables per model, then the latest finished paper-preset run of each analysis experiment.

    .venv/bin/python scripts/taskvector_tables.py [--runs-dir runs]

For each model it takes the latest finished `taskvectors.main` run with the paper's sizes
(50 dev, 50 test, 100 baseline episodes, k = 5, all 18 tasks) and the paper template.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from iclab.runtime import finished_runs


def finished(runs: Path, name: str) -> list[tuple[dict, Path]]:
    """(config meta, run directory) of every finished run of `name`, oldest first."""
    return [(r["meta"], Path(r["path"])) for r in finished_runs(runs, name)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"))
    args = ap.parse_args()
    by_model: dict[str, Path] = {}
    for meta, d in finished(args.runs_dir, "taskvectors.main"):
        c = meta["config"]
        if (c["tasks"], c["n_dev"], c["n_test"], c["n_baseline"], c["k"], c["template"]) == ("all", 50, 50, 100, 5, "paper"):
            by_model[c["model"]] = d
    for model, d in by_model.items():
        df = pd.read_csv(d / "tables" / "metrics.csv")
        s = pd.read_csv(d / "tables" / "summary.csv").iloc[0]
        env = json.loads((d / "env.json").read_text())
        threads = f", {int(s.lm_threads)} torch threads" if "lm_threads" in s else ""
        print(f"\n### {model} (run `{d.name}`, {env['seconds']:.0f} s{threads})\n")
        print("| task | pairs (after filter) | L* | baseline | task vector | ICL | paper mean: baseline / TV / ICL |")
        print("|---|---|---|---|---|---|---|")
        for r in df.itertuples():
            sub = f" (for {r.paper_task})" if r.paper_task != r.task else ""
            print(f"| {r.task}{sub} | {r.n_pairs} / {r.n_pairs_before_filter} | {r.best_layer} | {r.baseline:.2f} | "
                  f"{r.task_vector:.2f} | {r.icl:.2f} | {r.paper_baseline:.2f} / {r.paper_task_vector:.2f} / {r.paper_icl:.2f} |")
        print(f"\nAll 18 tasks: baseline {s.all_baseline:.3f}, task vector {s.all_task_vector:.3f}, ICL {s.all_icl:.3f}. "
              f"Tasks with ICL − baseline ≥ 0.20: **{int(s.n_tasks)}**; on them baseline {s.baseline:.3f}, "
              f"task vector {s.task_vector:.3f}, ICL {s.icl:.3f}, **TV / ICL = {s.tv_over_icl:.3f}** "
              "(paper: 0.83–0.91 on 2.8B–30B models).")
    analyses(args.runs_dir)


def latest_paper_table(runs: Path, name: str, table: str = "metrics") -> tuple[dict, Path, pd.DataFrame] | None:
    """The latest finished paper-preset run of `name`, with one of its tables."""
    runs_ = [(m, d) for m, d in finished(runs, name) if m.get("preset") == "paper"]
    if not runs_:
        return None
    meta, d = runs_[-1]
    return meta, d, pd.read_csv(d / "tables" / f"{table}.csv")


def analyses(runs: Path) -> None:
    found = latest_paper_table(runs, "taskvectors.conflict")
    if found:
        meta, d, df = found
        print(f"\n### Conflicting tasks ({meta['config']['model']}, k = {meta['config']['k']}, run `{d.name}`)\n")
        print("| A (demos) -> B (θ) | B's layer | n | ICL: A / B | θ_B patched: A / B | paper (LLaMA 13B): ICL A / B, patched A / B |")
        print("|---|---|---|---|---|---|")
        for r in df.itertuples():
            print(f"| {r.A} -> {r.B} | {r.layer} | {r.n} | {r.icl_acc_A:.2f} / {r.icl_acc_B:.2f} | "
                  f"{r.tv_acc_A:.2f} / {r.tv_acc_B:.2f} | {r.paper_icl_acc_A:.2f} / {r.paper_icl_acc_B:.2f}, "
                  f"{r.paper_tv_acc_A:.2f} / {r.paper_tv_acc_B:.2f} |")
    found = latest_paper_table(runs, "taskvectors.vocab")
    if found:
        meta, d, df = found
        print(f"\n### Vocabulary projection ({meta['config']['model']}, run `{d.name}`)\n")
        print("| task | best layer | output-space hits at the best layer: θ / zero-shot / other tasks' θ | hits at best + 2: θ / zero-shot / other tasks' θ | top tokens at the best layer + 2 (the paper's choice) |")
        print("|---|---|---|---|---|")
        for r in df.itertuples():
            toks = ", ".join(str(r.tokens_later).split(", ")[:10])
            print(f"| {r.task} | {r.best_layer} | {r.hits_theta:.2f} / {r.hits_zero_shot:.2f} / {r.hits_other_tasks:.2f} | "
                  f"{r.hits_theta_later:.2f}" + (f" / {r.hits_zero_shot_later:.2f} / {r.hits_other_tasks_later:.2f}"
                                                  if hasattr(r, "hits_zero_shot_later") else "") + f" | {toks} |")
    found = latest_paper_table(runs, "taskvectors.tsne", "summary")
    if found:
        meta, d, df = found
        s = df.iloc[0]
        print(f"\n### t-SNE and distances ({meta['config']['model']}, run `{d.name}`)\n")
        print(f"{int(s.n_vectors)} task vectors ({int(s.n_tasks)} tasks) at layer {int(s.layer)}: within-task cosine "
              f"distance below between-task for **{int(s.tasks_within_lt_between)} of {int(s.n_tasks)}** tasks; "
              f"leave-one-out 1-NN task accuracy **{s.nn_accuracy:.3f}** (chance {s.chance:.3f}); "
              f"silhouette (cosine) {s.silhouette_cosine:.3f}.")
    latest = {m["config"]["model"]: (m, d) for m, d in finished(runs, "taskvectors.templates") if m.get("preset") == "paper"}
    for meta, d in latest.values():
        sm = pd.read_csv(d / "tables" / "summary.csv")
        print(f"\n### Templates ({meta['config']['model']}, run `{d.name}`)\n")
        print("| template | tasks run (skipped) | filtered tasks | baseline | task vector | ICL | TV / ICL | all tasks: TV / ICL |")
        print("|---|---|---|---|---|---|---|---|")
        for r in sm.itertuples():
            print(f"| `{r.demo!r}` | {r.n_run} ({r.n_skipped}) | {r.n_tasks} | {r.baseline:.3f} | {r.task_vector:.3f} | "
                  f"{r.icl:.3f} | {r.tv_over_icl:.3f} | {r.all_task_vector:.3f} / {r.all_icl:.3f} |")


if __name__ == "__main__":
    main()
