"""`iclab reproduce`: the quick (or paper) preset of every experiment, then the report site over the store.

With `jobs` > 1 the research lines run side by side in lanes: lane 0 in this process, every other lane
as a child `iclab reproduce` process over its own lines. Lines share nothing but the store (each
writes its own runs, atomically), and within a line experiments keep their order, since later ones
reuse the models earlier ones trained. Lanes are balanced by each line's declared quick cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ._experiment import load_experiments, research_line
from ._site import build_site
from ._store import RunResult, ensure_writable, execute, finished_runs


def selected(only: str | None) -> list[str]:
    """Experiment names starting with any of the comma-separated prefixes in `only`; without `only`, every
    experiment that reproduces a paper (tools such as `taskvectors.profile` are left out)."""
    prefixes = [p.strip() for p in (only or "").split(",") if p.strip()]
    if not prefixes:
        return [n for n, exp in load_experiments().items() if exp.reproduce]
    return [n for n in load_experiments() if any(n.startswith(p) for p in prefixes)]


def lanes(names: list[str], jobs: int) -> list[list[str]]:
    """Research lines spread over at most `jobs` lanes, heaviest first onto the lightest lane
    (longest-processing-time first), by each line's declared `quick_minutes`. An experiment with its own
    `lane_minutes` (it shares no model with its line) is placed on its own, after its line's others."""
    registry = load_experiments()
    groups: dict[str, list[str]] = {}
    minutes: dict[str, float] = {}
    for n in names:
        exp = registry.get(n)
        if exp is not None and exp.lane_minutes is not None:
            groups[n], minutes[n] = [n], exp.lane_minutes
        else:
            line = n.split(".", 1)[0]
            groups.setdefault(line, []).append(n)
            minutes[line] = research_line(f"{line}.x").quick_minutes
    out: list[list[str]] = [[] for _ in range(max(1, min(jobs, len(groups))))]
    load = [0.0] * len(out)
    for g in sorted(groups, key=lambda g: -minutes[g]):
        i = load.index(min(load))
        out[i] += groups[g]
        load[i] += minutes[g]
    return [lane for lane in out if lane]


def reproduce(
    runs_dir: Path,
    *,
    preset: str = "quick",
    only: str | None = None,
    force: bool = False,
    quiet: bool = False,
    on_result: Callable[[RunResult], None] | None = None,
    jobs: int = 1,
    site: bool = True,
) -> tuple[list[RunResult], Path | None]:
    """Run every registered experiment (those starting with one of the comma-separated prefixes in
    `only`, if given) in `jobs` lanes, then rebuild `<runs_dir>/site/` over all finished runs; return the
    results and the site's index.html (None only if no run in the store has ever finished)."""
    runs_dir = ensure_writable(Path(runs_dir))
    mine, *others = lanes(selected(only), jobs) or [[]]
    children = [_start_lane(lane, runs_dir, preset, force, quiet) for lane in others]
    results = []
    try:
        experiments = load_experiments()
        for name in mine:
            exp = experiments[name]
            res = execute(exp, exp.make_config(preset), runs_dir, preset=preset, force=force, quiet=quiet)
            results.append(res)
            if on_result:
                on_result(res)
    except (KeyboardInterrupt, SystemExit):
        for proc, _ in children:  # interrupted: the lanes stop too (each ends its own workers)
            proc.terminate()
        raise
    finally:
        for proc, out in children:
            proc.wait()
            results += _lane_results(proc, out)
    report = build_site(runs_dir) if site and finished_runs(runs_dir) else None
    return results, report


def _start_lane(names: list[str], runs_dir: Path, preset: str, force: bool, quiet: bool):
    """A child `iclab reproduce` over `names` (it prints its own results), one torch thread per run
    unless set: the lanes share the cores."""
    fd, out = tempfile.mkstemp(prefix=".lane-", suffix=".json", dir=runs_dir)
    os.close(fd)
    cmd = [sys.executable, "-m", "iclab", "reproduce", f"--{'quick' if preset == 'quick' else 'paper'}",
           "--only", ",".join(names), "--runs-dir", str(runs_dir), "--jobs", "1", "--no-site",
           "--results-file", out, *(["--force"] if force else []), *(["--quiet"] if quiet else [])]
    env = {**os.environ, "ICLAB_LM_THREADS": os.environ.get("ICLAB_LM_THREADS", "1")}
    return subprocess.Popen(cmd, env=env), Path(out)


def _lane_results(proc: subprocess.Popen, out: Path) -> list[RunResult]:
    try:
        rows = json.loads(out.read_text() or "[]")
    except (OSError, ValueError):
        rows = []
    finally:
        out.unlink(missing_ok=True)
    if proc.returncode not in (0, 1) and not rows:  # the lane itself crashed
        return [RunResult("lane", "", "", "failed", error=f"a reproduce lane exited with status {proc.returncode}")]
    return [RunResult(**r) for r in rows]


def write_results(results: list[RunResult], path: Path) -> None:
    Path(path).write_text(json.dumps([asdict(r) for r in results]))
