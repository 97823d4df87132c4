"""ICL accuracy and loss of a trained model (and of the idealised predictor) vs number of demonstrations.

A causal model's prediction of the i-th answer in a fully answered prompt is exactly its
prediction for a prompt with i demonstrations, so one teacher-forced pass over prompts of
n_max + 1 items scores every n = 0..n_max at once (and the summed log loss over the first n
answers is Theorem 1's left-hand side). Model-generated chains of thought need real greedy
generation, done separately at the requested n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from iclab.runtime import make_rng

from ._prompts import draw_inputs, full_prompt, prompt_tokens
from ._theory import IdealPredictor
from ._world import SEP_STEP, Task, World


@dataclass
class Curve:
    """Per prompt (rows) and per number of preceding demonstrations (columns)."""

    correct: np.ndarray  # (P, n_max+1) greedy answer == true answer (the final y)
    logp: np.ndarray  # (P, n_max+1) log-probability of the true answer (the final y, teacher forced)
    step_correct: np.ndarray | None = None  # (P, n_max+1) CoT: greedy intermediate step == g(x)
    step_logp: np.ndarray | None = None  # (P, n_max+1) CoT: log-probability of the true step


def prompt_inputs(world: World, tasks: list[Task], n_items: int, n_prompts: int, seed: int,
                  stream: str = "prompts") -> dict[str, list]:
    """The inputs of every prompt, by task: identical for the model and the idealised predictor.
    Each task draws from its own stream `make_rng(seed, stream, task.name, n_items)`."""
    out = {}
    for task in tasks:
        rng = make_rng(seed, stream, task.name, n_items)
        out[task.name] = [draw_inputs(rng, world.cfg.n_objects, n_items) for _ in range(n_prompts)]
    return out


def _positions(n_items: int, cot: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices of the tokens that predict each item's answer (and its step), in a full prompt."""
    width = 6 if cot else 4  # x -> [z =>] y ;
    starts = 1 + width * np.arange(n_items)
    if cot:
        return starts + 3, starts + 1  # "=>" predicts y; "->" predicts z
    return starts + 1, None  # "->" predicts y


def _ids(world: World, prompts: list[list[str]]) -> torch.Tensor:
    return torch.tensor([[world.token_id[t] for t in p] for p in prompts], dtype=torch.long)  # (B, T)


@torch.no_grad()
def _log_softmax_batches(model, ids: torch.Tensor, batch: int) -> torch.Tensor:
    out = []
    device = model.get_input_embeddings().weight.device
    for i in range(0, len(ids), batch):
        logits = model(input_ids=ids[i:i + batch].to(device)).logits  # (b, T, V)
        out.append(torch.log_softmax(logits.float(), -1).cpu())
    return torch.cat(out)  # (B, T, V)


def model_curve(model, world: World, task: Task, inputs: list[list[int]], *, cot: bool = False,
                batch: int = 128) -> Curve:
    """Teacher-forced scores of every answer in full prompts (CoT prompts: with the true steps shown)."""
    prompts = [full_prompt(world, task, xs, cot=cot) for xs in inputs]
    ids = _ids(world, prompts)  # (P, T)
    logp = _log_softmax_batches(model, ids, batch).numpy()  # (P, T, V)
    y_pos, z_pos = _positions(len(inputs[0]), cot)
    rows = np.arange(len(prompts))[:, None]
    y_true = ids.numpy()[:, y_pos + 1]  # (P, n)
    curve = Curve(correct=logp[rows, y_pos].argmax(-1) == y_true, logp=logp[rows, y_pos, y_true])
    if cot:
        z_true = ids.numpy()[:, z_pos + 1]
        curve.step_correct = logp[rows, z_pos].argmax(-1) == z_true
        curve.step_logp = logp[rows, z_pos, z_true]
    return curve


def ideal_curve(predictor: IdealPredictor, world: World, task: Task, inputs: list[list[int]], *,
                cot: bool = False) -> Curve:
    """The same scores for the idealised predictor (argmax ties broken towards the lowest id)."""
    y_pos, z_pos = _positions(len(inputs[0]), cot)
    correct, logp, s_correct, s_logp = [], [], [], []
    for xs in inputs:
        tokens = full_prompt(world, task, xs, cot=cot)
        ids = np.asarray([world.token_id[t] for t in tokens])
        p = predictor.predict(tokens)  # (T, V)
        correct.append(p[y_pos].argmax(-1) == ids[y_pos + 1])
        logp.append(np.log(np.maximum(p[y_pos, ids[y_pos + 1]], 1e-300)))
        if cot:
            s_correct.append(p[z_pos].argmax(-1) == ids[z_pos + 1])
            s_logp.append(np.log(np.maximum(p[z_pos, ids[z_pos + 1]], 1e-300)))
    curve = Curve(np.asarray(correct), np.asarray(logp))
    if cot:
        curve.step_correct, curve.step_logp = np.asarray(s_correct), np.asarray(s_logp)
    return curve


@torch.no_grad()
def generated_cot(model, world: World, task: Task, inputs: list[list[int]], n: int,
                  batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Greedy generation of `z => y` after n CoT demonstrations: per prompt, (final answer right, step right),
    two (P,) bool arrays.

    Uses inputs[:n] as demonstrations and inputs[n] as the query of each prompt.
    """
    prompts = [prompt_tokens(world, task, xs[:n + 1], cot=True) for xs in inputs]
    ids = _ids(world, prompts)  # (P, T)
    step_id = world.token_id[SEP_STEP]
    device = model.get_input_embeddings().weight.device
    for _ in range(3):  # z, "=>", y
        nxt = torch.cat([model(input_ids=ids[i:i + batch].to(device)).logits[:, -1].argmax(-1).cpu()
                         for i in range(0, len(ids), batch)])  # (P,)
        ids = torch.cat([ids, nxt[:, None]], 1)
    z, step, y = ids[:, -3].numpy(), ids[:, -2].numpy(), ids[:, -1].numpy()
    z_true = np.asarray([world.obj(world.mid(task, xs[n])) for xs in inputs])
    y_true = np.asarray([world.obj(world.apply(task, xs[n])) for xs in inputs])
    final = (step == step_id) & (y == y_true)
    return final, z == z_true


def answer_log_probs(source, world: World, task: Task, inputs: list[list[int]], *, batch: int = 128) -> np.ndarray:
    """(P, n_items, V) log P(· | prefix) at every answer position of full direct prompts, for a trained model
    or for the idealised predictor (`source` an `IdealPredictor`): the whole next-token distribution, which
    is what a divergence from the ideal needs (accuracy and the true answer's loss see one entry of it)."""
    prompts = [full_prompt(world, task, xs) for xs in inputs]
    y_pos, _ = _positions(len(inputs[0]), False)
    if isinstance(source, IdealPredictor):
        with np.errstate(divide="ignore"):  # the ideal gives zero probability to impossible tokens: log 0 = -inf
            return np.stack([np.log(source.predict(p)[y_pos]) for p in prompts])
    return _log_softmax_batches(source, _ids(world, prompts), batch).numpy()[:, y_pos].astype(np.float64)


def kl_to_ideal(ideal_logp: np.ndarray, model_logp: np.ndarray) -> np.ndarray:
    """KL(ideal ‖ model) in nats at every position: Σ_v p (log p − log q) over the vocabulary, with
    0 · log 0 = 0. Inputs (..., V) from `answer_log_probs`; output (...). Infinite where the model gives
    zero probability to a token the ideal allows."""
    if ideal_logp.shape != model_logp.shape:
        raise ValueError(f"shapes differ: ideal {ideal_logp.shape}, model {model_logp.shape}")
    p = np.exp(ideal_logp)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (ideal_logp - model_logp), 0.0)
    return terms.sum(-1)
