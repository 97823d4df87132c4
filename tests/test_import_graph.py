"""The package's import graph (every `import` of an iclab module, lazy ones inside functions included) has
no cycle: layers point one way, so any module can be read, tested and imported without its dependents."""

from __future__ import annotations

import ast
import os
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("iclab")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("iclab"):
                out.add(target)
                out |= {f"{target}.{a.name}" for a in node.names}  # `from pkg import module`
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in SRC.joinpath("iclab").rglob("*.py")}
    edges = {}
    for name, path in files.items():
        targets = set()
        for t in imports_of(path, name):
            while t and t not in files:  # `from pkg.mod import Class` -> pkg.mod
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # a package's own parents are not edges
                targets.add(t)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n)
    return found


def test_no_import_cycle():
    edges = graph()
    assert len(edges) > 50 and "iclab.runtime._store" in edges
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_runtime_and_the_cli_import_light():
    """Errors, configs and the command line load neither torch nor pandas: `iclab --help` and a config
    error are instant, and a module that only needs IclabError pays nothing for it."""
    import subprocess
    import sys

    code = ("import sys, iclab.runtime._errors, iclab.runtime._config, iclab.cli; "
            "print(sorted(m for m in ('torch', 'pandas', 'matplotlib', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_registry_loads_without_the_heavy_optional_libraries():
    """Every `iclab` command, sweep worker and Ray worker loads the registry (every experiment module):
    scikit-learn, scipy.stats, transformers and pyplot (about 2 s of a 5 s start-up) load where they are used."""
    import subprocess
    import sys

    heavy = ("sklearn", "scipy.stats", "transformers", "matplotlib.pyplot")
    code = ("import sys; from iclab.runtime import load_experiments; load_experiments(); "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "ICLAB_EXPERIMENTS"}  # the research lines only, no toy
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]", out.stdout


def test_looking_up_an_experiment_imports_only_what_its_name_points_to():
    """A run, sweep worker or Ray worker imports its experiment's line only, and an experiment of
    ICLAB_EXPERIMENTS no line at all (the toy needs no torch); an unknown name still sees them all."""
    import subprocess
    import sys

    code = ("import sys; from iclab.runtime import get_experiment; get_experiment({name!r}); "
            "print(sorted(m.split('.')[1] for m in sys.modules if m.count('.') == 2 and m.endswith('.experiments')), "
            "'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "ICLAB_EXPERIMENTS": "tests.runtime.toy"}

    def imported(name: str) -> str:
        return subprocess.run([sys.executable, "-c", code.format(name=name)], capture_output=True, text=True,
                              check=True, env=env).stdout.strip()

    assert imported("grammar.train") == "['grammar'] True"
    assert imported("test.toy") == "[] False"
    # an unknown name: its "did you mean" hint comes from every line, not only the one its prefix names
    unknown = subprocess.run([sys.executable, "-c", code.format(name="spinglass.train")], capture_output=True, text=True,
                             env=env)
    assert unknown.returncode == 1 and "unknown experiment 'spinglass.train' (did you mean grammar.train" in unknown.stderr
