"""Block statistics of the "structure" experiments (Figs. 1, 3, S2, S3, S7) and their closed forms;
bootstrap estimates over repeats for the training experiments (Figs. 4b, S4).

The pooled draws come from the exact reduced sampler (`iclab.spinglass._sampling.sample_reduced`), whose
features s (..., D+1, D) drop the last column of the core layout (identically zero: the query label
slot). In this "reduced" layout

    s_red[a, b] = s[a, b],  a in 0..D, b in 0..D-1,   spin index a*D + b  (n_red = D(D+1)),

the D^2 spins of W11 come first and the D last-row spins last (as in the full layout).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from iclab.spinglass._analysis import histogram_counts
from iclab.runtime import Estimate

# The official Fig. 1 / S2 histogram windows (fig-1/plot.py x-limits = fig-S2/data.py bins),
# tuned to D = 5; values outside are dropped, as pandas.cut does in the official S2 script.
PAPER_WINDOWS = {"A": (-0.2, 0.4), "B": (-0.3, 0.3), "C": (-0.1, 0.1), "D": (-0.3, 0.3), "E": (-0.5, 0.5)}
BLOCKS = ("A", "B", "C", "D", "E")


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


def block_counts(
    J: Tensor, h: Tensor, D: int, bins: int, windows: dict[str, tuple[float, float]], a_diagonal: bool = True
) -> dict[str, Tensor]:
    """Per-draw histograms (B, bins) of blocks A-E, equal to `analysis.histogram_counts(block_values(...))`
    but without gathering the off-diagonal entries: count the whole block, subtract its diagonal,
    and count one of the two (symmetric) D blocks twice."""
    head = D * D

    def count(x, k):
        return histogram_counts(x, *windows[k], bins)

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


# -----------------------------------------------------------------------------
# estimates over repeats, and the settings a paper value is tied to (Figs. 4b, S4)


def repeat_estimate(table: np.ndarray, stat: Callable[[np.ndarray], float], unit: str = "repeats") -> Estimate:
    """stat(table) for a (R, K) table of per-repeat values at K sweep points (NaN: a run left out,
    e.g. AMP not converged), with a percentile bootstrap over the R repeats (rows resampled
    together). stat must tolerate NaN columns (use nanmean): a resample can drop every finite
    value of a sparse column. Where stat has no finite value on the data, the estimate is NaN
    (judged inconclusive)."""
    table = np.asarray(table, dtype=float).reshape(len(table), -1)  # (R, K)
    table = table[~np.isnan(table).all(1)]  # a repeat with no value anywhere carries no information

    def of_columns(*cols: np.ndarray) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns of a resample
            return float(stat(np.column_stack(cols)))

    if not len(table) or not math.isfinite(of_columns(*table.T)):
        return Estimate(float("nan"), n=len(table), method=f"undefined: no finite values over the {unit}")
    return Estimate.bootstrap(*table.T, statistic=of_columns, unit=unit)


def nanmean_columns(table: np.ndarray) -> np.ndarray:
    """Column means ignoring NaN, NaN for an all-NaN column, without the empty-slice warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(table, axis=0)


def settings_differ(cfg: Any, paper: dict[str, Any], keys: Sequence[str]) -> list[str]:
    """The settings among `keys` where cfg differs from the paper's ("name=ours (paper: x)"): a paper
    value estimates a quantity fixed by these settings, so it is compared only when this is empty."""
    return [f"{k}={getattr(cfg, k)!r} (paper: {paper[k]!r})" for k in keys if getattr(cfg, k) != paper[k]]


def std_estimate(samples: np.ndarray, unit: str = "repeats", level: float = 0.95) -> Estimate:
    """The std (ddof=1) of independent samples with its chi-square interval (exact for normal
    samples; a percentile bootstrap of a std undercovers badly at a handful of repeats)."""
    from scipy import stats

    x = np.asarray(samples, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return Estimate(float("nan"), n=int(x.size), method=f"fewer than two {unit}: no std")
    s, df = float(x.std(ddof=1)), x.size - 1
    lo, hi = (s * math.sqrt(df / stats.chi2.ppf(q, df)) for q in (0.5 + level / 2, 0.5 - level / 2))
    return Estimate(s, lo, hi, int(x.size), f"{level:.0%} chi-square interval over {x.size} {unit}")
