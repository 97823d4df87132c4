"""Structure experiments (Figs. 1, 3, S2, S3, S5, S7): their helpers, quick runs and paper-scale targets."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from iclab.spinglass._analysis import coupling_blocks, histogram_counts, marchenko_pastur_density, zero_ratio_law
from iclab.spinglass._data import features, sample_prompts
from iclab.spinglass.experiments import _blocks as st
from iclab.spinglass.experiments import figs3
from iclab.spinglass.experiments.figs5 import mp_cdf, mp_quantile
from iclab.spinglass.experiments.figs7 import feature_rank
from iclab.spinglass._sampling import ReducedPrompts, gram_row, sample_reduced
from iclab.spinglass._hamiltonian import SpinGlass
from iclab.runtime import IclabError, get_experiment
from iclab.runtime._seeding import make_gen

from ._run import run


def gen(seed=0):
    return torch.Generator().manual_seed(seed)




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
        q = np.array([0.001, 0.3, 0.5, 0.999])
        assert np.allclose(mp_cdf(mp_quantile(q, r), r), q, atol=1e-6)  # the KS grid's quantiles


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
    with pytest.raises(IclabError, match="field 'grid_Ps"):
        get_experiment("spinglass.figS7").make_config("quick", {"grid_Ps": [0, 25]})
    with pytest.raises(IclabError, match="field 'lam0'"):
        get_experiment("spinglass.fig3").make_config("quick", {"lam0": 0})


# -----------------------------------------------------------------------------
# quick runs


def check_claims(claims):
    """Every claim carries a kind and a computed verdict; paper-value claims name their source and value."""
    for c in claims.values():
        assert c["kind"] in ("paper-value", "paper-shape", "sanity", "engineering"), c["name"]
        assert c["verdict"] in ("reproduced", "differs", "inconclusive", "holds", "fails", "reported"), c["name"]
        if c["kind"] == "paper-value":
            assert c["source"] and c["paper_value"] is not None and c["target"], c["name"]


def test_fig1_quick(tmp_path):
    _, df, claims = run("spinglass.fig1", tmp_path, draws=1000)
    check_claims(claims)
    kinds = {c["kind"] for c in claims.values()}
    assert {"paper-value", "paper-shape", "sanity", "engineering"} <= kinds
    for name, c in claims.items():  # our sampler meets our closed forms
        if c["kind"] == "sanity":
            assert c["verdict"] == "holds", (name, c["ours"])
    assert claims["mean diagonal of J on W11 spins"]["verdict"] == "reproduced"
    # the paper's -1.34 is one draw: the mean is -1.40, but -1.34 is a typical single draw
    assert claims["mean diagonal of J on last-row spins"]["verdict"] == "differs"
    assert claims["share of single draws with last-row diagonal mean <= the paper's -1.34"]["verdict"] == "reproduced"
    # block C: the paper's stated width 0.024 is not what its plot draws (0.008), and ours is ~0.008
    c = claims["block C: width sigma"]
    assert c["paper_value"] == 0.024 and c["verdict"] == "differs" and abs(c["ours"]["value"] - 0.008) < 0.001
    assert claims["A block: weight of the high mode (GMM)"]["ours"]["value"] == pytest.approx(1 / 5, abs=0.005)
    m = df.set_index("statistic")
    assert m.loc["diagJ_W11_mean", "ours"] < 0 and m.loc["diagJ_last_row_mean", "ours"] < -1.3
    assert m.loc["A_gmm_mean_high", "ours"] > 0.15 > abs(m.loc["A_gmm_mean_low", "ours"])


def test_fig1_other_settings_make_no_paper_claims(tmp_path):
    path, _, claims = run("spinglass.fig1", tmp_path, D=3, N=20, P=100, draws=2000)
    assert not [c for c in claims.values() if c["kind"] in ("paper-value", "paper-shape")]
    assert {c["kind"] for c in claims.values()} == {"sanity", "engineering"}
    assert all(c["verdict"] != "fails" for c in claims.values() if c["kind"] == "sanity")  # closed forms hold at any D
    notes = json.loads((path / "summary.json").read_text())["notes"]
    assert any("settings differ from the paper's (D=3 (paper: 5)" in n for n in notes)


def test_figS2_quick(tmp_path):
    _, df, claims = run("spinglass.figS2", tmp_path, repeats=32)
    check_claims(claims)
    assert claims["KL of block C at N' = 10 N"]["paper_value"] == 0.7
    assert claims["KL of block C at N' = 10 N"]["verdict"] == "reproduced"
    assert claims["KL of block C minus the largest other block at N'=200"]["verdict"] == "reproduced"
    assert claims["KL rise from N'=21 to N'=200, smallest over blocks C, D, E"]["verdict"] != "fails"
    c = df[df.block == "C"].sort_values("N")
    assert c.kl_mean.is_monotonic_increasing  # C keeps changing with N
    assert set(df.block) == set("ABCDE") and len(df) == 5 * 5


def test_figS3_quick(tmp_path):
    _, df, claims = run("spinglass.figS3", tmp_path)
    check_claims(claims)
    for model in figs3.MODELS:
        assert claims[f"m is diagonal-dominated: contrast ratio of m ({model})"]["verdict"] == "reproduced"
        name = f"the diagonal fields drive it: CR(m) − CR(m with block A shuffled) ({model})"
        assert claims[name]["verdict"] == "reproduced"
    # the paper's saved instance: its CR agrees (scale-free), its m and v are twice the fixed point of its model
    assert claims["contrast ratio of m (official pdfs)"]["verdict"] == "reproduced"
    for name in ("mean diagonal of m's W11 block", "mean AMP variance v"):
        c = claims[f"{name} (official pdfs)"]
        assert c["verdict"] == "differs" and 0.4 < c["ours"]["value"] / c["paper_value"] < 0.6, name
    assert all(c["verdict"] == "holds" for c in claims.values() if c["kind"] == "sanity")
    fit = df[(df.model == "fitted") & df.converged]
    cr = fit.groupby("solution").contrast_ratio.mean()
    assert cr["amp"] > 0.5 > abs(cr["amp_control"]) and cr["exact"] > 0.5


def test_figS3_official_pdfs_are_sampled_as_scipy_does():
    """scipy's rv_continuous integrates a pdf of mass k > 1 from its lower end and stops where the CDF
    reaches 1: the official C block (k = 3) keeps only the lowest third of N(0, 0.024^2), all negative."""
    J, h = figs3.official_model(10, 4, make_gen(0, "official"))  # (4, 121, 121), (4, 121)
    C = J[:, :110, :110][:, ~torch.eye(110, dtype=torch.bool)]
    assert -0.1 <= float(C.min()) and float(C.max()) <= -0.0103  # cut at 0.024 * Phi^-1(1/3) = -0.01034
    assert abs(float(C.mean()) + 0.0262) < 0.001  # mean -0.024 phi(z)/Phi(z) of the truncated normal
    assert not torch.allclose(J, J.mT) and (torch.diagonal(J, dim1=-2, dim2=-1) == 0).all()
    W = h.reshape(4, 11, 11)
    assert (W[:, :, 10] == 0).all()
    assert abs(float(torch.diagonal(W[:, :10, :10], dim1=-2, dim2=-1).mean()) - 0.2) < 0.01  # A's large mode


def test_figS5_quick(tmp_path):
    _, df, claims = run("spinglass.figS5", tmp_path, repeats=40, ratios=[1, 10, 100])
    check_claims(claims)
    ks = claims["spectra follow Marchenko-Pastur: max KS distance over N/D"]
    assert ks["verdict"] == "reproduced" and ks["ours"]["n"] == 40  # 40 matrices: 40 bootstrap groups
    assert ks["ours"]["value"] == pytest.approx(df.ks_distance.max())
    assert claims["spectrum concentrates at 1 as N/D grows: largest ratio of consecutive mean (λ − 1)²"][
        "verdict"] == "reproduced"
    assert claims["mean (λ − 1)² vs its exact value (D+1)/N: max relative deviation over N/D"]["verdict"] == "holds"
    assert np.allclose(df.mean_sq_dev, df.exact_sq_dev, rtol=0.05)  # (D+1)/N, the MP variance D/N at large D
    assert df.mean_lambda_max.lt(df.mp_upper_edge).all()  # Tracy-Widom: the largest eigenvalue sits inside


def test_figS7_quick(tmp_path):
    _, df, claims = run("spinglass.figS7", tmp_path, repeats=16, grid_Ds=[10, 15, 20], grid_Ps=list(range(25, 451, 25)))
    check_claims(claims)
    law = claims["zero ratio = 1 − min(P, D(D+1))/(D+1)²: max |measured − law| over the grid and spectra"]
    assert law["ours"]["value"] < 1e-12 and law["verdict"] == "holds"
    grid = claims["inset zero ratio: max |ours − paper| over the (D, P) grid"]
    assert grid["ours"]["value"] == pytest.approx(0.04989 - 1 / 21, abs=1e-5)  # the paper's float32 count at P=425
    assert grid["verdict"] == "reproduced"
    assert claims["median λ_(D)/λ_(D+1) at P=1500"]["paper_value"] == 5.5004
    assert claims["zero fraction of the spectra: max |ours − paper| over P"]["verdict"] == "reproduced"
    assert len(df) == 3 * 18
    for D, zr in df.groupby("D").zero_ratio.min().items():  # above P = D(D+1) only the last column is zero
        assert zr == pytest.approx(1 / (D + 1))


def test_fig3_quick(tmp_path):
    path, df, claims = run("spinglass.fig3", tmp_path, n_random=200, grid=40, rbf_neighbors=40, tsne_repeats=2)
    check_claims(claims)
    for name, c in claims.items():  # zero modes, flat directions, equipartition: exact facts of the measure
        if c["kind"] == "sanity":
            assert c["verdict"] == "holds", (name, c["ours"])
    shape = {n: c for n, c in claims.items() if c["kind"] == "paper-shape"}
    assert set(shape) == {"t-SNE funnel index, P=1000 minus P=10", "ground-state test MSE − (D+1)/(N+D+1), P=1000"}
    assert shape["t-SNE funnel index, P=1000 minus P=10"]["ours"]["n"] == 2
    assert len(pd.read_csv(path / "tables/tsne.csv")) == 2 * 2
    s = df[df.beta.notna()]
    assert np.allclose(s.sample_energy_excess, s.equipartition_excess, rtol=0.15)  # exact sampler: n/(2 beta)


def test_structure_runs_are_deterministic(tmp_path):
    _, a, _ = run("spinglass.figS3", tmp_path / "a", fit_draws=10, instances=4)
    _, b, _ = run("spinglass.figS3", tmp_path / "b", fit_draws=10, instances=4)
    pd.testing.assert_frame_equal(a, b)


# -----------------------------------------------------------------------------
# paper scale (pytest -m slow)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spinglass.figS3", "spinglass.figS5", "spinglass.figS7"])
def test_paper_preset_meets_the_targets(name, tmp_path):
    _, _, claims = run(name, tmp_path, preset="paper")
    check_claims(claims)
    failed = {k: c["ours"] for k, c in claims.items() if c["kind"] == "sanity" and c["verdict"] != "holds"}
    assert not failed, failed
    assert not [k for k, c in claims.items() if c["kind"] == "paper-shape" and c["verdict"] == "differs"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spinglass.fig1", "spinglass.figS2", "spinglass.fig3"])
def test_paper_preset_sanity_holds(name, tmp_path):
    _, _, claims = run(name, tmp_path, preset="paper")
    check_claims(claims)
    failed = {k: c["ours"] for k, c in claims.items() if c["kind"] == "sanity" and c["verdict"] != "holds"}
    assert not failed, failed
