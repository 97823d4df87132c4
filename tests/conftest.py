import importlib
import os

import pytest

os.environ.setdefault("ICLAB_NO_PROGRESS", "1")
# Ray starts its workers at niceness 15; beside the other test workers they would wait for CPU time
# the rest of the suite holds, and the Ray tests become the suite's long pole.
os.environ.setdefault("RAY_worker_niceness", "0")
# The environment before any test module is imported: what a user's shell has. Some modules set
# variables for themselves at import (test_ray.py: a private Ray token), which commands run as a
# user would (the docs' blocks) must not inherit.
USER_ENV = dict(os.environ)


# Test modules that take minutes, longest first: they start first, so that with several workers
# (pytest-xdist, `-n auto` in pyproject.toml) no long module starts last. Order only; any order passes.
LONG_FIRST = [
    "tests/test_docs_commands.py",
    "tests/grammar/test_experiments.py",
    "tests/test_notebooks.py",
    "tests/taskvectors/test_verdicts.py",
    "tests/spinglass/test_experiments_phases.py",
    "tests/spinglass/test_experiments_training.py",
    "tests/spinglass/test_experiments_structure.py",
]
# Ray's `ray stop` in docs/howto/ray-cluster.md ends every Ray process on the machine, the test
# cluster of tests/runtime/test_ray.py included: the two files run in one worker, one after the other.
ONE_WORKER = {"tests/test_docs_commands.py", "tests/runtime/test_ray.py"}


def _module(item) -> str:
    return item.nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config, items):
    """Long modules first (a stable sort: each module's tests keep their order). Paper-scale runs are
    marked `slow`: plain `pytest` (and CI) skips them, `pytest -m slow` runs them."""
    rank = {m: i for i, m in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(_module(item), len(rank)))
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


def pytest_configure(config):
    """One torch thread per test process: the suite is many small tensor ops, for which a 2-thread
    pool only adds synchronisation (and stalls badly when another process holds a core)."""
    import torch

    torch.set_num_threads(1)


def pytest_xdist_make_scheduler(config, log):
    """With pytest-xdist: a module's tests run in one worker (its module fixtures are built once), long
    modules first (the collection order above), and the ONE_WORKER modules together."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "+".join(sorted(ONE_WORKER)) if module in ONE_WORKER else module

    config.option.loadscopereorder = False  # keep the collection order: long modules first
    return ModuleScheduling(config, log)
