"""What the grammar experiments share: the pretraining point config, and trained models by config.

A trained model is the run `grammar.train` of its `PretrainConfig`, so models live in the run
store keyed by their config hash: every experiment that needs the same model reuses it, a
sweep over the grid trains each point once, and an interrupted training resumes from its
checkpoint (kept in `<runs>/.checkpoints/`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from iclab.runtime import ExperimentConfig, RunContext
from iclab.runtime.errors import IclabError

from ..world import World, WorldConfig

QUICK_SIZES = [(32, 1), (64, 2), (96, 3), (128, 4)]  # (d_model, n_layers): 0.02M .. 1.06M parameters
QUICK_DATA = [250_000, 800_000, 2_500_000]  # pretraining tokens (one pass each)
PAPER_SIZES = [(64, 1), (128, 2), (256, 4), (384, 6), (512, 8)]  # 0.05M .. 25M parameters
PAPER_DATA = [1_000_000, 10_000_000, 100_000_000]
PAPER_WORLD = dict(n_objects=64, n_functions=16, n_binary=2, n_words=64)
PAPER_TRAINING = dict(world=PAPER_WORLD, seq_len=256, batch_size=64, lr=6e-4, warmup_steps=1000)  # GPU scale

Size = tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]  # (d_model, n_layers)
DataTokens = Annotated[int, Field(ge=1000)]


class GrammarConfig(ExperimentConfig):
    """The world and the optimiser every model of an experiment shares."""

    world: WorldConfig = Field(default_factory=WorldConfig, description="The default world's knobs.")
    arch: Literal["llama", "gpt2"] = Field("llama", description="HF architecture of the decoders.")
    seq_len: int = Field(128, gt=8, description="Training context length (documents are packed).")
    batch_size: int = Field(16, gt=0, description="Sequences per step.")
    lr: float = Field(2e-3, gt=0, description="Peak AdamW learning rate.")
    warmup_steps: int = Field(50, ge=0, description="Linear warm-up steps, then cosine decay to lr/10.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decoupled weight decay (matrices only).")
    compile: bool = Field(True, description="torch.compile the training step (falls back to eager).")

    def model_sizes(self) -> list[tuple[int, int]]:
        """The (d_model, n_layers) the experiment trains; each is checked when the config is built."""
        return []

    @model_validator(mode="after")
    def _buildable_models(self) -> GrammarConfig:
        from iclab.models import ModelSize

        for d, n in self.model_sizes():
            try:
                ModelSize(d_model=d, n_layers=n, arch=self.arch, context=max(256, self.seq_len))
            except ValidationError as err:
                reason = err.errors()[0]["msg"].removeprefix("Value error, ").split(";")[0]
                raise ValueError(f"model size ({d}, {n}): {reason}; heads are d_model // 32, so use a d_model "
                                 "they divide (e.g. a multiple of 32)") from None
        return self


class TrainedModelsConfig(GrammarConfig):
    """An experiment on trained models: their pretraining data and the ICL prompts it scores."""

    data_tokens: int = Field(QUICK_DATA[-1], ge=1000, description="Pretraining tokens of every model.")
    ns: list[Annotated[int, Field(ge=0)]] = Field([0, 1, 2, 4, 8, 16], min_length=1,
                                                  description="Numbers of demonstrations.")
    n_prompts: int = Field(32, gt=0, description="Prompts per task and number of demonstrations.")

    @model_validator(mode="after")
    def _prompts_fit_the_grammar(self) -> TrainedModelsConfig:
        if max(self.ns) + 1 > self.world.iter_max:  # longer lists have probability 0 in the world
            raise ValueError(f"ns up to {max(self.ns)} needs world.iter_max >= {max(self.ns) + 1} "
                             f"(got {self.world.iter_max})")
        return self


class PretrainConfig(GrammarConfig):
    """One pretraining point: the world, the model size, the data, the optimiser."""

    d_model: int = Field(128, gt=0, description="Residual width (heads = d_model // 32).")
    n_layers: int = Field(4, gt=0, description="Decoder blocks.")
    data_tokens: int = Field(2_500_000, ge=1000, description="Pretraining tokens, each seen once (data = compute).")
    eval_prompts: int = Field(48, gt=0, description="Prompts per primitive task in the run's own ICL check.")

    def model_sizes(self) -> list[tuple[int, int]]:
        return [(self.d_model, self.n_layers)]


def pretrain_config(cfg: GrammarConfig, size: tuple[int, int] | list[int], data_tokens: int,
                    **world: Any) -> PretrainConfig:
    """The training point of `size` = (d_model, n_layers) and `data_tokens` under an experiment's settings."""
    shared = {k: getattr(cfg, k) for k in GrammarConfig.model_fields}
    if world:
        shared["world"] = cfg.world.model_copy(update=world)
    return PretrainConfig(**shared, d_model=size[0], n_layers=size[1], data_tokens=data_tokens)


def train_point(ctx: RunContext, point: PretrainConfig) -> Path:
    """The run directory of `grammar.train` for this point, training it first if needed."""
    from iclab.runtime import get_experiment
    from iclab.runtime.store import execute

    if ctx.runs_dir is None:
        raise IclabError("grammar experiments need a run store to keep trained models; run them through iclab")
    res = execute(get_experiment("grammar.train"), point, ctx.runs_dir, quiet=ctx.quiet)
    if res.status == "failed":
        raise IclabError(f"training {point.hash()} failed: {res.error.splitlines()[0] if res.error else '?'}")
    return Path(res.path)


def load_point(run: Path):
    """(model in eval mode, world) of a finished `grammar.train` run."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    meta = json.loads((run / "config.json").read_text())
    point = PretrainConfig(**meta["config"])
    model = AutoModelForCausalLM.from_pretrained(run / "model", local_files_only=True).eval()
    return model, World(point.world), point


def metrics_of(run: Path) -> dict[str, Any]:
    return json.loads((run / "data" / "metrics.json").read_text())
