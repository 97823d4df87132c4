"""taskvectors.main end to end on a tiny random model (built in code), with a user task file whose name has
no underscore, scored on whole answers: the run finishes, its predictions keep whole answers, and the
task file's warning reaches the report when it is scored on first tokens."""

import json
from pathlib import Path

import pandas as pd

from iclab.runtime import get_experiment
from iclab.runtime._store import execute


def _task_file(tmp_path):
    pairs = {f"w{i}": "".join(chr(97 + (i * 7 + j) % 26) for j in range(2 + i % 3)) for i in range(24)}
    path = tmp_path / "words.json"
    path.write_text(json.dumps(pairs))
    return path


def _run(tmp_path, **overrides):
    exp = get_experiment("taskvectors.main")
    cfg = exp.make_config("quick", {"model": "tiny:llama", "tasks": str(_task_file(tmp_path)), "n_dev": 4,
                                    "n_test": 4, "n_baseline": 4, "k": 2, "device": "cpu", **overrides})
    return execute(exp, cfg, tmp_path / "runs", preset="quick", quiet=True)


def test_task_file_runs_with_whole_answers(tmp_path):
    res = _run(tmp_path)
    assert res.status == "done", res.error
    preds = pd.read_csv(f"{res.path}/tables/predictions.csv", keep_default_na=False)
    assert set(preds["task"]) == {"words"}
    assert preds["prediction"].str.strip().str.len().max() > 1  # whole generations, not first tokens
    summary = json.loads(Path(res.path, "summary.json").read_text())
    assert not any("Warning" in n for n in summary["notes"])


def test_first_token_scoring_of_a_task_file_warns_in_the_report(tmp_path, capsys):
    res = _run(tmp_path, scoring="first-token")
    assert res.status == "done", res.error
    notes = json.loads(Path(res.path, "summary.json").read_text())["notes"]
    assert any("answers are more than one token" in n and "--scoring full" in n for n in notes)
    assert "iclab: warning: task 'words'" in capsys.readouterr().err
