"""Closed forms and diagnostics for the spin-glass figures (docs/spinglass.md: mapping.1, §2.2, §5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


# -----------------------------------------------------------------------------
# the "correct solution" and its error


def contrast_ratio(W: Tensor) -> Tensor:
    """Identity-likeness <W, I>_F / (||W||_F ||I||_F) of W (..., D+1, D+1), I = eye(D+1)."""
    trace = torch.diagonal(W, dim1=-2, dim2=-1).sum(-1)  # (...)
    return trace / (torch.linalg.matrix_norm(W) * math.sqrt(W.shape[-1]))


def population_optimum(D: int, N: int, dtype=torch.float64) -> Tensor:
    """P -> inf, lambda0 -> 0 minimiser: W11 = (N+1)/(N+D+1) I_D, zero last row (and column)."""
    W = torch.zeros(D + 1, D + 1, dtype=dtype)
    W[:D, :D] = (N + 1) / (N + D + 1) * torch.eye(D, dtype=dtype)
    return W


def icl_error_floor(D: int, N: int) -> float:
    """Test MSE of the population optimum on fresh tasks: (D+1)/(N+D+1)."""
    return (D + 1) / (N + D + 1)


def zero_ratio_law(P: int, D: int) -> float:
    """Fraction of zero Hessian eigenvalues: rank S = min(P, D(D+1)) out of (D+1)^2 spins."""
    return 1.0 - min(P, D * (D + 1)) / (D + 1) ** 2


# -----------------------------------------------------------------------------
# blocks of couplings and fields (Fig. 1c / S2)


def block_masks(D: int) -> dict[str, Tensor]:
    """Boolean masks of blocks A, B (on h as (D+1, D+1)) and C, D, E (on J as (n, n)).

    A: h rows 1..D, cols 1..D (diagonal kept: that makes it bimodal).
    B: h last row, cols 1..D.
    C: J among the D(D+1) spins of rows 1..D, off-diagonal.
    D: J between rows 1..D spins and last-row spins (both off-diagonal blocks, as the code).
    E: J among the D+1 last-row spins, off-diagonal.
    """
    n = (D + 1) ** 2
    head = D * (D + 1)  # spins of rows 1..D come first in the row-major order
    in_head = torch.arange(n) < head  # (n,)
    off_diag = ~torch.eye(n, dtype=torch.bool)  # (n, n)
    A = torch.zeros(D + 1, D + 1, dtype=torch.bool)
    A[:D, :D] = True
    B = torch.zeros(D + 1, D + 1, dtype=torch.bool)
    B[D, :D] = True
    return {
        "A": A,
        "B": B,
        "C": in_head[:, None] & in_head[None, :] & off_diag,
        "D": in_head[:, None] ^ in_head[None, :],
        "E": ~in_head[:, None] & ~in_head[None, :] & off_diag,
    }


def coupling_blocks(J: Tensor, h: Tensor, D: int) -> dict[str, Tensor]:
    """1-D values of blocks A-E, pooled over any leading batch dims; exact zeros dropped in C-E.

    J (..., n, n), h (..., n) or (..., D+1, D+1).
    """
    masks = block_masks(D)
    h_mat = h.reshape(*h.shape[:-1], D + 1, D + 1) if h.shape[-1] == (D + 1) ** 2 else h
    out = {k: h_mat[..., masks[k]].reshape(-1) for k in ("A", "B")}
    for k in ("C", "D", "E"):
        vals = J[..., masks[k]].reshape(-1)
        out[k] = vals[vals != 0]  # irrelevant (last-column) spins couple with exact zeros
    return out


def histogram_counts(values: Tensor, lo: float, hi: float, bins: int) -> Tensor:
    """Histogram counts (B, bins) of each row of values (B, ...) on equal bins of [lo, hi].

    Same counts as `torch.histc` per row: values outside [lo, hi] are dropped (like pandas.cut in
    the official Fig. S2 script) and hi falls in the last bin. Counts add up, so histograms of a
    stream of batches are accumulated by summing (no values kept). One `bincount` for all rows.
    """
    B = values.shape[0]
    x = (values.reshape(B, -1) - lo) * (bins / (hi - lo))  # (B, k) in bin units
    outside = (x < 0) | (x > bins) | x.isnan()
    idx = x.nan_to_num(0.0).long().clamp_max_(bins - 1).masked_fill_(outside, bins)  # x >= 0: truncation = floor
    idx += torch.arange(B)[:, None] * (bins + 1)
    counts = torch.bincount(idx.reshape(-1), minlength=B * (bins + 1))
    return counts.reshape(B, bins + 1)[:, :bins]


def kl_divergence_counts(p_counts: Tensor, q_counts: Tensor) -> Tensor:
    """D_KL[p || q] in bits of count histograms (..., bins) on shared edges, +1 pseudo-counts (Fig. S2)."""
    p = p_counts.to(torch.float64) + 1.0
    q = q_counts.to(torch.float64) + 1.0
    p = p / p.sum(-1, keepdim=True)
    q = q / q.sum(-1, keepdim=True)
    return (p * torch.log2(p / q)).sum(-1)


def kl_divergence_hist(
    a: Tensor, b: Tensor, bins: int = 100, value_range: tuple[float, float] | None = None
) -> float:
    """D_KL[p_a || p_b] in bits of histograms on shared edges with +1 pseudo-counts (Fig. S2).

    Edges span `value_range` if given (the official script fixes one per block), else the
    min/max of both samples.
    """
    a = a.reshape(1, -1).to(torch.float64)
    b = b.reshape(1, -1).to(torch.float64)
    if value_range is None:
        value_range = (min(a.min(), b.min()).item(), max(a.max(), b.max()).item())
    lo, hi = value_range
    if hi <= lo:  # degenerate samples: one bin holds everything (as torch.histc widens the range)
        lo, hi = lo - 1.0, hi + 1.0
    return float(kl_divergence_counts(histogram_counts(a, lo, hi, bins)[0], histogram_counts(b, lo, hi, bins)[0]))


# -----------------------------------------------------------------------------
# random-matrix reference (Fig. S5)


def marchenko_pastur_density(x: Tensor, ratio: float) -> Tensor:
    """Continuous MP density of eigenvalues of (1/N) X X^T, X (D, N) i.i.d. unit variance.

    ratio = D/N. Support [(1-sqrt r)^2, (1+sqrt r)^2]; for ratio > 1 the point mass 1 - 1/ratio
    at 0 is not included.
    """
    lo, hi = (1 - math.sqrt(ratio)) ** 2, (1 + math.sqrt(ratio)) ** 2
    x = torch.as_tensor(x, dtype=torch.float64)
    inside = (x > lo) & (x < hi)
    root = torch.sqrt(((hi - x) * (x - lo)).clamp_min(0.0))
    dens = root / (2 * math.pi * ratio * x.clamp_min(torch.finfo(x.dtype).tiny))
    return torch.where(inside, dens, torch.zeros_like(x))
