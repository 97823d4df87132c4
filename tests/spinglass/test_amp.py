import pytest
import torch

from iclab.spinglass import (
    SpinGlass,
    amp,
    amp_init,
    amp_per_spin_loop,
    amp_residual,
    stack_stats,
    sufficient_stats,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def glass(D=3, N=30, P=1000, lam0=0.01, seed=0):
    return SpinGlass.from_stats(sufficient_stats(D, N, P, generator=gen(seed)), lam0)


def fields(sg):
    return sg.J, sg.h, sg.lam


def test_vectorised_sweep_equals_per_spin_loop():
    sg = glass(D=2, N=20, P=500, lam0=0.05)
    init = amp_init((sg.n,), gen(1))
    fast = amp(*fields(sg), steps=300, init=init)
    slow = amp_per_spin_loop(*fields(sg), steps=300, init=init)
    assert bool(fast.converged) and bool(slow.converged)
    assert fast.sweeps.item() == slow.sweeps.item() < 300
    torch.testing.assert_close(fast.m, slow.m, rtol=0, atol=1e-12)
    torch.testing.assert_close(fast.v, slow.v, rtol=0, atol=1e-12)
    torch.testing.assert_close(fast.err, slow.err, rtol=1e-10, atol=0)


def test_vectorised_equals_loop_on_a_diverging_run():
    sg = glass(D=2, N=10, P=3, lam0=1e-3)  # few prompts, weak confinement: blows up
    init = amp_init((sg.n,), gen(2))
    fast = amp(*fields(sg), steps=15, init=init)
    slow = amp_per_spin_loop(*fields(sg), steps=15, init=init)
    assert not bool(fast.converged) and not bool(slow.converged)
    torch.testing.assert_close(fast.m, slow.m, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.v, slow.v, rtol=1e-10, atol=1e-12)


def test_batched_amp_equals_separate_runs():
    # mixture of fast, slow and non-converging instances, each must stop on its own
    settings = [(40, 1000, 0.01), (10, 200, 0.1), (10, 5, 0.01), (10, 12, 1.0), (30, 2000, 0.01)]
    sgs = [glass(D=3, N=N, P=P, lam0=lam0, seed=i) for i, (N, P, lam0) in enumerate(settings)]
    J = torch.stack([g.J for g in sgs])  # (R, n, n)
    h = torch.stack([g.h for g in sgs])  # (R, n)
    lam = torch.stack([g.lam for g in sgs])  # (R, n)
    m0, v0 = amp_init(tuple(h.shape), gen(5))
    batched = amp(J, h, lam, init=(m0, v0))
    assert batched.converged.any() and not batched.converged.all()
    assert len(set(batched.sweeps.tolist())) > 1
    for i in range(len(sgs)):
        single = amp(J[i], h[i], lam[i], init=(m0[i], v0[i]))
        assert single.sweeps.item() == batched.sweeps[i].item()
        assert bool(single.converged) == bool(batched.converged[i])
        if bool(single.converged):  # matmul rounding differs in the last bit between batch shapes;
            torch.testing.assert_close(single.m, batched.m[i], rtol=0, atol=1e-10)  # diverging runs amplify it
            torch.testing.assert_close(single.v, batched.v[i], rtol=0, atol=1e-10)


def test_generator_initialisation_is_deterministic():
    sg = glass(D=2, N=20, P=300)
    a = amp(*fields(sg), generator=gen(7))
    b = amp(*fields(sg), generator=gen(7))
    c = amp(*fields(sg), init=amp_init((sg.n,), gen(7)))
    assert torch.equal(a.m, b.m) and torch.equal(a.m, c.m)


def test_fixed_point_satisfies_amp_equations_but_is_not_ridge():
    sg = glass(D=3, N=30, P=1000, lam0=0.01)
    res = amp(*fields(sg), steps=5000, tol=1e-26, generator=gen(1))
    assert bool(res.converged)
    m_res, v_res = amp_residual(*fields(sg), res.m, res.v, beta=100.0)
    assert m_res < 1e-10 and v_res < 1e-10
    # exact ridge solves lambda_i m_i - sum_{j!=i} J_ij m_j = h_i ...
    ridge = sg.ground_state()
    off = sg.J - torch.diag(torch.diagonal(sg.J))
    torch.testing.assert_close(sg.lam * ridge - off @ ridge, sg.h, rtol=0, atol=1e-12)
    # ... while the AMP means lack the reaction term: close to ridge but measurably different
    gap = (res.m - ridge).abs().max().item()
    assert 1e-3 < gap < 0.3
    assert (sg.lam * res.m - off @ res.m - sg.h).abs().max() > 1e-4


def test_beta_drops_out_of_the_means_and_scales_the_variances():
    sg = glass(D=2, N=20, P=500, lam0=0.05)
    init = amp_init((sg.n,), gen(3))
    cold = amp(*fields(sg), beta=100.0, steps=3000, tol=1e-28, init=init)
    warm = amp(*fields(sg), beta=1.0, steps=3000, tol=1e-28, init=init)
    assert bool(cold.converged) and bool(warm.converged)
    torch.testing.assert_close(cold.m, warm.m, rtol=0, atol=1e-10)
    torch.testing.assert_close(100.0 * cold.v, warm.v, rtol=1e-8, atol=1e-12)


def test_irrelevant_spins_have_prior_variance():
    """Last-column spins feel no couplings: m = 0 and v = 1/(beta lambda0) (Fig. 2e)."""
    D, lam0, beta = 3, 0.01, 100.0
    sg = glass(D=D, N=30, P=1000, lam0=lam0)
    res = amp(*fields(sg), beta=beta, steps=2000, tol=1e-24, generator=gen(4))
    m = res.m.reshape(D + 1, D + 1)
    v = res.v.reshape(D + 1, D + 1)
    torch.testing.assert_close(m[:, D], torch.zeros(D + 1, dtype=m.dtype), rtol=0, atol=1e-10)
    torch.testing.assert_close(v[:, D], torch.full((D + 1,), 1 / (beta * lam0), dtype=v.dtype))
    assert torch.all(v[:D, :D] > 0) and torch.all(v[:D, :D] < v[0, D])


def test_non_convergence_is_flagged():
    """Small P and small lambda0 (docs/spinglass.md: AMP): the denominators go bad, the run does not converge."""
    sg = glass(D=5, N=100, P=20, lam0=0.01)
    res = amp(*fields(sg), generator=gen(0))
    assert not bool(res.converged)
    assert res.sweeps.item() == 100
    assert not (res.err < 1e-6)


@pytest.mark.parametrize("steps", [1, 7])
def test_step_budget_is_respected(steps):
    sg = glass(D=2, N=20, P=500, lam0=0.05)
    res = amp(*fields(sg), steps=steps, generator=gen(0))
    assert res.sweeps.item() == steps and not bool(res.converged)


def test_batched_over_repeats_from_stacked_stats():
    stats = stack_stats([sufficient_stats(2, 20, 400, generator=gen(i)) for i in range(4)])
    sg = SpinGlass.from_stats(stats, 0.05)
    res = amp(sg.J, sg.h, sg.lam, steps=300, generator=gen(0))
    assert res.m.shape == (4, 9) and res.converged.shape == (4,) and res.sweeps.dtype == torch.int64
    assert res.converged.all()


def test_chunked_batches_equal_one_batch():
    """Large batches are iterated in cache-sized chunks; the chunking does not change the result."""
    stats = stack_stats([sufficient_stats(3, 20, 400, generator=gen(i)) for i in range(5)])
    sg = SpinGlass.from_stats(stats, 0.02)
    whole = amp(sg.J, sg.h, sg.lam, steps=400, generator=gen(1), chunk=5)
    for chunk in (1, 2):
        part = amp(sg.J, sg.h, sg.lam, steps=400, generator=gen(1), chunk=chunk)
        assert torch.equal(part.sweeps, whole.sweeps) and torch.equal(part.converged, whole.converged)
        torch.testing.assert_close(part.m, whole.m, rtol=0, atol=1e-10)
        torch.testing.assert_close(part.v, whole.v, rtol=0, atol=1e-10)
    # the default chunk follows the cache budget: D = 20 couplings (n = 441) go one instance at a time
    J = torch.zeros(3, 441, 441, dtype=torch.float64)
    res = amp(J, torch.ones(3, 441, dtype=torch.float64), torch.ones(3, 441, dtype=torch.float64), steps=5,
              generator=gen(2))
    assert res.m.shape == (3, 441) and res.sweeps.tolist() == [5, 5, 5]
