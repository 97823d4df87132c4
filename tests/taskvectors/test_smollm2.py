"""Integration on the real bundled SmolLM2-135M-Instruct (installed by the set-up command; in CI).

The first load converts the GGUF (about 20 s) into the user cache; later loads take under a second.
"""

from pathlib import Path

import pytest
import torch

from iclab.models import decoder_blocks, encode, forward_last, load_model, patch_residual, record_residual
from iclab.taskvectors.evaluate import evaluate_task
from iclab.taskvectors.method import TaskVectorRunner
from iclab.taskvectors.prompts import get_template, prepare_task
from iclab.taskvectors.tasks import get_task

@pytest.fixture(scope="module")
def lm():
    return load_model("smollm2-135m")

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
