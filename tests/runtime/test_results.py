"""`results()` / `claims()` collate a sweep into one tidy frame; `iclab results` and `iclab report` on the command line."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pydantic import Field

from iclab.runtime import (
    ExperimentConfig,
    IclabError,
    SerialExecutor,
    claims,
    execute,
    finished_runs,
    results,
    sweep,
)
from iclab.runtime._experiment import Experiment
from iclab.runtime._results import CLAIM_COLUMNS, run_key
from tests.runtime.test_cli import ROOT, assert_one_line_error, iclab
from tests.runtime.toy import ToyConfig
from tests.runtime.toy import run as toy

os.environ["ICLAB_EXPERIMENTS"] = "tests.runtime.toy"  # also seen by spawned workers


class NestedConfig(ExperimentConfig):
    D: int = Field(2, gt=0, description="Also a column of the table: the config's copy becomes config.D.")
    Ns: list[int] = Field([1, 2], description="A list: JSON text in the frame.")
    opt: dict[str, float] = Field({"lr": 0.1}, description="A mapping: flattened to opt.lr.")


def nested_run(cfg: NestedConfig, ctx) -> None:
    ctx.table(pd.DataFrame({"D": [cfg.D, cfg.D + 1], "y": [1.0, 2.0]}))
    if cfg.D > 2:
        ctx.table(pd.DataFrame({"k": [cfg.D]}), "extra")


# not registered: an experiment that is in the store but not in the registry still has results
NESTED = Experiment("test.nested", NestedConfig, nested_run, presets={}, title="nested", paper="nobody 2026")


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("sweep") / "runs"
    res = sweep("test.toy", {"seed": [0, 1, 2]}, runs, preset="quick", executor=SerialExecutor())
    assert [r.status for r in res] == ["done"] * 3
    return runs


def test_a_sweep_is_one_tidy_frame(toy_sweep):
    df = results("test.toy", toy_sweep)
    assert len(df) == 3 * 3  # three seeds, three draws each (quick preset: n = 3)
    assert list(df.columns[:3]) == ["run", "preset", "seed"] and list(df.columns[-2:]) == ["i", "x"]
    assert {"n", "scale", "fail", "sleep"} <= set(df.columns)
    assert sorted(df["seed"].unique()) == [0, 1, 2] and set(df["preset"]) == {"quick"} and set(df["n"]) == {3}
    assert df.groupby("run").size().tolist() == [3, 3, 3]
    for run, rows in df.groupby("run"):
        csv = pd.read_csv(toy_sweep / "test.toy" / run / "tables" / "metrics.csv")
        assert rows["x"].tolist() == csv["x"].tolist()
    assert not df.duplicated().any()  # every cell hashable
    assert results("test.toy", toy_sweep).equals(df)  # deterministic


def test_claims_frame(toy_sweep):
    df = claims("test.toy", toy_sweep)
    assert list(df.columns) == CLAIM_COLUMNS and len(df) == 6
    assert set(df["name"]) == {"mean", "count"} and set(df["experiment"]) == {"test.toy"}
    assert set(df[df.kind == "sanity"].verdict) == {"holds"}
    mean = df[df.name == "mean"]
    assert (mean.ours_lo <= mean.ours).all() and (mean.ours <= mean.ours_hi).all()
    assert set(mean.tolerance) == {"within ±1 of 0"} and set(mean.method) == {"95% t-interval over 3 draws"}
    assert len(claims(runs_dir=toy_sweep)) == 6
    # a scoreboard counts the sweep once: the newest run of the experiment and preset
    newest = max(finished_runs(toy_sweep), key=lambda r: (r["env"]["started"], run_key(r)))
    assert claims(runs_dir=toy_sweep, newest=True).run.tolist() == [run_key(newest)] * 2


def test_claims_tables_script(tmp_path):
    """scripts/claims_tables.py: one research line's claims as markdown, the newest run per preset only."""
    standin = Experiment("grammar.standin", ToyConfig, toy.fn, presets={}, title="stand-in", paper="nobody 2026",
                         draw=toy.draw, judge=toy.judge)
    for seed in (0, 1):
        assert execute(standin, ToyConfig(n=3, seed=seed), tmp_path, preset="quick", quiet=True).status == "done"

    def script(line):
        return subprocess.run([sys.executable, "scripts/claims_tables.py", line, "--runs-dir", str(tmp_path)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    proc = script("grammar")
    assert proc.returncode == 0, proc.stderr
    board, checks = proc.stdout.split("**Sanity checks")
    assert "| experiment | paper's claim | paper's value (source) | ours ± CI (method) | tolerance | verdict |" in board
    assert board.count("| `grammar.standin` (quick) | the mean is about 0 (mean) | 0 (nobody 2026, Fig. 0) |") == 1
    assert "one row per draw" not in board and "| `grammar.standin` (quick) | one row per draw (count) |" in checks
    assert "| paper-value | 1 |" in checks and "| sanity | 1 | 1 holds |" in checks
    empty = script("spinglass")
    assert empty.returncode == 1 and empty.stderr.strip().count("\n") == 0
    assert "no finished runs of spinglass.*" in empty.stderr


def test_nested_config_lists_and_name_clashes(tmp_path):
    for d in (2, 3):
        assert execute(NESTED, NestedConfig(D=d), tmp_path, quiet=True).status == "done"
    df = results("test.nested", tmp_path)
    assert len(df) == 4 and {"config.D", "D", "Ns", "opt.lr", "y"} <= set(df.columns)
    assert set(df["Ns"]) == {"[1, 2]"} and set(df["opt.lr"]) == {0.1}
    assert sorted(df["config.D"].unique()) == [2, 3] and sorted(df["D"]) == [2, 3, 3, 4]
    extra = results("test.nested", tmp_path, table="extra")  # the D = 2 run has no such table: no rows
    assert extra["k"].tolist() == [3] and extra["D"].tolist() == [3]  # no clash in this table: plain D
    assert list(claims("test.nested", tmp_path).columns) == CLAIM_COLUMNS


def test_errors_are_one_line(tmp_path, toy_sweep):
    cases = [
        (lambda: results("test.toy", tmp_path), ["no finished runs of test.toy", "iclab run test.toy"]),
        (lambda: results("nothing.here", tmp_path), ["unknown experiment 'nothing.here'", "iclab list"]),
        (lambda: results("test.toy", toy_sweep, table="bogus"), ["no run of test.toy has a table 'bogus'", "metrics"]),
        (lambda: claims(runs_dir=tmp_path), ["no finished runs", "iclab reproduce --quick"]),
    ]
    for call, fragments in cases:
        with pytest.raises(IclabError) as err:
            call()
        assert "\n" not in str(err.value)
        for frag in fragments:
            assert frag in str(err.value)


def test_results_and_report_commands(tmp_path):
    for cmd in ("results", "report"):
        proc = iclab(cmd, "--help", tmp_path=tmp_path)
        assert proc.returncode == 0 and "Usage" in proc.stdout, cmd
    assert_one_line_error(iclab("results", "test.toy", tmp_path=tmp_path), "no finished runs of test.toy")
    assert_one_line_error(iclab("report", tmp_path=tmp_path), "no finished runs", "iclab reproduce --quick")
    sweep("test.toy", {"seed": [0, 1]}, tmp_path / "runs", preset="quick", executor=SerialExecutor())

    shown = iclab("results", "test.toy", "--csv", "all.csv", tmp_path=tmp_path)
    assert shown.returncode == 0, shown.stderr
    header = next(ln for ln in shown.stdout.splitlines() if " run " in ln)
    assert "seed" in header and " x " in header and "scale" not in header  # only the settings that vary
    full = pd.read_csv(tmp_path / "all.csv")
    assert len(full) == 6 and {"run", "scale", "x"} <= set(full.columns)
    assert_one_line_error(iclab("results", "test.toy", "--table", "bogus", tmp_path=tmp_path), "its tables: metrics")

    listed = iclab("results", "test.toy", "--claims", "--csv", "claims.csv", tmp_path=tmp_path)
    assert listed.returncode == 0, listed.stderr
    header = next(ln for ln in listed.stdout.splitlines() if " run " in ln)
    for col in ("seed", "name", "kind", "paper_value", "ours", "ours_lo", "ours_hi", "method", "tolerance", "verdict"):
        assert f" {col} " in header, col
    assert " source " not in header and " preset " not in header  # in the CSV; the preset does not vary
    for text in ("paper-value", "sanity", "within ±1 of 0", "holds"):
        assert text in listed.stdout, text
    assert list(pd.read_csv(tmp_path / "claims.csv").columns) == CLAIM_COLUMNS

    expected = f"report: {Path('runs') / 'site' / 'index.html'}"
    for cmd in (["report"], ["reproduce", "--only", "test.", "-q"]):  # reproduce: the seed-0 point is already done
        proc = iclab(*cmd, tmp_path=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == expected, proc.stdout
    assert (tmp_path / "runs" / "site" / "other" / "test.toy" / "index.html").is_file()
