"""Uncertainty and the paper's task filter, on counts of correct answers.

Accuracies here are always k correct of n prompts. The paper's summary keeps the tasks where ICL
beats the zero-shot baseline by at least 0.20; comparing the two rates as exact fractions keeps a
gap of exactly 0.20 (15/50 against 10/100), which floating point (0.3 - 0.1 = 0.19999999999999998)
would drop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np

from iclab.runtime import Estimate

MIN_GAIN = Fraction(1, 5)  # the paper's filter: ICL - baseline >= 0.20
N_RESAMPLES = 2000


def passes_filter(icl_correct: int, icl_n: int, base_correct: int, base_n: int, min_gain: Fraction = MIN_GAIN) -> bool:
    """Whether ICL beats the baseline by at least `min_gain`, compared exactly on the counts."""
    if icl_n <= 0 or base_n <= 0:
        return False
    return Fraction(int(icl_correct), int(icl_n)) - Fraction(int(base_correct), int(base_n)) >= min_gain


def accuracy_estimate(correct: Sequence[bool] | np.ndarray, unit: str = "test prompts") -> Estimate:
    """Accuracy over prompts with its percentile bootstrap interval (prompts resampled). When every prompt
    scores the same, each resample does too and the bootstrap interval has zero width; the Wilson
    interval of those counts is used instead, so 0 of 16 is not read as exactly 0."""
    x = np.asarray(correct, dtype=float)
    if x.size and np.all(x == x[0]):
        est = Estimate.proportion(int(x.sum()), x.size, unit=unit)
        return Estimate(est.value, est.lo, est.hi, est.n, est.method + " (all prompts scored alike)")
    return Estimate.bootstrap(x, unit=unit, n_resamples=N_RESAMPLES)


def ratio_of_means(means: np.ndarray) -> float:
    """The paper's TV / ICL from per-task means (T, 2) [task vector, ICL]: mean TV over mean ICL."""
    den = float(means[:, 1].mean()) if len(means) else float("nan")
    return float(means[:, 0].mean()) / den if den > 0 else float("nan")


def mean_of_first(means: np.ndarray) -> float:
    """The mean over tasks of the first column (one condition's accuracy)."""
    return float(means[:, 0].mean()) if len(means) else float("nan")


def two_level_estimate(groups: Sequence[np.ndarray], statistic: Callable[[np.ndarray], float] = mean_of_first, *,
                       level: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Estimate:
    """A statistic of per-task means with a two-level percentile bootstrap: resample the tasks, then each
    drawn task's prompts. groups[t]: (n_t, c) 0/1 scores of task t's prompts, one column per condition
    scored on the same prompts (resampled together); statistic: (T, c) per-task means -> float.

    The interval covers both which tasks were run and the finite number of prompts per task."""
    groups = [np.asarray(g, dtype=float).reshape(len(g), -1) for g in groups]
    if statistic is mean_of_first and groups and all(g.size for g in groups):
        pooled = np.concatenate([g[:, 0] for g in groups])
        if np.all(pooled == pooled[0]):  # every prompt alike: a zero-width bootstrap, so Wilson on the counts
            est = Estimate.proportion(int(pooled.sum()), pooled.size, unit=f"prompts of {len(groups)} tasks")
            return Estimate(est.value, est.lo, est.hi, len(groups), est.method + " (all prompts scored alike)")
    value = statistic(np.array([g.mean(0) for g in groups])) if groups else float("nan")
    n = len(groups)
    if n == 0 or not np.isfinite(value):
        return Estimate(float("nan"), n=n, method="no tasks")
    if n == 1 and len(groups[0]) < 2:
        return Estimate(value, n=1, method="one task with one prompt, no interval")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    for b in range(n_resamples):
        drawn = [groups[t] for t in rng.integers(0, n, n)]
        stats[b] = statistic(np.array([g[rng.integers(0, len(g), len(g))].mean(0) for g in drawn]))
    stats = stats[np.isfinite(stats)]
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(value, min(float(lo), value), max(float(hi), value), n,
                    f"{level:.0%} two-level bootstrap over {n} tasks and their prompts")
