"""Which device and dtype a model runs on: the config fields every neural experiment shares.

`device` is `cpu`, `cuda`, `cuda:N` or `auto` (a GPU when torch sees one, else the CPU); `auto` is
resolved when the config is built, so `config.json` records where the run actually went. A device
or dtype the machine cannot give is a one-line error before anything runs.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

import torch
from pydantic import Field, ValidationInfo, field_validator

from iclab.runtime import ExperimentConfig
from iclab.runtime import IclabError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICE_HELP = "cpu, cuda, cuda:N (the N-th GPU) or auto (a GPU when present, else cpu)"


def resolve_device(spec: str) -> str:
    """'auto' -> 'cuda' or 'cpu'; 'cuda'/'cuda:N' checked against the GPUs torch sees."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not match:
        raise IclabError(f"device {spec!r} is not known; use {DEVICE_HELP}")
    if not torch.cuda.is_available():
        raise IclabError(f"device {spec!r}: torch sees no CUDA GPU on this machine (torch {torch.__version__}); "
                         "use device=cpu or device=auto")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise IclabError(f"device {spec!r}: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0; "
                         "use one of those or device=cuda")
    return spec


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """'float32' | 'bfloat16' | 'float16' (or a torch.dtype among them) -> torch.dtype."""
    if isinstance(name, torch.dtype) and name in DTYPES.values():
        return name
    if name not in DTYPES:
        raise IclabError(f"dtype {name!r} is not supported; use one of {', '.join(DTYPES)}")
    return DTYPES[str(name)]


def validate_device(v: str, info: ValidationInfo) -> str:
    """A config's `device` field: resolved and checked against this machine, except in a finished run's
    config read back (`context={"saved": True}`), which keeps the device it ran on."""
    if (info.context or {}).get("saved"):
        return v
    try:
        return resolve_device(v)
    except IclabError as err:
        raise ValueError(str(err)) from None


def input_device(model: torch.nn.Module) -> torch.device:
    """Where a model's inputs go: its input embedding's device (the first GPU of a model split by
    `device_map`)."""
    return model.get_input_embeddings().weight.device


class DeviceConfig(ExperimentConfig):
    """A config of an experiment that runs a neural model: where it runs and in what precision.

    `dtype` is part of the run's identity (it changes the numbers). `device` is too, except in
    subclasses that list it in `UNHASHED`: inference-only experiments whose results do not depend
    on the device beyond rounding (the task-vector line), which may then reuse a run made elsewhere."""

    UNHASHED: ClassVar[frozenset[str]] = frozenset()

    device: str = Field("auto", validate_default=True, description=f"Where the model runs: {DEVICE_HELP}. 'auto' is resolved when the "
                        "config is built.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Precision of the model's weights and activations (bfloat16/float16 halve memory; "
        "they change the numbers, so they are part of the run's identity).")

    @field_validator("device")
    @classmethod
    def _resolve_device(cls, v: str, info: ValidationInfo) -> str:
        return validate_device(v, info)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]
