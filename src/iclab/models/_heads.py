"""Read and write single attention heads: the input of each block's attention output projection is
every head's output side by side, (B, T, n_heads * head_dim), head-major, so head h of layer l is the
slice [h * head_dim, (h + 1) * head_dim) of that input (`architecture_map` finds the projection by name).

Writing a slice before the projection equals writing that head's contribution after it (the
projection is linear), for every family `iclab doctor` passes, grouped-query attention included
(the slice is the head's output after its keys and values were shared).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from iclab.runtime import IclabError

from ._architecture import architecture_map, attention_out, decoder_blocks


def head_geometry(model: nn.Module) -> tuple[int, int, int]:
    """(n_layers, n_heads, head_dim), or a one-line error when the heads cannot be located."""
    amap = architecture_map(model)
    if amap.attn_out is None or not amap.n_heads or not amap.head_dim:
        raise IclabError(f"{type(model).__name__}: its attention heads cannot be located (run `iclab doctor` on "
                         "the model); head-level work needs the attention output projection by name")
    return amap.n_layers, amap.n_heads, amap.head_dim


@dataclass
class HeadRecording:
    """Every head's output at one position per row; `values` is (B, n_layers, n_heads, head_dim) float32."""

    n_layers: int
    by_layer: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def values(self) -> torch.Tensor:
        missing = [l for l in range(self.n_layers) if l not in self.by_layer]
        if missing:
            raise RuntimeError(f"head recording: hooks on layers {missing} did not fire")
        return torch.stack([self.by_layer[l] for l in range(self.n_layers)], 1)


@contextmanager
def record_heads(model: nn.Module, positions: int | Sequence[int] | torch.Tensor = -1) -> Iterator[HeadRecording]:
    """Record each head's output (the projection's input slice) at `positions` during the next forward."""
    n_layers, n_heads, head_dim = head_geometry(model)
    rec = HeadRecording(n_layers)

    def make_hook(layer: int):
        def hook(module, args):
            x = args[0]  # (B, T, H * d)
            pos = torch.as_tensor(positions).expand(x.shape[0]).to(x.device)
            rec.by_layer[layer] = x[torch.arange(x.shape[0], device=x.device), pos].detach().float().cpu() \
                .view(x.shape[0], n_heads, head_dim)
        return hook

    handles = [attention_out(model, l).register_forward_pre_hook(make_hook(l)) for l in range(n_layers)]
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()


@contextmanager
def patch_heads(model: nn.Module, values: torch.Tensor, layers: Sequence[int] | torch.Tensor,
                heads: Sequence[int] | torch.Tensor, positions: int = -1) -> Iterator[None]:
    """Set row b's head `heads[b]` of layer `layers[b]` at `positions` to `values[b]` (head_dim,) during the
    forward passes inside the context; rows whose layer is -1 are left alone. Every row of a batch may
    patch a different head, so all heads of all layers can run as one batch."""
    n_layers, n_heads, head_dim = head_geometry(model)
    layers, heads = torch.as_tensor(layers).long(), torch.as_tensor(heads).long()
    B = values.shape[0]
    if layers.shape != (B,) or heads.shape != (B,) or values.shape[1:] != (head_dim,):
        raise IclabError(f"patch_heads: need values (B, {head_dim}) with B layers and B heads, got values "
                         f"{tuple(values.shape)}, layers {tuple(layers.shape)}, heads {tuple(heads.shape)}")
    bad = [(int(l), int(h)) for l, h in zip(layers, heads) if l >= n_layers or l < -1 or (l >= 0 and not 0 <= h < n_heads)]
    if bad:
        raise IclabError(f"patch_heads: no head {bad[0]} in this model ({n_layers} layers of {n_heads} heads, "
                         "0-based); pass a layer in [0, n_layers) and a head in [0, n_heads)")

    def make_hook(rows: torch.Tensor):
        def hook(module, args):
            x = args[0]
            if x.shape[0] != B:
                raise RuntimeError(f"patch_heads: batch of {x.shape[0]} rows, but {B} values were given")
            r = rows.to(x.device)
            cols = (heads[rows][:, None] * head_dim + torch.arange(head_dim)).to(x.device)  # (R, d)
            x = x.clone()
            x[r[:, None], positions, cols] = values[rows].to(device=x.device, dtype=x.dtype)
            return (x, *args[1:])
        return hook

    handles = []
    try:
        for layer in sorted(set(layers.tolist()) - {-1}):
            rows = (layers == layer).nonzero().squeeze(1)
            handles.append(attention_out(model, layer).register_forward_pre_hook(make_hook(rows)))
        yield
    finally:
        for h in handles:
            h.remove()


def attention_post_norm(model: nn.Module, layer: int) -> nn.Module | None:
    """The norm a block applies to its attention output before adding it to the residual stream (Gemma 2/3,
    OLMo 2: blocks with a `post_feedforward_layernorm`, whose `post_attention_layernorm` is then a
    post-norm; in Llama-style blocks that name is the pre-MLP norm), or None."""
    block = decoder_blocks(model)[layer]
    if hasattr(block, "post_feedforward_layernorm") and hasattr(block, "post_attention_layernorm"):
        return block.post_attention_layernorm
    return None


def _project(proj: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """proj(x) - proj(0): the projection without its bias, through the module itself (an offloaded
    projection loads its weights only when called). x: (B, n_heads * head_dim) -> (B, D) float32 on CPU."""
    dtype = next(proj.parameters()).dtype if any(True for _ in proj.parameters()) else torch.float32
    device = next((p.device for p in proj.parameters() if p.device.type != "meta"), torch.device("cpu"))
    with torch.no_grad():
        x = x.to(device=device, dtype=dtype)
        return (proj(x) - proj(torch.zeros_like(x))).float().cpu()


def head_contribution(model: nn.Module, layer: int, head: int, value: torch.Tensor,
                      layer_values: torch.Tensor | None = None) -> torch.Tensor:
    """What head `head` of `layer` adds to the residual stream when its output is `value` (head_dim,):
    the projection applied to that slice alone, bias excluded. (D,)

    Where the block normalises its attention output before the residual add (`attention_post_norm`),
    that RMS norm is linearised at the whole layer's output `layer_values` (n_heads, head_dim), e.g. the
    task's mean: each head gets g ⊙ c / rms(A), with c its projected output, A the projected output of
    all heads and g the norm's gain, so the heads' contributions sum to the norm of A exactly."""
    n_layers, n_heads, head_dim = head_geometry(model)
    proj = attention_out(model, layer)
    x = torch.zeros(1, n_heads * head_dim)
    x[0, head * head_dim:(head + 1) * head_dim] = value.float().cpu()
    c = _project(proj, x)
    norm = attention_post_norm(model, layer)
    if norm is None:
        return c[0]
    if layer_values is None or layer_values.shape != (n_heads, head_dim):
        raise IclabError(f"{type(model).__name__} normalises each attention output before the residual add: a head's "
                         f"contribution needs the whole layer's head outputs, shape ({n_heads}, {head_dim})")
    a = _project(proj, layer_values.float().cpu().reshape(1, -1))
    eps = float(getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-6)))
    device = next((p.device for p in norm.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in norm.parameters()), torch.float32)
    with torch.no_grad():
        gain_c = norm(c.to(device=device, dtype=dtype)).float().cpu() * torch.sqrt(c.pow(2).mean(-1, keepdim=True) + eps)
    return (gain_c / torch.sqrt(a.pow(2).mean(-1, keepdim=True) + eps))[0]
