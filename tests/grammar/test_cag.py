"""The CAG engine's invariants, checked on the default world and on tiny hand-written grammars."""

import math
import random

import pytest

from iclab.grammar._cag import Call, Emit, Grammar, Iter, Let, Nonterminal, PolyTail, Rule, Sample
from iclab.grammar._expr import Env, compile_expr, compile_template
from iclab.grammar._theory import IdealPredictor
from iclab.grammar._world import Task, World, WorldConfig
from iclab.runtime._errors import IclabError


def sample_docs(world: World, n: int) -> list:
    sampler = world.grammar.sampler()
    return [sampler.sample(random.Random(i)) for i in range(n)]


@pytest.fixture(scope="module")
def docs(world):
    return sample_docs(world, 300)


def item_blocks(doc):
    """(IterRecord, its own tokens) for every ITER block of x -> y items."""
    for rec in doc.iters:
        toks = [t for t in doc.tokens[rec.start:rec.stop] if t.iter_id == rec.iter_id]
        if any("task" in t.tags for t in toks):
            yield rec, toks


def parse_task(tag: str) -> tuple[str, int, int]:
    """'prim:F3' -> ('prim', 3, -1); 'comp:F1.F4' (= F1(F4(x))) -> ('comp', 1, 4); 'rand' -> ('rand', -1, -1)."""
    if tag == "rand":
        return "rand", -1, -1
    kind, fns = tag.split(":")
    parts = [int(p[1:]) for p in fns.split(".")]
    return kind, parts[0], parts[1] if len(parts) > 1 else -1


def task_of(kind: str, f: int, g: int) -> Task:
    if kind == "prim":
        return Task(f"prim:F{f}", "prim", f)
    return Task(f"comp:F{f}.F{g}", "comp", f, g)


# -- ITER: shared templates, metadata, held-out pairs -------------------------------------------


def test_every_iter_copy_shares_its_template(world, docs):
    pred = IdealPredictor(world)
    kinds = set()
    for doc in docs:
        for rec, toks in item_blocks(doc):
            tags = {t.tags["task"] for t in toks if t.role in ("x", "y")}
            assert len(tags) == 1, tags
            assert rec.shared, "an ITER of items has shared (template) decisions"
            assert {t.template for t in toks} == {rec.template}
            assert len({t.iter_index for t in toks if t.role == "x"}) == rec.n
            kind, f, g = parse_task(tags.pop())
            kinds.add(kind)
            if kind in ("prim", "comp", "cot"):
                d = pred.description_length(task_of(kind, f, g), cot=kind == "cot")
                assert rec.shared_cost == pytest.approx(d, rel=1e-12)
            assert rec.iter_cost == pytest.approx(pred.iteration_cost(rec.n), rel=1e-12)
    assert {"prim", "comp", "cot"} <= kinds


def test_token_metadata_matches_the_yield(world, docs):
    maps = world.maps
    n_y = 0
    for doc in docs:
        for rec, toks in item_blocks(doc):
            z = None
            for t in toks:
                if t.role == "x":
                    assert t.text == f"o{t.tags['xval']}"
                if t.role not in ("x", "y", "z"):
                    continue
                kind, f, g = parse_task(t.tags["task"])
                x = t.tags["xval"]
                if kind == "comp":
                    assert t.tags["mid"] == maps[g][x]
                if t.role == "z":
                    assert kind == "cot" and t.text == f"o{maps[g][x]}"
                    z = maps[g][x]
                elif t.role == "y":
                    n_y += 1
                    if kind == "prim":
                        assert t.text == f"o{maps[f][x]}"
                    elif kind == "comp":
                        assert t.text == f"o{maps[f][maps[g][x]]}"
                    elif kind == "cot":
                        assert z is not None and t.text == f"o{maps[f][z]}"
                        z = None
    assert n_y > 500


def test_heldout_pairs_never_iterated_directly(world):
    docs = sample_docs(world, 2000)
    comp, cot = set(), set()
    for doc in docs:
        for _, toks in item_blocks(doc):
            kind, f, g = parse_task(toks[0].tags["task"])
            (comp if kind == "comp" else cot if kind == "cot" else set()).add((f, g))
    held = set(world.heldout_pairs)
    assert held and not comp & held
    assert comp <= set(world.seen_pairs) and len(comp) >= len(world.seen_pairs) // 2
    assert cot & held, "held-out pairs still occur with their step shown (heldout_in_cot)"


def test_recombination_world_never_shows_a_heldout_composition():
    """heldout_in_cot=False: a held-out composition occurs in no form (neither direct nor with its step) in
    3000 documents, while each of its functions occurs composed with others and alone."""
    world = World(WorldConfig(heldout_in_cot=False))
    held = set(world.heldout_pairs)
    shown, prims = set(), set()
    for doc in sample_docs(world, 3000):
        for _, toks in item_blocks(doc):
            kind, f, g = parse_task(toks[0].tags["task"])
            if kind in ("comp", "cot"):
                shown.add((f, g))
            elif kind == "prim":
                prims.add(f)
    assert held and not shown & held
    for f, g in held:
        assert any(a == f for a, _ in shown) and any(b == g for _, b in shown)
        assert {f, g} <= prims


def test_a_function_never_shown_composed_is_refused_before_training():
    with pytest.raises(IclabError, match="in no composition the corpus shows") as err:
        World(WorldConfig(n_functions=2, heldout_fraction=0.75, heldout_in_cot=False))
    assert "\n" not in str(err.value)


def test_iteration_count_within_the_prior_range(world, docs):
    cfg = world.cfg
    for doc in docs:
        for rec, _ in item_blocks(doc):
            assert cfg.iter_min <= rec.n <= cfg.iter_max
            assert len(rec.copy_starts) == rec.n


def test_unshared_world_draws_a_template_per_copy():
    docs = sample_docs(World(WorldConfig(iteration="unshared")), 200)
    mixed = 0
    for doc in docs:
        for rec, toks in item_blocks(doc):
            assert not rec.shared and rec.shared_cost == 0.0
            mixed += len({t.tags["task"] for t in toks if t.role == "y"}) > 1
    assert mixed > 10


def test_no_iteration_world_has_no_items():
    docs = sample_docs(World(WorldConfig(iteration="none")), 200)
    roles = {t.role for doc in docs for t in doc.tokens}
    assert not roles & {"x", "y", "z"}
    assert "fact_fn" in roles and "word" in roles


# -- the iteration prior ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha,n_min,n_max", [(2.0, 1, 32), (1.5, 2, 40), (0.0, 3, 7)])
def test_polytail_normalised_and_cost_is_log(alpha, n_min, n_max):
    tail = PolyTail(alpha, n_min, n_max)
    assert sum(tail.probs) == pytest.approx(1.0, abs=1e-12)
    assert tail.tail(n_min) == pytest.approx(1.0) and tail.tail(n_max + 1) == 0.0
    const = [tail.cost(n) - alpha * math.log(n) for n in range(n_min, n_max + 1)]
    assert max(const) - min(const) < 1e-9
    assert tail.cost(n_max + 1) == math.inf and tail.prob(n_min - 1) == 0.0


@pytest.mark.parametrize("kw", [{"n_min": 0}, {"n_min": 5, "n_max": 4}, {"alpha": -1.0}])
def test_polytail_rejects_bad_ranges(kw):
    with pytest.raises(IclabError):
        PolyTail(**kw)


# -- the engine's own checks -------------------------------------------------------------------------


def test_undefined_nonterminal_rejected():
    with pytest.raises(IclabError, match="undefined nonterminal 'B'"):
        Grammar([Nonterminal("S", [Rule([Call("B")])])], "S")
    with pytest.raises(IclabError, match="start symbol"):
        Grammar([Nonterminal("S", [Rule([Emit("a")])])], "T")


def test_negative_weight_rejected():
    with pytest.raises(IclabError, match="weight"):
        Grammar([Nonterminal("S", [Rule([Emit("a")], -1.0), Rule([Emit("b")])])], "S")


def test_missing_inherited_attribute_rejected():
    nts = [Nonterminal("S", [Rule([Call("A", args={"u": 1})])]),
           Nonterminal("A", [Rule([Emit("{u}{v}")])], params=("u", "v"))]
    with pytest.raises(IclabError, match="without its attributes"):
        Grammar(nts, "S")


def test_unknown_synthesized_attribute_rejected():
    nts = [Nonterminal("S", [Rule([Call("A", out=("nope",))])]),
           Nonterminal("A", [Rule([Let("a", 1)])], returns=("a",))]
    with pytest.raises(IclabError, match="returns only"):
        Grammar(nts, "S")


def test_nested_calls_pass_inherited_and_synthesized_attributes():
    nts = [
        Nonterminal("S", [Rule([Call("A", args={"u": 3}, out=("a",)), Emit("r{a}", "res"), Emit("s{u}")])],
                    ),
        Nonterminal("A", [Rule([Call("B", args={"v": "u * 2"}, out=("b",)), Let("a", "b + 1")])],
                    params=("u",), returns=("a",)),
        Nonterminal("B", [Rule([Let("b", lambda e: e.v * 10)])], params=("v",), returns=("b",)),
    ]
    g = Grammar(nts, "S", tables={"u": 7})
    d = g.sample(random.Random(0))
    # a = (3*2)*10 + 1; the caller's `u` falls back to the table (child attributes do not leak up)
    assert d.text == ["r61", "s7"] and d.tokens[0].role == "res"
    assert d.logp == 0.0 and d.iters == []


def test_rule_choice_respects_when_and_weights():
    nts = [Nonterminal("S", [Rule([Sample("k", "range(2)"), Call("A", args={"k": "k"})])]),
           Nonterminal("A", [Rule([Emit("zero")], when="k == 0"), Rule([Emit("one")], 3.0, when="k == 1"),
                             Rule([Emit("never")], 0.0, when="k == 1")], params=("k",))]
    g = Grammar(nts, "S")
    for i in range(50):
        d = g.sample(random.Random(i))
        assert d.text in (["zero"], ["one"])
        assert d.logp == pytest.approx(math.log(0.5))


# -- shared vs free decisions inside ITER --------------------------------------------------------


def _iter_grammar(**nt_kw) -> Grammar:
    return Grammar([
        Nonterminal("S", [Rule([Iter(Call("I"), [Emit(";", "sep")], PolyTail(0.0, 8, 8))])]),
        Nonterminal("I", [Rule([Sample("a", "range(100)"), Sample("b", "range(100)", free=True),
                                Emit("a{a}", "a"), Emit("b{b}", "b")])], **nt_kw),
    ], "S")


def test_free_sample_differs_across_copies_shared_does_not():
    g = _iter_grammar()
    sampler = g.sampler()
    for i in range(20):
        d = sampler.sample(random.Random(i))
        (rec,) = d.iters
        a = [t.text for t in d.tokens if t.role == "a"]
        b = [t.text for t in d.tokens if t.role == "b"]
        assert rec.n == len(a) == 8 and len(set(a)) == 1 and len(set(b)) > 1
        assert rec.shared == {"I.a": int(a[0][1:])}
        assert rec.shared_cost == pytest.approx(math.log(100))
        assert rec.iter_cost == 0.0  # a single possible n costs nothing
        assert [t.iter_index for t in d.tokens if t.role == "a"] == list(range(8))
        assert [t.iter_index for t in d.tokens if t.role == "sep"] == list(range(7))
        # logp: one shared draw and 8 free ones
        assert d.logp == pytest.approx(-9 * math.log(100))
    assert len(sampler.templates) > 1


def test_free_nonterminal_redraws_its_rule_per_copy():
    g = Grammar([
        Nonterminal("S", [Rule([Iter(Call("I"), (), PolyTail(0.0, 12, 12))])]),
        Nonterminal("I", [Rule([Call("R"), Call("Q")])]),
        Nonterminal("R", [Rule([Emit("r0", "r")], name="r0"), Rule([Emit("r1", "r")], name="r1")], free=True),
        Nonterminal("Q", [Rule([Emit("q0", "q")], name="q0"), Rule([Emit("q1", "q")], name="q1")]),
    ], "S")
    d = g.sample(random.Random(3))
    r = {t.text for t in d.tokens if t.role == "r"}
    q = {t.text for t in d.tokens if t.role == "q"}
    assert len(r) == 2 and len(q) == 1
    assert list(d.iters[0].shared.values()) == [q.pop()]


def test_same_text_as_template_and_as_expression():
    """A token template and a tag expression with the same text are compiled separately."""
    g = Grammar([Nonterminal("S", [Rule([Sample("f", "range(3)"), Emit("f", "w", {"val": "f"})])])], "S")
    d = g.sample(random.Random(0))
    assert d.tokens[0].text == "f" and d.tokens[0].tags["val"] in (0, 1, 2)


# -- the safe expression language ----------------------------------------------------------------------


@pytest.mark.parametrize("src", ["__import__('os')", "x.__class__", "(lambda: 1)()", "lambda: 1",
                                 "[i for i in range(3)]", "{i: i for i in range(3)}", "open('f')",
                                 "maps.pop()", "f(1)", "1 +", "range(3, step=1)"])
def test_expression_language_rejects_unsafe_code(src):
    with pytest.raises(IclabError):
        compile_expr(src)


def test_expression_language_evaluates():
    env = Env({"maps": [[3, 1, 2], [0, 0, 1]], "objects": [0, 1, 2]}, {"f": 1, "x": 2})
    assert compile_expr("maps[f][x] + 2 * 3 - 1")(env) == 6
    assert compile_expr("maps[0][x] if f == 1 else -1")(env) == 2
    assert compile_expr("(x + 1) % 3 // 1")(env) == 0
    assert compile_expr("len(objects) - max(f, x) ** 2")(env) == -1
    assert compile_expr("x in objects and not f == 0")(env) is True
    assert compile_expr("0 < x <= 2")(env) is True and compile_expr("[f, x]")(env) == (1, 2)
    assert list(compile_expr("range(x)")(env)) == [0, 1]
    assert compile_template("o{maps[f][x]}->{x + 1}")(env) == "o1->3"
    assert compile_template("->")(env) == "->"
    with pytest.raises(IclabError, match="neither a bound attribute"):
        compile_expr("nope + 1")(env)
