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

from iclab.spinglass._analysis import population_optimum
from iclab.spinglass._data import features, sample_prompts, sufficient_stats_from
from iclab.spinglass.experiments import fig4a, figs6, figs8, pool
from iclab.spinglass._train import lr_factor
from iclab.runtime import Results, RunContext, get_experiment

from ._run import run




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
    Ps, Ns = [20, 140, 500, 980], [2, 20, 100]
    out, df, claims = run("spinglass.fig4a", tmp_path, Ps=Ps, Ns=Ns, repeats=5)
    assert len(df) == len(Ps) * len(Ns)
    grid = df.pivot(index="N", columns="P", values="cr_amp")
    assert grid.loc[100, 980] > grid.loc[100, 500] > grid.loc[100, 140] > 0
    assert grid.loc[100, 980] > grid.loc[2, 980]
    assert math.isnan(grid.loc[2, 20])  # smallest P and N: AMP blows up (blank cell)
    ridge = df.pivot(index="N", columns="P", values="cr_ridge")
    assert (np.diff(ridge.loc[100].to_numpy()) > 0).all()  # exact ground state: monotone in P
    for c in claims.values():
        assert c["verdict"] in ("reproduced", "differs", "inconclusive", "holds", "fails", "reported")
    # every saved cell of the paper on this grid is a paper-value claim with its declared tolerance
    cells = {n: c for n, c in claims.items() if n.startswith("CR at N=") and c["kind"] == "paper-value"}
    assert {"CR at N=100, P=980", "CR at N=20, P=500", "CR at N=2, P=980"} <= set(cells)
    assert all(c["tolerance"] == fig4a.CR_TOL and c["source"] for c in cells.values())
    # we run the published script: it matches the script's re-run (0.75) and not the saved heatmap (0.865)
    assert claims["CR at N=100, P=980 vs the published script's re-run"]["verdict"] == "holds"
    assert claims["CR at N=100, P=980"]["verdict"] == "differs"
    assert claims["smallest P with a converged AMP run, N=2"]["kind"] == "paper-value"
    assert claim(claims, "CR grows with P")["kind"] == "paper-shape"
    assert 0 < df.n_converged.sum() < len(df) * 5
    assert (out / "figures" / "phase_diagram.png").is_file()


def test_fig4a_quick_grid_holds_the_paper_cells():
    quick = get_experiment("spinglass.fig4a").presets["quick"]
    for N, P in fig4a.PAPER_CR:
        assert N in quick["Ns"] and P in quick["Ps"]
    assert set(fig4a.PAPER_FIRST_CONVERGED_P) <= set(quick["Ns"])


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
    _, df, claims = run("spinglass.figS6", tmp_path, restarts=200, n_curves=10, chunk=100)
    assert len(df) == 200
    assert (df.gram_lambda_min > 0).all()
    assert df.rms_to_exact.median() < 0.05  # init is at rms distance ~1.2
    assert df.W21_rms.median() < 0.05
    assert abs(df.final_distance.median() - df.exact_distance.median()) < 0.02
    assert (df.initial_distance > df.final_distance).all()
    mode = claim(claims, "mode of the final-distance")
    assert mode["kind"] == "paper-value" and mode["paper_value"] == figs6.PAPER_MODE and mode["verdict"] == "reproduced"
    assert claims["largest initial distance among 50 restarts"]["ours"]["n"] == 4  # 200 restarts: 4 sets of 50
    tail = claims["fraction of restarts ending at distance ≥ 0.15"]
    assert tail["ours"]["value"] == pytest.approx((df.final_distance >= 0.15).mean())
    assert claim(claims, "smallest eigenvalue of the least-squares Gram")["verdict"] == "holds"


# -----------------------------------------------------------------------------
# Fig. S8


def test_figs8_small_run_trains_saves_curves_and_half_budgets(tmp_path):
    out, df, claims = run("spinglass.figS8", tmp_path, Ns=[40, 60], P=1500, P_test=300, epochs=400,
                          archs=["sla", "fla", "sa"], sa_epochs=2)
    assert {"sla", "fla", "sa", "amp", "ridge", "zero"} == set(df.model)
    e = df[df.repeat == 0].pivot(index="N", columns="model", values="test_mse")
    assert ((e.sla / e.ridge - 1).abs() < 0.05).all()  # Adam reaches its stationary point
    assert (e.sla < e.zero).all() and (e.fla < e.zero).all()
    curves = np.load(out / "arrays" / "curves.npz")
    for arch in ("sla", "fla"):  # constant-rate full batch: the half-budget value is the same run at T/2
        row = df[(df.model == arch) & (df.N == 40) & (df.repeat == 0)].iloc[0]
        steps, test = curves[f"{arch}_N40_r0_steps"], curves[f"{arch}_N40_r0_test"]
        assert row.half_steps == 200 and steps[-1] == 400
        assert test[list(steps).index(200)] == pytest.approx(row.half_test_mse)
    sa = df[df.model == "sa"]
    assert (sa.half_steps == math.ceil(1500 / 64)).all() and sa.half_test_mse.notna().all()
    kinds = {c["kind"] for c in claims.values()}
    assert kinds == {"paper-value", "paper-shape", "sanity", "engineering"}
    assert claims["SLA test error vs N: max relative deviation from the paper's curve"]["paper_value"] == \
        pytest.approx(figs8.paper_at("sla", [40, 60]).tolist(), abs=1e-4)


def synthetic_figs8(tmp_path: Path, amp_nan: bool) -> dict:
    """Verdicts of Fig. S8 on a hand-made metrics table: SLA on the paper's curve, SA undertrained (the half
    budget is 20% worse), TF on the trivial plateau (flat, at y_hat = 0's error); AMP on the paper's curve,
    or diverged at N = 100 in one repeat."""
    Ns, rows = [50, 100], []
    for r in range(3):
        for j, N in enumerate(Ns):
            amp, sla = figs8.paper_at("amp", [N])[0], figs8.paper_at("sla", [N])[0] * (1 + 0.005 * (r - 1))
            diverged = amp_nan and N == 100 and r == 1
            rows += [dict(N=N, repeat=r, model="amp", test_mse=np.nan if diverged else amp,
                          amp_converged=0.0 if diverged else 1.0),
                     dict(N=N, repeat=r, model="ridge", test_mse=sla), dict(N=N, repeat=r, model="zero", test_mse=1.0),
                     dict(N=N, repeat=r, model="sla", test_mse=sla, half_test_mse=sla, half_steps=300),
                     dict(N=N, repeat=r, model="sa", test_mse=0.5 + 0.01 * r, half_test_mse=0.6 + 0.012 * r,
                          half_steps=100),
                     dict(N=N, repeat=r, model="tf", test_mse=0.99, half_test_mse=0.99 + 0.001 * r, half_steps=100)]
    (tmp_path / "tables").mkdir()
    (tmp_path / "data").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "tables" / "metrics.csv", index=False)
    (tmp_path / "data" / "timing.json").write_text(json.dumps({"seconds": 1.0, "cpu_seconds": 1.0, "train_seconds": {"sla": 1.0}}))
    (tmp_path / "computed.json").write_text(json.dumps({"format": 2, "tables": ["metrics"], "notes": []}))
    exp = get_experiment("spinglass.figS8")
    cfg = exp.make_config("quick", {"Ns": Ns, "archs": ["sla", "sa", "tf"], "repeats": 3})
    ctx = RunContext(tmp_path, exp.name, quiet=True, phase="verdicts")
    exp.judge(cfg, Results(tmp_path), ctx)
    return {c.name: c for c in ctx.claims}


def test_figs8_undertrained_or_plateaued_models_are_never_judged(tmp_path):
    c = synthetic_figs8(tmp_path, amp_nan=False)
    assert c["SLA converged: test-error gain from doubling the budget (max over N)"].verdict == "holds"
    assert c["SLA test error vs N: max relative deviation from the paper's curve"].verdict == "reproduced"
    assert c["SLA follows the AMP curve: max |test error / AMP − 1| over N"].verdict == "reproduced"
    assert c["SA converged: test-error gain from doubling the budget (max over N)"].verdict == "fails"
    # TF's flat curve passes the doubling check, but it never left the trivial predictor: not trained either
    assert c["TF converged: test-error gain from doubling the budget (max over N)"].verdict == "holds"
    assert c["TF learned in context: test error / trivial predictor's (max over N)"].verdict == "fails"
    for arch in ("SA", "TF"):
        for name in (f"{arch} test error vs N: max relative deviation from the paper's curve",
                     f"{arch} / SLA test error at N=100"):
            assert c[name].verdict == "inconclusive" and math.isnan(c[name].ours.value)
            assert "undertrained" in c[name].note and "would be" in c[name].note
    assert "would be 2.71" in c["SA / SLA test error at N=100"].note  # the undertrained ratio, not judged


def test_figs8_amp_divergence_is_never_replaced(tmp_path):
    c = synthetic_figs8(tmp_path, amp_nan=True)
    assert c["AMP converged at every N and repeat"].verdict == "fails"
    for name in ("SLA follows the AMP curve: max |test error / AMP − 1| over N",
                 "AMP test error vs N: max relative deviation from the paper's AMP curve",
                 "AMP − (D+1)/(N+D+1), mean over N"):
        assert c[name].verdict == "inconclusive" and math.isnan(c[name].ours.value)
        assert "N=100 (1 of 3 repeats)" in c[name].note
    # the ridge comparison is its own sanity claim, and the SLA paper-value claim does not depend on AMP
    assert c["SLA (Adam) vs its exact stationary point, ridge at λ0 = wd/2: max |test error ratio − 1|"].kind == "sanity"
    assert c["SLA test error vs N: max relative deviation from the paper's curve"].verdict == "reproduced"


def test_figs8_softmax_schedule_warms_up_then_decays_to_zero():
    assert [lr_factor(t, 100, "cosine", 10) for t in (0, 9)] == [0.1, 1.0]  # linear warm-up
    assert lr_factor(10, 100, "cosine", 10) == 1.0 and lr_factor(55, 100, "cosine", 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, "cosine", 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(99, 100, "constant") == 1.0  # the paper's linear protocol: no schedule
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0, 10, "linear")


def test_figs8_quick_prompt_lengths_lie_on_every_paper_curve():
    quick = get_experiment("spinglass.figS8").presets["quick"]
    for model in figs8.PAPER:
        assert np.isfinite(figs8.paper_at(model, quick["Ns"])).all()
    assert figs8.paper_at("sla", [100])[0] == pytest.approx(0.1885)  # on the saved grid: the saved value
    assert math.isnan(figs8.paper_at("tf", [200])[0])  # outside a curve's range: no paper value


# -----------------------------------------------------------------------------
# finite task pool


def test_pool_class_optimum_is_the_population_optimum_without_noise():
    D, N = 4, 12
    W = pool.class_optimum(D, N, 2**15, 1e-12, torch.Generator().manual_seed(0))
    target = population_optimum(D, N)
    assert (W[:, :D] - target[:, :D]).abs().max() < 0.03  # the last column never reaches y_hat


def test_pool_log_crossing_interpolates_in_log_log():
    x, e = np.array([1.0, 10.0, 100.0]), np.array([1.0, 0.1, 0.01])
    assert pool.log_crossing(x, e, 0.1 ** 0.5) == pytest.approx(10 ** 0.5)
    assert math.isnan(pool.log_crossing(x, e, 1e-3))  # never reached


def test_pool_memorises_at_small_M_and_learns_in_context_at_large_M(tmp_path):
    _, df, claims = run("spinglass.pool", tmp_path, Ms=[2, 8, 128], P=4096, P_test=512, P_opt=2**14, repeats=2)
    m = df.groupby("M").mean(numeric_only=True)
    assert set(df.setting) == {"pool", "single"} and set(m.index) == {2, 8, 128, 4096}
    assert m.loc[2, "model_fresh"] > 2 * m.loc[128, "model_fresh"]  # memorisation fails on new tasks
    assert m.loc[2, "model_pool"] < m.loc[2, "model_fresh"] / 2  # ...but fits the pool
    assert abs(m.loc[128, "model_fresh"] / m.loc[128, "optimum_fresh"] - 1) < 0.1  # reaches its class optimum
    assert m.loc[2, "dmmse_pool"] < m.loc[2, "ridge_pool"]  # Bayes with the right prior wins on the pool
    assert (df.model_fresh > df.ridge_fresh).all()  # ...and ridge on fresh tasks
    assert ((df.model_fresh / df.exact_fresh - 1).abs() < 0.01).all()  # Adam reached its stationary point
    ridge = claims["fresh-task MSE / ridge − 1 at the largest M=128"]
    assert ridge["kind"] == "paper-shape" and ridge["expect"] == ["<=", pool.RIDGE_REL_TOL]
    assert ridge["ours"]["value"] > 1  # one-layer linear attention stays far above ridge
    assert claims["gap to ridge on fresh tasks: largest M / smallest M"]["ours"]["value"] < pool.GAP_SHRINK_MAX
    assert claims["dMMSE regime at the smallest M=2: fresh-task position between ridge (0) and dMMSE (1)"][
        "ours"]["value"] > pool.DMMSE_SIDE_MIN  # (2 repeats: intervals too wide for verdicts here)
    assert {c["kind"] for c in claims.values()} == {"paper-shape", "sanity", "engineering"}


# -----------------------------------------------------------------------------
# paper presets (slow)


@pytest.mark.slow
def test_fig4a_paper(tmp_path):
    _, _, claims = run("spinglass.fig4a", tmp_path, preset="paper")
    assert claim(claims, "CR grows with P")["verdict"] == "reproduced"
    assert claim(claims, "CR grows with N")["verdict"] == "reproduced"
    assert claims["CR at N=100, P=980 vs the published script's re-run"]["verdict"] == "holds"


@pytest.mark.slow
def test_figs6_paper(tmp_path):
    _, _, claims = run("spinglass.figS6", tmp_path, preset="paper")
    assert claim(claims, "mode of the final-distance")["verdict"] == "reproduced"
    assert claim(claims, "smallest eigenvalue of the least-squares Gram")["verdict"] == "holds"
    # "all < 0.15" differs: ~1% of the exact solutions C^-1 are themselves at distance >= 0.15
    assert claims["fraction of restarts ending at distance ≥ 0.15"]["verdict"] == "differs"


@pytest.mark.slow
def test_figs8_paper(tmp_path):
    """One paper-preset run of Fig. S8 (hours on 2 cores): SLA reproduces the paper; an architecture whose
    training checks do not both hold is never judged against the paper."""
    _, _, claims = run("spinglass.figS8", tmp_path, preset="paper")
    assert claims["SLA converged: test-error gain from doubling the budget (max over N)"]["verdict"] == "holds"
    assert claims["SLA test error vs N: max relative deviation from the paper's curve"]["verdict"] == "reproduced"
    for arch in ("SLA", "FLA", "MHLA", "SA", "TF"):
        trained = all(claims[f"{arch} {what}"]["verdict"] == "holds" for what in (
            "converged: test-error gain from doubling the budget (max over N)",
            "learned in context: test error / trivial predictor's (max over N)"))
        judged = [c for n, c in claims.items() if n.startswith(f"{arch} ") and c["kind"].startswith("paper")]
        assert judged and (trained or all(c["verdict"] == "inconclusive" for c in judged))


@pytest.mark.slow
def test_pool_paper(tmp_path):
    _, _, claims = run("spinglass.pool", tmp_path, preset="paper")
    assert claims["gap to ridge on fresh tasks: largest M / smallest M"]["verdict"] == "reproduced"
    assert claims["fresh-task MSE / class optimum − 1 at the largest M=16384"]["verdict"] == "reproduced"
    assert claims["fresh-task MSE / ridge − 1 at the largest M=16384"]["verdict"] == "differs"  # architectural
    assert claims["Adam vs its exact stationary point (S + wd/2 I)^-1 h: max |relative test-MSE difference|"][
        "verdict"] == "holds"
