"""Tiny randomly initialised causal LMs of several architectures, and a character-level tokenizer
that covers their vocabulary, all built in-process (no downloads)."""

from __future__ import annotations

import torch

ARCHS = ["llama", "gpt2", "gpt_neox", "qwen2", "gemma3_text"]

# The character tokenizer's vocabulary: special tokens first (ids 0-3), then one token per character.
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
CHARS = [chr(c) for c in range(32, 127)] + ["\n"] + list("éèàñ")  # printable ASCII, newline, accents
VOCAB = len(SPECIALS) + len(CHARS)  # the tiny models' vocabulary covers the tokenizer's exactly


def tiny_model(arch: str, n_layers: int = 3, seed: int = 0) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    common = dict(vocab_size=VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    sizes = {
        "llama": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2),
        "qwen2": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2),
        "gemma3_text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers, num_attention_heads=4,
                            num_key_value_heads=2, head_dim=8, sliding_window=4),
        "gpt2": dict(n_embd=32, n_layer=n_layers, n_head=4, n_positions=256),
        "gpt_neox": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers, num_attention_heads=4),
    }[arch]
    config = AutoConfig.for_model(arch, **common, **sizes)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


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


def tiny_tokenizer():
    """A character-level `PreTrainedTokenizerFast`: every character of CHARS is one token (anything
    else is <unk>), <pad>=0, <bos>=1 (prepended, as Llama's tokenizer does), <eos>=2, <unk>=3.
    Decoding joins characters without inserting spaces, so decode([id]) is that id's character."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every char, \n included
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )


def tiny_lm(arch: str, n_layers: int = 3, seed: int = 0):
    """A tiny random model with the character tokenizer, prepared as `load_model` prepares real ones."""
    from iclab.models import LoadedModel, prepare_tokenizer

    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    return LoadedModel(name=f"tiny-{arch}", model=tiny_model(arch, n_layers, seed), tokenizer=tok, source="test")
