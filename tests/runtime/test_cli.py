"""The command line, as a user runs it: one-line errors, runs, sweeps."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import processes

ROOT = Path(__file__).parents[2]


def iclab(*args, tmp_path):
    env = {**os.environ, "ICLAB_EXPERIMENTS": "tests.runtime.toy", "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "iclab", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


def test_help_on_every_command(tmp_path, capsys, monkeypatch):
    """`iclab CMD --help` through the console script's `main`, in this process (one subprocess shows the
    script itself works: the other tests here)."""
    from iclab.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    for cmd in ["list", "show", "run", "sweep", "reproduce", "redraw", "tasks", "models", "doctor", "profile"]:
        monkeypatch.setattr(sys, "argv", ["iclab", cmd, "--help"])
        try:
            main()
        except SystemExit as done:
            assert not done.code, (cmd, done.code)
        assert "Usage" in capsys.readouterr().out, cmd


def test_unknown_experiment(in_process):
    assert_one_line_error(in_process("run", "spinglass.nope"), "unknown experiment", "iclab list")


def test_bad_value_names_the_field(tmp_path, in_process):
    assert_one_line_error(in_process("run", "test.toy", "--set", "n=-3"), "field 'n'")
    assert_one_line_error(in_process("run", "test.toy", "--set", "bogus=1"), "'bogus'", "unknown field")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("DONE"))


def test_yaml_config_file(tmp_path, in_process):
    (tmp_path / "c.yaml").write_text("n: 4\nscale: 2.5\n")
    proc = in_process("run", "test.toy", "--config", "c.yaml", "-q")
    assert proc.returncode == 0, proc.stderr
    assert_one_line_error(in_process("run", "test.toy", "--config", "missing.yaml"), "does not exist")
    (tmp_path / "bad.yaml").write_text("n: [1,\n")
    assert_one_line_error(in_process("run", "test.toy", "--config", "bad.yaml"), "not valid YAML")


def test_unwritable_runs_dir(tmp_path, in_process):
    (tmp_path / "afile").write_text("")
    assert_one_line_error(in_process("run", "test.toy", "--runs-dir", "afile/runs"), "not writable")


def test_run_then_skip_then_sweep(tmp_path, in_process):
    first = in_process("run", "test.toy", "-q")
    assert first.returncode == 0 and "done" in first.stdout
    again = in_process("run", "test.toy", "-q")
    assert "skipped" in again.stdout
    sw = in_process("sweep", "test.toy", "--grid", "seed=0,1", "--backend", "serial")
    assert sw.returncode == 0 and "2 points: 2 finished" in sw.stdout
    assert_one_line_error(in_process("sweep", "test.toy", "--grid", "seed=0", "--backend", "slurmx"),
                          "unknown sweep backend")


def test_bad_input_on_a_real_experiment(tmp_path, in_process):
    """The issue's list: unknown name, negative D, P = 0 -- one line each, nothing written."""
    assert_one_line_error(in_process("run", "spinglass.fig4"), "unknown experiment")
    assert_one_line_error(in_process("run", "spinglass.fig4b", "--set", "D=-3"), "field 'D'")
    assert_one_line_error(in_process("run", "spinglass.fig4b", "--set", "P_train=0"), "field 'P_train'")
    assert_one_line_error(in_process("run", "spinglass.fig1", "--set", "P=0"), "field 'P'")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))


def test_config_fields_as_options(tmp_path, in_process):
    import json

    proc = in_process("run", "test.toy", "-q", "--n", "4", "--scale=2.5")
    assert proc.returncode == 0, proc.stderr
    (config,) = (tmp_path / "runs" / "test.toy").glob("*/config.json")
    values = json.loads(config.read_text())["config"]
    assert values["n"] == 4 and values["scale"] == 2.5
    assert_one_line_error(in_process("run", "test.toy", "--n"), "--n needs a value")
    assert_one_line_error(in_process("run", "test.toy", "stray"), "unexpected argument 'stray'")


def test_task_vector_bad_input_fails_before_loading_anything(tmp_path, in_process):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ')
    run = ("run", "taskvectors.main")
    assert_one_line_error(in_process(*run, "--model", "gpt-17"), "field 'model'", "not a bundled model")
    assert_one_line_error(in_process(*run, "--tasks", "knowledge_person_language"), "field 'tasks'",
                          "knowledge_person_sport")
    assert_one_line_error(in_process(*run, "--tasks", "to_uper"), "field 'tasks'", "unknown task")
    assert_one_line_error(in_process(*run, "--tasks", str(bad)), "field 'tasks'", "invalid JSON")
    assert_one_line_error(in_process(*run, "--template", "chat"), "field 'template'")
    assert_one_line_error(in_process(*run, "--device", "tpu"), "field 'device'", "is not known")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))


def test_tasks_and_models_listings(tmp_path):
    """Through the script: its tables are as wide as COLUMNS says (the in-process console was sized at import)."""
    tasks = iclab("tasks", tmp_path=tmp_path)
    assert tasks.returncode == 0 and "algorithmic_list_last" in tasks.stdout and "substitute" in tasks.stdout
    models = iclab("models", tmp_path=tmp_path)
    assert models.returncode == 0 and "smollm2-135m" in models.stdout and "gemma3-270m" in models.stdout


def test_failed_run_and_failed_sweep_exit_nonzero(tmp_path):
    """typer returns (not raises) a command's exit code in non-standalone mode: it must still reach the shell."""
    run = iclab("run", "test.toy", "--set", "fail=true", "-q", tmp_path=tmp_path)
    assert run.returncode == 1 and "RuntimeError: boom" in run.stderr
    sw = iclab("sweep", "test.toy", "--grid", "fail=false,true", "--backend", "serial", tmp_path=tmp_path)
    assert sw.returncode == 1 and "2 points: 1 finished (0 already done), 1 failed" in sw.stdout


def test_reproduce_runs_lines_side_by_side(tmp_path):
    """Two research lines in two lanes (one a child process); the parent counts both and builds the site."""
    from iclab.runtime._reproduce import lanes

    assert lanes(["spinglass.fig2", "spinglass.fig1", "taskvectors.main", "grammar.icl"], 2) == [
        ["grammar.icl"], ["taskvectors.main", "spinglass.fig2", "spinglass.fig1"]]  # by quick_minutes: 17 | 8 + 5
    # grammar.theory trains models of its own world: a lane of its own, onto the lighter side
    assert lanes(["grammar.icl", "grammar.theory", "taskvectors.main", "spinglass.fig2"], 2) == [
        ["grammar.icl"], ["taskvectors.main", "spinglass.fig2", "grammar.theory"]]
    assert lanes(["spinglass.fig2", "test.toy"], 1) == [["spinglass.fig2", "test.toy"]]
    from iclab.runtime._reproduce import selected

    assert "taskvectors.profile" not in selected(None)  # a tool, not a reproduction
    assert "taskvectors.function_vectors" in selected(None) and selected("taskvectors.pro") == ["taskvectors.profile"]
    proc = iclab("reproduce", "--only", "test.,spinglass.fig2", "--jobs", "2", "-q", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 experiments: 2 finished, 0 failed" in proc.stdout
    assert "test.toy" in proc.stdout and "spinglass.fig2" in proc.stdout
    assert (tmp_path / "runs" / "site" / "index.html").is_file()
    assert not list((tmp_path / "runs").glob(".lane-*"))  # the lanes' result files are cleaned up


@pytest.mark.parametrize("args, fragment", [
    (["bogus"], "No such command 'bogus'; see `iclab --help`"),
    (["show", "spinglass.fig2", "--bogus"], "No such option: --bogus; see `iclab show --help`"),
    (["run"], "Missing argument 'name'; see `iclab run --help`"),
    (["run", "spinglass.fig2", "--set"], "Option '--set' requires an argument"),
    (["redraw", "somewhere", "-q"], "No such option: -q; see `iclab redraw --help`"),
])
def test_usage_mistakes_are_one_line_errors(in_process, args, fragment):
    assert_one_line_error(in_process(*args), "error:", fragment)


def test_version(in_process):
    from iclab import __version__

    proc = in_process("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"iclab {__version__}"


def test_shell_completion_of_commands_experiments_and_models(tmp_path):
    """What `iclab --install-completion` wires into the shell: the script, then the words it offers."""
    script = iclab("--show-completion", "bash", tmp_path=tmp_path)
    assert script.returncode == 0 and "complete -o default -F _iclab_completion iclab" in script.stdout

    def offered(words, cword):
        env = {"_ICLAB_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        proc = subprocess.run([sys.executable, "-m", "iclab"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert offered("iclab re", 1) == ["reproduce", "results", "report", "redraw"]
    assert offered("iclab run spinglass.fig4", 2) == ["spinglass.fig4a", "spinglass.fig4b"]
    assert offered("iclab doctor smol", 2) == ["smollm2-135m"]


def _alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (zombies count as ended)."""
    return {pid for pid, _, state, _ in processes() if pid in pids and state != "Z"}


def _children(pid: int) -> set[int]:
    """Live processes whose parent is `pid` (zombies excluded)."""
    return {child for child, parent, state, _ in processes() if parent == pid and state != "Z"}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
def test_kill_ends_the_sweeps_workers_too(tmp_path):
    """`kill` (SIGTERM) on `iclab sweep` ends its worker processes instead of leaving them running."""
    import signal
    import time

    env = {**os.environ, "ICLAB_EXPERIMENTS": "tests.runtime.toy", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "iclab", "sweep", "test.toy", "--grid", "seed=0,1", "--set",
                             "sleep=600", "--workers", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:  # the two workers (+ a tracker)
            time.sleep(0.5)
        workers = _children(proc.pid)
        assert len(workers) >= 2 and proc.poll() is None, "the sweep's workers did not start"
        time.sleep(3)  # let them pick up their runs
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)  # orphaned workers would hold its pipes open: a timeout
    finally:
        proc.kill()
        for pid in _alive(_children(proc.pid) | locals().get("workers", set())):
            with contextlib.suppress(ProcessLookupError):  # it may end meanwhile
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "interrupted; rerun the same command to resume" in err
    deadline = time.monotonic() + 30
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    alive = sorted(_alive(workers))
    assert not alive, f"workers still running after the sweep was killed: {alive}"
    assert not list((tmp_path / "runs").glob("test.toy/*/DONE"))  # no run finished, none pretends to
