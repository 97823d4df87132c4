"""Tiny randomly initialised causal LMs of many architectures, with a character tokenizer, built in
process from `transformers` configs (no downloads).

They exist to check the intervention layer on every family before a user spends hours on a real
model (`iclab doctor tiny:llama`), in tests, and on a GPU machine that cannot hold the bundled LMs.
The families cover grouped-query attention (Llama, Mistral, Qwen2/3, Gemma, Granite, OLMo2),
parallel attention/MLP blocks (GPT-J, GPT-NeoX, Falcon, Phi), and learned (GPT-2, OPT, GPT-Neo)
vs rotary (most others) vs ALiBi (Bloom) positions.
"""

from __future__ import annotations

from pathlib import Path

import torch

from iclab.runtime import IclabError

# The character tokenizer's vocabulary: special tokens first (ids 0-3), then one token per character.
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
CHARS = [chr(c) for c in range(32, 127)] + ["\n"] + list("éèàñ")  # printable ASCII, newline, accents
VOCAB = len(SPECIALS) + len(CHARS)  # the tiny models' vocabulary covers the tokenizer's exactly

_LLAMA_LIKE = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2)
# model_type -> config fields besides the vocabulary and layer count (hidden size 32, 4 heads everywhere)
TINY_FAMILIES: dict[str, dict] = {
    "llama": _LLAMA_LIKE,  # GQA, rotary
    "mistral": dict(_LLAMA_LIKE, sliding_window=64),
    "qwen2": _LLAMA_LIKE,
    "qwen3": dict(_LLAMA_LIKE, head_dim=8),  # q/k norms
    "gemma2": dict(_LLAMA_LIKE, head_dim=8, sliding_window=4, query_pre_attn_scalar=8),  # soft-capped logits
    "gemma3_text": dict(_LLAMA_LIKE, head_dim=8, sliding_window=4),
    "phi3": dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2),  # fused qkv
    "olmo2": _LLAMA_LIKE,  # post-norm blocks
    "stablelm": dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=4,
                     partial_rotary_factor=0.5),
    "granite": _LLAMA_LIKE,  # residual and logit multipliers
    "gpt2": dict(n_embd=32, n_head=4, n_positions=256),  # learned positions, Conv1D projections
    "gpt_neo": dict(hidden_size=32, num_heads=4, max_position_embeddings=256, attention_types=[[["global", "local"], 2]],
                    window_size=8),
    "opt": dict(hidden_size=32, ffn_dim=64, num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=256),
    "gpt_neox": dict(hidden_size=32, intermediate_size=64, num_attention_heads=4),  # parallel attention/MLP
    "gptj": dict(n_embd=32, n_head=4, rotary_dim=4, n_positions=256),  # parallel attention/MLP
    "falcon": dict(hidden_size=32, num_attention_heads=4, new_decoder_architecture=False, multi_query=True,
                   parallel_attn=True, alibi=False),  # multi-query, parallel
    "phi": dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, partial_rotary_factor=0.5),  # parallel
    "bloom": dict(hidden_size=32, n_head=4),  # ALiBi positions, fused qkv
}
_LAYER_FIELD = {"gpt2": "n_layer", "gptj": "n_layer", "bloom": "n_layer", "gpt_neo": "num_layers"}


def tiny_model(family: str, n_layers: int = 3, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised model of `family` (a transformers model_type in TINY_FAMILIES)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if family not in TINY_FAMILIES:
        raise IclabError(f"no tiny model for {family!r}; choose one of {', '.join(TINY_FAMILIES)}")
    fields = dict(TINY_FAMILIES[family])
    if family == "gpt_neo":
        fields["attention_types"] = [[["global", "local"], (n_layers + 1) // 2]]
        fields["attention_layers"] = (["global", "local"] * n_layers)[:n_layers]
    fields[_LAYER_FIELD.get(family, "num_hidden_layers")] = n_layers
    config = AutoConfig.for_model(family, vocab_size=VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2, **fields)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


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


def save_tiny(family: str, directory: Path, n_layers: int = 3, seed: int = 0) -> Path:
    """Write a tiny model and its tokenizer as a local HuggingFace directory (what `load_model` reads)."""
    directory = Path(directory)
    tiny_model(family, n_layers, seed).save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory
