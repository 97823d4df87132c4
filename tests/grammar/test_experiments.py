"""End-to-end runs of every grammar experiment at toy scale: they train, reuse models, and report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iclab.grammar import World, WorldConfig
from iclab.runtime import execute, get_experiment

TINY = dict(data_tokens=120_000, compile=False, warmup_steps=5)


def run(name: str, runs: Path, **overrides):
    exp = get_experiment(name)
    res = execute(exp, exp.make_config("quick", overrides), runs, quiet=True)
    assert res.status == "done", res.error
    return Path(res.path)


def summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


def test_train_point_learns_and_is_reused(runs):
    path = run("grammar.train", runs, d_model=32, n_layers=1, **TINY)
    hist = pd.read_csv(path / "tables" / "history.csv")
    vocab = len(World(WorldConfig()).vocab)
    assert hist.loss.iloc[-1] < 0.8 * np.log(vocab)  # the loss falls well below chance on a tiny corpus, in seconds
    metrics = json.loads((path / "data" / "metrics.json").read_text())
    assert len(metrics["prim_acc"]) == 17 and metrics["params"] > metrics["params_non_embedding"]
    assert (path / "model" / "model.safetensors").is_file()
    # an experiment that needs the same point finds the finished run instead of training again
    before = sorted(p.name for p in (runs / "grammar.train").iterdir())
    run("grammar.cot", runs, size=(32, 1), n_prompts=4, ns=[0, 2], **TINY)
    assert sorted(p.name for p in (runs / "grammar.train").iterdir()) == before


def test_icl_compares_models_with_the_ideal_predictor(runs):
    path = run("grammar.icl", runs, sizes=[(32, 1), (64, 1)], n_prompts=4, ideal_prompts=4, ns=[0, 1, 4], **TINY)
    df = pd.read_csv(path / "tables" / "metrics.csv")
    assert set(df.model) == {"d32-L1", "d64-L1", "ideal"}
    assert set(df.type) == {"prim", "comp", "heldout", "heldout_cot"}
    ideal = df[(df.model == "ideal") & (df.type == "prim") & (df.n_demos == 4)].accuracy.iloc[0]
    assert ideal == 1.0
    claims = {c["name"]: c for c in summary(path)["claims"]}
    bound = next(c for n, c in claims.items() if "D[τ] + R_n" in n)
    assert bound["passed"] is True


def test_ablation_and_emergence_grid(runs):
    path = run("grammar.ablation", runs, size=(32, 1), n_prompts=4, ns=[0, 4], **TINY)
    assert set(pd.read_csv(path / "tables" / "metrics.csv").world) == {"shared", "unshared"}
    path = run("grammar.emergence", runs, sizes=[(32, 1), (64, 1)], data=[10_000, 30_000], compile=False,
               backend="serial")
    df = pd.read_csv(path / "tables" / "metrics.csv")
    assert len(df) == 4 and df.params.nunique() == 2 and df.data_tokens.nunique() == 2


def test_probes_against_their_baselines_and_task_vectors_run(runs):
    """At toy scale the model barely reads context, so this checks the wiring and the baselines'
    meaning; the quick-preset test (slow) checks the probes beat them on the trained models."""
    path = run("grammar.probes", runs, sizes=[(32, 1)], probe_tokens=3000, mid_prompts=4, **TINY)
    df = pd.read_csv(path / "tables" / "metrics.csv")
    assert set(df.model) == {"d32-L1", "random d32-L1"} and set(df.target) == {"role", "template", "mid"}
    role = df[(df.model == "d32-L1") & (df.target == "role")]
    assert role.accuracy.max() >= role.type_only.iloc[0] - 0.01  # a linear probe can always read the type
    assert role.control.max() > 0.9  # few token types: the Hewitt & Liang control is memorised
    assert (df.majority <= df.type_only + 1e-9).all()
    path = run("grammar.taskvectors", runs, sizes=[(32, 1)], n_prompts=4, **TINY)
    per_layer = pd.read_csv(path / "tables" / "per_layer.csv")
    assert set(per_layer.layer) == {0} and set(per_layer["mode"]) == {"replace", "add"}
    assert np.isfinite(per_layer.tv).all()


@pytest.mark.parametrize("name, overrides, field", [
    ("grammar.icl", {"sizes": [(0, 1)]}, "sizes.0.0"),
    ("grammar.icl", {"ns": [0, 40]}, "iter_max"),
    ("grammar.emergence", {"data": [10]}, "data.0"),
    ("grammar.cot", {"size": (100, 2)}, "multiple of 32"),
    ("grammar.train", {"d_model": 100}, "multiple of 32"),
    ("grammar.taskvectors", {"task_types": ["foo"]}, "task_types.0"),
])
def test_bad_settings_fail_before_any_training(name, overrides, field):
    """A size, data size or prompt length the world cannot serve is a one-line config error."""
    from iclab.runtime import IclabError

    with pytest.raises(IclabError) as err:
        get_experiment(name).make_config("quick", overrides)
    assert field in str(err.value) and "\n" not in str(err.value)
