import math

import pytest
import torch

from iclab.spinglass import (
    TaskPool,
    attention_output,
    dmmse_predict,
    features,
    predict,
    prompt_stream,
    ridge_predict,
    sample_prompts,
    stack_stats,
    sufficient_stats,
    sufficient_stats_from,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_prompts_layout_and_noise_free_labels():
    D, N, P = 4, 9, 6
    pr = sample_prompts(D, N, P, generator=gen())
    assert pr.Z.shape == (P, D + 1, N + 1) and pr.y.shape == (P,) and pr.w.shape == (P, D)
    assert pr.Z.dtype == torch.float64
    assert torch.all(pr.Z[:, D, N] == 0)
    x = pr.Z[:, :D, :]  # (P, D, N+1)
    labels = torch.einsum("pd,pdt->pt", pr.w, x) / math.sqrt(D)  # (P, N+1)
    torch.testing.assert_close(pr.Z[:, D, :N], labels[:, :N], rtol=0, atol=1e-14)
    torch.testing.assert_close(pr.y, labels[:, N], rtol=0, atol=1e-14)


def test_sampling_is_deterministic_given_generator():
    a = sample_prompts(3, 5, 4, generator=gen(7))
    b = sample_prompts(3, 5, 4, generator=gen(7))
    c = sample_prompts(3, 5, 4, generator=gen(8))
    assert torch.equal(a.Z, b.Z) and torch.equal(a.y, b.y)
    assert not torch.equal(a.Z, c.Z)


def test_given_tasks_are_used():
    D, N, P = 3, 4, 5
    tasks = torch.randn(P, D, generator=gen(1), dtype=torch.float64)
    pr = sample_prompts(D, N, P, generator=gen(), tasks=tasks)
    assert torch.equal(pr.w, tasks)
    torch.testing.assert_close(pr.y, (pr.w * pr.Z[:, :D, N]).sum(-1) / math.sqrt(D))


@pytest.mark.parametrize("D,N", [(1, 1), (3, 7), (5, 20)])
def test_reduced_form_equals_full_attention(D, N):
    pr = sample_prompts(D, N, 11, generator=gen(D))
    W = torch.randn(D + 1, D + 1, generator=gen(100 + D), dtype=torch.float64)
    s = features(pr.Z)
    assert s.shape == (11, D + 1, D + 1)
    assert torch.all(s[:, :, D] == 0)  # query label slot is zero -> last column of W is inert
    torch.testing.assert_close(predict(W, s), attention_output(W, pr.Z), rtol=1e-12, atol=1e-12)


def test_predict_broadcasts_over_stacks_of_W():
    D, N = 2, 5
    pr = sample_prompts(D, N, 7, generator=gen())
    Ws = torch.randn(4, D + 1, D + 1, generator=gen(1), dtype=torch.float64)
    out = predict(Ws, features(pr.Z))
    assert out.shape == (4, 7)
    for i in range(4):
        torch.testing.assert_close(out[i], attention_output(Ws[i], pr.Z), rtol=1e-12, atol=1e-12)


def test_quadratic_identity_equals_direct_mse():
    D, N, P = 3, 8, 50
    pr = sample_prompts(D, N, P, generator=gen())
    s = features(pr.Z)
    st = sufficient_stats_from(s, pr.y)
    Ws = torch.randn(5, D + 1, D + 1, generator=gen(3), dtype=torch.float64)
    direct = ((predict(Ws, s) - pr.y) ** 2).mean(-1)  # (5,)
    torch.testing.assert_close(st.mse(Ws), direct, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(st.mse(Ws.reshape(5, -1)), direct, rtol=1e-10, atol=1e-12)


def test_streamed_stats_equal_one_shot():
    D, N, P = 2, 6, 37
    # chunk >= P: a single chunk is exactly sample_prompts(P)
    one_shot = sample_prompts(D, N, P, generator=gen(5))
    ref = sufficient_stats_from(features(one_shot.Z), one_shot.y)
    full = sufficient_stats(D, N, P, generator=gen(5), chunk=1000, method="prompts")
    torch.testing.assert_close(full.S, ref.S, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(full.h, ref.h, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(full.yy, ref.yy, rtol=1e-13, atol=1e-15)
    # small chunks: accumulation equals the statistics of the concatenated stream
    chunks = list(prompt_stream(D, N, P, generator=gen(5), chunk=8))
    assert [c.y.shape[0] for c in chunks] == [8, 8, 8, 8, 5]
    s = torch.cat([features(c.Z) for c in chunks])
    y = torch.cat([c.y for c in chunks])
    ref = sufficient_stats_from(s, y)
    streamed = sufficient_stats(D, N, P, generator=gen(5), chunk=8, method="prompts")
    torch.testing.assert_close(streamed.S, ref.S, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(streamed.h, ref.h, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(streamed.yy, ref.yy, rtol=1e-13, atol=1e-15)
    assert (streamed.P, streamed.D, streamed.N) == (P, D, N)


def test_stack_stats_batches_repeats():
    stats = [sufficient_stats(2, 4, 10, generator=gen(i)) for i in range(3)]
    st = stack_stats(stats)
    assert st.S.shape == (3, 9, 9) and st.h.shape == (3, 9) and st.yy.shape == (3,)
    W = torch.randn(9, generator=gen(9), dtype=torch.float64)
    torch.testing.assert_close(st.mse(W), torch.stack([x.mse(W) for x in stats]))


def test_token_correlation_is_equicorrelation():
    D, N, P, c = 2, 3, 20000, 0.6
    pr = sample_prompts(D, N, P, generator=gen(), token_corr=c)
    x = pr.Z[:, :D, :].reshape(-1, N + 1)  # (P*D, N+1) rows are token vectors of one coordinate
    emp = x.T @ x / x.shape[0]
    target = (1 - c) * torch.eye(N + 1, dtype=torch.float64) + c
    # Var(emp_ij) = (S_ii S_jj + S_ij^2) / n <= 2 / n; allow 5 standard errors
    tol = 5 * math.sqrt(2 / x.shape[0])
    assert (emp - target).abs().max() < tol
    # labels still follow the task of each prompt
    torch.testing.assert_close(pr.y, (pr.w * pr.Z[:, :D, N]).sum(-1) / math.sqrt(D))


def test_task_pool_sampling():
    pool = TaskPool(5, 3, gen())
    assert pool.tasks.shape == (5, 3) and pool.M == 5
    t = pool.sample_tasks(200, gen(1))
    hits = (t[:, None, :] == pool.tasks[None]).all(-1)  # (200, 5)
    assert torch.all(hits.sum(-1) == 1)  # every draw is exactly one pool member
    assert torch.all(hits.sum(0) > 0)  # all members used


def test_dmmse_single_task_pool_is_exact():
    D, N, P = 4, 3, 20  # N < D: the context alone cannot identify the task
    pool = TaskPool(1, D, gen())
    pr = sample_prompts(D, N, P, generator=gen(1), tasks=pool.sample_tasks(P, gen(2)))
    torch.testing.assert_close(dmmse_predict(pr.Z, pool.tasks), pr.y, rtol=0, atol=1e-12)


def test_dmmse_identifies_pool_task_and_matches_brute_force():
    D, N, P, M = 3, 10, 30, 16
    pool = TaskPool(M, D, gen())
    pr = sample_prompts(D, N, P, generator=gen(1), tasks=pool.sample_tasks(P, gen(2)))
    pred = dmmse_predict(pr.Z, pool.tasks, noise_var=1e-3)  # wrong tasks get weight e^{-R/2e-3}
    torch.testing.assert_close(pred, pr.y, rtol=0, atol=1e-8)
    # brute force on a harder setting (few context points, large noise_var)
    Z = sample_prompts(D, 2, 7, generator=gen(3)).Z
    noise_var = 0.5
    X, y, xq = Z[:, :D, :-1], Z[:, D, :-1], Z[:, :D, -1]
    resid = y[:, None, :] - torch.einsum("md,pdn->pmn", pool.tasks, X) / math.sqrt(D)  # (P, M, N)
    logw = -(resid**2).sum(-1) / (2 * noise_var)
    weights = torch.exp(logw - logw.max(-1, keepdim=True).values)
    weights = weights / weights.sum(-1, keepdim=True)
    brute = (weights * (xq @ pool.tasks.T) / math.sqrt(D)).sum(-1)
    pred = dmmse_predict(Z, pool.tasks, noise_var)
    torch.testing.assert_close(pred, brute, rtol=1e-10, atol=1e-12)


def test_ridge_is_gaussian_posterior_mean_with_lam_D_sigma2():
    D, N, P, noise_var = 4, 3, 10, 0.3
    pr = sample_prompts(D, N, P, generator=gen())
    X = pr.Z[:, :D, :N].transpose(1, 2)  # (P, N, D)
    y = pr.Z[:, D, :N]  # (P, N)
    # posterior of w ~ N(0, I) given y = X w / sqrt(D) + eps, eps ~ N(0, noise_var)
    prec = X.transpose(1, 2) @ X / (D * noise_var) + torch.eye(D, dtype=torch.float64)
    w_post = torch.linalg.solve(prec, torch.einsum("pnd,pn->pd", X, y) / (math.sqrt(D) * noise_var))
    bayes = (w_post * pr.Z[:, :D, N]).sum(-1) / math.sqrt(D)
    torch.testing.assert_close(ridge_predict(pr.Z, D * noise_var), bayes, rtol=1e-10, atol=1e-12)


def test_ridge_becomes_exact_for_long_prompts():
    D, P = 5, 200
    errs = []
    for N in (5, 20, 200):
        pr = sample_prompts(D, N, P, generator=gen(N))
        errs.append(((ridge_predict(pr.Z, D * 1e-2) - pr.y) ** 2).mean().item())
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-4
    pr = sample_prompts(D, 200, P, generator=gen())
    torch.testing.assert_close(ridge_predict(pr.Z, 1e-9), pr.y, rtol=0, atol=1e-8)
