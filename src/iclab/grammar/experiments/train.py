"""grammar.train: pretrain one decoder on the world's corpus (one point of the scaling grid)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from iclab.runtime import Estimate, Results, RunContext, experiment
from iclab.runtime import subplots
from iclab.runtime import compute_threads, torch_threads

from .._corpus import cached_token_ids, sample_corpus
from .._evaluate import model_curve, prompt_inputs
from .._world import EOS, PAD, ROLES, World
from ._common import PAPER_TRAINING, PretrainConfig, stream_seed

VAL_TOKENS = 20_000
EVAL_ITEMS = 17  # prompts of 17 items score 0..16 demonstrations


@torch.no_grad()
def validation_loss(model, ids: np.ndarray, seq_len: int) -> float:
    """Mean next-token loss on held-out documents (another stream of the same world)."""
    n = (len(ids) - 1) // seq_len
    x = torch.as_tensor(ids[: n * seq_len + 1], dtype=torch.long).to(model.get_input_embeddings().weight.device)
    inputs, targets = x[:-1].view(n, seq_len), x[1:].view(n, seq_len)  # (n, T)
    losses = [torch.nn.functional.cross_entropy(model(input_ids=inputs[i:i + 64]).logits.flatten(0, 1),
                                                targets[i:i + 64].flatten()).item() for i in range(0, n, 64)]
    return float(np.mean(losses))


@experiment(
    "grammar.train",
    PretrainConfig,
    presets={"quick": {}, "paper": dict(**PAPER_TRAINING, d_model=512, n_layers=8, data_tokens=100_000_000)},
    title="Pretraining one model on the compositional world",
    paper="Hahn & Goyal 2023, §5 setup (our instantiation, docs/grammar.md)",
)
def compute(cfg: PretrainConfig, ctx: RunContext) -> None:
    """Sample the corpus (a seeded stream), train a decoder from its HF config with our loop,
    and check primitive-task ICL right away (the emergence grid reads these numbers)."""
    from iclab.models import (
        ModelSize,
        TrainConfig,
        build_causal_lm,
        count_params,
        train_causal_lm,
    )

    world = World(cfg.world)
    corpus_dir = ctx.runs_dir / ".corpus" if ctx.runs_dir else None
    threads = compute_threads()  # this run's share of the cores: also the corpus sampling processes
    ids = cached_token_ids(world.grammar, cfg.data_tokens, cfg.seed, corpus_dir, key=cfg.world.hash(), workers=threads)
    val = sample_corpus(world.grammar, VAL_TOKENS, stream_seed(cfg.seed, "validation-corpus"), roles=ROLES)
    size = ModelSize(d_model=cfg.d_model, n_layers=cfg.n_layers, arch=cfg.arch, context=max(256, cfg.seq_len))
    model = build_causal_lm(size, len(world.vocab), seed=cfg.seed, pad_token_id=world.token_id[PAD],
                            eos_token_id=world.token_id[EOS], bos_token_id=world.token_id[EOS])
    model = model.to(cfg.device)
    tcfg = TrainConfig(lr=cfg.lr, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
                       batch_size=cfg.batch_size, seq_len=cfg.seq_len, compile=cfg.compile, seed=cfg.seed,
                       autocast=cfg.dtype)
    ckpt = ctx.runs_dir / ".checkpoints" / ctx.experiment / cfg.hash() if ctx.runs_dir else None
    ctx.log(f"{size.name}: {count_params(model):,} parameters, {cfg.data_tokens:,} tokens, {threads} threads")
    with torch_threads(threads):
        hist = train_causal_lm(model, ids, tcfg, ckpt_dir=ckpt, log=lambda r: ctx.log(
            f"step {r['step']}: loss {r['loss']:.3f}, {r['tokens_per_s']:,.0f} tok/s"))
        model.eval()
        val_loss = validation_loss(model, val.ids, cfg.seq_len)
        prim = world.tasks()["prim"]
        inputs = prompt_inputs(world, prim, EVAL_ITEMS, cfg.eval_prompts, cfg.seed, stream="train-eval")
        correct = np.stack([model_curve(model, world, t, inputs[t.name]).correct for t in prim])  # (K, P, 17)
    from transformers.utils import logging as hf_logging  # here: `iclab list` need not import transformers

    hf_logging.disable_progress_bar()
    model.cpu().save_pretrained(ctx.out_dir / "model")
    (ctx.out_dir / "model" / "world.json").write_text(cfg.world.model_dump_json(indent=1))

    acc = correct.mean((0, 1))  # (17,)
    hist_df = pd.DataFrame(dict(step=hist.step, loss=hist.loss, lr=hist.lr, tokens_per_s=hist.tokens_per_s))
    ctx.table(hist_df, "history")
    ctx.table(pd.DataFrame(dict(n_demos=np.arange(len(acc)), prim_accuracy=acc)), "icl")
    ctx.arrays("icl", correct=correct)  # per primitive task, prompt and number of demonstrations
    metrics = dict(size=size.name, params=count_params(model), params_non_embedding=count_params(model, embeddings=False),
                   vocab=len(world.vocab), data_tokens=cfg.data_tokens, steps=hist.steps,
                   train_loss=float(np.mean(hist.loss[-3:])), val_loss=val_loss, prim_acc=acc.round(4).tolist(),
                   seconds=hist.seconds, tokens_per_s=hist.tokens / hist.seconds if hist.seconds else None,
                   threads=threads)
    ctx.json("metrics", metrics)


@compute.figures
def figures(cfg: PretrainConfig, res: Results, ctx: RunContext) -> None:
    hist, icl, m = res.table("history"), res.table("icl"), res.json("metrics")
    fig, axes = subplots(1, 2)
    axes[0, 0].plot(hist.step, hist.loss)
    axes[0, 0].set(xlabel="step", ylabel="train loss (nats/token)", title=f"{m['size']}, {cfg.data_tokens:,} tokens")
    axes[0, 1].plot(icl.n_demos, icl.prim_accuracy, marker="o")
    axes[0, 1].axhline(1 / cfg.world.n_objects, color="gray", ls=":", label="chance 1/|objects|")
    axes[0, 1].set(xlabel="demonstrations", ylabel="accuracy", ylim=(0, 1.02), title="primitive-task ICL")
    axes[0, 1].legend(fontsize=7)
    ctx.figure(fig, "training", caption=(
        f"{m['size']} ({m['params']:,} parameters, {cfg.arch}) trained on {cfg.data_tokens:,} tokens "
        f"(batch {cfg.batch_size}×{cfg.seq_len}, AdamW lr {cfg.lr:g}, {cfg.warmup_steps} warm-up steps, cosine), "
        f"training seed {cfg.seed}. Right: greedy accuracy on the {cfg.world.n_functions} primitive tasks, "
        f"{cfg.eval_prompts} prompts each."))


@compute.verdicts
def verdicts(cfg: PretrainConfig, res: Results, ctx: RunContext) -> None:
    m = res.json("metrics")
    ctx.claim("validation loss − log |vocabulary| (nats/token)", kind="sanity",
              paper="(ours) training learnt something: below a uniform guess over the vocabulary",
              ours=Estimate.single(m["val_loss"] - math.log(m["vocab"]), "one training run"), expect=("<", 0))
    ctx.claim("parameters", kind="engineering", paper="(ours) model size", ours=Estimate.exact(m["params"], "a count"))
    ctx.claim("training time (s)", kind="engineering", paper="(ours) wall time of the training loop",
              ours=Estimate.single(m["seconds"], "one run"))
    ctx.note("Primitive-task ICL of this one model is in the table `icl` and the figure; the paper's claims about it "
             "are judged over the model-size × data grid (grammar.emergence) and over training seeds (grammar.icl).")
