"""`iclab redraw` rebuilds a run's figures, claims and report from what its compute step saved.

For the quick preset of every registered experiment: a fresh run, then a redraw, must leave every
saved result (tables, arrays, data, config) byte for byte as it was and rebuild the same summary
(claims, figures, notes), so nothing in figures or verdicts recomputes or depends on the fresh
run's memory. Redraw refuses what is not a finished run, and runs of an older format, in one line.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from iclab.runtime import IclabError, execute, get_experiment, load_experiments, redraw
from iclab.runtime._store import DERIVED, is_complete, write_manifest
from tests.runtime.test_cli import assert_one_line_error, iclab

os.environ["ICLAB_EXPERIMENTS"] = "tests.runtime.toy"  # also seen by spawned workers

# Quick presets too slow for CI (over ~20 s on 2 idle cores) run under `pytest -m slow`. CPU seconds of the
# fresh run, measured 2026-12-05 on a busy 2-core machine (CPU time stands in for idle wall time):
# figS1 21, figS4 23, figS8 175; taskvectors (a real LM): conflict 76, main 217, templates 247, tsne 210,
# vocab 219; every grammar experiment trains transformers from scratch (grammar.train alone: 1847).
# In CI: fig3 14, fig4b 9, fig4a 7, figS2 6, pool 5, figS5 4.5, figS6 4.5, figS7 4, fig1 4, fig2 3, figS3 2.
SLOW = {"spinglass.figS1", "spinglass.figS4", "spinglass.figS8"}
SLOW_LINES = ("taskvectors.", "grammar.")


def registered() -> list:
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW or name.startswith(SLOW_LINES) else name
            for name in load_experiments()]


def saved(run: Path) -> dict[str, bytes]:
    """Every file of a run that redraw must keep: all but the figures, summary, report and manifest."""
    return {f.relative_to(run).as_posix(): f.read_bytes() for f in sorted(run.rglob("*"))
            if f.is_file() and f.relative_to(run).parts[0] not in DERIVED}


@pytest.mark.parametrize("name", registered())
def test_redraw_keeps_the_results_and_rebuilds_the_claims(name, tmp_path):
    exp = get_experiment(name)
    res = execute(exp, exp.make_config("quick"), tmp_path, preset="quick", quiet=True)
    assert res.status == "done", res.error
    run = Path(res.path)
    before, summary = saved(run), json.loads((run / "summary.json").read_text())
    assert any(k.startswith("tables/") for k in before), "compute saved no table"

    assert redraw(run) == run
    assert saved(run) == before
    assert json.loads((run / "summary.json").read_text()) == summary  # the same claims, figures and notes
    for fig in summary["figures"]:
        assert all((run / f).is_file() for f in fig["files"]), fig
    assert is_complete(run, verify=True)


def toy_run(runs: Path) -> Path:
    exp = get_experiment("test.toy")
    res = execute(exp, exp.make_config("quick"), runs, preset="quick", quiet=True)
    assert res.status == "done", res.error
    return Path(res.path)


def test_redraw_on_the_command_line(tmp_path):
    run = toy_run(tmp_path / "runs")
    before = saved(run)
    proc = iclab("redraw", str(run), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"redrawn: {run}"
    assert saved(run) == before and is_complete(run, verify=True)


def test_redraw_refuses_what_is_not_a_finished_run(tmp_path):
    run = toy_run(tmp_path / "runs")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "DONE").unlink()  # as a run interrupted before it was sealed
    for path in (tmp_path / "missing", unfinished, run / "tables"):
        with pytest.raises(IclabError, match="not a finished iclab run") as err:
            redraw(path)
        assert "\n" not in str(err.value)
    for path in (tmp_path / "missing", unfinished):
        assert_one_line_error(iclab("redraw", str(path), tmp_path=tmp_path), "not a finished iclab run", "iclab run")


def test_redraw_refuses_an_older_format_run(tmp_path):
    """A run written before compute / figures / verdicts (no computed.json) cannot be redrawn: rerun it."""
    old = tmp_path / "old"
    shutil.copytree(toy_run(tmp_path / "runs"), old)
    (old / "computed.json").unlink()
    write_manifest(old, "2026-01-01T00:00:00+00:00")  # sealed as an old run was
    with pytest.raises(IclabError, match=r"older iclab \(run format 1.*iclab run test.toy --force") as err:
        redraw(old)
    assert "\n" not in str(err.value)
    assert_one_line_error(iclab("redraw", str(old), tmp_path=tmp_path), "older iclab", "iclab run test.toy --force")
    assert not (old / "computed.json").exists() and is_complete(old, verify=True)  # left as it was


def test_redraw_of_an_experiment_no_longer_registered_says_so(tmp_path):
    run = toy_run(tmp_path / "runs")
    meta = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**meta, "experiment": "test.gone"}))
    write_manifest(run, "2026-01-01T00:00:00+00:00")
    with pytest.raises(IclabError, match="unknown experiment 'test.gone'") as err:
        redraw(run)
    assert "\n" not in str(err.value)
