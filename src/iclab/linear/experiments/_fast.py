"""Fast paths shared by the training experiments (Figs. 2, 4b, S1, S4): candidates for the core.

Three things make the paper presets (hundreds of Adam runs of thousands of epochs on D = 20)
fit in minutes on two CPU cores:

1. `reduced_prompts`: the merged readout sees a prompt only through g = (Z Zᵀ)[D, :] and the
   query x_q. For Gaussian tokens (optionally equicorrelated across tokens) g can be drawn
   exactly in distribution with O(D) numbers per prompt instead of the D (N+1) tokens:
   for C = Σ_i x_i x_iᵀ ~ Wishart(N, I) and a fixed task w,
       C w = |w| (r² ŵ + r P⊥ ξ),  wᵀ C w = |w|² r²,   r² ~ χ²_N, ξ ~ N(0, I_D),
   (split x_i into its component u_i along ŵ and the rest; r² = Σ u_i²).
2. `reduced_stats`: S = mean s sᵀ with s = g ⊗ q has only (D+1)(D+2)/2 · D(D+1)/2 distinct
   entries, S[(a,b),(c,d)] = mean g_a g_c q_b q_d, so one GEMM of the symmetric pair
   products replaces the (n, n) Gram matrix (4x fewer flops).
3. `adam_quadratic`: full-batch Adam on the quadratic loss, exactly torch.optim.Adam's update
   (coupled weight decay), but the gradient 2(S w − h) is one `torch.mv` per run on the
   active spins (the last column of W has zero features), in groups of runs. On this CPU
   build a batched mat-vec through `bmm` is ~10x slower than a loop of `mv`, and autograd
   adds ~100 µs per step, which is what makes `train.train_quadratic` slow at R = 50.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..data import SuffStats
from ..train import init_params


# -----------------------------------------------------------------------------
# runtime helpers


def make_gen(seed: int, stream: int, i: int = 0, j: int = 0) -> torch.Generator:
    """A generator for (stream, i, j) derived from the master seed: independent, reproducible."""
    return torch.Generator().manual_seed(((seed * 64 + stream) * 10_000 + i) * 10_000 + j)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with n intra-op threads, then restore. The many tiny ops of these loops run fastest
    on one thread: on a loaded 2-core machine a 2-thread pool stalls every op on the busy core."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# -----------------------------------------------------------------------------
# data


def reduced_prompts(
    D: int,
    N: int,
    P: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    token_corr: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw what the merged readout sees of P prompts: g (P, D+1), x_q (P, D), y_q (P,).

    Same distribution as `data.sample_prompts` (then `features`). With token_corr = c the
    N+1 tokens are equicorrelated per coordinate, x_i = √c f + √(1−c) e_i with f, e_i i.i.d.
    N(0, I_D) (covariance (1−c) I + c 11ᵀ, as in `data.sample_prompts`); then
    Σ_i x_i x_iᵀ = N c f fᵀ + √(c(1−c)) (f sᵀ + s fᵀ) + (1−c)(K + s sᵀ/N) with s = Σ_i e_i
    ~ N(0, N I) independent of K = Σ_i (e_i − ē)(e_i − ē)ᵀ ~ Wishart(N−1, I).
    """
    if not (0.0 <= token_corr < 1.0):
        raise ValueError(f"token_corr must be in [0, 1), got {token_corr}")
    c = token_corr
    kw = dict(generator=generator, dtype=dtype)
    w = torch.randn(P, D, **kw)  # (P, D) tasks
    w_norm = w.norm(dim=-1, keepdim=True)  # (P, 1)
    w_hat = w / w_norm  # (P, D)
    dof = N if c == 0.0 else N - 1
    if dof < 1:
        raise ValueError(f"correlated tokens need N >= 2 context examples, got N={N}")
    np_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    r2 = torch.from_numpy(np.random.default_rng(np_seed).chisquare(dof, size=(P, 1))).to(dtype)  # (P, 1)
    xi = torch.randn(P, D, **kw)  # (P, D)
    xi_perp = xi - (xi * w_hat).sum(-1, keepdim=True) * w_hat  # (P, D) projected off w
    Kw = w_norm * (r2 * w_hat + r2.sqrt() * xi_perp)  # (P, D) = K w, K ~ Wishart(dof, I)
    wKw = w_norm**2 * r2  # (P, 1)
    if c == 0.0:
        Cw, wCw = Kw, wKw
        xq = torch.randn(P, D, **kw)  # (P, D)
    else:
        f = torch.randn(P, D, **kw)  # (P, D) shared component of all tokens
        s = torch.randn(P, D, **kw) * math.sqrt(N)  # (P, D) sum of the N private parts
        eq = torch.randn(P, D, **kw)  # (P, D) private part of the query
        a, b = math.sqrt(c), math.sqrt(1.0 - c)
        fw = (f * w).sum(-1, keepdim=True)  # (P, 1)
        sw = (s * w).sum(-1, keepdim=True)  # (P, 1)
        Cw = N * a * a * f * fw + a * b * (f * sw + s * fw) + b * b * (Kw + s * sw / N)  # (P, D)
        wCw = N * a * a * fw**2 + 2 * a * b * fw * sw + b * b * (wKw + sw**2 / N)  # (P, 1)
        xq = a * f + b * eq  # (P, D)
    g = torch.cat([Cw / math.sqrt(D), wCw / D], dim=-1)  # (P, D+1) = (Z Zᵀ)[D, :]
    y = (w * xq).sum(-1) / math.sqrt(D)  # (P,)
    return g, xq, y


def _pair_index(n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Upper-triangle pairs (i <= j) of range(n) and the (n, n) map (i, j) -> pair number."""
    i, j = torch.triu_indices(n, n)
    idx = torch.empty(n, n, dtype=torch.long)
    idx[i, j] = torch.arange(i.numel())
    idx[j, i] = torch.arange(i.numel())
    return i, j, idx


def official_corr_prompts(
    D: int, N: int, P: int, *, generator: torch.Generator, token_corr: float, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor, Tensor]:
    """g, x_q, y of P prompts with the official Fig. S4 construction X <- X L (spec §7.6).

    L is the lower Cholesky factor of (1−c) I + c 11ᵀ; each coordinate's token row is z L, z ~ N(0, I),
    so the tokens have covariance Lᵀ L, not the equicorrelation L Lᵀ. Full prompts: O(P D N²).
    """
    from ..data import token_correlation_factor

    L = token_correlation_factor(N + 1, token_corr, dtype=dtype)  # (N+1, N+1)
    w = torch.randn(P, D, generator=generator, dtype=dtype)  # (P, D)
    x = torch.randn(P, D, N + 1, generator=generator, dtype=dtype) @ L  # (P, D, N+1)
    labels = torch.einsum("pd,pdt->pt", w, x) / math.sqrt(D)  # (P, N+1)
    y = labels[:, N].clone()  # (P,)
    ctx_x, ctx_y = x[:, :, :N], labels[:, :N]  # the query's label slot is 0: context tokens only
    g = torch.cat([torch.einsum("pt,pdt->pd", ctx_y, ctx_x), (ctx_y * ctx_y).sum(-1, keepdim=True)], -1)
    return g, x[:, :, N], y  # (P, D+1), (P, D), (P,)


def reduced_stats(
    D: int,
    N: int,
    P: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    token_corr: float = 0.0,
    token_model: str = "equicorrelated",
    chunk: int = 4096,
) -> SuffStats:
    """Sufficient statistics (full (D+1)² spins) of P fresh prompts drawn by `reduced_prompts`
    (token_model="official": by `official_corr_prompts`, in chunks of 512)."""
    if token_model not in ("equicorrelated", "official"):
        raise ValueError(f"unknown token_model {token_model!r}")
    official = token_model == "official" and token_corr != 0.0
    chunk = 512 if official else chunk
    gi, gj, gidx = _pair_index(D + 1)
    qi, qj, qidx = _pair_index(D)
    T = torch.zeros(gi.numel(), qi.numel(), dtype=dtype)  # (pairs of g, pairs of q)
    hm = torch.zeros(D + 1, D, dtype=dtype)
    yy = torch.zeros((), dtype=dtype)
    for start in range(0, P, chunk):
        size = min(chunk, P - start)
        draw = official_corr_prompts if official else reduced_prompts
        g, q, y = draw(D, N, size, generator=generator, dtype=dtype, token_corr=token_corr)
        g = g / (N + 1)  # the 1/(N+1) of the readout goes with g
        T += (g[:, gi] * g[:, gj]).T @ (q[:, qi] * q[:, qj])  # (Pg, Pq)
        hm += (g * y[:, None]).T @ q  # (D+1, D)
        yy += y @ y
    n = (D + 1) ** 2
    S4 = T[gidx[:, None, :, None], qidx[None, :, None, :]]  # (D+1, D, D+1, D) = S[(a,b),(c,d)]
    active = active_spins(D)  # (D(D+1),) spins with b < D
    S = torch.zeros(n, n, dtype=dtype)
    S[active[:, None], active[None, :]] = S4.reshape(D * (D + 1), D * (D + 1)) / P
    h = torch.zeros(n, dtype=dtype)
    h[active] = hm.reshape(-1) / P
    return SuffStats(S=S, h=h, yy=yy / P, P=P, D=D, N=N)


def active_spins(D: int) -> Tensor:
    """Indices of the D(D+1) spins W[a, b], b < D, that the readout sees (row-major order)."""
    k = torch.arange((D + 1) ** 2)
    return k[k % (D + 1) != D]


def quadratic_mse(W: Tensor, st: SuffStats) -> Tensor:
    """mean (ŷ − y)² of W (R, D+1, D+1) on batched statistics st (R, n, n), one mv per run."""
    w = W.reshape(W.shape[0], -1).to(st.S.dtype)  # (R, n)
    Sw = torch.stack([torch.mv(st.S[r], w[r]) for r in range(w.shape[0])])  # (R, n)
    return (w * Sw).sum(-1) - 2 * (w * st.h).sum(-1) + st.yy  # (R,)


# -----------------------------------------------------------------------------
# full-batch Adam on the quadratic loss


@dataclass
class FastTrainResult:
    W: Tensor  # (R, D+1, D+1) final effective weights
    train_loss: Tensor  # (R, T) train MSE after epochs[t] steps
    test_loss: Tensor | None  # (R, T) test MSE at the same points
    epochs: Tensor  # (T,)


class _Adam:
    """torch.optim.Adam's update (amsgrad off, coupled weight decay), for plain tensors."""

    def __init__(self, params: list[Tensor], lr: float, weight_decay: float, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.wd, self.betas, self.eps = params, lr, weight_decay, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[Tensor]) -> None:
        self.t += 1
        b1, b2 = self.betas
        bc1, bc2_sqrt = 1 - b1**self.t, math.sqrt(1 - b2**self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if self.wd != 0:
                g = g.add(p, alpha=self.wd)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / bc1)


def adam_quadratic(
    train: SuffStats,
    *,
    model: str = "merged",
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    generator: torch.Generator | None = None,
    init: dict[str, Tensor] | None = None,
    test: SuffStats | None = None,
    record_every: int | None = None,
    record_at: list[int] | None = None,
    group: int = 16,
    dtype: torch.dtype = torch.float64,
) -> FastTrainResult:
    """Full-batch Adam on R quadratic losses (train.S (R, n, n)); same maths as `train_quadratic`.

    Same init draw (`train.init_params` on the whole batch, so the same generator gives the
    same start), same Adam, same records: losses of the weights after 0, k, 2k, ..., epochs
    steps (record_every=None: only the start and the end; or the given `record_at` epochs, e.g.
    log-spaced, which always include 0 and the end). Runs are trained in balanced groups
    of at most `group`; the optimisation runs in `dtype`, the recorded losses in float64 (a
    float32 quadratic form cancels to ~1e-7, hiding small training losses).
    """
    R = train.S.shape[0]
    D = train.D
    # the init is drawn in float64 whatever `dtype`, so float32 and float64 runs start alike
    params = init if init is not None else init_params(model, R, D, generator=generator, dtype=torch.float64)
    params = {k: v.detach().to(dtype).clone() for k, v in params.items()}
    if record_at is not None:
        points = sorted({0, epochs} | {int(e) for e in record_at if 0 <= e <= epochs})
    else:
        points = list(range(0, epochs + 1, record_every or epochs))
        points = points if points[-1] == epochs else points + [epochs]
    where = {t: j for j, t in enumerate(points)}
    act = active_spins(D)
    tr_hist = torch.zeros(R, len(points), dtype=torch.float64)
    te_hist = torch.zeros(R, len(points), dtype=torch.float64) if test is not None else None
    W_out = torch.zeros(R, D + 1, D + 1, dtype=dtype)
    n_groups = -(-R // group)
    bounds = [round(R * g / n_groups) for g in range(n_groups + 1)]  # balanced group sizes

    def sub(st: SuffStats, sl: slice, dt: torch.dtype) -> tuple[list[Tensor], Tensor, Tensor]:
        S = st.S[sl][:, act][:, :, act].to(dt).contiguous()  # (G, na, na)
        return list(S.unbind(0)), st.h[sl][:, act].to(dt), torch.as_tensor(st.yy)[sl].to(dt)

    def mse64(wa: Tensor, st: tuple[list[Tensor], Tensor, Tensor]) -> Tensor:
        w = wa.double()  # (G, na)
        Sw = torch.stack([torch.mv(S_r, w_r) for S_r, w_r in zip(st[0], w)])  # (G, na)
        return (w * Sw).sum(-1) - 2 * (w * st[1]).sum(-1) + st[2]  # (G,)

    for g0, g1 in zip(bounds[:-1], bounds[1:]):
        sl = slice(g0, g1)
        S_list, ha, _ = sub(train, sl, dtype)
        tr64 = sub(train, sl, torch.float64)
        te64 = sub(test, sl, torch.float64) if test is not None else None
        p = {name: v[sl].clone() for name, v in params.items()}
        opt = _Adam(list(p.values()), lr, weight_decay)
        G = g1 - g0
        Sw = torch.zeros(G, len(act), dtype=dtype)
        Sw_list = list(Sw.unbind(0))
        grad_W = torch.zeros(G, (D + 1) ** 2, dtype=dtype)  # dMSE/dW; inactive spins stay 0
        for t in range(epochs + 1):
            W = p["W"] if model == "merged" else p["W_Q"].mT @ p["W_K"]  # (G, D+1, D+1)
            wa = W.reshape(G, -1)[:, act]  # (G, na)
            if t in where:
                j = where[t]
                tr_hist[sl, j] = mse64(wa, tr64)
                if te64 is not None:
                    te_hist[sl, j] = mse64(wa, te64)
            if t == epochs:
                W_out[sl] = W
                break
            for S_r, w_r, out in zip(S_list, wa.unbind(0), Sw_list):
                torch.mv(S_r, w_r, out=out)
            grad_W[:, act] = 2 * (Sw - ha)
            gW = grad_W.reshape(G, D + 1, D + 1)
            if model == "merged":
                opt.step([gW])
            else:  # W = W_Qᵀ W_K: dW_Q = W_K Gᵀ, dW_K = W_Q G
                opt.step([p["W_K"] @ gW.mT, p["W_Q"] @ gW])
    return FastTrainResult(W=W_out, train_loss=tr_hist, test_loss=te_hist, epochs=torch.tensor(points))


# -----------------------------------------------------------------------------
# AMP over many runs


@dataclass
class AMPRuns:
    m: Tensor  # (R, D+1, D+1) AMP means (NaN where not converged, if asked)
    v: Tensor  # (R, D+1, D+1) AMP variances
    converged: Tensor  # (R,) bool
    sweeps: Tensor  # (R,) int


def amp_runs(
    stats: list[SuffStats],
    lam0: float,
    *,
    seed: int,
    stream: int,
    beta: float,
    damping: float,
    steps: int,
    tol: float,
    i: int = 0,
) -> AMPRuns:
    """`amp.amp` on each run's spin glass, one run at a time: unbatched, J @ m is a fast
    matrix-vector product (the batched bmm path is ~10x slower on this CPU build)."""
    from ..amp import amp
    from ..spinglass import SpinGlass

    ms, vs, conv, sweeps = [], [], [], []
    for r, st in enumerate(stats):
        sg = SpinGlass.from_stats(st, lam0)
        res = amp(sg.J, sg.h, sg.lam, beta=beta, damping=damping, steps=steps, tol=tol,
                  generator=make_gen(seed, stream, i, r))
        ms.append(res.m)
        vs.append(res.v)
        conv.append(bool(res.converged))
        sweeps.append(int(res.sweeps))
    D = stats[0].D
    return AMPRuns(
        m=torch.stack(ms).reshape(-1, D + 1, D + 1),
        v=torch.stack(vs).reshape(-1, D + 1, D + 1),
        converged=torch.tensor(conv),
        sweeps=torch.tensor(sweeps),
    )
