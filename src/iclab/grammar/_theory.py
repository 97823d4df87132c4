"""The theory made computable: description length D[τ], iteration cost R_n, the idealised predictor.

The idealised predictor is the grammar's own next-token distribution P_G(w | prefix) for a
prompt at a document start (an ICL prompt is the beginning of one ITER block). It is exact
for the default world: the first token fixes the block type, and inside an ITER block the
posterior over templates τ is the prior times the likelihood of the answers seen so far
(maps are deterministic, so each τ either explains an answer or is ruled out; the
random-pairs template explains anything with 1/N).

Theorem 1 (as we reconstruct it: docs/grammar.md: the question): the cumulative log loss on the answers of an n-item
prompt is at most D[τ] + R_n, because the chain rule turns the mixture's probability of the
whole prompt into the summed loss and the mixture is at least prior(τ) · P(N ≥ n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from iclab.runtime import IclabError

from ._cag import PolyTail
from ._world import EOS, END, SEP_EX, SEP_IO, SEP_STEP, Task, World


@dataclass(frozen=True)
class Template:
    kind: str  # prim | comp | cot | comp3 | bin | rand
    f: int = -1
    g: int = -1
    j: int = -1
    c: int = -1
    h: int = -1


class IdealPredictor:
    """P_G(next token | prefix) of the default world, for prefixes inside the first ITER block."""

    def __init__(self, world: World):
        cfg = world.cfg
        if cfg.iteration != "shared":
            raise IclabError(f"the idealised predictor is derived for the shared-template world; this world has "
                             f"iteration={cfg.iteration!r}")
        self.world = world
        N, K, NB = cfg.n_objects, cfg.n_functions, cfg.n_binary
        groups: list[tuple[str, float, list[Template]]] = [
            ("prim", cfg.w_prim, [Template("prim", f) for f in range(K)]),
            ("comp", cfg.w_comp, [Template("comp", f, g) for f, g in world.seen_pairs]),
            ("cot", cfg.w_cot, [Template("cot", f, g) for f, g in world.cot_pairs]),
            ("comp3", cfg.w_comp3, [Template("comp3", f, g, h=h) for f, g, h in world.triples]),
            ("bin", cfg.w_bin if NB else 0.0, [Template("bin", j=j, c=c) for j in range(NB) for c in range(N)]),
            ("rand", cfg.w_rand, [Template("rand")]),
        ]
        groups = [(k, w, ts) for k, w, ts in groups if w > 0 and ts]
        total = sum(w for _, w, _ in groups)
        self.templates: list[Template] = []
        prior = []
        for _, w, ts in groups:
            self.templates += ts
            prior += [w / total / len(ts)] * len(ts)
        self.prior = np.asarray(prior)  # (T,)
        self.index = {t: i for i, t in enumerate(self.templates)}
        self.iter_prior = PolyTail(cfg.iter_alpha, cfg.iter_min, cfg.iter_max)
        # first[t, x]: the object the template emits right after "x ->" (-1: uniform); then[t, z]: after "=>"
        T = len(self.templates)
        self.first = np.full((T, N), -1, dtype=np.int64)
        self.then = np.full((T, N), -1, dtype=np.int64)
        maps = np.asarray(world.maps)  # (K, N)
        for i, t in enumerate(self.templates):
            if t.kind == "prim":
                self.first[i] = maps[t.f]
            elif t.kind == "comp":
                self.first[i] = maps[t.f][maps[t.g]]
            elif t.kind == "comp3":
                self.first[i] = maps[t.f][maps[t.g][maps[t.h]]]
            elif t.kind == "cot":
                self.first[i] = maps[t.g]
                self.then[i] = maps[t.f]
            elif t.kind == "bin":
                self.first[i] = np.asarray(world.bins[t.j])[:, t.c]
        self.is_cot = np.array([t.kind == "cot" for t in self.templates])
        self.V = len(world.vocab)
        self.obj_ids = np.asarray(world.object_ids)
        self.tok = world.token_id

    # -- the theory's quantities ------------------------------------------------------------
    def template_of(self, task: Task, cot: bool = False) -> Template | None:
        """The grammar template that generates the task's iterations (None: not derivable)."""
        if task.kind == "prim":
            t = Template("prim", task.f)
        elif task.kind in ("comp", "heldout"):
            t = Template("cot" if cot else "comp", task.f, task.g)
        elif task.kind == "comp3":
            t = Template("comp3", task.f, task.g, h=task.h)
        else:
            t = Template("bin", j=task.j, c=task.c)
        return t if t in self.index else None

    def description_length(self, task: Task, cot: bool = False) -> float:
        """D[τ] = −log P(τ) in nats: the shared decisions of the task's derivation; inf if none."""
        t = self.template_of(task, cot)
        return math.inf if t is None else -math.log(self.prior[self.index[t]])

    def iteration_cost(self, n: int) -> float:
        """R_n = −log P_iter(n): the cost of an n-fold iteration (O(log n) under the polynomial tail)."""
        return self.iter_prior.cost(n)

    # -- the predictor ------------------------------------------------------------------------
    def _doc_start(self) -> np.ndarray:
        """The first token of a document: a block's first token, by block type."""
        cfg = self.world.cfg
        p = np.zeros(self.V)
        weights = {"iter": cfg.p_iter, "facts": cfg.p_facts, "free": cfg.p_free}
        total = sum(weights.values())
        p[self.obj_ids] += weights["iter"] / total / cfg.n_objects
        n_fact_kinds = cfg.n_functions + cfg.n_binary
        for name in [f"F{k}" for k in range(cfg.n_functions)] + [f"G{j}" for j in range(cfg.n_binary)]:
            p[self.tok[name]] += weights["facts"] / total / n_fact_kinds
        third = max(1, cfg.n_words // 3)  # FREE: SENT -> NP VP, NP -> N (0.6) | ADJ N (0.4)
        for i in range(third):
            p[self.tok[f"w{i}"]] += weights["free"] / total * 0.6 / third
            p[self.tok[f"w{third + i}"]] += weights["free"] / total * 0.4 / third
        return p

    def _continue(self, copies_done: int) -> tuple[float, float]:
        """P(";") and P(".") after `copies_done` complete copies: the iteration prior's hazard."""
        tail_now = self.iter_prior.tail(copies_done)
        more = self.iter_prior.tail(copies_done + 1) / tail_now if tail_now > 0 else 0.0
        return more, 1.0 - more

    def predict(self, tokens: list[str]) -> np.ndarray:
        """(len(tokens), V): the distribution of the token after each prefix tokens[:t+1].

        `tokens` starts with EOS and continues as an ITER block: x -> y ; x -> z => y ; ...
        """
        if not tokens or tokens[0] != EOS:
            raise IclabError("the idealised predictor reads prompts that start at a document start (EOS first)")
        out = np.zeros((len(tokens), self.V))
        post = self.prior.copy()  # unnormalised posterior over templates
        objs = {int(o): k for k, o in enumerate(self.obj_ids)}
        out[0] = self._doc_start()  # after EOS: a block's first token
        state, x, z, copies = "x", -1, -1, 0
        for t, text in enumerate(tokens[1:], start=1):
            tid = self.tok.get(text)
            if tid is None:
                raise IclabError(f"token {text!r} is not in the world's vocabulary")
            # 1. consume the token: update the posterior and the parse state
            if state == "x":
                if tid not in objs:
                    raise IclabError(f"position {t}: expected an object (the next input), got {text!r}")
                x, state = objs[tid], "io"
            elif state == "io":
                if text != SEP_IO:
                    raise IclabError(f"position {t}: expected {SEP_IO!r} after the input, got {text!r}")
                state = "answer"
            elif state == "answer":
                if tid not in objs:
                    raise IclabError(f"position {t}: expected an object (the answer), got {text!r}")
                a = objs[tid]
                first = self.first[:, x]
                post = post * np.where(first < 0, 1.0 / len(objs), (first == a).astype(float))
                z, state = a, "after_answer"
            elif state == "after_answer":
                more, stop = self._continue(copies + 1)
                if text == SEP_STEP:
                    post = post * self.is_cot
                    state = "step"
                elif text in (SEP_EX, END):
                    post = post * ~self.is_cot * (more if text == SEP_EX else stop)
                    copies += 1
                    state = "x" if text == SEP_EX else "done"
                else:
                    raise IclabError(f"position {t}: expected {SEP_STEP!r}, {SEP_EX!r} or {END!r}, got {text!r}")
            elif state == "step":
                if tid not in objs:
                    raise IclabError(f"position {t}: expected an object after {SEP_STEP!r}, got {text!r}")
                post = post * (self.then[:, z] == objs[tid])
                state = "after_y"
            elif state == "after_y":
                if text not in (SEP_EX, END):
                    raise IclabError(f"position {t}: expected {SEP_EX!r} or {END!r}, got {text!r}")
                more, stop = self._continue(copies + 1)
                post = post * (more if text == SEP_EX else stop)  # 0 if the list cannot continue / end here
                copies += 1
                state = "x" if text == SEP_EX else "done"
            else:
                raise IclabError("the idealised predictor covers the first ITER block; the prompt continues past it")
            if post.sum() <= 0:
                raise IclabError(f"position {t}: the prompt has probability 0 under the grammar")
            # 2. predict the next token
            p = np.zeros(self.V)
            if state == "x":
                p[self.obj_ids] = 1.0 / len(self.obj_ids)
            elif state == "io":
                p[self.tok[SEP_IO]] = 1.0
            elif state == "answer":
                w = post / post.sum()
                first = self.first[:, x]
                known = first >= 0
                np.add.at(p, self.obj_ids[first[known]], w[known])
                p[self.obj_ids] += w[~known].sum() / len(self.obj_ids)
            elif state == "after_answer":
                w = post / post.sum()
                more, stop = self._continue(copies + 1)
                p_cot = float(w[self.is_cot].sum())
                p[self.tok[SEP_STEP]] = p_cot
                p[self.tok[SEP_EX]] = (1 - p_cot) * more
                p[self.tok[END]] = (1 - p_cot) * stop
            elif state == "step":
                w = post / post.sum()
                then = self.then[:, z]
                ok = then >= 0
                np.add.at(p, self.obj_ids[then[ok]], w[ok])
            elif state == "after_y":
                more, stop = self._continue(copies + 1)
                p[self.tok[SEP_EX]], p[self.tok[END]] = more, stop
            elif state == "done":  # DOC -> BLOCK "." [DOC]: another block, or the document ends
                p = self.world.cfg.p_more_blocks * self._doc_start()
                p[self.tok[EOS]] += 1 - self.world.cfg.p_more_blocks
            out[t] = p
        return out
