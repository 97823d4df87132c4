"""`iclab doctor` on tiny random models of every family it knows, and on architectures it cannot map."""

import sys

import pytest
import torch
from torch import nn

from iclab.models import TINY_FAMILIES, architecture_map, diagnose, load_model, save_tiny

from .tiny import tiny_lm


@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_every_check_passes_on_each_family(family):
    checks = diagnose(load_model(f"tiny:{family}"))
    assert [c.name for c in checks if not c.passed] == [], [(c.name, c.detail) for c in checks]


def test_families_cover_the_variants_the_issue_names():
    assert len(TINY_FAMILIES) >= 12
    kinds = {f: type(load_model(f"tiny:{f}").model).__name__ for f in ("llama", "gptj", "gpt2")}
    assert kinds == {"llama": "LlamaForCausalLM", "gptj": "GPTJForCausalLM", "gpt2": "GPT2LMHeadModel"}
    llama = load_model("tiny:llama").model.config
    assert llama.num_key_value_heads < llama.num_attention_heads  # grouped-query attention
    assert load_model("tiny:gpt_neox").model.config.use_parallel_residual  # parallel attention/MLP


def test_bfloat16_on_cpu_passes():
    checks = diagnose(load_model("tiny:llama", dtype="bfloat16"))
    assert all(c.passed for c in checks), [(c.name, c.detail) for c in checks if not c.passed]


class _Renamed(nn.Module):
    """A Llama whose blocks live under an unknown name: only the longest-ModuleList guess finds them."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.stack = inner.model.layers
        del inner.model.layers
        inner.model.layers = nn.ModuleList()  # noqa: the known path now holds nothing

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()


def test_unmapped_blocks_fail_the_doctor(capsys):
    lm = tiny_lm("llama")
    lm.model = _Renamed(lm.model)
    amap = architecture_map(lm.model)
    assert not amap.blocks_by_name and amap.blocks == "stack"
    checks = {c.name: c for c in diagnose(lm)}
    assert not checks["decoder blocks found by name"].passed
    assert "guessing" in checks["decoder blocks found by name"].detail


def test_unknown_attention_projection_fails_head_checks():
    lm = tiny_lm("llama")
    for block in lm.model.model.layers:
        block.self_attn.out = block.self_attn.o_proj
        del block.self_attn.o_proj
    checks = {c.name: c for c in diagnose(lm)}
    assert not checks["attention output projection found by name"].passed
    assert not checks["per-head outputs sum to the attention output"].passed


def cli(capsys, monkeypatch, *args) -> tuple[int, str, str]:
    """`iclab ARGS` in this process (the same `main` as the console script): exit status, stdout, stderr."""
    from iclab.cli import main

    monkeypatch.setattr(sys, "argv", ["iclab", *args])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as done:
        main()
        sys.exit(0)
    out = capsys.readouterr()
    return done.value.code or 0, out.out, out.err


def test_cli_on_a_local_directory(tmp_path, capsys, monkeypatch):
    path = save_tiny("qwen2", tmp_path / "m")
    code, out, err = cli(capsys, monkeypatch, "doctor", str(path))
    assert code == 0, out + err
    assert "9 of 9 checks passed" in out


@pytest.mark.parametrize("args,message", [
    (["tiny:llama", "--device", "tpu"], "device 'tpu' is not known"),
    (["tiny:llama", "--device", "cuda:0"], "no CUDA GPU"),
    (["tiny:llama", "--dtype", "int8"], "dtype 'int8' is not supported"),
    (["/nonexistent/model"], "not a bundled model"),
])
def test_cli_bad_input_is_one_line(args, message, capsys, monkeypatch):
    if "cuda:0" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present: cuda:0 is valid here")
    code, _, err = cli(capsys, monkeypatch, "doctor", *args)
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1, err


def test_unknown_architecture_directory_is_one_line(tmp_path, capsys, monkeypatch):
    path = save_tiny("llama", tmp_path / "m")
    cfg = (path / "config.json").read_text().replace('"model_type": "llama"', '"model_type": "nosuchfamily"')
    (path / "config.json").write_text(cfg)
    code, _, err = cli(capsys, monkeypatch, "doctor", str(path))
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_a_model_split_and_offloaded_by_accelerate_passes(tmp_path):
    """The hooks on a model dispatched by accelerate (`device_map`, one block offloaded to disk and loaded
    only during its forward): the CPU stand-in for a model split across GPUs."""
    from transformers import AutoModelForCausalLM

    from iclab.models import LoadedModel, prepare_tokenizer, tiny_tokenizer

    path = save_tiny("llama", tmp_path / "m")
    placement = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
                 "model.layers.1": "disk", "model.layers.2": "cpu", "model.norm": "cpu", "lm_head": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(path, device_map=placement, offload_folder=str(tmp_path / "off"),
                                                 dtype=torch.float32).eval()
    assert hasattr(model.model.layers[1], "_hf_hook")  # accelerate's dispatch hook is really there
    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    checks = diagnose(LoadedModel("split", model, tok, str(path)))
    assert all(c.passed for c in checks), [(c.name, c.detail) for c in checks if not c.passed]
