"""Which attention heads carry the task (Todd et al. 2024, function vectors): causal mediation per head.

* `mean_head_activations`: each head's output at the last token, averaged over clean ICL prompts.
* `indirect_effects`: on corrupted prompts (shuffled labels), the gain in the correct answer's first-token
  probability when one head's output at the last token is set to its task mean, for every (layer, head).
  Each prompt's prefix runs once with a KV cache; then only the last token runs, one row per
  (prompt, layer, head), so all heads cost single-token passes (`indirect_effects_naive` reruns the whole
  prompt per head: the reference for tests and the benchmark).
* `function_vector`: the sum of the top heads' mean contributions to the residual stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from iclab.models import Batch, forward_last
from iclab.models import head_contribution, head_geometry, patch_heads, record_heads
from iclab.runtime import IclabError

from ._method import TaskVectorRunner


@torch.no_grad()
def mean_head_activations(runner: TaskVectorRunner, prompts: Sequence[str]) -> torch.Tensor:
    """Every head's output at the last token, averaged over `prompts`: (n_layers, n_heads, head_dim)."""
    total: torch.Tensor | None = None

    def run(idx: list[int], batch: Batch) -> None:
        nonlocal total
        with record_heads(runner.model) as rec:
            forward_last(runner.model, batch)
        runner._count(batch)
        s = rec.values.sum(0)
        total = s if total is None else total + s

    runner._each_batch(prompts, run)
    assert total is not None
    return total / len(prompts)


def _answer_probs(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), -1).gather(1, answers[:, None])[:, 0]


@torch.no_grad()
def indirect_effects(runner: TaskVectorRunner, prompts: Sequence[str], answers: torch.Tensor, means: torch.Tensor,
                     heads_per_pass: int | None = None) -> torch.Tensor:
    """IE[p, l, h] = P(answer_p | prompt_p, head (l, h) at the last token set to means[l, h]) − P(answer_p | prompt_p):
    (P, n_layers, n_heads). `answers` are the correct first-token ids (P,)."""
    n_layers, n_heads, head_dim = head_geometry(runner.model)
    if means.shape != (n_layers, n_heads, head_dim):
        raise IclabError(f"mean head activations of shape {tuple(means.shape)} do not fit this model "
                         f"({n_layers} layers × {n_heads} heads × {head_dim})")
    pairs = torch.tensor([(l, h) for l in range(n_layers) for h in range(n_heads)])  # (LH, 2)
    chunk = heads_per_pass or max(1, runner.batch_size * 8)
    out = torch.empty(len(prompts), n_layers, n_heads)

    def run(idx: list[int], batch: Batch) -> None:
        prefix = Batch(batch.input_ids[:, :-1], batch.attention_mask[:, :-1])
        _, cache = forward_last(runner.model, prefix, use_cache=True)
        runner._count(prefix)
        clean, _ = forward_last(runner.model, Batch(batch.input_ids[:, -1:], batch.attention_mask),
                                past_key_values=_copy(cache))
        runner._count(batch, n_new=1)
        ans = answers[idx]
        base = _answer_probs(clean, ans)  # (B,)
        for start in range(0, len(pairs), max(1, chunk // len(idx))):
            part = pairs[start:start + max(1, chunk // len(idx))]  # (K, 2)
            K = len(part)
            rep = _copy(cache)
            rep.batch_repeat_interleave(K)  # rows: prompt-major, head-minor
            last = Batch(batch.input_ids[:, -1:].repeat_interleave(K, 0), batch.attention_mask.repeat_interleave(K, 0))
            layers, heads = part[:, 0].repeat(len(idx)), part[:, 1].repeat(len(idx))
            with patch_heads(runner.model, means[layers, heads], layers, heads):
                logits, _ = forward_last(runner.model, last, past_key_values=rep)
            runner._count(last, n_new=1)
            p = _answer_probs(logits, ans.repeat_interleave(K)).view(len(idx), K) - base[:, None]
            out[torch.tensor(idx)[:, None], part[None, :, 0], part[None, :, 1]] = p

    runner._each_batch(prompts, run)
    return out


def _copy(cache):
    """A KV cache of its own (repeating or extending one in place must not touch the shared prefix)."""
    import copy

    return copy.deepcopy(cache)


@torch.no_grad()
def indirect_effects_naive(runner: TaskVectorRunner, prompts: Sequence[str], answers: torch.Tensor,
                           means: torch.Tensor, n_layers: int | None = None) -> torch.Tensor:
    """The reference: the whole prompt once unpatched and once per (layer, head), for the first `n_layers`
    layers (default all). (P, n_layers, n_heads)."""
    all_layers, n_heads, _ = head_geometry(runner.model)
    n_layers = all_layers if n_layers is None else n_layers
    out = torch.empty(len(prompts), n_layers, n_heads)

    def run(idx: list[int], batch: Batch) -> None:
        clean, _ = forward_last(runner.model, batch)
        runner._count(batch)
        base = _answer_probs(clean, answers[idx])
        for l in range(n_layers):
            for h in range(n_heads):
                B = len(idx)
                with patch_heads(runner.model, means[l, h].expand(B, -1), [l] * B, [h] * B):
                    logits, _ = forward_last(runner.model, batch)
                runner._count(batch)
                out[idx, l, h] = _answer_probs(logits, answers[idx]) - base

    runner._each_batch(prompts, run)
    return out


def top_heads(aie: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """The k (layer, head) pairs of largest average indirect effect, largest first; aie is (n_layers, n_heads)."""
    n = aie.numel()
    if not 1 <= k <= n:
        raise IclabError(f"k = {k} top heads: this model has {n} heads ({aie.shape[0]} layers × {aie.shape[1]}); "
                         f"pass 1 <= k <= {n}")
    flat = torch.argsort(aie.flatten(), descending=True, stable=True)[:k]
    return [(int(i) // aie.shape[1], int(i) % aie.shape[1]) for i in flat]


def function_vector(runner: TaskVectorRunner, means: torch.Tensor, heads: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Σ over `heads` of each head's mean output through the attention output projection (and, in blocks that
    normalise the attention output, that norm linearised at the layer's mean output): (D,)."""
    return torch.stack([head_contribution(runner.model, l, h, means[l, h], means[l]) for l, h in heads]).sum(0)
