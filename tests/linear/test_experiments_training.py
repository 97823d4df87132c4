"""Training experiments (Figs. 2, 4b, S1, S4): small runs end to end, paper targets (slow)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from iclab.runtime import IclabError, execute, get_experiment


def run(name, tmp_path, preset="quick", **overrides):
    exp = get_experiment(name)
    res = execute(exp, exp.make_config(preset, overrides), tmp_path, preset=preset, quiet=True)
    assert res.status == "done", res.error
    path = Path(res.path)
    summary = json.loads((path / "summary.json").read_text())
    for fig in summary["figures"]:
        for f in fig["files"]:
            assert (path / f).is_file(), f
    claims = {c["name"]: c for c in summary["claims"]}
    return path, pd.read_csv(path / "tables" / "metrics.csv"), claims


def test_configs_reject_bad_values():
    with pytest.raises(IclabError, match="field 'D'"):
        get_experiment("spinglass.fig4b").make_config("quick", {"D": -3})
    with pytest.raises(IclabError, match="field 'Ns'"):
        get_experiment("spinglass.fig4b").make_config("quick", {"Ns": [20, 0]})
    with pytest.raises(IclabError, match="field 'cs'"):
        get_experiment("spinglass.figS4").make_config("quick", {"cs": [0.5, 1.0]})
    with pytest.raises(IclabError, match="field 'repeats'"):
        get_experiment("spinglass.figS1").make_config("quick", {"repeats": 0})
    with pytest.raises(IclabError, match="field 'Ps'"):
        get_experiment("spinglass.fig2").make_config("quick", {"Ps": [10]})


# -----------------------------------------------------------------------------
# experiments, small


def test_fig2_quick(tmp_path):
    path, df, claims = run("spinglass.fig2", tmp_path, repeats=3)
    assert set(df.P) == {10, 1000} and df.epoch.max() == 300
    assert claims["final test MSE at P=10"]["ours"] > 1  # memorisation: worse than predicting 0
    assert claims["final test MSE at P=1000"]["ours"] < 0.2  # near (D+1)/(N+D+1) = 0.099
    cr_small, cr_large = claims["contrast ratio of trained W, P=10 vs P=1000"]["ours"]
    assert cr_large > 0.8 > 0.3 > cr_small
    assert claims["AMP v on the last column"]["passed"] and claims["AMP converged"]["passed"]
    assert (path / "arrays" / "weights.npz").is_file()


def test_fig4b_small(tmp_path):
    _, df, claims = run("spinglass.fig4b", tmp_path, D=10, Ns=[10, 40, 160], P_train=3000, P_test=500, repeats=3,
                        epochs=3000)
    assert len(df) == 3 * 3 * 4  # N x repeats x {adam, amp, ridge, ridge_wd/2}
    assert claims["max |AMP − Adam| over N"]["ours"] < 0.03
    assert claims["Adam test error decreases with N"]["passed"]
    assert 0 < claims["Adam − (D+1)/(N+D+1) at N=160"]["ours"] < 0.05
    assert 0 < claims["AMP converged fraction"]["ours"] <= 1
    adam = df[df.method == "adam"].groupby("N").test_mse.mean()
    ridge_half = df[df.method == "ridge_wd/2"].groupby("N").test_mse.mean()
    assert (adam - ridge_half).abs().max() < 0.02  # Adam heads to its stationary point, λ0 = wd/2


def test_fig4b_amp_never_converging(tmp_path):
    """Low task diversity (P < D(D+1)): AMP diverges at every N; the run still finishes, AMP's curve NaN."""
    _, df, claims = run("spinglass.fig4b", tmp_path, D=10, Ns=[50], P_train=100, P_test=200, repeats=2,
                        epochs=200)
    assert not df[df.method == "amp"].converged.any()
    assert claims["AMP converged fraction"]["ours"] == 0
    assert claims["max |AMP − Adam| over N"]["passed"] is False


def test_figS1_small(tmp_path):
    _, df, claims = run("spinglass.figS1", tmp_path, D=6, N=50, alphas=[0.3, 0.6, 1.2, 2.0, 3.0],
                        curve_alphas=[0.3, 3.0], repeats=3, epochs=1000, P_test=300)
    assert len(df) == 5 * 2 * 3
    s = df.groupby(["model", "alpha"])[["train_mse", "test_mse"]].mean()
    for model in ("separate", "merged"):
        assert s.loc[(model, 0.3), "train_mse"] < 1e-6  # below the threshold both interpolate
        assert s.loc[(model, 3.0), "test_mse"] < 0.5 * s.loc[(model, 0.3), "test_mse"]
    assert claims["contrast ratio of W, α=0.3 vs α=3.0 (separate, merged)"]["passed"]
    assert abs(s.loc[("separate", 3.0), "test_mse"] - s.loc[("merged", 3.0), "test_mse"]) < 0.05  # coincide


def test_figS4_small(tmp_path):
    _, df, claims = run("spinglass.figS4", tmp_path, D=8, N=50, P_train=3000, P_test=500, cs=[0.05, 0.5, 0.9],
                        repeats=2, epochs=2000)
    mean = df.groupby(["method", "c"]).test_mse.mean()
    assert mean[("adam", 0.5)] > max(mean[("adam", 0.05)], mean[("adam", 0.9)])  # non-monotonic in c
    assert claims["max |ridge ground state − Adam| over c"]["ours"] < 0.05
    amp = df[df.method == "amp"].set_index("c")
    assert amp.loc[0.05, "converged"].all()  # weakly correlated tokens: AMP converges, close to Adam
    assert abs(mean[("amp", 0.05)] - mean[("adam", 0.05)]) < 0.03
    ratio = amp.groupby("c").coupling_ratio.median()  # a max over spins: heavy-tailed, so no finer ordering
    assert ratio[0.05] < 0.5 < min(ratio[0.5], ratio[0.9])  # correlated tokens strengthen the cavity feedback


# -----------------------------------------------------------------------------
# paper presets (minutes): the targets


@pytest.mark.slow
def test_fig4b_paper_targets(tmp_path):
    _, _, claims = run("spinglass.fig4b", tmp_path, preset="paper")
    assert claims["max |AMP − Adam| over N"]["passed"]
    assert claims["Adam − (D+1)/(N+D+1) at N=200"]["passed"]
    assert claims["AMP − (D+1)/(N+D+1) at N=200"]["passed"]


@pytest.mark.slow
def test_figS1_paper_peak(tmp_path):
    _, _, claims = run("spinglass.figS1", tmp_path, preset="paper")
    for model in ("separate", "merged"):
        assert claims[f"test-loss peak α on the paper grid ({model})"]["passed"], model
