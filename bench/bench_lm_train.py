"""Benchmark: `train_causal_lm` vs a plain HuggingFace training loop, against the machine's
dense fp32 matmul throughput.

Measured side by side in one process, all cores: (a) the best of several 2048×2048 @ 2048×2048
matmuls; (b) a plain loop: model(input_ids=x, labels=x).loss.backward() with default AdamW, no
compile; (c) ours: train_causal_lm (torch.compile + fused AdamW + clipping + schedule). Same
model (llama arch, vocab 64), same batches (32×128), same number of timed steps; the first
warm-up steps of each loop, compilation included, are excluded from the timing and the compile
warm-up is reported on its own. Tokens/s come from the median step time of each loop. Inductor compiles into a fresh cache directory (a cold compile)
unless TORCHINDUCTOR_CACHE_DIR is set.

    .venv/bin/python bench/bench_lm_train.py                          # d32-L1 d64-L2 d96-L3 d128-L4
    .venv/bin/python bench/bench_lm_train.py --quick                  # 4 timed steps: a smoke run
    .venv/bin/python bench/bench_lm_train.py --sizes d128-L4 --steps 50
"""

from __future__ import annotations

import os
import shutil
import tempfile

_OWN_CACHE = "TORCHINDUCTOR_CACHE_DIR" not in os.environ
if _OWN_CACHE:  # before torch is imported
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-lm-inductor-")

import argparse
import platform
import re
import statistics
import time

import numpy as np
import torch

from iclab.models import (
    ModelSize,
    TokenWindows,
    TrainConfig,
    build_causal_lm,
    count_params,
    train_causal_lm,
    train_flops_per_token,
)

VOCAB, BATCH, SEQ = 64, 32, 128
QUICK_SIZES = "d32-L1,d64-L2,d96-L3,d128-L4"


def parse_size(text: str) -> ModelSize:
    m = re.fullmatch(r"d(\d+)-L(\d+)", text.strip())
    if not m:
        raise SystemExit(f"bad size {text!r}: write it as d<width>-L<layers>, e.g. d128-L4")
    return ModelSize(d_model=int(m[1]), n_layers=int(m[2]))


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Dense fp32 matmul throughput: the best of `repeats` n×n @ n×n products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def plain_loop(size: ModelSize, tokens: np.ndarray, warm: int, steps: int) -> list[float]:
    """Seconds per step of the textbook loop (HF's own loss, default AdamW, eager)."""
    model = build_causal_lm(size, VOCAB, seed=0).train()
    opt = torch.optim.AdamW(model.parameters())
    data = TokenWindows(tokens, seq_len=SEQ, batch_size=BATCH, seed=0)
    seconds = []
    for step in range(warm + steps):
        t0 = time.perf_counter()
        x = data.batch(step)[:, :-1]  # (B, T)
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
        seconds.append(time.perf_counter() - t0)
    return seconds


def our_loop(size: ModelSize, tokens: np.ndarray, warm: int, steps: int) -> list[float]:
    """Seconds per step of train_causal_lm, as it reports them (log_every=1)."""
    model = build_causal_lm(size, VOCAB, seed=0)
    cfg = TrainConfig(batch_size=BATCH, seq_len=SEQ, steps=warm + steps, warmup_steps=warm, log_every=1)
    seconds: list[float] = []
    train_causal_lm(model, tokens, cfg, log=lambda entry: seconds.append(entry["seconds"]))
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=QUICK_SIZES, help=f"comma-separated d<width>-L<layers> (default {QUICK_SIZES})")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per loop (default 30; 4 with --quick)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before timing (compilation included)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 4 timed steps, 2 warm-up steps")
    args = ap.parse_args()
    steps = args.steps or (4 if args.quick else 30)
    warm = 2 if args.quick else args.warmup
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    torch.set_num_threads(os.cpu_count())

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, size=BATCH * SEQ * (warm + steps) + 1)  # one epoch, every batch distinct
    peak = matmul_gflops()
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"batch {BATCH}×{SEQ}, vocab {VOCAB}, llama arch, {warm} warm-up + {steps} timed steps per loop")
    print(f"dense fp32 matmul (2048³, best of 10): {peak:.0f} GFLOP/s\n")
    print("| size | params | plain HF tok/s | ours tok/s | ours / plain | plain GFLOP/s (of peak) "
          "| ours GFLOP/s (of peak) | compile warm-up (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for size in sizes:
        model = build_causal_lm(size, VOCAB, seed=0)
        flops = train_flops_per_token(model, SEQ)
        plain = plain_loop(size, tokens, warm, steps)
        ours = our_loop(size, tokens, warm, steps)
        # median step time: robust to a stray process stealing a core for a moment
        rate_plain = BATCH * SEQ / statistics.median(plain[warm:])
        rate_ours = BATCH * SEQ / statistics.median(ours[warm:])
        compile_s = ours[0] - statistics.median(ours[warm:])  # the first step, less an ordinary step
        gf_plain, gf_ours = flops * rate_plain / 1e9, flops * rate_ours / 1e9
        print(f"| {size.name} | {count_params(model):,} | {rate_plain:,.0f} | {rate_ours:,.0f} | "
              f"{rate_ours / rate_plain:.2f}× | {gf_plain:.0f} ({gf_plain / peak:.0%}) | "
              f"**{gf_ours:.0f} ({gf_ours / peak:.0%})** | {compile_s:.1f} |", flush=True)
    print(f"\ndense fp32 matmul again at the end: {matmul_gflops():.0f} GFLOP/s")
    if _OWN_CACHE:
        shutil.rmtree(os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
