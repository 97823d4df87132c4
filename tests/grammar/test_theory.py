"""The idealised predictor: a distribution, exact on sampled blocks, and under Theorem 1's bound."""

import math
import random
from collections import Counter

import numpy as np
import pytest

from iclab.grammar._corpus import stream_documents
from iclab.grammar._evaluate import ideal_curve, prompt_inputs
from iclab.grammar._prompts import full_prompt
from iclab.grammar._theory import IdealPredictor
from iclab.grammar._world import END, EOS, World, WorldConfig
from iclab.runtime._errors import IclabError


@pytest.fixture(scope="module")
def predictor(world) -> IdealPredictor:
    return IdealPredictor(world)


def some_prompts(world, kind, cot, n_prompts=3, n_items=6):
    rng = random.Random(f"rows-{kind}-{cot}")
    tasks = world.tasks()[kind]
    for k in range(n_prompts):
        task = tasks[k % len(tasks)]
        yield full_prompt(world, task, rng.sample(range(world.cfg.n_objects), n_items), cot=cot)


@pytest.mark.parametrize("kind,cot", [("prim", False), ("comp", False), ("heldout", False), ("comp", True),
                                      ("heldout", True)])
def test_rows_are_distributions(world, predictor, kind, cot):
    for tokens in some_prompts(world, kind, cot):
        p = predictor.predict(tokens + [END])  # the last row: another block or the document's end
        assert p.shape == (len(tokens) + 1, len(world.vocab))
        assert (p >= 0).all()
        np.testing.assert_allclose(p.sum(-1), 1.0, rtol=0, atol=1e-9)
        ids = [world.token_id[t] for t in tokens + [END]]
        assert (p[np.arange(len(ids) - 1), ids[1:]] > 0).all()


def test_doc_start_row(world, predictor):
    p = predictor.predict([EOS])
    assert p.shape == (1, len(world.vocab)) and abs(p.sum() - 1) < 1e-9
    cfg = world.cfg
    share = cfg.p_iter / (cfg.p_iter + cfg.p_facts + cfg.p_free)
    assert p[0, world.object_ids].sum() == pytest.approx(share)
    assert p[0, world.token_id[EOS]] == 0.0 and p[0, world.token_id["->"]] == 0.0


def first_iter_blocks(world, n_blocks, seed=0):
    """Token texts [EOS, ...] of the first block of documents that start with an ITER block, up to its '.'."""
    out = []
    for doc in stream_documents(world.grammar, seed):
        if doc.tokens[0].role != "x":
            continue
        end = doc.text.index(END)
        out.append([EOS] + doc.text[:end + 1])
        if len(out) == n_blocks:
            return out


def test_true_tokens_of_sampled_blocks_have_positive_probability(world, predictor):
    blocks = first_iter_blocks(world, 150)
    assert any("=>" in b for b in blocks)
    for tokens in blocks:
        p = predictor.predict(tokens)
        ids = [world.token_id[t] for t in tokens]
        probs = p[np.arange(len(ids) - 1), ids[1:]]
        assert (probs > 0).all(), (tokens, probs)
        np.testing.assert_allclose(p.sum(-1), 1.0, rtol=0, atol=1e-9)


def cumulative_loss(predictor, world, task, n_items=16, n_prompts=20, cot=False):
    inputs = prompt_inputs(world, [task], n_items, n_prompts, seed=3)[task.name]
    curve = ideal_curve(predictor, world, task, inputs, cot=cot)
    assert curve.logp.shape == (n_prompts, n_items)
    return -np.cumsum(curve.logp, axis=1), curve  # (P, n): loss of the first n answers


@pytest.mark.parametrize("kind,cot", [("prim", False), ("comp", False), ("heldout", True), ("comp", True),
                                      ("bin", False), ("comp3", False)])
def test_cumulative_answer_loss_under_theorem_1_bound(world, predictor, rich_world, kind, cot):
    if kind in ("bin", "comp3"):
        world, predictor = rich_world, IdealPredictor(rich_world)
    tasks = world.tasks()[kind][:6]
    assert tasks
    for task in tasks:
        d = predictor.description_length(task, cot=cot)
        assert 0 < d < math.inf
        loss, _ = cumulative_loss(predictor, world, task, cot=cot)
        for n in range(1, 17):
            bound = d + predictor.iteration_cost(n)
            assert (loss[:, n - 1] <= bound + 1e-9).all(), (task.name, n, loss[:, n - 1].max(), bound)
        # learning: the per-answer loss falls off once the template is identified
        assert loss[:, -1].mean() - loss[:, 7].mean() < 1.0


def test_heldout_direct_task_is_not_derivable(world, predictor):
    for task in world.tasks()["heldout"]:
        assert predictor.description_length(task) == math.inf
        assert predictor.description_length(task, cot=True) < math.inf
    assert predictor.iteration_cost(1) == math.inf  # the default world iterates at least twice
    assert predictor.iteration_cost(world.cfg.iter_max + 1) == math.inf


def accuracy_after(predictor, world, kind, n_demos=2):
    accs = []
    for task in world.tasks()[kind]:
        _, curve = cumulative_loss(predictor, world, task, n_items=8)
        accs.append(curve.correct[:, n_demos:].mean())
    return float(np.mean(accs))


def test_ideal_accuracy_prim_high_heldout_chance(world, predictor):
    assert accuracy_after(predictor, world, "prim") >= 0.95
    assert accuracy_after(predictor, world, "comp") >= 0.95
    assert accuracy_after(predictor, world, "heldout") < 0.2


@pytest.mark.parametrize("rich", [False, True])
def test_template_prior_matches_sampled_frequencies(world, predictor, rich_world, rich):
    if rich:
        world, predictor = rich_world, IdealPredictor(rich_world)
    kinds = Counter()
    n_blocks = 0
    for doc in stream_documents(world.grammar, seed=11):
        for rec in doc.iters:
            toks = [t for t in doc.tokens[rec.start:rec.stop] if t.iter_id == rec.iter_id and "task" in t.tags]
            if toks:
                kinds[toks[0].tags["task"].split(":")[0]] += 1
                n_blocks += 1
        if n_blocks >= 3000:
            break
    prior = Counter()
    for t, p in zip(predictor.templates, predictor.prior):
        prior[t.kind] += p
    assert set(kinds) == set(prior)
    for kind, mass in prior.items():
        assert abs(kinds[kind] / n_blocks - mass) < 0.05, (kind, kinds[kind] / n_blocks, mass)
    assert abs(kinds["prim"] / n_blocks - prior["prim"]) < 0.05


def test_predictor_rejects_bad_prompts_and_worlds(world, predictor):
    with pytest.raises(IclabError, match="EOS first"):
        predictor.predict(["o1", "->", "o2"])
    with pytest.raises(IclabError, match="EOS first"):
        predictor.predict([])
    with pytest.raises(IclabError, match="not in the world's vocabulary"):
        predictor.predict([EOS, "o1", "->", "banana"])
    with pytest.raises(IclabError, match="expected"):
        predictor.predict([EOS, "o1", "o2"])
    with pytest.raises(IclabError, match="shared-template"):
        IdealPredictor(World(WorldConfig(iteration="unshared")))
    with pytest.raises(IclabError, match="shared-template"):
        IdealPredictor(World(WorldConfig(iteration="none")))


def test_three_function_compositions_are_derivable_and_cost_more(rich_world):
    predictor = IdealPredictor(rich_world)
    comp3 = rich_world.tasks()["comp3"]
    assert len(comp3) == 8 and all(t.depth == 3 for t in comp3)
    t = comp3[0]
    maps = rich_world.maps
    assert all(rich_world.apply(t, x) == maps[t.f][maps[t.g][maps[t.h][x]]] for x in range(16))
    # one template among 8 of weight 0.3 vs one among 4 of weight 1: a longer description
    d3 = predictor.description_length(t)
    assert d3 > predictor.description_length(rich_world.tasks()["prim"][0])
    assert d3 == pytest.approx(-math.log(rich_world.cfg.w_comp3 / sum(
        w for w in (1.0, 0.5, 0.5, 0.3, 0.05, 0.3)) / 8))
    assert accuracy_after(predictor, rich_world, "comp3", n_demos=3) >= 0.95


def test_kl_to_ideal_is_zero_for_the_ideal_and_positive_otherwise(rich_world):
    import torch

    from iclab.grammar._evaluate import answer_log_probs, kl_to_ideal
    from iclab.models import ModelSize, build_causal_lm

    predictor = IdealPredictor(rich_world)
    model = build_causal_lm(ModelSize(d_model=32, n_layers=1), len(rich_world.vocab), seed=0).eval()
    for kind in ("prim", "comp", "comp3", "bin", "heldout"):
        task = rich_world.tasks()[kind][0]
        inputs = prompt_inputs(rich_world, [task], 9, 4, seed=1)[task.name]
        ideal = answer_log_probs(predictor, rich_world, task, inputs)  # (4, 9, V)
        assert ideal.shape == (4, 9, len(rich_world.vocab))
        np.testing.assert_allclose(np.exp(ideal).sum(-1), 1.0, atol=1e-9)
        kl_self = kl_to_ideal(ideal, ideal)
        assert kl_self.shape == (4, 9) and (kl_self == 0).all()
        mine = answer_log_probs(model, rich_world, task, inputs)
        kl = kl_to_ideal(ideal, mine)
        assert np.isfinite(kl).all() and (kl > 0).all()
        # the same divergence by hand at one position, from the model's logits
        tokens = full_prompt(rich_world, task, inputs[0])
        with torch.no_grad():
            q = torch.log_softmax(model(input_ids=torch.tensor([[rich_world.token_id[s] for s in tokens]])).logits[0, 2],
                                  -1).double().numpy()  # "->" of the first item predicts its answer
        p = np.exp(ideal[0, 0])
        assert kl[0, 0] == pytest.approx(float(np.sum(p[p > 0] * (np.log(p[p > 0]) - q[p > 0]))), rel=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        kl_to_ideal(ideal, mine[:, :3])


def test_world_refuses_more_triples_than_exist():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="4 functions make only 64 three-function compositions"):
        WorldConfig(n_triples=65)
