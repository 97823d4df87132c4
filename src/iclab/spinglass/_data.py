"""Linear-regression prompts, reduced features and sufficient statistics (docs/spinglass.md: the model).

A prompt is the token matrix

    Z = [[x_1 ... x_N  x_q],
         [y_1 ... y_N  0  ]]            # (D+1, N+1), columns are tokens

with x ~ N(0, I_D), a task w ~ N(0, I_D) per prompt, y = w.x / sqrt(D) (noise-free).
The merged linear-attention readout only sees the reduced features s (docs/spinglass.md: readout), so every
loss over W is a quadratic form in W with coefficients (S, h, yy) = sufficient statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


# -----------------------------------------------------------------------------
# prompts


@dataclass
class Prompts:
    """A batch of P prompts: tokens with the query label hidden, query targets and tasks."""

    Z: Tensor  # (P, D+1, N+1), Z[:, D, N] == 0
    y: Tensor  # (P,) query targets
    w: Tensor  # (P, D) task vectors


def token_correlation_factor(n_tokens: int, c: float, *, dtype=torch.float64) -> Tensor:
    """Lower Cholesky factor L of the equicorrelation matrix (1-c) I + c 11^T (n_tokens^2).

    Valid for -1/(n_tokens-1) < c < 1 (positive definite).
    """
    if not (-1.0 / max(n_tokens - 1, 1) < c < 1.0):
        raise ValueError(f"token_corr={c} does not give a positive-definite equicorrelation")
    ones = torch.ones(n_tokens, n_tokens, dtype=dtype)
    C = (1.0 - c) * torch.eye(n_tokens, dtype=dtype) + c * ones  # (T, T)
    return torch.linalg.cholesky(C)


def sample_prompts(
    D: int,
    N: int,
    P: int,
    *,
    generator: torch.Generator,
    dtype=torch.float64,
    tasks: Tensor | None = None,
    token_corr: float = 0.0,
) -> Prompts:
    """Draw P prompts with N context pairs each (single-instance: one fresh task per prompt).

    `tasks` (P, D) replaces the fresh Gaussian tasks, e.g. draws from a finite `TaskPool`.

    `token_corr=c` makes the N+1 tokens equicorrelated: for every input coordinate d,
    Cov(x_{., d}) = (1-c) I + c 11^T over tokens. We draw g ~ N(0, I) and set x = g L^T with
    L L^T the equicorrelation matrix (L lower Cholesky factor), which gives exactly that
    covariance. The official Fig. S4 code multiplies X <- X L with tokens along the rows of X,
    which yields covariance L^T L != L L^T, i.e. *not* equicorrelation (docs/spinglass.md: quirks); we
    implement the intended model.
    """
    if tasks is None:
        w = torch.randn(P, D, generator=generator, dtype=dtype)  # (P, D)
    else:
        w = tasks.to(dtype)
        assert w.shape == (P, D), f"tasks must be (P, D)=({P}, {D}), got {tuple(w.shape)}"
    x = torch.randn(P, D, N + 1, generator=generator, dtype=dtype)  # (P, D, N+1)
    if token_corr != 0.0:
        L = token_correlation_factor(N + 1, token_corr, dtype=dtype)  # (N+1, N+1)
        x = x @ L.T  # (P, D, N+1), rows now have token covariance L L^T
    labels = torch.einsum("pd,pdt->pt", w, x) / math.sqrt(D)  # (P, N+1)
    y = labels[:, N].clone()  # (P,)
    labels[:, N] = 0.0
    Z = torch.cat([x, labels[:, None, :]], dim=1)  # (P, D+1, N+1)
    return Prompts(Z=Z, y=y, w=w)


# -----------------------------------------------------------------------------
# model readout


def features(Z: Tensor) -> Tensor:
    """Reduced features s_ab = (Z Z^T)[D, a] * Z[b, N] / (N+1); y_hat = sum_ab W_ab s_ab.

    Only the last row of Z Z^T is needed, so we never form the full (D+1)^2 Gram matrix.
    The last column s[:, :, D] is identically zero (the query label slot is 0).
    """
    n_tokens = Z.shape[-1]
    gram_last = torch.einsum("...t,...at->...a", Z[..., -1, :], Z)  # (P, D+1) = (Z Z^T)[D, :]
    query = Z[..., :, -1]  # (P, D+1), last entry 0
    return gram_last[..., :, None] * query[..., None, :] / n_tokens  # (P, D+1, D+1)


def predict(W: Tensor, s: Tensor) -> Tensor:
    """Merged linear-attention prediction y_hat = <W, s>_F; W (..., D+1, D+1), s (P, D+1, D+1)."""
    return torch.einsum("...ab,pab->...p", W, s)  # (..., P)


def attention_output(W: Tensor, Z: Tensor) -> Tensor:
    """Full SLA readout (Z Z^T W Z)[D, N] / (N+1), the reference for the reduced form."""
    F = Z @ Z.transpose(-1, -2) @ W @ Z / Z.shape[-1]  # (P, D+1, N+1)
    return F[..., -1, -1]  # (P,)


# -----------------------------------------------------------------------------
# sufficient statistics


def flatten_spins(W: Tensor, D: int) -> Tensor:
    """W as spins: (..., D+1, D+1) -> (..., (D+1)^2) row-major; (..., n) passes through."""
    if W.shape[-1] == D + 1:
        assert W.shape[-2] == D + 1, f"expected (..., {D+1}, {D+1}), got {tuple(W.shape)}"
        return W.reshape(*W.shape[:-2], (D + 1) ** 2)
    assert W.shape[-1] == (D + 1) ** 2, f"expected (..., {(D+1)**2}), got {tuple(W.shape)}"
    return W


@dataclass
class SuffStats:
    """Quadratic-loss coefficients: mean_mu (y_hat - y)^2 = w^T S w - 2 h^T w + yy, w = vec(W).

    Tensors may carry leading batch dims (e.g. R repeats, see `stack_stats`).
    """

    S: Tensor  # (..., n, n), n = (D+1)^2, mean_mu s s^T (row-major flattening of s)
    h: Tensor  # (..., n), mean_mu y s
    yy: Tensor  # (...,), mean_mu y^2
    P: int
    D: int
    N: int

    def mse(self, W: Tensor) -> Tensor:
        """Training MSE of W (..., D+1, D+1) or (..., n) from the statistics alone."""
        w = flatten_spins(W, self.D)  # (..., n)
        quad = torch.einsum("...k,...kl,...l->...", w, self.S, w)
        return quad - 2 * (w * self.h).sum(-1) + self.yy


def sufficient_stats_from(s: Tensor, y: Tensor, N: int | None = None) -> SuffStats:
    """Statistics of explicit features s (P, D+1, D+1) and targets y (P,)."""
    P, D1, _ = s.shape
    flat = s.reshape(P, -1)  # (P, n)
    return SuffStats(
        S=flat.T @ flat / P,  # (n, n)
        h=flat.T @ y / P,  # (n,)
        yy=(y * y).mean(),
        P=P,
        D=D1 - 1,
        N=-1 if N is None else N,
    )


def prompt_stream(
    D: int,
    N: int,
    P: int,
    *,
    generator: torch.Generator,
    dtype=torch.float64,
    chunk: int = 2048,
    tasks: Tensor | None = None,
    token_corr: float = 0.0,
):
    """Yield P prompts as consecutive `sample_prompts` chunks of at most `chunk` prompts."""
    for start in range(0, P, chunk):
        size = min(chunk, P - start)
        sub_tasks = None if tasks is None else tasks[start : start + size]
        yield sample_prompts(
            D, N, size, generator=generator, dtype=dtype, tasks=sub_tasks, token_corr=token_corr
        )


def stack_stats(stats: list[SuffStats]) -> SuffStats:
    """Stack R statistics of equal (P, D, N) into one batched SuffStats with S (R, n, n)."""
    first = stats[0]
    assert all((st.P, st.D, st.N) == (first.P, first.D, first.N) for st in stats)
    return SuffStats(
        S=torch.stack([st.S for st in stats]),
        h=torch.stack([st.h for st in stats]),
        yy=torch.stack([torch.as_tensor(st.yy) for st in stats]),
        P=first.P,
        D=first.D,
        N=first.N,
    )


# -----------------------------------------------------------------------------
# finite task pool and Bayes baselines (Raventos et al. 2023, docs/spinglass.md: anchors)


class TaskPool:
    """M fixed tasks w ~ N(0, I_D); prompts pick one uniformly, so task diversity = M."""

    def __init__(self, M: int, D: int, generator: torch.Generator, dtype=torch.float64):
        self.tasks = torch.randn(M, D, generator=generator, dtype=dtype)  # (M, D)

    @property
    def M(self) -> int:
        return self.tasks.shape[0]

    def sample_tasks(self, P: int, generator: torch.Generator) -> Tensor:
        """P tasks drawn uniformly with replacement from the pool."""
        idx = torch.randint(self.M, (P,), generator=generator)  # (P,)
        return self.tasks[idx]  # (P, D)


def _context(Z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split Z into context inputs X (P, N, D), context labels y (P, N), query x_q (P, D)."""
    D = Z.shape[-2] - 1
    X = Z[:, :D, :-1].transpose(1, 2)  # (P, N, D)
    y = Z[:, D, :-1]  # (P, N)
    xq = Z[:, :D, -1]  # (P, D)
    return X, y, xq


def dmmse_predict(Z: Tensor, pool_tasks: Tensor, noise_var: float = 1e-2) -> Tensor:
    """Bayes prediction when the prior is uniform over the pool tasks (M, D) ("dMMSE").

    Posterior weights pi_k ∝ exp(-sum_i (y_i - w_k.x_i/sqrt D)^2 / (2 noise_var)), computed in
    log-space; y_hat = sum_k pi_k w_k.x_q / sqrt D. Our labels are noise-free, so `noise_var`
    is a small temperature that keeps the posterior finite. The squared residual is expanded as
    sum y^2 - 2 w.b + w^T C w / D with b = X^T y / sqrt D and C = X^T X so no (P, M, N)
    tensor is formed.
    """
    X, y, xq = _context(Z)
    D = X.shape[-1]
    w = pool_tasks.to(Z.dtype)  # (M, D)
    C = X.transpose(1, 2) @ X  # (P, D, D)
    b = torch.einsum("pnd,pn->pd", X, y) / math.sqrt(D)  # (P, D)
    quad = torch.einsum("md,pde,me->pm", w, C, w) / D  # (P, M)
    sq_resid = (y * y).sum(-1, keepdim=True) - 2 * b @ w.T + quad  # (P, M)
    log_post = -sq_resid / (2 * noise_var)  # (P, M)
    post = torch.softmax(log_post, dim=-1)  # (P, M), logsumexp-normalised
    task_preds = xq @ w.T / math.sqrt(D)  # (P, M)
    return (post * task_preds).sum(-1)  # (P,)


def ridge_predict(Z: Tensor, lam: float) -> Tensor:
    """Ridge regression of context labels on context inputs, evaluated at the query.

    beta = (X^T X + lam I)^{-1} X^T y and y_hat = beta.x_q. With w ~ N(0, I_D) and
    y = w.x/sqrt(D) + eps, eps ~ N(0, sigma^2), the regression vector v = w/sqrt(D) has prior
    N(0, I/D), so the posterior mean of v is (X^T X + D sigma^2 I)^{-1} X^T y: ridge is the
    Bayes-optimal (Gaussian-prior) predictor for lam = D * noise_var.
    """
    X, y, xq = _context(Z)
    D = X.shape[-1]
    A = X.transpose(1, 2) @ X + lam * torch.eye(D, dtype=Z.dtype)  # (P, D, D)
    rhs = torch.einsum("pnd,pn->pd", X, y)  # (P, D)
    beta = torch.linalg.solve(A, rhs)  # (P, D)
    return (beta * xq).sum(-1)  # (P,)
