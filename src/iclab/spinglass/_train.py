"""Full-batch Adam training of in-context linear-regression models (the paper's "SGD").

The paper trains the merged (or separate) linear attention with full-batch Adam on the MSE
over P prompts (`nn.MSELoss`, no ½) with coupled weight decay. That MSE is a quadratic form in
w = vec(W) (row-major), because ŷ^μ = <W, s^μ>:

    L(w) = (1/P) Σ_μ (s^μ·w − y^μ)² = wᵀ S w − 2 hᵀ w + yy,
    S = mean_μ s^μ s^μᵀ,  h = mean_μ y^μ s^μ,  yy = mean_μ (y^μ)².

So the loss, its gradient and therefore the whole Adam trajectory depend on the prompts only
through (S, h, yy). `train_quadratic` trains on those: an epoch costs O((D+1)⁴) instead of
O(P N (D+1)²), with the gradient 2 (S w − h) written out (no autograd). `train_prompts` is the
naive reference that runs the attention formula on all P prompts every epoch with autograd;
both draw the same init and use torch.optim.Adam, so their trajectories agree to rounding.

Both are batched over R repeats: parameters (R, ., D+1), and the optimised loss is the SUM
over repeats of each repeat's MSE, so each repeat's gradient is its own. Adam is elementwise,
so one Adam over the batched tensor is exactly R independent Adams.

`train_architecture` is the generic trainer of the Fig. S8 architectures (`models.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from ._attention import linear_attention, prompt_stats

MODELS = ("merged", "separate")


@dataclass
class TrainResult:
    W: Tensor  # (R, D+1, D+1) final effective weights (W_Qᵀ W_K for the separate model)
    train_loss: Tensor  # (R, T) training MSE after `epochs[t]` Adam steps
    test_loss: Tensor | None  # (R, T) test MSE at the same points; None without test data
    epochs: Tensor  # (T,) number of Adam steps taken before each record: 0, k, 2k, ..., epochs
    params: dict[str, Tensor]  # trained raw parameters: {"W"} or {"W_Q", "W_K"}, each (R, ., D+1)


@dataclass
class ArchitectureResult:
    train_loss: Tensor  # (T,) training MSE after `epochs[t]` epochs
    test_loss: Tensor | None  # (T,) test MSE at the same points; None without test data
    epochs: Tensor  # (T,) epochs completed before each record: 0, k, 2k, ..., epochs


# -----------------------------------------------------------------------------
# parameters


def init_params(
    model: str,
    R: int,
    D: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    d_k: int | None = None,
) -> dict[str, Tensor]:
    """Initial weights, every entry N(0, 1/(D+1)) (the paper's init), drawn in a fixed order
    (W; or W_Q then W_K) so both trainers start from the same point given the same seed."""
    n, std = D + 1, 1.0 / math.sqrt(D + 1)
    if model == "merged":
        return {"W": torch.randn(R, n, n, generator=generator, dtype=dtype) * std}
    if model == "separate":
        k = d_k or n
        W_Q = torch.randn(R, k, n, generator=generator, dtype=dtype) * std
        W_K = torch.randn(R, k, n, generator=generator, dtype=dtype) * std
        return {"W_Q": W_Q, "W_K": W_K}
    raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")


def effective_W(params: dict[str, Tensor]) -> Tensor:
    """The merged matrix the parameters implement: W, or W_Qᵀ W_K."""
    if "W" in params:
        return params["W"]  # (R, D+1, D+1)
    return params["W_Q"].mT @ params["W_K"]  # (R, D+1, D+1)


def _start_params(
    model: str, R: int, D: int, init: dict[str, Tensor] | None, generator, dtype, d_k
) -> dict[str, Tensor]:
    if init is None:
        params = init_params(model, R, D, generator=generator, dtype=dtype, d_k=d_k)
    else:
        params = {k: v.detach().to(dtype).clone() for k, v in init.items()}
        expected = set(init_params(model, 1, 1, dtype=dtype))
        if set(params) != expected or any(v.shape[0] != R for v in params.values()):
            raise ValueError(f"init for {model!r} must hold {sorted(expected)}, each with {R} repeats")
    return {k: v.requires_grad_(True) for k, v in params.items()}


# -----------------------------------------------------------------------------
# the shared optimisation loop


def record_points(epochs: int, record_every: int) -> list[int]:
    """Steps after which losses are recorded: 0, k, 2k, ... and always the final one."""
    points = list(range(0, epochs + 1, record_every))
    return points if points[-1] == epochs else points + [epochs]


def _adam_full_batch(
    params: dict[str, Tensor],
    train_loss: Callable[[Tensor], Tensor],
    test_loss: Callable[[Tensor], Tensor] | None,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    record_every: int,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Full-batch Adam, one step per epoch, on the sum over repeats of the per-repeat losses.

    `train_loss(W)` / `test_loss(W)` map the effective W (R, D+1, D+1) to per-repeat MSEs (R,).
    The recorded loss at step t is that of the weights after t steps (the loss whose gradient
    drives step t+1), so the last record belongs to the returned weights.
    """
    opt = torch.optim.Adam(params.values(), lr=lr, weight_decay=weight_decay)
    points = set(record_points(epochs, record_every))
    train_hist, test_hist = [], []
    for t in range(epochs + 1):
        with torch.set_grad_enabled(t < epochs):
            losses = train_loss(effective_W(params))  # (R,)
        if t in points:
            train_hist.append(losses.detach().clone())
            if test_loss is not None:
                with torch.no_grad():
                    test_hist.append(test_loss(effective_W(params)))
        if t == epochs:
            break
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()  # sum, not mean: each repeat gets exactly its own gradient
        opt.step()
    train = torch.stack(train_hist, dim=1)  # (R, T)
    test = torch.stack(test_hist, dim=1) if test_loss is not None else None  # (R, T)
    return train, test, torch.tensor(sorted(points))


# -----------------------------------------------------------------------------
# merged / separate linear attention


def quadratic_loss(W: Tensor, S: Tensor, h: Tensor, yy: Tensor) -> Tensor:
    """Per-repeat MSE wᵀ S w − 2 hᵀ w + yy; W (R, D+1, D+1), S (R|1, n, n), h (R|1, n), yy (R|1,)."""
    w = W.flatten(-2)  # (R, n), row-major vec(W)
    Sw = (S @ w.unsqueeze(-1)).squeeze(-1)  # (R, n)
    return (w * Sw).sum(-1) - 2 * (h * w).sum(-1) + yy  # (R,)


def _batched_stats(S: Tensor, h: Tensor, yy: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Give unbatched statistics a leading repeat axis of 1 (it then broadcasts)."""
    S, h, yy = (torch.as_tensor(x).to(dtype) for x in (S, h, yy))
    if S.dim() == 2:
        S, h, yy = S.unsqueeze(0), h.unsqueeze(0), yy.reshape(1)
    return S, h, yy.reshape(S.shape[0])


def _unpack_stats(stats) -> tuple[Tensor, Tensor, Tensor]:
    """(S, h, yy) from a tuple or from anything with .S, .h, .yy (e.g. data.SuffStats)."""
    if hasattr(stats, "S"):
        return stats.S, stats.h, stats.yy
    S, h, yy = stats
    return S, h, yy


def _record_schedule(epochs: int, record_every: int | None, record_at: list[int] | None) -> list[int]:
    if record_at is not None:
        return sorted({0, epochs} | {int(e) for e in record_at if 0 <= e <= epochs})
    return record_points(epochs, record_every or epochs)


def _live_spins(S: Tensor, h: Tensor) -> Tensor:
    """Spins that enter some repeat's loss (a nonzero row of S or entry of h). The others get a zero
    loss gradient (only weight decay moves them), e.g. the last column of W, whose features vanish."""
    live = (S != 0).any(-1).any(0) | (h != 0).any(0)  # (n,)
    return live.nonzero()[:, 0]


def train_quadratic(
    stats_S: Tensor,
    stats_h: Tensor,
    stats_yy: Tensor,
    *,
    model: str = "merged",
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    test_stats=None,
    record_every: int = 1,
    init: dict[str, Tensor] | None = None,
    d_k: int | None = None,
    record_at: list[int] | None = None,
    group: int = 16,
) -> TrainResult:
    """Full-batch Adam on the training MSE written through sufficient statistics.

    Statistics are (n, n), (n,), () for one run or (R, n, n), (R, n), (R,) for R repeats,
    n = (D+1)². `test_stats`: (S, h, yy) or a SuffStats, batched per repeat or shared.
    `init` overrides the random init with given parameters (R, ., D+1) (see `init_params`).
    Outputs always carry the repeat axis R (R = 1 for unbatched statistics).
    Losses are recorded after 0, k, 2k, ..., epochs steps (k = record_every), or at the
    given `record_at` epochs (e.g. log-spaced; 0 and the end are always included).

    Same maths as `train_prompts` (same init draw, torch.optim.Adam with coupled weight decay,
    same records), but no autograd: the gradient of wᵀ S w − 2 hᵀ w + yy is 2 (S w − h), computed
    on the live spins only (the last column of W has zero features) as one matrix-vector product
    per repeat; the chain rule gives the separate model's W_K Gᵀ and W_Q G. Repeats are trained
    in balanced groups of at most `group` with one Adam each (Adam is elementwise, so that is R
    independent Adams): a loop of `mv` keeps each S hot in cache, where a batched `bmm` over
    distinct S's is memory-bound, and skipping autograd saves ~100 µs a step. The optimisation
    runs in `dtype`; the recorded losses are evaluated in float64 (a float32 quadratic form
    cancels to ~1e-7, hiding small training losses). The init is drawn in float64 whatever
    `dtype`, so float32 and float64 runs start alike.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")
    S64, h64, yy64 = _batched_stats(stats_S, stats_h, stats_yy, torch.float64)
    R, n = S64.shape[0], S64.shape[-1]
    D = math.isqrt(n) - 1
    if (D + 1) ** 2 != n:
        raise ValueError(f"S must be (n, n) with n = (D+1)², got n = {n}")
    params = _start_params(model, R, D, init, generator, torch.float64, d_k)
    params = {k: v.detach().to(dtype) for k, v in params.items()}
    tests = _batched_stats(*_unpack_stats(test_stats), torch.float64) if test_stats is not None else None
    live = _live_spins(S64, h64)
    points = _record_schedule(epochs, record_every, record_at)
    where = {t: j for j, t in enumerate(points)}
    train_hist = torch.zeros(R, len(points), dtype=torch.float64)
    test_hist = torch.zeros(R, len(points), dtype=torch.float64) if tests is not None else None
    out = {k: torch.empty_like(v) for k, v in params.items()}

    def sub(S: Tensor, h: Tensor, yy: Tensor, rows: range, dt: torch.dtype):
        """Per-repeat live blocks (list of (na, na)), (G, na), (G,); shared statistics broadcast."""
        def pick(x: Tensor) -> Tensor:
            return x[rows.start : rows.stop] if S.shape[0] > 1 else x.expand(len(rows), *x.shape[1:])

        Sl = pick(S)[:, live][:, :, live].to(dt).contiguous()
        return list(Sl.unbind(0)), pick(h)[:, live].to(dt), pick(yy).to(dt)

    def mse64(wl: Tensor, st) -> Tensor:
        w = wl.double()  # (G, na)
        Sw = torch.stack([torch.mv(S_r, w_r) for S_r, w_r in zip(st[0], w)])  # (G, na)
        return (w * Sw).sum(-1) - 2 * (w * st[1]).sum(-1) + st[2]  # (G,)

    n_groups = -(-R // max(1, group))
    bounds = [round(R * g / n_groups) for g in range(n_groups + 1)]  # balanced group sizes
    for g0, g1 in zip(bounds[:-1], bounds[1:]):
        rows, G = range(g0, g1), g1 - g0
        S_list, hl, _ = sub(S64, h64, yy64, rows, dtype)
        tr64 = sub(S64, h64, yy64, rows, torch.float64)
        te64 = sub(*tests, rows, torch.float64) if tests is not None else None
        p = {k: v[g0:g1].clone() for k, v in params.items()}
        opt = torch.optim.Adam(list(p.values()), lr=lr, weight_decay=weight_decay, foreach=False)
        Sw = torch.zeros(G, live.numel(), dtype=dtype)
        Sw_rows = list(Sw.unbind(0))
        grad_W = torch.zeros(G, n, dtype=dtype)  # ∂MSE/∂W; dead spins stay 0
        for t in range(epochs + 1):
            W = p["W"] if model == "merged" else p["W_Q"].mT @ p["W_K"]  # (G, D+1, D+1)
            wl = W.reshape(G, n)[:, live]  # (G, na)
            if t in where:
                train_hist[g0:g1, where[t]] = mse64(wl, tr64)
                if te64 is not None:
                    test_hist[g0:g1, where[t]] = mse64(wl, te64)
            if t == epochs:
                break
            for S_r, w_r, o in zip(S_list, wl.unbind(0), Sw_rows):
                torch.mv(S_r, w_r, out=o)
            grad_W[:, live] = 2 * (Sw - hl)
            gW = grad_W.reshape(G, D + 1, D + 1)
            if model == "merged":
                p["W"].grad = gW
            else:  # W = W_Qᵀ W_K: ∂W_Q = W_K Gᵀ, ∂W_K = W_Q G
                p["W_Q"].grad, p["W_K"].grad = p["W_K"] @ gW.mT, p["W_Q"] @ gW
            opt.step()
        for k, v in p.items():
            out[k][g0:g1] = v
    return TrainResult(W=effective_W(out), train_loss=train_hist, test_loss=test_hist,
                       epochs=torch.tensor(points), params=out)


def prompt_mse(W: Tensor, Z: Tensor, y: Tensor) -> Tensor:
    """Per-repeat MSE of the full attention formula; W (R, D+1, D+1), Z (P|R,P, D+1, N+1), y (P|R,P)."""
    y_hat = linear_attention(Z, W.unsqueeze(1))[..., -1, -1]  # (R, P)
    return ((y_hat - y) ** 2).mean(-1)  # (R,)


def train_prompts(
    Z: Tensor,
    y: Tensor,
    *,
    model: str = "merged",
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    test: tuple[Tensor, Tensor] | None = None,
    record_every: int = 1,
    init: dict[str, Tensor] | None = None,
    d_k: int | None = None,
    repeats: int = 1,
) -> TrainResult:
    """The naive reference of `train_quadratic`: same init, same Adam, but every epoch runs
    F = Z Zᵀ W Z/(N+1) on all P prompts. Z (P, D+1, N+1) is shared by `repeats` runs, or
    Z (R, P, D+1, N+1) gives one prompt set per repeat. `test` = (Z_test, y_test)."""
    Z, y = Z.to(dtype), y.to(dtype)
    R = Z.shape[0] if Z.dim() == 4 else repeats
    D = Z.shape[-2] - 1
    params = _start_params(model, R, D, init, generator, dtype, d_k)

    test_fn = None
    if test is not None:
        Zt, yt = test[0].to(dtype), test[1].to(dtype)
        test_fn = lambda W: prompt_mse(W, Zt, yt)  # noqa: E731

    train, test_hist, points = _adam_full_batch(
        params,
        lambda W: prompt_mse(W, Z, y),
        test_fn,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        record_every=record_every,
    )
    final = {k: v.detach() for k, v in params.items()}
    return TrainResult(W=effective_W(final), train_loss=train, test_loss=test_hist, epochs=points, params=final)


# -----------------------------------------------------------------------------
# any architecture (Fig. S8)


def _model_inputs(model: nn.Module, Z: Tensor, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """What the model's fast path consumes: (C, zq) when it has `forward_stats`, else (Z,)."""
    Z = Z.to(dtype)
    return prompt_stats(Z) if hasattr(model, "forward_stats") else (Z,)


def _predict(model: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
    return model.forward_stats(*inputs) if len(inputs) == 2 else model(*inputs)  # (B,)


@torch.no_grad()
def _dataset_mse(model: nn.Module, inputs: tuple[Tensor, ...], y: Tensor, chunk: int) -> float:
    """MSE over a whole data set, evaluated in chunks to bound memory (attention is O(T²))."""
    total = 0.0
    for start in range(0, y.shape[0], chunk):
        part = tuple(x[start : start + chunk] for x in inputs)
        total += ((_predict(model, part) - y[start : start + chunk]) ** 2).sum().item()
    return total / y.shape[0]


SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, total: int, schedule: str, warmup_steps: int = 0) -> float:
    """Multiplier of the base learning rate at optimizer step `step` of `total`: a linear warm-up
    over `warmup_steps`, then constant or a cosine decay to 0 at `total`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_architecture(
    model: nn.Module,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor] | None = None,
    *,
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    record_every: int = 1,
    eval_chunk: int = 1024,
    schedule: str = "constant",
    warmup: float = 0.0,
) -> ArchitectureResult:
    """Adam (coupled weight decay) on the MSE of any model mapping Z (B, D+1, N+1) -> (B,).

    batch_size=None is full batch, one step per epoch (the paper's protocol); otherwise each
    epoch is one pass over a `generator`-shuffled permutation. Models with `forward_stats`
    train on precomputed (C, zq), so an epoch costs O(P (D+1)²). The model is trained in place,
    in its own dtype; losses are recorded after 0, k, 2k, ..., epochs epochs.
    The learning rate is `lr` times `lr_factor` (schedule "constant" or "cosine", with a linear
    warm-up over the first `warmup` fraction of the steps): softmax models need a decaying rate
    to settle, the paper's linear protocol uses a constant one.
    """
    dtype, device = next(model.parameters()).dtype, next(model.parameters()).device
    X, y = _model_inputs(model, train[0].to(device), dtype), train[1].to(device, dtype)
    Xt = _model_inputs(model, test[0].to(device), dtype) if test is not None else None
    yt = test[1].to(device, dtype) if test is not None else None
    P = y.shape[0]
    full_batch = batch_size is None or batch_size >= P
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    points = set(record_points(epochs, record_every))
    train_hist, test_hist = [], []
    total = epochs * (1 if full_batch else math.ceil(P / batch_size))
    warm = math.ceil(warmup * total)
    step = 0

    def adam_step() -> None:
        nonlocal step
        opt.param_groups[0]["lr"] = lr * lr_factor(step, total, schedule, warm)
        opt.step()
        step += 1

    def record(train_mse: float) -> None:
        train_hist.append(train_mse)
        if Xt is not None:
            test_hist.append(_dataset_mse(model, Xt, yt, eval_chunk))

    for epoch in range(epochs + 1):
        if full_batch:
            with torch.set_grad_enabled(epoch < epochs):
                loss = ((_predict(model, X) - y) ** 2).mean()
            if epoch in points:
                record(loss.item())
            if epoch == epochs:
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            adam_step()
            continue
        if epoch in points:
            record(_dataset_mse(model, X, y, eval_chunk))
        if epoch == epochs:
            break
        order = torch.randperm(P, generator=generator).to(device)  # (P,) drawn on the CPU: the same order anywhere
        for start in range(0, P, batch_size):
            idx = order[start : start + batch_size]
            loss = ((_predict(model, tuple(x[idx] for x in X)) - y[idx]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            adam_step()

    as_tensor = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    return ArchitectureResult(
        train_loss=as_tensor(train_hist),
        test_loss=as_tensor(test_hist) if Xt is not None else None,
        epochs=torch.tensor(sorted(points)),
    )
