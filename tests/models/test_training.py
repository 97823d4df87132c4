"""From-scratch causal LMs: sizes, the trainer's schedule and batches, learning, and exact resumption."""

from __future__ import annotations

import itertools
import json
import logging

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from iclab.models import (
    ModelSize,
    TokenWindows,
    TrainConfig,
    TrainHistory,
    _training,
    build_causal_lm,
    count_params,
    load_weights,
    lr_at,
    train_causal_lm,
    train_flops_per_token,
)
from iclab.runtime._errors import IclabError

V = 64  # vocabulary of the synthetic corpora


def tiny(arch: str = "llama", seed: int = 0, **kw):
    return build_causal_lm(ModelSize(d_model=32, n_layers=1, arch=arch, **kw), V, seed=seed)


def periodic_corpus(n: int = 8000, period: int = 16, seed: int = 0) -> np.ndarray:
    """A random pattern repeated: a small model can learn to predict it from context."""
    pattern = np.random.default_rng(seed).permutation(V)[:period]
    return np.tile(pattern, n // period + 1)[:n]


def fast_cfg(**kw) -> TrainConfig:
    base = {"batch_size": 8, "seq_len": 32, "warmup_steps": 5, "lr": 3e-3, "compile": False, "log_every": 5}
    return TrainConfig(**{**base, **kw})


def params_of(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


# ---------------------------------------------------------------------------------- models


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_models_have_the_documented_shape(arch):
    d, L = 32, 1
    model = tiny(arch)
    expected = {  # tied head: the token table counts once
        "llama": V * d + L * (4 * d * d + 3 * d * 4 * d + 2 * d) + d,
        "gpt2": V * d + 256 * d + L * (4 * d + 4 * d * d + 4 * d + 8 * d * d + 5 * d) + 2 * d,
    }[arch]
    assert count_params(model) == expected
    assert count_params(model, embeddings=False) < count_params(model)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert not model.training and next(model.parameters()).dtype == torch.float32
    logits = model(input_ids=torch.zeros(2, 7, dtype=torch.long)).logits
    assert logits.shape == (2, 7, V)


def test_build_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = tiny(seed=1), tiny(seed=1), tiny(seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.get_input_embeddings().weight, c.get_input_embeddings().weight)


def test_param_ratio_between_the_quick_sizes():
    small = build_causal_lm(ModelSize(d_model=32, n_layers=1), V, seed=0)
    large = build_causal_lm(ModelSize(d_model=128, n_layers=4), V, seed=0)
    assert count_params(large) / count_params(small) >= 30


def test_flops_per_token_formula():
    model = tiny()
    n_compute = count_params(model, embeddings=False) + V * 32  # + the tied head's matmul
    assert train_flops_per_token(model, 64) == 6 * n_compute + 6 * 1 * 64 * 32


def test_model_size_validation():
    size = ModelSize(d_model=128, n_layers=4)
    assert (size.name, size.heads) == ("d128-L4", 4)
    assert ModelSize(d_model=16, n_layers=1).heads == 1
    with pytest.raises(ValidationError, match="divisible"):
        ModelSize(d_model=100, n_layers=1)  # 3 heads by default
    with pytest.raises(ValidationError):
        ModelSize(d_model=32, n_layers=0)
    with pytest.raises(ValidationError):
        ModelSize(d_model=32, n_layers=1, width=3)
    with pytest.raises(ValidationError):
        size.d_model = 64  # frozen


# ---------------------------------------------------------------------------------- schedule and batches


def test_lr_schedule_shape():
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg, 100) for s in range(101)]
    assert lrs[0] == 0 and lrs[10] == pytest.approx(1e-3) and lrs[100] == pytest.approx(1e-4)
    assert max(lrs) == pytest.approx(1e-3)
    assert all(a < b for a, b in itertools.pairwise(lrs[:11]))  # warm-up rises
    assert all(a > b for a, b in itertools.pairwise(lrs[10:]))  # then decays monotonically
    assert lr_at(0, cfg.model_copy(update={"warmup_steps": 0}), 100) == pytest.approx(1e-3)


def test_token_windows_are_deterministic_and_cover_an_epoch():
    tokens = np.arange(1001) % V
    data = TokenWindows(tokens, seq_len=10, batch_size=7, seed=3)
    assert data.n_windows == 100
    again = TokenWindows(tokens, seq_len=10, batch_size=7, seed=3)
    assert all(torch.equal(data.batch(s), again.batch(s)) for s in [0, 5, 14, 15, 40])
    batch = data.batch(2)
    assert batch.shape == (7, 11) and batch.dtype == torch.long
    for row, w in zip(batch, data.window_ids(2)):  # window w is tokens[10w : 10w + 11]
        assert torch.equal(row, torch.as_tensor(tokens[10 * w: 10 * w + 11]))
    items = np.concatenate([data.window_ids(s) for s in range(15)])  # 105 items: epoch 0, then epoch 1 starts
    assert sorted(items[:100]) == list(range(100))
    assert not np.array_equal(data.permutation(0), data.permutation(1))
    assert not np.array_equal(data.permutation(0), TokenWindows(tokens, seq_len=10, batch_size=7, seed=4).permutation(0))
    assert data.total_steps(TrainConfig(epochs=2.0)) == 29  # ceil(200 / 7)
    assert data.total_steps(TrainConfig(epochs=2.0, steps=5)) == 5


def test_corpus_errors():
    with pytest.raises(IclabError, match="shorter|fewer"):
        TokenWindows(np.arange(10), seq_len=10, batch_size=1)
    with pytest.raises(IclabError, match="1-D integer"):
        TokenWindows(np.zeros((4, 40), dtype=int), seq_len=10, batch_size=1)
    with pytest.raises(IclabError, match="1-D integer"):
        TokenWindows(np.zeros(40), seq_len=10, batch_size=1)
    with pytest.raises(IclabError, match="vocabulary"):
        train_causal_lm(tiny(), np.arange(200), fast_cfg(steps=1))
    with pytest.raises(IclabError, match="context"):
        train_causal_lm(tiny("gpt2", context=16), periodic_corpus(), fast_cfg(steps=1))


def test_bad_config_values_are_rejected():
    bad_values = [("lr", 0), ("batch_size", 0), ("seq_len", -1), ("beta2", 1.0), ("steps", 0), ("epochs", 0),
                  ("grad_clip", -1), ("min_lr_ratio", 1.5), ("warmup_steps", -1), ("learning_rate", 1e-3)]
    for name, value in bad_values:
        with pytest.raises(ValidationError):
            TrainConfig(**{name: value})


# ---------------------------------------------------------------------------------- training


def test_loss_falls_on_a_structured_corpus():
    model = tiny()
    history = train_causal_lm(model, periodic_corpus(), fast_cfg(steps=60, log_every=1))
    assert history.steps == 60 and history.step == list(range(1, 61)) and history.tokens == 60 * 8 * 32
    assert history.loss[-1] < 0.5 * history.loss[0]
    assert not model.training and len(history.tokens_per_s) == 60 and history.seconds > 0


def test_resume_after_an_interruption_is_bit_identical(tmp_path):
    tokens, cfg = periodic_corpus(), fast_cfg(steps=40, ckpt_every=10, log_every=3)
    reference = tiny()
    ref_history = train_causal_lm(reference, tokens, cfg)

    class Interrupted(Exception):
        pass

    def crash_at_24(entry):
        if entry["step"] == 24:
            raise Interrupted

    with pytest.raises(Interrupted):
        train_causal_lm(tiny(), tokens, cfg, ckpt_dir=tmp_path, log=crash_at_24)
    assert [p.name for p in tmp_path.glob("*.json")] == ["ckpt-0000020.json"]

    resumed = tiny()
    seen = []
    history = train_causal_lm(resumed, tokens, cfg, ckpt_dir=tmp_path, log=lambda e: seen.append(e["step"]))
    assert seen[0] == 21  # continued from step 20, not from scratch
    assert all(torch.equal(a, b) for a, b in zip(reference.parameters(), resumed.parameters()))
    assert history.loss == ref_history.loss and history.step == ref_history.step and history.steps == 40

    # finished: nothing is trained, the final weights are loaded, the stored history returned
    fresh = tiny()
    again = train_causal_lm(fresh, tokens, cfg, ckpt_dir=tmp_path, log=lambda e: pytest.fail("trained again"))
    assert again == history
    assert all(torch.equal(a, b) for a, b in zip(reference.parameters(), fresh.parameters()))

    with pytest.raises(IclabError, match="another run"):
        train_causal_lm(tiny(), tokens, cfg.model_copy(update={"lr": 1e-2}), ckpt_dir=tmp_path)


def test_checkpoints_are_safetensors_and_json_only(tmp_path):
    from safetensors.torch import load_file

    model = tiny("gpt2")
    history = train_causal_lm(model, periodic_corpus(), fast_cfg(steps=12, ckpt_every=5), ckpt_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ckpt-0000012.json", "ckpt-0000012.model.safetensors", "ckpt-0000012.optim.safetensors"]
    meta = json.loads((tmp_path / "ckpt-0000012.json").read_text())
    assert meta["step"] == 12 and TrainHistory(**meta["history"]) == history
    assert TrainHistory.from_json(history.to_json()) == history
    optim = load_file(tmp_path / "ckpt-0000012.optim.safetensors")
    assert "state.0.exp_avg" in optim and "state.0.exp_avg_sq" in optim
    loaded = load_weights(tiny("gpt2", seed=5), tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), loaded.parameters()))
    with pytest.raises(IclabError, match="do not fit"):
        load_weights(tiny("llama"), tmp_path)


def test_compiled_multithreaded_training_runs_and_is_deterministic(caplog):
    """Compiled training runs (no fallback to eager) and is bit-reproducible on 2 threads: torch.compile's
    parallel CPU reductions are order-dependent unless deterministic algorithms are on (measured without
    them: 1e-7 apart after 70 steps of this size, growing with steps). One test, since a cold compile
    costs tens of seconds."""
    from iclab.runtime._threads import torch_threads

    runs = []
    with torch_threads(2), caplog.at_level(logging.INFO, logger=_training.__name__):
        for _ in range(2):
            model = build_causal_lm(ModelSize(d_model=64, n_layers=2), V, seed=0)
            before = params_of(model)
            history = train_causal_lm(model, periodic_corpus(40_000), fast_cfg(steps=60, compile=True, batch_size=16))
            runs.append(params_of(model))
    assert not caplog.records  # compiled, no fallback to eager
    assert history.steps == 60 and all(np.isfinite(history.loss)) and not model.training
    assert all(not torch.equal(a, b) for a, b in zip(before, runs[-1]))
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert not torch.are_deterministic_algorithms_enabled()  # the setting is restored afterwards


def test_a_failing_compiler_falls_back_to_eager(monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(_training, "_compiled_loss", lambda: broken)
    eager = tiny()
    train_causal_lm(eager, periodic_corpus(), fast_cfg(steps=4))
    model = tiny()
    with caplog.at_level(logging.INFO, logger=_training.__name__):
        train_causal_lm(model, periodic_corpus(), fast_cfg(steps=4, compile=True))
    assert sum("training eagerly" in r.message for r in caplog.records) == 1
    assert all(torch.equal(a, b) for a, b in zip(eager.parameters(), model.parameters()))


def test_bfloat16_autocast_training_step_on_cpu():
    """Mixed precision: matmuls in bfloat16, weights stay float32, the loss falls."""
    import numpy as np
    import torch

    from iclab.models import ModelSize, TrainConfig, build_causal_lm, train_causal_lm

    tokens = np.tile(np.arange(16), 400)
    model = build_causal_lm(ModelSize(d_model=32, n_layers=1), 16, seed=0)
    hist = train_causal_lm(model, tokens, TrainConfig(steps=30, batch_size=8, seq_len=32, lr=3e-3, warmup_steps=2,
                                                      log_every=10, compile=False, autocast="bfloat16"))
    assert next(model.parameters()).dtype is torch.float32
    assert hist.loss[-1] < hist.loss[0]
