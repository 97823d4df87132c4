"""Where the decoder blocks, the final norm and the unembedding live in each architecture.

Known module paths come first (Llama, Qwen2, Gemma-3, GPT-2, GPT-NeoX); anything else falls back
to the longest `nn.ModuleList` in the model, the heuristic of the task-vector paper's code.
"""

from __future__ import annotations

import torch
from torch import nn

from iclab.runtime.errors import IclabError

_BLOCK_PATHS = (
    "model.layers",  # Llama, Qwen2, Gemma-3 (text), Mistral
    "model.language_model.layers",  # Gemma-3 multimodal wrapper
    "transformer.h",  # GPT-2, GPT-J
    "gpt_neox.layers",  # GPT-NeoX, Pythia
    "model.decoder.layers",  # OPT
)
_NORM_PATHS = (
    "model.norm",
    "model.language_model.norm",
    "transformer.ln_f",
    "gpt_neox.final_layer_norm",
    "model.decoder.final_layer_norm",
)


def _get(model: nn.Module, path: str) -> nn.Module | None:
    module: nn.Module | None = model
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's decoder blocks, in order; block l's output is the residual stream after layer l."""
    for path in _BLOCK_PATHS:
        blocks = _get(model, path)
        if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
            return blocks
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise IclabError(f"{type(model).__name__}: no decoder blocks found (no nn.ModuleList in the model)")
    return max(lists, key=len)


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
    logits = head(final_norm(model)(states.to(head.weight.dtype)))
    cap = getattr(model.config, "final_logit_softcapping", None)  # Gemma: tanh soft cap (monotone)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
