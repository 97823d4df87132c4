"""End-to-end runs of every grammar experiment at toy scale: they train, reuse models, and report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iclab.grammar import World, WorldConfig
from iclab.runtime import execute, get_experiment
from tests.conftest import check_redraw

TINY = dict(data_tokens=120_000, compile=False, warmup_steps=5)
ONE_SEED = dict(train_seeds=[0], backend="serial")


def run(name: str, runs: Path, **overrides):
    exp = get_experiment(name)
    res = execute(exp, exp.make_config("quick", overrides), runs, quiet=True)
    assert res.status == "done", res.error
    check_redraw(Path(res.path))  # the experiment's first run here: redraw rebuilds it from what compute saved
    return Path(res.path)


def summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def claims(path: Path) -> dict[str, dict]:
    return {c["name"]: c for c in summary(path)["claims"]}


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
    with np.load(path / "arrays" / "icl.npz") as z:  # per task, prompt and n: what the grid's intervals read
        assert z["correct"].shape == (4, metrics_prompts(path), 17)
    assert claims(path)["validation loss − log |vocabulary| (nats/token)"]["verdict"] == "holds"
    # an experiment that needs the same point finds the finished run instead of training again
    before = sorted(p.name for p in (runs / "grammar.train").iterdir())
    run("grammar.cot", runs, size=(32, 1), n_prompts=4, ns=[0, 2], **ONE_SEED, **TINY)
    assert sorted(p.name for p in (runs / "grammar.train").iterdir()) == before


def metrics_prompts(path: Path) -> int:
    return json.loads((path / "config.json").read_text())["config"]["eval_prompts"]


def test_icl_compares_models_with_the_ideal_predictor(runs):
    path = run("grammar.icl", runs, sizes=[(32, 1), (64, 1)], n_prompts=4, ideal_prompts=4, ns=[0, 1, 4],
               **ONE_SEED, **TINY)
    df = pd.read_csv(path / "tables" / "metrics.csv")
    assert set(df.model) == {"d32-L1", "d64-L1", "ideal"}
    assert set(df.type) == {"prim", "comp", "heldout", "heldout_cot"}
    ideal = df[(df.model == "ideal") & (df.type == "prim") & (df.n_demos == 4)].accuracy.iloc[0]
    assert ideal == 1.0
    c = claims(path)
    assert c["idealised predictor: cumulative answer loss − (D[τ] + R_n), worst type and n"]["verdict"] == "holds"
    assert c["idealised predictor: max |row sum − 1|"]["verdict"] == "holds"
    one_seed = c["primitive ICL at n = 4, d64-L1"]["ours"]  # one training seed: an interval over its prompts
    assert "bootstrap" in one_seed["method"] and "one training seed" in one_seed["method"]


def test_claims_are_judged_over_training_seeds(runs):
    """Two training seeds: one model per seed, and each claim's interval is over the seeds."""
    path = run("grammar.cot", runs, size=(32, 1), n_prompts=4, ns=[0, 2], train_seeds=[0, 1], backend="serial",
               **TINY)
    df = pd.read_csv(path / "tables" / "metrics.csv")
    assert set(df.seed) == {0, 1}
    hashes = {json.loads((p / "config.json").read_text())["config"]["seed"]
              for p in (runs / "grammar.train").iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert {0, 1} <= hashes
    for claim in claims(path).values():
        assert claim["ours"]["method"] == "95% t-interval over 2 training seeds", claim["name"]


def test_ablation_and_emergence_grid(runs):
    path = run("grammar.ablation", runs, size=(32, 1), n_prompts=4, ns=[0, 4], **ONE_SEED, **TINY)
    assert set(pd.read_csv(path / "tables" / "metrics.csv").world) == {"shared", "unshared"}
    path = run("grammar.emergence", runs, sizes=[(32, 1), (64, 1)], data=[10_000, 30_000], compile=False,
               backend="serial")
    df = pd.read_csv(path / "tables" / "metrics.csv")
    assert len(df) == 4 and df.params.nunique() == 2 and df.data_tokens.nunique() == 2
    kinds = {c["name"]: c["kind"] for c in summary(path)["claims"]}
    assert kinds["parameter span of the grid (largest / smallest)"] == "engineering"
    assert sorted(k for k in kinds.values() if k == "paper-shape") == ["paper-shape"] * 2


def test_probes_against_their_baselines_and_task_vectors_run(runs):
    """At toy scale the model barely reads context, so this checks the wiring and the baselines'
    meaning; the quick-preset test (slow) checks the probes beat them on the trained models."""
    path = run("grammar.probes", runs, sizes=[(32, 1)], size=(32, 1), probe_tokens=3000, mid_prompts=8,
               **ONE_SEED, **TINY)
    df = pd.read_csv(path / "tables" / "metrics.csv")
    assert set(df.model) == {"d32-L1", "random d32-L1"}
    assert set(df.target) == {"role", "iter_index", "template", "mid"}
    icl = json.loads((path / "data" / "icl.json").read_text())  # g(x) is set beside composite ICL, not primitive
    assert set(icl["d32-L1__0"]) == {"prim", "comp"} and 0 <= icl["d32-L1__0"]["comp"] <= 1
    role = df[(df.model == "d32-L1") & (df.target == "role")]
    assert role.accuracy.max() >= role.type_only.iloc[0] - 0.01  # a linear probe can always read the type
    assert role.control.max() > 0.9  # few token types: the Hewitt & Liang control is memorised
    assert (role.type_only > role.majority + 0.2).all()  # the role is mostly fixed by the token: the type tells
    chosen = pd.read_csv(path / "tables" / "chosen.csv")
    for _, c in chosen.iterrows():  # the reported layer is the best on dev, not on test
        layers = df[(df.model == c.model) & (df.target == c.target)]
        assert c.layer == layers.layer.iloc[int(np.argmax(layers.dev_accuracy.to_numpy()))]
        assert c.accuracy == pytest.approx(layers[layers.layer == c.layer].accuracy.iloc[0])
    path = run("grammar.taskvectors", runs, sizes=[(32, 1)], n_prompts=4, **TINY)
    per_layer = pd.read_csv(path / "tables" / "per_layer.csv")
    assert set(per_layer.layer) == {0} and set(per_layer["mode"]) == {"replace", "add"}
    assert set(per_layer.split) == {"dev", "test"} and np.isfinite(per_layer.tv).all()
    heads = pd.read_csv(path / "tables" / "heads.csv")  # d32-L1: one layer of one head, per task
    assert len(heads) == len(World(WorldConfig()).tasks()["prim"]) + len(World(WorldConfig()).tasks()["comp"])
    assert np.isfinite(heads.aie).all() and (heads.aie.abs() <= 1).all()
    assert claims(path)["test episodes that are also dev episodes"]["verdict"] == "holds"


def test_head_effects_vanish_when_the_patch_is_the_heads_own_output():
    """One episode with one demonstration: the shuffled prompt is the clean one and the mean is that prompt's
    own head output, so every head's indirect effect is zero; with real shuffles on a random model they are
    small but not all zero (the patch reaches the answer)."""
    from iclab.grammar.experiments.taskvectors import draw_episodes, head_effects
    from iclab.models import ModelSize, build_causal_lm

    world = World(WorldConfig())
    model = build_causal_lm(ModelSize(d_model=64, n_layers=2), len(world.vocab), seed=0).eval()
    task = world.tasks()["prim"][0]
    dev, _ = draw_episodes(world, task, k=1, n_dummy=1, n_dev=1, n_test=1, seed=0)
    e = head_effects(model, world, task, dev, k=1, seed=0)
    assert e.shape == (1, 2, 2) and np.abs(e).max() < 1e-6
    dev, _ = draw_episodes(world, task, k=6, n_dummy=1, n_dev=8, n_test=1, seed=0)
    e = head_effects(model, world, task, dev, k=6, seed=0)
    assert e.shape == (8, 2, 2) and np.abs(e).max() > 0


def test_task_vector_episodes_are_disjoint_and_the_choice_reads_dev_only():
    from iclab.grammar.experiments.taskvectors import choose, draw_episodes, shared_episodes

    world = World(WorldConfig(n_objects=4))  # few objects: repeats are likely, so the draw must reject them
    task = world.tasks()["prim"][0]
    dev, test = draw_episodes(world, task, k=2, n_dummy=1, n_dev=10, n_test=10, seed=0)
    assert len(dev) == len(test) == 10 and shared_episodes(dev, test, k=2) == 0
    assert shared_episodes(dev, dev[:3], k=2) == 3
    assert (dev, test) == draw_episodes(world, task, k=2, n_dummy=1, n_dev=10, n_test=10, seed=0)
    dev_scores = {"replace": np.array([[1, 0, 0], [0, 0, 0]], bool), "add": np.array([[0, 0, 0], [1, 1, 0]], bool)}
    assert choose(dev_scores, ["replace", "add"]) == ("add", 1)
    tie = {"replace": np.ones((2, 3), bool), "add": np.ones((2, 3), bool)}
    assert choose(tie, ["replace", "add"]) == ("replace", 0)  # ties: the first mode, the lowest layer


def test_recombination_world_beside_the_default(runs):
    path = run("grammar.recombination", runs, size=(32, 1), n_prompts=4, ns=[0, 2], **ONE_SEED, **TINY)
    df = pd.read_csv(path / "tables" / "metrics.csv")
    assert set(df.world) == {"steps_shown", "recombination"} and set(df.seed) == {0, -1}
    ideal = df[(df.seed == -1) & (df.type == "heldout") & (df["mode"] == "generated")]
    # the default world's posterior solves held-out pairs with steps; in the recombination world they have
    # probability 0 with steps (undefined, blank) and chance direct
    assert ideal[(ideal.world == "steps_shown") & (ideal.n_demos == 2)].accuracy.iloc[0] > 0.8
    assert ideal[ideal.world == "recombination"].accuracy.isna().all()
    c = claims(path)
    assert {f"{w}: held-out compositions at n = 2, generated steps − direct, d32-L1"
            for w in ("steps_shown", "recombination")} <= set(c)
    train = sorted((runs / "grammar.train").iterdir())
    worlds = {json.loads((p / "config.json").read_text())["config"]["world"]["heldout_in_cot"] for p in train}
    assert worlds == {True, False}


def test_theory_scores_every_task_type_against_the_ideal(runs):
    path = run("grammar.theory", runs, sizes=[(32, 1)], data=[TINY["data_tokens"]], n_prompts=3, ns_max=4,
               **ONE_SEED, **{k: v for k, v in TINY.items() if k != "data_tokens"})
    df = pd.read_csv(path / "tables" / "curves.csv")
    assert set(df.type) == {"prim", "comp", "heldout", "comp3", "bin"} and set(df.model) == {"d32-L1", "ideal"}
    ideal = df[df.model == "ideal"]
    assert (ideal.kl == 0).all()  # KL(ideal ‖ ideal)
    assert (df[(df.model == "d32-L1") & (df.n_demos > 0)].kl > 0).all()
    tasks = pd.read_csv(path / "tables" / "tasks.csv")
    d = tasks.groupby("type").D.mean()
    assert d["prim"] < d["comp"] < d["comp3"] and np.isinf(d["heldout"])  # longer derivations cost more
    c = claims(path)
    assert c["idealised predictor: worst task's cumulative loss − (D[τ] + R_4)"]["verdict"] == "holds"
    assert c["rank correlation of D[τ] with the ideal predictor's cumulative loss"]["verdict"] == "holds"


def test_theory_reports_from_a_partial_grid(runs):
    """only_finished measures the points already in the store and never trains: the report of a grid
    that is still running (or was interrupted)."""
    kw = dict(n_prompts=2, ns_max=2, types=["prim", "comp3"], **ONE_SEED,
              **{k: v for k, v in TINY.items() if k != "data_tokens"})
    run("grammar.theory", runs, sizes=[(32, 1)], data=[TINY["data_tokens"]], **kw)  # one point trained
    before = sorted((runs / "grammar.train").iterdir())
    path = run("grammar.theory", runs, sizes=[(32, 1), (64, 1)], data=[TINY["data_tokens"]], only_finished=True, **kw)
    df = pd.read_csv(path / "tables" / "curves.csv")
    assert set(df.model) == {"d32-L1", "ideal"}  # d64-L1 of this world was never trained, and is not now
    assert sorted((runs / "grammar.train").iterdir()) == before
    assert "1 of 2 points" in (path / "report.html").read_text()
    from iclab.runtime import IclabError

    runs_before = sorted((runs / "grammar.theory").iterdir())
    with pytest.raises(IclabError, match="none of the 1 grid points is trained yet; run without only_finished"):
        run("grammar.theory", runs, sizes=[(64, 1)], data=[TINY["data_tokens"]], only_finished=True, **kw)
    assert sorted((runs / "grammar.theory").iterdir()) == runs_before  # nothing half-written left behind


@pytest.mark.parametrize("name, overrides, field", [
    ("grammar.icl", {"sizes": [(0, 1)]}, "sizes.0.0"),
    ("grammar.icl", {"ns": [0, 40]}, "iter_max"),
    ("grammar.emergence", {"data": [10]}, "data.0"),
    ("grammar.cot", {"size": (100, 2)}, "multiple of 32"),
    ("grammar.train", {"d_model": 100}, "multiple of 32"),
    ("grammar.taskvectors", {"task_types": ["foo"]}, "task_types.0"),
    ("grammar.theory", {"world": {"n_triples": 0}}, "needs three-function compositions"),
    ("grammar.theory", {"types": ["comp4"]}, "types.0"),
    ("grammar.theory", {"world": {"n_functions": 2, "n_triples": 9}}, "make only 8 three-function"),
    ("grammar.recombination", {"worlds": ["nowhere"]}, "worlds.0"),
])
def test_bad_settings_fail_before_any_training(name, overrides, field):
    """A size, data size or prompt length the world cannot serve is a one-line config error."""
    from iclab.runtime import IclabError

    with pytest.raises(IclabError) as err:
        get_experiment(name).make_config("quick", overrides)
    assert field in str(err.value) and "\n" not in str(err.value)


def test_how_models_are_trained_is_not_a_runs_identity():
    """backend and workers change where the missing models train, not what they are: a grid started with
    two workers and finished with one (or on a cluster) is one run."""
    exp = get_experiment("grammar.theory")
    base = exp.make_config("quick", {})
    assert exp.make_config("quick", {"workers": 1, "backend": "serial"}).hash() == base.hash()
    assert exp.make_config("quick", {"n_prompts": 3}).hash() != base.hash()
