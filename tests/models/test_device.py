"""Device and dtype: resolution, one-line errors, and which settings are part of a run's identity."""

import pytest
import torch

from iclab.models import DeviceConfig, load_model, resolve_device, resolve_dtype
from iclab.runtime._errors import IclabError
from iclab.runtime._experiment import get_experiment


def test_resolution():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == "cpu"
    assert resolve_dtype("bfloat16") is torch.bfloat16 and resolve_dtype(torch.float16) is torch.float16


@pytest.mark.parametrize("spec,message", [("tpu", "is not known"), ("cuda:x", "is not known"), ("gpu", "is not known")])
def test_unknown_device(spec, message):
    with pytest.raises(IclabError, match=message):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: cuda is valid here")
def test_cuda_without_a_gpu_is_one_line():
    with pytest.raises(IclabError, match="sees no CUDA GPU.*use device=cpu") as err:
        resolve_device("cuda")
    assert "\n" not in str(err.value)


def test_unsupported_dtype():
    with pytest.raises(IclabError, match="dtype 'int8' is not supported; use one of float32, bfloat16, float16"):
        resolve_dtype("int8")


@pytest.mark.parametrize("name", ["taskvectors.main", "grammar.train", "grammar.icl", "spinglass.figS8"])
def test_neural_experiments_have_device_fields(name):
    cfg = get_experiment(name).make_config("quick")
    assert cfg.device == resolve_device("auto")  # 'auto' is resolved when the config is built


def test_identity_dtype_always_device_only_for_training():
    tv = get_experiment("taskvectors.main")
    base = tv.make_config("quick", {"device": "cpu"})
    assert tv.make_config("quick", {"dtype": "bfloat16"}).hash() != base.hash()
    assert base.model_copy(update={"device": "cuda"}).hash() == base.hash()  # inference: device not hashed
    train = get_experiment("grammar.train").make_config("quick", {"device": "cpu"})
    assert train.model_copy(update={"device": "cuda"}).hash() != train.hash()  # training: it is


def test_saved_configs_keep_their_device():
    """A run made on a GPU, read back (redraw, results) on a machine without one."""
    tv = get_experiment("taskvectors.main")
    cfg = tv.make_config(None, {"device": "cuda:3"}, saved=True)
    assert cfg.device == "cuda:3"


def test_float16_training_is_refused():
    with pytest.raises(IclabError, match="float16 needs loss scaling"):
        get_experiment("grammar.train").make_config("quick", {"dtype": "float16"})


def test_bfloat16_model_runs_on_cpu():
    lm = load_model("tiny:qwen2", dtype="bfloat16")
    assert next(lm.model.parameters()).dtype is torch.bfloat16


def test_device_config_is_a_base():
    class Mine(DeviceConfig):
        pass

    assert Mine().dtype == "float32" and Mine(device="cpu").torch_dtype is torch.float32
