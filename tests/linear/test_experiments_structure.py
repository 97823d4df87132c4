"""Structure experiments (Figs. 1, 3, S2, S3, S5, S7): their helpers, quick runs and paper-scale targets."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from iclab.linear.analysis import coupling_blocks, histogram_counts, marchenko_pastur_density, zero_ratio_law
from iclab.linear.data import features, sample_prompts
from iclab.linear.experiments import _blocks as st
from iclab.linear.experiments.figs5 import mp_cdf
from iclab.linear.experiments.figs7 import feature_rank
from iclab.linear.sampling import ReducedPrompts, gram_row, sample_reduced
from iclab.linear.spinglass import SpinGlass
from iclab.runtime import IclabError, execute, get_experiment


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def run(name, tmp_path, preset="quick", **overrides):
    exp = get_experiment(name)
    res = execute(exp, exp.make_config(preset, overrides), tmp_path, preset=preset, quiet=True)
    assert res.status == "done", res.error
    path = Path(res.path)
    summary = json.loads((path / "summary.json").read_text())
    for f in ["DONE", "report.html", "tables/metrics.csv"] + [p for fig in summary["figures"] for p in fig["files"]]:
        assert (path / f).is_file(), f
    assert summary["figures"] and summary["claims"]
    claims = {c["name"]: c for c in summary["claims"]}
    return claims, pd.read_csv(path / "tables/metrics.csv"), path


# -----------------------------------------------------------------------------
# helpers


def test_reduced_layout_blocks_match_the_core_path():
    D, N, P = 3, 12, 200
    pr = sample_prompts(D, N, P, generator=gen(0))
    s = features(pr.Z)  # (P, D+1, D+1)
    X = pr.Z[:, :D, :N]
    red = ReducedPrompts(g=gram_row(X @ X.mT, pr.w), xq=pr.Z[:, :D, N], y=pr.y, w=pr.w, N=N).features()
    torch.testing.assert_close(red, s[..., :D], rtol=0, atol=1e-12)
    sg = SpinGlass.from_features(s, pr.y, 0.0)
    core = coupling_blocks(sg.J, sg.h, D)
    J, h = st.reduced_fields(red[None], pr.y[None])
    ours = st.block_values(J, h, D)
    for k in st.BLOCKS:
        torch.testing.assert_close(ours[k][0].sort().values, core[k].sort().values, rtol=0, atol=1e-12)
    no_diag = st.block_values(J, h, D, a_diagonal=False)["A"]
    assert no_diag.shape == (1, D * D - D)


def test_predicted_stats_against_direct_sampling():
    D, N, P, B = 3, 20, 400, 150
    pr = sample_prompts(D, N, P * B, generator=gen(4))
    s = features(pr.Z)[..., :D].reshape(B, P, D + 1, D)
    J, h = st.reduced_fields(s, pr.y.reshape(B, P))
    pred = st.predicted_stats(D, N, P)
    dj = torch.diagonal(J, dim1=-2, dim2=-1)
    assert abs(float(dj[:, : D * D].mean()) / pred["diagJ_W11"] - 1) < 0.03
    assert abs(float(dj[:, D * D :].mean()) / pred["diagJ_last_row"] - 1) < 0.05
    assert abs(float(torch.diagonal(h[:, :D, :D], dim1=-2, dim2=-1).mean()) / pred["A_diag_mean"] - 1) < 0.03
    blocks = st.block_values(J, h, D)
    assert abs(float(blocks["B"].std()) / pred["B_std"] - 1) < 0.1
    assert abs(float(blocks["E"].std()) / pred["E_std"] - 1) < 0.1


def test_block_counts_equal_counts_of_block_values():
    draw = sample_reduced(4, 30, (3, 300), generator=gen(6))
    J, h = st.reduced_fields(draw.features(), draw.y)
    for a_diag in (True, False):
        fast = st.block_counts(J, h, 4, 50, st.PAPER_WINDOWS, a_diag)
        slow = st.block_values(J, h, 4, a_diag)
        for k in st.BLOCKS:
            assert torch.equal(fast[k], histogram_counts(slow[k], *st.PAPER_WINDOWS[k], 50)), k


def test_moments_are_exact():
    x = torch.randn(1000, generator=gen(7), dtype=torch.float64)
    m = st.Moments()
    for chunk in x.split(37):
        m.update(chunk)
    assert m.n == 1000
    assert math.isclose(m.mean, float(x.mean()), abs_tol=1e-12)
    assert math.isclose(m.std, float(x.std(unbiased=False)), rel_tol=1e-10)


def test_mp_cdf_is_the_integral_of_the_core_density():
    from scipy.integrate import quad

    for r in (1.0, 0.2, 0.01):
        lo, hi = (1 - math.sqrt(r)) ** 2, (1 + math.sqrt(r)) ** 2
        mid = lo + 0.37 * (hi - lo)
        num, _ = quad(lambda x: float(marchenko_pastur_density(torch.tensor([x]), r)[0]), lo, mid, limit=200)
        assert abs(mp_cdf(np.array([mid]), r)[0] - num) < 1e-4
        assert mp_cdf(np.array([lo - 1, hi + 1]), r).tolist() == [0.0, 1.0]


def test_feature_rank_counts_independent_directions():
    g = gen(8)
    F = torch.randn(30, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 12, generator=g, dtype=torch.float64)
    F[:, 3] *= 1e4  # column scales do not change the rank
    assert feature_rank(F) == 5
    s = sample_reduced(5, 40, 20, generator=g).features()  # P = 20 < D(D+1) = 30
    assert 1 - feature_rank(s.reshape(20, -1)) / 36 == zero_ratio_law(20, 5)


def test_configs_reject_bad_values():
    with pytest.raises(IclabError, match="field 'D'"):
        get_experiment("spinglass.fig1").make_config("quick", {"D": -5})
    with pytest.raises(IclabError, match="field 'P'"):
        get_experiment("spinglass.figS2").make_config("quick", {"P": 0})
    with pytest.raises(IclabError, match="field 'Ns'"):
        get_experiment("spinglass.figS2").make_config("quick", {"Ns": [20]})
    with pytest.raises(IclabError, match="field 'grid_Ps'"):
        get_experiment("spinglass.figS7").make_config("quick", {"grid_Ps": [0, 25]})
    with pytest.raises(IclabError, match="field 'lam0'"):
        get_experiment("spinglass.fig3").make_config("quick", {"lam0": 0})


# -----------------------------------------------------------------------------
# quick runs


def test_fig1_quick(tmp_path):
    claims, df, _ = run("spinglass.fig1", tmp_path, draws=1000)
    assert all(c["passed"] for c in claims.values()), {k: c["ours"] for k, c in claims.items()}
    m = df.set_index("statistic")
    assert m.loc["diagJ_W11_mean", "ours"] < 0 and m.loc["diagJ_last_row_mean", "ours"] < -1.3
    assert m.loc["A_gmm_mean_high", "ours"] > 0.15 > abs(m.loc["A_gmm_mean_low", "ours"])


def test_figS2_quick(tmp_path):
    claims, df, _ = run("spinglass.figS2", tmp_path, repeats=32)
    assert claims["block C changes most with N"]["passed"]
    assert claims["KL at N' ~ N is the sampling floor"]["passed"]
    c = df[df.block == "C"].sort_values("N")
    assert c.kl_mean.is_monotonic_increasing  # C keeps changing with N
    assert set(df.block) == set("ABCDE") and len(df) == 5 * 5


def test_figS3_quick(tmp_path):
    claims, df, _ = run("spinglass.figS3", tmp_path)
    assert all(c["passed"] for c in claims.values()), {k: c["ours"] for k, c in claims.items()}
    cr = df[df.instance >= 0].groupby("solution").contrast_ratio.mean()
    assert cr["amp"] > 0.5 > abs(cr["amp_control"]) and cr["exact"] > 0.5


def test_figS5_quick(tmp_path):
    claims, df, _ = run("spinglass.figS5", tmp_path, repeats=10, ratios=[1, 10, 100])
    assert all(c["passed"] for c in claims.values()), {k: c["ours"] for k, c in claims.items()}
    assert np.allclose(df.var_eigenvalue, df.mp_var, rtol=0.15)  # MP variance D/N


def test_figS7_quick(tmp_path):
    claims, df, _ = run("spinglass.figS7", tmp_path, repeats=16, grid_Ds=[10, 15], grid_Ps=list(range(25, 401, 25)))
    assert claims["zero ratio follows 1 - min(P, D(D+1))/(D+1)^2"]["ours"] == 0.0
    assert all(c["passed"] for c in claims.values()), {k: c["ours"] for k, c in claims.items()}
    g = df[df.panel == "zero_ratio_grid"]
    assert len(g) == 2 * 16
    for D, zr in g.groupby("D").zero_ratio.min().items():  # above P = D(D+1) only the last column is zero
        assert zr == pytest.approx(1 / (D + 1))


def test_fig3_quick(tmp_path):
    claims, df, _ = run("spinglass.fig3", tmp_path, n_random=200, grid=40, rbf_neighbors=40)
    for name in ("zero modes: degenerate at small P", "Boltzmann samples spread along flat directions at small P",
                 "the funnel's minimum is the ICL solution"):
        assert claims[name]["passed"], claims[name]["ours"]
    s = df[df.beta.notna()]
    assert np.allclose(s.sample_energy_excess, s.equipartition_excess, rtol=0.15)  # exact sampler: n/(2 beta)


def test_structure_runs_are_deterministic(tmp_path):
    _, a, _ = run("spinglass.figS3", tmp_path / "a", fit_draws=10, instances=4)
    _, b, _ = run("spinglass.figS3", tmp_path / "b", fit_draws=10, instances=4)
    pd.testing.assert_frame_equal(a, b)


# -----------------------------------------------------------------------------
# paper scale (pytest -m slow)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spinglass.fig1", "spinglass.figS2", "spinglass.figS3", "spinglass.figS5",
                                  "spinglass.figS7", "spinglass.fig3"])
def test_paper_preset_meets_the_targets(name, tmp_path):
    claims, _, _ = run(name, tmp_path, preset="paper")
    failed = {k: c["ours"] for k, c in claims.items() if c["passed"] is False}
    assert not failed, failed
