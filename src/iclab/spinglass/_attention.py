"""Attention models for in-context linear regression: prompt Z (B, D+1, N+1) -> query label (B,).

The columns of Z are the tokens: (x_i, y_i) for the N context examples, then the query
(x_q, 0). Every model reads its prediction from the label slot of the query's output,
entry [D, N]. The paper (Li, Bai, Huang 2024) specifies only the two linear models of
docs/spinglass.md: readout; for Fig. S8 it names four more architectures with no details, so these are ours:

- `sla`  MergedLinearAttention: F = Z Zᵀ W Z/(N+1), W (D+1, D+1). The paper's model.
- (not in ARCHITECTURES) SeparateLinearAttention: the same with W = W_Qᵀ W_K (Fig. S1).
- `fla`  FullLinearAttention: F = Z + W_PV Z (Zᵀ W_KQ Z)/(N+1), the one-layer linear
  self-attention of von Oswald et al. (2023) and Zhang, Frei, Bartlett (2024), with a
  merged value/projection matrix W_PV and key-query matrix W_KQ, both (D+1, D+1), and
  the residual stream. Keys include the query token (as in SLA), whose label slot is 0.
- `mhla` MultiHeadLinearAttention: H such heads, each with its own full (D+1, D+1)
  W_PV^h, W_KQ^h, outputs summed (plus one residual). H=1 is `fla`.
- `sa`   SoftmaxAttention: one head, F_q = z_q + W_V Z softmax(Zᵀ W_Kᵀ W_Q z_q/√(D+1)):
  Q, K, V projections (D+1, D+1), no output projection, residual; the query attends to
  all N+1 tokens. Only the query's output is computed: nothing else reaches ŷ.
- `tf`   SmallTransformer: GPT-2 style. Tokens (the columns of Z) are embedded by
  Linear(D+1 -> d_model), plus a learned "query" type embedding on the last token;
  no positional embedding (the context is a set; order carries no information);
  n_layers pre-LN blocks of NON-causal multi-head softmax self-attention (every token
  sees every token, as in the linear models; `causal=True` switches to a causal mask)
  and a GELU MLP (width mlp_ratio*d_model); final LayerNorm; readout Linear(d_model -> 1)
  at the query token. nanoGPT init: N(0, 0.02), residual projections N(0, 0.02/√(2L)).

Initialisation of the attention matrices of sla/separate/fla/mhla/sa: every entry
N(0, 1/(D+1)), the paper's init. Pass a torch.Generator for reproducible weights.

Efficiency: the query output of the linear models depends on Z only through
C = Z Zᵀ/(N+1) (B, D+1, D+1) and z_q (B, D+1). `prompt_stats(Z)` computes them once;
`forward_stats(C, zq)` then costs O(B (D+1)²) (O(B H (D+1)²) for mhla) per call instead
of O(B N (D+1)²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass
class ModelConfig:
    D: int = 20  # input dimension; tokens have D+1 channels (x, y)
    d_k: int | None = None  # separate model: rows of W_Q, W_K; None = D+1 (the paper's choice)
    n_heads: int = 4  # heads of mhla and of each tf block
    d_model: int = 64  # tf: width of the residual stream
    n_layers: int = 2  # tf: number of blocks
    mlp_ratio: int = 4  # tf: MLP hidden width / d_model
    causal: bool = False  # tf: causal mask (token i sees tokens j <= i); False: every token sees all
    init_std: float | None = None  # attention matrices' std (not tf); None = 1/sqrt(D+1), the paper's init


def prompt_stats(Z: Tensor) -> tuple[Tensor, Tensor]:
    """(C, zq): all a linear-attention model needs of a prompt to predict its query label."""
    C = Z @ Z.mT / Z.shape[-1]  # (B, D+1, D+1), mean over the N+1 tokens
    zq = Z[..., -1]  # (B, D+1), the query token
    return C, zq


def linear_attention(Z: Tensor, W: Tensor) -> Tensor:
    """The paper's attention output F = Z Zᵀ W Z/(N+1); broadcasts over leading dims of Z and W."""
    return Z @ Z.mT @ W @ Z / Z.shape[-1]  # (..., D+1, N+1)


def _init_std(config: ModelConfig) -> float:
    return config.init_std if config.init_std is not None else 1.0 / math.sqrt(config.D + 1)


def _normal_parameter(shape: tuple[int, ...], std: float, generator: torch.Generator | None) -> nn.Parameter:
    return nn.Parameter(torch.randn(shape, generator=generator) * std)


class _EffectiveWAttention(nn.Module):
    """Shared forward of the models whose output is F = Z Zᵀ W Z/(N+1) for some effective W."""

    def effective_W(self) -> Tensor:
        raise NotImplementedError

    def attention_output(self, Z: Tensor) -> Tensor:
        return linear_attention(Z, self.effective_W())  # (B, D+1, N+1)

    def forward(self, Z: Tensor) -> Tensor:
        return self.attention_output(Z)[:, -1, -1]  # (B,)

    def forward_stats(self, C: Tensor, zq: Tensor) -> Tensor:
        # only the last row of C reaches the label slot: ŷ = C[D, :] W z_q
        return torch.einsum("ba,ac,bc->b", C[:, -1, :], self.effective_W(), zq)  # (B,)


class MergedLinearAttention(_EffectiveWAttention):
    """The paper's simplified linear attention: one trainable (D+1, D+1) matrix W."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        n = config.D + 1
        self.W = _normal_parameter((n, n), _init_std(config), generator)

    def effective_W(self) -> Tensor:
        return self.W


class SeparateLinearAttention(_EffectiveWAttention):
    """Query and key matrices trained separately (Fig. S1): W = W_Qᵀ W_K, same function class."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        n = config.D + 1
        d_k = config.d_k or n
        std = _init_std(config)
        self.W_Q = _normal_parameter((d_k, n), std, generator)  # drawn first, then W_K
        self.W_K = _normal_parameter((d_k, n), std, generator)

    def effective_W(self) -> Tensor:
        return self.W_Q.T @ self.W_K


class MultiHeadLinearAttention(nn.Module):
    """H heads of full linear attention, summed: F = Z + Σ_h W_PV^h Z Zᵀ W_KQ^h Z/(N+1)."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        n, H = config.D + 1, config.n_heads
        std = _init_std(config)
        self.W_PV = _normal_parameter((H, n, n), std, generator)  # value-projection, per head
        self.W_KQ = _normal_parameter((H, n, n), std, generator)  # key-query, per head

    def attention_output(self, Z: Tensor) -> Tensor:
        C, _ = prompt_stats(Z)
        heads = self.W_PV @ C.unsqueeze(1) @ self.W_KQ @ Z.unsqueeze(1)  # (B, H, D+1, N+1)
        return Z + heads.sum(1)  # (B, D+1, N+1)

    def forward(self, Z: Tensor) -> Tensor:
        return self.attention_output(Z)[:, -1, -1]  # (B,)

    def forward_stats(self, C: Tensor, zq: Tensor) -> Tensor:
        u = torch.einsum("hc,zca->zha", self.W_PV[:, -1, :], C)  # (B, H, D+1): last rows of W_PV C
        v = torch.einsum("hab,zb->zha", self.W_KQ, zq)  # (B, H, D+1): W_KQ z_q
        return zq[:, -1] + (u * v).sum((1, 2))  # (B,)


class FullLinearAttention(nn.Module):
    """One head of full linear self-attention with residual: F = Z + W_PV Z (Zᵀ W_KQ Z)/(N+1)."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        n = config.D + 1
        std = _init_std(config)
        self.W_PV = _normal_parameter((n, n), std, generator)  # value-projection
        self.W_KQ = _normal_parameter((n, n), std, generator)  # key-query

    def attention_output(self, Z: Tensor) -> Tensor:
        C, _ = prompt_stats(Z)
        return Z + self.W_PV @ C @ self.W_KQ @ Z  # (B, D+1, N+1)

    def forward(self, Z: Tensor) -> Tensor:
        return self.attention_output(Z)[:, -1, -1]  # (B,)

    def forward_stats(self, C: Tensor, zq: Tensor) -> Tensor:
        u = self.W_PV[-1] @ C  # (B, D+1): last row of W_PV C
        return zq[:, -1] + (u * (zq @ self.W_KQ.T)).sum(-1)  # (B,)


class SoftmaxAttention(nn.Module):
    """Single-head softmax attention of the query over all N+1 tokens, with residual."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        n = config.D + 1
        std = _init_std(config)
        self.W_Q = _normal_parameter((n, n), std, generator)
        self.W_K = _normal_parameter((n, n), std, generator)
        self.W_V = _normal_parameter((n, n), std, generator)

    def forward(self, Z: Tensor) -> Tensor:
        x = Z.mT  # (B, T, C) tokens as rows, C = D+1
        q = x[:, -1] @ self.W_Q.T  # (B, C)
        k = x @ self.W_K.T  # (B, T, C)
        v = x @ self.W_V.T  # (B, T, C)
        att = torch.softmax((k @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(x.shape[-1]), dim=-1)  # (B, T)
        out = x[:, -1] + (att.unsqueeze(-1) * v).sum(1)  # (B, C)
        return out[:, -1]  # (B,)


# ---- a small GPT-2-like transformer (nanoGPT layout) ----


class SelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        assert config.d_model % config.n_heads == 0, "d_model must be a multiple of n_heads"
        self.n_heads, self.causal = config.n_heads, config.causal
        self.c_attn = nn.utils.skip_init(nn.Linear, config.d_model, 3 * config.d_model)
        self.c_proj = nn.utils.skip_init(nn.Linear, config.d_model, config.d_model)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = config.mlp_ratio * config.d_model
        self.c_fc = nn.utils.skip_init(nn.Linear, config.d_model, hidden)
        self.c_proj = nn.utils.skip_init(nn.Linear, hidden, config.d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x


class SmallTransformer(nn.Module):
    """GPT-2-like encoder over the N+1 tokens; the query token's final state is read out."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.wte = nn.utils.skip_init(nn.Linear, config.D + 1, config.d_model)  # token embedding
        self.query_emb = nn.Parameter(torch.empty(config.d_model))  # marks the query token
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.utils.skip_init(nn.Linear, config.d_model, 1)
        self._init_weights(config, generator)

    def _init_weights(self, config: ModelConfig, generator: torch.Generator | None) -> None:
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name or name.startswith("ln_"):
                nn.init.ones_(p)
            elif name.endswith("c_proj.weight"):  # residual projections, as in GPT-2
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * config.n_layers), generator=generator)
            else:
                nn.init.normal_(p, 0.0, 0.02, generator=generator)

    def forward(self, Z: Tensor) -> Tensor:
        x = self.wte(Z.mT)  # (B, T, C)
        is_query = torch.zeros(x.shape[1], 1, dtype=x.dtype, device=x.device)  # (T, 1)
        is_query[-1] = 1.0
        x = x + is_query * self.query_emb  # (B, T, C)
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        return self.head(self.ln_f(x[:, -1])).squeeze(-1)  # (B,)


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "sla": MergedLinearAttention,
    "fla": FullLinearAttention,
    "mhla": MultiHeadLinearAttention,
    "sa": SoftmaxAttention,
    "tf": SmallTransformer,
}


def build_model(
    name: str,
    D: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    **kw,
) -> nn.Module:
    """An architecture from ARCHITECTURES by name; `kw` are ModelConfig fields."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](ModelConfig(D=D, **kw), generator=generator).to(dtype)
