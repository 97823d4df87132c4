"""Tiny random models for the tests: the package's builders (iclab.models._tiny), with a batch helper."""

from __future__ import annotations

import torch

from iclab.models._tiny import CHARS, SPECIALS, TINY_FAMILIES, VOCAB, tiny_model, tiny_tokenizer

ARCHS = ["llama", "gpt2", "gpt_neox", "qwen2", "gemma3_text"]  # the five the method tests sweep

__all__ = ["ARCHS", "CHARS", "SPECIALS", "TINY_FAMILIES", "VOCAB", "padded_batch", "tiny_lm", "tiny_model",
           "tiny_tokenizer"]


def padded_batch(seed: int = 0, lengths=(7, 4, 6)):
    """Random token ids, left-padded to the longest row, with the matching attention mask."""
    from iclab.models import Batch

    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.zeros(len(lengths), T, dtype=torch.long)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, T - n:] = torch.randint(3, VOCAB, (n,), generator=g)
        mask[b, T - n:] = 1
    return Batch(ids, mask)


def tiny_lm(arch: str, n_layers: int = 3, seed: int = 0):
    """A tiny random model with the character tokenizer, prepared as `load_model` prepares real ones."""
    from iclab.models import LoadedModel, prepare_tokenizer

    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    return LoadedModel(name=f"tiny-{arch}", model=tiny_model(arch, n_layers, seed), tokenizer=tok, source="test")
