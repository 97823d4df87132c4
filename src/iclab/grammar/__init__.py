"""Emergent ICL from compositional structure (Hahn & Goyal 2023): the grammar, its corpus, the theory.

    world = World(WorldConfig())                         # objects, random maps, held-out pairs, a CAG
    corpus = sample_corpus(world.grammar, 100_000, seed=0)   # token ids + role / iteration / template / tags
    task = world.tasks()["prim"][0]
    p = IdealPredictor(world).predict(prompt_tokens(world, task, [3, 5, 7]))   # exact P_G(next | prefix)

Your own grammar: build `Grammar` from `Nonterminal`/`Rule`/`Emit`/`Sample`/`Let`/`Call`/`Iter`, or
write it in YAML and `load_grammar(path)`. Models are trained by `iclab.models.train_causal_lm`.
"""

from ._cag import Call, Derivation, Emit, Grammar, Iter, IterRecord, Let, Nonterminal, PolyTail, Rule, Sample, Token
from ._corpus import Corpus, sample_corpus, stream_documents, token_ids
from ._evaluate import Curve, generated_cot, ideal_curve, model_curve, prompt_inputs
from ._probes import ProbeResult, control_labels, fit_probes
from ._prompts import full_prompt, prompt_tokens
from ._grammar_file import load_grammar
from ._theory import IdealPredictor
from ._world import EOS, PAD, ROLES, Task, World, WorldConfig

__all__ = [
    "Call", "Corpus", "Curve", "Derivation", "EOS", "Emit", "Grammar", "IdealPredictor", "Iter", "IterRecord", "Let",
    "Nonterminal", "PAD", "PolyTail", "ProbeResult", "ROLES", "Rule", "Sample", "Task", "Token", "World",
    "WorldConfig", "control_labels", "fit_probes", "full_prompt", "generated_cot", "ideal_curve", "load_grammar",
    "model_curve", "prompt_inputs", "prompt_tokens", "sample_corpus", "stream_documents", "token_ids",
]  # fmt: skip
