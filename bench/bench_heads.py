"""Benchmark: the average indirect effect of attention heads, cached vs naive, side by side on a real model.

Both compute IE[p, l, h] on the same corrupted prompts (shuffled-label 10-shot ICL prompts) with the same
mean head activations:

* ours: each prompt's prefix once with a KV cache, then only the last token, one row per (prompt, head);
* naive: the whole prompt once per (layer, head), as a per-head patch-and-rerun loop does.

The naive way is run on the first `--naive-layers` layers only (it takes minutes per layer on a CPU); its
cost for all layers is that times n_layers / naive_layers, and the IEs are compared on those layers.

    .venv/bin/python bench/bench_heads.py                   # SmolLM2-135M (270 heads), 25 prompts
"""

from __future__ import annotations

import argparse
import time

import torch

from iclab.models import load_model
from iclab.runtime import make_rng
from iclab.taskvectors._heads import indirect_effects, indirect_effects_naive, mean_head_activations
from iclab.taskvectors import TaskVectorRunner
from iclab.taskvectors import get_template, prepare_task
from iclab.taskvectors import get_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="algorithmic_to_upper")
    ap.add_argument("--prompts", type=int, default=25)
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--naive-layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    lm = load_model(args.model)
    template = get_template("qa")
    prepared = prepare_task(get_task(args.task), lm.tokenizer, template)
    rng = make_rng(0, "bench-heads")
    pairs = list(prepared.pairs)

    def prompt(shuffle: bool) -> tuple[str, int]:
        idx = rng.choice(len(pairs), size=args.shots + 1, replace=False)
        demos = [pairs[i] for i in idx[:-1]]
        if shuffle:
            ys = [y for _, y in demos]
            ys = [ys[i] for i in rng.permutation(len(ys))]
            demos = [(x, y) for (x, _), y in zip(demos, ys)]
        x, y = pairs[idx[-1]]
        answer = lm.tokenizer(template.answer_space + y, add_special_tokens=False)["input_ids"][0]
        return template.prompt(demos, x), answer

    clean = [prompt(False)[0] for _ in range(100)]
    corrupted, answers = zip(*[prompt(True) for _ in range(args.prompts)])
    answers = torch.tensor(answers)
    runner = TaskVectorRunner(lm)
    means = mean_head_activations(runner, clean)

    runner.tokens = 0
    t0 = time.perf_counter()
    ours = indirect_effects(runner, list(corrupted), answers, means)
    t_ours, tok_ours = time.perf_counter() - t0, runner.tokens

    n_layers, n_heads = means.shape[:2]
    runner.tokens = 0
    t0 = time.perf_counter()
    naive = indirect_effects_naive(runner, list(corrupted), answers, means, n_layers=args.naive_layers)
    scale = n_layers / args.naive_layers
    t_naive, tok_naive = (time.perf_counter() - t0) * scale, runner.tokens * scale
    diff = float((ours[:, : args.naive_layers] - naive).abs().max())
    print(f"model {args.model}, task {args.task}, {args.prompts} corrupted {args.shots}-shot prompts, "
          f"{n_layers} x {n_heads} = {n_layers * n_heads} heads, {args.threads} threads; max |IE ours - IE naive| "
          f"on layers 0-{args.naive_layers - 1}: {diff:.1e}")
    print("| way | forward tokens | wall (s) |")
    print("|---|---|---|")
    print(f"| ours (prefix cached, one row per head) | {tok_ours:,.0f} | {t_ours:.1f} |")
    print(f"| naive (whole prompt per head; {args.naive_layers} layers measured, x{scale:g}) | {tok_naive:,.0f} | {t_naive:.1f} |")
    print(f"tokens: {tok_naive / tok_ours:.1f}x fewer; wall: {t_naive / t_ours:.1f}x faster")


if __name__ == "__main__":
    main()
