"""The exact reduced sampler (`iclab.spinglass._sampling`) against the core prompt path, and Wishart draws."""

import math

import pytest
import torch

from iclab.spinglass._data import (
    features,
    sample_prompts,
    sufficient_stats_from,
    token_correlation_factor,
)
from iclab.spinglass._sampling import (
    ReducedPrompts,
    active_spins,
    gram_row,
    reduced_sufficient_stats,
    sample_reduced,
    sufficient_stats,
    wishart,
)
from iclab.runtime._threads import torch_threads


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_features_from_the_gram_row_equal_the_core_features():
    """s depends on a prompt only through g = (C w/√D, wᵀ C w/D) and x_q: exact identity."""
    D, N, P = 3, 12, 200
    pr = sample_prompts(D, N, P, generator=gen(0))
    X = pr.Z[:, :D, :N]  # (P, D, N) context inputs
    red = ReducedPrompts(g=gram_row(X @ X.mT, pr.w), xq=pr.Z[:, :D, N], y=pr.y, w=pr.w, N=N)
    s = features(pr.Z)  # (P, D+1, D+1)
    torch.testing.assert_close(red.features(full=True), s, rtol=0, atol=1e-12)
    torch.testing.assert_close(red.features(), s[..., :D], rtol=0, atol=1e-12)
    torch.testing.assert_close(red.features("N"), s[..., :D] * (N + 1) / N, rtol=0, atol=1e-12)
    assert s[..., D].abs().max() == 0  # the dropped column is identically zero
    torch.testing.assert_close(torch.einsum("pd,pd->p", pr.w, red.xq) / math.sqrt(D), pr.y, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="norm"):
        red.features("N-1")


def test_official_token_model_equals_full_prompts():
    """token_model="official" builds full prompts, so its statistics equal the core's exactly."""
    D, N, P, c = 3, 6, 50, 0.4
    got = reduced_sufficient_stats(D, N, P, generator=gen(5), token_corr=c, token_model="official")
    g = gen(5)
    w = torch.randn(P, D, generator=g, dtype=torch.float64)
    x = torch.randn(P, D, N + 1, generator=g, dtype=torch.float64) @ token_correlation_factor(N + 1, c)
    labels = torch.einsum("pd,pdt->pt", w, x) / D**0.5
    y = labels[:, N].clone()
    labels[:, N] = 0
    ref = sufficient_stats_from(features(torch.cat([x, labels[:, None]], 1)), y)
    for a, b in ((got.S, ref.S), (got.h, ref.h), (got.yy, ref.yy)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_pair_gemm_statistics_equal_explicit_features():
    """The symmetric-pair GEMM of `reduced_sufficient_stats` = the (n, n) Gram of the same draws."""
    D, N, P = 3, 9, 300
    got = reduced_sufficient_stats(D, N, P, generator=gen(2), chunk=128)
    g = gen(2)
    draws = [sample_reduced(D, N, size, generator=g) for size in (128, 128, 44)]
    s = torch.cat([r.features(full=True) for r in draws])
    y = torch.cat([r.y for r in draws])
    ref = sufficient_stats_from(s, y, N)
    for a, b in ((got.S, ref.S), (got.h, ref.h), (got.yy, ref.yy)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    dead = torch.ones((D + 1) ** 2, dtype=torch.bool)
    dead[active_spins(D)] = False
    assert got.S[dead].abs().max() == 0 and got.h[dead].abs().max() == 0


@pytest.mark.parametrize("c, pooled", [(0.0, False), (0.6, False), (0.0, True)])
def test_reduced_sampler_has_the_core_distribution(c, pooled):
    """E[S], E[h] of the reduced sampler agree with data.sample_prompts within sampling error
    (fresh tasks, equicorrelated tokens, or tasks given from a pool) while a sampler off by 0.15
    in the token correlation is caught (the test has power)."""
    D, N, P, k = 3, 6, 20000, 4
    pool = torch.randn(5, D, generator=gen(99), dtype=torch.float64)

    def tasks(seed):
        return pool[torch.randint(5, (P,), generator=gen(seed))] if pooled else None

    with torch_threads(1):
        core = [sufficient_stats(D, N, P, generator=gen(s), token_corr=c, tasks=tasks(s), method="prompts")
                for s in range(k)]
        red = [reduced_sufficient_stats(D, N, P, generator=gen(50 + s), token_corr=c, tasks=tasks(s))
               for s in range(k)]
        bad = [reduced_sufficient_stats(D, N, P, generator=gen(50 + s), token_corr=c + 0.15, tasks=tasks(s))
               for s in range(k)]
    Sa, Sb, Sc = (torch.stack([st.S for st in sts]) for sts in (core, red, bad))
    se = ((Sa.var(0) + Sb.var(0)) / k).sqrt()
    live = se > 1e-12
    z = ((Sa.mean(0) - Sb.mean(0)) / se)[live]
    z_bad = ((Sa.mean(0) - Sc.mean(0)) / se)[live]
    assert z.pow(2).mean().sqrt() < 1.6 and z.abs().max() < 6
    assert z_bad.abs().max() > 8  # the biased sampler is far outside the good one's max of 6
    if not pooled:
        yy = torch.stack([st.yy for st in red]).mean()
        torch.testing.assert_close(yy, torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=0.03)


def test_gram_draw_of_a_fixed_task_has_the_wishart_law():
    """Given task w: (C w, wᵀ C w) with C ~ Wishart(N, I), checked by moments and against Bartlett."""
    D, N, R = 4, 15, 200_000
    w = torch.randn(D, generator=gen(1), dtype=torch.float64)
    r = sample_reduced(D, N, R, generator=gen(2), tasks=w.expand(R, D))
    Cw, wCw = r.g[:, :D] * math.sqrt(D), r.g[:, D] * D
    w2 = float(w @ w)
    assert abs(float(wCw.mean()) / (N * w2) - 1) < 0.01  # E[wᵀ C w] = N |w|²
    assert abs(float((Cw * Cw).sum(1).mean()) / (N * (N + D + 1) * w2) - 1) < 0.02  # E|Cw|² = N(N+D+1)|w|²
    torch.testing.assert_close(Cw.mean(0), N * w, rtol=0, atol=0.05 * N)
    torch.testing.assert_close((Cw @ w), wCw, rtol=1e-10, atol=1e-8)  # consistent pair
    C = wishart((R,), D, N, gen(3))  # Bartlett: same law as C w for the same w
    torch.testing.assert_close(torch.cov(Cw.T), torch.cov((C @ w).T), rtol=0.03, atol=0.5)
    torch.testing.assert_close(C.mean(0), N * torch.eye(D, dtype=torch.float64), rtol=0, atol=0.05)
    # E[C²] = N(N+D+1) I
    torch.testing.assert_close((C @ C).mean(0) / (N * (N + D + 1)), torch.eye(D, dtype=torch.float64),
                               rtol=0, atol=0.02)
    with pytest.raises(ValueError, match="N >= D"):
        wishart((2,), 5, 3, gen(0))


def test_short_prompts_and_bad_arguments():
    for c in (0.0, 0.5):  # N = 1: Wishart(N - 1 = 0) part is exactly zero, no NaN
        r = sample_reduced(3, 1, 100, generator=gen(4), token_corr=c)
        assert torch.isfinite(r.g).all()
    with pytest.raises(ValueError, match="token_corr"):
        sample_reduced(3, 5, 10, generator=gen(0), token_corr=1.0)
    with pytest.raises(ValueError, match="token_model"):
        sample_reduced(3, 5, 10, generator=gen(0), token_model="nope")
    with pytest.raises(ValueError, match="tasks"):
        sample_reduced(3, 5, 10, generator=gen(0), tasks=torch.zeros(9, 3))
    with pytest.raises(ValueError, match="method"):
        sufficient_stats(3, 5, 10, generator=gen(0), method="nope")


def test_sufficient_stats_default_is_the_reduced_sampler():
    a = sufficient_stats(3, 7, 100, generator=gen(8))
    b = reduced_sufficient_stats(3, 7, 100, generator=gen(8))
    assert torch.equal(a.S, b.S) and torch.equal(a.h, b.h) and (a.P, a.D, a.N) == (100, 3, 7)
    r1 = sample_reduced(3, 7, (2, 5), generator=gen(9))
    r2 = sample_reduced(3, 7, (2, 5), generator=gen(9))
    assert r1.g.shape == (2, 5, 4) and torch.equal(r1.g, r2.g)  # deterministic given the generator
