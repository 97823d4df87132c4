"""Exact reduced sampling of prompts: draw only what the readout sees, O(D) numbers per prompt.

The merged readout (docs/spinglass.md: readout) sees a prompt Z (D+1, N+1) only through

    g = (Z Zᵀ)[D, :]  (D+1,)   and the query x_q (D,),      s = g ⊗ x_q / k   (k = N+1),

because the query's label slot is 0. With the context Gram matrix C = Σ_{i≤N} x_i x_iᵀ and
y_i = w·x_i/√D,

    g_a = (C w)_a / √D  (a < D),      g_D = wᵀ C w / D.

So only the pair (C w, wᵀ C w) has to be drawn, not the D N context inputs.

Why the draw below is exact (i.i.d. tokens, x_i ~ N(0, I_D), independent of w and x_q):
split every context input along ŵ = w/|w|: x_i = u_i ŵ + x_i⊥ with u_i = ŵ·x_i ~ N(0, 1)
independent of x_i⊥ ~ N(0, P⊥) (P⊥ = I − ŵŵᵀ, Gaussian components along orthogonal directions
are independent). Then

    C w = |w| Σ_i x_i u_i = |w| (r² ŵ + Σ_i u_i x_i⊥),      r² = Σ_i u_i² ~ χ²_N,
    wᵀ C w = |w|² r².

Given u, Σ_i u_i x_i⊥ is Gaussian with covariance (Σ_i u_i²) P⊥ = r² P⊥, i.e. it equals r P⊥ ξ
with ξ ~ N(0, I_D) independent of r. Hence (C w, wᵀ C w) = (|w| (r² ŵ + r P⊥ ξ), |w|² r²) in
distribution, jointly with w and x_q: D + 1 variates per prompt besides w and x_q, and no
restriction on N (a Bartlett factor would need N ≥ D). Since w and x_q are drawn exactly and g is
a function of (C w, wᵀ C w), the features s and targets y = w·x_q/√D of `sample_reduced` have
exactly the law of `data.features(data.sample_prompts(...).Z)` and its `y` (also for given tasks,
which only fix w).

Equicorrelated tokens (token_corr = c, `data.sample_prompts`): per coordinate the N+1 tokens
have covariance (1−c) I + c 11ᵀ, i.e. x_i = √c f + √(1−c) e_i with f, e_i i.i.d. N(0, I_D),
query included. With s = Σ_{i≤N} e_i ~ N(0, N I) and K = Σ_i (e_i − ē)(e_i − ē)ᵀ ~
Wishart(N−1, I) independent of s (Cochran),

    C = N c f fᵀ + √(c(1−c)) (f sᵀ + s fᵀ) + (1−c)(K + s sᵀ/N),

and K w, wᵀ K w are drawn as above with N − 1 degrees of freedom; x_q = √c f + √(1−c) e_q.

`token_model="official"` reproduces the official Fig. S4 construction X ← X L (covariance Lᵀ L,
docs/spinglass.md: quirks) from full prompts; it is not reduced (O(D N²) per prompt) but returns the same fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._data import SuffStats, features, prompt_stream, token_correlation_factor

TOKEN_MODELS = ("equicorrelated", "official")
NORMS = ("N+1", "N")


# -----------------------------------------------------------------------------
# Wishart matrices


def chi2(dof: Tensor | float, shape: tuple[int, ...], generator: torch.Generator, dtype=torch.float64) -> Tensor:
    """χ²(dof) draws of `shape` (dof may broadcast); χ²(0) = 0 exactly."""
    dof = torch.as_tensor(dof, dtype=dtype).expand(shape)
    draw = 2.0 * torch._standard_gamma((dof / 2.0).clamp_min(1e-300).contiguous(), generator=generator)
    return torch.where(dof > 0, draw, torch.zeros_like(draw))


def bartlett(shape: tuple[int, ...], D: int, N: int, generator: torch.Generator, dtype=torch.float64) -> Tensor:
    """Bartlett factor L (..., D, D) with L Lᵀ ~ Wishart(N, I_D), i.e. distributed as Σ_{i≤N} x_i x_iᵀ.

    L is lower triangular, L_ii = √χ²(N − i), L_ij ~ N(0, 1) (i > j), all independent
    (Bartlett decomposition). Needs N ≥ D.
    """
    if N < D:
        raise ValueError(f"Bartlett needs N >= D, got N={N}, D={D}")
    L = torch.randn(*shape, D, D, generator=generator, dtype=dtype).tril(-1)  # (..., D, D)
    dof = (N - torch.arange(D, dtype=dtype)).expand(*shape, D)  # (..., D)
    c = 2.0 * torch._standard_gamma(dof / 2.0, generator=generator)  # (..., D)
    return L + torch.diag_embed(c.sqrt())


def wishart(shape: tuple[int, ...], D: int, N: int, generator: torch.Generator, dtype=torch.float64) -> Tensor:
    """Exact Wishart(N, I_D) draws (..., D, D) from the Bartlett factor."""
    L = bartlett(shape, D, N, generator, dtype)
    return L @ L.mT


# -----------------------------------------------------------------------------
# reduced prompts


@dataclass
class ReducedPrompts:
    """What the merged readout sees of a batch of prompts (leading dims `...`)."""

    g: Tensor  # (..., D+1) last row of Z Zᵀ: (C w/√D, wᵀ C w/D)
    xq: Tensor  # (..., D) query inputs
    y: Tensor  # (...,) query targets w·x_q/√D
    w: Tensor  # (..., D) tasks
    N: int  # context length

    def features(self, norm: str = "N+1", full: bool = False) -> Tensor:
        """s = g ⊗ x_q / k: (..., D+1, D), or with `full` the (..., D+1, D+1) layout of
        `data.features` (its last column, the query label slot, is identically zero).

        norm "N+1" (k = N+1, docs/spinglass.md: readout, as `data.features`) or "N" (k = N, the official
        `gen_field` normalisation of Figs. 1, 3, S2, S7).
        """
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        k = self.N + 1 if norm == "N+1" else self.N
        xq = torch.cat([self.xq, torch.zeros_like(self.xq[..., :1])], -1) if full else self.xq
        return self.g[..., :, None] * xq[..., None, :] / k


def gram_row(C: Tensor, w: Tensor) -> Tensor:
    """g = (C w/√D, wᵀ C w/D) (..., D+1) from an explicit context Gram C (..., D, D) and task w (..., D)."""
    D = w.shape[-1]
    Cw = (C @ w[..., None])[..., 0]  # (..., D)
    return torch.cat([Cw / math.sqrt(D), (w * Cw).sum(-1, keepdim=True) / D], -1)


def _projected_gram(w: Tensor, dof: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(K w, wᵀ K w) for K ~ Wishart(dof, I) independent of w (..., D): see the module docstring."""
    w_norm = w.norm(dim=-1, keepdim=True)  # (..., 1)
    w_hat = w / w_norm.clamp_min(1e-300)  # (..., D)
    r2 = chi2(dof, (*w.shape[:-1], 1), generator, w.dtype)  # (..., 1)
    xi = torch.randn(w.shape, generator=generator, dtype=w.dtype)  # (..., D)
    xi_perp = xi - (xi * w_hat).sum(-1, keepdim=True) * w_hat  # (..., D) = P⊥ ξ
    return w_norm * (r2 * w_hat + r2.sqrt() * xi_perp), w_norm**2 * r2


def sample_reduced(
    D: int,
    N: int,
    shape: int | tuple[int, ...],
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    tasks: Tensor | None = None,
    token_corr: float = 0.0,
    token_model: str = "equicorrelated",
) -> ReducedPrompts:
    """Draw `shape` prompts in reduced form, exactly in law of `data.sample_prompts` (module docstring).

    `tasks` (*shape, D) replaces the fresh N(0, I) tasks (e.g. draws from a `TaskPool`).
    token_corr = c: equicorrelated tokens (needs 0 ≤ c < 1), or with token_model="official"
    the official X ← X L tokens (full prompts). Random stream: w, x_q, then the Gram variates.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if N < 1:
        raise ValueError(f"prompts need N >= 1 context examples, got N={N}")
    if token_model not in TOKEN_MODELS:
        raise ValueError(f"unknown token_model {token_model!r}; choose one of {TOKEN_MODELS}")
    if tasks is None:
        w = torch.randn(*shape, D, generator=generator, dtype=dtype)  # (..., D)
    else:
        w = tasks.to(dtype)
        if w.shape != (*shape, D):
            raise ValueError(f"tasks must be {(*shape, D)}, got {tuple(w.shape)}")
    c = float(token_corr)
    if token_model == "official" and c != 0.0:
        return _official(w, N, generator, c)
    if not (0.0 <= c < 1.0):
        raise ValueError(f"token_corr must be in [0, 1), got {c}")
    if c == 0.0:
        xq = torch.randn(*shape, D, generator=generator, dtype=dtype)  # (..., D)
        Cw, wCw = _projected_gram(w, N, generator)
    else:
        a, b = math.sqrt(c), math.sqrt(1.0 - c)
        f = torch.randn(*shape, D, generator=generator, dtype=dtype)  # shared part of every token
        xq = a * f + b * torch.randn(*shape, D, generator=generator, dtype=dtype)
        s = torch.randn(*shape, D, generator=generator, dtype=dtype) * math.sqrt(N)  # Σ of the N private parts
        Kw, wKw = _projected_gram(w, max(N - 1, 0), generator)
        fw = (f * w).sum(-1, keepdim=True)  # (..., 1)
        sw = (s * w).sum(-1, keepdim=True)
        Cw = N * a * a * f * fw + a * b * (f * sw + s * fw) + b * b * (Kw + s * sw / N)  # (..., D)
        wCw = N * a * a * fw**2 + 2 * a * b * fw * sw + b * b * (wKw + sw**2 / N)  # (..., 1)
    g = torch.cat([Cw / math.sqrt(D), wCw / D], dim=-1)  # (..., D+1)
    y = (w * xq).sum(-1) / math.sqrt(D)
    return ReducedPrompts(g=g, xq=xq, y=y, w=w, N=N)


def _official(w: Tensor, N: int, generator: torch.Generator, c: float) -> ReducedPrompts:
    """Official Fig. S4 tokens: each coordinate's token row is z L (L lower Cholesky factor of
    (1−c) I + c 11ᵀ), so the tokens have covariance Lᵀ L, not the intended L Lᵀ. Full prompts."""
    D = w.shape[-1]
    L = token_correlation_factor(N + 1, c, dtype=w.dtype)  # (N+1, N+1)
    x = torch.randn(*w.shape, N + 1, generator=generator, dtype=w.dtype) @ L  # (..., D, N+1)
    labels = torch.einsum("...d,...dt->...t", w, x) / math.sqrt(D)  # (..., N+1)
    ctx_x, ctx_y = x[..., :N], labels[..., :N]  # the query's label slot is 0: context tokens only
    g = torch.cat([torch.einsum("...t,...dt->...d", ctx_y, ctx_x), (ctx_y * ctx_y).sum(-1, keepdim=True)], -1)
    return ReducedPrompts(g=g, xq=x[..., N], y=labels[..., N].clone(), w=w, N=N)


# -----------------------------------------------------------------------------
# sufficient statistics


def active_spins(D: int) -> Tensor:
    """Indices of the D(D+1) spins W[a, b], b < D, that the readout sees (row-major order)."""
    k = torch.arange((D + 1) ** 2)
    return k[k % (D + 1) != D]


def _pair_index(n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Upper-triangle pairs (i <= j) of range(n) and the (n, n) map (i, j) -> pair number."""
    i, j = torch.triu_indices(n, n)
    idx = torch.empty(n, n, dtype=torch.long)
    idx[i, j] = torch.arange(i.numel())
    idx[j, i] = torch.arange(i.numel())
    return i, j, idx


def reduced_sufficient_stats(
    D: int,
    N: int,
    P: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    chunk: int = 4096,
    tasks: Tensor | None = None,
    token_corr: float = 0.0,
    token_model: str = "equicorrelated",
    norm: str = "N+1",
) -> SuffStats:
    """`data.SuffStats` (full (D+1)² layout) of P prompts drawn by `sample_reduced` in chunks.

    S = mean s sᵀ with s = g ⊗ x_q/k has S[(a,b),(c,d)] = mean g_a g_c q_b q_d / k², so only the
    (D+1)(D+2)/2 · D(D+1)/2 products of symmetric pairs are accumulated: one GEMM of the pair
    products (4x fewer flops than the (n, n) Gram of s). The last-column spins have S = h = 0.
    """
    if token_model == "official" and token_corr != 0.0:
        chunk = min(chunk, 512)  # full prompts
    gi, gj, gidx = _pair_index(D + 1)
    qi, qj, qidx = _pair_index(D)
    T = torch.zeros(gi.numel(), qi.numel(), dtype=dtype)  # (pairs of g, pairs of q)
    hm = torch.zeros(D + 1, D, dtype=dtype)
    yy = torch.zeros((), dtype=dtype)
    k = N + 1 if norm == "N+1" else N
    for start in range(0, P, chunk):
        size = min(chunk, P - start)
        sub = None if tasks is None else tasks[start : start + size]
        r = sample_reduced(D, N, size, generator=generator, dtype=dtype, tasks=sub, token_corr=token_corr,
                           token_model=token_model)
        g, q, y = r.g / k, r.xq, r.y  # the 1/k of the readout goes with g
        T += (g[:, gi] * g[:, gj]).T @ (q[:, qi] * q[:, qj])  # (Pg, Pq)
        hm += (g * y[:, None]).T @ q  # (D+1, D)
        yy += y @ y
    n = (D + 1) ** 2
    S4 = T[gidx[:, None, :, None], qidx[None, :, None, :]]  # (D+1, D, D+1, D) = S[(a,b),(c,d)]
    act = active_spins(D)
    S = torch.zeros(n, n, dtype=dtype)
    S[act[:, None], act[None, :]] = S4.reshape(D * (D + 1), D * (D + 1)) / P
    h = torch.zeros(n, dtype=dtype)
    h[act] = hm.reshape(-1) / P
    return SuffStats(S=S, h=h, yy=yy / P, P=P, D=D, N=N)


def sufficient_stats(
    D: int,
    N: int,
    P: int,
    *,
    generator: torch.Generator,
    dtype=torch.float64,
    chunk: int | None = None,
    tasks: Tensor | None = None,
    token_corr: float = 0.0,
    method: str = "reduced",
) -> SuffStats:
    """Statistics of P fresh prompts (single-instance tasks, or the given `tasks` (P, D)).

    method="reduced" (default): `reduced_sufficient_stats` (below), which draws only what the
    readout sees of each prompt (O(D) numbers per prompt); exactly the same distribution as the
    prompt path (see `sampling`), but a different random stream. chunk defaults to 4096.

    method="prompts": streams `prompt_stream` so only `chunk` (default 2048) token matrices live
    at once; equals `sufficient_stats_from` on the concatenated chunks of `prompt_stream` with the
    same generator state (the random stream depends on `chunk`).
    """
    if method == "reduced":
        return reduced_sufficient_stats(D, N, P, generator=generator, dtype=dtype, chunk=chunk or 4096,
                                        tasks=tasks, token_corr=token_corr)
    if method != "prompts":
        raise ValueError(f"method must be 'reduced' or 'prompts', got {method!r}")
    n = (D + 1) ** 2
    S = torch.zeros(n, n, dtype=dtype)
    h = torch.zeros(n, dtype=dtype)
    yy = torch.zeros((), dtype=dtype)
    stream = prompt_stream(
        D, N, P, generator=generator, dtype=dtype, chunk=chunk or 2048, tasks=tasks, token_corr=token_corr
    )
    for batch in stream:
        flat = features(batch.Z).reshape(batch.Z.shape[0], n)  # (chunk, n)
        S += flat.T @ flat
        h += flat.T @ batch.y
        yy += batch.y @ batch.y
    return SuffStats(S=S / P, h=h / P, yy=yy / P, P=P, D=D, N=N)
