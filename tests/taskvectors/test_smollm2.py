"""Integration on the real bundled SmolLM2-135M-Instruct (installed by the set-up command; in CI).

The first load converts the GGUF (about 20 s) into the user cache; later loads take under a second.
"""

from pathlib import Path

import pytest
import torch

from iclab.models import decoder_blocks, encode, forward_last, patch_residual, record_residual
from iclab.taskvectors._evaluate import evaluate_task
from iclab.taskvectors._method import TaskVectorRunner
from iclab.taskvectors._prompts import get_template, prepare_task
from iclab.taskvectors._tasks import get_task
from tests.conftest import bundled_model


@pytest.fixture(scope="module")
def lm():
    return bundled_model("smollm2-135m")


def test_converted_model_is_cached(lm):
    assert type(lm.model).__name__ == "LlamaForCausalLM"
    assert len(decoder_blocks(lm.model)) == 30

    assert (Path(lm.source) / "DONE").is_file() and (Path(lm.source) / "model.safetensors").is_file()

def test_patching_own_state_is_exact_on_the_real_model(lm):
    batch = encode(lm.tokenizer, ["example:a->A\nexample:b->", "example:go->"])
    with record_residual(lm.model) as rec:
        clean, _ = forward_last(lm.model, batch)
    for layer in (0, 12, 29):
        with patch_residual(lm.model, rec.states[:, layer], layers=layer):
            patched, _ = forward_last(lm.model, batch)
        assert torch.equal(patched, clean)

@pytest.mark.parametrize("name", ["algorithmic_to_upper", "linguistic_present_simple_past_simple"])
def test_task_vector_beats_baseline_on_easy_tasks(lm, name):
    template = get_template("paper")
    prepared = prepare_task(get_task(name), lm.tokenizer, template)
    res = evaluate_task(TaskVectorRunner(lm), prepared, template, seed=0, n_dev=20, n_test=20, n_baseline=20)
    assert res.icl >= 0.7, res.row()
    assert res.task_vector >= res.baseline + 0.4, res.row()
    assert 5 <= res.best_layer <= 28, res.row()  # a middle-to-late layer, not the embedding end


def test_doctor_passes_on_the_bundled_model(lm):
    from iclab.models import diagnose

    checks = diagnose(lm)
    assert all(c.passed for c in checks), [(c.name, c.detail) for c in checks if not c.passed]


UPPER_WORDS = Path(__file__).resolve().parents[2] / "examples" / "tasks" / "upper_words.json"


def test_whole_answers_on_a_multi_token_task(lm):
    """Words -> their upper case, most answers several tokens: ICL well above 0 under full scoring (the
    task vector carries it on Gemma-3-270M, not on SmolLM2: docs/benchmarks.md, "Whole answers")."""
    from iclab.taskvectors._tasks import load_task_file

    template = get_template("paper")
    task = load_task_file(UPPER_WORDS)
    prepared = prepare_task(task, lm.tokenizer, template, scoring="full")
    assert prepared.n_multi_token >= 40 and prepared.max_new_tokens >= 4
    res = evaluate_task(TaskVectorRunner(lm), prepared, template, seed=0, n_dev=6, n_test=16, n_baseline=8)
    assert res.icl >= 0.5 and res.baseline == 0, res.row()
    multi = [r for r in res.records if r["split"] == "test" and r["condition"] == "icl"
             and len(lm.tokenizer(r["gold"], add_special_tokens=False)["input_ids"]) > 1]
    assert sum(r["correct"] for r in multi) >= 5  # right on whole answers of several tokens
    said = []
    prepare_task(task, lm.tokenizer, template, scoring="first-token", warn=said.append)
    assert len(said) == 1 and "--scoring full" in said[0]
