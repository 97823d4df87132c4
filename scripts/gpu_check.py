"""The checks that need a GPU, in one short script (under 5 minutes on one GPU). It also runs on a CPU
(`--device cpu`), which is how it is tested; its output on a GPU belongs in docs/benchmarks.md.

1. `iclab doctor` on tiny models of several families on the device, float32 and bfloat16.
2. A task-vector layer sweep (θ extracted and patched at every layer) in bfloat16 on the device, against
   float32 on the CPU: the patched logits agree to bfloat16 tolerance, and so do most predictions.
3. Training steps of the compositional line's largest quick model on the device (bfloat16 autocast), with
   tokens/s; a CUDA out-of-memory retry of the task-vector runner is exercised by the tests, not here.

    python scripts/gpu_check.py                  # device auto: the GPU when there is one
    python scripts/gpu_check.py --device cpu     # the same checks on the CPU
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from iclab.models import TINY_FAMILIES, diagnose, load_model, resolve_device
from iclab.models import Batch, forward_last
from iclab.models import patch_residual, record_residual


def doctor(device: str) -> bool:
    ok = True
    for family in ("llama", "qwen2", "gemma3_text", "gpt2", "gpt_neox", "phi3"):
        for dtype in ("float32", "bfloat16"):
            t0 = time.perf_counter()
            checks = diagnose(load_model(f"tiny:{family}", dtype=dtype, device=device))
            failed = [c.name for c in checks if not c.passed]
            ok &= not failed
            print(f"doctor tiny:{family:12s} {dtype:9s} {device}: {len(checks) - len(failed)}/{len(checks)} passed "
                  f"({time.perf_counter() - t0:.1f} s){'; FAILED: ' + '; '.join(failed) if failed else ''}")
    return ok


def sweep_logits(lm, prompts: list[str], queries: list[str]) -> torch.Tensor:
    """Last-token logits of each query with θ (its prompt's last-token state) patched at every layer: (N, L, V)."""
    enc = lm.tokenizer(prompts, return_tensors="pt", padding=True)
    with record_residual(lm.model) as rec:
        forward_last(lm.model, Batch(enc["input_ids"], enc["attention_mask"]))
    thetas = rec.states  # (N, L, D) float32 on the CPU
    enc = lm.tokenizer(queries, return_tensors="pt", padding=True)
    batch = Batch(enc["input_ids"], enc["attention_mask"])
    out = []
    for layer in range(thetas.shape[1]):
        with patch_residual(lm.model, thetas[:, layer], layers=layer):
            out.append(forward_last(lm.model, batch)[0])
    return torch.stack(out, 1)


def bf16_sweep(device: str) -> bool:
    torch.manual_seed(0)
    words = ["go", "see", "run", "eat", "take", "give", "make", "come", "sing", "swim", "fly", "draw"]
    prompts = [f"example:{a}->{a}ed\nexample:{b}->{b}ed\nexample:x->" for a, b in zip(words, words[1:] + words[:1])]
    queries = [f"example:{w}->" for w in words]
    ref = sweep_logits(load_model("tiny:llama", dtype="float32", device="cpu"), prompts, queries)
    got = sweep_logits(load_model("tiny:llama", dtype="bfloat16", device=device), prompts, queries)
    rel = float((got - ref).abs().max() / ref.abs().max())
    agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
    ok = rel < 5e-2 and agree >= 0.8
    print(f"task-vector sweep, tiny llama, {len(words)} prompts x {ref.shape[1]} layers: bfloat16 on {device} vs "
          f"float32 on cpu: max relative logit difference {rel:.1e} (tolerance 5e-2), same prediction in "
          f"{agree:.0%} of (prompt, layer) rows -> {'ok' if ok else 'FAILED'}")
    return ok


def training(device: str, steps: int) -> bool:
    from iclab.grammar import sample_corpus
    from iclab.grammar import EOS, PAD, ROLES, World, WorldConfig
    from iclab.models import ModelSize, TrainConfig, build_causal_lm, count_params, train_causal_lm

    world = World(WorldConfig())
    tokens = sample_corpus(world.grammar, 16 * 128 * steps + 1000, 0, roles=ROLES).ids
    model = build_causal_lm(ModelSize(d_model=128, n_layers=4), len(world.vocab), seed=0,
                            pad_token_id=world.token_id[PAD], eos_token_id=world.token_id[EOS],
                            bos_token_id=world.token_id[EOS]).to(device)
    cfg = TrainConfig(steps=steps, batch_size=16, seq_len=128, lr=2e-3, warmup_steps=10, log_every=steps,
                      compile=False, autocast="bfloat16")
    hist = train_causal_lm(model, np.asarray(tokens), cfg)
    ok = bool(np.isfinite(hist.loss[-1])) and hist.loss[-1] < np.log(len(world.vocab))
    print(f"grammar training, d128-L4 ({count_params(model):,} parameters), {steps} steps of 16x128 tokens, "
          f"bfloat16 autocast on {device}: loss {hist.loss[-1]:.3f}, {hist.tokens / hist.seconds:,.0f} tokens/s "
          f"-> {'ok' if ok else 'FAILED'}")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=200, help="training steps of check 3")
    args = ap.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "CPU"
    print(f"iclab GPU check on {device} ({name}), torch {torch.__version__}, {len(TINY_FAMILIES)} tiny families known")
    t0 = time.perf_counter()
    results = [doctor(device), bf16_sweep(device), training(device, args.steps)]
    print(f"{sum(results)} of 3 checks passed in {time.perf_counter() - t0:.0f} s")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
