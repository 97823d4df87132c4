"""Print the docs/grammar.md result tables and claims table from finished runs (no number in the docs is typed in).

    .venv/bin/python scripts/grammar_tables.py runs                   # the newest run of each grammar experiment
    .venv/bin/python scripts/grammar_tables.py runs --theory medium   # grammar.theory's tables of one preset only
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from iclab.runtime import Claim, Estimate, finished_runs

EXPERIMENTS = ["grammar.emergence", "grammar.icl", "grammar.cot", "grammar.recombination", "grammar.ablation",
               "grammar.probes", "grammar.taskvectors", "grammar.theory"]


def newest(runs: Path, name: str, preset: str | None = None) -> Path:
    found = [r for r in finished_runs(runs, name)
             if preset is None or json.loads((Path(r["path"]) / "config.json").read_text())["preset"] == preset]
    if not found:
        sys.exit(f"no finished run of {name} under {runs}; run `iclab reproduce --quick --only grammar.` first")
    return Path(found[-1]["path"])


def table(path: Path, name: str = "metrics") -> pd.DataFrame:
    return pd.read_csv(path / "tables" / f"{name}.csv")


def cell(v) -> str:
    text = f"{v:.3g}" if isinstance(v, float) else str(v)
    return text.replace("|", "\\|")


def md(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, df.columns)) + " |\n|" + "---|" * len(df.columns)
    return head + "".join("\n| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False))


def over_seeds(df: pd.DataFrame, index: list[str], columns: str, values: str = "accuracy") -> pd.DataFrame:
    """Wide table of 'mean ± half-width' cells: the mean over the `seed` column with its 95% t-interval."""
    def fmt(x: pd.Series) -> str:
        e = Estimate.mean(x.to_numpy(), unit="seeds")
        if e.value != e.value:  # NaN: undefined (e.g. the ideal predictor on a prompt of probability 0)
            return ""
        return f"{e.value:.2f}" if e.lo is None else f"{e.value:.2f} ± {(e.hi - e.lo) / 2:.2f}"

    wide = df.groupby(index + [columns])[values].agg(fmt).unstack(columns).reset_index()
    wide.columns = [str(c) for c in wide.columns]
    return wide


def ours(e: Estimate) -> str:
    """'value [lo, hi] (how the interval was made)'; a number with no interval, or an exact one, alone."""
    if e.lo is None or e.lo == e.hi == e.value:
        return f"{e.value:.4g} ({e.method})"
    return f"{e.value:.3g} [{e.lo:.3g}, {e.hi:.3g}] ({e.method})"


def claims_table(runs: Path, experiments: list[str] = EXPERIMENTS, preset: str | None = None) -> pd.DataFrame:
    rows = []
    for name in experiments:
        for d in json.loads((newest(runs, name, preset) / "summary.json").read_text())["claims"]:
            c = Claim.from_dict(d)
            paper = c.paper + (f" = {c.paper_value:g}" if isinstance(c.paper_value, float) else "")
            rows.append({"experiment": name.removeprefix("grammar."), "claim": c.name, "kind": c.kind,
                         "paper (source)": paper + (f" ({c.source})" if c.source else ""), "ours ± CI": ours(c.ours),
                         "tolerance": c.target or "reported", "verdict": c.verdict})
    return pd.DataFrame(rows)


def train_claims(runs: Path) -> str:
    """The per-model claims of every grammar.train run, counted by kind and verdict."""
    counts: dict[tuple[str, str, str], int] = {}
    found = finished_runs(runs, "grammar.train")
    for run in found:
        for d in run["summary"]["claims"]:
            c = Claim.from_dict(d)
            counts[(c.name, c.kind, c.verdict)] = counts.get((c.name, c.kind, c.verdict), 0) + 1
    parts = [f"{name} ({kind}): {verdict} in {n}" for (name, kind, verdict), n in sorted(counts.items())]
    return f"grammar.train, {len(found)} trained models in this store: " + "; ".join(parts)


def theory_tables(runs: Path, preset: str | None) -> None:
    """grammar.theory: ICL per task type, the rank correlations, and KL(ideal ‖ model) across the grid."""
    path = newest(runs, "grammar.theory", preset)
    df = table(path, "curves")
    models = df[df.model != "ideal"]
    top = models.data_tokens.max()
    print(f"#### Every task type (grammar.theory, preset {json.loads((path / 'config.json').read_text())['preset']}): "
          f"accuracy vs demonstrations at {top / 1e6:g}M tokens (mean ± 95% t-interval half-width over seeds)\n")
    sel = df[((df.data_tokens == top) | (df.model == "ideal")) & df.n_demos.isin([0, 1, 2, 4, 8, 16])]
    print(md(over_seeds(sel, ["model", "type"], "n_demos")), "\n")
    print("#### KL(ideal ‖ model), nats, mean over answer positions n = 1..16 (mean ± half-width over seeds)\n")
    kl = models[models.n_demos > 0].groupby(["model", "params", "data_tokens", "seed", "type"], as_index=False).kl.mean()
    kl["data"] = (kl.data_tokens / 1e6).map(lambda v: f"{v:g}M")
    wide = over_seeds(kl, ["model", "params", "data"], "type", values="kl")
    print(md(wide.sort_values(["params", "data"], key=lambda c: c.map(lambda v: float(str(v).rstrip("M"))))), "\n")
    acc = models[(models.type == "prim") & (models.n_demos == 8)].assign(
        data=lambda d: (d.data_tokens / 1e6).map(lambda v: f"{v:g}M"))
    print("#### Emergence: primitive ICL after 8 demonstrations (mean ± half-width over seeds)\n")
    wide = over_seeds(acc, ["model", "params"], "data")
    print(md(wide.sort_values("params")), "\n")
    print("#### Claims of grammar.theory\n")
    print(md(claims_table(runs, ["grammar.theory"], preset)), "\n")


def main() -> None:
    args = sys.argv[1:]
    if "--only" in args:  # one section: recombination, probes, taskvectors
        i = args.index("--only")
        {"recombination": recombination_table, "probes": probes_table,
         "taskvectors": taskvector_tables}[args[i + 1]](Path(args[0] if i else "runs"))
        return
    if "--theory" in args:
        i = args.index("--theory")
        theory_tables(Path(args[0] if i else "runs"), args[i + 1])
        return
    runs = Path(args[0] if args else "runs")
    df = table(newest(runs, "grammar.emergence"))
    print("#### Emergence (primitive ICL, 8 demonstrations, one training seed)\n")
    order = list(dict.fromkeys(df.sort_values("params")["size"]))
    acc = df.pivot(index="size", columns="data_tokens", values="acc_n").loc[order]
    loss = df.pivot(index="size", columns="data_tokens", values="val_loss").loc[acc.index]
    acc.columns = [f"acc @ {c / 1e6:g}M" for c in acc.columns]
    loss.columns = [f"val loss @ {c / 1e6:g}M" for c in loss.columns]
    params = df.groupby("size").params.first().loc[order]
    print(md(pd.concat([params, acc, loss], axis=1).reset_index()), "\n")

    path = newest(runs, "grammar.icl")
    df = table(path)
    print("#### ICL accuracy vs demonstrations (mean ± 95% t-interval half-width over training seeds)\n")
    print(md(over_seeds(df, ["model", "type"], "n_demos")), "\n")
    n_hi = df.n_demos.max()
    last = df[df.n_demos == n_hi].groupby(["type", "model"]).cum_loss.mean().unstack("model").reset_index()
    bound = table(path, "bound")
    bound = bound[bound.n_demos == n_hi][["type", "D", "R_n", "bound"]]
    print(f"#### Cumulative answer loss over {n_hi} demonstrations vs the Theorem-1 bound (mean over seeds)\n")
    print(md(last.merge(bound, on="type")), "\n")

    df = table(newest(runs, "grammar.cot"))
    print("#### Chain of thought (final-answer accuracy, mean ± 95% t-interval half-width over training seeds)\n")
    print(md(over_seeds(df, ["type", "mode"], "n_demos")), "\n")

    recombination_table(runs)
    _rest(runs)


def recombination_table(runs: Path) -> None:
    df = table(newest(runs, "grammar.recombination"))
    print("#### Recombination: held-out compositions, direct vs steps, in both worlds (final-answer accuracy, mean ± "
          "95% t-interval half-width over training seeds; seed −1: the world's ideal predictor, blank: undefined)\n")
    held = df[df.type == "heldout"].assign(model=lambda d: d.seed.map(lambda s: "ideal" if s < 0 else "trained"))
    print(md(over_seeds(held, ["world", "model", "mode"], "n_demos")), "\n")


def _rest(runs: Path) -> None:
    df = table(newest(runs, "grammar.ablation"))
    print("#### Ablation (primitive ICL, mean ± 95% t-interval half-width over training seeds)\n")
    print(md(over_seeds(df, ["world"], "n_demos")), "\n")

    probes_table(runs)
    taskvector_tables(runs)
    theory_tables(runs, "quick-3seeds")

    print("#### Claims\n")
    others = [e for e in EXPERIMENTS if e != "grammar.theory"]
    print(md(pd.concat([claims_table(runs, others), claims_table(runs, ["grammar.theory"], "quick-3seeds")])), "\n")
    print(train_claims(runs), "\n")


def probes_table(runs: Path) -> None:
    df = table(newest(runs, "grammar.probes"), "chosen")
    print("#### Probes (test accuracy at the layer chosen on dev; mean ± half-width over training seeds)\n")
    df["layers"] = df.layer.astype(str)
    wide = df.groupby(["model", "target"]).agg(
        seeds=("seed", "nunique"), layers=("layers", lambda x: ",".join(x)),
        type_only=("type_only", "mean"), control=("control", "mean"), majority=("majority", "mean")).reset_index()
    acc = over_seeds(df.assign(col="accuracy"), ["model", "target"], "col")
    print(md(wide.merge(acc, on=["model", "target"])[["model", "target", "seeds", "layers", "accuracy", "type_only",
                                                      "control", "majority"]]), "\n")

    path = newest(runs, "grammar.probes")
    icl = json.loads((path / "data" / "icl.json").read_text())
    print("#### Probe vs ICL (test accuracy at the dev-chosen layer beside the model's ICL after 8 demonstrations: "
          "primitive for the template and iteration probes, composite for g(x))\n")
    rows = [dict(model=m, seed=s, target=t, probe=a, icl=icl[f"{m}__{s}"]["comp" if t == "mid" else "prim"])
            for m, s, t, a, tr in zip(df.model, df.seed, df.target, df.accuracy, df.trained.astype(str))
            if tr == "True" and t != "role"]
    print(md(pd.DataFrame(rows).sort_values(["target", "model", "seed"])), "\n")


def taskvector_tables(runs: Path) -> None:
    df = table(newest(runs, "grammar.taskvectors"))
    print("#### Task vectors (layer and mode chosen on dev episodes; accuracies on test episodes; one seed)\n")
    print(md(df[["size", "type", "mode", "layer", "dev_tv", "tv", "icl", "baseline"]]), "\n")
    heads = table(newest(runs, "grammar.taskvectors"), "heads")
    print("#### Attention heads' average indirect effect (dev episodes, mean over the type's tasks; top 3 per size)\n")
    mean = heads.groupby(["size", "type", "layer", "head"], as_index=False).aie.mean()
    top = mean.sort_values("aie", ascending=False).groupby(["size", "type"]).head(3)
    print(md(top.sort_values(["size", "type", "aie"], ascending=[True, True, False])), "\n")


if __name__ == "__main__":
    main()
