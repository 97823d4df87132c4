"""Function vectors: the statistics on planted indirect effects, the evaluation's pairing and identities
on a tiny random model, the experiments end to end (tiny model), `iclab profile`, and bad input."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from iclab.models import head_geometry
from iclab.runtime import IclabError, get_experiment
from iclab.runtime._store import execute
from iclab.taskvectors import get_task, get_template, prepare_task
from iclab.taskvectors._evaluate import evaluate_task
from iclab.taskvectors._function_vectors import (aie_interval, concentration, contains_answer, evaluate_function_vector,
                                                first_answer_tokens, head_effects, rank_stability, shuffled,
                                                top_depth, universal_heads)
from iclab.taskvectors._method import TaskVectorRunner

from ..models.tiny import tiny_lm


def _planted(n_tasks=2, P=12, L=6, H=5, heads=((2, 1), (3, 4)), noise=0.01, seed=0):
    """Indirect effects where only `heads` matter (effect 1 each), plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_tasks):
        x = rng.normal(0, noise, (P, L, H))
        for l, h in heads:
            x[:, l, h] += 1.0
        out.append(x)
    return out


def test_aie_interval_brackets_the_mean_and_shrinks_with_less_noise():
    ies = _planted(noise=0.1)
    value, lo, hi = aie_interval(ies)
    np.testing.assert_allclose(value, np.mean([a.mean(0) for a in ies], 0))
    assert np.all(lo <= value) and np.all(value <= hi)
    _, lo2, hi2 = aie_interval(_planted(noise=0.01))
    assert (hi2 - lo2).mean() < (hi - lo).mean() / 5


def test_rank_stability_is_one_for_a_clear_signal_and_low_for_noise():
    clear = rank_stability(_planted(noise=0.01), k=2)
    assert all(r["overlap"] == 1.0 for r in clear)
    assert [r["n_prompts"] for r in clear] == [1, 2, 3, 5, 6]  # up to half the prompts (12 per task)
    noise = rank_stability([np.random.default_rng(s).normal(size=(12, 6, 5)) for s in range(2)], k=2)
    assert max(r["overlap"] for r in noise) < 0.5


def test_concentration_counts_the_planted_heads_share_against_chance():
    v, lo, hi = concentration(_planted(noise=0.01), k=2)
    assert v == pytest.approx(30 / 2, rel=0.05)  # all the positive AIE in 2 of 30 heads: 15x their share
    assert lo <= v <= hi
    flat = [np.ones((12, 6, 5)) + np.random.default_rng(s).normal(0, 0.01, (12, 6, 5)) for s in range(2)]
    assert concentration(flat, k=2)[0] == pytest.approx(1.0, abs=0.05)  # every head alike: no concentration
    with pytest.raises(IclabError, match="at least 4 corrupted prompts"):
        concentration([a[:3] for a in flat], k=2)


def test_top_depth_is_the_median_layer_fraction():
    v, lo, hi = top_depth(_planted(noise=0.01), k=2)
    assert v == pytest.approx(np.median([2 / 6, 3 / 6]))
    assert lo == hi == v  # the ranking never changes under resampling


def test_shuffled_labels_permute_the_outputs_only():
    demos = tuple((f"x{i}", f"y{i}") for i in range(10))
    out = shuffled(demos, np.random.default_rng(0))
    assert [x for x, _ in out] == [x for x, _ in demos]
    assert sorted(y for _, y in out) == sorted(y for _, y in demos)
    assert [y for _, y in out] != [y for _, y in demos]


def test_contains_answer_needs_a_whole_word():
    assert contains_answer(' "hot" means cold, the opposite', ("cold",))
    assert not contains_answer(" it means colder", ("cold",))
    assert contains_answer("Paris.", ("Paris",))
    assert not contains_answer("anything", ("",))


@pytest.fixture(scope="module")
def tiny():
    lm = tiny_lm("llama")
    tmpl = get_template("qa")
    prepared = prepare_task(get_task("algorithmic_to_upper"), lm.tokenizer, tmpl, scoring="full")
    return TaskVectorRunner(lm, batch_size=8), prepared, tmpl


def test_first_answer_tokens_are_the_answers_first_tokens(tiny):
    runner, prepared, tmpl = tiny
    prompts = [tmpl.query(x) for x, _ in prepared.pairs[:4]]
    ids = first_answer_tokens(runner, prompts, [y for _, y in prepared.pairs[:4]], tmpl.answer_space)
    whole = runner.lm.tokenizer([p + tmpl.answer_space + y for p, (_, y) in zip(prompts, prepared.pairs[:4])])
    for i, p in enumerate(prompts):
        assert int(ids[i]) == whole["input_ids"][i][len(runner.lm.tokenizer(p)["input_ids"])]


def test_head_effects_shapes_and_dev_only(tiny):
    runner, prepared, tmpl = tiny
    eff = head_effects(runner, prepared, tmpl, seed=0, n_clean=3, n_corrupt=4, shots=3)
    L, H, d = head_geometry(runner.model)
    assert eff.means.shape == (L, H, d) and eff.ie.shape == (4, L, H)
    assert universal_heads([eff], 3) == universal_heads([eff, eff], 3)


def test_a_zero_function_vector_changes_nothing_and_conditions_share_episodes(tiny):
    runner, prepared, tmpl = tiny
    tv = evaluate_task(runner, prepared, tmpl, seed=0, n_dev=3, n_test=5, n_baseline=3, k=3)
    zero = torch.zeros(runner.lm.model.config.hidden_size)
    res = evaluate_function_vector(runner, prepared, tmpl, tv, zero, layer=1, seed=0)
    assert set(res.correct) == {"zero_shot", "icl", "task_vector", "fv_zero_shot", "icl_shuffled", "fv_shuffled"}
    assert all(len(v) == 5 for v in res.correct.values())
    np.testing.assert_array_equal(res.correct["fv_zero_shot"], res.correct["zero_shot"])
    np.testing.assert_array_equal(res.correct["fv_shuffled"], res.correct["icl_shuffled"])
    preds = pd.DataFrame(res.records)
    for c in ("zero_shot", "fv_zero_shot", "icl", "task_vector"):  # the same test queries, in the same order
        assert preds[preds["condition"] == c]["query"].tolist() == [e["query"] for e in tv.episodes["test"]]
    for t in range(3):
        np.testing.assert_array_equal(res.natural[f"{t}:fv"], res.natural[f"{t}:none"])


def _run(tmp_path, name="taskvectors.function_vectors", **overrides):
    exp = get_experiment(name)
    cfg = exp.make_config("quick", {"model": "tiny:llama", "tasks": "algorithmic_to_upper,algorithmic_to_lower",
                                    "scoring": "full", "n_dev": 3, "n_test": 4, "n_baseline": 3, "k": 3, "n_clean": 3,
                                    "n_corrupt": 4, "device": "cpu", **overrides})
    return execute(exp, cfg, tmp_path / "runs", preset="quick", quiet=True)


def test_function_vector_experiment_end_to_end(tmp_path):
    res = _run(tmp_path)
    assert res.status == "done", res.error
    path = Path(res.path)
    assert {p.stem for p in (path / "figures").glob("*.png")} == {"aie_heatmap", "top_heads", "layers", "tv_vs_fv",
                                                                  "portability", "stability"}
    claims = {c["name"]: c for c in json.loads((path / "summary.json").read_text())["claims"]}
    assert {c["kind"] for c in claims.values()} == {"paper-shape", "engineering"}
    heads = pd.read_csv(path / "tables" / "heads.csv")
    assert len(heads) == 3 * 4 and heads["in_fv"].sum() == 10
    timing = json.loads((path / "data" / "timing.json").read_text())
    assert timing["aie_naive_tokens"] > timing["aie_tokens"]


def test_profile_command_writes_one_page(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from iclab.cli import app

    out = CliRunner().invoke(app, ["profile", "tiny:gpt2", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"),
                                   "--tasks", "algorithmic_to_upper,algorithmic_next_letter", "--scoring", "full",
                                   "--n_dev", "3", "--n_test", "4", "--n_baseline", "3", "--k", "3", "--n_clean", "3",
                                   "--n_corrupt", "4", "-q"])
    assert out.exit_code == 0, out.output
    page = Path(out.output.split("profile:")[-1].split()[0])
    assert page.is_file() and "categories" in page.read_text()


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(IclabError, match="n_top_heads = 13, but tiny:llama has 12 heads"):
        _run(tmp_path, n_top_heads=13)
    assert not any((tmp_path / "runs").glob("*/*/DONE"))
    lm = tiny_lm("llama")
    for layer in lm.model.model.layers:  # a projection under a name iclab does not know
        layer.self_attn.proj_elsewhere = layer.self_attn.o_proj
        del layer.self_attn.o_proj
    with pytest.raises(IclabError, match="attention heads cannot be located"):
        head_geometry(lm.model)
