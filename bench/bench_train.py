"""Benchmark: full-batch Adam on sufficient statistics vs on the prompts (merged linear attention).

Both trainers run the SAME number of epochs from the same init on the same prompts (no
per-epoch extrapolation), and the final weights are compared. The stats trainer is timed
with and without building (S, h, yy) from the prompts.

    .venv/bin/python bench/bench_train.py            # D=20, N=200, P=10^4, 20 epochs (Fig. 4b sizes)
    .venv/bin/python bench/bench_train.py --quick    # small sizes, seconds
"""

from __future__ import annotations

import argparse
import time

import torch

from iclab.spinglass import features, sample_prompts, sufficient_stats_from
from iclab.spinglass import train_prompts, train_quadratic


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (D=10, N=50, P=2000)")
    ap.add_argument("--D", type=int, default=None)
    ap.add_argument("--N", type=int, default=None)
    ap.add_argument("--P", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=20, help="epochs run by BOTH trainers")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    D, N, P = (10, 50, 2000) if args.quick else (20, 200, 10_000)
    D, N, P = args.D or D, args.N or N, args.P or P
    dtype = getattr(torch, args.dtype)
    kw = dict(model="merged", epochs=args.epochs, lr=1e-3, weight_decay=0.01, dtype=dtype)

    prompts = sample_prompts(D, N, P, generator=torch.Generator().manual_seed(args.seed), dtype=dtype)
    train_quadratic(*_tiny_stats(dtype), epochs=2, lr=1e-3, dtype=dtype)  # warm up kernels

    stats, t_build = timed(lambda: sufficient_stats_from(features(prompts.Z), prompts.y))
    fast, t_fast = timed(lambda: train_quadratic(stats.S, stats.h, stats.yy, generator=_gen(args.seed), **kw))
    slow, t_slow = timed(lambda: train_prompts(prompts.Z, prompts.y, generator=_gen(args.seed), **kw))

    rel_W = ((fast.W - slow.W).norm() / slow.W.norm()).item()
    rel_loss = ((fast.train_loss - slow.train_loss).abs().max() / slow.train_loss.abs().max()).item()
    E = args.epochs
    print(f"merged linear attention, D={D}, N={N}, P={P}, {E} epochs, {args.dtype}, "
          f"{torch.get_num_threads()} torch threads\n")
    print("| trainer | total time (s) | time / epoch (ms) | speedup vs prompts |")
    print("|---|---|---|---|")
    rows = [
        ("prompts (full attention formula, every epoch)", t_slow),
        ("sufficient stats, incl. building S, h, yy", t_build + t_fast),
        ("sufficient stats, excl. building", t_fast),
        ("(building S, h, yy alone)", t_build),
    ]
    for name, t in rows:
        print(f"| {name} | {t:.4f} | {1e3 * t / E:.3f} | {t_slow / t:.0f}x |")
    print(f"\nspeedup incl. building: {t_slow / (t_build + t_fast):.0f}x; "
          f"excl. building: {t_slow / t_fast:.0f}x")
    print(f"agreement after {E} epochs: rel. diff of W {rel_W:.1e}, of train-loss history {rel_loss:.1e}")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + 1)


def _tiny_stats(dtype):
    p = sample_prompts(2, 5, 10, generator=torch.Generator().manual_seed(0), dtype=dtype)
    s = sufficient_stats_from(features(p.Z), p.y)
    return s.S, s.h, s.yy


if __name__ == "__main__":
    main()
