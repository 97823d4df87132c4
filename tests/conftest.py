import fcntl
import importlib
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("ICLAB_NO_PROGRESS", "1")
# Ray starts its workers at niceness 15; beside the other test workers they would wait for CPU time
# the rest of the suite holds, and the Ray tests become the suite's long pole.
os.environ.setdefault("RAY_worker_niceness", "0")
# The suite's thread policy. Under pytest-xdist the workers (a core each, and one more) hold every core, so
# each test process and every process it starts (CLI calls, docs blocks, notebook kernels, sweep and Ray
# workers) gets one torch thread unless set: a 2-thread pool beside busy cores runs 2x slower, not faster
# (toy grammar training beside two busy processes: 41.7 s with 2 threads, 19.5 s with 1).
THREAD_VARS = ("ICLAB_LM_THREADS", "ICLAB_WORKER_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in THREAD_VARS:
        os.environ.setdefault(_var, "1")
# The environment before any test module is imported: what a user's shell has. Some modules set
# variables for themselves at import (test_ray.py: a private Ray token), which commands run as a
# user would (the docs' blocks) must not inherit.
USER_ENV = dict(os.environ)


# What takes minutes, roughly longest first (test modules, or single tests as node-id prefixes): it starts
# first, so that with several workers (pytest-xdist, `-n auto` in pyproject.toml) nothing long starts
# last. The docs page that runs `ray stop` goes first, before the Ray tests (which would wait for it:
# `ray_on_this_machine`). Order only; any order passes.
DOCS = "tests/test_docs_commands.py::test_doc_commands"
LONG_FIRST = [
    f"{DOCS}[docs/howto/ray-cluster.md]",
    f"{DOCS}[docs/taskvectors.md]",
    f"{DOCS}[README.md]",
    "tests/test_notebooks.py",
    f"{DOCS}[docs/howto/own-hf-model.md]",
    f"{DOCS}[docs/runtime.md]",
    "tests/runtime/test_ray.py",
    "tests/grammar/test_experiments.py",
    "tests/models/test_training.py",
    f"{DOCS}[docs/howto/own-task-file.md]",
    f"{DOCS}[docs/spinglass.md]",
    f"{DOCS}[docs/grammar.md]",
    f"{DOCS}[docs/howto/own-grammar.md]",
    "tests/taskvectors/test_smollm2.py",
    "tests/runtime/test_cli.py",
    "tests/runtime/test_results.py",
    "tests/taskvectors/test_verdicts.py",
    "tests/spinglass/test_experiments_phases.py",
    "tests/spinglass/test_experiments_training.py",
    "tests/spinglass/test_experiments_structure.py",
    "tests/test_docs_commands.py",
]
# Modules whose tests are each their own unit of work under pytest-xdist (spread over the workers),
# not one unit per module: the docs checks, one test per markdown file, each in its own directory.
PER_TEST = {"tests/test_docs_commands.py"}


def pytest_collection_modifyitems(config, items):
    """Long modules and tests first (a stable sort: the rest keep their order). Paper-scale runs are
    marked `slow`: plain `pytest` (and CI) skips them, `pytest -m slow` runs them."""

    def rank(item) -> int:
        return next((i for i, prefix in enumerate(LONG_FIRST) if item.nodeid.startswith(prefix)), len(LONG_FIRST))

    items.sort(key=rank)
    if "slow" not in (config.getoption("-m") or ""):
        skip = pytest.mark.skip(reason="paper-scale run: skipped unless asked for (run with `pytest -m slow`)")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


def _ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def optional(*modules: str, extra: str):
    """Import optional packages (Ray, Jupyter, the trackers), or skip naming the fix when one is missing.
    CI installs every extra (`scripts/setup.sh test`), so there (CI=true) a missing one fails instead."""
    try:
        found = [importlib.import_module(m) for m in modules]
    except ImportError as err:
        msg = f"{err.name or err} is not installed: pip install -e '.[{extra}]' (bash scripts/setup.sh test does)"
        if _ci():
            pytest.fail(f"under CI every extra is installed, but {msg}", pytrace=False)
        pytest.skip(msg, allow_module_level=True)
    return found[0] if len(found) == 1 else found


def bundled_model(name: str):
    """A bundled LM (`iclab models`), or a skip with the reason and the fix when it is not installed.
    CI installs every bundled model, so there (CI=true) a missing one fails instead of skipping."""
    from iclab.models import load_model
    from iclab.runtime._errors import IclabError

    try:
        return load_model(name)
    except IclabError as err:
        if _ci():
            raise
        pytest.skip(f"the bundled model {name} is not installed ({err}); bash scripts/setup.sh installs it")


_REDRAWN: set[str] = set()


def saved_results(run: Path) -> dict[str, bytes]:
    """Every file of a run that redraw must keep: all but the figures, summary, report and manifest."""
    from iclab.runtime._store import DERIVED

    return {f.relative_to(run).as_posix(): f.read_bytes() for f in sorted(run.rglob("*"))
            if f.is_file() and f.relative_to(run).parts[0] not in DERIVED}


def check_redraw(run: Path, once: bool = True) -> None:
    """`iclab redraw` of a finished run keeps every saved result (tables, arrays, data, config) byte for
    byte and rebuilds the same summary (claims, figures, notes): figures and verdicts read only what
    compute saved. The end-to-end helpers call it on each experiment's first run in a test process
    (`once`), so every experiment is checked at toy scale."""
    import json

    from iclab.runtime import is_complete, redraw

    name = json.loads((run / "config.json").read_text())["experiment"]
    if once and name in _REDRAWN:
        return
    _REDRAWN.add(name)

    before, summary = saved_results(run), json.loads((run / "summary.json").read_text())
    assert any(k.startswith("tables/") for k in before), "compute saved no table"
    assert redraw(run) == run
    assert saved_results(run) == before
    assert json.loads((run / "summary.json").read_text()) == summary  # the same claims, figures and notes
    for fig in summary["figures"]:
        assert all((run / f).is_file() for f in fig["files"]), fig
    assert is_complete(run, verify=True)


def pytest_configure(config):
    """One torch thread per test process (also without xdist): the suite is many small tensor ops, for
    which a 2-thread pool only adds synchronisation (and stalls badly when another process holds a core)."""
    import torch

    torch.set_num_threads(1)


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject.toml): one worker per core, plus one. Part of the suite waits rather than
    computes (servers and Ray clusters starting, runs that sleep to be interrupted, a page waiting for
    the machine's Ray), and the extra worker fills those gaps (measured on 2 cores: docs/benchmarks.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores + 1


def pytest_xdist_make_scheduler(config, log):
    """With pytest-xdist: a module's tests run in one worker (its module fixtures are built once), but each
    PER_TEST test is a unit of its own; units go out in the collection order (long modules first), and a
    worker gets its next unit only when it is about to run out, so that no long unit waits behind another
    while a worker idles."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if module in PER_TEST else module

        def _reschedule(self, node) -> None:
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
            elif self._pending_of(self.assigned_work[node]) <= 1:  # the one it holds is its last
                self._assign_work_unit(node)

    config.option.loadscopereorder = False  # keep the collection order: long modules first
    return ModuleScheduling(config, log)


@pytest.fixture
def in_process(tmp_path, capsys, monkeypatch):
    """`iclab ARGS` through the console script's `main` in this process, in tmp_path, with the toy experiment
    registered: a CompletedProcess-like result. It spares each call a Python start-up and the registry's
    imports (seconds); tests that run the `iclab` script in a subprocess show the script itself: its exit
    status reaching the shell, completion, signals, the reproduce lanes, tables as wide as COLUMNS."""
    import sys
    from types import SimpleNamespace

    from iclab.cli import main

    importlib.import_module("tests.runtime.toy")  # registers test.toy, if the registry is loaded already
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("ICLAB_EXPERIMENTS", "tests.runtime.toy")  # for a registry loaded later, and workers

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["iclab", *args])
        code = 0
        try:
            main()
        except SystemExit as done:
            code = done.code or 0
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def free_port() -> int:
    """A free TCP port on the loopback address (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes() -> list[tuple[int, int, str, str]]:
    """(pid, parent pid, state letter R/S/Z/..., command line) of every process, read from /proc (Linux):
    for tests that check which processes a command leaves behind, or end them."""
    table = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_text(errors="ignore").replace("\0", " ")
        except OSError:  # gone meanwhile
            continue
        table.append((int(proc.name), int(fields[1]), fields[0], cmdline))
    return table


@contextmanager
def ray_on_this_machine(use: str | None) -> Iterator[None]:
    """Hold the machine's Ray for a test: "shared" by tests that start Ray instances of their own,
    "alone" for one that runs `ray stop`, which ends every Ray process on the machine (the other
    pytest workers' clusters included); None holds nothing. A file lock, so it spans the workers."""
    if use is None:
        yield
        return
    path = Path(tempfile.gettempdir()) / f"iclab-tests-ray-{os.getuid()}.lock"
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if use == "alone" else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
