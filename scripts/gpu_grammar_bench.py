"""GPU throughput of the compositional line's paper preset, measured, and the paper grid sized from it.

On one GPU, in bfloat16 autocast (weights and optimiser in float32), the trainer of `grammar.train`:

1. the dense bfloat16 matmul peak of this GPU (8192³, best of 20), measured first in the same process;
2. the largest paper-preset point (d512-L8, batch 64×256, the paper world) for --steps steps: tokens/s
   (median of the logged intervals after the compile warm-up) and achieved FLOP/s as a fraction of that peak;
3. every other paper size for --grid-steps steps, so that the paper grid of `grammar.theory` (5 sizes ×
   3 data sizes × 3 seeds) can be projected from measured rates, with the corpus sampling rate beside it;
4. determinism on this device: two 30-step runs of one seed, compared loss by loss (bitwise).

    python scripts/gpu_grammar_bench.py                  # on a GPU, about 3 minutes
    python scripts/gpu_grammar_bench.py --device cpu --sizes 32x1,64x2 --steps 6 --grid-steps 4 \\
        --batch 4 --seq-len 64 --det-steps 3             # the smoke test the suite runs
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from iclab.grammar import World, WorldConfig
from iclab.grammar import token_ids
from iclab.grammar.experiments._common import PAPER_DATA, PAPER_SIZES, PAPER_TRAINING, TRAIN_SEEDS
from iclab.models import (ModelSize, TrainConfig, build_causal_lm, count_params, resolve_device, train_causal_lm,
                          train_flops_per_token)


def matmul_peak(device: str) -> tuple[float, str]:
    """Best dense matmul FLOP/s: bfloat16 8192³ on a GPU, float32 2048³ on a CPU."""
    n, dtype = (8192, torch.bfloat16) if device.startswith("cuda") else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(20 if device.startswith("cuda") else 5):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best, f"{str(dtype).removeprefix('torch.')} {n}³"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train(size: tuple[int, int], ids: np.ndarray, vocab: int, args, steps: int, seed: int = 0, log_every: int = 10):
    model = build_causal_lm(ModelSize(d_model=size[0], n_layers=size[1], context=max(256, args.seq_len)), vocab,
                            seed=seed).to(args.device)
    tokens = ids[: steps * args.batch * args.seq_len + 1]
    cfg = TrainConfig(lr=PAPER_TRAINING["lr"], warmup_steps=min(PAPER_TRAINING["warmup_steps"], steps // 2),
                      batch_size=args.batch, seq_len=args.seq_len, seed=seed, autocast=args.dtype,
                      compile=not args.no_compile, log_every=log_every)
    t0 = time.perf_counter()
    hist = train_causal_lm(model, tokens, cfg)
    wall = time.perf_counter() - t0
    rates = hist.tokens_per_s[2:] or hist.tokens_per_s[-1:]  # the first intervals hold the compile
    return model, hist, statistics.median(rates), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (default)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--sizes", default=",".join(f"{d}x{n}" for d, n in PAPER_SIZES),
                    help="d_model x n_layers, smallest first; the last is timed for --steps")
    ap.add_argument("--steps", type=int, default=300, help="steps of the largest size")
    ap.add_argument("--grid-steps", type=int, default=60, help="steps of every other size")
    ap.add_argument("--det-steps", type=int, default=30, help="steps of each determinism run")
    ap.add_argument("--batch", type=int, default=PAPER_TRAINING["batch_size"])
    ap.add_argument("--seq-len", type=int, default=PAPER_TRAINING["seq_len"])
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    args.device = resolve_device(args.device)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"device {args.device} ({name}), torch {torch.__version__}, {args.dtype} autocast, batch "
          f"{args.batch}×{args.seq_len}")

    peak, how = matmul_peak(args.device)
    print(f"matmul peak ({how}, best of the repeats): {peak / 1e12:.1f} TFLOP/s")

    world = World(WorldConfig(**PAPER_TRAINING["world"], n_triples=64))
    need = max(max(args.steps, args.grid_steps, args.det_steps) * args.batch * args.seq_len + 1, 200_000)
    cores = os.cpu_count() or 1
    t0 = time.perf_counter()
    ids = token_ids(world.grammar, need, seed=0, workers=cores)
    sample_rate = need / (time.perf_counter() - t0)
    print(f"corpus: {need:,} tokens sampled at {sample_rate:,.0f} tokens/s ({cores} processes)")

    rates = {}
    for size in sizes:
        steps = args.steps if size == sizes[-1] else args.grid_steps
        model, hist, rate, wall = train(size, ids, len(world.vocab), args, steps)
        flops = train_flops_per_token(model, args.seq_len) * rate
        rates[size] = rate
        print(f"d{size[0]}-L{size[1]}: {count_params(model):,} parameters, {steps} steps in {wall:.1f} s (compile "
              f"included), loss {hist.loss[-1]:.3f}; {rate:,.0f} tokens/s, {flops / 1e12:.2f} TFLOP/s = "
              f"{flops / peak:.1%} of the measured peak")

    runs = []
    for _ in range(2):
        _, hist, _, _ = train(sizes[-1], ids, len(world.vocab), args, args.det_steps, seed=1, log_every=1)
        runs.append(np.asarray(hist.loss))
    diff = float(np.abs(runs[0] - runs[1]).max())
    print(f"determinism: two {args.det_steps}-step runs of seed 1 at d{sizes[-1][0]}-L{sizes[-1][1]}: "
          f"{'bitwise-equal losses' if diff == 0 else f'losses differ, max |Δ| = {diff:.3g}'}")

    if [tuple(s) for s in PAPER_SIZES] == sizes:
        train_s = sum(d / rates[tuple(s)] for s in PAPER_SIZES for d in PAPER_DATA) * len(TRAIN_SEEDS)
        corpus_s = max(PAPER_DATA) / sample_rate * len(TRAIN_SEEDS)  # once per seed, cached and shared by every size
        print(f"paper grid of grammar.theory ({len(PAPER_SIZES)} sizes × {len(PAPER_DATA)} data sizes × "
              f"{len(TRAIN_SEEDS)} seeds): training {train_s / 60:.1f} min on this device at these rates, plus "
              f"{corpus_s / 60:.1f} min sampling the seeds' corpora on {cores} processes")


if __name__ == "__main__":
    main()
