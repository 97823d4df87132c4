"""Benchmark: the task-vector layer sweep, ours vs the naive sweep, side by side on a real model.

Both sweeps score the same dev episodes at every layer and must give the same predictions.

* naive: for each layer L, extract θ(S) from the demonstrations + dummy queries and run the whole
  bare-query prompt with θ patched at L (what a per-layer `task_vector_accuracy(L)` call does);
* patch-only naive: extract θ at all layers once, then run the whole query prompt once per layer;
* ours: extract θ at all layers once; run each query's prefix once with a KV cache; then only the
  last token, for all layers in one batch (one row per layer, per-row patch layers).

    .venv/bin/python bench/bench_layer_sweep.py                      # SmolLM2, 20 dev episodes
    .venv/bin/python bench/bench_layer_sweep.py --model gemma3-270m
"""

from __future__ import annotations

import argparse
import time

import torch

from iclab.models import load_model
from iclab.taskvectors import sample_episodes, split_queries
from iclab.runtime import make_rng
from iclab.taskvectors import extract_thetas
from iclab.taskvectors import TaskVectorRunner
from iclab.taskvectors import get_template, prepare_task
from iclab.taskvectors import get_task


def measure(runner: TaskVectorRunner, fn):
    runner.tokens = runner.passes = 0
    t0 = time.perf_counter()
    out = fn()
    return out, runner.tokens, runner.passes, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="linguistic_present_simple_past_simple")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    lm = load_model(args.model)
    runner = TaskVectorRunner(lm)
    template = get_template("paper")
    prepared = prepare_task(get_task(args.task), lm.tokenizer, template)
    rng = make_rng(0, args.task, 0)  # the stream evaluate_task uses for episode seed 0
    dev_pool, _ = split_queries(len(prepared.pairs), rng)
    episodes = sample_episodes(prepared, dev_pool, args.episodes, 5, 2, rng)
    queries = [template.query(e.query) for e in episodes]
    layers = list(range(runner.n_layers))
    runner.predict(queries[:2])  # warm-up

    def ours():
        return runner.sweep_patched(queries, extract_thetas(runner, template, episodes), layers)

    def patch_only():
        return runner.sweep_patched_naive(queries, extract_thetas(runner, template, episodes), layers)

    def naive():
        cols = []
        for layer in layers:
            thetas = extract_thetas(runner, template, episodes)  # (N, L, D); only layer L is used
            cols.append(runner.predict_patched(queries, thetas[:, layer], layer))
        return torch.stack(cols, dim=1)

    rows = [("ours (KV cache + per-row layers)", *measure(runner, ours)),
            ("patch-only naive (θ once, query per layer)", *measure(runner, patch_only)),
            ("naive (θ and query per layer)", *measure(runner, naive))]
    ref = rows[0][1]
    same = all(torch.equal(r[1], ref) for r in rows)
    base_tokens, base_time = rows[0][2], rows[0][4]
    print(f"model {args.model}, task {args.task}, {args.episodes} dev episodes x {len(layers)} layers, "
          f"k=5, 2 dummies, {args.threads} threads; identical predictions: {same}")
    print("| sweep | forward tokens | passes | wall (s) | tokens vs ours | time vs ours |")
    print("|---|---|---|---|---|---|")
    for name, _, tokens, passes, seconds in rows:
        print(f"| {name} | {tokens} | {passes} | {seconds:.2f} | {tokens / base_tokens:.1f}x | {seconds / base_time:.1f}x |")
    if not same:
        raise SystemExit("predictions differ between sweeps")


if __name__ == "__main__":
    main()
