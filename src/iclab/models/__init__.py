"""Real causal LMs, loaded offline, and an intervention layer over PyTorch forward hooks.

    lm = load_model("smollm2-135m")                 # or any local HuggingFace causal-LM directory
    batch = encode(lm.tokenizer, ["example:go->"])
    with record_residual(lm.model) as rec:           # every block's output at the last token
        forward_last(lm.model, batch)
    rec.states                                       # (B, n_layers, D)
    with patch_residual(lm.model, vectors, layers=12):   # replace the last token's state at block 12
        logits, _ = forward_last(lm.model, batch)
"""

from ._architecture import decoder_blocks, final_norm, residual_to_logits
from ._forward import Batch, encode, forward_last
from ._hooks import Patch, Recording, patch_residual, record_residual
from ._loading import BUNDLED_MODELS, BundledModel, LoadedModel, cache_dir, load_model, prepare_tokenizer

__all__ = [
    "BUNDLED_MODELS",
    "Batch",
    "BundledModel",
    "LoadedModel",
    "Patch",
    "Recording",
    "cache_dir",
    "decoder_blocks",
    "encode",
    "final_norm",
    "forward_last",
    "load_model",
    "patch_residual",
    "prepare_tokenizer",
    "record_residual",
    "residual_to_logits",
]
