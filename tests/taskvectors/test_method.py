"""The task-vector method on tiny random models: the cached layer sweep equals the naive one, the
token counter, last-token states under left padding, the patching identity, and evaluate_task."""

import string

import numpy as np
import pytest
import torch

from iclab.taskvectors import _method as method
from iclab.taskvectors._episodes import sample_episodes, split_queries
from iclab.runtime._seeding import make_rng
from iclab.taskvectors._evaluate import evaluate_task, extract_thetas
from iclab.taskvectors._method import TaskVectorRunner
from iclab.taskvectors._prompts import get_template, prepare_task
from iclab.taskvectors._tasks import Task

from ..models.tiny import CHARS, tiny_lm, tiny_tokenizer

SWEEP_ARCHS = ["llama", "gpt2", "gpt_neox", "qwen2", "gemma3_text"]

# Different lengths (and one duplicate length) so left padding and length-sorted batching matter.
PROMPTS = [
    "example:hello->",
    "example:ab->",
    "example:a much longer input->",
    "example:x->",
    "example:été->",
    "example:cd->",
    "example:seven->",
]


@pytest.fixture(scope="module", params=SWEEP_ARCHS)
def lm(request):
    return tiny_lm(request.param)


def _thetas(lm, n: int, seed: int = 0, scale: float = 4.0) -> torch.Tensor:
    """Random task vectors (N, n_layers, D), large enough to change the predictions."""
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, lm.n_layers, lm.model.config.hidden_size, generator=g)


def _n_tokens(lm, prompts) -> list[int]:
    return [len(ids) for ids in lm.tokenizer(list(prompts))["input_ids"]]


# -- the tokenizer ------------------------------------------------------------------------------


def test_char_tokenizer_round_trip():
    tok = tiny_tokenizer()
    assert len(tok) == 4 + len(CHARS)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    text = "example:été->\n\nQ: a b"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1
    assert tok.decode(ids, skip_special_tokens=True) == text
    for c in CHARS:
        (i,) = tok(c, add_special_tokens=False)["input_ids"]
        assert tok.decode([i]) == c


def test_tiny_lm_is_left_padded(lm):
    assert lm.tokenizer.padding_side == "left"
    assert lm.n_layers == 3
    assert lm.model.config.vocab_size >= len(lm.tokenizer)


# -- the layer sweep ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [2, 32])
def test_sweep_equals_naive_sweep(lm, batch_size):
    runner = TaskVectorRunner(lm, batch_size=batch_size)
    thetas = _thetas(lm, len(PROMPTS))
    layers = list(range(lm.n_layers))
    ours = runner.sweep_patched(PROMPTS, thetas, layers)
    naive = runner.sweep_patched_naive(PROMPTS, thetas, layers)
    assert ours.shape == (len(PROMPTS), lm.n_layers)
    assert torch.equal(ours, naive)
    clean = runner.predict(PROMPTS)
    assert (ours != clean[:, None]).any(), "the random thetas must change some predictions, or this test is vacuous"
    # A subset of layers, out of order: column j is layer layers[j].
    sub = runner.sweep_patched(PROMPTS, thetas, [2, 0])
    assert torch.equal(sub, ours[:, [2, 0]])


def test_sweep_logits_equal_naive_logits(lm, monkeypatch):
    """Capture the logits of the library's own passes (one batch: prompts sorted by length so the
    batch order is the prompt order) and compare the cached sweep's with the full reruns'."""
    prompts = sorted(PROMPTS, key=lambda p: (len(p), PROMPTS.index(p)))
    assert sorted(_n_tokens(lm, prompts)) == _n_tokens(lm, prompts)
    captured: list[tuple[bool, torch.Tensor]] = []
    real = method.forward_last

    def spy(model, batch, past_key_values=None, use_cache=False):
        logits, cache = real(model, batch, past_key_values=past_key_values, use_cache=use_cache)
        captured.append((past_key_values is not None, logits.clone()))
        return logits, cache

    monkeypatch.setattr(method, "forward_last", spy)
    runner = TaskVectorRunner(lm, batch_size=64)
    thetas = _thetas(lm, len(prompts), seed=1)
    L = lm.n_layers
    ours = runner.sweep_patched(prompts, thetas, list(range(L)))
    cached = [lg for with_cache, lg in captured if with_cache]
    assert len(cached) == 1 and len(captured) == 2  # prefix pass + one last-token pass for all layers
    cached_logits = cached[0].reshape(len(prompts), L, -1)
    assert torch.equal(cached_logits.argmax(-1), ours)

    captured.clear()
    naive = runner.sweep_patched_naive(prompts, thetas, list(range(L)))
    assert len(captured) == L and not any(with_cache for with_cache, _ in captured)
    naive_logits = torch.stack([lg for _, lg in captured], dim=1)  # (N, L, V)
    assert torch.equal(naive_logits.argmax(-1), naive)
    torch.testing.assert_close(cached_logits, naive_logits, atol=1e-5, rtol=1e-5)


def test_token_counter(lm):
    thetas = _thetas(lm, len(PROMPTS))
    layers = list(range(lm.n_layers))
    lengths = _n_tokens(lm, PROMPTS)
    L, N = len(layers), len(PROMPTS)

    naive = TaskVectorRunner(lm, batch_size=3)
    naive.sweep_patched_naive(PROMPTS, thetas, layers)
    assert naive.tokens == L * sum(lengths)
    assert naive.passes == L * -(-N // 3)

    ours = TaskVectorRunner(lm, batch_size=3)
    ours.sweep_patched(PROMPTS, thetas, layers)
    assert ours.tokens == sum(n - 1 for n in lengths) + L * N
    per_batch = max(1, 3 * 8 // L)
    assert ours.passes == 2 * -(-N // per_batch)  # a prefix pass and a last-token pass per batch

    bound = L * min(lengths) / (min(lengths) - 1 + L)  # the saving for the shortest prompt
    assert naive.tokens / ours.tokens > bound > 2


# -- last-token states and the identity ---------------------------------------------------------


def test_last_token_states_batched_equals_one_at_a_time(lm):
    runner = TaskVectorRunner(lm, batch_size=4)
    states = runner.last_token_states(PROMPTS)
    assert states.shape == (len(PROMPTS), lm.n_layers, lm.model.config.hidden_size)
    assert states.dtype == torch.float32
    assert runner.tokens == sum(_n_tokens(lm, PROMPTS))
    alone = torch.cat([runner.last_token_states([p]) for p in PROMPTS])
    torch.testing.assert_close(states, alone, atol=1e-5, rtol=1e-5)
    # the rows really differ (the states are not all the same vector)
    assert (states[0] - states[1]).abs().max() > 1e-3


def test_patching_own_state_is_the_identity(lm):
    runner = TaskVectorRunner(lm, batch_size=3)
    clean = runner.predict(PROMPTS)
    states = runner.last_token_states(PROMPTS)
    for layer in range(lm.n_layers):
        assert torch.equal(runner.predict_patched(PROMPTS, states[:, layer], layer), clean), layer
    swept = runner.sweep_patched(PROMPTS, states, list(range(lm.n_layers)))
    assert torch.equal(swept, clean[:, None].expand_as(swept))


def test_decode_gives_characters(lm):
    runner = TaskVectorRunner(lm)
    ids = torch.tensor([lm.tokenizer.convert_tokens_to_ids(c) for c in "a é\n"])
    assert runner.decode(ids) == ["a", " ", "é", "\n"]
    assert runner.decode(torch.tensor([0, 1, 2])) == ["", "", ""]  # special tokens are skipped


# -- evaluate_task ------------------------------------------------------------------------------


def _user_task() -> Task:
    letters = string.ascii_lowercase
    pairs = [(letters[i], letters[i + 2]) for i in range(24)]  # single-character answers
    pairs += [("ab", "cd"), ("xy", "za")]  # multi-character answers: filtered out
    return Task("user_shift2", "user", tuple(pairs), single_token=True, source="test")


@pytest.fixture(scope="module")
def prepared(lm):
    return prepare_task(_user_task(), lm.tokenizer, get_template("paper"))


EVAL = dict(n_dev=6, n_test=5, n_baseline=4, k=3, n_dummy=2)


def test_evaluate_task(lm, prepared):
    assert len(prepared.pairs) == 24 and prepared.n_before_filter == 26 and not prepared.leading_space
    template = get_template("paper")
    runner = TaskVectorRunner(lm, batch_size=4)
    res = evaluate_task(runner, prepared, template, seed=3, **EVAL)

    assert res.task == "user_shift2" and res.category == "user" and res.n_pairs == 24
    for acc in (res.baseline, res.icl, res.task_vector):
        assert 0.0 <= acc <= 1.0
    assert res.dev_curve.shape == (lm.n_layers,)
    assert ((res.dev_curve >= 0) & (res.dev_curve <= 1)).all()
    assert np.allclose(res.dev_curve * EVAL["n_dev"], np.round(res.dev_curve * EVAL["n_dev"]))
    assert res.best_layer == int(np.flatnonzero(res.dev_curve == res.dev_curve.max())[0])
    assert res.row()["best_dev"] == res.dev_curve[res.best_layer]

    # Episodes: dev and test queries come from disjoint pools; counts as asked.
    eps = res.episodes
    assert [len(eps[s]) for s in ("dev", "test", "baseline")] == [6, 5, 4]
    assert {e["item"] for e in eps["dev"]}.isdisjoint({e["item"] for e in eps["test"] + eps["baseline"]})
    assert all(len(e["demos"]) == 3 and len(e["dummies"]) == 2 for e in eps["dev"] + eps["test"])
    assert all(len(e["demos"]) == 0 for e in eps["baseline"])

    # Records: one per scored prompt, each with the prompt that produced it; dev ICL and baseline are
    # scored on the dev episodes (for the task filter), the three conditions on test.
    recs = [r for r in res.records if r["split"] == "test"]
    by = {c: [r for r in recs if r["condition"] == c] for c in ("baseline", "icl", "task_vector")}
    assert len(recs) == 4 + 5 + 5 and [len(by[c]) for c in by] == [4, 5, 5]
    for r, e in zip(by["baseline"], eps["baseline"]):
        assert r["prompt"] == template.query(e["query"]) and r["gold"] == e["answer"]
    for r, e in zip(by["icl"], eps["test"]):
        assert r["prompt"] == template.prompt([tuple(d) for d in e["demos"]], e["query"])
        assert r["prompt"].startswith("example:") and r["prompt"].endswith(f"example:{e['query']}->")
    for r, e in zip(by["task_vector"], eps["test"]):
        assert r["prompt"] == template.query(e["query"]) and r["layer"] == res.best_layer
    dev = [r for r in res.records if r["split"] == "dev"]
    assert [r["condition"] for r in dev] == ["baseline"] * 6 + ["icl"] * 6
    assert [r["query"] for r in dev[6:]] == [e["query"] for e in eps["dev"]]
    assert dev[0]["prompt"] == template.query(eps["dev"][0]["query"])
    for r in res.records:
        assert r["correct"] == (r["prediction"].strip() == r["gold"]) and r["episode_seed"] == 0
    for c, acc in (("baseline", res.baseline), ("icl", res.icl), ("task_vector", res.task_vector)):
        assert acc == pytest.approx(np.mean([r["correct"] for r in by[c]]))
        assert res.row()[f"{c}_correct"] == sum(r["correct"] for r in by[c]) and res.row()[f"{c}_n"] == len(by[c])
    assert res.row()["dev_icl_correct"] == sum(r["correct"] for r in dev[6:]) and res.row()["dev_icl_n"] == 6


def test_evaluate_task_is_deterministic(lm, prepared):
    template = get_template("paper")
    a = evaluate_task(TaskVectorRunner(lm), prepared, template, seed=7, **EVAL)
    b = evaluate_task(TaskVectorRunner(lm, batch_size=2), prepared, template, seed=7, **EVAL)
    assert a.records == b.records and a.episodes == b.episodes
    assert np.array_equal(a.dev_curve, b.dev_curve) and a.best_layer == b.best_layer
    c = evaluate_task(TaskVectorRunner(lm), prepared, template, seed=8, **EVAL)
    assert c.episodes != a.episodes
    assert [r["prompt"] for r in c.records] != [r["prompt"] for r in a.records]
    d = evaluate_task(TaskVectorRunner(lm), prepared, template, seed=7, episode_seed=1, **EVAL)
    assert d.episodes != a.episodes and d.episode_seed == 1  # another episode seed: another draw


def test_evaluate_task_picks_first_best_layer(lm, prepared, monkeypatch):
    """A sweep right at layers 1 and 2 and wrong at 0: dev curve [0, 1, 1], L = 1 (first maximum)."""
    template = get_template("paper")
    answers = dict(prepared.pairs)
    wrong = lm.tokenizer.convert_tokens_to_ids("#")

    def fake_sweep(prompts, thetas, layers, mode="replace", alpha=1.0, max_new_tokens=1, viable=None):
        assert thetas.shape == (len(prompts), lm.n_layers, lm.model.config.hidden_size)
        gold = torch.tensor([lm.tokenizer.convert_tokens_to_ids(answers[p[len("example:") : -2]]) for p in prompts])
        out = gold[:, None].repeat(1, len(layers))
        out[:, 0] = wrong
        return out

    runner = TaskVectorRunner(lm)
    monkeypatch.setattr(runner, "sweep_patched", fake_sweep)
    res = evaluate_task(runner, prepared, template, seed=0, **EVAL)
    assert res.dev_curve.tolist() == [0.0, 1.0, 1.0]
    assert res.best_layer == 1
    assert all(r["layer"] == 1 for r in res.records if r["condition"] == "task_vector")


def test_extract_thetas_is_the_mean_over_dummies(lm, prepared):
    template = get_template("paper")
    rng = make_rng(0, "x", 0)
    _, pool = split_queries(len(prepared.pairs), rng)
    episodes = sample_episodes(prepared, pool, 3, 2, 2, rng)
    runner = TaskVectorRunner(lm)
    thetas = extract_thetas(runner, template, episodes)
    assert thetas.shape == (3, lm.n_layers, lm.model.config.hidden_size)
    for i, e in enumerate(episodes):
        states = runner.last_token_states([template.prompt(list(e.demos), d) for d in e.dummies])
        torch.testing.assert_close(thetas[i], states.mean(0), atol=1e-5, rtol=1e-5)
