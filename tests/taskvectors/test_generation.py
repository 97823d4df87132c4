"""Whole-answer scoring: cached greedy decoding equals recomputing the prompt, the task vector is
patched at the first generated position only, batches halve on out-of-memory, and the warning
for multi-token answers under first-token scoring."""

import json

import pytest
import torch

from iclab.models import Batch, forward_last, patch_residual
from iclab.taskvectors import _method as method
from iclab.taskvectors._evaluate import evaluate_task
from iclab.taskvectors._method import TaskVectorRunner
from iclab.taskvectors._prompts import get_template, prepare_task
from iclab.taskvectors._tasks import load_task_file

from ..models.tiny import tiny_lm

PROMPTS = ["example:hello->", "example:ab->", "example:a much longer input->", "example:x->"]


@pytest.fixture(scope="module", params=["llama", "gpt2", "gemma3_text"])
def lm(request):
    return tiny_lm(request.param)


def naive_greedy(lm, prompt: str, n: int, vector=None, layer: int = 0) -> list[int]:
    """Reference: the whole prompt plus what was generated, recomputed for every token; the vector
    (if any) written at the prompt's last position in every pass."""
    ids = lm.tokenizer([prompt])["input_ids"][0]
    T, out = len(ids), []
    for _ in range(n):
        seq = torch.tensor([ids + out])
        batch = Batch(seq, torch.ones_like(seq))
        if vector is None:
            logits, _ = forward_last(lm.model, batch)
        else:
            with patch_residual(lm.model, vector[None], layers=layer, positions=T - 1):
                logits, _ = forward_last(lm.model, batch)
        out.append(int(logits.argmax(-1)))
    return out


def _rows(tokens: torch.Tensor, pad: int) -> list[list[int]]:
    return [[int(t) for t in row if int(t) != pad] for row in tokens]


def _ends_early(runner, row: list[int]) -> int:
    """How many tokens the runner keeps: up to and including the first line end."""
    for i, t in enumerate(row):
        if runner._ends(torch.tensor([t]))[0]:
            return i + 1
    return len(row)


def test_cached_decoding_equals_recomputing(lm):
    runner = TaskVectorRunner(lm, batch_size=3)
    got = runner.predict(PROMPTS, max_new_tokens=5)
    assert got.shape == (len(PROMPTS), 5)
    for p, row in zip(PROMPTS, _rows(got, runner.pad_id)):
        ref = naive_greedy(lm, p, 5)
        assert row == ref[: _ends_early(runner, ref)]


def test_first_token_mode_is_unchanged(lm):
    runner = TaskVectorRunner(lm, batch_size=3)
    assert torch.equal(runner.predict(PROMPTS), runner.predict(PROMPTS, max_new_tokens=4)[:, 0])


def test_patched_decoding_patches_the_first_position_only(lm):
    runner = TaskVectorRunner(lm, batch_size=2)
    g = torch.Generator().manual_seed(0)
    vectors = 4 * torch.randn(len(PROMPTS), lm.model.config.hidden_size, generator=g)
    got = _rows(runner.predict_patched(PROMPTS, vectors, 1, max_new_tokens=4), runner.pad_id)
    for p, v, row in zip(PROMPTS, vectors, got):
        ref = naive_greedy(lm, p, 4, vector=v, layer=1)
        assert row == ref[: _ends_early(runner, ref)]


def test_layer_sweep_with_whole_answers_equals_naive(lm):
    runner = TaskVectorRunner(lm, batch_size=4)
    g = torch.Generator().manual_seed(1)
    thetas = 4 * torch.randn(len(PROMPTS), runner.n_layers, lm.model.config.hidden_size, generator=g)
    fast = runner.sweep_patched(PROMPTS, thetas, range(runner.n_layers), max_new_tokens=3)
    slow = runner.sweep_patched_naive(PROMPTS, thetas, range(runner.n_layers), max_new_tokens=3)
    assert fast.shape == (len(PROMPTS), runner.n_layers, 3)
    assert torch.equal(fast, slow)


def test_out_of_memory_halves_the_batch(lm, monkeypatch, capsys):
    runner = TaskVectorRunner(lm, batch_size=4)
    clean = runner.predict(PROMPTS, max_new_tokens=3)
    real = method.forward_last

    def small_memory(model, batch, *a, **k):
        if batch.input_ids.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, batch, *a, **k)

    monkeypatch.setattr(method, "forward_last", small_memory)
    runner = TaskVectorRunner(lm, batch_size=4)
    assert torch.equal(runner.predict(PROMPTS, max_new_tokens=3), clean)
    assert runner.batch_size == 1
    err = capsys.readouterr().err
    assert err.count("out of memory") == 1  # 4 -> 2 -> 1, said once


def test_out_of_memory_on_one_prompt_is_a_clear_error(lm, monkeypatch):
    def no_memory(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(method, "forward_last", no_memory)
    from iclab.runtime._errors import IclabError

    with pytest.raises(IclabError, match="single prompt; use dtype=bfloat16"):
        TaskVectorRunner(lm, batch_size=2).predict(PROMPTS[:1])


def _words_task(tmp_path):
    """Answers of 2-5 characters: several tokens each for the character tokenizer."""
    pairs = {f"w{i}": "".join(chr(97 + (i * 7 + j) % 26) for j in range(2 + i % 4)) for i in range(30)}
    path = tmp_path / "words.json"
    path.write_text(json.dumps(pairs))
    return load_task_file(path)


def test_first_token_scoring_warns_about_multi_token_answers(lm, tmp_path):
    said = []
    prepared = prepare_task(_words_task(tmp_path), lm.tokenizer, get_template("paper"), scoring="first-token",
                            warn=said.append)
    assert len(said) == 1 and "30 of 30 answers are more than one token" in said[0] and "--scoring full" in said[0]
    assert prepared.max_new_tokens == 1
    full = prepare_task(_words_task(tmp_path), lm.tokenizer, get_template("paper"), scoring="full", warn=said.append)
    assert len(said) == 1  # no warning under full
    assert full.leading_space  # the paper's writing: " x" -> " y" (a one-char answer is then two tokens too)
    assert full.max_answer_tokens == 6 and full.max_new_tokens == 7 and len(full.pairs) == 30


def test_full_scoring_end_to_end_keeps_whole_answers(lm, tmp_path):
    prepared = prepare_task(_words_task(tmp_path), lm.tokenizer, get_template("paper"), scoring="full")
    res = evaluate_task(TaskVectorRunner(lm, batch_size=4), prepared, get_template("paper"), seed=0,
                        n_dev=4, n_test=4, n_baseline=4, k=3, n_dummy=1)
    preds = [r["prediction"] for r in res.records]
    assert any(len(p.strip()) > 1 for p in preds)  # whole generations, not first tokens
    for r in res.records:  # the score is exact match of the first line
        assert r["correct"] == (r["prediction"].split("\n")[0].strip() == r["gold"].strip())


def test_first_token_scoring_keeps_the_writing_of_unfiltered_tasks(lm):
    """The knowledge tasks (no single-token filter) are written as before under first-token scoring, so the
    library's first-token results do not change; full scoring may choose the paper's spaced writing."""
    from iclab.taskvectors._tasks import get_task

    task = get_task("knowledge_country_capital")
    first = prepare_task(task, lm.tokenizer, get_template("paper"), scoring="first-token")
    assert not first.leading_space and first.pairs == task.pairs
    full = prepare_task(task, lm.tokenizer, get_template("paper"), scoring="full")
    assert len(full.pairs) == len(task.pairs) and full.max_new_tokens > 1


def test_a_sweep_that_stops_hopeless_rows_scores_the_same(lm):
    """The dev sweep stops a row once it cannot match its answer: every row that could still match, or did,
    is decoded exactly as without the cut, so the accuracy of every layer is unchanged."""
    from iclab.taskvectors._scoring import could_still_match

    runner = TaskVectorRunner(lm, batch_size=4)
    g = torch.Generator().manual_seed(2)
    thetas = 4 * torch.randn(len(PROMPTS), runner.n_layers, lm.model.config.hidden_size, generator=g)
    full = runner.sweep_patched(PROMPTS, thetas, range(runner.n_layers), max_new_tokens=4)
    texts = [[runner.decode(full[i, l][None])[0] for l in range(runner.n_layers)] for i in range(len(PROMPTS))]
    answers = [(texts[i][0].split("\n")[0].strip(),) for i in range(len(PROMPTS))]  # layer 0's answer is "gold"
    runner.tokens = 0
    cut = runner.sweep_patched(PROMPTS, thetas, range(runner.n_layers), max_new_tokens=4,
                               viable=lambda i, t: could_still_match(t, answers[i]))
    for i in range(len(PROMPTS)):
        for l in range(runner.n_layers):
            right = texts[i][l].split("\n")[0].strip() in answers[i]
            got = runner.decode(cut[i, l][None])[0]
            assert (got.split("\n")[0].strip() in answers[i]) == right
            if right:
                assert got == texts[i][l]


def test_could_still_match():
    from iclab.taskvectors._scoring import could_still_match

    assert could_still_match(" big", ("bigger",)) and could_still_match("  ", ("bigger",))
    assert could_still_match(" bigger", ("bigger",)) and could_still_match(" bigger ", ("bigger",))
    assert not could_still_match(" bog", ("bigger",)) and not could_still_match(" bigger x", ("bigger",))
    assert could_still_match(" bigger\nexample", ("bigger",)) and not could_still_match(" big\n", ("bigger",))
    assert could_still_match("caf\ufffd", ("café",))
