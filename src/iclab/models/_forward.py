"""Batched forward passes with left padding and the positions a single unpadded prompt would get."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) left-padded
    attention_mask: torch.Tensor  # (B, T) 1 for real tokens

    @property
    def position_ids(self) -> torch.Tensor:
        """0, 1, 2, ... from each row's first real token, so padding does not shift positions
        (which matters for absolute-position models such as GPT-2)."""
        return (self.attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def encode(tokenizer, texts: list[str]) -> Batch:
    """Tokenize and left-pad, so column -1 is every row's last token."""
    assert tokenizer.padding_side == "left", "use a tokenizer prepared by iclab.models (left padding)"
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    return Batch(enc["input_ids"], enc["attention_mask"])


@functools.cache
def _accepts_logits_to_keep(model_cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_cls.forward).parameters


@torch.no_grad()
def forward_last(model: nn.Module, batch: Batch, past_key_values=None, use_cache: bool = False):
    """One forward pass; returns (logits at the last position (B, V), the cache or None).

    With `past_key_values`, `batch` holds only the new tokens but `batch.attention_mask` must
    cover cache + new tokens, as transformers expects; positions continue from the cache.
    """
    n_new = batch.input_ids.shape[1]
    device = model.get_input_embeddings().weight.device  # a model split over GPUs takes inputs on its first
    positions = batch.position_ids[:, -n_new:]
    kwargs = {"logits_to_keep": 1} if _accepts_logits_to_keep(type(model)) else {}
    out = model(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        position_ids=positions.to(device),
        past_key_values=past_key_values,
        use_cache=use_cache,
        **kwargs,
    )
    return out.logits[:, -1].float().cpu(), (out.past_key_values if use_cache else None)  # (B, V) on the CPU
