"""What the grammar experiments share: the pretraining point config, and trained models by config.

A trained model is the run `grammar.train` of its `PretrainConfig`, so models live in the run
store keyed by their config hash: every experiment that needs the same model reuses it, a
sweep over the grid trains each point once, and an interrupted training resumes from its
checkpoint (kept in `<runs>/.checkpoints/`).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, Field, ValidationError, model_validator

from iclab.models import DeviceConfig
from iclab.runtime import Estimate, RunContext
from iclab.runtime import IclabError
from iclab.runtime import seed_sequence

from .._world import World, WorldConfig

QUICK_SIZES = [(32, 1), (64, 2), (96, 3), (128, 4)]  # (d_model, n_layers): 0.02M .. 1.06M parameters
QUICK_DATA = [250_000, 800_000, 2_500_000]  # pretraining tokens (one pass each)
# The model the headline claims are judged on, over TRAIN_SEEDS, at QUICK_DATA[-1] tokens: the smallest
# quick size past the emergence threshold. d64-L2 is the smallest with primitive ICL at seed 0, but over
# three seeds it sits on the threshold (one seed of three has no ICL at 2.5M tokens), so claims that
# presuppose ICL (steps, ablation, probes) could not be judged on it; grammar.icl still shows it.
HEADLINE = (96, 3)
TRAIN_SEEDS = [0, 1, 2]
# `iclab reproduce --quick` must fit in 20 minutes on 2 cores with the other two lines: its quick presets
# train one seed and their claims say so (an interval over that seed's episodes). Preset "quick-3seeds"
# is the same with TRAIN_SEEDS, the run docs/grammar.md reports (about 17 minutes of the grammar line alone).
QUICK_ONE_SEED = dict(train_seeds=[0])
PAPER_SIZES = [(64, 1), (128, 2), (256, 4), (384, 6), (512, 8)]  # 0.05M .. 25M parameters
PAPER_DATA = [1_000_000, 10_000_000, 100_000_000]
PAPER_WORLD = dict(n_objects=64, n_functions=16, n_binary=2, n_words=64)
PAPER_TRAINING = dict(world=PAPER_WORLD, seq_len=256, batch_size=64, lr=6e-4, warmup_steps=1000)  # GPU scale

# grammar.theory: the quick world with every task type (a binary operation, three-function compositions)
THEORY_WORLD = dict(n_binary=1, n_triples=8)
# The medium preset (grammar.theory): 5 sizes over 128× parameters, 3 data sizes over 10×, 3 seeds, on 2 CPU
# cores in under 2 hours. Its world has 24 objects and 6 maps: 6 primitives, 24 seen and 12 held-out pairs, 24
# triples and 24 bound binary tasks, so 576 primitive facts and 24³ binary facts are too many to look up from
# a handful of ICL prompts seen in training: a prompt is only solved by identifying its template in context.
MEDIUM_SIZES = [(32, 1), (64, 2), (96, 3), (128, 4), (192, 4)]  # 0.02M .. 2.3M parameters
MEDIUM_DATA = [400_000, 1_300_000, 4_000_000]
MEDIUM_WORLD = dict(n_objects=24, n_functions=6, n_binary=1, n_triples=24)

Size = tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]  # (d_model, n_layers)
DataTokens = Annotated[int, Field(ge=1000)]


def _distinct(seeds: list[int]) -> list[int]:
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"training seeds must be distinct (got {seeds})")
    return seeds


TrainSeeds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1), AfterValidator(_distinct)]


class GrammarConfig(DeviceConfig):
    """The world, the optimiser and the device every model of an experiment shares. The device and dtype
    are part of a training point's identity: training on another device or in bfloat16 rounds differently,
    and rounding changes a trained model (docs/grammar.md, seeds)."""

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
    def _trainable_dtype(self) -> GrammarConfig:
        if self.dtype == "float16":
            raise ValueError("dtype float16: training in float16 needs loss scaling, which iclab does not do; "
                             "use bfloat16 (mixed precision) or float32")
        return self

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


class TrainingRunsConfig(GrammarConfig):
    """An experiment that trains models (as `grammar.train` runs in its store) before measuring them.
    How the missing models are trained (backend, workers) is not part of a run's identity, so a grid
    started one way can finish another. It can change the models, though: on CPU a point is bit-for-bit
    reproducible for a given number of torch threads, and each worker trains with its share of the cores
    (one missing model alone: all of them). The thread count is recorded in each model's metrics."""

    UNHASHED: ClassVar[frozenset[str]] = frozenset({"backend", "workers"})

    backend: str = Field("local", description="Executor for training missing models (local process pool, serial).")
    workers: int | None = Field(None, ge=1, description="Worker processes for training (default: all cores).")


class TrainedModelsConfig(TrainingRunsConfig):
    """An experiment on trained models: their pretraining data and the ICL prompts it scores."""

    data_tokens: int = Field(QUICK_DATA[-1], ge=1000, description="Pretraining tokens of every model.")
    train_seeds: TrainSeeds = Field(TRAIN_SEEDS, description="Training seeds: every model is trained once per "
                                    "seed and the claims are judged over them (one seed: over its episodes).")
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
                    seed: int | None = None, **world: Any) -> PretrainConfig:
    """The training point of `size` = (d_model, n_layers) and `data_tokens` under an experiment's settings,
    trained with `seed` (default: the experiment's seed)."""
    shared = {k: getattr(cfg, k) for k in GrammarConfig.model_fields}
    if seed is not None:
        shared["seed"] = seed
    if world:
        shared["world"] = cfg.world.model_copy(update=world)
    return PretrainConfig(**shared, d_model=size[0], n_layers=size[1], data_tokens=data_tokens)


def train_points(ctx: RunContext, cfg: TrainingRunsConfig, points: Sequence[PretrainConfig]) -> list[Path]:
    """The `grammar.train` run directory of every point, in order. Missing ones are trained first
    through the sweep executor, several at once (small models train fastest one process per core),
    longest first; finished ones are reused from the store."""
    from iclab.runtime import RunSpec, is_complete, make_executor, run_dir, run_spec

    if ctx.runs_dir is None:
        raise IclabError("grammar experiments need a run store to keep trained models; run them through iclab")
    paths = [run_dir(ctx.runs_dir, "grammar.train", p) for p in points]
    todo = {p.hash(): p for p, path in zip(points, paths) if not is_complete(path, verify=True)}
    if len(todo) == 1:
        train_point(ctx, next(iter(todo.values())))
    elif todo:
        order = sorted(todo.values(), key=lambda p: -p.d_model ** 2 * p.n_layers * p.data_tokens)
        specs = [RunSpec("grammar.train", p.model_dump(mode="json"), str(ctx.runs_dir)) for p in order]
        executor = make_executor(cfg.backend, min(cfg.workers or os.cpu_count() or 1, len(specs)))
        failed = []
        for i, (_, res) in enumerate(executor.map_unordered(run_spec, specs), 1):
            ctx.log(f"trained {i}/{len(specs)}: {res.status} ({res.seconds:.0f} s)")
            failed += [res] if res.status == "failed" else []
        if failed:
            raise IclabError(f"{len(failed)} training run(s) failed; first: {failed[0].error.splitlines()[0]}")
    return paths


def train_point(ctx: RunContext, point: PretrainConfig) -> Path:
    """The run directory of `grammar.train` for this point, training it first if needed."""
    from iclab.runtime import get_experiment
    from iclab.runtime import execute

    if ctx.runs_dir is None:
        raise IclabError("grammar experiments need a run store to keep trained models; run them through iclab")
    res = execute(get_experiment("grammar.train"), point, ctx.runs_dir, quiet=ctx.quiet)
    if res.status == "failed":
        raise IclabError(f"training {point.hash()} failed: {res.error.splitlines()[0] if res.error else '?'}")
    return Path(res.path)


def load_point(run: Path, device: str | None = None):
    """(model in eval mode, world, its config) of a finished `grammar.train` run, on `device`."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    meta = json.loads((run / "config.json").read_text())
    point = PretrainConfig.model_validate(meta["config"], context={"saved": True})
    model = AutoModelForCausalLM.from_pretrained(run / "model", local_files_only=True).eval()
    if device is not None:  # the analysing experiment's device; weights in float32 (bfloat16 is for training)
        model = model.to(device)
    return model, World(point.world), point


def metrics_of(run: Path) -> dict[str, Any]:
    return json.loads((run / "data" / "metrics.json").read_text())


def stream_seed(seed: int, *key: str | int) -> int:
    """An int seed for stream `key` under `seed` (for APIs that take an int, e.g. a corpus stream or a
    model init), from the runtime's one seeding scheme."""
    return int(seed_sequence(seed, *key).generate_state(1, np.uint32)[0] >> 1)


def name_of(size: Sequence[int]) -> str:
    return f"d{size[0]}-L{size[1]}"


def key(*parts: Any) -> str:
    """The name of one saved array, e.g. key("d64-L2", 0, "prim") -> "d64-L2__0__prim"."""
    return "__".join(str(p) for p in parts)


def over_seeds(samples: Sequence[tuple[np.ndarray, ...]], statistic: Callable[..., float]) -> Estimate:
    """A statistic of per-episode arrays, judged over training seeds: `samples` holds one tuple of
    arrays per seed. Two or more seeds: the mean of the per-seed statistic with its t-interval over
    seeds. One seed: the statistic with a paired bootstrap interval over that seed's episodes, marked a
    hint (its method says it is one training seed, and a paper claim on it is judged inconclusive)."""
    if len(samples) >= 2:
        return Estimate.mean([statistic(*s) for s in samples], unit="training seeds")
    if not np.isfinite(statistic(*samples[0])):  # e.g. a ratio over zero accuracy: nothing to resample
        return Estimate(float("nan"), n=0, method="undefined on these episodes (one training seed)")
    # the headline claims are judged over training seeds: one seed is a hint, and its paper claims stay inconclusive
    return replace(Estimate.bootstrap(*samples[0], statistic=statistic, unit="episodes of one training seed"),
                   hint=True)


def mean_and_bars(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, lower, upper error bar lengths) of per-seed values: the 95% t-interval over seeds
    (no bars for one seed). For figures."""
    est = Estimate.mean(values, unit="training seeds")
    lo, hi = est.interval
    return est.value, est.value - lo, hi - est.value


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a) - np.mean(b))


def mean_ratio(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a) / np.mean(b)) if np.mean(b) > 0 else float("nan")
