"""Phase-diagram group: spinglass.fig4a, figS6, figS8 and the finite task pool (spinglass.pool).

Each experiment runs a reduced quick preset through the run store; the behaviour checked is
the paper's (or Raventós et al.'s) qualitative claim, so a wrong sign or a broken pipeline fails.
Paper-preset checks are marked slow.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from iclab.linear.data import features, sample_prompts, sufficient_stats_from
from iclab.linear.experiments import fig4a, figs6
from iclab.runtime import execute, get_experiment


def run(name: str, tmp_path: Path, preset: str = "quick", **overrides):
    exp = get_experiment(name)
    res = execute(exp, exp.make_config(preset, overrides), tmp_path, preset=preset, quiet=True)
    assert res.status == "done", res.error
    out = Path(res.path)
    assert (out / "DONE").is_file() and (out / "report.html").is_file()
    summary = json.loads((out / "summary.json").read_text())
    for fig in summary["figures"]:
        assert all((out / f).is_file() for f in fig["files"])
    assert summary["notes"], "every experiment documents its choices"
    claims = {c["name"]: c for c in summary["claims"]}
    return pd.read_csv(out / "tables" / "metrics.csv"), claims, out


def claim(claims: dict, prefix: str) -> dict:
    [c] = [c for name, c in claims.items() if name.startswith(prefix)]
    return c


# -----------------------------------------------------------------------------
# Fig. 4a


def test_nested_stats_are_prefix_statistics():
    D, N, Ps = 2, 5, [3, 8]
    S, h = fig4a.nested_stats(D, N, Ps, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)  # same stream, drawn segment by segment
    a, b = sample_prompts(D, N, 3, generator=gen), sample_prompts(D, N, 5, generator=gen)
    Z, y = torch.cat([a.Z, b.Z]), torch.cat([a.y, b.y])
    for k, P in enumerate(Ps):
        st = sufficient_stats_from(features(Z[:P]), y[:P])
        torch.testing.assert_close(S[k], st.S)
        torch.testing.assert_close(h[k], st.h)


def test_fig4a_contrast_grows_with_P_and_N(tmp_path):
    Ps, Ns = [20, 250, 500, 1000], [2, 30, 100]
    df, claims, out = run("spinglass.fig4a", tmp_path, Ps=Ps, Ns=Ns, repeats=2)
    assert len(df) == len(Ps) * len(Ns)
    grid = df.pivot(index="N", columns="P", values="cr_amp")
    assert grid.loc[100, 1000] > grid.loc[100, 250] > 0
    assert grid.loc[100, 1000] > grid.loc[2, 1000]
    assert math.isnan(grid.loc[2, 20])  # smallest P and N: AMP blows up (blank cell)
    ridge = df.pivot(index="N", columns="P", values="cr_ridge")
    assert (np.diff(ridge.loc[100].to_numpy()) > 0).all()  # exact ground state: monotone in P
    assert claim(claims, "CR grows with P")["passed"]
    assert claim(claims, "CR grows with N")["passed"]
    assert 0 < df.n_converged.sum() < len(df) * 2
    assert (out / "figures" / "phase_diagram.png").is_file()


# -----------------------------------------------------------------------------
# Fig. S6


def test_equation_group_loss_and_exact_solution():
    gen = torch.Generator().manual_seed(0)
    R, P, D = 4, 6, 5
    W11, W21 = torch.randn(R, D, D, generator=gen, dtype=torch.float64), torch.randn(R, D, generator=gen, dtype=torch.float64)
    w = torch.randn(R, P, D, generator=gen, dtype=torch.float64)
    X = torch.randn(R, D, 20, generator=gen, dtype=torch.float64)
    C = X @ X.mT / 20
    explicit = (figs6.residuals(W11, W21, w, C) ** 2).mean((1, 2, 3))
    fast = figs6.mse_residual(W11, W21, w.mean(1), (w * w).sum(-1).mean(1), C)
    torch.testing.assert_close(fast, explicit, rtol=1e-12, atol=0)
    exact = figs6.residuals(torch.linalg.inv(C), torch.zeros(R, D, dtype=C.dtype), w, C)
    assert exact.abs().max() < 1e-10  # (C^-1, 0) solves every equation
    assert (figs6.gram_lambda_min(w, C) > 0).all()
    assert (figs6.gram_lambda_min(w[:, :1].expand(R, P, D).clone(), C) < 1e-9).all()  # equal tasks: not unique


def test_figs6_restarts_reach_the_unique_solution(tmp_path):
    df, claims, _ = run("spinglass.figS6", tmp_path, restarts=200, n_curves=10, chunk=100)
    assert len(df) == 200
    assert (df.gram_lambda_min > 0).all()
    assert df.rms_to_exact.median() < 0.05  # init is at rms distance ~1.2
    assert df.W21_rms.median() < 0.05
    assert abs(df.final_distance.median() - df.exact_distance.median()) < 0.02
    assert claim(claims, "mode of the final-distance")["passed"]


# -----------------------------------------------------------------------------
# Fig. S8


def test_figs8_linear_models_track_theory(tmp_path):
    df, claims, _ = run("spinglass.figS8", tmp_path, Ns=[40], P=1500, P_test=400, epochs=400,
                        archs=["sla", "fla", "sa"], softmax_epochs=2)
    models = set(df.model)
    assert {"sla", "fla", "sa", "amp", "ground_state", "closed_form"} <= models
    e = df.set_index("model")["test_mse"]
    assert abs(e["sla"] / e["ground_state"] - 1) < 0.05  # Adam reaches its stationary point
    assert e["closed_form"] < e["ground_state"] < 1.0
    assert e["sa"] > e["sla"]
    assert claim(claims, "SLA: max relative gap")["passed"]


# -----------------------------------------------------------------------------
# finite task pool


def test_pool_memorises_at_small_M_and_learns_in_context_at_large_M(tmp_path):
    df, claims, _ = run("spinglass.pool", tmp_path, Ms=[2, 8, 128], P=4096, P_test=512, repeats=1, epochs=1000)
    m = df.set_index("M")
    assert set(m.index) == {"2", "8", "128", "single"}
    assert m.loc["2", "model_fresh"] > 2 * m.loc["128", "model_fresh"]  # memorisation fails on new tasks
    assert m.loc["2", "model_pool"] < m.loc["2", "model_fresh"] / 2  # ...but fits the pool
    assert abs(m.loc["128", "model_fresh"] / m.loc["single", "model_fresh"] - 1) < 0.15
    assert m.loc["2", "dmmse_pool"] < m.loc["2", "ridge_pool"]  # Bayes with the right prior wins on the pool
    assert claim(claims, "fresh-task error / ridge")["passed"]
    assert claim(claims, "task generalisation gap")["passed"]


# -----------------------------------------------------------------------------
# paper presets (slow)


@pytest.mark.slow
def test_fig4a_paper(tmp_path):
    _, claims, _ = run("spinglass.fig4a", tmp_path, preset="paper")
    assert claim(claims, "CR grows with P")["passed"]
    assert claim(claims, "CR grows with N")["passed"]


@pytest.mark.slow
def test_figs6_paper(tmp_path):
    _, claims, _ = run("spinglass.figS6", tmp_path, preset="paper")
    assert claim(claims, "mode of the final-distance")["passed"]
    assert claim(claims, "rms distance of the Adam end point")["passed"]
    assert claim(claims, "min over restarts")["passed"]
    # "all < 0.15" is not asserted: ~1% of the exact solutions C^-1 are themselves at distance >= 0.15


@pytest.mark.slow
def test_figs8_paper(figs8_paper_claims):
    assert claim(figs8_paper_claims, "SLA: max relative gap")["passed"]
    for arch in ("SA", "TF"):
        assert claim(figs8_paper_claims, f"{arch} / SLA")["passed"]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="not reproduced (measured 2026-11-22: FLA 0.122, MHLA 0.177 > 0.1); "
                                       "see the figS8 report and docs/spinglass.md")
def test_figs8_paper_fla_mhla_follow_amp(figs8_paper_claims):
    for arch in ("FLA", "MHLA"):
        assert claim(figs8_paper_claims, f"{arch}: max relative gap")["passed"]


@pytest.fixture(scope="module")
def figs8_paper_claims(tmp_path_factory):
    """One paper-preset run of Fig. S8 (about 35 min on 2 cores), shared by the tests above."""
    _, claims, _ = run("spinglass.figS8", tmp_path_factory.mktemp("s8"), preset="paper")
    return claims


@pytest.mark.slow
def test_pool_paper(tmp_path):
    _, claims, _ = run("spinglass.pool", tmp_path, preset="paper")
    assert claim(claims, "fresh-task error / ridge")["passed"]
    assert claim(claims, "task generalisation gap")["passed"]
    assert claim(claims, "fresh-task error at the largest M")["passed"]
