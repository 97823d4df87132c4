"""`iclab reproduce`: the quick (or paper) preset of every experiment, then the report site over the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .experiment import load_experiments
from .site import build_site
from .store import RunResult, ensure_writable, execute, finished_runs


def reproduce(
    runs_dir: Path,
    *,
    preset: str = "quick",
    only: str | None = None,
    force: bool = False,
    quiet: bool = False,
    on_result: Callable[[RunResult], None] | None = None,
) -> tuple[list[RunResult], Path | None]:
    """Run every registered experiment (names starting with `only`, if given), then rebuild
    `<runs_dir>/site/` over all finished runs; return the results and the site's index.html
    (None only if no run in the store has ever finished)."""
    runs_dir = ensure_writable(Path(runs_dir))
    results = []
    for name, exp in load_experiments().items():
        if only and not name.startswith(only):
            continue
        res = execute(exp, exp.make_config(preset), runs_dir, preset=preset, force=force, quiet=quiet)
        results.append(res)
        if on_result:
            on_result(res)
    report = build_site(runs_dir) if finished_runs(runs_dir) else None
    return results, report
