"""`iclab export mlflow|wandb`: finished runs into a real MLflow tracking server and W&B offline runs, read back
through MLflow's own client and W&B's own record format, and compared with what the run directories hold."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from pydantic import Field

from iclab.runtime import (Estimate, ExperimentConfig, IclabError, SerialExecutor, claims, execute, export_mlflow,
                           export_wandb, finished_runs, sweep)
from iclab.runtime._experiment import Experiment
from iclab.runtime._export import tracker_name, wandb_id
from tests.runtime.test_cli import assert_one_line_error, iclab
from tests.conftest import free_port, optional
from tests.runtime.toy import run as toy

os.environ["ICLAB_EXPERIMENTS"] = "tests.runtime.toy"  # also seen by the `iclab` subprocesses
VENV_BIN = Path(sys.executable).parent
ODD_CLAIM = "KL(p ‖ q) at n ≥ 1: a − b"  # characters no tracker accepts in a name


def tracker(name: str):
    """mlflow or wandb (their extras are named after them), or a skip naming the fix (a failure under CI)."""
    return optional(name, extra=name)


class OddConfig(ExperimentConfig):
    Ns: list[int] = Field([1, 2], description="A list: a JSON-text parameter.")
    opt: dict[str, float] = Field({"lr": 0.1}, description="A mapping: flattened to opt.lr.")


def odd_run(cfg: OddConfig, ctx) -> None:
    ctx.table(pd.DataFrame({"N": cfg.Ns}))
    ctx.json("timing", {"seconds": 1.5, "tokens": 7, "label": "x", "ok": True, "curve": [1, 2]})


# not registered: in the store only, as runs of an experiment since renamed or removed are
ODD = Experiment("test.odd", OddConfig, odd_run, presets={}, title="odd names", paper="nobody 2026")


@ODD.verdicts
def odd_verdicts(cfg: OddConfig, res, ctx) -> None:
    ctx.claim(ODD_CLAIM, kind="sanity", paper="(ours) a name with odd characters",
              ours=Estimate.single(0.25, "one draw"), expect=(">", 0))


HOME_DIRS = (".config/wandb", ".cache/wandb", ".local/share/wandb", ".config/mlflow", ".mlflow", "mlruns", "wandb")


@pytest.fixture(scope="module", autouse=True)
def tracker_env(tmp_path_factory):
    """W&B stays offline and quiet, and nothing of the trackers' lands in the home or working directory."""
    home = tmp_path_factory.mktemp("tracker-home")
    before = {p for p in HOME_DIRS if (Path.home() / p).exists() or Path(p).exists()}
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_DATA_DIR", "data"),
                         ("WANDB_ARTIFACT_DIR", "artifacts"), ("WANDB_DIR", "wandb")):
            mp.setenv(var, str(home / sub))
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB_DISABLE_GIT", "true")
        mp.setenv("WANDB_DISABLE_CODE", "true")
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # else MLflow writes ~/.config/mlflow/telemetry.json
        mp.setenv("DO_NOT_TRACK", "true")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield home
    after = {p for p in HOME_DIRS if (Path.home() / p).exists() or Path(p).exists()}
    assert after <= before, f"the trackers wrote {sorted(after - before)} outside the test's directories"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Two toy runs (figures, claims) and one run of an unregistered experiment with odd claim names, nested and
    list config fields, and a data file of numbers."""
    runs = tmp_path_factory.mktemp("export") / "runs"
    res = sweep("test.toy", {"seed": [0, 1]}, runs, preset="quick", executor=SerialExecutor())
    assert [r.status for r in res] == ["done"] * 2
    assert execute(ODD, OddConfig(), runs, quiet=True).status == "done"
    return runs


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> str:
    """A real MLflow tracking server on 127.0.0.1 (sqlite store, artifacts proxied into a temporary directory),
    stopped at the end whatever happens."""
    tracker("mlflow")
    where = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = open(where / "server.log", "w")
    proc = subprocess.Popen(
        [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{where / 'mlflow.db'}", "--default-artifact-root", "mlflow-artifacts:/",
         "--artifacts-destination", str(where / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, cwd=where, start_new_session=True,  # a process group: all go down
        env={**os.environ, "HOME": str(where), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # no job runners
    try:
        deadline = time.monotonic() + 240  # seconds on an idle laptop; the CI machine may be busy
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited ({proc.returncode}):\n{(where / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer in 240 s:\n{(where / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=2)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:  # a graceful shutdown is slow on a busy machine: not needed here
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def expected(run: dict) -> tuple[dict, dict, dict]:
    """What one run exports, read from its directory: parameters (config fields, nested ones as a.b, lists as
    JSON text), metrics (claims with their intervals, the wall time, the data files' numbers), verdicts."""

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and v:
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    path = Path(run["path"])
    params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in flat(run["meta"]["config"])}
    metrics = {"iclab.seconds": run["env"]["seconds"]}
    for c in run["summary"]["claims"]:
        ours = c["ours"]
        metrics[tracker_name(c["name"])] = ours["value"]
        if ours["lo"] is not None:
            metrics[tracker_name(c["name"]) + ".lo"], metrics[tracker_name(c["name"]) + ".hi"] = ours["lo"], ours["hi"]
    for f in (path / "data").glob("*.json"):
        for k, v in json.loads(f.read_text()).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                metrics[f"{f.stem}.{k}"] = v
    frame = claims(path.parent.name, path.parent.parent)
    verdicts = {tracker_name(n): v for n, v in frame[frame.run == path.name][["name", "verdict"]].values}
    return params, metrics, verdicts


def test_tracker_names_are_names_mlflow_accepts():
    tracker("mlflow")
    from mlflow.utils.validation import _validate_metric_name, _validate_param_name, _validate_tag_name

    assert tracker_name(ODD_CLAIM) == "KL_p _ q_ at n _ 1: a - b"
    assert tracker_name("mean") == "mean" and tracker_name("a/b: c.d") == "a/b: c.d"
    assert tracker_name("role: probe − random-init model's probe, d96-L3") == "role: probe - random-init models probe d96-L3"
    real = ["KL(ideal ‖ model) over answers with n ≥ 1: d32-L1 − d192-L4", "f∘g∘h: accuracy at n = 16, d96-L3",
            "(FV zero-shot - zero-shot) / (ICL - zero-shot)", "rank correlation of D[τ] with cumulative answer loss",
            "idealised predictor: worst task's cumulative loss − (D[τ] + R_16)", "max |x · residual|"]  # real claims
    for name in [*real, ODD_CLAIM, "/lead", "trail/", "a//b", "../x", "./y", "x/../y", "..", "", "‖≥∘", "x" * 999]:
        out = tracker_name(name)
        for key in (out, f"{out}.lo", f"iclab.verdict.{out}"):
            assert len(key) <= 250, key  # MLflow's longest name
            for validate in (_validate_metric_name, _validate_param_name, _validate_tag_name):
                validate(key)


def test_mlflow_round_trip(runs, mlflow_server, tmp_path, in_process):
    """Through the `iclab` script, then again in process (the trackers' warnings are errors here)."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    proc = iclab("export", "mlflow", "--tracking-uri", mlflow_server, "--runs-dir", str(runs), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("3 runs: 3 exported, 0 updated, 0 unchanged"), proc.stdout
    assert all(ln.split()[0] == "exported" and f"{mlflow_server}/#/experiments/" in ln for ln in lines[:3])

    client = MlflowClient(tracking_uri=mlflow_server)
    for run in finished_runs(runs):
        path = Path(run["path"])
        name = f"{path.parent.name}/{path.name}"
        exp = client.get_experiment_by_name(path.parent.name)
        (found,) = client.search_runs([exp.experiment_id], f"tags.`iclab.run_id` = '{name}'")
        assert found.info.run_name == name and found.info.status == "FINISHED"
        params, metrics, verdicts = expected(run)
        assert found.data.params == params
        assert found.data.metrics == pytest.approx(metrics)
        tags = found.data.tags
        assert {k.removeprefix("iclab.verdict."): v for k, v in tags.items()
                if k.startswith("iclab.verdict.")} == verdicts
        assert (tags["iclab.experiment"], tags["iclab.config_hash"], tags["iclab.preset"], tags["iclab.version"]) == (
            path.parent.name, path.name, run["meta"]["preset"] or "none", run["env"]["iclab"])
        (tmp_path / name).mkdir(parents=True)
        got = Path(client.download_artifacts(found.info.run_id, "", str(tmp_path / name)))  # all of them
        files = sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file())
        figures = sorted(p.relative_to(path).as_posix() for p in (path / "figures").glob("*"))
        assert files == sorted([*figures, "config.json", "report.html", "summary.json"])
        for rel in files:
            assert (got / rel).read_bytes() == (path / rel).read_bytes(), rel
    assert all(sorted(p.suffix for p in (Path(r["path"]) / "figures").glob("*")) == [".png", ".svg"]
               for r in finished_runs(runs, "test.toy"))  # so both kinds of figure were compared above
    (odd,) = client.search_runs([client.get_experiment_by_name("test.odd").experiment_id],
                                f"tags.`iclab.config_hash` = '{OddConfig().hash()}'")
    assert odd.data.params["Ns"] == "[1, 2]" and odd.data.params["opt.lr"] == "0.1"
    assert odd.data.metrics["KL_p _ q_ at n _ 1: a - b"] == 0.25 and odd.data.metrics["timing.tokens"] == 7
    assert "timing.ok" not in odd.data.metrics and "timing.label" not in odd.data.metrics

    again = in_process("export", "mlflow", "--tracking-uri", mlflow_server, "--runs-dir", str(runs))
    assert again.returncode == 0 and "3 runs: 0 exported, 0 updated, 3 unchanged" in again.stdout, again.stdout
    for run in finished_runs(runs):  # no duplicates
        path = Path(run["path"])
        exp = client.get_experiment_by_name(path.parent.name)
        assert len(client.search_runs([exp.experiment_id], f"tags.`iclab.run_id` = '{path.parent.name}/{path.name}'",
                                      run_view_type=ViewType.ALL)) == 1


def test_mlflow_updates_a_changed_run_and_replaces_a_half_export(mlflow_server, tmp_path):
    """In process: a run rerun with --force is updated in place, a tracker run left unfinished by a killed export
    is replaced, and only the experiment asked for is exported. Seeds of its own: the other test's runs are apart."""
    from mlflow import MlflowClient

    store = tmp_path / "runs"
    assert [r.status for r in sweep("test.toy", {"seed": [7, 8]}, store, preset="quick", executor=SerialExecutor())] \
        == ["done"] * 2
    assert execute(ODD, OddConfig(Ns=[3]), store, quiet=True).status == "done"
    assert [r.status for r in export_mlflow(store, mlflow_server, "test.toy")] == ["exported"] * 2
    cfg = toy.make_config("quick", {"seed": 8})
    old = json.loads((store / "test.toy" / cfg.hash() / "env.json").read_text())["started"]
    time.sleep(1.1)  # a new start time, so a new DONE manifest
    assert execute(toy, cfg, store, preset="quick", force=True, quiet=True).status == "done"
    client = MlflowClient(tracking_uri=mlflow_server)
    eid = client.get_experiment_by_name("test.toy").experiment_id
    seed7 = f"test.toy/{toy.make_config('quick', {'seed': 7}).hash()}"
    (first,) = client.search_runs([eid], f"tags.`iclab.run_id` = '{seed7}'")
    client.update_run(first.info.run_id, status="RUNNING")  # as if an export had died half-way through it

    seen = []
    results = export_mlflow(store, mlflow_server, experiment="test.toy", on_result=seen.append)
    assert results == seen and len(results) == 2
    assert {r.run: r.status for r in results} == {seed7: "exported", f"test.toy/{cfg.hash()}": "updated"}
    for name in (seed7, f"test.toy/{cfg.hash()}"):  # the unfinished one deleted, none duplicated
        assert len(client.search_runs([eid], f"tags.`iclab.run_id` = '{name}'")) == 1
    odd = client.get_experiment_by_name("test.odd")  # not asked for: not exported
    assert odd is None or not client.search_runs([odd.experiment_id], f"tags.`iclab.config_hash` = "
                                                 f"'{OddConfig(Ns=[3]).hash()}'")
    (updated,) = client.search_runs([eid], f"tags.`iclab.run_id` = 'test.toy/{cfg.hash()}'")
    new = json.loads((store / "test.toy" / cfg.hash() / "env.json").read_text())
    assert updated.data.tags["iclab.started"] == new["started"] != old
    assert updated.data.metrics["iclab.seconds"] == pytest.approx(new["seconds"]) and updated.info.status == "FINISHED"
    assert [r.status for r in export_mlflow(store, mlflow_server, "test.toy")] == ["unchanged", "unchanged"]


def wandb_records(path: Path):
    """The records of an offline W&B run file (`run-<id>.wandb`), in W&B's own protobuf messages: after a
    7-byte header (':W&B', magic, version), LevelDB's log format (32 KiB blocks; chunks with a 7-byte header:
    crc32c, length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if left < 7 or kind == 0:  # a block's zero-filled tail
            pos += left
            continue
        assert kind in (1, 2, 3, 4), kind
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def read_offline_run(run_dir: Path) -> dict:
    """An offline W&B run as W&B would upload it: name, group, tags, config, summary and saved files."""
    (wandb_file,) = run_dir.glob("run-*.wandb")
    out = {"config": {}, "summary": {}, "files": set(), "exit": None}
    for rec in wandb_records(wandb_file):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(id=rec.run.run_id, name=rec.run.display_name, group=rec.run.run_group, tags=list(rec.run.tags),
                       project=rec.run.project, notes=rec.run.notes)
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "summary":
            for item in rec.summary.update:
                keys = [item.key] if item.key else list(item.nested_key)  # a logged image: nested fields
                target = out["summary"]
                for key in keys[:-1]:
                    target = target.setdefault(key, {})
                target[keys[-1]] = json.loads(item.value_json)
        elif kind == "files":
            out["files"] |= {f.path for f in rec.files.files}
        elif kind == "exit":
            out["exit"] = rec.exit.exit_code
    return out


def test_wandb_offline_round_trip(runs, tmp_path, in_process):
    """Through the CLI in process (W&B's warnings are errors here), read back from the offline run files."""
    tracker("wandb")
    out = tmp_path / "wb"
    proc = in_process("export", "wandb", "--dir", str(out), "--runs-dir", str(runs), "--project", "iclab-test")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("3 runs: 3 exported, 0 updated, 0 unchanged"), proc.stdout
    offline = sorted((out / "wandb").glob("offline-run-*"))
    assert len(offline) == 3
    for run in finished_runs(runs):
        path = Path(run["path"])
        name = f"{path.parent.name}/{path.name}"
        (run_dir,) = [d for d in offline if d.name.endswith(f"-{wandb_id(name)}")]
        assert f"exported {name} -> {run_dir}" in " ".join(proc.stdout.split())
        got = read_offline_run(run_dir)
        assert (got["id"], got["name"], got["group"], got["project"], got["exit"]) == (
            wandb_id(name), name, path.parent.name, "iclab-test", 0)
        params, metrics, verdicts = expected(run)
        config = {k: v for k, v in got["config"].items() if k not in ("_wandb", "iclab")}
        assert {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()} == params
        numbers = {k: v for k, v in got["summary"].items() if not k.startswith(("_", "figures/"))}
        assert numbers == pytest.approx(metrics)
        meta = got["config"]["iclab"]
        assert (meta["run_id"], meta["experiment"], meta["config_hash"], meta["version"]) == (
            name, path.parent.name, path.name, run["env"]["iclab"])
        assert {k.removeprefix("verdict."): v for k, v in meta.items() if k.startswith("verdict.")} == verdicts
        assert {path.parent.name, path.name, *verdicts.values()} <= set(got["tags"])
        figures = sorted(p.relative_to(path).as_posix() for p in (path / "figures").glob("*"))
        for rel in figures + ["report.html", "summary.json", "config.json"]:
            assert f"iclab/{rel}" in got["files"], rel
            assert (run_dir / "files" / "iclab" / rel).read_bytes() == (path / rel).read_bytes(), rel
        captions = {f: fig["caption"] for fig in run["summary"]["figures"] for f in fig["files"]}
        images = {k: v for k, v in got["summary"].items() if k.startswith("figures/")}  # the PNGs, as W&B images
        assert sorted(images) == [f"figures/{Path(f).stem}" for f in figures if f.endswith(".png")]
        for key, image in images.items():
            assert image["_type"] == "image-file" and image["caption"] == captions[f"{key}.png"]
            assert (run_dir / "files" / image["path"]).read_bytes() == (path / f"{key}.png").read_bytes()

    # again: nothing duplicated; a changed run is written again
    assert [r.status for r in export_wandb(runs, out, project="iclab-test")] == ["unchanged"] * 3
    store = tmp_path / "runs"
    shutil.copytree(runs, store)
    cfg = toy.make_config("quick", {"seed": 0})
    time.sleep(1.1)
    assert execute(toy, cfg, store, preset="quick", force=True, quiet=True).status == "done"
    results = export_wandb(store, out, "test.toy", project="iclab-test")
    assert sorted(r.status for r in results) == ["unchanged", "updated"]
    (rewritten,) = (out / "wandb").glob(f"offline-run-*-{wandb_id(f'test.toy/{cfg.hash()}')}")
    new = json.loads((store / "test.toy" / cfg.hash() / "env.json").read_text())
    assert read_offline_run(rewritten)["config"]["iclab"]["started"] == new["started"]
    assert len(list((out / "wandb").glob("offline-run-*"))) == 3  # the superseded offline run is gone


def test_nothing_to_export_is_a_one_line_error(tmp_path, runs, in_process):
    tracker("mlflow")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert_one_line_error(in_process("export", "mlflow", "--tracking-uri", dead, "--runs-dir", "nowhere"),
                          "no finished runs in nowhere/", "iclab run")
    assert_one_line_error(in_process("export", "wandb", "--dir", "wb", "--runs-dir", str(runs), "-e", "test.nope"),
                          "unknown experiment 'test.nope'", "iclab list")
    t0 = time.monotonic()
    assert_one_line_error(in_process("export", "mlflow", "--tracking-uri", dead, "--runs-dir", str(runs)),
                          "cannot reach the MLflow tracking server", dead, "--tracking-uri")
    assert time.monotonic() - t0 < 30  # at once, not after MLflow's minutes of retries
    assert not (tmp_path / "wb").exists()
    with pytest.raises(IclabError, match="no finished runs of spinglass.fig2"):
        export_wandb(runs, tmp_path / "wb", "spinglass.fig2")
    with pytest.raises(IclabError, match="offline only"):
        export_wandb(runs, tmp_path / "wb", mode="online")
    with pytest.raises(IclabError, match="may not be empty or contain"):
        export_wandb(runs, tmp_path / "wb", project="me/iclab")
    assert not (tmp_path / "wb").exists()


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_missing_tracker_names_the_extra_to_install(name, runs, in_process, monkeypatch):
    monkeypatch.setitem(sys.modules, name, None)  # `import mlflow` now fails, as if it were not installed
    args = ["--tracking-uri", "http://127.0.0.1:9"] if name == "mlflow" else ["--dir", "wb"]
    proc = in_process("export", name, *args, "--runs-dir", str(runs))
    assert_one_line_error(proc, f"{name} is not installed", f'pip install -e ".[{name}]"')
    assert "exported" not in proc.stdout


def test_export_help(in_process):
    proc = in_process("export", "--help")
    assert proc.returncode == 0 and "mlflow" in proc.stdout and "wandb" in proc.stdout
    for cmd, option in (("mlflow", "--tracking-uri"), ("wandb", "--dir")):
        proc = in_process("export", cmd, "--help")
        assert proc.returncode == 0 and option in proc.stdout and "--experiment" in proc.stdout
