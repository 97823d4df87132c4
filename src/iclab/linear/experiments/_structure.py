"""Shared helpers of the "structure" experiments (Figs. 1, 3, S2, S3, S5, S7).

The coupling statistics need many draws of (J, h), each built from P prompts. Sampling every
token x_i (D*(N+1) normals per prompt) dominates the cost, but the readout only sees the
context through the Gram matrix C = sum_i x_i x_i^T ~ Wishart(N, I_D):

    (Z Z^T)[D, a] = (C w)_a / sqrt(D)  (a < D),   (Z Z^T)[D, D] = w^T C w / D,

and by rotation invariance (C w, w^T C w) can be drawn exactly from D + 1 variates per prompt
(`gram_products`) instead of D*N, which gives features with exactly the same distribution.
We also drop the last column of s, which is identically zero (the query label slot), and keep the "reduced" layout

    s_red[a, b] = s[a, b],  a in 0..D, b in 0..D-1,   spin index a*D + b  (n_red = D(D+1)),

in which the D^2 spins of W11 come first and the D last-row spins last (as in the full layout).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

# The official Fig. 1 / S2 histogram windows (fig-1/plot.py x-limits = fig-S2/data.py bins),
# tuned to D = 5; values outside are dropped, as pandas.cut does in the official S2 script.
PAPER_WINDOWS = {"A": (-0.2, 0.4), "B": (-0.3, 0.3), "C": (-0.1, 0.1), "D": (-0.3, 0.3), "E": (-0.5, 0.5)}
BLOCKS = ("A", "B", "C", "D", "E")


def bartlett(shape: tuple[int, ...], D: int, N: int, generator: torch.Generator, dtype=torch.float64) -> Tensor:
    """Bartlett factor L (..., D, D) with L L^T ~ Wishart(N, I_D), i.e. distributed as sum_{i<=N} x_i x_i^T.

    L is lower triangular, L_ii = sqrt(chi2(N - i)), L_ij ~ N(0, 1) (i > j). Needs N >= D.
    """
    assert N >= D, f"Bartlett needs N >= D, got N={N}, D={D}"
    L = torch.randn(*shape, D, D, generator=generator, dtype=dtype).tril(-1)  # (..., D, D)
    dof = (N - torch.arange(D, dtype=dtype)).expand(*shape, D)  # (..., D)
    chi2 = 2.0 * torch._standard_gamma(dof / 2.0, generator=generator)  # (..., D)
    return L + torch.diag_embed(chi2.sqrt())


def wishart(shape: tuple[int, ...], D: int, N: int, generator: torch.Generator, dtype=torch.float64) -> Tensor:
    """Exact Wishart(N, I_D) draws (..., D, D) from the Bartlett factor."""
    L = bartlett(shape, D, N, generator, dtype)
    return L @ L.mT


def _features_from_gram_parts(Cw: Tensor, wCw: Tensor, xq: Tensor, N: int, norm: str) -> Tensor:
    D = xq.shape[-1]
    g = torch.cat([Cw / math.sqrt(D), wCw[..., None] / D], dim=-1)  # (..., D+1) = (Z Z^T)[D, :]
    denom = N + 1 if norm == "N+1" else N
    return g[..., :, None] * xq[..., None, :] / denom  # (..., D+1, D)


def reduced_features(C: Tensor, w: Tensor, xq: Tensor, N: int, norm: str = "N+1") -> Tensor:
    """s_red (..., D+1, D) from the context Gram C (..., D, D), task w (..., D), query x_q (..., D).

    norm = "N+1" is our convention (spec §1.3, divide by the number of tokens); "N" is the
    official `gen_field` one (Figs. 1, 3, S2, S7), which also transposes the D x D block, a
    relabelling that leaves every block histogram unchanged.
    """
    Cw = (C @ w[..., None])[..., 0]  # (..., D)
    return _features_from_gram_parts(Cw, (w * Cw).sum(-1), xq, N, norm)


def gram_products(w: Tensor, N: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Exact joint draw of (C w, w^T C w) for C ~ Wishart(N, I_D) independent of w (..., D).

    Rotation invariance: with Q the Householder reflection taking e1 to u = w/|w| (Q depends on
    w only), Q^T C Q is again Wishart(N, I) and independent of w, so C w = |w| Q C' e1. By
    Bartlett, C' e1 = (c, sqrt(c) z_1, ..., sqrt(c) z_{D-1}) with c ~ chi2(N), z ~ N(0, I), and
    w^T C w = |w|^2 c. That is D + 1 variates per prompt instead of D N.
    """
    D = w.shape[-1]
    r = w.norm(dim=-1, keepdim=True)  # (..., 1)
    u = w / r
    c = 2.0 * torch._standard_gamma(torch.full(w.shape[:-1], N / 2.0, dtype=w.dtype), generator=generator)  # (...)
    z = torch.randn(*w.shape[:-1], D - 1, generator=generator, dtype=w.dtype)  # (..., D-1)
    col = torch.cat([c[..., None], c.sqrt()[..., None] * z], dim=-1)  # (..., D) = C' e1
    v = -u
    v[..., 0] += 1.0  # e1 - u
    vv = (v * v).sum(-1, keepdim=True)  # (..., 1)
    reflected = col - 2.0 * v * (v * col).sum(-1, keepdim=True) / vv.clamp_min(1e-300)
    Qcol = torch.where(vv > 1e-24, reflected, col)  # u == e1: Q = I
    return r * Qcol, (r[..., 0] ** 2) * c


def draw_reduced(
    D: int, N: int, shape: tuple[int, ...], generator: torch.Generator, dtype=torch.float64, norm: str = "N+1"
) -> tuple[Tensor, Tensor]:
    """Reduced features s (*shape, D+1, D) and query targets y (*shape) of fresh prompts (exact in law)."""
    w = torch.randn(*shape, D, generator=generator, dtype=dtype)  # (..., D)
    xq = torch.randn(*shape, D, generator=generator, dtype=dtype)  # (..., D)
    Cw, wCw = gram_products(w, N, generator)  # (..., D), (...)
    y = (w * xq).sum(-1) / math.sqrt(D)  # (...)
    return _features_from_gram_parts(Cw, wCw, xq, N, norm), y


def reduced_fields(s: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """J_red = -mean_mu s s^T (B, n_red, n_red) and h_red = mean_mu y s (B, D+1, D) of s (B, P, D+1, D)."""
    B, P = y.shape
    flat = s.reshape(B, P, -1)  # (B, P, n_red)
    J = -(flat.mT @ flat) / P  # (B, n_red, n_red)
    h = torch.einsum("bp,bpad->bad", y, s) / P  # (B, D+1, D)
    return J, h


def block_values(J: Tensor, h: Tensor, D: int, a_diagonal: bool = True) -> dict[str, Tensor]:
    """Per-draw values of blocks A-E (Fig. 1c) in the reduced layout: dict of (B, k) tensors.

    A: h over W11 (with its diagonal unless a_diagonal=False, as in the official Fig. S2);
    B: h over the last row; C, D, E: off-diagonal J among W11 spins, between W11 and the last
    row (both orders), among last-row spins. Same multisets as `analysis.coupling_blocks` on the
    full (D+1)^2 layout (which drops the exact zeros of the last column).
    """
    B = J.shape[0]
    head = D * D
    A = h[:, :D, :D]  # (B, D, D)
    A = A.reshape(B, -1) if a_diagonal else A[:, ~torch.eye(D, dtype=torch.bool)]
    off_h = ~torch.eye(head, dtype=torch.bool)
    off_e = ~torch.eye(D, dtype=torch.bool)
    return {
        "A": A,
        "B": h[:, D, :],
        "C": J[:, :head, :head][:, off_h],
        "D": torch.cat([J[:, :head, head:].reshape(B, -1), J[:, head:, :head].reshape(B, -1)], dim=1),
        "E": J[:, head:, head:][:, off_e],
    }


def batched_counts(values: Tensor, lo: float, hi: float, bins: int) -> Tensor:
    """Histogram counts (B, bins) of each row of values (B, ...) on equal bins of [lo, hi].

    Values outside [lo, hi] are dropped (like torch.histc and pandas.cut); hi falls in the last bin.
    """
    B = values.shape[0]
    x = (values.reshape(B, -1) - lo) * (bins / (hi - lo))  # (B, k) in bin units
    outside = (x < 0) | (x > bins)
    idx = x.long().clamp_max_(bins - 1).masked_fill_(outside, bins)  # x >= 0: truncation = floor
    idx += torch.arange(B)[:, None] * (bins + 1)
    counts = torch.bincount(idx.reshape(-1), minlength=B * (bins + 1))
    return counts.reshape(B, bins + 1)[:, :bins]


def block_counts(
    J: Tensor, h: Tensor, D: int, bins: int, windows: dict[str, tuple[float, float]], a_diagonal: bool = True
) -> dict[str, Tensor]:
    """Per-draw histograms (B, bins) of blocks A-E, equal to `batched_counts(block_values(...))`
    but without gathering the off-diagonal entries: count the whole block, subtract its diagonal,
    and count one of the two (symmetric) D blocks twice."""
    head = D * D

    def count(x, k):
        return batched_counts(x, *windows[k], bins)

    def diag(x):
        return torch.diagonal(x, dim1=-2, dim2=-1)

    A = h[:, :D, :D]
    return {
        "A": count(A, "A") - (0 if a_diagonal else count(diag(A), "A")),
        "B": count(h[:, D, :], "B"),
        "C": count(J[:, :head, :head], "C") - count(diag(J[:, :head, :head]), "C"),
        "D": 2 * count(J[:, :head, head:], "D"),
        "E": count(J[:, head:, head:], "E") - count(diag(J[:, head:, head:]), "E"),
    }


def kl_bits(p_counts: Tensor, q_counts: Tensor) -> Tensor:
    """D_KL[p || q] in bits of count histograms (..., bins) with +1 pseudo-counts (Fig. S2)."""
    p = p_counts.to(torch.float64) + 1.0
    q = q_counts.to(torch.float64) + 1.0
    p = p / p.sum(-1, keepdim=True)
    q = q / q.sum(-1, keepdim=True)
    return (p * torch.log2(p / q)).sum(-1)


class Moments:
    """Streaming count / mean / variance of pooled values (Chan's parallel update, exact)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, x: Tensor) -> None:
        x = x.reshape(-1).to(torch.float64)
        k = x.numel()
        if k == 0:
            return
        mu = float(x.mean())
        m2 = float(((x - mu) ** 2).sum())
        delta = mu - self.mean
        tot = self.n + k
        self.mean += delta * k / tot
        self.m2 += m2 + delta * delta * self.n * k / tot
        self.n = tot

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else float("nan")


def fit_scaled_gaussian(centers: np.ndarray, density: np.ndarray, sigma0: float) -> tuple[float, float]:
    """Least-squares fit of a * N(0, sigma^2) to a histogram density: the paper's curves are of
    this form (e.g. block C is drawn as 3 * N(0, 0.024^2)). Returns (a, sigma)."""
    from scipy.optimize import curve_fit

    def f(x, a, s):
        return a * np.exp(-0.5 * (x / s) ** 2) / (math.sqrt(2 * math.pi) * s)

    (a, s), _ = curve_fit(f, centers, density, p0=(1.0, sigma0), maxfev=10000)
    return float(a), float(abs(s))


def gaussian_pdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)


# -----------------------------------------------------------------------------
# closed forms for Fig. 1 (x, w ~ N(0, I); derived with Wishart moments E[C^2] = N(N+D+1) I)


def predicted_stats(D: int, N: int, P: int, norm: str = "N+1") -> dict[str, float]:
    """Exact expectations of the Fig. 1 statistics under our data model.

    diag J on W11 spins:  -E[(Cw)_a^2]/(D k^2) = -N(N+D+1)/(D k^2)      (k = N+1 or N)
    diag J on last row:   -E[(w^T C w)^2]/(D^2 k^2) = -(D+2) N (N+2)/(D k^2)
    diag of block A:      E[C_aa]/(D k) = N/(D k)
    std of block B:       sqrt((D+2)^2 (D+4) N (N+2) / (D^3 k^2 P))
    std of block E:       sqrt(E[g_D^4] / P) with g_D = w^T C w/(D k):
                          D(D+2)(D+4)(D+6) N(N+2)(N+4)(N+6) / (D^4 k^4 P)
    """
    k = N + 1 if norm == "N+1" else N
    return {
        "diagJ_W11": -N * (N + D + 1) / (D * k**2),
        "diagJ_last_row": -(D + 2) * N * (N + 2) / (D * k**2),
        "A_diag_mean": N / (D * k),
        "B_std": math.sqrt((D + 2) ** 2 * (D + 4) * N * (N + 2) / (D**3 * k**2 * P)),
        "E_std": math.sqrt(
            D * (D + 2) * (D + 4) * (D + 6) * N * (N + 2) * (N + 4) * (N + 6) / (D**4 * k**4 * P)
        ),
    }
