"""Benchmark: whole-answer scoring vs first-token scoring, per episode, side by side on a real model.

Both score the same task, pairs and episodes with `evaluate_task` (dev layer sweep, then baseline,
ICL and the task vector on test); `full` decodes each answer greedily with the KV cache until the
line ends (or the longest gold answer + 1 tokens), `first-token` stops after one token. The task
file's answers (adjective -> comparative) are 1-3 tokens for SmolLM2. Reported: forward tokens,
passes and wall time per episode, and their ratio (target: full <= 1.3x first-token).

    .venv/bin/python bench/bench_full_answers.py                     # SmolLM2, comparatives
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from iclab.models import load_model
from iclab.taskvectors import evaluate_task
from iclab.taskvectors import TaskVectorRunner
from iclab.taskvectors import answer_lengths, get_template, prepare_task
from iclab.taskvectors import load_task_file

TASK = Path(__file__).resolve().parents[1] / "examples" / "tasks" / "comparatives.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default=str(TASK))
    ap.add_argument("--episodes", type=int, default=16, help="dev and test episodes each (baseline: the same)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of each mode, alternating; median kept")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    lm = load_model(args.model)
    template = get_template("paper")
    task = load_task_file(args.task)
    episodes = dict(n_dev=args.episodes, n_test=args.episodes, n_baseline=args.episodes, k=5, n_dummy=2)
    full = prepare_task(task, lm.tokenizer, template, scoring="full")
    # the same pairs, written the same way and drawn into the same episodes: only the decoding differs
    prepared = {"first-token": dataclasses.replace(full, scoring="first-token"), "full": full}
    lengths = answer_lengths(lm.tokenizer, template, list(prepared["full"].pairs))  # as written in the prompts
    evaluate_task(TaskVectorRunner(lm), prepared["first-token"], template, seed=0, n_dev=2, n_test=2, n_baseline=2)

    runs: dict[str, list] = {s: [] for s in prepared}
    for _ in range(args.repeats):
        for scoring, p in prepared.items():
            runner = TaskVectorRunner(lm)
            t0 = time.perf_counter()
            res = evaluate_task(runner, p, template, seed=0, **episodes)
            runs[scoring].append((time.perf_counter() - t0, runner.tokens, runner.passes, res))
    n_ep = 3 * args.episodes  # dev + test + baseline episodes
    print(f"model {args.model}, task {task.name} ({len(task.pairs)} pairs; answer tokens: "
          f"{min(lengths)}-{max(lengths)}, mean {sum(lengths) / len(lengths):.2f}), {args.episodes} dev + "
          f"{args.episodes} test + {args.episodes} baseline episodes, k=5, {args.threads} threads, "
          f"median of {args.repeats} alternating repeats")
    print("| scoring | forward tokens / episode | passes / episode | wall / episode (ms) | ICL acc | TV acc | baseline acc |")
    print("|---|---|---|---|---|---|---|")
    med = {}
    for scoring, rs in runs.items():
        seconds, tokens, passes, res = sorted(rs, key=lambda r: r[0])[len(rs) // 2]
        med[scoring] = (seconds, tokens)
        print(f"| {scoring} | {tokens / n_ep:.0f} | {passes / n_ep:.2f} | {1000 * seconds / n_ep:.1f} | "
              f"{res.icl:.3f} | {res.task_vector:.3f} | {res.baseline:.3f} |")
    ratio_t = med["full"][0] / med["first-token"][0]
    ratio_k = med["full"][1] / med["first-token"][1]
    print(f"full / first-token: wall {ratio_t:.2f}x, forward tokens {ratio_k:.2f}x (target <= 1.3x wall)")


if __name__ == "__main__":
    main()
