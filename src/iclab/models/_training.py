"""A small, resumable trainer for from-scratch causal LMs on a 1-D token corpus.

    model = build_causal_lm(ModelSize(d_model=128, n_layers=4), vocab_size=64, seed=0)
    history = train_causal_lm(model, tokens, TrainConfig(epochs=2), ckpt_dir=run_dir / "ckpt")

AdamW with linear warm-up and cosine decay, gradient clipping, next-token cross entropy at
every position. Batches are a pure function of the step, and checkpoints hold the model, the
optimizer and the history, so an interrupted run resumes to exactly the parameters an
uninterrupted one reaches. Checkpoints are safetensors + JSON: nothing is ever pickled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from iclab.runtime import IclabError

logger = logging.getLogger(__name__)

# On CPU the SDPA "math" backend (plain bmm + softmax, which torch.compile fuses) beats the
# flash kernel at short sequences. Compiled training steps of d128-L4 (heads of 32) on the 2-core
# box, 4096 tokens a step: T = 128: 188-199 ms (math) vs 206-213 ms (flash); T = 256: 238 vs 247;
# T = 512: 305 vs 291; T = 1024: 525 vs 387.
_CPU_MATH_SDPA_MAX_LEN = 256


class TrainConfig(BaseModel):
    """Optimiser, schedule, batching and checkpointing of one training run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    lr: float = Field(1e-3, gt=0, description="Peak learning rate, reached at the end of warm-up.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate of the cosine decay, as a fraction of lr.")
    warmup_steps: int = Field(100, ge=0, description="Steps of linear warm-up from 0 to lr.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decoupled weight decay of matrices and embeddings (not norms or biases).")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW first-moment decay.")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW second-moment decay.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the global gradient norm to this value; 0 turns clipping off.")
    batch_size: int = Field(32, gt=0, description="Sequences per step.")
    seq_len: int = Field(128, gt=0, description="Tokens per training sequence (each window holds seq_len + 1 tokens).")
    epochs: float = Field(1.0, gt=0, description="Passes over the corpus's non-overlapping windows; ignored when steps is set.")
    steps: int | None = Field(None, gt=0, description="Train exactly this many steps (cycling over the data); overrides epochs.")
    ckpt_every: int = Field(250, gt=0, description="Save a checkpoint every this many steps (and at the end) when ckpt_dir is given.")
    log_every: int = Field(25, gt=0, description="Report the mean loss, lr and tokens/s every this many steps (and at the end).")
    compile: bool = Field(True, description="torch.compile the forward + loss; falls back to eager if compiling fails.")
    seed: int = Field(0, ge=0, description="Seed of the order in which windows are drawn.")
    autocast: Literal["float32", "bfloat16"] = Field(
        "float32", description="bfloat16: mixed precision (matmuls in bfloat16 under torch.autocast; weights, "
        "gradients and optimiser state stay float32). float16 would need loss scaling and is not offered.")


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Learning rate of (0-based) `step`: linear from 0 to lr over the warm-up, then a cosine
    down to lr·min_lr_ratio, reached at `total_steps`."""
    if step < cfg.warmup_steps:
        return cfg.lr * step / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * progress))


class TokenWindows:
    """Batches of windows of seq_len + 1 tokens, starting at multiples of seq_len (so inputs never
    overlap), in an endless sequence of epochs, each a fresh permutation of all windows.

    `batch(step)` is a pure function of the step, so a resumed run sees the same batches.
    """

    def __init__(self, tokens: np.ndarray, *, seq_len: int, batch_size: int, seed: int = 0):
        arr = np.asarray(tokens)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise IclabError(f"the corpus must be a 1-D integer array, got {arr.ndim}-D {arr.dtype}")
        if len(arr) < seq_len + 1:
            raise IclabError(
                f"the corpus has {len(arr)} tokens, fewer than one window of seq_len + 1 = {seq_len + 1}; "
                "use a longer corpus or a smaller seq_len"
            )
        if arr.min() < 0:
            raise IclabError(f"the corpus holds a negative token id ({arr.min()}); token ids start at 0")
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.n_windows = (len(arr) - 1) // seq_len
        self.tokens = torch.from_numpy(np.array(arr, dtype=np.int64))  # (N,) our own copy
        self._windows = self.tokens.unfold(0, seq_len + 1, seq_len)  # (n_windows, T+1), a view
        self._perms: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the windows in `epoch`, drawn from a generator seeded by (seed, epoch)."""
        perm = self._perms.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)
            if len(self._perms) >= 4:  # a batch spans at most a few epochs: keep only recent ones
                self._perms.pop(min(self._perms))
            self._perms[epoch] = perm
        return perm

    def window_ids(self, step: int) -> np.ndarray:
        """Indices of the B windows of batch `step`: items step·B ... step·B + B − 1 of the epochs laid end to end."""
        items = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epochs, positions = np.divmod(items, self.n_windows)
        ids = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):
            here = epochs == epoch
            ids[here] = self.permutation(int(epoch))[positions[here]]
        return ids

    def batch(self, step: int) -> torch.Tensor:
        """Batch `step` (0-based) as token ids, (B, T+1): inputs [:, :-1], targets [:, 1:]."""
        return self._windows[torch.from_numpy(self.window_ids(step))]  # (B, T+1)

    def total_steps(self, cfg: TrainConfig) -> int:
        """cfg.steps when set, otherwise enough steps for cfg.epochs passes over the windows."""
        if cfg.steps is not None:
            return cfg.steps
        return max(1, math.ceil(self.n_windows * cfg.epochs / self.batch_size))

    def digest(self) -> str:
        """Content hash of the corpus: part of a checkpoint's run identity."""
        return hashlib.sha256(self.tokens.numpy().tobytes()).hexdigest()[:16]


@dataclass
class TrainHistory:
    """What a run logged (one entry per log point) and its totals so far."""

    step: list[int] = field(default_factory=list)  # completed steps at each log point
    loss: list[float] = field(default_factory=list)  # mean training loss since the previous log point
    lr: list[float] = field(default_factory=list)  # learning rate of the last step
    tokens_per_s: list[float] = field(default_factory=list)  # since the previous log point, checkpointing excluded
    seconds: float = 0.0  # training wall time, checkpointing and logging excluded, summed over resumes
    tokens: int = 0  # tokens trained on
    steps: int = 0  # steps completed

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainHistory:
        return cls(**json.loads(text))


# ---------------------------------------------------------------------------------- the step


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, math_sdpa: bool) -> torch.Tensor:
    """Mean next-token cross entropy over every position of x (B, T) against targets y (B, T)."""
    attention = _math_sdpa() if math_sdpa else contextlib.nullcontext()
    with attention:
        logits = model(input_ids=x, use_cache=False).logits  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())  # (B·T, V) vs (B·T,)


def _math_sdpa():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


@contextlib.contextmanager
def _torch_deprecations_ignored() -> Iterator[None]:
    """torch.compile imports parts of torch that raise DeprecationWarnings of torch's own
    (torch.jit.script_method); the user can do nothing about them, so they are not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(\.|$)")
        yield


@functools.cache
def _compiled_loss() -> Callable:
    """One compiled `_loss` per process: models of the same shape share its compiled graph
    (torch recompiles for each new shape, up to its recompile limit, then runs eagerly)."""
    with _torch_deprecations_ignored():
        return torch.compile(_loss)


class _Step:
    """Forward, loss and backward of one batch; compiled when asked, with a one-time fallback to
    eager when compiling fails (e.g. no C++ compiler)."""

    def __init__(self, model: nn.Module, use_compile: bool, math_sdpa: bool):
        self.model, self.math_sdpa = model, math_sdpa
        self.compiled = _compiled_loss() if use_compile else None
        self.first = True

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.compiled is None:
            loss = _loss(self.model, x, y, self.math_sdpa)
        elif not self.first:
            loss = self.compiled(self.model, x, y, self.math_sdpa)
        else:
            self.first = False
            try:
                with _torch_deprecations_ignored():
                    loss = self.compiled(self.model, x, y, self.math_sdpa)
                    loss.backward()
                return loss
            except Exception as err:  # noqa: BLE001 -- any compiler failure: training must still run
                logger.info("torch.compile failed (%s: %s); training eagerly", type(err).__name__, str(err)[:200])
                self.model.zero_grad(set_to_none=True)
                self.compiled = None
                loss = _loss(self.model, x, y, self.math_sdpa)
        loss.backward()
        return loss


@contextlib.contextmanager
def _deterministic_kernels(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms while training. On CPU, without them torch.compile's multi-threaded
    kernels reduce in a thread-timing-dependent order: two 2-thread runs of the same seed differed by
    1e-7 after 70 steps, and by 0.06 nats of validation loss after 1220 (d128-L4). Measured cost: none
    (21.0-21.5k tokens/s either way, d128-L4, batch 16×128). On CUDA the same switch makes cuBLAS use a
    fixed workspace (CUBLAS_WORKSPACE_CONFIG, set by `iclab.models` at import when unset) and picks
    deterministic kernels where torch has them; `warn_only` because a few backward kernels (some SDPA
    ones) have no deterministic version: `scripts/gpu_grammar_bench.py` checks two runs of one seed
    for bitwise-equal losses on the GPU it runs on. Same seed, GPU model and torch/CUDA versions give
    the same model; another GPU or version may not."""
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW decaying matrices and embeddings (≥ 2-D) but not norms or biases; fused where supported."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    kw = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2)}
    try:
        return torch.optim.AdamW(groups, **kw, fused=True)
    except RuntimeError:  # the device or dtype has no fused kernel
        return torch.optim.AdamW(groups, **kw)


# ---------------------------------------------------------------------------------- checkpoints

_CKPT_FORMAT = 1


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _run_identity(model: nn.Module, data: TokenWindows, cfg: TrainConfig, total: int) -> dict:
    """What must match for a checkpoint to belong to this run (not how often it logs or saves)."""
    shapes = ",".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    identity = {
        "train": cfg.model_dump(mode="json", exclude={"compile", "ckpt_every", "log_every"}),
        "total_steps": total,
        "model": f"{type(model).__name__}/{hashlib.sha256(shapes.encode()).hexdigest()[:16]}",
        "corpus": f"{len(data.tokens)} tokens/{data.digest()}",
    }
    return json.loads(json.dumps(identity))  # as it reads back from disk


def _latest_checkpoint(ckpt_dir: Path) -> dict | None:
    """The JSON of the newest complete checkpoint (its JSON is written last), or None."""
    best = None
    for path in ckpt_dir.glob("ckpt-*.json"):
        meta = json.loads(path.read_text())
        complete = all((ckpt_dir / meta[k]).is_file() for k in ("model_file", "optimizer_file"))
        if complete and (best is None or meta["step"] > best["step"]):
            best = meta
    return best


def _save_checkpoint(ckpt_dir: Path, model: nn.Module, opt: torch.optim.Optimizer, meta: dict) -> None:
    from safetensors.torch import save_file, save_model

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stem = f"ckpt-{meta['step']:07d}"
    meta = {"format": _CKPT_FORMAT, **meta, "model_file": f"{stem}.model.safetensors",
            "optimizer_file": f"{stem}.optim.safetensors"}
    _atomic(ckpt_dir / meta["model_file"], lambda p: save_model(model, str(p)))  # tied tensors stored once

    state = opt.state_dict()
    flat = {f"state.{i}.{name}": value.detach().contiguous()
            for i, entries in state["state"].items() for name, value in entries.items()}
    _atomic(ckpt_dir / meta["optimizer_file"], lambda p: save_file(flat, str(p)))
    meta["param_groups"] = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
                            for g in state["param_groups"]]
    _atomic(ckpt_dir / f"{stem}.json", lambda p: p.write_text(json.dumps(meta, indent=1)))

    for old in ckpt_dir.glob("ckpt-*.json"):  # superseded: the JSON goes first, so none is half there
        if old.name != f"{stem}.json":
            old_meta = json.loads(old.read_text())
            old.unlink()
            for k in ("model_file", "optimizer_file"):
                (ckpt_dir / old_meta[k]).unlink(missing_ok=True)


def _restore_optimizer(opt: torch.optim.Optimizer, path: Path, param_groups: list[dict], device) -> None:
    from safetensors.torch import load_file

    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(path), device=str(device)).items():
        _, i, name = key.split(".", 2)  # "state.{i}.{name}"
        state.setdefault(int(i), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in param_groups]
    opt.load_state_dict({"state": state, "param_groups": groups})


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights saved by `train_causal_lm`: a model .safetensors file, or a checkpoint
    directory (its newest checkpoint). Returns the model."""
    from safetensors.torch import load_model

    path = Path(path)
    if path.is_dir():
        meta = _latest_checkpoint(path)
        if meta is None:
            raise IclabError(f"{path} holds no complete checkpoint; train with ckpt_dir={str(path)!r} first")
        path = path / meta["model_file"]
    if not path.is_file():
        raise IclabError(f"weights file {path} does not exist")
    device = next(model.parameters()).device
    try:
        missing, unexpected = load_model(model, str(path), strict=False, device=str(device))
    except RuntimeError as err:
        raise IclabError(f"the weights in {path} do not fit this model ({str(err).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise IclabError(f"the weights in {path} do not fit this model: {len(missing)} missing "
                         f"(e.g. {sorted(missing)[:2]}), {len(unexpected)} unexpected (e.g. {sorted(unexpected)[:2]})")
    return model


# ---------------------------------------------------------------------------------- training


def _check_fits(model: nn.Module, data: TokenWindows, cfg: TrainConfig) -> None:
    config = model.config
    top = int(data.tokens.max())
    if top >= config.vocab_size:
        raise IclabError(f"the corpus holds token id {top} but the model's vocabulary has {config.vocab_size} ids")
    max_len = getattr(config, "max_position_embeddings", None)
    if max_len is not None and cfg.seq_len > max_len:
        raise IclabError(f"seq_len={cfg.seq_len} exceeds the model's context of {max_len} positions; "
                         "lower seq_len or build the model with a larger context")


def train_causal_lm(
    model: nn.Module,
    tokens: np.ndarray,
    cfg: TrainConfig,
    *,
    ckpt_dir: str | Path | None = None,
    log: Callable[[dict], None] | None = None,
) -> TrainHistory:
    """Train `model` in place on next-token prediction over `tokens` (1-D int array); returns
    the history and leaves the model in eval mode.

    With `ckpt_dir`, checkpoints go there every cfg.ckpt_every steps and at the end, and a run
    finding its own checkpoint there resumes from it (or, if finished, just loads the weights
    and returns the stored history). `log` receives a dict at every log point: step,
    total_steps, loss, lr, tokens_per_s, seconds (of this interval) and elapsed_s.
    """
    data = TokenWindows(tokens, seq_len=cfg.seq_len, batch_size=cfg.batch_size, seed=cfg.seed)
    _check_fits(model, data, cfg)
    total = data.total_steps(cfg)
    device = next(model.parameters()).device
    opt = _optimizer(model, cfg)
    history, start, pending = TrainHistory(), 0, {"loss_sum": 0.0, "count": 0}

    ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else None
    identity = None
    if ckpt_dir is not None:
        identity = _run_identity(model, data, cfg, total)
        meta = _latest_checkpoint(ckpt_dir) if ckpt_dir.is_dir() else None
        if meta is not None:
            if meta["run"] != identity:
                differs = [k for k in identity if meta["run"].get(k) != identity[k]]
                raise IclabError(f"{ckpt_dir} holds a checkpoint of another run ({', '.join(differs)} differ); "
                                 "use a fresh ckpt_dir or delete that one")
            load_weights(model, ckpt_dir / meta["model_file"])
            history, start, pending = TrainHistory(**meta["history"]), meta["step"], meta["pending"]
            if start >= total:
                return history
            _restore_optimizer(opt, ckpt_dir / meta["optimizer_file"], meta["param_groups"], device)

    math_sdpa = device.type == "cpu" and cfg.seq_len <= _CPU_MATH_SDPA_MAX_LEN
    step_fn = _Step(model, cfg.compile, math_sdpa)
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum = torch.tensor(pending["loss_sum"], dtype=torch.float64, device=device)
    n_pending, interval_s, interval_tokens = pending["count"], 0.0, 0
    step_tokens = cfg.batch_size * cfg.seq_len
    model.train()
    with _deterministic_kernels(device):
        try:
            for step in range(start, total):
                t0 = time.perf_counter()
                lr = lr_at(step, cfg, total)
                for group in opt.param_groups:
                    group["lr"] = lr
                batch = data.batch(step).to(device, non_blocking=True)  # (B, T+1)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.autocast == "bfloat16"):
                    loss = step_fn(batch[:, :-1], batch[:, 1:])  # forward + backward
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                loss_sum += loss.detach()
                n_pending += 1
                done = step + 1
                at_log = done % cfg.log_every == 0 or done == total
                mean_loss = (loss_sum / n_pending).item() if at_log else None  # .item() waits for the device
                dt = time.perf_counter() - t0
                interval_s += dt
                interval_tokens += step_tokens
                history.seconds += dt
                history.tokens += step_tokens
                history.steps = done

                if at_log:
                    if not math.isfinite(mean_loss):
                        raise IclabError(f"training diverged: loss {mean_loss} at step {done}; lower lr or raise warmup_steps")
                    rate = interval_tokens / interval_s
                    history.step.append(done)
                    history.loss.append(mean_loss)
                    history.lr.append(lr)
                    history.tokens_per_s.append(rate)
                    loss_sum.zero_()
                    n_pending, seconds, interval_s, interval_tokens = 0, interval_s, 0.0, 0
                    if log is not None:
                        log({"step": done, "total_steps": total, "loss": mean_loss, "lr": lr, "tokens_per_s": rate,
                             "seconds": seconds, "elapsed_s": history.seconds})

                if ckpt_dir is not None and (done % cfg.ckpt_every == 0 or done == total):
                    meta = {"step": done, "run": identity, "history": dataclasses.asdict(history),
                            "pending": {"loss_sum": loss_sum.item(), "count": n_pending}}
                    _save_checkpoint(ckpt_dir, model, opt, meta)
        finally:
            model.eval()
    return history
