"""`iclab reproduce`: the quick (or paper) preset of every experiment, and one report over them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .experiment import load_experiments
from .report import render_combined_report
from .store import RunResult, ensure_writable, execute, load_run, write_text_atomic


def reproduce(
    runs_dir: Path,
    *,
    preset: str = "quick",
    only: str | None = None,
    force: bool = False,
    quiet: bool = False,
    on_result: Callable[[RunResult], None] | None = None,
) -> tuple[list[RunResult], Path]:
    """Run every registered experiment (names starting with `only`, if given); write `report/index.html`."""
    runs_dir = ensure_writable(Path(runs_dir))
    results = []
    for name, exp in load_experiments().items():
        if only and not name.startswith(only):
            continue
        res = execute(exp, exp.make_config(preset), runs_dir, preset=preset, force=force, quiet=quiet)
        results.append(res)
        if on_result:
            on_result(res)
    runs = [load_run(Path(r.path)) for r in results if r.status in ("done", "skipped")]
    report = runs_dir / "report" / f"{preset}.html"
    write_text_atomic(report, render_combined_report(
        runs, title=f"iclab reproduction report ({preset} preset)",
        intro="Each section: the paper's claim beside our number, the figures with their settings, seeds and environment."))
    return results, report
