"""The run store: one directory per (experiment, config hash), written atomically.

Layout of a finished run, `runs/<experiment>/<config-hash>/`:

    config.json    resolved config (+ experiment name and preset)
    env.json       versions, seed, host, timings
    computed.json  what the compute step saved (tables, notes) and the run format
    summary.json   claims (with their computed verdicts), figures, tables, notes (what the report shows)
    tables/*.csv   tidy metrics; arrays/*.npz; data/*.json: the saved results
    figures/*.png|svg  drawn from the saved results (`iclab redraw` draws them again)
    report.html    self-contained report of this run
    DONE           written last: the manifest (size and sha256 of every file); a run without it,
                   or whose files do not match it, is not a result and is redone

Everything is first written to a hidden temporary directory beside the final one and
renamed into place, so an interrupted run leaves nothing that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._config import ExperimentConfig
from ._threads import run_threads, torch_threads
from ._errors import IclabError
from ._experiment import COMPUTED, FORMAT, Experiment, RunContext, dump_json, get_experiment

DONE = "DONE"


@dataclass
class RunResult:
    experiment: str
    config_hash: str
    path: str
    status: str  # "done" | "skipped" | "failed"
    seconds: float = 0.0
    error: str | None = None


def run_dir(runs_dir: Path, experiment: str, config: ExperimentConfig) -> Path:
    return Path(runs_dir) / experiment / config.hash()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(path: Path, started: str) -> None:
    """Seal a run: DONE lists every file with its size and hash, so corruption is detectable later."""
    files = {f.relative_to(path).as_posix(): {"size": f.stat().st_size, "sha256": _sha256(f)}
             for f in sorted(path.rglob("*")) if f.is_file() and f.name != DONE}
    (path / DONE).write_text(json.dumps({"started": started, "files": files}, indent=1) + "\n")


def is_complete(path: Path, verify: bool = False) -> bool:
    """A run counts only if its DONE manifest is there and every file it lists matches it in size
    (and, with `verify`, in content hash): a truncated, partial or corrupted run does not count."""
    try:
        files = json.loads((path / DONE).read_text())["files"]
        json.loads((path / "summary.json").read_text())
        for rel, entry in files.items():
            f = path / rel
            if f.stat().st_size != entry["size"] or (verify and _sha256(f) != entry["sha256"]):
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_writable(runs_dir: Path) -> Path:
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=runs_dir, prefix=".probe-"):
            pass
    except OSError as err:
        raise IclabError(
            f"run directory {runs_dir} is not writable ({err.strerror or err}); pass another with --runs-dir"
        ) from None
    return runs_dir


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def environment(config: ExperimentConfig) -> dict[str, Any]:
    import numpy
    import torch

    from .. import __version__

    return {
        "iclab": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "torch_threads": run_threads(),
        "seed": config.seed,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def execute(
    exp: Experiment,
    config: ExperimentConfig,
    runs_dir: Path,
    *,
    preset: str | None = None,
    force: bool = False,
    quiet: bool = False,
) -> RunResult:
    """Run `exp` with `config` into the store, unless a finished run of the same config exists."""
    runs_dir = ensure_writable(runs_dir)
    final = run_dir(runs_dir, exp.name, config)
    if is_complete(final, verify=True) and not force:
        return RunResult(exp.name, config.hash(), str(final), "skipped")

    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_attempts(final)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-{os.getpid()}@{socket.gethostname()}-"))
    t0 = time.perf_counter()
    try:
        env = environment(config)
        ctx = RunContext(out_dir=tmp, experiment=exp.name, quiet=quiet, runs_dir=runs_dir)
        _seed_everything(config.seed)
        with torch_threads(run_threads()):
            exp(config, ctx)
        env["seconds"] = round(time.perf_counter() - t0, 3)
        meta = {"experiment": exp.name, "title": exp.title, "paper": exp.paper, "preset": preset,
                "config_hash": config.hash(), "config": config.model_dump(mode="json")}
        (tmp / "config.json").write_text(dump_json(meta))
        (tmp / "env.json").write_text(dump_json(env))
        _write_summary(tmp, ctx, meta, env)
        write_manifest(tmp, env["started"])
        replace_dir(tmp, final)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, (KeyboardInterrupt, IclabError)):
            raise
        return RunResult(exp.name, config.hash(), str(final), "failed", time.perf_counter() - t0,
                         f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
    return RunResult(exp.name, config.hash(), str(final), "done", time.perf_counter() - t0)


def _write_summary(path: Path, ctx: RunContext, meta: dict[str, Any], env: dict[str, Any]) -> None:
    from ._report import render_run_report

    summary = ctx.summary()
    (path / "summary.json").write_text(dump_json(summary))
    (path / "report.html").write_text(render_run_report(path, meta, env, summary))


DERIVED = ("figures", "summary.json", "report.html", DONE)  # what `redraw` rebuilds; the rest is kept as is


def redraw(path: Path, quiet: bool = True) -> Path:
    """Rebuild a finished run's figures, claims and report from its saved results, without recomputing:
    tables, arrays and data stay byte-identical. Written beside the run and swapped in atomically."""
    path = Path(path)
    if not is_complete(path, verify=True):
        raise IclabError(f"{path} is not a finished iclab run (no valid DONE manifest); run the experiment "
                         "with `iclab run` instead")
    try:
        computed = json.loads((path / COMPUTED).read_text())
        fmt = computed.get("format")
    except (OSError, ValueError, AttributeError):
        fmt = None
    meta = json.loads((path / "config.json").read_text())
    if fmt != FORMAT:
        raise IclabError(f"{path} was written by an older iclab (run format {fmt or 1}, this one reads {FORMAT}); "
                         f"rerun it with `iclab run {meta.get('experiment', 'EXPERIMENT')} --force` and the same settings")
    exp = get_experiment(meta["experiment"])
    config = exp.make_config(None, {k: v for k, v in meta["config"].items()}, saved=True)
    env = json.loads((path / "env.json").read_text())
    started = json.loads((path / DONE).read_text()).get("started", env.get("started", ""))
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".redraw-{path.name}-"))
    try:
        for item in path.iterdir():
            if item.name in DERIVED:
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        ctx = RunContext(out_dir=tmp, experiment=exp.name, quiet=quiet, runs_dir=path.parent.parent,
                         tables=list(computed["tables"]), notes=list(computed["notes"]))
        _seed_everything(config.seed)
        with torch_threads(run_threads()):
            exp.finish(config, ctx)
        _write_summary(tmp, ctx, meta, env)
        write_manifest(tmp, started)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _remove_abandoned_attempts(final: Path) -> None:
    """Delete the scratch directories of earlier attempts at this run whose process died on this host
    (a killed worker, a Ctrl-C). They never count as results; this only reclaims their space. Attempts
    by live processes or on other hosts are left alone."""
    prefix = f".tmp-{final.name}-"
    for scratch in final.parent.glob(f"{prefix}*@*"):
        pid, _, rest = scratch.name[len(prefix):].partition("@")
        host = rest.rpartition("-")[0]
        if host != socket.gethostname() or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(scratch, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            pass


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished temporary directory into place, replacing any older one (a stale or forced-over
    run, an earlier report site) so readers see the old or the new, never a mix."""
    if dst.exists():
        trash = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".old-{dst.name}-"))
        os.replace(dst, trash / "run")
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_run(path: Path) -> dict[str, Any]:
    """Config, environment and summary of a finished run."""
    path = Path(path)
    return {
        "path": str(path),
        "meta": json.loads((path / "config.json").read_text()),
        "env": json.loads((path / "env.json").read_text()),
        "summary": json.loads((path / "summary.json").read_text()),
    }


TIMING_FILES = {"env.json", "report.html", DONE, "data/timing.json"}  # start times, durations, the host


def result_files(runs_dir: Path) -> dict[str, bytes]:
    """Every file of every finished run but the timing ones, keyed by experiment/hash/path: two stores
    with equal `result_files` hold the same results (how backends are checked against each other).
    In summary.json the engineering claims (wall times) are left out; every other claim counts."""
    out = {}
    for run in finished_runs(runs_dir):
        path = Path(run["path"])
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path).as_posix()
            if not f.is_file() or f.name in TIMING_FILES or rel in TIMING_FILES:
                continue
            data = f.read_bytes()
            if rel == "summary.json":
                summary = json.loads(data)
                summary["claims"] = [c for c in summary.get("claims", []) if c.get("kind") != "engineering"]
                data = dump_json(summary).encode()
            out[f"{path.parent.name}/{path.name}/{rel}"] = data
    return out


def finished_runs(runs_dir: Path, experiment: str | None = None) -> list[dict[str, Any]]:
    """Every finished run under `runs_dir` (optionally of one experiment), oldest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    pattern = f"{experiment}/*" if experiment else "*/*"
    runs = [load_run(p) for p in runs_dir.glob(pattern) if p.is_dir() and not p.name.startswith(".") and is_complete(p)]
    return sorted(runs, key=lambda r: r["env"].get("started", ""))
