"""The one way the spin-glass tests run an experiment end to end and check what every run must write
(and, on an experiment's first run in the process, that `iclab redraw` rebuilds it from its saved results)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from iclab.runtime import execute, get_experiment
from tests.conftest import check_redraw


class Run(NamedTuple):
    path: Path  # the run directory
    metrics: pd.DataFrame  # tables/metrics.csv
    claims: dict[str, dict]  # by name, as summary.json holds them


def run(name: str, tmp_path: Path, preset: str = "quick", **overrides) -> Run:
    exp = get_experiment(name)
    res = execute(exp, exp.make_config(preset, overrides), tmp_path, preset=preset, quiet=True)
    assert res.status == "done", res.error
    path = Path(res.path)
    summary = json.loads((path / "summary.json").read_text())
    for f in ["DONE", "report.html", "tables/metrics.csv"] + [p for fig in summary["figures"] for p in fig["files"]]:
        assert (path / f).is_file(), f
    assert summary["figures"] and summary["claims"]
    assert summary["notes"], "every experiment documents its choices"
    check_redraw(path)
    return Run(path, pd.read_csv(path / "tables" / "metrics.csv"), {c["name"]: c for c in summary["claims"]})
