"""Where the decoder blocks, the final norm, the unembedding and each block's attention output
projection live in each architecture.

Modules are found by their names in `transformers` (18 families are checked by `iclab doctor`
and the tests). A model whose blocks are not at a known path falls back to the longest
`nn.ModuleList`, the heuristic of the task-vector paper's code, and says so once on stderr;
`iclab doctor` reports such a model as not mapped.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import nn

from iclab.runtime import IclabError

_BLOCK_PATHS = (
    "model.layers",  # Llama, Mistral, Qwen2/3, Gemma 2/3 (text), Phi-3, Phi, OLMo2, StableLM, Granite
    "model.language_model.layers",  # Gemma-3 multimodal wrapper
    "transformer.h",  # GPT-2, GPT-J, GPT-Neo, Falcon, Bloom
    "gpt_neox.layers",  # GPT-NeoX, Pythia
    "model.decoder.layers",  # OPT
)
_NORM_PATHS = (
    "model.norm",
    "model.language_model.norm",
    "model.final_layernorm",  # Phi
    "transformer.ln_f",
    "gpt_neox.final_layer_norm",
    "model.decoder.final_layer_norm",
)
# The attention output projection inside a block: its input is the heads' outputs side by side
# (B, T, n_heads * head_dim), head-major, so head h's contribution is its slice through the weight.
_ATTN_OUT_PATHS = (
    "self_attn.o_proj",  # Llama family, Gemma, Qwen, Phi-3, OLMo2, StableLM, Granite
    "self_attn.dense",  # Phi
    "self_attn.out_proj",  # OPT
    "attn.c_proj",  # GPT-2 (Conv1D: weight is (in, out))
    "attn.out_proj",  # GPT-J
    "attn.attention.out_proj",  # GPT-Neo
    "attention.dense",  # GPT-NeoX
    "self_attention.dense",  # Falcon, Bloom
)
_HEADS_FIELDS = ("num_attention_heads", "n_head", "num_heads")
_warned: set[str] = set()


def _get(model: nn.Module, path: str) -> nn.Module | None:
    module: nn.Module | None = model
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


@dataclass(frozen=True)
class ArchitectureMap:
    """Where iclab reads and writes in one model, and how each part was found."""

    blocks: str  # path of the decoder blocks' ModuleList, e.g. "model.layers"
    blocks_by_name: bool  # False: the longest-ModuleList fallback found them
    n_layers: int
    final_norm: str | None  # None: no final norm found (identity)
    attn_out: str | None  # path inside a block of the attention output projection; None: not found
    n_heads: int | None
    head_dim: int | None


def _blocks_path(model: nn.Module) -> tuple[str, bool]:
    for path in _BLOCK_PATHS:
        blocks = _get(model, path)
        if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
            return path, True
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise IclabError(f"{type(model).__name__}: no decoder blocks found (no nn.ModuleList in the model); "
                         "iclab cannot read this architecture; run `iclab doctor` on it for details")
    return max(lists, key=lambda nm: len(nm[1]))[0], False


def architecture_map(model: nn.Module) -> ArchitectureMap:
    """Locate every part the intervention layer uses; nothing is guessed silently."""
    blocks_path, by_name = _blocks_path(model)
    blocks = _get(model, blocks_path)
    norm = next((p for p in _NORM_PATHS if _get(model, p) is not None), None)
    attn = next((p for p in _ATTN_OUT_PATHS if all(_get(b, p) is not None for b in blocks)), None)
    config = getattr(model, "config", None)
    config = getattr(config, "get_text_config", lambda: config)() if config is not None else None
    n_heads = next((int(getattr(config, f)) for f in _HEADS_FIELDS if isinstance(getattr(config, f, None), int)), None)
    head_dim = None
    if attn is not None and n_heads:
        width = _in_features(_get(blocks[0], attn))
        head_dim = width // n_heads if width and width % n_heads == 0 else None
    return ArchitectureMap(blocks_path, by_name, len(blocks), norm, attn, n_heads, head_dim)


def _in_features(proj: nn.Module) -> int | None:
    if isinstance(proj, nn.Linear):
        return proj.in_features
    weight = getattr(proj, "weight", None)  # GPT-2's Conv1D: (in, out)
    return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else None


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's decoder blocks, in order; block l's output is the residual stream after layer l."""
    path, by_name = _blocks_path(model)
    if not by_name and type(model).__name__ not in _warned:
        _warned.add(type(model).__name__)
        print(f"iclab: warning: {type(model).__name__} is not a known architecture; using its longest module list "
              f"{path!r} as the decoder blocks (check with `iclab doctor`)", file=sys.stderr)
    return _get(model, path)


def attention_out(model: nn.Module, layer: int) -> nn.Module:
    """Block `layer`'s attention output projection (its input is every head's output side by side)."""
    amap = architecture_map(model)
    if amap.attn_out is None:
        raise IclabError(f"{type(model).__name__}: no attention output projection at a known name in its blocks "
                         f"(looked for {', '.join(_ATTN_OUT_PATHS)}); head-level work is not available for it")
    return _get(decoder_blocks(model)[layer], amap.attn_out)


def final_norm(model: nn.Module) -> nn.Module:
    """The norm applied to the last block's output before the unembedding (identity if none)."""
    for path in _NORM_PATHS:
        norm = _get(model, path)
        if norm is not None:
            return norm
    return nn.Identity()


@torch.no_grad()
def residual_to_logits(model: nn.Module, states: torch.Tensor) -> torch.Tensor:
    """Project residual-stream states (..., D) to vocabulary logits (..., V): final norm, then unembed."""
    head = model.get_output_embeddings()
    norm = final_norm(model)
    weight = next(norm.parameters(), head.weight)
    logits = head(norm(states.to(device=weight.device, dtype=head.weight.dtype)).to(head.weight.device))
    scale = getattr(model.config, "logits_scaling", None)  # Granite divides the logits by a constant
    if scale:
        logits = logits / scale
    cap = getattr(model.config, "final_logit_softcapping", None)  # Gemma: tanh soft cap (monotone)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
