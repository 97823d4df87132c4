"""The Ray sweep backend on a real local Ray cluster (2 CPUs, started and stopped by these tests).

Faults are real: a worker process is SIGKILLed mid-run, a run directory is truncated or corrupted,
a sweep gets Ctrl-C. Every check compares against the local backend or the run store on disk.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# Ray reads its auth settings when imported: a private token for this module's cluster, set first.
CLUSTER_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_USAGE_STATS_ENABLED": "0",
               "PYTHONPATH": str(ROOT), "ICLAB_EXPERIMENTS": "tests.runtime.toy"}  # env the workers inherit
os.environ.update(CLUSTER_ENV)

from tests.conftest import free_port, optional, processes, ray_on_this_machine  # noqa: E402

optional("ray", extra="ray")

from iclab.runtime._ray_backend import RayExecutor  # noqa: E402
from iclab.runtime._store import finished_runs, is_complete, result_files  # noqa: E402
from iclab.runtime._executors import LocalExecutor  # noqa: E402
from iclab.runtime._sweep import sweep  # noqa: E402

RAY = Path(sys.executable).with_name("ray")


def _kill_processes_mentioning(text: str) -> None:
    for pid, _, _, cmdline in processes():
        if text in cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU Ray cluster on this machine, reached over loopback, with a private token and temp dir
    (while it runs, no docs page may `ray stop` the machine's Ray)."""
    with ray_on_this_machine("shared"):
        temp = tempfile.mkdtemp(prefix="iclab-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        port = free_port()
        proc = subprocess.run([str(RAY), "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
                               "--include-dashboard=false", "--disable-usage-stats",
                               "--object-store-memory=200000000", f"--temp-dir={temp}"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        try:
            yield f"127.0.0.1:{port}"
        finally:
            _kill_processes_mentioning(temp)
            shutil.rmtree(temp, ignore_errors=True)


def test_grid_matches_local_backend_exactly(cluster, tmp_path):
    grid = {"seed": [0, 1]}  # two real training runs (Adam, AMP) per backend
    local = sweep("spinglass.fig2", grid, tmp_path / "local", preset="quick", executor=LocalExecutor(2))
    on_ray = sweep("spinglass.fig2", grid, tmp_path / "ray", preset="quick", executor=RayExecutor(address=cluster))
    assert sorted(r.status for r in local) == sorted(r.status for r in on_ray) == ["done"] * 2
    assert sorted(r.config_hash for r in local) == sorted(r.config_hash for r in on_ray)
    a, b = result_files(tmp_path / "local"), result_files(tmp_path / "ray")
    assert len(a) > 2 * 5 and a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_sweep_started_locally_finishes_on_ray(cluster, tmp_path):
    sweep("test.toy", {"seed": [0, 1]}, tmp_path, executor=LocalExecutor(2))
    results = sweep("test.toy", {"seed": [0, 1, 2, 3]}, tmp_path, executor=RayExecutor(address=cluster))
    assert sorted(r.status for r in results) == ["done", "done", "skipped", "skipped"]
    assert len(finished_runs(tmp_path, "test.toy")) == 4


def test_worker_killed_mid_run_is_retried(cluster, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    killed: list[str] = []

    def kill_first_attempt() -> None:  # SIGKILL the worker running the first point to start
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for f in pids.iterdir():
                os.kill(int(f.name.split("-")[1]), signal.SIGKILL)
                killed.append(f.name)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_attempt)
    killer.start()
    results = sweep("test.toy", {"seed": [0, 1, 2, 3]}, tmp_path / "runs",
                    base={"sleep": 2.0, "pid_dir": str(pids)}, executor=RayExecutor(address=cluster, max_retries=2))
    killer.join()
    assert len(killed) == 1
    seed = killed[0].split("-")[0]
    assert sorted(r.status for r in results) == ["done"] * 4
    attempts = sorted(f.name for f in pids.iterdir() if f.name.startswith(f"{seed}-"))
    assert len(attempts) == 2 and killed[0] in attempts  # killed once, retried once
    runs = finished_runs(tmp_path / "runs", "test.toy")
    assert len(runs) == 4 and all(is_complete(Path(r["path"]), verify=True) for r in runs)
    # the killed attempt's scratch directory never counted, and its retry on this host removed it
    assert sorted(p.name.startswith(".") for p in (tmp_path / "runs" / "test.toy").iterdir()) == [False] * 4


def test_worker_that_keeps_dying_is_reported_failed_after_bounded_retries(cluster, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    results = sweep("test.toy", {"die": [False, True]}, tmp_path / "runs", base={"pid_dir": str(pids)},
                    executor=RayExecutor(address=cluster, max_retries=1))
    by_status = {r.status: r for r in results}
    assert sorted(by_status) == ["done", "failed"]
    assert "WorkerCrashedError" in by_status["failed"].error and "1 retries" in by_status["failed"].error
    assert len(list(pids.iterdir())) == 1 + 2  # the good point once, the dying one 1 + max_retries times
    assert len(finished_runs(tmp_path / "runs", "test.toy")) == 1


def test_corrupted_or_partial_run_directories_are_redone(cluster, tmp_path):
    runs = tmp_path / "runs"
    grid = {"seed": [0, 1, 2, 3]}
    first = sweep("test.toy", grid, runs, executor=RayExecutor(address=cluster))
    before = result_files(runs)
    paths = sorted(Path(r.path) for r in first)
    (paths[0] / "DONE").unlink()  # partial: never sealed
    table = paths[1] / "tables" / "metrics.csv"
    table.write_text(table.read_text()[:10])  # truncated
    png = paths[2] / "figures" / "draws.png"
    data = bytearray(png.read_bytes())
    data[len(data) // 2] ^= 0xFF
    png.write_bytes(bytes(data))  # same size, flipped byte: only the hash shows it
    again = sweep("test.toy", grid, runs, executor=RayExecutor(address=cluster))
    status = {Path(r.path): r.status for r in again}
    assert [status[p] for p in paths] == ["done", "done", "done", "skipped"]
    assert result_files(runs) == before


def _wait_for(cond, timeout: float) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_ctrl_c_stops_the_sweep_cleanly_and_a_rerun_resumes(cluster, tmp_path):
    cmd = [sys.executable, "-m", "iclab", "sweep", "test.toy", "--grid", "seed=0,1,2,3,4,5", "--set", "sleep=1.5",
           "--backend", "ray", "--address", cluster, "--runs-dir", str(tmp_path / "runs")]
    # Ctrl-C as in a terminal; the default SIGINT disposition, which a test worker's own process may ignore
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(lambda: len(finished_runs(tmp_path / "runs", "test.toy")) >= 1, 120)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted; rerun the same command to resume" in err
    done = len(finished_runs(tmp_path / "runs", "test.toy"))
    assert 1 <= done < 6
    for p in (tmp_path / "runs" / "test.toy").iterdir():  # nothing half-written is visible
        assert p.name.startswith(".") or is_complete(p, verify=True)
    rerun = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"6 points: 6 finished ({done} already done), 0 failed" in rerun.stdout


def ray_sweep(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`iclab sweep test.toy --backend ray ARGS...`, run as a user would, in tmp_path."""
    cmd = [sys.executable, "-m", "iclab", "sweep", "test.toy", "--backend", "ray", *args]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def test_cli_sweep_on_ray_prints_summary_and_results_land_in_store(cluster, tmp_path):
    proc = ray_sweep(tmp_path, "--grid", "seed=0,1", "--address", cluster, "--cpus", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 points: 2 finished (0 already done), 0 failed" in proc.stdout
    runs = finished_runs(tmp_path / "runs", "test.toy")
    assert len(runs) == 2 and all(r["meta"]["config"]["cpus"] == 2 for r in runs)


@pytest.mark.parametrize("args, message", [
    (["--address", "127.0.0.1:1"], "no Ray cluster answers at --address 127.0.0.1:1"),
    (["--address", "nonsense"], "bad --address 'nonsense'"),
    (["--backend", "local", "--address", "auto"], "--address is for the ray backend"),
    (["--max-retries", "-1"], "--max-retries must be 0 or more"),
])
def test_cli_bad_ray_options_give_one_line_errors(tmp_path, in_process, args, message):
    """(No cluster needed: each fails before Ray starts.)"""
    proc = in_process("sweep", "test.toy", "--backend", "ray", "--grid", "seed=0", *args)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "runs" / "test.toy").exists() or not any((tmp_path / "runs" / "test.toy").iterdir())


def test_run_bigger_than_the_cluster_is_a_one_line_error_not_a_hang(cluster, tmp_path):
    proc = ray_sweep(tmp_path, "--grid", "seed=0", "--address", cluster, "--cpus", "3")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "a run asks for cpus=3 but the Ray cluster has 2 CPUs in all" in proc.stderr


def test_resources_are_not_part_of_a_runs_identity():
    from iclab.runtime._experiment import get_experiment

    exp = get_experiment("test.toy")
    assert exp.make_config("quick", {"cpus": 4, "gpus": 1}).hash() == exp.make_config("quick").hash()
    assert json.loads(json.dumps(exp.make_config("quick", {"cpus": 4}).model_dump()))["cpus"] == 4
