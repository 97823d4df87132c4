import math

import pytest
import torch

from iclab.spinglass import (
    SpinGlass,
    block_masks,
    contrast_ratio,
    coupling_blocks,
    features,
    histogram_counts,
    icl_error_floor,
    kl_divergence_counts,
    kl_divergence_hist,
    marchenko_pastur_density,
    population_optimum,
    predict,
    sample_prompts,
    sufficient_stats,
    zero_ratio_law,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_contrast_ratio():
    eye = torch.eye(4, dtype=torch.float64)
    assert contrast_ratio(eye).item() == pytest.approx(1.0)
    assert contrast_ratio(-3 * eye).item() == pytest.approx(-1.0)
    assert contrast_ratio(torch.ones(4, 4, dtype=torch.float64) - eye).item() == pytest.approx(0.0)
    W = torch.randn(5, 4, 4, generator=gen(), dtype=torch.float64)
    cr = contrast_ratio(W)
    assert cr.shape == (5,)
    torch.testing.assert_close(contrast_ratio(7 * W), cr)
    ref = torch.stack([(w * eye).sum() / (w.norm() * eye.norm()) for w in W])
    torch.testing.assert_close(cr, ref)


def test_closed_forms_match_spec_numbers():
    # the error floor (D+1)/(N+D+1) of docs/spinglass.md: D = 20 -> e_min 0.512, 0.174, 0.095 at N = 20, 100, 200
    assert icl_error_floor(20, 20) == pytest.approx(0.512, abs=1e-3)
    assert icl_error_floor(20, 100) == pytest.approx(0.174, abs=1e-3)
    assert icl_error_floor(20, 200) == pytest.approx(0.095, abs=1e-3)
    # Fig. S7 inset, D = 20
    inset = [(25, 0.943), (125, 0.717), (225, 0.490), (325, 0.263), (420, 0.048), (2000, 0.048)]
    for P, ratio in inset:
        assert zero_ratio_law(P, 20) == pytest.approx(ratio, abs=1e-3)
    W = population_optimum(3, 10)
    assert W.shape == (4, 4)
    torch.testing.assert_close(W[:3, :3], 11 / 14 * torch.eye(3, dtype=torch.float64))
    assert torch.all(W[3] == 0) and torch.all(W[:, 3] == 0)


def test_population_optimum_has_the_error_floor_on_fresh_tasks():
    D, N, P = 3, 10, 40_000
    pr = sample_prompts(D, N, P, generator=gen(11))
    sq = (predict(population_optimum(D, N), features(pr.Z)) - pr.y) ** 2  # (P,)
    se = sq.std().item() / math.sqrt(P)
    assert abs(sq.mean().item() - icl_error_floor(D, N)) < 5 * se
    # and it beats nearby matrices: it is the population minimiser
    for scale in (0.9, 1.1):
        worse = ((predict(scale * population_optimum(D, N), features(pr.Z)) - pr.y) ** 2).mean()
        assert worse > sq.mean()


def test_large_P_ridge_approaches_population_optimum():
    D, N, P = 3, 20, 40_000
    sg = SpinGlass.from_stats(sufficient_stats(D, N, P, generator=gen(3)), 1e-8)
    W = sg.ground_state().reshape(D + 1, D + 1)
    target = population_optimum(D, N)
    # the estimation error of the D(D+1) relevant weights is O(sqrt(D^2 / P)) ~ 0.015
    assert (W[:D, :D] - target[:D, :D]).abs().max() < 0.04
    assert W[D, :D].abs().max() < 0.04
    # CR of the optimum is sqrt(D/(D+1)) < 1: the inert W[D, D] is 0, not 1
    assert contrast_ratio(W).item() == pytest.approx(math.sqrt(D / (D + 1)), abs=0.01)


def test_block_masks_partition_the_couplings():
    D = 3
    n = (D + 1) ** 2
    m = block_masks(D)
    assert m["A"].sum() == D * D and m["B"].sum() == D
    head = D * (D + 1)
    assert m["C"].sum() == head * (head - 1)
    assert m["D"].sum() == 2 * head * (D + 1)
    assert m["E"].sum() == (D + 1) * D
    total = m["C"].int() + m["D"].int() + m["E"].int()
    assert torch.equal(total, (~torch.eye(n, dtype=torch.bool)).int())  # all off-diagonal, once


def test_coupling_blocks_values_and_zero_removal():
    D = 3
    sg = SpinGlass.from_stats(sufficient_stats(D, 30, 200, generator=gen()), 0.0)
    blocks = coupling_blocks(sg.J, sg.h, D)
    J, h = sg.J, sg.h.reshape(D + 1, D + 1)
    torch.testing.assert_close(blocks["A"], h[:D, :D].reshape(-1))
    torch.testing.assert_close(blocks["B"], h[D, :D])
    # relevant spins: D of each of the D+1 rows (last column is inert and couples with zeros)
    assert blocks["C"].numel() == D * D * (D * D - 1)
    assert blocks["D"].numel() == 2 * D * D * D
    assert blocks["E"].numel() == D * (D - 1)
    relevant = [a * (D + 1) + b for a in range(D) for b in range(D)]
    last = [D * (D + 1) + b for b in range(D)]
    for name, idx in (("C", relevant), ("E", last)):
        sub = J[idx][:, idx]  # couplings among those spins
        expected = sub[~torch.eye(len(idx), dtype=torch.bool)]
        torch.testing.assert_close(blocks[name].sort().values, expected.sort().values)
    # pooling over repeats
    pooled = coupling_blocks(torch.stack([J, J]), torch.stack([sg.h, sg.h]), D)
    assert pooled["C"].numel() == 2 * blocks["C"].numel()


def test_kl_divergence_hist():
    a = torch.randn(20_000, generator=gen(1), dtype=torch.float64)
    b = torch.randn(20_000, generator=gen(2), dtype=torch.float64)
    c = 0.5 + torch.randn(20_000, generator=gen(3), dtype=torch.float64)
    assert kl_divergence_hist(a, a) == 0.0
    same, shifted = kl_divergence_hist(a, b), kl_divergence_hist(a, c)
    assert 0.0 < same < 0.02
    # N(0,1) vs N(0.5,1): 0.125 nats = 0.180 bits (binning bias is small with 100 bins)
    assert shifted == pytest.approx(0.125 / math.log(2), rel=0.1)
    # against an explicit computation with the +1 pseudo-count on fixed edges
    p = torch.histc(a, bins=10, min=-3, max=3) + 1
    q = torch.histc(c, bins=10, min=-3, max=3) + 1
    p, q = p / p.sum(), q / q.sum()
    ref = float((p * (p / q).log2()).sum())
    kl = kl_divergence_hist(a, c, bins=10, value_range=(-3.0, 3.0))
    assert kl == pytest.approx(ref, rel=1e-12)


def test_streaming_counts_equal_histc_and_give_the_same_kl():
    v = torch.randn(3, 500, generator=gen(5), dtype=torch.float64) * 0.1
    v[0, 0] = 0.2  # exactly the upper edge: last bin
    v[1, 0] = 0.5  # outside: dropped
    counts = histogram_counts(v, -0.2, 0.2, 40)
    ref = torch.stack([torch.histc(r, 40, -0.2, 0.2) for r in v]).long()
    assert torch.equal(counts, ref)
    # streaming: counts of chunks add up to the counts of the whole
    assert torch.equal(sum(histogram_counts(c, -0.2, 0.2, 40) for c in v.split(100, dim=1)), counts)
    kl = kl_divergence_counts(counts[0], counts[1])
    assert math.isclose(float(kl), kl_divergence_hist(v[0], v[1], bins=40, value_range=(-0.2, 0.2)), rel_tol=1e-12)
    assert float(kl_divergence_counts(counts[0], counts[0])) == 0.0
    assert kl_divergence_counts(counts[:2], counts[1:]).shape == (2,)  # batched over leading dims


@pytest.mark.parametrize("ratio", [1.0, 0.2, 0.01])
def test_marchenko_pastur_density_normalised_with_right_moments(ratio):
    lo, hi = (1 - math.sqrt(ratio)) ** 2, (1 + math.sqrt(ratio)) ** 2
    x = torch.linspace(lo, hi, 400_001, dtype=torch.float64)
    f = marchenko_pastur_density(x, ratio)
    assert torch.trapezoid(f, x).item() == pytest.approx(1.0, abs=2e-3)
    assert torch.trapezoid(x * f, x).item() == pytest.approx(1.0, abs=2e-3)
    assert torch.trapezoid(x * x * f, x).item() == pytest.approx(1.0 + ratio, abs=2e-3)
    assert marchenko_pastur_density(torch.tensor([hi + 0.1]), ratio).item() == 0.0


def test_marchenko_pastur_matches_sample_spectrum():
    D, N = 200, 1000
    X = torch.randn(D, N, generator=gen(), dtype=torch.float64)
    eig = torch.linalg.eigvalsh(X @ X.T / N)  # (D,)
    x = torch.linspace(0, 3, 30_001, dtype=torch.float64)
    cdf = torch.cumulative_trapezoid(marchenko_pastur_density(x, D / N), x)
    cdf = torch.cat([torch.zeros(1, dtype=x.dtype), cdf])
    model_cdf = cdf[torch.searchsorted(x, eig)]  # grid step 1e-4: interpolation not needed
    empirical = (torch.arange(D, dtype=x.dtype) + 0.5) / D
    assert (model_cdf - empirical).abs().max() < 0.03  # Kolmogorov distance
