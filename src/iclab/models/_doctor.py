"""`iclab doctor MODEL`: does iclab read and write this architecture correctly? Seconds on CPU.

Each check is an identity the intervention layer relies on, run on the real model with a few short
prompts; a failing check names what would go wrong (a silently wrong patch, padding that shifts the
answer, a cache that disagrees with the full pass) before hours are spent on the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._architecture import architecture_map, attention_out, decoder_blocks, residual_to_logits
from ._forward import Batch, forward_last
from ._hooks import _hidden, patch_residual, record_residual
from ._loading import LoadedModel

PROMPTS = ["example:go->went\nexample:see->saw\nexample:run->", "a->b\nc->", "hello there"]
# relative tolerance of logits that should agree up to rounding (padding, cache, head sums), by dtype
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def _batch(lm: LoadedModel, texts: list[str]) -> Batch:
    enc = lm.tokenizer(texts, return_tensors="pt", padding=True)
    return Batch(enc["input_ids"], enc["attention_mask"])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-6))


def _dtype(lm: LoadedModel) -> torch.dtype:
    return next(lm.model.parameters()).dtype


def check_blocks(lm: LoadedModel) -> tuple[bool, str]:
    amap = architecture_map(lm.model)
    how = "by name" if amap.blocks_by_name else "only by guessing (the longest module list): not a known architecture"
    return amap.blocks_by_name, f"{amap.n_layers} blocks at {amap.blocks!r}, found {how}"


def check_logit_lens(lm: LoadedModel) -> tuple[bool, str]:
    """The final norm and unembedding applied to the last block's output give the model's logits."""
    amap = architecture_map(lm.model)
    batch = _batch(lm, PROMPTS)
    with record_residual(lm.model, layers=[amap.n_layers - 1]) as rec:
        logits, _ = forward_last(lm.model, batch)
    lens = residual_to_logits(lm.model, rec.states[:, 0]).float().cpu()
    err = _rel(lens, logits)
    return amap.final_norm is not None and err <= TOLERANCE[_dtype(lm)], \
        f"final norm {amap.final_norm!r}; relative difference {err:.1e}"


def check_attention_out(lm: LoadedModel) -> tuple[bool, str]:
    amap = architecture_map(lm.model)
    if amap.attn_out is None:
        return False, "no attention output projection at a known name in the blocks"
    ok = amap.n_heads is not None and amap.head_dim is not None
    return ok, f"{amap.attn_out!r} in every block; {amap.n_heads} heads × {amap.head_dim} dims"


def check_patch_identity(lm: LoadedModel) -> tuple[bool, str]:
    """Writing back every block's own last-token state leaves the logits bit-identical."""
    batch = _batch(lm, PROMPTS)
    with record_residual(lm.model) as rec:
        clean, _ = forward_last(lm.model, batch)
    bad = []
    for layer in range(rec.states.shape[1]):
        states = rec.states[:, layer].to(_dtype(lm))
        with patch_residual(lm.model, states, layers=layer):
            patched, _ = forward_last(lm.model, batch)
        if not torch.equal(patched, clean):
            bad.append(layer)
    return not bad, "identical at every layer" if not bad else f"logits changed at layers {bad}"


def check_padding(lm: LoadedModel) -> tuple[bool, str]:
    """A prompt's last-token logits are the same alone and left-padded in a batch with longer prompts."""
    together, _ = forward_last(lm.model, _batch(lm, PROMPTS))
    alone = torch.cat([forward_last(lm.model, _batch(lm, [p]))[0] for p in PROMPTS])
    err = _rel(together, alone)
    return err <= TOLERANCE[_dtype(lm)], f"relative difference {err:.1e} (tolerance {TOLERANCE[_dtype(lm)]:.0e})"


def check_cache(lm: LoadedModel) -> tuple[bool, str]:
    """The prefix through the KV cache, then the last token alone, equals one full pass."""
    batch = _batch(lm, PROMPTS)
    full, _ = forward_last(lm.model, batch)
    _, cache = forward_last(lm.model, Batch(batch.input_ids[:, :-1], batch.attention_mask[:, :-1]), use_cache=True)
    cached, _ = forward_last(lm.model, Batch(batch.input_ids[:, -1:], batch.attention_mask), past_key_values=cache)
    err = _rel(cached, full)
    return err <= TOLERANCE[_dtype(lm)], f"relative difference {err:.1e}"


def check_patch_position(lm: LoadedModel) -> tuple[bool, str]:
    """A patch at the last position of block L changes that position only: the states of every earlier
    real (unpadded) position, at every later block, are bit-identical (so the cache decoding continues from is intact)."""
    model, batch = lm.model, _batch(lm, PROMPTS)
    blocks = decoder_blocks(model)
    layer = len(blocks) // 2
    seen: dict[str, list[torch.Tensor]] = {"clean": [], "patched": []}

    def recorder(key: str) -> Callable:
        return lambda module, args, output: seen[key].append(_hidden(output).detach().float().cpu().clone())

    def run(key: str, vectors: torch.Tensor | None) -> None:
        handles = [b.register_forward_hook(recorder(key)) for b in blocks[layer:]]
        try:
            if vectors is None:
                forward_last(model, batch)
            else:
                with patch_residual(model, vectors, layers=layer) as patch:
                    forward_last(model, batch)
                assert patch.edited == len(PROMPTS)
        finally:
            for h in handles:
                h.remove()

    width = model.get_input_embeddings().weight.shape[1]
    run("clean", None)
    run("patched", torch.randn(len(PROMPTS), width, generator=torch.Generator().manual_seed(0)) * 10)
    real = batch.attention_mask[:, :-1].bool()  # padding rows may attend anywhere; they are never read
    earlier = all(torch.equal(c[:, :-1][real], p[:, :-1][real]) for c, p in zip(seen["clean"], seen["patched"]))
    last = not torch.equal(seen["clean"][-1][:, -1], seen["patched"][-1][:, -1])
    return earlier and last, (f"block {layer}, last position: earlier positions {'unchanged' if earlier else 'CHANGED'}, "
                              f"the patched position {'changed' if last else 'UNCHANGED'}")


def check_head_sum(lm: LoadedModel) -> tuple[bool, str]:
    """Each head's output alone through the attention output projection (the others zeroed), summed (with the
    bias once), is the projection's output: head-level interventions write exactly what the model computes."""
    amap = architecture_map(lm.model)
    if amap.attn_out is None or not amap.n_heads:
        return False, "no attention output projection or head count found"
    outs: dict[int, torch.Tensor] = {}  # block -> its projection's output
    sums: dict[int, torch.Tensor] = {}  # block -> the heads' outputs alone through it, summed (bias once)

    def hook_for(layer: int):
        def hook(module, args, out):
            if layer in outs:  # the calls below re-enter this hook
                return
            outs[layer] = out.detach().float().cpu()
            x = args[0].unflatten(-1, (amap.n_heads, -1))  # (B, T, H, d)
            # Each head alone through the module itself (an offloaded projection loads its weights only
            # when called), minus the bias every call adds: their sum must be the projection's output.
            bias = module(torch.zeros_like(args[0])).detach().float().cpu()
            sums[layer] = bias + sum(module((x * (torch.arange(amap.n_heads, device=x.device) == h)[:, None])
                                            .flatten(-2)).detach().float().cpu() - bias for h in range(amap.n_heads))
        return hook

    # one forward pass with every block's projection hooked, not a pass per block (bench/bench_doctor.py)
    handles = [attention_out(lm.model, layer).register_forward_hook(hook_for(layer)) for layer in range(amap.n_layers)]
    try:
        forward_last(lm.model, _batch(lm, PROMPTS))
    finally:
        for handle in handles:
            handle.remove()
    if len(sums) != amap.n_layers:
        return False, f"the attention output projection ran in {len(sums)} of {amap.n_layers} blocks"
    worst = max(_rel(sums[layer], outs[layer]) for layer in sums)
    return worst <= TOLERANCE[_dtype(lm)], f"{amap.n_heads} heads per block; relative difference {worst:.1e}"


CHECKS: list[tuple[str, Callable[[LoadedModel], tuple[bool, str]]]] = [
    ("decoder blocks found by name", check_blocks),
    ("final norm + unembedding = the model's logits", check_logit_lens),
    ("attention output projection found by name", check_attention_out),
    ("patching a block's own state leaves the logits identical", check_patch_identity),
    ("left padding = no padding (last-token logits)", check_padding),
    ("KV cache = full pass", check_cache),
    ("a patch changes only the intended position", check_patch_position),
    ("per-head outputs sum to the attention output", check_head_sum),
]


@torch.no_grad()
def diagnose(lm: LoadedModel) -> list[Check]:
    """Run every check; an exception inside a check fails that check with its first line."""
    out = []
    for name, fn in CHECKS:
        try:
            ok, detail = fn(lm)
        except Exception as err:  # noqa: BLE001 - a crash is a failed check, reported, not raised
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            ok, detail = False, f"{type(err).__name__}: {first}"
        out.append(Check(name, bool(ok), detail))
    return out
