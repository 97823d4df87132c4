"""Shapes of every architecture, and the fast (C, zq) path agrees with the full forward."""

import pytest
import torch

from iclab.spinglass._data import attention_output, sample_prompts
from iclab.spinglass._attention import (
    ARCHITECTURES,
    MergedLinearAttention,
    ModelConfig,
    SeparateLinearAttention,
    build_model,
    prompt_stats,
)

D, N, B = 4, 9, 6


def random_Z(seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Arbitrary tokens (query label slot NOT zeroed), to test the algebra, not the data model."""
    return torch.randn(B, D + 1, N + 1, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_maps_prompts_to_one_prediction_each(name):
    model = build_model(name, D, generator=torch.Generator().manual_seed(0))
    y_hat = model(random_Z(dtype=torch.float32))
    assert y_hat.shape == (B,)
    assert torch.isfinite(y_hat).all()
    y_hat.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_build_model_is_deterministic_given_a_generator(name):
    a = build_model(name, D, generator=torch.Generator().manual_seed(3))
    b = build_model(name, D, generator=torch.Generator().manual_seed(3))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("name", ["sla", "fla", "mhla"])
def test_forward_stats_equals_forward(name):
    model = build_model(name, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    Z = random_Z(seed=2)
    C, zq = prompt_stats(Z)
    assert C.shape == (B, D + 1, D + 1) and zq.shape == (B, D + 1)
    torch.testing.assert_close(model.forward_stats(C, zq), model(Z), rtol=1e-12, atol=1e-12)


def test_separate_model_is_merged_model_with_effective_W():
    cfg = ModelConfig(D=D)
    sep = SeparateLinearAttention(cfg, generator=torch.Generator().manual_seed(0)).double()
    merged = MergedLinearAttention(cfg).double()
    with torch.no_grad():
        merged.W.copy_(sep.W_Q.T @ sep.W_K)
    Z = random_Z()
    torch.testing.assert_close(sep(Z), merged(Z), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sep.forward_stats(*prompt_stats(Z)), sep(Z), rtol=1e-12, atol=1e-12)


def test_merged_model_matches_the_data_module_readout():
    prompts = sample_prompts(D, N, B, generator=torch.Generator().manual_seed(0))
    model = build_model("sla", D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = attention_output(model.W.detach(), prompts.Z)
    torch.testing.assert_close(model(prompts.Z), expected, rtol=1e-12, atol=1e-12)


def test_one_head_mhla_is_fla():
    fla = build_model("fla", D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mhla = build_model("mhla", D, n_heads=1, dtype=torch.float64)
    with torch.no_grad():
        mhla.W_PV.copy_(fla.W_PV[None])
        mhla.W_KQ.copy_(fla.W_KQ[None])
    Z = random_Z()
    torch.testing.assert_close(mhla(Z), fla(Z), rtol=1e-12, atol=1e-12)


def test_linear_models_init_has_the_papers_scale():
    W = build_model("sla", 40, generator=torch.Generator().manual_seed(0)).W
    assert abs(W.std().item() * 41**0.5 - 1.0) < 0.05


def test_transformer_prediction_is_permutation_invariant_in_the_context():
    """Non-causal, no positional embedding: the context is a set."""
    model = build_model("tf", D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    Z = random_Z()
    perm = torch.cat([torch.randperm(N, generator=torch.Generator().manual_seed(1)), torch.tensor([N])])
    torch.testing.assert_close(model(Z[:, :, perm]), model(Z), rtol=1e-10, atol=1e-12)


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("lstm", D)
