"""Tiny decoder-only transformers built from scratch (random init), and their size and cost.

The models are stock HuggingFace classes (Llama or GPT-2), so everything else in `iclab.models`
(hooks, patching, forward passes) works on them unchanged. Nothing is downloaded.
"""

from __future__ import annotations

import os
from typing import Literal

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never touch a hub

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from iclab.runtime import IclabError


class ModelSize(BaseModel):
    """The shape of a from-scratch model; `name` ("d128-L4") identifies it in tables and paths."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    d_model: int = Field(gt=0, description="Residual stream width d; must be divisible by the number of heads.")
    n_layers: int = Field(gt=0, description="Number of transformer blocks.")
    n_heads: int | None = Field(None, gt=0, description="Attention heads; None: max(1, d_model // 32), i.e. head size 32.")
    arch: Literal["llama", "gpt2"] = Field(
        "llama", description="llama: RoPE, RMSNorm, SwiGLU MLP; gpt2: learned positions, LayerNorm, GELU MLP."
    )
    context: int = Field(256, gt=0, description="Maximum sequence length (GPT-2's learned position table size).")

    @model_validator(mode="after")
    def _check_heads(self) -> ModelSize:
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by {self.heads} heads; set n_heads to a divisor")
        if self.arch == "llama" and (self.d_model // self.heads) % 2:
            raise ValueError(f"RoPE needs an even head size, got d_model/heads = {self.d_model // self.heads}")
        return self

    @property
    def heads(self) -> int:
        """The number of attention heads, with the default resolved."""
        return self.n_heads or max(1, self.d_model // 32)

    @property
    def name(self) -> str:
        return f"d{self.d_model}-L{self.n_layers}"


def build_causal_lm(
    size: ModelSize,
    vocab_size: int,
    *,
    seed: int,
    pad_token_id: int | None = None,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
):
    """A randomly initialised float32 causal LM (HF's own init), in eval mode.

    Tied input/output embeddings, MLP width 4d, every dropout 0, SDPA attention. The init is
    seeded by `seed` inside `torch.random.fork_rng`, so the caller's global RNG is untouched.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if vocab_size <= 0:
        raise IclabError(f"vocab_size must be positive, got {vocab_size}")
    d, h = size.d_model, size.heads
    special = {"pad_token_id": pad_token_id, "bos_token_id": bos_token_id, "eos_token_id": eos_token_id}
    if size.arch == "llama":
        config = AutoConfig.for_model(
            "llama", vocab_size=vocab_size, hidden_size=d, intermediate_size=4 * d, num_hidden_layers=size.n_layers,
            num_attention_heads=h, num_key_value_heads=h, max_position_embeddings=size.context,
            hidden_act="silu", attention_dropout=0.0, attention_bias=False, mlp_bias=False,
            tie_word_embeddings=True, **special,
        )
    else:
        config = AutoConfig.for_model(
            "gpt2", vocab_size=vocab_size, n_embd=d, n_inner=4 * d, n_layer=size.n_layers, n_head=h,
            n_positions=size.context, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
            tie_word_embeddings=True, **special,
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")
    return model.eval()


def _embedding_tables(model: nn.Module) -> list[nn.Parameter]:
    """Token and position embedding tables (every nn.Embedding), each once."""
    seen: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            seen.setdefault(id(module.weight), module.weight)
    return list(seen.values())


def count_params(model: nn.Module, *, embeddings: bool = True) -> int:
    """Parameter count, tied tensors once; embeddings=False drops the token and
    position embedding tables (the usual "non-embedding" N of scaling laws)."""
    total = sum(p.numel() for p in model.parameters())
    if not embeddings:
        total -= sum(p.numel() for p in _embedding_tables(model))
    return total


def train_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward), the standard estimate:

        6 · N_compute + 6 · n_layers · seq_len · d_model

    N_compute = non-embedding parameters + vocab · d when the output head is tied to the token
    embeddings (the head is a real V×d matmul; the embedding lookup is not). 6 = 2 (multiply-add)
    × 3 (forward, and backward for inputs and weights). Attention scores: QKᵀ and AV cost
    2·T·d each per token and layer in the forward pass; 12·L·T·d for forward + backward,
    halved because the mask is causal. Norms, activations and the softmax are not counted.
    """
    config = model.config
    d, n_layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    n_compute = count_params(model, embeddings=False)
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and head.weight is embed.weight:
        n_compute += vocab * d
    return 6.0 * n_compute + 6.0 * n_layers * seq_len * d
