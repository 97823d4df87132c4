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
