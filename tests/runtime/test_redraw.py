"""`iclab redraw` rebuilds a run's figures, claims and report from what its compute step saved.

A fresh run, then a redraw, must leave every saved result (tables, arrays, data, config) byte for
byte as it was and rebuild the same summary (claims, figures, notes), so nothing in figures or
verdicts recomputes or depends on the fresh run's memory (`check_redraw` in tests/conftest.py).
The fast tier checks every experiment at toy scale: the end-to-end helpers of each research line
call it on each experiment's first run (tests/test_every_experiment.py lists those tests); the
slow tier checks the quick preset of every experiment here. Redraw refuses what is not a finished
run, and runs of an older format, in one line.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from iclab.runtime import IclabError, execute, get_experiment, load_experiments, redraw
from iclab.runtime._store import is_complete, write_manifest
from tests.conftest import check_redraw, saved_results as saved
from tests.runtime.test_cli import assert_one_line_error, iclab

os.environ["ICLAB_EXPERIMENTS"] = "tests.runtime.toy"  # also seen by spawned workers


@pytest.mark.slow
@pytest.mark.parametrize("name", list(load_experiments()))
def test_redraw_keeps_the_results_and_rebuilds_the_claims(name, tmp_path):
    """The quick preset of every registered experiment (minutes to half an hour each: slow tier)."""
    exp = get_experiment(name)
    res = execute(exp, exp.make_config("quick"), tmp_path, preset="quick", quiet=True)
    assert res.status == "done", res.error
    check_redraw(Path(res.path), once=False)


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
