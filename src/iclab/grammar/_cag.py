"""Compositional attribute grammars (CAG): a PCFG whose nonterminals carry attributes, plus ITER.

Hahn & Goyal's generative model of pretraining text. A derivation is sampled top-down and
left to right (an L-attributed grammar): each nonterminal receives inherited attributes,
its rule's items bind new ones (`Sample`, `Let`, a child's synthesized results) and emit
terminals (`Emit`) computed from them, and it hands back synthesized attributes.

`Iter(body)` expands `body` n ~ P_iter(n) times, separated by `sep`. Every random decision
inside the copies is either *shared* (drawn in the first copy and replayed in the others:
the derivation template τ, e.g. which function is applied) or *free* (redrawn per copy: the
input x). `Sample(..., free=True)` and `Nonterminal(..., free=True)` mark the free ones. The
shared decisions' cost −log P is the template's description length D[τ]; −log P_iter(n) is
the iteration cost R_n.

Every emitted token carries its latent metadata (role, tags such as the intermediate value,
iteration index and template), which is what probes are trained on.

Expressions are Python callables `env -> value`, or, in declarative grammar files, strings in
a small safe expression language (`iclab.grammar._expr`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from iclab.runtime import IclabError

from ._expr import Env, compile_expr, compile_template

Expr = Union[Callable[[Env], Any], str, int, float, None]


# -- grammar items ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Emit:
    """A terminal: `token` is a literal, an expression, or a template like ``"o{x}"``."""

    token: Expr
    role: str = "other"
    tags: Mapping[str, Expr] = field(default_factory=dict)  # per-token metadata, e.g. {"mid": "g_x"}


@dataclass(frozen=True)
class Sample:
    """Bind `var` to a draw from `domain` (a sequence), uniform or by `weights`."""

    var: str
    domain: Expr
    weights: Expr = None
    free: bool = False  # inside an ITER copy: redrawn per copy (True) or shared by all copies


@dataclass(frozen=True)
class Let:
    """A semantic rule: bind `var` to a value computed from the attributes bound so far."""

    var: str
    expr: Expr


@dataclass(frozen=True)
class Call:
    """Expand nonterminal `symbol` with inherited attributes `args`; bind its results by name."""

    symbol: str
    args: Mapping[str, Expr] = field(default_factory=dict)  # child attribute -> expression here
    out: Sequence[str] = ()  # the child's synthesized attributes to bind here, same names


@dataclass(frozen=True)
class PolyTail:
    """P(n) ∝ n^(−alpha) on [n_min, n_max]: a polynomial tail, so R_n = −log P(n) = O(log n)."""

    alpha: float = 2.0
    n_min: int = 1
    n_max: int = 32

    def __post_init__(self) -> None:
        if not (1 <= self.n_min <= self.n_max) or self.alpha < 0:
            raise IclabError(f"iteration prior needs 1 <= n_min <= n_max and alpha >= 0 (got {self})")

    @property
    def probs(self) -> list[float]:
        w = [n ** -self.alpha for n in range(self.n_min, self.n_max + 1)]
        z = sum(w)
        return [x / z for x in w]

    def prob(self, n: int) -> float:
        return self.probs[n - self.n_min] if self.n_min <= n <= self.n_max else 0.0

    def tail(self, n: int) -> float:
        """P(N >= n)."""
        return sum(self.probs[max(n, self.n_min) - self.n_min:]) if n <= self.n_max else 0.0

    def cost(self, n: int) -> float:
        """R_n = −log P_iter(n) (nats)."""
        p = self.prob(n)
        return -math.log(p) if p > 0 else math.inf


@dataclass(frozen=True)
class Iter:
    """ITER(body): n copies of `body` sharing one derivation template, joined by `sep`."""

    body: Call
    sep: Sequence[Emit] = ()
    prior: PolyTail = field(default_factory=PolyTail)


Item = Union[Emit, Sample, Let, Call, Iter]


@dataclass(frozen=True)
class Rule:
    items: Sequence[Item]
    weight: float = 1.0
    when: Expr = None  # applicable only if true on the inherited attributes; weights renormalise
    name: str = ""


@dataclass(frozen=True)
class Nonterminal:
    name: str
    rules: Sequence[Rule]
    params: Sequence[str] = ()  # inherited attributes
    returns: Sequence[str] = ()  # synthesized attributes
    free: bool = False  # inside an ITER copy, its rule choice is redrawn per copy


# -- sampled output ----------------------------------------------------------------------------


@dataclass
class Token:
    """One emitted token with its latent metadata."""

    text: str
    role: str
    tags: dict[str, Any]
    iter_id: int = -1  # which ITER node (numbered in sampling order within the document); -1 outside
    iter_index: int = -1  # copy number within that ITER, from 0
    template: int = -1  # id of the ITER's derivation template (see `Sampler.templates`)


@dataclass
class IterRecord:
    """What one ITER node did: its template, copies and costs."""

    iter_id: int
    template: int
    n: int
    shared_cost: float  # D[τ]: −log P of the shared (template) decisions, nats
    iter_cost: float  # R_n = −log P_iter(n)
    start: int  # first token index of the node's yield
    stop: int  # one past its last token
    copy_starts: list[int]
    shared: dict[str, Any]  # the shared decisions, keyed by their path label


@dataclass
class Derivation:
    tokens: list[Token]
    iters: list[IterRecord]
    logp: float  # log-probability of every decision taken (the derivation's probability)

    @property
    def text(self) -> list[str]:
        return [t.text for t in self.tokens]


# -- the grammar -------------------------------------------------------------------------------


@dataclass
class _Frame:
    """An ITER copy's memory of shared decisions, keyed by their position in the copy."""

    trace: dict[tuple, Any] = field(default_factory=dict)
    labels: dict[tuple, str] = field(default_factory=dict)
    cost: float = 0.0


class Grammar:
    """A CAG: nonterminals by name, a start symbol, and constant tables expressions may read."""

    def __init__(self, nonterminals: Sequence[Nonterminal], start: str, tables: Mapping[str, Any] | None = None,
                 vocab: Sequence[str] | None = None):
        self.nonterminals = {nt.name: nt for nt in nonterminals}
        if len(self.nonterminals) != len(nonterminals):
            raise IclabError("grammar: two nonterminals share a name; give each a unique name")
        self.start = start
        self.tables = dict(tables or {})
        self.vocab = list(vocab) if vocab is not None else None
        self._compiled: dict[tuple[int, bool], tuple[Any, Callable[[Env], Any]]] = {}
        self.check()

    # -- validation ------------------------------------------------------------------------
    def check(self) -> None:
        """Static checks, so a broken grammar fails when built, not halfway through a corpus."""
        if self.start not in self.nonterminals:
            raise IclabError(f"grammar: start symbol {self.start!r} is not a nonterminal; define it")
        for nt in self.nonterminals.values():
            if not nt.rules:
                raise IclabError(f"grammar: nonterminal {nt.name!r} has no rules")
            for rule in nt.rules:
                if rule.weight < 0 or not math.isfinite(rule.weight):
                    raise IclabError(f"grammar: rule of {nt.name!r} has weight {rule.weight}; use a finite weight >= 0")
                for item in rule.items:
                    for call in ([item] if isinstance(item, Call) else [item.body] if isinstance(item, Iter) else []):
                        if call.symbol not in self.nonterminals:
                            raise IclabError(f"grammar: {nt.name!r} calls undefined nonterminal {call.symbol!r}")
                        child = self.nonterminals[call.symbol]
                        missing = set(child.params) - set(call.args)
                        if missing:
                            raise IclabError(f"grammar: {nt.name!r} calls {child.name!r} without its attributes "
                                             f"{sorted(missing)}")
                        unknown = set(call.out) - set(child.returns)
                        if unknown:
                            raise IclabError(f"grammar: {nt.name!r} reads {sorted(unknown)} from {child.name!r}, "
                                             f"which returns only {list(child.returns)}")

    # -- sampling --------------------------------------------------------------------------
    def sampler(self) -> Sampler:
        return Sampler(self)

    def sample(self, rng: random.Random) -> Derivation:
        return Sampler(self).sample(rng)

    def _fn(self, expr: Expr, template: bool = False) -> Callable[[Env], Any]:
        key = (id(expr), template)  # the same string may be a token template here, an expression there
        hit = self._compiled.get(key)
        if hit is not None and hit[0] is expr:
            return hit[1]
        if callable(expr):
            fn = expr
        elif isinstance(expr, str):
            fn = compile_template(expr) if template else compile_expr(expr)
        else:
            fn = (lambda value: lambda env: value)(expr)
        self._compiled[key] = (expr, fn)  # keep expr alive so its id is not reused
        return fn


class Sampler:
    """Samples derivations; numbers the distinct ITER templates it meets (`templates`)."""

    def __init__(self, grammar: Grammar):
        self.g = grammar
        self.templates: list[tuple] = []  # template id -> its shared decisions, sorted by label
        self._template_ids: dict[tuple, int] = {}

    def template_id(self, shared: dict[str, Any]) -> int:
        key = tuple(sorted(shared.items()))
        tid = self._template_ids.get(key)
        if tid is None:
            tid = self._template_ids[key] = len(self.templates)
            self.templates.append(key)
        return tid

    def sample(self, rng: random.Random) -> Derivation:
        self._rng = rng
        self._tokens: list[Token] = []
        self._iters: list[IterRecord] = []
        self._logp = 0.0
        self._frames: list[_Frame] = []
        self._iter_stack: list[tuple[int, int]] = []  # (iter_id, copy index) of enclosing ITERs
        self._expand(self.g.start, Env(self.g.tables), ())
        return Derivation(self._tokens, self._iters, self._logp)

    # One random decision: replayed from the enclosing ITER's trace if shared, else drawn.
    def _decide(self, path: tuple, label: str, options: Sequence[Any], weights: Sequence[float] | None,
                free: bool) -> Any:
        if len(options) == 1:  # no choice: nothing to record, costs nothing
            return options[0]
        frame = self._frames[-1] if self._frames else None
        if frame is not None and not free and path in frame.trace:
            value = frame.trace[path]
            if value in options:  # else a free decision changed what is possible here: draw anew
                return value
            free = True
        if weights is None:
            i = self._rng.randrange(len(options)) if len(options) > 1 else 0
            p = 1.0 / len(options)
        else:
            total = float(sum(weights))
            if total <= 0:
                raise IclabError(f"grammar: all weights of {label} are zero; nothing can be sampled")
            i = self._rng.choices(range(len(options)), weights=weights)[0] if len(options) > 1 else 0
            p = weights[i] / total
        value = options[i]
        logp = math.log(p)
        self._logp += logp
        if frame is not None and not free:
            frame.trace[path] = value
            frame.labels[path] = label
            frame.cost -= logp
        return value

    def _expand(self, symbol: str, env: Env, path: tuple) -> Env:
        nt = self.g.nonterminals[symbol]
        rules = [r for r in nt.rules if r.when is None or self.g._fn(r.when)(env)]
        if not rules:
            raise IclabError(f"grammar: no rule of {symbol!r} applies to attributes {env.local()}")
        rule = self._decide(path + ("rule",), f"{symbol}", rules, [r.weight for r in rules], nt.free)
        rpath = path + (nt.rules.index(rule),)
        for k, item in enumerate(rule.items):
            ipath = rpath + (k,)
            if isinstance(item, Emit):
                self._emit(item, env)
            elif isinstance(item, Sample):
                options = list(self.g._fn(item.domain)(env))
                if not options:
                    raise IclabError(f"grammar: {symbol}: the domain of {item.var!r} is empty")
                weights = None if item.weights is None else list(self.g._fn(item.weights)(env))
                env[item.var] = self._decide(ipath, f"{symbol}.{item.var}", options, weights, item.free)
            elif isinstance(item, Let):
                env[item.var] = self.g._fn(item.expr)(env)
            elif isinstance(item, Call):
                child = self._expand(item.symbol, self._child_env(item, env), ipath)
                for name in item.out:
                    env[name] = child[name]
            else:
                self._iterate(item, env, ipath)
        return env

    def _child_env(self, call: Call, env: Env) -> Env:
        return Env(self.g.tables, {name: self.g._fn(expr)(env) for name, expr in call.args.items()})

    def _iterate(self, item: Iter, env: Env, path: tuple) -> None:
        probs = item.prior.probs
        n = self._decide(path + ("n",), "ITER.n", range(item.prior.n_min, item.prior.n_max + 1), probs, True)
        iter_id = len(self._iters)
        rec = IterRecord(iter_id, -1, n, 0.0, item.prior.cost(n), len(self._tokens), -1, [], {})
        self._iters.append(rec)
        frame = _Frame()
        self._frames.append(frame)
        for copy in range(n):
            if copy and item.sep:
                for sep in item.sep:
                    self._iter_stack.append((iter_id, copy - 1))
                    self._emit(sep, env)
                    self._iter_stack.pop()
            rec.copy_starts.append(len(self._tokens))
            self._iter_stack.append((iter_id, copy))
            self._expand(item.body.symbol, self._child_env(item.body, env), ())
            self._iter_stack.pop()
        self._frames.pop()
        rec.stop = len(self._tokens)
        rec.shared = {}
        for p, v in frame.trace.items():  # label by symbol.var; disambiguate repeats by position
            label = frame.labels[p]
            rec.shared[label if label not in rec.shared else f"{label}@{'.'.join(map(str, p))}"] = _plain(v)
        rec.shared_cost = frame.cost
        rec.template = self.template_id(rec.shared)
        for tok in self._tokens[rec.start:rec.stop]:
            if tok.iter_id == iter_id:
                tok.template = rec.template

    def _emit(self, item: Emit, env: Env) -> None:
        text = self.g._fn(item.token, template=True)(env)
        if not isinstance(text, str):
            text = str(text)
        tags = {k: self.g._fn(v)(env) for k, v in item.tags.items()}
        iter_id, index = self._iter_stack[-1] if self._iter_stack else (-1, -1)
        self._tokens.append(Token(text, item.role, tags, iter_id, index))


def _plain(value: Any) -> Any:
    """A decision as a hashable, readable value (a chosen rule by its name)."""
    if isinstance(value, Rule):
        return value.name or f"rule{id(value)}"
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    return value
