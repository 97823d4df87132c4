"""The intervention layer on tiny random models of five architectures: exact identities."""

import pytest
import torch

from iclab.models import Batch, decoder_blocks, forward_last, patch_residual, record_residual, residual_to_logits

from .tiny import ARCHS, padded_batch, tiny_model


def _no_hooks(model) -> bool:
    return all(not m._forward_hooks for m in model.modules())


@pytest.fixture(params=ARCHS)
def model(request):
    return tiny_model(request.param)


def test_blocks_found(model):
    assert len(decoder_blocks(model)) == 3


def test_record_shapes(model):
    batch = padded_batch()
    with record_residual(model) as rec:
        forward_last(model, batch)
    assert rec.states.shape == (3, 3, model.config.hidden_size)  # (B, L, D)
    assert rec.states.dtype == torch.float32
    assert _no_hooks(model)


def test_patching_own_state_reproduces_logits_at_every_layer(model):
    batch = padded_batch()
    with record_residual(model) as rec:
        clean, _ = forward_last(model, batch)
    for layer in range(3):
        with patch_residual(model, rec.states[:, layer], layers=layer) as patch:
            patched, _ = forward_last(model, batch)
        assert patch.edited == 3
        assert torch.equal(patched, clean), layer
    assert _no_hooks(model)


def test_patch_changes_logits(model):
    batch = padded_batch()
    clean, _ = forward_last(model, batch)
    with patch_residual(model, torch.randn(3, model.config.hidden_size), layers=1):
        patched, _ = forward_last(model, batch)
    assert (patched - clean).abs().max() > 1e-3


def test_per_row_layers_equal_separate_runs(model):
    batch = padded_batch()
    vectors = torch.randn(3, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    layers = torch.tensor([2, 0, 1])
    with patch_residual(model, vectors, layers=layers):
        mixed, _ = forward_last(model, batch)
    for b in range(3):
        with patch_residual(model, vectors, layers=int(layers[b])):
            same_layer, _ = forward_last(model, batch)
        assert torch.equal(mixed[b], same_layer[b])
        row = Batch(batch.input_ids[b : b + 1, batch.attention_mask[b] == 1], batch.attention_mask[b : b + 1, batch.attention_mask[b] == 1])
        with patch_residual(model, vectors[b : b + 1], layers=int(layers[b])):
            alone, _ = forward_last(model, row)
        torch.testing.assert_close(mixed[b], alone[0], atol=1e-5, rtol=1e-5)


def test_left_padding_gives_unpadded_logits(model):
    batch = padded_batch()
    logits, _ = forward_last(model, batch)
    for b in range(3):
        keep = batch.attention_mask[b] == 1
        alone, _ = forward_last(model, Batch(batch.input_ids[b : b + 1, keep], batch.attention_mask[b : b + 1, keep]))
        torch.testing.assert_close(logits[b], alone[0], atol=1e-5, rtol=1e-5)


def test_add_mode(model):
    batch = padded_batch()
    with record_residual(model) as rec:
        clean, _ = forward_last(model, batch)
    v = torch.randn(3, model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    with patch_residual(model, v, layers=1, mode="add"):
        added, _ = forward_last(model, batch)
    with patch_residual(model, rec.states[:, 1] + v, layers=1):
        replaced, _ = forward_last(model, batch)
    torch.testing.assert_close(added, replaced, atol=1e-5, rtol=1e-5)
    with patch_residual(model, torch.zeros_like(v), layers=1, mode="add"):
        unchanged, _ = forward_last(model, batch)
    assert torch.equal(unchanged, clean)


def test_hooks_removed_after_exception(model):
    batch = padded_batch()
    with pytest.raises(ZeroDivisionError):
        with patch_residual(model, torch.zeros(3, model.config.hidden_size), layers=[0, 1, 2]):
            forward_last(model, batch)
            1 / 0
    with pytest.raises(ZeroDivisionError):
        with record_residual(model):
            1 / 0
    assert _no_hooks(model)


def test_unfired_patch_is_an_error(model):
    with pytest.raises(RuntimeError, match="patched"):
        with patch_residual(model, torch.zeros(3, model.config.hidden_size), layers=0):
            pass
    assert _no_hooks(model)


def test_bad_layers_rejected(model):
    with pytest.raises(ValueError, match="patch layers"):
        with patch_residual(model, torch.zeros(3, model.config.hidden_size), layers=3):
            pass


def test_last_block_state_projects_to_the_models_logits(model):
    batch = padded_batch()
    with record_residual(model, layers=[2]) as rec:
        logits, _ = forward_last(model, batch)
    torch.testing.assert_close(residual_to_logits(model, rec.states[:, 0]), logits, atol=1e-4, rtol=1e-4)


def test_cached_last_token_matches_full_pass(model):
    batch = padded_batch()
    full, _ = forward_last(model, batch)
    prefix = Batch(batch.input_ids[:, :-1], batch.attention_mask[:, :-1])
    _, cache = forward_last(model, prefix, use_cache=True)
    last, _ = forward_last(model, Batch(batch.input_ids[:, -1:], batch.attention_mask), past_key_values=cache)
    torch.testing.assert_close(last, full, atol=1e-5, rtol=1e-5)
