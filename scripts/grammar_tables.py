"""Print the docs/grammar.md result tables from finished runs (so no number in the docs is typed in).

    .venv/bin/python scripts/grammar_tables.py runs          # the newest run of each grammar experiment
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from iclab.runtime import finished_runs


def newest(runs: Path, name: str) -> Path:
    found = finished_runs(runs, name)
    if not found:
        sys.exit(f"no finished run of {name} under {runs}; run `iclab reproduce --quick --only grammar.` first")
    return Path(found[-1]["path"])


def table(path: Path, name: str = "metrics") -> pd.DataFrame:
    return pd.read_csv(path / "tables" / f"{name}.csv")


def md(df: pd.DataFrame) -> str:
    def cell(v) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |\n|" + "---|" * len(df.columns)
    return head + "".join("\n| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False))


def main() -> None:
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
    df = table(newest(runs, "grammar.emergence"))
    print("### Emergence (primitive ICL, 8 demonstrations)\n")
    order = list(dict.fromkeys(df.sort_values("params")["size"]))
    acc = df.pivot(index="size", columns="data_tokens", values="acc_n").loc[order]
    loss = df.pivot(index="size", columns="data_tokens", values="val_loss").loc[acc.index]
    acc.columns = [f"acc @ {c / 1e6:g}M" for c in acc.columns]
    loss.columns = [f"val loss @ {c / 1e6:g}M" for c in loss.columns]
    params = df.groupby("size").params.first().loc[order]
    print(md(pd.concat([params, acc, loss], axis=1).reset_index()), "\n")

    df = table(newest(runs, "grammar.icl"))
    print("### ICL accuracy vs demonstrations\n")
    wide = df.pivot_table(index=["model", "type"], columns="n_demos", values="accuracy").reset_index()
    wide.columns = [str(c) for c in wide.columns]
    print(md(wide), "\n")
    last = df[df.n_demos == df.n_demos.max()][["model", "type", "cum_loss"]]
    bound = table(newest(runs, "grammar.icl"), "bound")
    bound = bound[bound.n_demos == bound.n_demos.max()][["type", "D", "R_n", "bound"]]
    print(f"### Cumulative answer loss over {df.n_demos.max()} demonstrations vs the Theorem-1 bound\n")
    print(md(last.pivot(index="type", columns="model", values="cum_loss").reset_index().merge(bound, on="type")), "\n")

    df = table(newest(runs, "grammar.cot"))
    print("### Chain of thought (final-answer accuracy)\n")
    wide = df.pivot_table(index=["type", "mode"], columns="n_demos", values="accuracy").reset_index()
    wide.columns = [str(c) for c in wide.columns]
    print(md(wide), "\n")

    df = table(newest(runs, "grammar.ablation"))
    print("### Ablation (primitive ICL)\n")
    wide = df.pivot_table(index=["world", "val_loss"], columns="n_demos", values="accuracy").reset_index()
    wide.columns = [str(c) for c in wide.columns]
    print(md(wide), "\n")

    df = table(newest(runs, "grammar.probes"))
    print("### Probes (best layer per model and target)\n")
    best = df.loc[df.groupby(["model", "target"]).accuracy.idxmax()]
    print(md(best[["model", "target", "layer", "accuracy", "type_only", "control", "majority"]]), "\n")

    df = table(newest(runs, "grammar.taskvectors"))
    print("### Task vectors (best layer per size, type and mode)\n")
    print(md(df[["size", "type", "mode", "best_layer", "tv", "icl", "baseline"]]), "\n")


if __name__ == "__main__":
    main()
