"""Read and write the residual stream with plain PyTorch forward hooks.

A decoder block's output is the residual stream after that layer. In transformers 5.x most blocks
return a tensor, some (and older versions) a tuple whose first item is the hidden states; both are
handled. Hooks are always removed, also when the forward pass raises, and a patch that never
fired is an error rather than a silently unpatched result.

Positions index the batch as it is fed to the model (after left padding); -1 is the last token.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ._architecture import decoder_blocks


def _hidden(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output, hidden: torch.Tensor):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def _as_rows(value: int | Sequence[int] | torch.Tensor, batch: int) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.long)
    return t.expand(batch).clone() if t.ndim == 0 else t


@dataclass
class Recording:
    """Residual states recorded at one position per row; `states` is (B, n_layers, D) after the pass."""

    layers: list[int]
    by_layer: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def states(self) -> torch.Tensor:
        missing = [l for l in self.layers if l not in self.by_layer]
        if missing:
            raise RuntimeError(f"residual recording: hooks on layers {missing} did not fire")
        return torch.stack([self.by_layer[l] for l in self.layers], dim=1)  # (B, L, D)


@contextmanager
def record_residual(
    model: nn.Module,
    positions: int | Sequence[int] | torch.Tensor = -1,
    layers: Sequence[int] | None = None,
) -> Iterator[Recording]:
    """Record the block outputs at `positions` (one per row, or one for all) during the next forward.

    Only the chosen position is kept (float32, detached, on the CPU, so the blocks of a model split
    over several GPUs stack), not every position of every layer.
    """
    blocks = decoder_blocks(model)
    layers = list(range(len(blocks))) if layers is None else [int(l) for l in layers]
    rec = Recording(layers)

    def make_hook(layer: int):
        def hook(module, args, output):
            h = _hidden(output)  # (B, T, D)
            pos = _as_rows(positions, h.shape[0]).to(h.device)
            rec.by_layer[layer] = h[torch.arange(h.shape[0], device=h.device), pos].detach().float().cpu()  # (B, D)

        return hook

    handles = [blocks[l].register_forward_hook(make_hook(l)) for l in layers]
    try:
        yield rec
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class Patch:
    """Counts how many rows each hook edited, so an unfired patch is detected."""

    expected: int
    edited: int = 0


@contextmanager
def patch_residual(
    model: nn.Module,
    vectors: torch.Tensor,
    layers: int | Sequence[int] | torch.Tensor,
    positions: int | Sequence[int] | torch.Tensor = -1,
    mode: str = "replace",
    alpha: float = 1.0,
) -> Iterator[Patch]:
    """Replace with (or add) alpha * `vectors[b]` to row b's residual stream at block `layers[b]`, position `positions[b]`,
    during the forward passes inside the context; `vectors` is (B, D).

    Rows may have different layers: every block with at least one row gets a hook that edits just
    its rows, so a whole layer sweep can run as one batch. Rows whose layer is -1 are left alone.
    On leaving the context without an error, raises if some rows were never edited.
    """
    if mode not in ("replace", "add"):
        raise ValueError(f"patch mode must be 'replace' or 'add', got {mode!r}")
    blocks = decoder_blocks(model)
    batch = vectors.shape[0]
    layer_rows = _as_rows(layers, batch)
    if layer_rows.shape != (batch,) or int(layer_rows.max()) >= len(blocks) or int(layer_rows.min()) < -1:
        raise ValueError(f"patch layers must be {batch} values in [-1, {len(blocks) - 1}], got {layer_rows.tolist()}")
    pos_rows = _as_rows(positions, batch)
    patch = Patch(expected=int((layer_rows >= 0).sum()))

    def make_hook(rows: torch.Tensor):
        def hook(module, args, output):
            h = _hidden(output)  # (B, T, D)
            if h.shape[0] != batch:
                raise RuntimeError(f"patch_residual: batch of {h.shape[0]} rows, but {batch} vectors were given")
            r = rows.to(h.device)  # each block may sit on its own GPU (device_map)
            p = pos_rows[rows].to(h.device)
            v = vectors[rows].to(device=h.device, dtype=h.dtype)  # (R, D)
            new = alpha * v if mode == "replace" else h[r, p] + alpha * v
            patch.edited += len(rows)
            return _with_hidden(output, h.index_put((r, p), new))

        return hook

    handles = []
    try:
        for layer in sorted(set(layer_rows.tolist()) - {-1}):
            rows = (layer_rows == layer).nonzero().squeeze(1)
            handles.append(blocks[layer].register_forward_hook(make_hook(rows)))
        yield patch
    finally:
        for handle in handles:
            handle.remove()
    if patch.edited < patch.expected:
        raise RuntimeError(f"patch_residual: only {patch.edited} of {patch.expected} rows were patched; did the forward pass run?")
