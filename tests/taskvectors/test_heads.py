"""Head-level causal mediation on tiny random models: per-head outputs, the patching identity, the
cached indirect effects against the naive ones, a planted head found first, and bad input."""

import pytest
import torch

from iclab.models import decoder_blocks, forward_last
from iclab.models._heads import head_contribution, patch_heads, record_heads
from iclab.runtime._errors import IclabError
from iclab.taskvectors._heads import (function_vector, indirect_effects, indirect_effects_naive,
                                     mean_head_activations, top_heads)
from iclab.taskvectors._method import TaskVectorRunner

from ..models.tiny import tiny_lm

PROMPTS = ["example:go->went\nexample:see->", "a->b\nc->", "hello there->", "x->y\nz->w\nq->"]


@pytest.fixture(scope="module", params=["llama", "gpt2", "gpt_neox", "qwen3", "falcon"])
def lm(request):
    return tiny_lm(request.param)


def _answers(lm) -> torch.Tensor:
    return torch.tensor(lm.tokenizer(["a", "b", "c", "d"], add_special_tokens=False)["input_ids"])[:, 0]


def test_patching_every_head_with_its_own_output_changes_nothing(lm):
    enc = lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    from iclab.models import Batch

    batch = Batch(enc["input_ids"], enc["attention_mask"])
    with record_heads(lm.model) as rec:
        clean, _ = forward_last(lm.model, batch)
    own = rec.values  # (B, L, H, d)
    B, L, H, _ = own.shape
    for l in range(L):
        for h in range(H):
            with patch_heads(lm.model, own[:, l, h], [l] * B, [h] * B):
                patched, _ = forward_last(lm.model, batch)
            assert torch.equal(patched, clean), (l, h)


def test_cached_indirect_effects_equal_the_naive_ones(lm):
    runner = TaskVectorRunner(lm, batch_size=3)
    means = mean_head_activations(runner, PROMPTS) * 5  # scaled so the patches matter
    fast = indirect_effects(runner, PROMPTS, _answers(lm), means, heads_per_pass=5)
    tokens_fast = runner.tokens
    runner.tokens = 0
    slow = indirect_effects_naive(runner, PROMPTS, _answers(lm), means)
    assert fast.shape == (len(PROMPTS), *means.shape[:2])
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-4)
    assert fast.abs().max() > 1e-4  # the patches did something
    assert tokens_fast < runner.tokens  # and the cached way processed fewer tokens


def test_a_planted_head_is_ranked_first():
    """Only head (1, 2) writes anything through its projection: every other head's IE is exactly 0, and the
    planted head, whose mean output raises the answer token, comes first."""
    lm = tiny_lm("llama", n_layers=3)
    model = lm.model
    n_heads = model.config.num_attention_heads
    d = model.config.hidden_size // n_heads
    with torch.no_grad():
        for l, block in enumerate(decoder_blocks(model)):
            w = block.self_attn.o_proj.weight  # (D, H * d)
            for h in range(n_heads):
                if (l, h) != (1, 2):
                    w[:, h * d:(h + 1) * d] = 0
    runner = TaskVectorRunner(lm, batch_size=8)
    means = mean_head_activations(runner, PROMPTS) * 20
    push = head_contribution(model, 1, 2, means[1, 2])  # what the planted head adds to the residual
    answer = int((model.get_output_embeddings().weight.float() @ push).argmax())
    aie = indirect_effects(runner, PROMPTS, torch.full((len(PROMPTS),), answer), means).mean(0)
    assert top_heads(aie, 1) == [(1, 2)]
    others = aie.clone()
    others[1, 2] = 0
    assert others.abs().max() == 0 and aie[1, 2] > 0


def test_function_vector_is_the_sum_of_head_contributions(lm):
    runner = TaskVectorRunner(lm)
    means = mean_head_activations(runner, PROMPTS)
    heads = [(0, 1), (1, 0)]
    fv = function_vector(runner, means, heads)
    assert fv.shape == (lm.model.config.hidden_size,)
    torch.testing.assert_close(fv, head_contribution(lm.model, 0, 1, means[0, 1]) + head_contribution(lm.model, 1, 0, means[1, 0]))


def test_bad_input_is_one_line(lm):
    runner = TaskVectorRunner(lm)
    means = mean_head_activations(runner, PROMPTS[:1])
    L, H = means.shape[:2]
    with pytest.raises(IclabError, match=f"k = {L * H + 1} top heads"):
        top_heads(torch.zeros(L, H), L * H + 1)
    with pytest.raises(IclabError, match="no head"):
        with patch_heads(lm.model, means[0, 0][None], [0], [H]):
            pass
    with pytest.raises(IclabError, match="do not fit this model"):
        indirect_effects(runner, PROMPTS[:1], _answers(lm)[:1], means[:, :1])


@pytest.mark.parametrize("family", ["gemma3_text", "gemma2", "olmo2", "llama"])
def test_head_contributions_sum_to_the_normalised_attention_output(family):
    """Blocks that normalise their attention output before the residual add (Gemma 2/3, OLMo 2): the heads'
    contributions, the norm linearised at the layer's output, sum to that norm of the whole output; in
    Llama-style blocks there is no such norm and the plain projections sum to the projection."""
    from iclab.models import attention_out, attention_post_norm

    lm = tiny_lm(family)
    runner = TaskVectorRunner(lm)
    means = mean_head_activations(runner, PROMPTS) * 3
    L, H, d = means.shape
    for l in range(L):
        proj, norm = attention_out(lm.model, l), attention_post_norm(lm.model, l)
        assert (norm is None) == (family == "llama")
        total = torch.stack([head_contribution(lm.model, l, h, means[l, h], means[l]) for h in range(H)]).sum(0)
        with torch.no_grad():
            whole = proj(means[l].reshape(1, -1)) - proj(torch.zeros(1, H * d))
            expected = whole[0] if norm is None else norm(whole)[0]
        torch.testing.assert_close(total, expected, atol=1e-5, rtol=1e-4)
    if family != "llama":
        with pytest.raises(IclabError, match="needs the whole layer's head outputs"):
            head_contribution(lm.model, 0, 0, means[0, 0])
