"""Declarative YAML grammars: the shipped example, a round trip, and one clear line per mistake."""

import copy
import math
import random

import pytest
import yaml

from iclab.grammar._cag import Emit, Iter, Sample
from iclab.grammar._corpus import sample_corpus
from iclab.grammar._grammar_file import EXAMPLES_DIR, grammar_from_dict, load_grammar
from iclab.runtime._errors import IclabError

EXAMPLE = EXAMPLES_DIR / "successor.yaml"

SMALL = {
    "start": "DOC",
    "vocab": ["<eos>", "->", ";", "."],
    "vocab_ranges": {"o": 6},
    "tables": {"objects": {"range": 6}, "succ": {"random_map": {"size": 6, "seed": 1}},
               "pairs": [[0, 1], [2, 3]], "shift": 1},
    "nonterminals": {
        "DOC": {"rules": [{"weight": 1, "items": [{"call": "BLOCK"}, {"emit": ".", "role": "end"}]}]},
        "BLOCK": {"rules": [{"items": [{"iter": {"call": "ITEM", "args": {"k": "shift"}}, "sep": [";"],
                                        "prior": {"alpha": 2, "n_min": 2, "n_max": 6}}]}]},
        "ITEM": {"params": ["k"], "rules": [{"items": [
            {"sample": "f", "from": "range(2)"},
            {"sample": "p", "from": "pairs"},
            {"sample": "x", "from": "objects", "free": True},
            {"emit": "o{x}", "role": "x", "tags": {"task": "f", "pair": "p[0]"}},
            {"emit": "->", "role": "sep_io"},
            {"call": "OUT", "args": {"f": "f", "x": "x", "k": "k"}, "out": ["y"]},
            {"let": "done", "expr": "y"},
        ]}]},
        "OUT": {"params": ["f", "x", "k"], "returns": ["y"], "free": False, "rules": [
            {"when": "f == 0", "weight": 2, "name": "a",
             "items": [{"let": "y", "expr": "succ[x]"}, {"emit": "o{y}", "role": "y", "tags": {"task": "f"}}]},
            {"when": "f == 1", "name": "b",
             "items": [{"let": "y", "expr": "(x + k) % 6"}, {"emit": "o{y}", "role": "y", "tags": {"task": "f"}}]},
        ]},
    },
}


def write(tmp_path, data, name="grammar.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


# -- the shipped example --------------------------------------------------------------------------


def test_example_loads_and_samples():
    g = load_grammar(EXAMPLE)
    assert g.start == "DOC" and len(g.tables["maps"]) == 2 and g.tables["objects"] == list(range(12))
    maps = g.tables["maps"]
    sampler = g.sampler()
    n_items = 0
    for i in range(200):
        d = sampler.sample(random.Random(i))
        assert d.text[-1] == "." and all(t in g.vocab for t in d.text)
        for rec in d.iters:
            toks = [t for t in d.tokens[rec.start:rec.stop] if t.iter_id == rec.iter_id]
            if toks[0].role == "x":  # an ITER of x -> f(x): one shared f
                n_items += 1
                assert len({t.tags["task"] for t in toks if "task" in t.tags}) == 1
                assert rec.shared_cost == pytest.approx(math.log(2)) and 2 <= rec.n <= 12
                for t in toks:
                    if t.role == "y":
                        assert t.text == f"o{maps[t.tags['task']][t.tags['xval']]}"
            else:  # FACTS: all free
                assert toks[0].role == "fact_fn" and rec.shared == {}
    assert n_items > 50
    c = sample_corpus(g, 2000, seed=0)
    assert c.ids.max() < len(g.vocab) and {"x", "y", "fact_val"} <= set(c.roles)


def test_example_is_deterministic():
    a, b = load_grammar(EXAMPLE), load_grammar(str(EXAMPLE))
    assert a.tables == b.tables
    assert a.sample(random.Random(4)).text == b.sample(random.Random(4)).text


# -- round trip --------------------------------------------------------------------------------------


def test_dict_round_trip_through_yaml(tmp_path):
    g = grammar_from_dict(copy.deepcopy(SMALL), "small")
    h = load_grammar(write(tmp_path, SMALL))
    assert g.vocab == h.vocab == ["<eos>", "->", ";", ".", "o0", "o1", "o2", "o3", "o4", "o5"]
    assert g.tables == h.tables and g.tables["pairs"] == [(0, 1), (2, 3)]
    rng = random.Random("1")  # random_map: random.Random(str(seed)), one draw per entry
    assert g.tables["succ"] == [rng.randrange(6) for _ in range(6)]
    sg, sh = g.sampler(), h.sampler()
    for i in range(30):
        a, b = sg.sample(random.Random(i)), sh.sample(random.Random(i))
        assert a.text == b.text and a.logp == b.logp
        assert [t.tags for t in a.tokens] == [t.tags for t in b.tokens]
        (rec,) = a.iters
        assert set(rec.shared) == {"ITEM.f", "ITEM.p"}
        assert rec.shared_cost == pytest.approx(2 * math.log(2))
        succ = g.tables["succ"]
        for x, y, t in zip(a.text[0::4], a.text[2::4], a.tokens[2::4]):
            xi, yi = int(x[1:]), int(y[1:])
            assert yi == (succ[xi] if t.tags["task"] == 0 else (xi + 1) % 6)
    # the items are the engine's, with readable compiled expressions
    item = g.nonterminals["ITEM"].rules[0].items
    assert isinstance(item[2], Sample) and item[2].free and not item[0].free
    assert isinstance(item[4], Emit) and item[4].token == "->"
    assert "o{x}" in repr(item[3].token)
    assert isinstance(g.nonterminals["BLOCK"].rules[0].items[0], Iter)


def test_emit_text_equal_to_an_expression_is_not_confused(tmp_path):
    data = {"start": "S", "nonterminals": {"S": {"rules": [{"items": [
        {"sample": "f", "from": "range(3)"}, {"emit": "f", "role": "w", "tags": {"val": "f"}}]}]}}}
    d = grammar_from_dict(data, "g").sample(random.Random(0))
    assert d.text == ["f"] and d.tokens[0].tags["val"] in (0, 1, 2)


# -- mistakes: one line naming the file and the place ----------------------------------------------


def mutate(fn):
    data = copy.deepcopy(SMALL)
    fn(data)
    return data


def item(data, nt, k):
    return data["nonterminals"][nt]["rules"][0]["items"][k]


BAD = {
    "unknown top-level key": (lambda d: d.update(startt="DOC"), "unknown key 'startt'"),
    "missing start": (lambda d: d.pop("start"), "missing 'start'"),
    "missing nonterminals": (lambda d: d.pop("nonterminals"), "missing 'nonterminals'"),
    "undefined start": (lambda d: d.update(start="NOPE"), "start symbol 'NOPE'"),
    "unknown item key": (lambda d: item(d, "ITEM", 3).update(emitt=item(d, "ITEM", 3).pop("emit")),
                         ("nonterminal ITEM, rule 1, item 4: unknown key 'emitt'; use one of emit, sample, let, "
                          "call, iter")),
    "two item kinds": (lambda d: item(d, "ITEM", 3).update(let="z"), "has emit and let"),
    "unknown extra key": (lambda d: item(d, "ITEM", 3).update(rol="x"),
                          "unknown key 'rol' next to 'emit'; use role, tags"),
    "item not a mapping": (lambda d: d["nonterminals"]["DOC"]["rules"][0]["items"].append("emit ."),
                           "nonterminal DOC, rule 1, item 3: an item must be a mapping"),
    "sample without from": (lambda d: item(d, "ITEM", 0).pop("from"), "item 1: a sample item needs 'from'"),
    "let without expr": (lambda d: item(d, "ITEM", 6).pop("expr"), "item 7: a let item needs 'expr'"),
    "free not a bool": (lambda d: item(d, "ITEM", 2).update(free="yes please"), "free must be true or false"),
    "weight not a number": (lambda d: d["nonterminals"]["DOC"]["rules"][0].update(weight="heavy"),
                            "nonterminal DOC, rule 1: weight must be a number"),
    "negative weight": (lambda d: d["nonterminals"]["DOC"]["rules"][0].update(weight=-1), "weight -1"),
    "unknown rule key": (lambda d: d["nonterminals"]["DOC"]["rules"][0].update(wieght=1), "unknown key 'wieght'"),
    "rule without items": (lambda d: d["nonterminals"]["DOC"]["rules"][0].pop("items"), "needs 'items'"),
    "no rules": (lambda d: d["nonterminals"]["DOC"].update(rules=[]), "nonterminal DOC: has no rules"),
    "rules not a list": (lambda d: d["nonterminals"]["DOC"].update(rules={"a": 1}), "rules must be a list"),
    "unknown nonterminal key": (lambda d: d["nonterminals"]["OUT"].update(param=["f"]), "unknown key 'param'"),
    "params not names": (lambda d: d["nonterminals"]["OUT"].update(params="f x"), "params must be a list"),
    "undefined nonterminal": (lambda d: item(d, "ITEM", 5).update(call="OUTT"), "undefined nonterminal 'OUTT'"),
    "undefined iter body": (lambda d: item(d, "BLOCK", 0)["iter"].update(call="ITM"), "undefined nonterminal"),
    "missing inherited attribute": (lambda d: item(d, "ITEM", 5)["args"].pop("x"), "without its attributes"),
    "unknown synthesized attribute": (lambda d: item(d, "ITEM", 5).update(out=["z"]), "returns only"),
    "bad prior range": (lambda d: item(d, "BLOCK", 0).update(prior={"n_min": 5, "n_max": 2}), "bad prior"),
    "bad prior key": (lambda d: item(d, "BLOCK", 0).update(prior={"beta": 1}), "unknown key 'beta'"),
    "bad prior type": (lambda d: item(d, "BLOCK", 0).update(prior={"n_max": 2.5}), "n_max must be an integer"),
    "iter without call": (lambda d: item(d, "BLOCK", 0).update(iter={"args": {}}), "iter needs 'call'"),
    "sep not tokens": (lambda d: item(d, "BLOCK", 0).update(sep=[5]), "sep 1: emit must be a token string"),
    "sep not in vocab": (lambda d: item(d, "BLOCK", 0).update(sep=["|"]), "'|' is not in the vocabulary"),
    "unsafe expression": (lambda d: item(d, "OUT", 0).update(expr="__import__('os').system('ls')"),
                          "is not allowed"),
    "attribute access": (lambda d: d["nonterminals"]["OUT"]["rules"][0]["items"][0].update(expr="x.__class__"),
                         "nonterminal OUT, rule 1, item 1: expr"),
    "invalid expression": (lambda d: item(d, "ITEM", 0).update({"from": "range(2"}), "is not valid"),
    "bad template field": (lambda d: item(d, "ITEM", 3).update(emit="o{x +}"), "item 4: emit"),
    "tag not an expression": (lambda d: item(d, "ITEM", 3).update(tags={"task": [1]}), "tag 'task'"),
    "var not a name": (lambda d: item(d, "ITEM", 0).update(sample="f x"), "sample must be a name"),
    "table generator": (lambda d: d["tables"].update(objects={"rnage": 6}), "table 'objects'"),
    "random map without seed": (lambda d: d["tables"].update(succ={"random_map": {"size": 6}}), "needs 'seed'"),
    "table mapping value": (lambda d: d["tables"].update(pairs=[{"a": 1}]), "table 'pairs' holds a mapping"),
    "vocab duplicate": (lambda d: d["vocab"].append("o1"), "'o1' occurs twice"),
    "vocab range not int": (lambda d: d["vocab_ranges"].update(o="six"), "must be an integer"),
    "only unknown keys": (lambda d: (d.clear(), d.update(x=None)), "unknown key 'x' in the top level"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_grammar_one_clear_line(tmp_path, case):
    fn, expected = BAD[case]
    path = write(tmp_path, mutate(fn))
    with pytest.raises(IclabError) as err:
        load_grammar(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    assert expected in msg, msg
    with pytest.raises(IclabError) as err:  # the same from a dict, named by `where`
        grammar_from_dict(mutate(fn), "mygrammar")
    assert str(err.value).startswith("mygrammar: ") and expected in str(err.value)


@pytest.mark.parametrize("text,expected", [
    ("start: [DOC\n", "invalid YAML at line"),
    ("start: DOC\n  nonterminals: {}\n", "invalid YAML"),
    ("- start\n- DOC\n", "the top level must be a mapping, got a list"),
    ("just a string\n", "the top level must be a mapping, got a string"),
    ("", "the file is empty"),
    ("!!python/object/apply:os.system [echo pwned]\n", "invalid YAML"),
    ("start: !!python/object:collections.OrderedDict {}\nnonterminals: {}\n", "invalid YAML"),
    ("start: !!python/name:os.system\nnonterminals: {}\n", "invalid YAML"),
])
def test_malformed_files_one_clear_line(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(IclabError) as err:
        load_grammar(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and expected in msg, msg


def test_python_tags_are_never_constructed(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"!!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(IclabError, match="invalid YAML"):
        load_grammar(path)
    assert not marker.exists()


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(IclabError) as err:
        load_grammar(tmp_path / "nope.yaml")
    assert str(err.value) == f"{tmp_path / 'nope.yaml'}: no such grammar file; check the path"
    with pytest.raises(IclabError, match="is a directory"):
        load_grammar(tmp_path)
    with pytest.raises(IclabError, match="the top level must be a mapping"):
        grammar_from_dict([1, 2], "g")
