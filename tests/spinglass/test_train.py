"""The sufficient-statistics trainer reproduces full-batch Adam on the prompts exactly."""

import pytest
import torch

from iclab.spinglass._analysis import population_optimum
from iclab.spinglass._data import features, sample_prompts, stack_stats, sufficient_stats_from
from iclab.spinglass._sampling import sufficient_stats
from iclab.spinglass._attention import build_model
from iclab.spinglass._train import init_params, record_points, train_architecture, train_prompts, train_quadratic

D, N, P = 3, 10, 50


def prompts_and_stats(seed: int, P: int = P):
    prompts = sample_prompts(D, N, P, generator=torch.Generator().manual_seed(seed))
    return prompts, sufficient_stats_from(features(prompts.Z), prompts.y)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("model", ["merged", "separate"])
def test_stats_trajectory_equals_prompt_trajectory(model):
    train, stats = prompts_and_stats(0)
    test, test_stats = prompts_and_stats(1, P=40)
    kw = dict(model=model, epochs=200, lr=0.01, weight_decay=0.01, record_every=7)
    fast = train_quadratic(stats.S, stats.h, stats.yy, generator=torch.Generator().manual_seed(5),
                           test_stats=test_stats, **kw)
    slow = train_prompts(train.Z, train.y, generator=torch.Generator().manual_seed(5),
                         test=(test.Z, test.y), **kw)
    assert rel(fast.W, slow.W) < 1e-8
    for name in fast.params:
        assert rel(fast.params[name], slow.params[name]) < 1e-8
    assert torch.equal(fast.epochs, slow.epochs)
    assert (fast.train_loss - slow.train_loss).abs().max() / slow.train_loss.abs().max() < 1e-9
    assert (fast.test_loss - slow.test_loss).abs().max() / slow.test_loss.abs().max() < 1e-9


def test_recorded_epochs_and_shapes():
    _, stats = prompts_and_stats(0)
    res = train_quadratic(stats.S, stats.h, stats.yy, epochs=20, lr=0.01, record_every=6,
                          generator=torch.Generator().manual_seed(0))
    assert res.epochs.tolist() == [0, 6, 12, 18, 20] == record_points(20, 6)
    assert res.W.shape == (1, D + 1, D + 1)
    assert res.train_loss.shape == (1, 5) and res.test_loss is None
    assert res.W.dtype == torch.float64
    # the last record is the loss of the returned weights
    torch.testing.assert_close(res.train_loss[0, -1], stats.mse(res.W[0]), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("model", ["merged", "separate"])
def test_batched_repeats_equal_separate_runs(model):
    R = 3
    stats = stack_stats([prompts_and_stats(seed)[1] for seed in range(R)])
    init = init_params(model, R, D, generator=torch.Generator().manual_seed(9))
    kw = dict(model=model, epochs=100, lr=0.02, weight_decay=0.01)
    batched = train_quadratic(stats.S, stats.h, stats.yy, init=init, test_stats=stats, **kw)
    for r in range(R):
        one = train_quadratic(stats.S[r], stats.h[r], stats.yy[r], test_stats=(stats.S[r], stats.h[r], stats.yy[r]),
                              init={k: v[r : r + 1] for k, v in init.items()}, **kw)
        assert rel(batched.W[r], one.W[0]) < 1e-12
        torch.testing.assert_close(batched.train_loss[r], one.train_loss[0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(batched.test_loss[r], one.test_loss[0], rtol=1e-12, atol=1e-14)


def test_batched_prompt_trainer_matches_batched_stats_trainer():
    R = 2
    runs = [prompts_and_stats(seed) for seed in range(R)]
    Z = torch.stack([p.Z for p, _ in runs])  # (R, P, D+1, N+1)
    y = torch.stack([p.y for p, _ in runs])  # (R, P)
    stats = stack_stats([s for _, s in runs])
    kw = dict(epochs=50, lr=0.01, weight_decay=0.0)
    fast = train_quadratic(stats.S, stats.h, stats.yy, generator=torch.Generator().manual_seed(2), **kw)
    slow = train_prompts(Z, y, generator=torch.Generator().manual_seed(2), **kw)
    assert rel(fast.W, slow.W) < 1e-8


@pytest.mark.parametrize("model", ["merged", "separate"])
def test_training_loss_falls(model):
    _, stats = prompts_and_stats(0, P=500)
    res = train_quadratic(stats.S, stats.h, stats.yy, model=model, epochs=300, lr=0.01,
                          generator=torch.Generator().manual_seed(0))
    loss = res.train_loss[0]
    assert loss[-1] < 0.5 * loss[0]
    assert loss[-1] < 0.5  # well below the trivial predictor's E[y²] = 1


def test_large_P_tiny_weight_decay_reaches_the_population_optimum():
    D_, N_ = 3, 20
    stats = sufficient_stats(D_, N_, 200_000, generator=torch.Generator().manual_seed(0), chunk=50_000)
    wd = 1e-6
    res = train_quadratic(stats.S, stats.h, stats.yy, epochs=1500, lr=0.01, weight_decay=wd,
                          generator=torch.Generator().manual_seed(1))
    W = res.W[0]
    # the last column never reaches the output: compare the D(D+1) relevant weights only
    n = (D_ + 1) ** 2
    ridge = torch.linalg.solve(stats.S + wd / 2 * torch.eye(n, dtype=stats.S.dtype), stats.h).view(D_ + 1, D_ + 1)
    assert (W[:, :D_] - ridge[:, :D_]).abs().max() < 1e-4  # Adam found the ground state
    target = population_optimum(D_, N_)
    assert (W[:, :D_] - target[:, :D_]).abs().max() < 0.02  # which is near the population optimum
    assert (W[:D_, :D_].diagonal() - (N_ + 1) / (N_ + D_ + 1)).abs().max() < 0.01


def test_train_architecture_full_batch_equals_train_quadratic():
    """The generic trainer (fast (C, zq) path) follows the same trajectory as the stats trainer."""
    train, stats = prompts_and_stats(0)
    test, test_stats = prompts_and_stats(1)
    model = build_model("sla", D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    init = {"W": model.W.detach().clone()[None]}
    arch = train_architecture(model, (train.Z, train.y), (test.Z, test.y), epochs=100, lr=0.01,
                              weight_decay=0.01, record_every=10)
    quad = train_quadratic(stats.S, stats.h, stats.yy, epochs=100, lr=0.01, weight_decay=0.01,
                           record_every=10, init=init, test_stats=test_stats)
    assert rel(model.W.detach(), quad.W[0]) < 1e-8
    torch.testing.assert_close(arch.train_loss, quad.train_loss[0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(arch.test_loss, quad.test_loss[0], rtol=1e-9, atol=1e-12)
    assert torch.equal(arch.epochs, quad.epochs)


@pytest.mark.parametrize("name", ["fla", "mhla", "sa", "tf"])
def test_train_architecture_minibatch_runs_deterministically_and_learns(name):
    train, _ = prompts_and_stats(0, P=256)
    test, _ = prompts_and_stats(1, P=64)

    def run():
        model = build_model(name, D, generator=torch.Generator().manual_seed(0))
        return train_architecture(model, (train.Z, train.y), (test.Z, test.y), epochs=15, lr=3e-3,
                                  batch_size=64, generator=torch.Generator().manual_seed(1), record_every=5)

    a, b = run(), run()
    assert torch.equal(a.train_loss, b.train_loss) and torch.equal(a.test_loss, b.test_loss)
    assert a.train_loss.shape == a.test_loss.shape == (4,)
    assert a.train_loss[-1] < a.train_loss[0]


@pytest.mark.parametrize("model", ["merged", "separate"])
def test_quadratic_trainer_is_torch_adam_on_the_autograd_loss(model):
    """The hand-computed gradients (no autograd, live spins only, grouped repeats) give exactly the
    trajectory of torch.optim.Adam on the autograd quadratic loss: same lr, betas, eps, coupled wd."""
    R = 5
    stats = stack_stats([prompts_and_stats(seed)[1] for seed in range(R)])
    init = init_params(model, R, D, generator=torch.Generator().manual_seed(4))
    kw = dict(model=model, epochs=60, lr=0.02, weight_decay=0.03, init=init)
    res = train_quadratic(stats.S, stats.h, stats.yy, record_every=20, group=2, **kw)
    params = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    opt = torch.optim.Adam(params.values(), lr=0.02, weight_decay=0.03)
    for _ in range(60):
        W = params["W"] if model == "merged" else params["W_Q"].mT @ params["W_K"]
        w = W.flatten(-2)
        loss = ((w[:, None, :] @ stats.S)[:, 0] * w).sum(-1) - 2 * (stats.h * w).sum(-1) + stats.yy
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    for k in params:
        torch.testing.assert_close(res.params[k], params[k].detach(), rtol=0, atol=1e-12)
    # group size does not matter (each repeat has its own Adam state)
    other = train_quadratic(stats.S, stats.h, stats.yy, record_every=20, group=16, **kw)
    torch.testing.assert_close(other.W, res.W, rtol=0, atol=1e-13)
    torch.testing.assert_close(other.train_loss, res.train_loss, rtol=0, atol=1e-13)


def test_record_at_and_float32_runs():
    R = 2
    stats = stack_stats([prompts_and_stats(seed)[1] for seed in range(R)])
    kw = dict(epochs=100, lr=0.01, weight_decay=0.01, generator=torch.Generator().manual_seed(0))
    res = train_quadratic(stats.S, stats.h, stats.yy, record_at=[1, 10, 50, 500], **kw)
    assert res.epochs.tolist() == [0, 1, 10, 50, 100] and res.train_loss.shape == (R, 5)
    f32 = train_quadratic(stats.S, stats.h, stats.yy, record_every=100, dtype=torch.float32,
                          generator=torch.Generator().manual_seed(0), epochs=100, lr=0.01, weight_decay=0.01)
    assert f32.W.dtype == torch.float32 and f32.train_loss.dtype == torch.float64  # losses evaluated in float64
    assert rel(f32.W.double(), res.W) < 1e-4  # same init (drawn in float64), same trajectory to float32 rounding
    torch.testing.assert_close(f32.train_loss[:, -1], res.train_loss[:, -1], rtol=1e-4, atol=1e-6)
