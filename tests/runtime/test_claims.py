"""Claims are data and the runtime computes their verdicts; `iclab redraw` rebuilds a run from its saved results."""

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from iclab.runtime import Claim, Estimate, IclabError, execute, get_experiment, judge, redraw
from iclab.runtime._claims import count_verdicts
from iclab.runtime._experiment import RunContext

os.environ["ICLAB_EXPERIMENTS"] = "tests.runtime.toy"


def value_claim(ours: Estimate, paper_value: float = 1.0, tol: float = 0.1) -> Claim:
    return Claim("x", "paper-value", "x is one", ours, paper_value=paper_value, source="Fig. 0", tolerance=tol)


def test_verdict_follows_the_interval_against_the_tolerance():
    assert judge(value_claim(Estimate(1.02, 0.95, 1.08))) == "reproduced"
    assert judge(value_claim(Estimate(1.02, 0.95, 1.08), paper_value=2.0)) == "differs"  # a planted wrong value
    assert judge(value_claim(Estimate(1.05, 0.98, 1.15))) == "inconclusive"  # straddles 1.1
    assert judge(value_claim(Estimate(float("nan")))) == "inconclusive"
    assert judge(value_claim(Estimate.single(1.0))) == "reproduced"  # a point is judged as itself
    rel = Claim("x", "paper-value", "x", Estimate(1.9, 1.85, 1.95), paper_value=2.0, source="T1", rel_tolerance=0.1)
    assert rel.verdict == "reproduced" and rel.target == "within ±10% of 2"


@pytest.mark.parametrize("expect, interval, verdict", [
    ((">", 0), (0.1, 0.3), "reproduced"),
    ((">", 0), (-0.2, -0.1), "differs"),
    ((">", 0), (-0.1, 0.2), "inconclusive"),
    ((">", 0), (0.0, 0.2), "inconclusive"),  # strict: 0 itself is outside
    ((">=", 0), (0.0, 0.2), "reproduced"),
    (("<=", 0.02), (0.021, 0.03), "differs"),
    (("between", 0.5, 1.0), (0.6, 0.9), "reproduced"),
    (("between", 0.5, 1.0), (0.9, 1.2), "inconclusive"),
])
def test_shape_claims_judge_a_declared_range(expect, interval, verdict):
    c = Claim("s", "paper-shape", "it grows", Estimate(sum(interval) / 2, *interval), source="Fig. 2", expect=expect)
    assert c.verdict == verdict


def test_sanity_and_engineering_have_their_own_words():
    assert Claim("id", "sanity", "identity", Estimate.exact(1e-12), expect=("<", 1e-9)).verdict == "holds"
    assert Claim("id", "sanity", "identity", Estimate.exact(1e-3), expect=("<", 1e-9)).verdict == "fails"
    assert Claim("t", "engineering", "wall time", Estimate.single(3.0)).verdict == "reported"


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="paper-value", paper_value=1.0, source="Fig. 1"), "needs tolerance= or rel_tolerance="),
    (dict(kind="paper-value", paper_value=1.0, tolerance=0.1), "needs source="),
    (dict(kind="paper-shape", expect=(">", 0)), "needs source="),
    (dict(kind="paper-shape", source="Fig. 2"), "needs expect="),
    (dict(kind="sanity"), "needs expect="),
    (dict(kind="paper-value", source="Fig. 1", tolerance=0.1), "needs paper_value="),
    (dict(kind="paper-value", paper_value=[1.0, 2.0], source="Fig. 1"), "curve needs expect="),
    (dict(kind="result"), "kind must be one of"),
    (dict(kind="sanity", expect=("~", 1)), "expect must be"),
    (dict(kind="sanity", expect=("between", 2, 1)), "lo <= hi"),
    (dict(kind="paper-value", paper_value=1.0, source="F", tolerance=-1), "tolerances must be >= 0"),
])
def test_malformed_claims_are_one_line_errors(kwargs, message):
    with pytest.raises(IclabError, match=message) as e:
        Claim("x", paper="p", ours=Estimate.single(1.0), **kwargs)
    assert "\n" not in str(e.value)


def test_ours_must_carry_its_uncertainty():
    with pytest.raises(IclabError, match="must be an Estimate"):
        Claim("x", "sanity", "p", 1.0, expect=("<", 2))  # type: ignore[arg-type]


def test_estimates_intervals():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 0.1, size=50)
    m = Estimate.mean(x)
    assert m.lo < 1.0 < m.hi and m.n == 50 and "t-interval" in m.method
    one = Estimate.mean([0.3])
    assert one.lo is None and "no interval" in one.method and one.interval == (0.3, 0.3)
    b = Estimate.bootstrap(x, seed=1)
    assert b.lo < x.mean() < b.hi and b == Estimate.bootstrap(x, seed=1)  # seeded: deterministic
    paired = Estimate.bootstrap(x, x - 0.5, statistic=lambda a, c: np.mean(a - c))
    assert paired.lo == paired.hi == pytest.approx(0.5)  # a constant difference has no spread
    p = Estimate.proportion(8, 10)
    assert p.value == 0.8 and 0.4 < p.lo < 0.8 < p.hi < 1.0
    assert math.isnan(Estimate.mean([]).value)


def test_bootstrap_leaves_out_resamples_where_the_statistic_is_undefined():
    """A rank correlation is undefined on a resample with one distinct value: those resamples are left out
    of the interval and counted in its method, instead of the interval collapsing onto the point."""
    from scipy import stats

    def rho(a, b):
        return float("nan") if np.ptp(a) == 0 else float(stats.spearmanr(a, b).statistic)

    rng = np.random.default_rng(0)
    a = np.r_[np.zeros(6), 1.0, 1.0]  # resamples without a 1 are constant
    b = a + rng.normal(0, 0.5, size=8)
    e = Estimate.bootstrap(a, b, statistic=rho, seed=0)
    assert e.lo < e.value <= e.hi and e.hi - e.lo > 0.1
    assert "resamples undefined, left out" in e.method


def test_claims_round_trip_and_verdicts_are_never_read_back():
    c = value_claim(Estimate(1.02, 0.95, 1.08))
    d = c.to_dict()
    assert d["verdict"] == "reproduced" and Claim.from_dict(d) == c
    d["verdict"] = "differs"  # a hand-edited verdict is ignored
    assert count_verdicts([d])["paper-value"] == {"reproduced": 1}


def test_experiments_cannot_claim_while_computing(tmp_path):
    ctx = RunContext(out_dir=tmp_path, experiment="test.toy")
    with pytest.raises(RuntimeError, match="verdicts step"):
        ctx.claim("x", kind="sanity", paper="p", ours=Estimate.exact(1), expect=("<", 2))


def run_toy(tmp_path, **overrides):
    exp = get_experiment("test.toy")
    res = execute(exp, exp.make_config("quick", overrides), tmp_path, quiet=True)
    assert res.status == "done", res.error
    return res


def test_a_planted_wrong_paper_value_flips_the_verdict(tmp_path):
    good = run_toy(tmp_path / "a", n=200)
    bad = run_toy(tmp_path / "b", n=200, paper_mean=5.0)
    summary = {p: json.loads((Path(r.path) / "summary.json").read_text()) for p, r in (("good", good), ("bad", bad))}
    assert {p: s["claims"][0]["verdict"] for p, s in summary.items()} == {"good": "reproduced", "bad": "differs"}
    assert summary["bad"]["format"] == 2


def test_redraw_rebuilds_figures_and_claims_and_keeps_tables(tmp_path):
    res = run_toy(tmp_path)
    run = tmp_path / "test.toy" / res.config_hash
    tables = {p.name: p.read_bytes() for p in (run / "tables").iterdir()}
    summary = json.loads((run / "summary.json").read_text())
    (run / "figures" / "draws.png").unlink()  # redraw must not need them: they are rebuilt
    for f in (run / "figures").iterdir():
        f.unlink()
    # DONE no longer matches; reseal as if the figures had never been drawn, then redraw
    from iclab.runtime._store import write_manifest

    write_manifest(run, "2026-01-01T00:00:00+00:00")
    redraw(run)
    assert {p.name: p.read_bytes() for p in (run / "tables").iterdir()} == tables
    assert (run / "figures" / "draws.png").is_file()
    assert json.loads((run / "summary.json").read_text()) == summary
    from iclab.runtime._store import is_complete

    assert is_complete(run, verify=True)


def test_redraw_refuses_unfinished_and_old_runs(tmp_path):
    with pytest.raises(IclabError, match="not a finished iclab run") as e:
        redraw(tmp_path)
    assert "\n" not in str(e.value)
    res = run_toy(tmp_path)
    old = tmp_path / "old"
    shutil.copytree(res.path, old)
    (old / "computed.json").unlink()
    from iclab.runtime._store import write_manifest

    write_manifest(old, "2026-01-01T00:00:00+00:00")
    with pytest.raises(IclabError, match=r"older iclab \(run format 1.*iclab run test.toy --force") as e:
        redraw(old)
    assert "\n" not in str(e.value)


def test_a_hint_can_neither_confirm_nor_refute_a_paper_claim():
    """An estimate on one training seed (its interval covers prompts, not training) leaves paper claims
    inconclusive, inside or outside the tolerance; checks of our own are judged as usual."""
    import dataclasses

    inside = Estimate(0.9, 0.88, 0.92, n=100, method="95% bootstrap over 100 episodes of one training seed")
    outside = Estimate(0.2, 0.18, 0.22, n=100, method=inside.method)
    for est, plain in ((inside, "reproduced"), (outside, "differs")):
        claim = Claim("x", "paper-shape", "ICL emerges", est, source="abstract", expect=(">", 0.5))
        assert claim.verdict == plain
        hinted = dataclasses.replace(claim, ours=dataclasses.replace(est, hint=True))
        assert hinted.verdict == "inconclusive"
        assert Claim.from_dict(hinted.to_dict()).verdict == "inconclusive"  # survives the round trip
    sanity = Claim("y", "sanity", "(ours) a check", dataclasses.replace(inside, hint=True), expect=(">", 0.5))
    assert sanity.verdict == "holds"
