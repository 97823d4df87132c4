"""User grammars from a small declarative YAML file.

A grammar file describes a compositional attribute grammar (`iclab.grammar._cag`) without any
Python: nonterminals, their weighted rules, and the items of each rule. Expressions are strings
in the safe expression language of `iclab.grammar._expr` (names, constants, subscripts,
arithmetic, comparisons, ``a if c else b`` and a few pure builtins); the file is read with
``yaml.safe_load`` and nothing in it is ever run as Python. A complete example::

    start: DOC
    vocab: ["<pad>", "<eos>", "->", ";", ".", F0, F1]   # optional explicit token list ...
    vocab_ranges: {o: 12}                                # ... plus o0..o11, appended in order
    tables:                      # constants that expressions may read by name
      objects: {range: 12}                              # -> [0, 1, ..., 11]
      functions: [0, 1]
      maps: {random_map: {size: 12, seed: 1, count: 2}} # 2 fixed random maps range(12) -> range(12)
      succ: {random_map: {size: 12, seed: 7}}           # one map (a list of 12 values in range(12))
      pairs: [[0, 1], [1, 0]]                           # inner lists become tuples (hashable)
    nonterminals:
      DOC:
        rules:
          - {weight: 1, name: last, items: [{call: BLOCK}, {emit: ".", role: end}]}
          - {weight: 1, name: more, items: [{call: BLOCK}, {emit: ".", role: end}, {call: DOC}]}
      BLOCK:
        rules:
          - items:
              - iter: {call: ITEM}          # or {call: ITEM, args: {attr: expr}}, or just ITEM
                sep: [";"]                  # literal tokens (role sep_ex), or {emit: ";", role: ...}
                prior: {alpha: 1.5, n_min: 2, n_max: 12}   # P(n) ∝ n^-alpha on [n_min, n_max]
      ITEM:
        rules:
          - items:
              - {sample: f, from: "range(2)"}             # shared by all copies of the ITER
              - {sample: x, from: objects, free: true}    # redrawn in every copy
              - {emit: "o{x}", role: x, tags: {xval: x}}
              - {emit: "->", role: sep_io}
              - {call: OUT, args: {f: f, x: x}, out: [y]}
      OUT:
        params: [f, x]             # inherited attributes (every call must pass them)
        returns: [y]               # synthesized attributes (a call may bind them with `out`)
        free: false                # true: inside an ITER copy its rule choice is redrawn per copy
        rules:
          - {when: "f == 0", weight: 1, name: succ,
             items: [{let: y, expr: "succ[x]"}, {emit: "o{y}", role: y, tags: {task: "f"}}]}
          - {when: "f != 0", name: map,
             items: [{let: y, expr: "maps[f][x]"}, {emit: "o{y}", role: y, tags: {task: "f"}}]}

Top-level keys: `start` (required), `nonterminals` (required), `vocab`, `vocab_ranges`, `tables`,
`description` (free text, ignored). A table is an int, float, string, a (nested) list, or one of
``{range: N}``, ``{range: [a, b]}`` and ``{random_map: {size: N, seed: S[, count: K]}}`` (values
drawn by ``random.Random(str(S))``: the same file always gives the same maps).

A rule has `items` (required), `weight` (>= 0, default 1), `when` (an expression over the
inherited attributes; the applicable rules' weights renormalise) and `name`. An item is one of:

* ``emit: TEMPLATE`` with optional `role` (default ``other``) and `tags` (name -> expression):
  a token; ``"o{x}"`` fills the ``{...}`` fields with expression values, ``"->"`` is a literal;
* ``sample: VAR`` with `from` (an expression giving a sequence), optional `weights` (an
  expression giving one weight per option) and `free` (inside an ITER: redrawn per copy);
* ``let: VAR`` with `expr`: bind VAR to the expression's value;
* ``call: NONTERMINAL`` with optional `args` (child attribute -> expression here) and `out`
  (the child's synthesized attributes to bind here, same names);
* ``iter: {call: NONTERMINAL, args: {...}}`` with optional `sep` and `prior`: ITER.

Expressions may also be plain numbers or booleans (constants). Every mistake in a file is one
`IclabError` line naming the file and the place, e.g. ``grammar.yaml: nonterminal ITEM, rule 1,
item 3: unknown key 'emitt'; use one of emit, sample, let, call, iter``.

Usage::

    import random
    from iclab.grammar._grammar_file import EXAMPLES_DIR, load_grammar

    grammar = load_grammar(EXAMPLES_DIR / "successor.yaml")
    print(grammar.sample(random.Random(0)).text)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from iclab.runtime import IclabError

from ._cag import Call, Emit, Grammar, Item, Iter, Let, Nonterminal, PolyTail, Rule, Sample
from ._expr import Env, compile_expr, compile_template

EXAMPLES_DIR = Path(__file__).parent / "examples"

TOP_KEYS = ("start", "nonterminals", "vocab", "vocab_ranges", "tables", "description")
NT_KEYS = ("rules", "params", "returns", "free")
RULE_KEYS = ("items", "weight", "when", "name")
ITEM_KINDS = ("emit", "sample", "let", "call", "iter")
ITEM_EXTRA = {"emit": ("role", "tags"), "sample": ("from", "weights", "free"), "let": ("expr",),
              "call": ("args", "out"), "iter": ("sep", "prior")}
ITEM_REQUIRED = {"sample": ("from",), "let": ("expr",)}
PRIOR_KEYS = ("alpha", "n_min", "n_max")
DEFAULT_SEP_ROLE = "sep_ex"


class _Fail(Exception):
    """A mistake at some place in the file; turned into one IclabError line by `grammar_from_dict`."""


class Compiled:
    """A compiled expression or token template that remembers its source (for repr and errors).

    Each is its own object, so the engine's compile cache (keyed by object) never mixes a
    template and an expression that happen to share the same text.
    """

    __slots__ = ("_fn", "src", "template")

    def __init__(self, src: str, template: bool = False):
        self.src, self.template = src, template
        self._fn = compile_template(src) if template else compile_expr(src)

    def __call__(self, env: Env) -> Any:
        return self._fn(env)

    def __repr__(self) -> str:
        return f"{'template' if self.template else 'expr'}({self.src!r})"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _mapping(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise _Fail(f"{what} must be a mapping, got {_type_name(value)}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise _Fail(f"{what} has a non-string key {bad[0]!r}; keys are names")
    return value


def _list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise _Fail(f"{what} must be a list, got {_type_name(value)}")
    return value


def _keys(value: dict, allowed: tuple[str, ...], what: str) -> None:
    for k in value:
        if k not in allowed:
            raise _Fail(f"unknown key {k!r} in {what}; use one of {', '.join(allowed)}")


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise _Fail(f"{what} must be a name (letters, digits, _), got {value!r}")
    return value


def _names(value: Any, what: str) -> tuple[str, ...]:
    return tuple(_name(v, f"each of {what}") for v in _list(value, what))


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise _Fail(f"{what} must be true or false, got {value!r}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Fail(f"{what} must be a number, got {value!r}")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Fail(f"{what} must be an integer, got {value!r}")
    return value


def _expr(value: Any, what: str) -> Callable[[Env], Any] | int | float | bool:
    """An expression: a string in the safe language, or a plain constant."""
    if isinstance(value, (bool, int, float)):
        return value
    if not isinstance(value, str) or not value.strip():
        raise _Fail(f"{what} must be an expression string (e.g. \"maps[f][x]\") or a number, got {value!r}")
    try:
        return Compiled(value)
    except IclabError as err:
        raise _Fail(f"{what}: {err}") from None


def _template(value: Any, what: str) -> Callable[[Env], Any] | str:
    if not isinstance(value, str) or not value:
        raise _Fail(f"{what} must be a token string (a literal like \"->\" or a template like \"o{{x}}\"), "
                    f"got {value!r}")
    if "{" not in value:
        return value
    try:
        return Compiled(value, template=True)
    except IclabError as err:
        raise _Fail(f"{what}: {err}") from None


# -- tables and vocabulary -------------------------------------------------------------------


def _freeze(value: Any) -> Any:
    """Inner lists -> tuples, so sampled values are hashable (they key ITER templates)."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _plain_value(value: Any, what: str) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_plain_value(v, what) for v in value]
    raise _Fail(f"{what} holds {_type_name(value)}; tables hold numbers, strings and (nested) lists")


def _table(name: str, value: Any) -> Any:
    what = f"table {name!r}"
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in ("range", "random_map"):
            raise _Fail(f"{what}: a generated table is {{range: N}} or {{random_map: {{size: N, seed: S}}}}, "
                        f"got keys {sorted(map(str, value))}")
        if "range" in value:
            r = value["range"]
            if isinstance(r, list) and len(r) == 2:
                return list(range(_int(r[0], f"{what}: range start"), _int(r[1], f"{what}: range stop")))
            return list(range(_int(r, f"{what}: range (an integer N or a pair [a, b])")))
        spec = _mapping(value["random_map"], f"{what}: random_map")
        _keys(spec, ("size", "seed", "count"), f"{what}: random_map")
        for key in ("size", "seed"):
            if key not in spec:
                raise _Fail(f"{what}: random_map needs '{key}'")
        size, seed = _int(spec["size"], f"{what}: size"), _int(spec["seed"], f"{what}: seed")
        if size < 1:
            raise _Fail(f"{what}: size must be >= 1, got {size}")
        rng = random.Random(f"{seed}")
        if "count" not in spec:
            return [rng.randrange(size) for _ in range(size)]
        count = _int(spec["count"], f"{what}: count")
        if count < 1:
            raise _Fail(f"{what}: count must be >= 1, got {count}")
        return [tuple(rng.randrange(size) for _ in range(size)) for _ in range(count)]
    value = _plain_value(value, what)
    return [_freeze(v) for v in value] if isinstance(value, list) else value


def _vocab(data: dict) -> list[str] | None:
    if "vocab" not in data and "vocab_ranges" not in data:
        return None
    vocab: list[str] = []
    for tok in _list(data.get("vocab", []), "'vocab'"):
        if not isinstance(tok, str) or not tok:
            raise _Fail(f"'vocab' entries must be non-empty strings, got {tok!r}")
        vocab.append(tok)
    for prefix, n in _mapping(data.get("vocab_ranges", {}), "'vocab_ranges'").items():
        n = _int(n, f"vocab_ranges {prefix!r}")
        if n < 0:
            raise _Fail(f"vocab_ranges {prefix!r} must be >= 0, got {n}")
        vocab += [f"{prefix}{i}" for i in range(n)]
    seen: set[str] = set()
    for tok in vocab:
        if tok in seen:
            raise _Fail(f"vocabulary token {tok!r} occurs twice; list each token once")
        seen.add(tok)
    return vocab


# -- items, rules, nonterminals ----------------------------------------------------------------


def _emit(value: Any, role: Any, tags: Any, what: str, vocab: list[str] | None) -> Emit:
    token = _template(value, f"{what}: emit")
    if vocab is not None and isinstance(token, str) and token not in vocab:
        raise _Fail(f"{what}: emitted token {token!r} is not in the vocabulary; add it to 'vocab'")
    if not isinstance(role, str) or not role:
        raise _Fail(f"{what}: role must be a non-empty string, got {role!r}")
    tags = {_name(k, f"{what}: tag name"): _expr(v, f"{what}: tag {k!r}")
            for k, v in _mapping(tags if tags is not None else {}, f"{what}: tags").items()}
    return Emit(token, role, tags)


def _args(value: Any, what: str) -> dict[str, Any]:
    return {_name(k, f"{what}: argument name"): _expr(v, f"{what}: argument {k!r}")
            for k, v in _mapping(value if value is not None else {}, f"{what}: args").items()}


def _item(raw: Any, what: str, vocab: list[str] | None) -> Item:
    if isinstance(raw, dict):
        kinds = [k for k in ITEM_KINDS if k in raw]
    else:
        raise _Fail(f"{what}: an item must be a mapping with one of {', '.join(ITEM_KINDS)}, got {_type_name(raw)}")
    if not kinds:
        extras = {k for extra in ITEM_EXTRA.values() for k in extra}
        unknown = next((k for k in raw if k not in extras), None)
        if unknown is not None:
            raise _Fail(f"{what}: unknown key {unknown!r}; use one of {', '.join(ITEM_KINDS)}")
        raise _Fail(f"{what}: an item needs one of {', '.join(ITEM_KINDS)} (it has {', '.join(map(str, raw))})")
    if len(kinds) > 1:
        raise _Fail(f"{what}: an item is one of {', '.join(ITEM_KINDS)}, but this one has {' and '.join(kinds)}")
    kind = kinds[0]
    for k in raw:
        if k != kind and k not in ITEM_EXTRA[kind]:
            raise _Fail(f"{what}: unknown key {k!r} next to {kind!r}; use {', '.join(ITEM_EXTRA[kind])}")
    for k in ITEM_REQUIRED.get(kind, ()):
        if k not in raw:
            raise _Fail(f"{what}: a {kind} item needs '{k}'")
    v = raw[kind]
    if kind == "emit":
        return _emit(v, raw.get("role", "other"), raw.get("tags"), what, vocab)
    if kind == "sample":
        weights = raw.get("weights")
        return Sample(_name(v, f"{what}: sample"), _expr(raw["from"], f"{what}: from"),
                      None if weights is None else _expr(weights, f"{what}: weights"),
                      _bool(raw.get("free", False), f"{what}: free"))
    if kind == "let":
        return Let(_name(v, f"{what}: let"), _expr(raw["expr"], f"{what}: expr"))
    if kind == "call":
        return Call(_name(v, f"{what}: call"), _args(raw.get("args"), what),
                    _names(raw.get("out", []), f"{what}: out"))
    # iter
    if isinstance(v, str):
        body = Call(_name(v, f"{what}: iter"))
    else:
        spec = _mapping(v, f"{what}: iter")
        _keys(spec, ("call", "args"), f"{what}: iter")
        if "call" not in spec:
            raise _Fail(f"{what}: iter needs 'call' (the nonterminal to repeat), e.g. iter: {{call: ITEM}}")
        body = Call(_name(spec["call"], f"{what}: iter call"), _args(spec.get("args"), what))
    seps = raw.get("sep", [])
    if isinstance(seps, (str, dict)):
        seps = [seps]
    sep = []
    for k, s in enumerate(_list(seps, f"{what}: sep"), 1):
        swhat = f"{what}, sep {k}"
        if isinstance(s, dict):
            _keys(s, ("emit", "role", "tags"), swhat)
            if "emit" not in s:
                raise _Fail(f"{swhat}: a separator needs 'emit'")
            sep.append(_emit(s["emit"], s.get("role", DEFAULT_SEP_ROLE), s.get("tags"), swhat, vocab))
        else:
            sep.append(_emit(s, DEFAULT_SEP_ROLE, None, swhat, vocab))
    prior = _mapping(raw.get("prior", {}), f"{what}: prior")
    _keys(prior, PRIOR_KEYS, f"{what}: prior")
    kw: dict[str, Any] = {}
    if "alpha" in prior:
        kw["alpha"] = float(_number(prior["alpha"], f"{what}: prior alpha"))
    for key in ("n_min", "n_max"):
        if key in prior:
            kw[key] = _int(prior[key], f"{what}: prior {key}")
    try:
        tail = PolyTail(**kw)
    except IclabError as err:
        raise _Fail(f"{what}: bad prior: {err}") from None
    return Iter(body, sep, tail)


def _rule(raw: Any, what: str, vocab: list[str] | None) -> Rule:
    rule = _mapping(raw, what)
    _keys(rule, RULE_KEYS, what)
    if "items" not in rule:
        raise _Fail(f"{what}: a rule needs 'items' (a list of emit/sample/let/call/iter items)")
    items = [_item(it, f"{what}, item {k}", vocab) for k, it in enumerate(_list(rule["items"], f"{what}: items"), 1)]
    weight = _number(rule.get("weight", 1.0), f"{what}: weight")
    when = rule.get("when")
    name = rule.get("name", "")
    if not isinstance(name, str):
        raise _Fail(f"{what}: name must be a string, got {name!r}")
    return Rule(items, float(weight), None if when is None else _expr(when, f"{what}: when"), name)


def _nonterminal(name: Any, raw: Any, vocab: list[str] | None) -> Nonterminal:
    what = f"nonterminal {name}"
    _name(name, "a nonterminal name")
    nt = _mapping(raw, what)
    _keys(nt, NT_KEYS, what)
    if "rules" not in nt:
        raise _Fail(f"{what}: needs 'rules' (a list of rules)")
    rules = _list(nt["rules"], f"{what}: rules")
    if not rules:
        raise _Fail(f"{what}: has no rules; give it at least one")
    return Nonterminal(name, [_rule(r, f"{what}, rule {k}", vocab) for k, r in enumerate(rules, 1)],
                       _names(nt.get("params", []), f"{what}: params"),
                       _names(nt.get("returns", []), f"{what}: returns"),
                       _bool(nt.get("free", False), f"{what}: free"))


def _build(data: Any) -> Grammar:
    data = _mapping(data, "the top level")
    _keys(data, TOP_KEYS, "the top level")
    if "start" not in data:
        raise _Fail("missing 'start' (the start nonterminal, e.g. start: DOC)")
    if "nonterminals" not in data:
        raise _Fail("missing 'nonterminals' (a mapping from names to their rules)")
    start = _name(data["start"], "'start'")
    vocab = _vocab(data)
    tables = {_name(k, "a table name"): _table(k, v)
              for k, v in _mapping(data.get("tables") or {}, "'tables'").items()}
    nts_raw = _mapping(data["nonterminals"], "'nonterminals'")
    if not nts_raw:
        raise _Fail("'nonterminals' is empty; define at least the start symbol")
    nts = [_nonterminal(name, raw, vocab) for name, raw in nts_raw.items()]
    try:
        return Grammar(nts, start, tables, vocab=vocab)
    except IclabError as err:  # the engine's own static checks
        raise _Fail(str(err).removeprefix("grammar: ")) from None


def grammar_from_dict(data: Mapping[str, Any], where: str = "grammar") -> Grammar:
    """Build a grammar from the parsed file contents; `where` names the source in error messages."""
    try:
        return _build(dict(data) if isinstance(data, Mapping) else data)
    except _Fail as err:
        raise IclabError(_one_line(f"{where}: {err}")) from None


def load_grammar(path: str | Path) -> Grammar:
    """Read a YAML grammar file (see the module docstring for the format)."""
    where = str(path)
    p = Path(path)
    if not p.is_file():
        what = "is a directory, not a grammar file" if p.is_dir() else "no such grammar file; check the path"
        raise IclabError(f"{where}: {what}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise IclabError(_one_line(f"{where}: cannot read the grammar file: {err}")) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise IclabError(_one_line(f"{where}: invalid YAML{at}: {problem}")) from None
    if data is None:
        raise IclabError(f"{where}: the file is empty; a grammar needs 'start' and 'nonterminals'")
    return grammar_from_dict(data, where)
