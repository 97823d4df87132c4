"""Finished runs into the experiment trackers researchers already use: MLflow and Weights & Biases.

Each finished run `runs/<experiment>/<config-hash>/` becomes one tracker run named `<experiment>/<config-hash>`:

    parameters  the config fields, flattened as `iclab results` does (`world.n_objects`; lists as JSON text)
    metrics     each claim's estimate under the claim's name, its interval as `<claim>.lo` / `<claim>.hi`;
                `iclab.seconds` (the run's wall time); the top-level numbers of its data/*.json as `<file>.<key>`
    tags        iclab.run_id, iclab.experiment, iclab.config_hash, iclab.preset, iclab.seed, iclab.version (that
                made the run), iclab.started, iclab.verdicts (counts per kind) and iclab.verdict.<claim> (each
                claim's verdict, recomputed from the numbers), iclab.done_sha256 (the run's content)
    artifacts   figures/*.png|svg, report.html, summary.json (the claims), config.json

Names keep to the characters MLflow accepts (letters, digits, `_ - . : /` and spaces); a minus sign or
dash becomes `-`, commas and apostrophes go, anything else becomes `_`, the same in both trackers.

Exporting again never duplicates a run. MLflow: the tracker run is found by its `iclab.run_id` tag in the
experiment's MLflow experiment (named like the iclab experiment); unchanged (same `iclab.done_sha256`) it is
skipped, changed (redrawn, or rerun with --force) it is updated in place: new metric values and tags,
artifacts uploaded again. W&B (offline only: no network, no login): each run is an offline run
`DIR/wandb/offline-run-*-<id>/` with a fixed id; an unchanged one is skipped, a changed one written again
(the superseded offline directory is removed). `wandb sync DIR/wandb/offline-run-*` uploads them later.

mlflow and wandb are optional (`pip install -e ".[mlflow]"` / `".[wandb]"`) and imported only here, inside
the functions, so `import iclab.runtime` stays light.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ._claims import KINDS, Claim
from ._errors import IclabError
from ._results import experiment_runs, flatten_config, run_experiment, run_key, run_seed
from ._store import DONE, finished_runs

ARTIFACT_FILES = ("report.html", "summary.json", "config.json")  # besides figures/*
MAX_NAME = 200  # MLflow takes names of up to 250 characters: room for `iclab.verdict.` and `.lo`
MAX_PARAM = 6000  # ... on a parameter's value
MAX_TAG = 8000  # ... on a tag's value
WANDB_MARKER = "iclab/export.json"  # in an offline W&B run's files: which run, which content


@dataclass
class Exported:
    """One run's export: `run` is `<experiment>/<config-hash>`; `status` exported, updated or unchanged;
    `where` the tracker run (an MLflow URL or run id, a W&B offline run directory)."""

    run: str
    status: str
    where: str


@dataclass
class TrackerRun:
    """What a finished run exports, the same for every tracker."""

    name: str  # <experiment>/<config-hash>, also the iclab.run_id tag
    experiment: str
    path: Path
    title: str
    started_ms: int | None
    seconds: float | None
    config: dict[str, Any] = field(default_factory=dict)  # the config fields, flattened (W&B keeps their types)
    params: dict[str, str] = field(default_factory=dict)  # ... as text (MLflow's parameters)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)  # paths in the run directory
    captions: dict[str, str] = field(default_factory=dict)  # figure file -> caption

    @property
    def sha(self) -> str:
        return self.tags["iclab.done_sha256"]


_READABLE = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", ",": "", "'": "", "\u2019": ""})


def tracker_name(text: str) -> str:
    """`text` as a parameter, metric or tag name every tracker accepts (MLflow's rule, the strictest)."""
    text = re.sub(r"[^A-Za-z0-9_.\- :/]+", "_", text.translate(_READABLE)).strip()
    text = re.sub(r"/+", "/", text).strip("/")  # no empty or leading path parts (MLflow reads names as paths)
    text = "/".join(p if p not in (".", "..") else "_" for p in text.split("/"))
    return text[:MAX_NAME].strip() or "_"


def tracker_run(run: dict[str, Any]) -> TrackerRun:
    """A finished run (as `finished_runs` returns it) as one tracker run."""
    from .. import __version__

    path, meta, env, summary = Path(run["path"]), run["meta"], run["env"], run["summary"]
    experiment, key = run_experiment(run), run_key(run)
    config = {tracker_name(k): v for k, v in flatten_config(meta.get("config", {})).items()}
    params = {k: _text(v)[:MAX_PARAM] for k, v in config.items()}
    metrics: dict[str, float] = {}
    tags = {"iclab.run_id": f"{experiment}/{key}", "iclab.experiment": experiment, "iclab.config_hash": key,
            "iclab.preset": str(meta.get("preset") or "none"), "iclab.seed": _text(run_seed(run)),
            "iclab.version": str(env.get("iclab", __version__)), "iclab.started": str(env.get("started", ""))}
    counts: dict[str, dict[str, int]] = {k: {} for k in KINDS}
    for d in summary.get("claims", []):
        claim = Claim.from_dict(d)  # the verdict is recomputed from the numbers, never read
        name = _unique(tracker_name(claim.name), metrics)
        for suffix, value in (("", claim.ours.value), (".lo", claim.ours.lo), (".hi", claim.ours.hi)):
            if value is not None:
                metrics[name + suffix] = float(value)
        tags[tracker_name(f"iclab.verdict.{name}")] = claim.verdict
        counts.setdefault(claim.kind, {})
        counts[claim.kind][claim.verdict] = counts[claim.kind].get(claim.verdict, 0) + 1
    tags["iclab.verdicts"] = "; ".join(f"{kind}: " + ", ".join(f"{n} {v}" for v, n in sorted(c.items()))
                                       for kind, c in counts.items() if c) or "no claims"
    if _number(env.get("seconds")):
        metrics[_unique("iclab.seconds", metrics)] = float(env["seconds"])
    for data in sorted((path / "data").glob("*.json")):
        try:
            values = json.loads(data.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(values, dict):
            for k, v in values.items():
                if _number(v):
                    metrics[_unique(tracker_name(f"{data.stem}.{k}"), metrics)] = float(v)
    tags["iclab.done_sha256"] = hashlib.sha256((path / DONE).read_bytes()).hexdigest()
    tags = {k: v[:MAX_TAG] for k, v in tags.items()}
    figures = sorted(p.relative_to(path).as_posix() for p in (path / "figures").glob("*")
                     if p.is_file() and p.suffix in (".png", ".svg"))
    captions = {f: fig.get("caption", "") for fig in summary.get("figures", []) for f in fig.get("files", [])}
    return TrackerRun(f"{experiment}/{key}", experiment, path, str(meta.get("title", "")), _millis(env.get("started")),
                      float(env["seconds"]) if _number(env.get("seconds")) else None, config, params, metrics, tags,
                      figures + [f for f in ARTIFACT_FILES if (path / f).is_file()], captions)


def select_runs(runs_dir: str | Path, experiment: str | None) -> list[dict[str, Any]]:
    """The finished runs to export (of one experiment, or all), oldest first; a one-line error if none."""
    if experiment is not None:
        return experiment_runs(experiment, runs_dir)  # an unknown name gets the registry's own error
    runs = finished_runs(Path(runs_dir))
    if not runs:
        raise IclabError(f"no finished runs in {runs_dir}/ to export; run `iclab run EXPERIMENT` first, or pass "
                         "the run store with --runs-dir")
    return runs


def export_mlflow(runs_dir: str | Path, tracking_uri: str, experiment: str | None = None, *,
                  on_result: Callable[[Exported], None] | None = None) -> list[Exported]:
    """Export every finished run under `runs_dir` (or those of `experiment`) to the MLflow tracking server or
    store at `tracking_uri`, one MLflow run per iclab run, in an MLflow experiment named like the iclab one.
    A run exported before is skipped when unchanged and updated in place when not (found by its
    `iclab.run_id` tag). `on_result` is called after each run."""
    runs = select_runs(runs_dir, experiment)
    mlflow = _tracker("mlflow")
    _check_reachable(tracking_uri)
    out = []
    with _mlflow_errors(tracking_uri):
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment_ids: dict[str, str] = {}
    for run in runs:
        rec = tracker_run(run)
        with _mlflow_errors(tracking_uri):
            if rec.experiment not in experiment_ids:
                experiment_ids[rec.experiment] = _mlflow_experiment(client, rec.experiment)
            res = _export_mlflow_run(client, experiment_ids[rec.experiment], rec, tracking_uri)
        out.append(res)
        if on_result:
            on_result(res)
    return out


def export_wandb(runs_dir: str | Path, directory: str | Path, experiment: str | None = None, *,
                 project: str = "iclab", mode: str = "offline",
                 on_result: Callable[[Exported], None] | None = None) -> list[Exported]:
    """Export every finished run under `runs_dir` (or those of `experiment`) as W&B offline runs under
    `directory/wandb/` (no network, no login; `wandb sync` uploads them later), one per iclab run, grouped by
    experiment. A run exported before is skipped when unchanged and written again when not. `on_result` is
    called after each run."""
    if mode != "offline":
        raise IclabError(f"W&B export runs offline only (mode {mode!r}); upload the offline runs afterwards with "
                         "`wandb sync DIR/wandb/offline-run-*`")
    if re.search(r"[/\\#?%:]", project) or not project.strip():
        raise IclabError(f"W&B project {project!r} may not be empty or contain / \\ # ? % :; pass another --project")
    runs = select_runs(runs_dir, experiment)
    wandb = _tracker("wandb")
    directory = Path(directory)
    try:
        (directory / "wandb").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise IclabError(f"cannot write W&B runs to {directory} ({err.strerror or err}); pass another --dir") from None
    active = wandb.run is not None  # someone else's run: leave their W&B session alone at the end
    out = []
    try:
        for run in runs:
            res = _export_wandb_run(wandb, directory, project, tracker_run(run))
            out.append(res)
            if on_result:
                on_result(res)
    finally:
        if not active:
            wandb.teardown()  # stop the W&B service this export started
    return out


# --- MLflow ------------------------------------------------------------------------------------------------


def _mlflow_experiment(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name)
    if exp.lifecycle_stage == "deleted":
        raise IclabError(f"the MLflow experiment {name!r} is deleted; restore it (`mlflow experiments restore "
                         f"--experiment-id {exp.experiment_id}`) or delete it for good (`mlflow gc`), then export "
                         "again")
    return exp.experiment_id


def _export_mlflow_run(client: Any, experiment_id: str, rec: TrackerRun, uri: str) -> Exported:
    from mlflow.entities import Metric, Param, RunTag

    found = client.search_runs([experiment_id], filter_string=f"tags.`iclab.run_id` = '{_quoted(rec.name)}'",
                               max_results=50)
    finished = [r for r in found if r.info.status == "FINISHED"]
    for r in found:  # an export that died half-way: it never counts, and is replaced
        if r.info.status != "FINISHED":
            client.delete_run(r.info.run_id)
    same = next((r for r in finished if r.data.tags.get("iclab.done_sha256") == rec.sha), None)
    if same is not None:
        return Exported(rec.name, "unchanged", _mlflow_where(uri, experiment_id, same.info.run_id))
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in rec.metrics.items()]
    tags = {**rec.tags, "mlflow.note.content": rec.title}
    if finished:  # the same config, redrawn or rerun: new values, tags and artifacts in the same tracker run
        run_id, created = finished[0].info.run_id, None
        old = finished[0].data.params
        params = [Param(k, v) for k, v in rec.params.items() if k not in old]
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = created = client.create_run(experiment_id, start_time=rec.started_ms, tags=tags,
                                             run_name=rec.name).info.run_id
        params = [Param(k, v) for k, v in rec.params.items()]
    try:
        client.log_batch(run_id, metrics=metrics, params=params, tags=[RunTag(k, v) for k, v in tags.items()])
        for rel in rec.artifacts:
            parent = Path(rel).parent.as_posix()
            client.log_artifact(run_id, str(rec.path / rel), None if parent == "." else parent)
        end = rec.started_ms + int(rec.seconds * 1000) if rec.started_ms and rec.seconds is not None else None
        with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints "View run ... at" for each run
            client.set_terminated(run_id, "FINISHED", end_time=end)
    except BaseException:
        if created:  # nothing half-exported: the next export starts it again
            with contextlib.suppress(Exception):
                client.delete_run(created)
        else:
            with contextlib.suppress(Exception):
                client.update_run(run_id, status="FAILED")  # not FINISHED: the next export redoes it
        raise
    return Exported(rec.name, "updated" if created is None else "exported", _mlflow_where(uri, experiment_id, run_id))


def _mlflow_where(uri: str, experiment_id: str, run_id: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"run {run_id} in {uri}"


def _check_reachable(uri: str) -> None:
    """An http(s) tracking URI must answer, at once: MLflow's own client retries a dead server for minutes."""
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10):
            pass
    except urllib.error.HTTPError:
        return  # it answered (a server without /health, or one asking for a login: MLflow says which)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise IclabError(f"cannot reach the MLflow tracking server at {uri} ({reason}); start it (e.g. `mlflow "
                         "server --host 127.0.0.1 --port 5000`) or pass another --tracking-uri") from None


@contextlib.contextmanager
def _mlflow_errors(uri: str) -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as err:
        raise IclabError(f"MLflow at {uri} refused the export ({_first_line(err).rstrip('.')}); check "
                         "--tracking-uri") from None


# --- W&B ---------------------------------------------------------------------------------------------------


def wandb_id(name: str) -> str:
    """A W&B run id for `<experiment>/<config-hash>`: fixed, so a second export is found again."""
    rid = re.sub(r"[^A-Za-z0-9_.-]", "-", name)
    return rid if len(rid) <= 64 else f"{rid[:47]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _offline_runs(directory: Path, run_id: str) -> list[Path]:
    """The offline W&B runs of this id in `directory` (finished exports carry the marker file)."""
    found = []
    for d in sorted((directory / "wandb").glob(f"offline-run-*-{run_id}")):
        if d.is_dir() and d.name.split("-", 3)[-1] == run_id:
            found.append(d)
    return found


def _marker_sha(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "files" / WANDB_MARKER).read_text()).get("done_sha256")
    except (OSError, ValueError, AttributeError):
        return None


def _export_wandb_run(wandb: Any, directory: Path, project: str, rec: TrackerRun) -> Exported:
    rid = wandb_id(rec.name)
    earlier = _offline_runs(directory, rid)
    for d in earlier:
        if _marker_sha(d) == rec.sha:
            return Exported(rec.name, "unchanged", str(d))
    verdicts = sorted({v for k, v in rec.tags.items() if k.startswith("iclab.verdict.")})
    preset = rec.tags["iclab.preset"]
    tags = [rec.experiment, rec.tags["iclab.config_hash"], *([preset] if preset != "none" else []),
            f"iclab-{rec.tags['iclab.version']}", *verdicts]
    config = {**rec.config, "iclab": {k.removeprefix("iclab."): v for k, v in rec.tags.items()}}
    settings = wandb.Settings(mode="offline", console="off", silent=True, disable_git=True, save_code=False,
                              disable_job_creation=True, x_disable_stats=True, x_disable_meta=True,
                              x_disable_machine_info=True, x_save_requirements=False)
    try:
        run = wandb.init(project=project, dir=str(directory), id=rid, name=rec.name, group=rec.experiment,
                         notes=rec.title, tags=[t[:64] for t in dict.fromkeys(tags) if t], config=config,
                         settings=settings, reinit="create_new")
    except Exception as err:
        raise IclabError(f"W&B could not start an offline run in {directory} ({_first_line(err)}); "
                         "pass another --dir") from None
    where = Path(run.dir).parent
    try:
        images = {f"figures/{Path(rel).stem}": wandb.Image(str(rec.path / rel), caption=rec.captions.get(rel) or None)
                  for rel in rec.artifacts if rel.startswith("figures/") and rel.endswith(".png")}
        if images:
            run.log(images, step=0)
        run.summary.update(rec.metrics)
        files = Path(run.dir)
        for rel in rec.artifacts:
            dst = files / "iclab" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(rec.path / rel, dst)  # a copy, so the offline run stands alone
            run.save(str(dst), base_path=str(files), policy="now")
        marker = files / WANDB_MARKER  # last: an offline run without it is not a finished export
        marker.write_text(json.dumps({"run_id": rec.name, "done_sha256": rec.sha}) + "\n")
        run.save(str(marker), base_path=str(files), policy="now")
        run.finish()
    except BaseException:
        with contextlib.suppress(Exception):
            run.finish(exit_code=1)
        shutil.rmtree(where, ignore_errors=True)  # nothing half-exported
        raise
    for d in earlier:  # superseded by this export of the same run
        shutil.rmtree(d, ignore_errors=True)
    return Exported(rec.name, "updated" if earlier else "exported", str(where))


# --- shared ------------------------------------------------------------------------------------------------


def _tracker(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise IclabError(f"{name} is not installed; install it with pip install -e \".[{name}]\" "
                         f"(or pip install {name})") from None


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "message", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unique(name: str, taken: dict[str, Any]) -> str:
    out, i = name, 2
    while out in taken or f"{out}.lo" in taken:
        out, i = f"{name} {i}", i + 1
    return out


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _millis(started: Any) -> int | None:
    try:
        return int(datetime.fromisoformat(str(started)).timestamp() * 1000)
    except ValueError:
        return None

