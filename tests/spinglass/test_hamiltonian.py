import math

import pytest
import torch

from iclab.spinglass import (
    SpinGlass,
    features,
    predict,
    sample_prompts,
    stack_stats,
    sufficient_stats,
    zero_ratio_law,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def glass(D=2, N=10, P=50, lam0=0.5, seed=0):
    return SpinGlass.from_stats(sufficient_stats(D, N, P, generator=gen(seed)), lam0)


def test_energy_equals_loss_minus_constant():
    sg = glass(D=3, N=7, P=40, lam0=0.3)
    W = torch.randn(6, 4, 4, generator=gen(1), dtype=torch.float64)
    torch.testing.assert_close(sg.energy(W), sg.loss(W) - sg.const, rtol=0, atol=1e-10)
    torch.testing.assert_close(sg.energy(W.reshape(6, -1)), sg.energy(W), rtol=0, atol=0)


def test_loss_from_stats_equals_direct_loss():
    D, N, P, lam0 = 3, 6, 25, 0.2
    pr = sample_prompts(D, N, P, generator=gen())
    s = features(pr.Z)
    sg = SpinGlass.from_features(s, pr.y, lam0)
    W = torch.randn(4, D + 1, D + 1, generator=gen(2), dtype=torch.float64)
    direct = 0.5 * ((predict(W, s) - pr.y) ** 2).mean(-1) + 0.5 * lam0 * (W**2).sum((-1, -2))
    torch.testing.assert_close(sg.loss(W), direct, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sg.const, 0.5 * (pr.y**2).mean())
    # the couplings / fields / confinement are the spec's definitions
    flat = s.reshape(P, -1)
    torch.testing.assert_close(sg.J, -flat.T @ flat / P)
    torch.testing.assert_close(sg.h, flat.T @ pr.y / P)
    torch.testing.assert_close(sg.lam, lam0 + (flat**2).mean(0))


def test_ground_state_is_ridge_and_minimises_energy():
    sg = glass(D=3, N=8, P=30, lam0=0.1)
    m = sg.ground_state()
    off = sg.J - torch.diag(torch.diagonal(sg.J))
    # stationarity lambda_i m_i - sum_{j != i} J_ij m_j = h_i
    torch.testing.assert_close(sg.lam * m - off @ m, sg.h, rtol=0, atol=1e-12)
    torch.testing.assert_close(sg.grad(m), torch.zeros_like(m), rtol=0, atol=1e-12)
    bumps = 1e-3 * torch.randn(20, sg.n, generator=gen(1), dtype=torch.float64)
    assert torch.all(sg.energy(m + bumps) > sg.energy(m))


def test_ground_state_without_regulariser_is_min_norm():
    D = 2
    sg = glass(D=D, N=10, P=4, lam0=0.0)  # P < D(D+1): degenerate
    m = sg.ground_state()
    torch.testing.assert_close(sg.grad(m), torch.zeros_like(m), rtol=0, atol=1e-10)
    torch.testing.assert_close(m, torch.linalg.pinv(sg.S, hermitian=True) @ sg.h)
    assert m.reshape(D + 1, D + 1)[:, D].abs().max() < 1e-12  # zero modes stay at zero


@pytest.mark.parametrize("D", [2, 3, 4])
def test_zero_ratio_follows_rank_law_exactly(D):
    for P in (1, 3, D * (D + 1) - 1, D * (D + 1), D * (D + 1) + 5, 200):
        st = sufficient_stats(D, 6, P, generator=gen(P))
        for lam0 in (0.0, 1.0):  # the zero modes are those of S, whatever lambda0
            sg = SpinGlass.from_stats(st, lam0)
            assert sg.zero_ratio().item() == pytest.approx(zero_ratio_law(P, D), abs=1e-12)
        rank = torch.linalg.matrix_rank(st.S, hermitian=True).item()
        assert rank == min(P, D * (D + 1))


def test_boltzmann_sampler_covariance_within_sampling_error():
    sg = glass(D=2, N=10, P=50, lam0=0.5)
    beta, n = 2.0, 200_000
    x = sg.sample_boltzmann(beta, n, gen(1))  # (n, 9)
    cov = torch.linalg.inv(beta * sg.precision())
    emp_mean = x.mean(0)
    emp_cov = torch.cov(x.T)
    # E|mean err|^2 = tr C / n;  E|cov err|_F^2 = (tr(C)^2 + |C|_F^2) / n  (Gaussian)
    mean_rms = math.sqrt(torch.trace(cov).item() / n)
    cov_rms = math.sqrt((torch.trace(cov) ** 2 + (cov**2).sum()).item() / n)
    assert torch.linalg.norm(emp_mean - sg.ground_state()) < 4 * mean_rms
    assert torch.linalg.norm(emp_cov - cov) < 4 * cov_rms
    # the check is sharp: the covariance at beta = 1 is excluded
    assert torch.linalg.norm(emp_cov - cov * beta) > 20 * cov_rms


@pytest.fixture
def single_thread():
    """Tiny (chains x 9) matmuls: intra-op threads only add contention on a shared 2-core box."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_langevin_covariance_within_sampling_error(single_thread):
    sg = glass(D=2, N=10, P=50, lam0=2.0)
    beta = 2.5
    eig = torch.linalg.eigvalsh(sg.precision())
    dt = 0.01 / eig.max().item()  # stationary covariance bias <= dt*a_max/2 = 0.5%
    relax = 1.0 / (dt * eig.min().item())  # slowest mode's correlation time in steps
    thin, burn_in, n_chains, n_kept = math.ceil(2 * relax), math.ceil(5 * relax), 4000, 6
    start = sg.ground_state()  # transient of the covariance decays as e^{-2 t / relax}
    out = sg.langevin(
        beta, burn_in + thin * n_kept, dt, n_chains, gen(3), burn_in=burn_in, thin=thin, init=start
    )
    assert out.shape == (n_kept, n_chains, sg.n)
    x = out.reshape(-1, sg.n)
    cov = torch.linalg.inv(beta * sg.precision())
    # thinned lag-2*relax autocorrelation <= e^-2: n_eff >= n (1 - e^-2) / (1 + e^-2)
    n_eff = x.shape[0] * (1 - math.exp(-2)) / (1 + math.exp(-2))
    cov_rms = math.sqrt((torch.trace(cov) ** 2 + (cov**2).sum()).item() / n_eff)
    bias = 0.005 * torch.linalg.norm(cov).item() / (1 - 0.005)  # exact O(dt) bias bound
    assert torch.linalg.norm(torch.cov(x.T) - cov) < 4 * cov_rms + bias
    mean_rms = math.sqrt(torch.trace(cov).item() / n_eff)
    assert torch.linalg.norm(x.mean(0) - sg.ground_state()) < 4 * mean_rms
    # the check is sharp: a covariance 20% off is excluded
    assert torch.linalg.norm(torch.cov(x.T) - 1.2 * cov) > 4 * cov_rms + bias


def test_batched_glass_matches_individual_repeats():
    stats = [sufficient_stats(2, 5, 30, generator=gen(i)) for i in range(3)]
    batched = SpinGlass.from_stats(stack_stats(stats), 0.1)
    singles = [SpinGlass.from_stats(st, 0.1) for st in stats]
    W = torch.randn(3, 9, generator=gen(9), dtype=torch.float64)  # one W per repeat
    for name in ("energy", "loss", "grad"):
        each = torch.stack([getattr(g, name)(w) for g, w in zip(singles, W)])
        torch.testing.assert_close(getattr(batched, name)(W), each)
    for name in ("ground_state", "zero_ratio", "hessian_spectrum"):
        each = torch.stack([getattr(g, name)() for g in singles])
        torch.testing.assert_close(getattr(batched, name)(), each)
    assert batched.sample_boltzmann(1.0, 5, gen()).shape == (3, 5, 9)
    assert batched.langevin(1.0, 4, 1e-3, 7, gen()).shape == (4, 3, 7, 9)


def test_coupling_and_field_statistics_of_spec_section_6():
    """D=5, N=100, P=1000: diag(J) ~ -0.21 / -1.34 (rows / last row), diag of h block ~ 0.198."""
    D, N, P = 5, 100, 1000
    pr = sample_prompts(D, N, P, generator=gen(2024))
    s = features(pr.Z)  # (P, D+1, D+1)
    sg = SpinGlass.from_features(s, pr.y, 0.0)
    diag = torch.diagonal(sg.J).reshape(D + 1, D + 1)
    h = sg.h.reshape(D + 1, D + 1)
    assert torch.all(diag[:, D] == 0) and torch.all(h[:, D] == 0)  # inert last column

    def mean_and_se(per_prompt):  # per_prompt (P,)
        return per_prompt.mean().item(), per_prompt.std().item() / math.sqrt(P)

    # rows 1..D: E s_ab^2 = N(N+D+1) / (D (N+1)^2) = 0.2078
    mean, se = mean_and_se((s[:, :D, :D] ** 2).mean((1, 2)))
    assert -diag[:D, :D].mean().item() == pytest.approx(mean, rel=1e-12)
    assert abs(mean - N * (N + D + 1) / (D * (N + 1) ** 2)) < 5 * se
    assert abs(mean - 0.21) < 0.02
    # last row: E s_Db^2 = (1 + 2/D) N (N+2) / (N+1)^2 = 1.400 (spec's single draw: 1.34)
    mean, se = mean_and_se((s[:, D, :D] ** 2).mean(1))
    assert abs(mean - (1 + 2 / D) * N * (N + 2) / (N + 1) ** 2) < 5 * se
    assert 1.2 < mean < 1.6
    # h diagonal: E y s_aa = N / ((N+1) D) = 0.198; off-diagonal mean 0
    ys = pr.y[:, None, None] * s  # (P, D+1, D+1)
    mean, se = mean_and_se(torch.diagonal(ys[:, :D, :D], dim1=1, dim2=2).mean(1))
    assert abs(mean - N / ((N + 1) * D)) < 5 * se
    se_each = torch.diagonal(ys[:, :D, :D], dim1=1, dim2=2).std(0) / math.sqrt(P)  # (D,)
    assert torch.all((torch.diagonal(h[:D, :D]) - N / ((N + 1) * D)).abs() < 4 * se_each)
    off = h[:D, :D][~torch.eye(D, dtype=torch.bool)]
    assert off.abs().mean() < 0.04 and abs(off.mean().item()) < 0.02
