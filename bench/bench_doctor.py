"""Benchmark: `iclab doctor`'s head-sum check, one forward pass vs a pass per block, side by side.

The check runs each attention head alone through a block's output projection and compares the sum
with the projection's output. Both ways hook the same projections on the same prompts:

* ours (`iclab.models._doctor.check_head_sum`): every block's projection hooked, one forward pass;
* per block (how the check first worked): one block hooked at a time, one forward pass per block.

They must report the same worst relative difference; the speed-up grows with the number of blocks.

    .venv/bin/python bench/bench_doctor.py                  # SmolLM2-135M (30 blocks)
"""

from __future__ import annotations

import argparse
import time

import torch

from iclab.models import architecture_map, attention_out, forward_last, load_model
from iclab.models._doctor import PROMPTS, _batch, _rel, check_head_sum


def per_block(lm) -> float:
    """The worst relative difference over blocks, one forward pass per block."""
    amap = architecture_map(lm.model)
    worst = 0.0
    for layer in range(amap.n_layers):
        got: dict[str, torch.Tensor] = {}

        def hook(module, args, out):
            if got:  # the calls below re-enter this hook
                return
            got["y"] = out.detach().float()
            x = args[0].unflatten(-1, (amap.n_heads, -1))  # (B, T, H, d)
            bias = module(torch.zeros_like(args[0])).detach().float()
            got["total"] = bias + sum(module((x * (torch.arange(amap.n_heads) == h)[:, None]).flatten(-2)).float()
                                      - bias for h in range(amap.n_heads))

        handle = attention_out(lm.model, layer).register_forward_hook(hook)
        try:
            forward_last(lm.model, _batch(lm, PROMPTS))
        finally:
            handle.remove()
        worst = max(worst, _rel(got["total"], got["y"]))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    forward_last(lm.model, _batch(lm, PROMPTS))  # warm-up

    times: dict[str, list[float]] = {"ours": [], "per block": []}
    results: dict[str, float] = {}
    with torch.no_grad():
        for _ in range(args.repeats):  # interleaved, so both see the same machine
            t = time.perf_counter()
            ok, detail = check_head_sum(lm)
            times["ours"].append(time.perf_counter() - t)
            results["ours"] = float(detail.rsplit(" ", 1)[1])
            t = time.perf_counter()
            results["per block"] = per_block(lm)
            times["per block"].append(time.perf_counter() - t)
    n = architecture_map(lm.model).n_layers
    best = {k: min(v) for k, v in times.items()}
    print(f"{args.model}: {n} blocks, {args.threads} threads, best of {args.repeats}")
    print("| way | forward passes | wall (s) | worst relative difference | speed-up |")
    print("|---|---|---|---|---|")
    for way, passes in (("per block", n), ("ours", 1)):
        print(f"| {way} | {passes} | {best[way]:.2f} | {results[way]:.1e} | {best['per block'] / best[way]:.1f}× |")
    assert ok and f"{results['per block']:.1e}" == f"{results['ours']:.1e}", results  # the same check


if __name__ == "__main__":
    main()
