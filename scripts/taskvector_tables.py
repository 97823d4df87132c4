#!/usr/bin/env python
"""Print the task-vector results tables for docs/taskvectors.md from finished runs (never typed in).

    .venv/bin/python scripts/taskvector_tables.py [--runs-dir runs]

For each model it takes the latest finished `taskvectors.main` run with the paper's sizes
(50 dev, 50 test, 100 baseline episodes, k = 5, all 18 tasks) and the paper template.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def finished(runs: Path, name: str) -> list[tuple[dict, Path]]:
    out = []
    for d in sorted((runs / name).glob("*/")):
        if (d / "DONE").is_file():
            out.append((json.loads((d / "config.json").read_text()), d))
    return sorted(out, key=lambda cd: (cd[1] / "DONE").stat().st_mtime)


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
        print(f"\n### {model} (run `{d.name}`, {env['seconds']:.0f} s, {env['torch_threads']} torch thread(s) for the runtime)\n")
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


if __name__ == "__main__":
    main()
