"""Claims as data, verdicts computed by the runtime.

A claim puts one estimate of ours (a number with its uncertainty) beside a statement of the
paper, under a tolerance declared in the experiment's code before any run. The experiment never
says whether the claim holds: `judge` decides, from the numbers alone:

    the region the paper allows   paper value ± tolerance, or a declared range (`expect`)
    our interval                  the confidence interval of our estimate (a point when we have none)

    interval inside the region      -> reproduced (paper kinds) / holds (sanity, engineering)
    interval outside the region     -> differs    (paper kinds) / fails
    interval straddles its border   -> inconclusive
    no tolerance (engineering only) -> reported

An estimate marked `hint` rests on a single unit of the variation that matters (one training seed:
its interval covers the prompts, not the training) and can neither confirm nor refute a paper claim:
its paper claims are inconclusive whatever the interval says.

The four kinds keep apart what a reviewer counts as reproduction (`paper-value`, `paper-shape`)
from checks of our own code (`sanity`) and sizes and speed (`engineering`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ._errors import IclabError

KINDS = ("paper-value", "paper-shape", "sanity", "engineering")
PAPER_KINDS = ("paper-value", "paper-shape")  # the only kinds a scoreboard counts
VERDICTS = {  # (inside, outside, straddles) per kind
    "paper-value": ("reproduced", "differs", "inconclusive"),
    "paper-shape": ("reproduced", "differs", "inconclusive"),
    "sanity": ("holds", "fails", "inconclusive"),
    "engineering": ("holds", "fails", "inconclusive"),
}
OPS = ("<", "<=", ">", ">=", "between")


@dataclass(frozen=True)
class Estimate:
    """A number of ours with its confidence interval [lo, hi] (None: no interval, e.g. one seed).

    `n` is how many independent units it rests on and `method` says how the interval was made
    (read by the report beside the number), e.g. "95% t-interval over 5 repeats".
    """

    value: float
    lo: float | None = None
    hi: float | None = None
    n: int = 1
    method: str = "one value, no interval"
    hint: bool = False  # one training seed (or run) of what varies most: paper claims on it stay inconclusive

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _float(self.value))
        if (self.lo is None) != (self.hi is None):
            raise IclabError("an Estimate needs both lo and hi, or neither")
        if self.lo is not None:
            object.__setattr__(self, "lo", _float(self.lo))
            object.__setattr__(self, "hi", _float(self.hi))

    @property
    def interval(self) -> tuple[float, float]:
        """The interval a verdict is judged on: the CI, or the point itself when there is none."""
        return (self.value, self.value) if self.lo is None else (self.lo, self.hi)

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def mean(cls, samples: Sequence[float] | np.ndarray, *, level: float = 0.95, unit: str = "repeats") -> Estimate:
        """Mean over independent repeats or seeds with its Student-t interval (NaNs dropped).

        A single sample gives the value with no interval, and says so."""
        from scipy import stats

        x = _finite(samples)
        if x.size == 0:
            return cls(float("nan"), n=0, method=f"no finite {unit}")
        if x.size == 1:
            return cls(float(x[0]), n=1, method=f"one of {unit}, no interval")
        m, se = float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))
        half = float(stats.t.ppf(0.5 + level / 2, x.size - 1)) * se
        return cls(m, m - half, m + half, int(x.size), f"{level:.0%} t-interval over {x.size} {unit}")

    @classmethod
    def bootstrap(cls, *samples: Sequence[float] | np.ndarray, statistic: Callable[..., float] | None = None,
                  level: float = 0.95, n_resamples: int = 2000, seed: int = 0, unit: str = "episodes",
                  paired: bool = True) -> Estimate:
        """A statistic (default: the mean) of one or more samples, with a percentile bootstrap interval
        (scipy.stats.bootstrap, seeded). Several samples are resampled together (`paired`, e.g. the same
        prompts scored two ways) or each on its own."""
        from scipy import stats

        arrays = [np.asarray(s, dtype=float) for s in samples]
        if not arrays or any(a.size == 0 for a in arrays):
            return cls(float("nan"), n=0, method=f"no {unit}")
        stat = statistic or (lambda *xs: np.mean(xs[0]))
        value = float(stat(*arrays))
        n = int(arrays[0].size)
        if n < 2:
            return cls(value, n=n, method=f"one of {unit}, no interval")

        def vectorised(*xs: np.ndarray, axis: int = -1) -> np.ndarray:
            xs = [np.moveaxis(x, axis, -1) for x in xs]
            flat = [x.reshape(-1, x.shape[-1]) for x in xs]
            out = np.array([stat(*row) for row in zip(*flat)])
            return out.reshape(xs[0].shape[:-1])

        with warnings.catch_warnings():  # a statistic undefined on some resamples: handled below
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            res = stats.bootstrap(tuple(arrays), vectorised, n_resamples=n_resamples, confidence_level=level,
                                  method="percentile", paired=paired and len(arrays) > 1, vectorized=True,
                                  random_state=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        method = f"{level:.0%} bootstrap over {n} {unit}"
        dist = np.asarray(res.bootstrap_distribution, dtype=float)
        finite = dist[np.isfinite(dist)]
        if 0 < finite.size < dist.size:  # e.g. a rank correlation of a resample with one distinct value
            lo, hi = (float(q) for q in np.quantile(finite, [(1 - level) / 2, (1 + level) / 2]))
            method += f" ({dist.size - finite.size} of {dist.size} resamples undefined, left out)"
        if not (math.isfinite(lo) and math.isfinite(hi)):  # a constant sample: every resample is the value
            lo = hi = value
        return cls(value, min(lo, value), max(hi, value), n, method)

    @classmethod
    def proportion(cls, k: int, n: int, *, level: float = 0.95, unit: str = "prompts") -> Estimate:
        """A success rate k/n with its Wilson score interval."""
        from scipy import stats

        if n <= 0:
            return cls(float("nan"), n=0, method=f"no {unit}")
        ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
        return cls(k / n, float(ci.low), float(ci.high), int(n), f"{level:.0%} Wilson interval over {n} {unit}")

    @classmethod
    def exact(cls, value: float, why: str = "exact computation, no sampling error") -> Estimate:
        """A number with no sampling error (a closed form, a count, a deterministic property)."""
        v = _float(value)
        return cls(v, v, v, 1, why)

    @classmethod
    def single(cls, value: float, what: str = "one seed") -> Estimate:
        """One draw with no interval: judged on the point, and the report says it is one draw."""
        return cls(_float(value), n=1, method=f"{what}, no interval")


@dataclass(frozen=True)
class Claim:
    """One statement of the paper (or of our own checks) and our estimate of it. No verdict field:
    `verdict` is derived from the numbers every time it is read."""

    name: str
    kind: str
    paper: str  # the paper's statement, in words
    ours: Estimate
    paper_value: float | list[float] | None = None  # the paper's number (or curve), for paper-value
    source: str | None = None  # where the paper says it: "saved data of Fig. 4b", "Table 1, read from the PDF"
    tolerance: float | None = None  # paper-value: |ours - paper| allowed (absolute)
    rel_tolerance: float | None = None  # paper-value: allowed as a fraction of |paper|
    expect: tuple[Any, ...] | None = None  # a declared range: ("<", x), (">=", x), ("between", a, b)
    note: str = ""  # why it differs, what the statistic is, what one seed means here

    def __post_init__(self) -> None:
        where = f"claim {self.name!r}"
        if self.kind not in KINDS:
            raise IclabError(f"{where}: kind must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if not isinstance(self.ours, Estimate):
            raise IclabError(f"{where}: ours must be an Estimate (Estimate.mean / bootstrap / proportion / "
                             "exact / single), so its uncertainty travels with it")
        if self.expect is not None:
            object.__setattr__(self, "expect", _check_expect(self.expect, where))
        has_tol = self.tolerance is not None or self.rel_tolerance is not None
        if self.kind in PAPER_KINDS and not self.source:
            raise IclabError(f"{where}: a {self.kind} claim needs source= (where the paper says it, "
                             "e.g. 'Fig. 4b, saved data')")
        if self.kind == "paper-value":
            if self.paper_value is None:
                raise IclabError(f"{where}: a paper-value claim needs paper_value= (the paper's number)")
            if isinstance(self.paper_value, (int, float)) and not has_tol and self.expect is None:
                raise IclabError(f"{where}: a paper-value claim needs tolerance= or rel_tolerance= "
                                 "(declared before the run)")
            if not isinstance(self.paper_value, (int, float)) and self.expect is None:
                raise IclabError(f"{where}: a paper-value claim on a curve needs expect= on its distance "
                                 "statistic, e.g. ('<=', 0.05)")
        if self.kind in ("paper-shape", "sanity") and self.expect is None:
            raise IclabError(f"{where}: a {self.kind} claim needs expect= (the range the statistic must fall "
                             "in, declared before the run), e.g. ('>', 0)")
        if has_tol and self.expect is not None:
            raise IclabError(f"{where}: give tolerance= (around paper_value) or expect=, not both")
        for t in (self.tolerance, self.rel_tolerance):
            if t is not None and not (t >= 0):
                raise IclabError(f"{where}: tolerances must be >= 0 (got {t!r})")

    # -- the verdict ----------------------------------------------------------------------------
    @property
    def region(self) -> tuple[float, float, bool, bool] | None:
        """(low, high, low_closed, high_closed) the paper allows, or None when nothing is declared."""
        if self.expect is not None:
            op, *v = self.expect
            if op == "between":
                return (v[0], v[1], True, True)
            return {"<": (-math.inf, v[0], False, False), "<=": (-math.inf, v[0], False, True),
                    ">": (v[0], math.inf, False, False), ">=": (v[0], math.inf, True, False)}[op]
        if self.tolerance is None and self.rel_tolerance is None:
            return None
        pv = float(self.paper_value)  # type: ignore[arg-type]
        tol = max(self.tolerance or 0.0, (self.rel_tolerance or 0.0) * abs(pv))
        return (pv - tol, pv + tol, True, True)

    @property
    def target(self) -> str:
        """The declared tolerance in words, e.g. 'within ±0.2 of 2.1' or '< 0.02'."""
        if self.expect is not None:
            op, *v = self.expect
            return f"in [{_g(v[0])}, {_g(v[1])}]" if op == "between" else f"{op} {_g(v[0])}"
        if self.region is None:
            return ""
        pv = float(self.paper_value)  # type: ignore[arg-type]
        tol = f"±{_g(self.tolerance)}" if self.rel_tolerance is None else f"±{self.rel_tolerance:.0%}"
        if self.tolerance is not None and self.rel_tolerance is not None:
            tol = f"±max({_g(self.tolerance)}, {self.rel_tolerance:.0%})"
        return f"within {tol} of {_g(pv)}"

    @property
    def verdict(self) -> str:
        return judge(self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["expect"] = list(self.expect) if self.expect is not None else None
        d["target"] = self.target
        d["verdict"] = self.verdict
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Claim:
        """Rebuild a saved claim (its verdict is recomputed, never read)."""
        fields = {k: d.get(k) for k in ("name", "kind", "paper", "paper_value", "source", "tolerance",
                                        "rel_tolerance", "expect")}
        fields["expect"] = tuple(fields["expect"]) if fields["expect"] is not None else None
        return cls(ours=Estimate(**d["ours"]), note=d.get("note") or "", **fields)


def judge(claim: Claim) -> str:
    """The verdict, from our interval and the declared region only (see the module docstring)."""
    inside, outside, straddles = VERDICTS[claim.kind]
    region = claim.region
    if region is None:
        return "reported"
    if claim.ours.hint and claim.kind in ("paper-value", "paper-shape"):
        return straddles  # one seed is a hint, not a result
    lo, hi = claim.ours.interval
    if not (math.isfinite(claim.ours.value) and not math.isnan(lo) and not math.isnan(hi)):
        return straddles  # no estimate: nothing can be concluded
    r_lo, r_hi, lo_closed, hi_closed = region

    def contains(x: float) -> bool:
        above = x >= r_lo if lo_closed else x > r_lo
        below = x <= r_hi if hi_closed else x < r_hi
        return above and below

    if contains(lo) and contains(hi):
        return inside
    disjoint = (hi < r_lo or (hi == r_lo and not lo_closed)) or (lo > r_hi or (lo == r_hi and not hi_closed))
    return outside if disjoint else straddles


def _check_expect(expect: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(expect, (tuple, list)) or not expect or expect[0] not in OPS:
        raise IclabError(f"{where}: expect must be (op, value) with op one of <, <=, >, >=, or ('between', lo, hi)"
                         f" (got {expect!r})")
    op, *v = expect
    if len(v) != (2 if op == "between" else 1) or not all(isinstance(x, (int, float)) for x in v):
        raise IclabError(f"{where}: expect {expect!r} needs {'two numbers' if op == 'between' else 'one number'}")
    if op == "between" and v[0] > v[1]:
        raise IclabError(f"{where}: expect ('between', lo, hi) needs lo <= hi (got {expect!r})")
    return (op, *(float(x) for x in v))


def _finite(samples: Any) -> np.ndarray:
    x = np.asarray(samples, dtype=float).reshape(-1)
    return x[np.isfinite(x)]


def _float(x: Any) -> float:
    if isinstance(x, (bool, np.bool_)):
        return float(x)
    try:
        return float(x)
    except (TypeError, ValueError):
        raise IclabError(f"an Estimate's numbers must be real numbers (got {x!r})") from None


def _g(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def count_verdicts(claims: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """kind -> verdict -> count, over saved claims (their verdicts recomputed)."""
    out: dict[str, dict[str, int]] = {k: {} for k in KINDS}
    for d in claims:
        c = Claim.from_dict(d)
        out[c.kind][c.verdict] = out[c.kind].get(c.verdict, 0) + 1
    return out
