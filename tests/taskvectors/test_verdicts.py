"""The evidence behind the task-vector verdicts: the task filter on counts, the paper's averages, the
bootstrap intervals, and each experiment's compute -> figures -> verdicts pipeline on a tiny random model
(redrawn from its saved results with byte-identical tables)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iclab.runtime import Claim, execute, get_experiment, redraw
from iclab.runtime._claims import KINDS
from iclab.taskvectors._evaluate import TaskResult
from iclab.taskvectors.experiments import _common
from iclab.taskvectors._method import TaskVectorRunner
from iclab.taskvectors._paper import PAPER_MODELS, paper_model_means, paper_reference, paper_tv_over_icl
from iclab.taskvectors._stats import accuracy_estimate, passes_filter, ratio_of_means, two_level_estimate

from ..models.tiny import tiny_lm

# -- the paper's filter, on counts ---------------------------------------------------------------


def test_a_gap_of_exactly_020_passes_the_filter():
    """0.30 vs 0.10 is a gap of exactly 0.20, which the paper keeps; in floating point 0.3 - 0.1 < 0.2."""
    assert not (15 / 50 - 10 / 100 >= 0.20)  # what the float comparison did: the task was dropped
    assert passes_filter(15, 50, 10, 100)
    assert passes_filter(3, 10, 1, 10)
    assert not passes_filter(14, 50, 10, 100)  # 0.28 - 0.10 < 0.20
    assert not passes_filter(0, 0, 0, 10)  # no prompts: nothing to keep


def _result(task: str, correct: dict[str, int], n: dict[str, int], episode_seed: int = 0) -> TaskResult:
    return TaskResult(task=task, category="algorithmic", n_pairs=26, n_pairs_before_filter=26, leading_space=False,
                      dev_curve=np.array([0.0, 0.5, 0.25]), best_layer=1, episode_seed=episode_seed,
                      correct={c: np.arange(n[c]) < correct[c] for c in correct})


N = {"baseline": 100, "icl": 50, "task_vector": 50, "dev_baseline": 10, "dev_icl": 10}


def test_task_table_decides_the_filter_on_dev_counts():
    exact = _result("algorithmic_to_upper", {"baseline": 10, "icl": 15, "task_vector": 12, "dev_baseline": 1,
                                             "dev_icl": 3}, N)  # both gaps exactly 0.20
    test_only = _result("algorithmic_to_lower", {"baseline": 0, "icl": 50, "task_vector": 40, "dev_baseline": 2,
                                                 "dev_icl": 3}, N)  # dev gap 0.10: out, whatever test says
    df = _common.task_table([exact, test_only]).set_index("task")
    assert list(df["kept"]) == [True, False] and list(df["kept_on_test"]) == [True, True]
    assert df.loc["algorithmic_to_upper", "icl"] == pytest.approx(0.30)
    assert df.loc["algorithmic_to_upper", "baseline"] == pytest.approx(0.10)
    old_float_filter = df["icl"] - df["baseline"] >= 0.20  # the former summary: drops the exact gap
    assert not old_float_filter["algorithmic_to_upper"]
    assert df.loc["algorithmic_to_upper", "paper_task_vector"] == paper_reference("algorithmic_to_upper")["paper_task_vector"]


def test_task_table_pools_episode_seeds():
    a = _result("algorithmic_to_upper", {"baseline": 10, "icl": 15, "task_vector": 12, "dev_baseline": 1,
                                         "dev_icl": 3}, N, episode_seed=0)
    b = _result("algorithmic_to_upper", {"baseline": 30, "icl": 45, "task_vector": 30, "dev_baseline": 0,
                                         "dev_icl": 9}, N, episode_seed=1)
    b.best_layer = 2
    (row,) = _common.task_table([a, b]).to_dict("records")
    assert row["episode_seeds"] == 2 and row["best_layers"] == "1 2" and row["icl_n"] == 100
    assert row["icl"] == pytest.approx(0.60) and row["baseline"] == pytest.approx(0.20)
    assert row["icl_lo"] <= row["icl"] <= row["icl_hi"] and row["icl_hi"] - row["icl_lo"] > 0.05


def test_one_layer_per_task_is_chosen_on_the_pooled_dev_curves():
    """vocab's "dev layer + 2" and tsne's layer come from dev curves only, never from test scores."""
    a = _result("algorithmic_to_upper", {c: 0 for c in N}, N, episode_seed=0)  # dev curve [0, 0.5, 0.25]
    b = _result("algorithmic_to_upper", {c: N[c] for c in N}, N, episode_seed=1)
    b.dev_curve = np.array([0.0, 0.2, 0.9])
    assert _common.pooled_layer([a]) == 1 and _common.pooled_layer([a, b]) == 2  # mean [0, 0.35, 0.575]
    b.dev_curve = np.array([0.0, 0.5, 0.25])
    assert _common.pooled_layer([a, b]) == 1  # the test scores of b (all correct) play no part


def test_summary_on_saved_predictions_reads_back_from_csv(tmp_path):
    results = [_result("algorithmic_to_upper", {"baseline": 10, "icl": 15, "task_vector": 12, "dev_baseline": 1,
                                                "dev_icl": 3}, N),
               _result("algorithmic_to_lower", {"baseline": 0, "icl": 40, "task_vector": 20, "dev_baseline": 0,
                                                "dev_icl": 8}, N)]
    for r in results:  # records as evaluate_task writes them
        r.records = [{"episode_seed": 0, "split": "test", "condition": c, "correct": bool(v)}
                     for c in ("baseline", "icl", "task_vector") for v in r.correct[c]]
    metrics, pred = _common.task_table(results), _common.predictions_frame(results)
    metrics.to_csv(tmp_path / "m.csv", index=False)
    pred.to_csv(tmp_path / "p.csv", index=False)
    fresh = _common.summary_row(metrics, pred)
    saved = _common.summary_row(pd.read_csv(tmp_path / "m.csv"), pd.read_csv(tmp_path / "p.csv"))
    assert fresh == saved
    assert fresh["n_tasks"] == 2 and fresh["tv_over_icl"] == pytest.approx((0.24 + 0.40) / (0.30 + 0.80))
    assert fresh["tv_over_icl_lo"] < fresh["tv_over_icl"] < fresh["tv_over_icl_hi"]


# -- the paper's numbers ---------------------------------------------------------------------------


def test_paper_averages_match_its_table():
    """§4.2: per-model filtered means from the appendix table (LLaMA 7B and 30B drop 'list first')."""
    means = paper_model_means()
    assert list(means) == list(PAPER_MODELS)
    assert [m[3] for m in means.values()] == [17, 18, 17, 18, 18, 18, 18]
    bl, tv, icl, _ = means["LLaMA 7B"]
    assert (round(bl, 3), round(tv, 3), round(icl, 3)) == (0.089, 0.764, 0.852)
    ratios = [tv / icl for _, tv, icl, _ in means.values()]
    assert 0.83 <= min(ratios) and max(ratios) <= 0.915
    assert paper_tv_over_icl() == pytest.approx(0.876, abs=5e-4)
    ref = paper_reference("knowledge_person_sport")  # a substitute: the numbers of the task it replaces
    assert ref["paper_task"] == "knowledge_person_language" and ref["paper_icl_min"] == 0.78


# -- intervals ---------------------------------------------------------------------------------------


def test_two_level_bootstrap():
    rng = np.random.default_rng(0)
    groups = [np.stack([rng.random(50) < p, rng.random(50) < 0.9], 1) for p in (0.5, 0.7, 0.9)]
    est = two_level_estimate(groups, ratio_of_means)
    assert est.value == pytest.approx(ratio_of_means(np.array([g.mean(0) for g in groups])))
    assert est.lo < est.value < est.hi and est.n == 3 and "3 tasks" in est.method
    assert two_level_estimate(groups, ratio_of_means) == est  # seeded
    constant = two_level_estimate([np.ones((10, 1)), np.ones((8, 1))])  # a zero-width bootstrap: Wilson instead
    assert constant.value == 1.0 and constant.hi == pytest.approx(1.0) and 0.75 < constant.lo < 0.9
    none = accuracy_estimate([False] * 16)
    assert none.value == 0.0 and none.lo == pytest.approx(0.0, abs=1e-12) and 0.15 < none.hi < 0.25
    assert "Wilson" in none.method
    assert np.isnan(two_level_estimate([]).value)
    acc = accuracy_estimate([True] * 30 + [False] * 20)
    assert acc.value == 0.6 and acc.lo < 0.6 < acc.hi and acc.n == 50


# -- every experiment end to end on a tiny random model ------------------------------------------------

TINY = dict(n_dev=4, n_test=4, n_baseline=4, k=2)
RUNS = {
    "taskvectors.main": dict(tasks="algorithmic_to_upper,algorithmic_next_letter", episode_seeds=2),
    "taskvectors.conflict": dict(pairs="algorithmic_next_letter:algorithmic_to_upper", episode_seeds=2),
    "taskvectors.vocab": dict(tasks="algorithmic_to_upper,algorithmic_next_letter"),
    "taskvectors.tsne": dict(tasks="algorithmic_to_upper,algorithmic_next_letter", perplexity=3),
    "taskvectors.templates": dict(tasks="algorithmic_to_upper,algorithmic_next_letter", templates="paper,qa"),
    "taskvectors.function_vectors": dict(tasks="algorithmic_to_upper,algorithmic_next_letter", scoring="full",
                                         n_clean=3, n_corrupt=4),
    "taskvectors.profile": dict(tasks="algorithmic_to_upper,algorithmic_next_letter", scoring="full", n_clean=3,
                                n_corrupt=4),
}
REPORTS_ONLY = {"taskvectors.profile"}  # a profile states facts about one model, no paper claim


def _digest(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for sub in ("tables", "arrays", "data") for f in sorted((root / sub).glob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def tiny():
    return tiny_lm("llama")


@pytest.mark.parametrize("name", sorted(RUNS))
def test_experiment_pipeline_on_a_tiny_model(name, tiny, tmp_path, monkeypatch):
    exp = get_experiment(name)
    module = {"function_vectors": "_fv", "profile": "_fv"}.get(name.split(".")[1], name.split(".")[1])
    monkeypatch.setattr(f"iclab.taskvectors.experiments.{module}.load_runner",
                        lambda cfg: TaskVectorRunner(tiny, batch_size=cfg.batch_size))
    res = execute(exp, exp.make_config("quick", {**TINY, **RUNS[name]}), tmp_path, quiet=True)
    assert res.status == "done", res.error
    out = Path(res.path)
    summary = json.loads((out / "summary.json").read_text())
    claims = [Claim.from_dict(d) for d in summary["claims"]]
    assert claims and {c.kind for c in claims} <= set(KINDS)
    assert any(c.kind in ("paper-value", "paper-shape") for c in claims) or name in REPORTS_ONLY
    assert all(c.verdict == d["verdict"] for c, d in zip(claims, summary["claims"]))
    assert any(c.name == "wall time (s)" and c.kind == "engineering" for c in claims)
    assert summary["figures"] and all((out / f).is_file() for fig in summary["figures"] for f in fig["files"])

    before = _digest(out)
    redraw(out)
    assert _digest(out) == before  # figures and verdicts only read what compute saved
    again = json.loads((out / "summary.json").read_text())["claims"]
    assert [(c["name"], c["ours"], c["verdict"]) for c in again] == [(c["name"], c["ours"], c["verdict"])
                                                                     for c in summary["claims"]]
