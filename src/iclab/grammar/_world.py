"""The default world: one instance of the CAG engine (design and choices: docs/grammar.md, the default world).

Objects o0..o{N-1} are the attribute values; unary functions F0..F{K-1} are fixed random maps
objects -> objects; binary operations G0.. take a second argument that an iteration binds once
(a shared constant). A document is a sequence of blocks, each ended by ".":

    ITER block   x -> y ; x -> y ; ...        one shared template τ, fresh x per copy
                 x -> z => y ; ...            (a composition with its intermediate step shown)
    FACTS block  F3 o5 o9 ; G0 o1 o2 o7 ; ... explicit statements, all parts free
    FREE block   w3 w11 w7 w2 ...             filler from a small random PCFG

Templates τ: a primitive f; a composition f∘g shown direct (only for pairs not held out) or
with its step (all pairs unless `heldout_in_cot` is off); a binary op with a bound constant;
or unrelated random pairs. Held-out pairs never occur as the template of a direct iteration,
which is what makes them the compositional ICL test.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iclab.runtime import IclabError

from ._cag import Call, Emit, Grammar, Iter, Let, Nonterminal, PolyTail, Rule, Sample

SEP_IO, SEP_STEP, SEP_EX, END, EOS, PAD = "->", "=>", ";", ".", "<eos>", "<pad>"
ROLES = ["x", "sep_io", "z", "sep_step", "y", "sep_ex", "end", "fact_fn", "fact_arg", "fact_val", "word", "eos"]


class WorldConfig(BaseModel):
    """The default world's knobs. The world (maps, held-out pairs) is a function of these alone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_objects: int = Field(16, ge=2, le=10_000, description="Object tokens o0..o{N-1}: the attribute values.")
    n_functions: int = Field(4, ge=1, le=1000, description="Unary functions F0.., each a fixed random map.")
    n_binary: int = Field(0, ge=0, le=100, description="Binary operations G0.., used with a bound constant.")
    n_triples: int = Field(0, ge=0, le=100_000, description="Three-function compositions f∘g∘h shown direct "
                           "(a random set of the K³ ordered triples); 0: compositions have two functions.")
    n_words: int = Field(16, ge=3, le=10_000, description="Free-text words w0.. (split into nouns, adjectives, verbs).")
    heldout_fraction: float = Field(1 / 3, ge=0, lt=1,
                                    description="Share of composite pairs (f, g) never iterated in direct form.")
    heldout_in_cot: bool = Field(True, description="Held-out pairs still occur with their intermediate step shown.")
    iteration: Literal["shared", "unshared", "none"] = Field(
        "shared", description="ITER copies share one template (the CAG); 'unshared': each copy draws its own "
                              "(the format stays, the structure goes); 'none': no ITER blocks at all.")
    p_iter: float = Field(0.7, ge=0, description="Weight of ITER blocks.")
    p_facts: float = Field(0.25, ge=0, description="Weight of FACTS blocks.")
    p_free: float = Field(0.05, ge=0, description="Weight of free-text blocks.")
    p_more_blocks: float = Field(0.5, ge=0, lt=1, description="Probability of another block after each block.")
    w_prim: float = Field(1.0, ge=0, description="Template weight: primitive function.")
    w_comp: float = Field(0.5, ge=0, description="Template weight: composition, direct (seen pairs only).")
    w_cot: float = Field(0.5, ge=0, description="Template weight: composition with its intermediate step shown.")
    w_bin: float = Field(0.3, ge=0, description="Template weight: binary operation with a bound constant.")
    w_comp3: float = Field(0.3, ge=0, description="Template weight: three-function composition, direct.")
    w_rand: float = Field(0.05, ge=0, description="Template weight: unrelated random pairs (no shared function).")
    iter_alpha: float = Field(1.5, ge=0, description="ITER copies n ~ n^-alpha on [iter_min, iter_max].")
    iter_min: int = Field(2, ge=1, description="Fewest copies of an ITER.")
    iter_max: int = Field(40, ge=1, description="Most copies of an ITER (prompts must fit under it).")
    facts_max: int = Field(8, ge=1, description="Most statements in a FACTS block (n ~ n^-1 on [1, facts_max]).")
    seed: int = Field(0, ge=0, description="Seed of the world itself: the maps and the held-out pairs.")

    def hash(self) -> str:
        """A short content hash: the world's identity (its maps are a function of these fields)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]

    @model_validator(mode="after")
    def _check(self) -> WorldConfig:
        if self.iter_min > self.iter_max:
            raise ValueError("iter_min must be <= iter_max")
        if self.p_iter + self.p_facts + self.p_free <= 0:
            raise ValueError("at least one block weight (p_iter, p_facts, p_free) must be > 0")
        if self.n_triples > self.n_functions ** 3:
            raise ValueError(f"n_triples = {self.n_triples}, but {self.n_functions} functions make only "
                             f"{self.n_functions ** 3} three-function compositions; lower n_triples or raise "
                             "n_functions")
        return self


@dataclass(frozen=True)
class Task:
    """An ICL task of the world: a name, its type, and the map it computes (and its intermediate step)."""

    name: str  # e.g. "prim:F3", "comp:F1.F4" (= F1(F4(x))), "comp3:F1.F4.F0", "bin:G0.o5"
    kind: Literal["prim", "comp", "heldout", "comp3", "bin"]
    f: int
    g: int = -1  # inner function of a composition
    j: int = -1  # binary operation
    c: int = -1  # its bound constant
    h: int = -1  # innermost function of a three-function composition: f(g(h(x)))

    @property
    def depth(self) -> int:
        """Functions composed: 1 for a primitive (and a binary operation), 2 or 3 for compositions."""
        return 1 + (self.g >= 0) + (self.h >= 0)


class World:
    """A sampled world: the maps, the held-out pairs, the vocabulary, and its grammar."""

    def __init__(self, cfg: WorldConfig):
        self.cfg = cfg
        rng = random.Random(f"iclab-world-{cfg.seed}")
        N, K = cfg.n_objects, cfg.n_functions
        self.maps = [[rng.randrange(N) for _ in range(N)] for _ in range(K)]  # maps[f][x]
        self.bins = [[[rng.randrange(N) for _ in range(N)] for _ in range(N)] for _ in range(cfg.n_binary)]
        pairs = [(f, g) for f in range(K) for g in range(K)]
        rng.shuffle(pairs)
        n_held = round(cfg.heldout_fraction * len(pairs))
        self.heldout_pairs = sorted(pairs[:n_held])
        self.seen_pairs = sorted(pairs[n_held:])
        self.cot_pairs = sorted(pairs) if cfg.heldout_in_cot else list(self.seen_pairs)
        self._check_components()
        triples = [(f, g, h) for f in range(K) for g in range(K) for h in range(K)]  # own stream: the maps and
        self.triples = sorted(random.Random(f"iclab-world-{cfg.seed}-triples").sample(triples, cfg.n_triples))
        self.vocab = ([PAD, EOS, SEP_IO, SEP_STEP, SEP_EX, END] + [f"o{i}" for i in range(N)]
                      + [f"F{k}" for k in range(K)] + [f"G{j}" for j in range(cfg.n_binary)]
                      + [f"w{i}" for i in range(cfg.n_words)])
        self.token_id = {t: i for i, t in enumerate(self.vocab)}
        self.grammar = self._grammar()

    def _check_components(self) -> None:
        """A held-out composition tests recombination only if both its functions occur in compositions the
        corpus does show (direct or with the step); otherwise the model never saw that function composed."""
        shown = set(self.seen_pairs) | set(self.cot_pairs)
        outer, inner = {f for f, _ in shown}, {g for _, g in shown}
        for f, g in self.heldout_pairs:
            if f not in outer or g not in inner:
                missing = f"F{f} as the outer function" if f not in outer else f"F{g} as the inner function"
                raise IclabError(f"world seed {self.cfg.seed}: held-out composition F{f}.F{g} has {missing} in no "
                                 "composition the corpus shows; lower heldout_fraction or add functions "
                                 "(n_functions)")

    # -- ids -------------------------------------------------------------------------------
    def obj(self, x: int) -> int:
        return self.token_id[f"o{x}"]

    @cached_property
    def object_ids(self) -> list[int]:
        return [self.obj(x) for x in range(self.cfg.n_objects)]

    def apply(self, task: Task, x: int) -> int:
        if task.kind == "bin":
            return self.bins[task.j][x][task.c]
        if task.h >= 0:
            x = self.maps[task.h][x]
        return self.maps[task.f][self.maps[task.g][x]] if task.g >= 0 else self.maps[task.f][x]

    def mid(self, task: Task, x: int) -> int:
        """The intermediate value g(x) of a two-function composition (-1 for other tasks)."""
        return self.maps[task.g][x] if task.g >= 0 and task.h < 0 else -1

    # -- tasks -----------------------------------------------------------------------------
    def tasks(self) -> dict[str, list[Task]]:
        """The ICL test tasks by type: primitives, seen and held-out compositions, binary ops."""
        out: dict[str, list[Task]] = {
            "prim": [Task(f"prim:F{f}", "prim", f) for f in range(self.cfg.n_functions)],
            "comp": [Task(f"comp:F{f}.F{g}", "comp", f, g) for f, g in self.seen_pairs],
            "heldout": [Task(f"heldout:F{f}.F{g}", "heldout", f, g) for f, g in self.heldout_pairs],
            "comp3": [Task(f"comp3:F{f}.F{g}.F{h}", "comp3", f, g, h=h) for f, g, h in self.triples],
        }
        if self.cfg.n_binary:
            out["bin"] = [Task(f"bin:G{j}.o{c}", "bin", -1, j=j, c=c)
                          for j in range(self.cfg.n_binary) for c in range(self.cfg.n_objects)]
        return {k: v for k, v in out.items() if v}

    # -- the grammar -----------------------------------------------------------------------
    def _grammar(self) -> Grammar:
        c = self.cfg
        N, K, NB = c.n_objects, c.n_functions, c.n_binary
        free = c.iteration == "unshared"  # the ablation: every copy draws its own template
        objects = list(range(N))
        tables = dict(maps=self.maps, bins=self.bins, objects=objects, functions=list(range(K)),
                      binops=list(range(NB)), seen=self.seen_pairs, cotpairs=self.cot_pairs, triples=self.triples)
        tags = {"task": lambda e: e.task, "mid": lambda e: e.mid, "xval": lambda e: e.x}  # latent, per token

        def template(kind: str, weight: float, items: list, task) -> Rule:
            label = task if callable(task) else (lambda e, t=task: t)
            return Rule(items + [Let("kind", lambda e, k=kind: k), Let("task", label)], weight, name=kind)

        templates = [
            template("prim", c.w_prim, [Sample("f", "functions", free=free), Let("g", -1), Let("j", -1),
                                        Let("c", -1), Let("h", -1)], lambda e: f"prim:F{e.f}"),
            template("comp", c.w_comp if self.seen_pairs else 0.0,
                     [Sample("fg", "seen", free=free), Let("f", lambda e: e.fg[0]), Let("g", lambda e: e.fg[1]),
                      Let("j", -1), Let("c", -1), Let("h", -1)], lambda e: f"comp:F{e.f}.F{e.g}"),
            template("cot", c.w_cot if self.cot_pairs else 0.0,
                     [Sample("fg", "cotpairs", free=free), Let("f", lambda e: e.fg[0]),
                      Let("g", lambda e: e.fg[1]), Let("j", -1), Let("c", -1), Let("h", -1)],
                     lambda e: f"cot:F{e.f}.F{e.g}"),
            template("bin", c.w_bin if NB else 0.0,
                     [Let("f", -1), Let("g", -1), Sample("j", "binops", free=free), Sample("c", "objects", free=free),
                      Let("h", -1)], lambda e: f"bin:G{e.j}.o{e.c}"),
            template("rand", c.w_rand, [Let("f", -1), Let("g", -1), Let("j", -1), Let("c", -1), Let("h", -1)],
                     "rand"),
            template("comp3", c.w_comp3 if self.triples else 0.0,
                     [Sample("fgh", "triples", free=free), Let("f", lambda e: e.fgh[0]), Let("g", lambda e: e.fgh[1]),
                      Let("h", lambda e: e.fgh[2]), Let("j", -1), Let("c", -1)],
                     lambda e: f"comp3:F{e.f}.F{e.g}.F{e.h}"),
        ]
        templates = [r for r in templates if r.weight > 0]
        out_args = {k: k for k in ("kind", "f", "g", "j", "c", "h", "x", "task")}

        def y_emit(value) -> list:
            return [Let("y", value), Let("mid", lambda e: e.maps[e.g][e.x] if e.kind == "comp" else -1),
                    Emit(lambda e: f"o{e.y}", "y", tags)]

        nts = [
            Nonterminal("DOC", [Rule([Call("BLOCK"), Emit(END, "end")], 1 - c.p_more_blocks, name="last"),
                                Rule([Call("BLOCK"), Emit(END, "end"), Call("DOC")], c.p_more_blocks, name="more")]),
            Nonterminal("BLOCK", [r for r in [
                Rule([Iter(Call("ITEM"), [Emit(SEP_EX, "sep_ex")], PolyTail(c.iter_alpha, c.iter_min, c.iter_max))],
                     c.p_iter if c.iteration != "none" else 0.0, name="iter"),
                Rule([Iter(Call("FACT"), [Emit(SEP_EX, "sep_ex")], PolyTail(1.0, 1, c.facts_max))], c.p_facts,
                     name="facts"),
                Rule([Call("FREE")], c.p_free, name="free"),
            ] if r.weight > 0]),
            Nonterminal("ITEM", [Rule([
                Call("TEMPLATE", out=("kind", "f", "g", "j", "c", "h", "task")),
                Sample("x", "objects", free=True),
                Let("mid", lambda e: e.maps[e.g][e.x] if e.kind == "comp" else -1),
                Emit(lambda e: f"o{e.x}", "x", tags),
                Emit(SEP_IO, "sep_io", tags),
                Call("OUT", args=out_args),
            ], name="item")]),
            Nonterminal("TEMPLATE", templates, returns=("kind", "f", "g", "j", "c", "h", "task"), free=free),
            Nonterminal("OUT", [
                Rule(y_emit(lambda e: e.maps[e.f][e.x]), when=lambda e: e.kind == "prim", name="prim"),
                Rule(y_emit(lambda e: e.maps[e.f][e.maps[e.g][e.x]]), when=lambda e: e.kind == "comp", name="comp"),
                Rule([Let("mid", -1), Let("z", lambda e: e.maps[e.g][e.x]),
                      Emit(lambda e: f"o{e.z}", "z", tags), Emit(SEP_STEP, "sep_step", tags),
                      Let("y", lambda e: e.maps[e.f][e.z]), Emit(lambda e: f"o{e.y}", "y", tags)],
                     when=lambda e: e.kind == "cot", name="cot"),
                Rule(y_emit(lambda e: e.bins[e.j][e.x][e.c]), when=lambda e: e.kind == "bin", name="bin"),
                Rule(y_emit(lambda e: e.maps[e.f][e.maps[e.g][e.maps[e.h][e.x]]]), when=lambda e: e.kind == "comp3",
                     name="comp3"),
                Rule([Sample("yr", "objects", free=True)] + y_emit(lambda e: e.yr), when=lambda e: e.kind == "rand",
                     name="rand"),
            ], params=tuple(out_args)),
            Nonterminal("FACT", [r for r in [
                Rule([Sample("f", "functions", free=True), Sample("x", "objects", free=True),
                      Emit(lambda e: f"F{e.f}", "fact_fn"), Emit(lambda e: f"o{e.x}", "fact_arg"),
                      Emit(lambda e: f"o{e.maps[e.f][e.x]}", "fact_val")], float(K), name="unary"),
                Rule([Sample("j", "binops", free=True), Sample("x", "objects", free=True),
                      Sample("c", "objects", free=True), Emit(lambda e: f"G{e.j}", "fact_fn"),
                      Emit(lambda e: f"o{e.x}", "fact_arg"), Emit(lambda e: f"o{e.c}", "fact_arg"),
                      Emit(lambda e: f"o{e.bins[e.j][e.x][e.c]}", "fact_val")], float(NB), name="binary"),
            ] if r.weight > 0], free=True),
        ]
        nts += self._free_text()
        return Grammar(nts, "DOC", tables, vocab=self.vocab)

    def _free_text(self) -> list[Nonterminal]:
        """Filler: a small PCFG over three word classes (sentences of 1-4 words, 1+ sentences)."""
        W = self.cfg.n_words
        third = max(1, W // 3)
        tables = dict(nouns=[f"w{i}" for i in range(third)], adjs=[f"w{i}" for i in range(third, 2 * third)],
                      verbs=[f"w{i}" for i in range(2 * third, W)])

        def word(cls: str) -> list:
            return [Sample("w", lambda e, cls=cls: tables[cls], free=True), Emit(lambda e: e.w, "word")]

        return [
            Nonterminal("FREE", [Rule([Call("SENT")], 0.5, name="one"), Rule([Call("SENT"), Call("FREE")], 0.5,
                                                                              name="more")]),
            Nonterminal("SENT", [Rule([Call("NP"), Call("VP")], name="np_vp")]),
            Nonterminal("NP", [Rule(word("nouns"), 0.6, name="n"), Rule(word("adjs") + word("nouns"), 0.4,
                                                                        name="adj_n")], free=True),
            Nonterminal("VP", [Rule(word("verbs"), 0.5, name="v"), Rule(word("verbs") + [Call("NP")], 0.5,
                                                                        name="v_np")], free=True),
        ]
