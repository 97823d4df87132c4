"""Attribute environments and a small, safe expression language for declarative grammars.

A grammar file must not be able to run code, so its expressions are parsed with `ast` and
evaluated by a whitelist walker: names (attributes, then tables), constants, tuples and lists,
subscripts, arithmetic, comparisons, boolean logic, conditional expressions and a few pure
builtins (`range`, `len`, `min`, `max`, `abs`, `int`, `str`). No attribute access, no
comprehensions, no calls of anything else.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from iclab.runtime import IclabError


class Env:
    """Attributes bound so far in one nonterminal expansion, falling back to the grammar's tables.

    Python grammars read it as `env.x` or `env["x"]`.
    """

    __slots__ = ("_tables", "_vars")

    def __init__(self, tables: Mapping[str, Any], values: dict[str, Any] | None = None):
        self._tables = tables
        self._vars = values if values is not None else {}

    def __getitem__(self, name: str) -> Any:
        try:
            return self._vars[name]
        except KeyError:
            pass
        try:
            return self._tables[name]
        except KeyError:
            raise IclabError(f"grammar expression reads {name!r}, which is neither a bound attribute "
                             f"({sorted(self._vars)}) nor a table ({sorted(self._tables)})") from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._vars[name] = value

    def get(self, name: str, default: Any = None) -> Any:
        return self._vars.get(name, self._tables.get(name, default))

    def local(self) -> dict[str, Any]:
        return dict(self._vars)


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.Mod: operator.mod, ast.Div: operator.truediv, ast.Pow: operator.pow}
_CMPOPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
           ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_FUNCS: dict[str, Callable[..., Any]] = {"range": range, "len": len, "min": min, "max": max, "abs": abs,
                                         "int": int, "str": str}


def _compile(node: ast.AST, src: str) -> Callable[[Env], Any]:
    """Turn an expression tree into a closure once, so evaluation does not re-walk the tree."""
    if isinstance(node, ast.Expression):
        return _compile(node.body, src)
    if isinstance(node, ast.Constant):
        value = node.value
        return lambda env: value
    if isinstance(node, ast.Name):
        name = node.id
        return lambda env: env[name]
    if isinstance(node, (ast.Tuple, ast.List)):
        parts = [_compile(e, src) for e in node.elts]
        return lambda env: tuple(p(env) for p in parts)
    if isinstance(node, ast.Subscript):
        base, index = _compile(node.value, src), _compile(node.slice, src)
        return lambda env: base(env)[index(env)]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        op, left, right = _BINOPS[type(node.op)], _compile(node.left, src), _compile(node.right, src)
        return lambda env: op(left(env), right(env))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        op, arg = _UNARY[type(node.op)], _compile(node.operand, src)
        return lambda env: op(arg(env))
    if isinstance(node, ast.BoolOp):
        parts = [_compile(v, src) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda env: all(p(env) for p in parts)
        return lambda env: any(p(env) for p in parts)
    if isinstance(node, ast.Compare) and all(type(o) in _CMPOPS for o in node.ops):
        first = _compile(node.left, src)
        rest = [(_CMPOPS[type(o)], _compile(c, src)) for o, c in zip(node.ops, node.comparators)]

        def compare(env: Env) -> bool:
            left = first(env)
            for op, right_fn in rest:
                right = right_fn(env)
                if not op(left, right):
                    return False
                left = right
            return True

        return compare
    if isinstance(node, ast.IfExp):
        test, body, orelse = _compile(node.test, src), _compile(node.body, src), _compile(node.orelse, src)
        return lambda env: body(env) if test(env) else orelse(env)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
            and not node.keywords):
        fn, args = _FUNCS[node.func.id], [_compile(a, src) for a in node.args]
        return lambda env: fn(*(a(env) for a in args))
    raise IclabError(f"grammar expression {src!r}: {type(node).__name__} is not allowed; use names, constants, "
                     f"subscripts, arithmetic, comparisons, `a if c else b` and {sorted(_FUNCS)}")


def compile_expr(src: str) -> Callable[[Env], Any]:
    """A safe expression, e.g. ``"maps[f][x]"`` or ``"kind == 'comp'"``."""
    try:
        tree = ast.parse(src.strip(), mode="eval")
    except SyntaxError as err:
        raise IclabError(f"grammar expression {src!r} is not valid: {err.msg}") from None
    return _compile(tree, src)


_FIELD = re.compile(r"\{([^{}]+)\}")


def compile_template(src: str) -> Callable[[Env], str]:
    """A token template: literal text with ``{expr}`` fields, e.g. ``"o{x}"``; no fields: a literal."""
    if "{" not in src:
        return lambda env: src
    parts: list[Callable[[Env], Any]] = []
    pos = 0
    for m in _FIELD.finditer(src):
        lit = src[pos:m.start()]
        if lit:
            parts.append(lambda env, lit=lit: lit)
        parts.append(compile_expr(m.group(1)))
        pos = m.end()
    if src[pos:]:
        parts.append(lambda env, lit=src[pos:]: lit)
    return lambda env: "".join(str(p(env)) for p in parts)
