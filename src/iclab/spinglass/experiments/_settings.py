"""Config pieces shared by the spin-glass experiments: the AMP solver's and Adam's settings.

An experiment's config inherits the pieces it uses (`class Fig4bConfig(AmpSettings, AdamSettings)`)
and redeclares a field only where its default differs from the paper's usual one.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from iclab.runtime import ExperimentConfig


class AmpSettings(ExperimentConfig):
    """The cavity / AMP fixed-point iteration (docs/spinglass.md: AMP)."""

    beta: float = Field(100.0, gt=0, description="Inverse temperature β of AMP.")
    damping: float = Field(0.9, ge=0, lt=1, description="AMP damping θ.")
    amp_steps: int = Field(100, gt=0, description="Maximum AMP sweeps.")
    amp_tol: float = Field(1e-6, gt=0, description="AMP convergence threshold on the sweep error.")

    def amp_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `iclab.spinglass._amp` (all but J, h, lam and the generator)."""
        return dict(beta=self.beta, damping=self.damping, steps=self.amp_steps, tol=self.amp_tol)


class AdamSettings(ExperimentConfig):
    """Full-batch Adam on the linear-attention readout (docs/spinglass.md: loss)."""

    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    epochs: int = Field(5000, gt=0, description="Full-batch Adam steps.")
    weight_decay: float = Field(0.01, ge=0, description="Adam's coupled weight decay wd (λ0 = wd/2 in the energy).")
    adam_dtype: str = Field("float32", pattern="^(float32|float64)$",
                            description="Precision of the Adam runs (float32: 3-4x faster, same curves). This line's "
                            "dtype field: its losses are compared down to 1e-4, so bfloat16/float16 are not offered.")


class ModelDevice(ExperimentConfig):
    """Where the trained attention models (SA, TF, FLA, MHLA) run: cpu, cuda, cuda:N or auto. Part of the
    run's identity: training on another device rounds differently."""

    device: str = Field("auto", validate_default=True, description="Device of the trained attention models: cpu, "
                        "cuda, cuda:N or auto (a GPU when present); the statistics-based SLA runs stay on the CPU.")

    @field_validator("device")
    @classmethod
    def _resolve_device(cls, v: str, info: ValidationInfo) -> str:
        from iclab.models import validate_device

        return validate_device(v, info)
