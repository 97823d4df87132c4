"""Every run of an experiment in one tidy pandas DataFrame (`iclab results`).

A sweep leaves one directory per grid point; analysis wants one frame with the settings
beside the numbers. `results()` reads each finished run's `tables/<table>.csv` and puts
the run's key, preset, seed and every config field in front of its rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._claims import Claim
from ._errors import IclabError
from ._store import finished_runs

if TYPE_CHECKING:
    import pandas as pd

CLAIM_COLUMNS = ["run", "experiment", "preset", "seed", "name", "kind", "paper", "paper_value", "source", "ours",
                 "ours_lo", "ours_hi", "method", "tolerance", "verdict", "note"]
CLAIM_SHOWN = ["name", "kind", "paper_value", "ours", "ours_lo", "ours_hi", "method", "tolerance", "verdict"]  # printed


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become `a.b` columns; lists (and empty dicts) their JSON text, so frames stay hashable."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_config(value, f"{name}."))
        elif isinstance(value, (list, tuple, dict)):
            out[name] = json.dumps(value, sort_keys=True)
        else:
            out[name] = value
    return out


def run_key(run: dict[str, Any]) -> str:
    """A run's key in the store: its directory name, the config hash."""
    return Path(run["path"]).name


def run_seed(run: dict[str, Any]) -> Any:
    return run["meta"].get("config", {}).get("seed", run["env"].get("seed"))


def experiment_runs(experiment: str, runs_dir: str | Path = "runs") -> list[dict[str, Any]]:
    """The finished runs of one experiment, oldest first; a one-line error if there are none."""
    runs_dir = Path(runs_dir)
    runs = [r for r in finished_runs(runs_dir, experiment) if run_experiment(r) == experiment]
    if not runs:
        from ._experiment import get_experiment

        get_experiment(experiment)  # an unknown name gets the registry's own error
        where = "" if runs_dir == Path("runs") else f" --runs-dir {runs_dir}"
        raise IclabError(f"no finished runs of {experiment} in {runs_dir}/; run `iclab run {experiment}{where}` "
                         f"or `iclab sweep {experiment} --grid seed=0,1,2{where}` first")
    return sorted(runs, key=lambda r: (r["env"].get("started", ""), run_key(r)))


def table_names(runs: list[dict[str, Any]]) -> list[str]:
    """Every table the runs wrote, in order of first appearance."""
    names: dict[str, None] = {}
    for r in runs:
        for name in r["summary"].get("tables", []):
            if (Path(r["path"]) / "tables" / f"{name}.csv").is_file():
                names[name] = None
    return list(names)


def collate(experiment: str, runs_dir: str | Path = "runs",
            table: str = "metrics") -> tuple[pd.DataFrame, list[str], list[str]]:
    """The results frame, with its leading (run and config) columns and its table columns named apart.

    A config column whose name the table also uses (e.g. `D` in both) is renamed `config.<name>`.
    """
    import pandas as pd

    runs = experiment_runs(experiment, runs_dir)
    if table not in table_names(runs):
        tables = ", ".join(table_names(runs)) or "none"
        raise IclabError(f"no run of {experiment} has a table {table!r}; its tables: {tables} (pass one with --table)")
    parts = []
    for r in runs:
        path = Path(r["path"]) / "tables" / f"{table}.csv"
        if not path.is_file():
            continue
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            continue
        lead = {"run": run_key(r), "preset": r["meta"].get("preset"), "seed": run_seed(r)}
        lead.update({k: v for k, v in flatten_config(r["meta"].get("config", {})).items() if k != "seed"})
        parts.append((lead, frame))
    table_cols = _union(list(f.columns) for _, f in parts)
    lead_cols = _union(list(lead) for lead, _ in parts)
    renamed = {c: f"config.{c}" if c in table_cols else c for c in lead_cols}
    records = []
    for lead, frame in parts:
        head = {renamed[k]: v for k, v in lead.items()}
        records.extend({**head, **row} for row in frame.to_dict("records"))
    columns = [renamed[c] for c in lead_cols] + table_cols
    return pd.DataFrame.from_records(records, columns=columns), [renamed[c] for c in lead_cols], table_cols


def results(experiment: str, runs_dir: str | Path = "runs", table: str = "metrics") -> pd.DataFrame:
    """One row per row of each finished run's `tables/<table>.csv`: `run`, `preset`, `seed`, every config
    field (nested as `a.b`, lists as JSON text), then the table's columns. Runs without the table add nothing."""
    return collate(experiment, runs_dir, table)[0]


def claims(experiment: str | None = None, runs_dir: str | Path = "runs", *, newest: bool = False) -> pd.DataFrame:
    """The paper's claims beside ours, one row per claim per finished run (of one experiment, or all), with
    the declared tolerance in words and the verdict recomputed from the numbers. `newest`: only the newest
    run of each experiment and preset, the runs a scoreboard counts."""
    import pandas as pd

    if experiment is not None:
        runs = experiment_runs(experiment, runs_dir)
    else:
        runs = finished_runs(Path(runs_dir))
        if not runs:
            raise IclabError(f"no finished runs in {runs_dir}/; run `iclab reproduce --quick` or `iclab run EXPERIMENT` first")
    if newest:
        runs = newest_runs(runs)
    runs = sorted(runs, key=lambda r: (run_experiment(r), r["env"].get("started", ""), run_key(r)))
    rows = []
    for r in runs:
        for d in r["summary"].get("claims", []):
            c = Claim.from_dict(d)  # the verdict is recomputed from the numbers, never read
            pv = c.paper_value
            rows.append([run_key(r), run_experiment(r), r["meta"].get("preset"), run_seed(r), c.name,
                         c.kind, c.paper, json.dumps(pv) if isinstance(pv, list) else pv, c.source, c.ours.value,
                         c.ours.lo, c.ours.hi, c.ours.method, c.target, c.verdict, c.note])
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def claims_shown(frame: pd.DataFrame) -> pd.DataFrame:
    """The claims frame as `iclab results --claims` prints it: a paper curve (JSON text) cut to its first values."""

    def short(pv: Any) -> Any:
        if not (isinstance(pv, str) and pv.startswith("[")):
            return pv
        values = json.loads(pv)
        more = f", … ({len(values)} values)" if len(values) > 3 else ""
        return ", ".join(cell_text(float(v)) for v in values[:3]) + more

    return frame.assign(paper_value=frame["paper_value"].map(short))


def run_experiment(run: dict[str, Any]) -> str:
    """The experiment a run belongs to: its directory's parent in the store."""
    return Path(run["path"]).parent.name


def newest_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest run of each experiment and preset (no preset counts as one), in the order given: the
    runs a scoreboard counts, so a sweep of ten seeds or an old rerun is not counted ten times or twice."""
    newest: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in runs:
        key = (run_experiment(r), r["meta"].get("preset"))
        if key not in newest or (r["env"].get("started", ""), run_key(r)) > (newest[key]["env"].get("started", ""),
                                                                             run_key(newest[key])):
            newest[key] = r
    kept = {id(r) for r in newest.values()}
    return [r for r in runs if id(r) in kept]


def varying(records: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """The keys that take more than one value across `records` (what tells runs apart; absent = missing)."""
    return [k for k in keys if len({"" if _missing(r.get(k)) else repr(r.get(k)) for r in records}) > 1]


def cell_text(value: Any) -> str:
    """A value as printed: floats to 4 significant digits, missing values empty."""
    if _missing(value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _union(lists: Any) -> list[str]:
    out: dict[str, None] = {}
    for cols in lists:
        out.update(dict.fromkeys(cols))
    return list(out)
