"""Real causal LMs, loaded offline, an intervention layer over PyTorch forward hooks, and tiny
causal LMs trained from scratch on a token corpus.

    lm = load_model("smollm2-135m")                 # or any local HuggingFace causal-LM directory
    batch = encode(lm.tokenizer, ["example:go->"])
    with record_residual(lm.model) as rec:           # every block's output at the last token
        forward_last(lm.model, batch)
    rec.states                                       # (B, n_layers, D)
    with patch_residual(lm.model, vectors, layers=12):   # replace the last token's state at block 12
        logits, _ = forward_last(lm.model, batch)

    model = build_causal_lm(ModelSize(d_model=128, n_layers=4), vocab_size=64, seed=0)
    history = train_causal_lm(model, tokens, TrainConfig(epochs=2), ckpt_dir=run / "ckpt")  # resumable
"""

import os as _os

# cuBLAS is deterministic only with a fixed workspace, which must be chosen before CUDA starts
# (train_causal_lm turns deterministic algorithms on; harmless on CPU).
_os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

from ._architecture import (ArchitectureMap, architecture_map, attention_out, decoder_blocks, final_norm,
                            residual_to_logits)
from ._device import DTYPES, DeviceConfig, input_device, resolve_device, resolve_dtype, validate_device
from ._doctor import Check, diagnose
from ._heads import HeadRecording, attention_post_norm, head_contribution, head_geometry, patch_heads, record_heads
from ._forward import Batch, encode, forward_last
from ._hooks import Patch, Recording, patch_residual, record_residual
from ._loading import BUNDLED_MODELS, BundledModel, LoadedModel, cache_dir, load_model, prepare_tokenizer
from ._tiny import TINY_FAMILIES, save_tiny, tiny_model, tiny_tokenizer
from ._scratch import ModelSize, build_causal_lm, count_params, train_flops_per_token
from ._training import TokenWindows, TrainConfig, TrainHistory, load_weights, lr_at, train_causal_lm

__all__ = [
    "ArchitectureMap", "BUNDLED_MODELS", "Batch", "BundledModel", "Check", "DTYPES", "DeviceConfig", "HeadRecording",
    "LoadedModel", "ModelSize", "Patch", "Recording", "TINY_FAMILIES", "TokenWindows", "TrainConfig", "TrainHistory",
    "architecture_map", "attention_out", "attention_post_norm", "build_causal_lm", "cache_dir", "count_params",
    "decoder_blocks", "diagnose", "encode", "final_norm", "forward_last", "head_contribution", "head_geometry",
    "input_device", "load_model", "load_weights", "lr_at", "patch_heads", "patch_residual", "prepare_tokenizer",
    "record_heads", "record_residual", "residual_to_logits", "resolve_device", "resolve_dtype", "save_tiny",
    "tiny_model", "tiny_tokenizer", "train_causal_lm", "train_flops_per_token", "validate_device",
]  # fmt: skip
