import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iclab.runtime import IclabError, SerialExecutor, execute, finished_runs, get_experiment, sweep
from iclab.runtime._config import parse_overrides
from iclab.runtime._store import is_complete
from iclab.runtime._executors import LocalExecutor
from iclab.runtime._sweep import expand_grid, parse_grid

os.environ["ICLAB_EXPERIMENTS"] = "tests.runtime.toy"  # also seen by spawned workers


def toy():
    return get_experiment("test.toy")


def test_presets_and_overrides_validate():
    cfg = toy().make_config("quick", {"scale": 2})
    assert (cfg.n, cfg.scale) == (3, 2.0)
    with pytest.raises(IclabError, match="field 'n'.*greater than 0"):
        toy().make_config("quick", {"n": -1})
    with pytest.raises(IclabError, match="field 'colour': unknown field"):
        toy().make_config("quick", {"colour": "red"})
    with pytest.raises(IclabError, match="no preset 'huge'"):
        toy().make_config("huge")


def test_error_messages_are_one_line():
    with pytest.raises(IclabError) as e:
        toy().make_config(None, {"n": "many"})
    assert "\n" not in str(e.value)


def test_parse_overrides_types():
    assert parse_overrides(["n=10", "lr=1e-3", "Ns=[20, 40]", "flag=true"]) == {
        "n": 10, "lr": 1e-3, "Ns": [20, 40], "flag": True}
    with pytest.raises(IclabError):
        parse_overrides(["oops"])


def test_hash_depends_on_config_only():
    a, b = toy().make_config("quick"), toy().make_config(None, {"n": 3})
    assert a.hash() == b.hash()
    assert a.hash() != toy().make_config("quick", {"seed": 1}).hash()


def test_run_writes_everything_and_skips_rerun(tmp_path):
    cfg = toy().make_config("quick")
    res = execute(toy(), cfg, tmp_path, preset="quick", quiet=True)
    assert res.status == "done"
    path = Path(res.path)
    assert path == tmp_path / "test.toy" / cfg.hash()
    for f in ["config.json", "env.json", "summary.json", "report.html", "DONE", "tables/metrics.csv",
              "figures/draws.png", "figures/draws.svg"]:
        assert (path / f).is_file(), f
    assert json.loads((path / "config.json").read_text())["config"]["n"] == 3
    html = (path / "report.html").read_text()
    assert "data:image/png;base64," in html and "about 0" in html
    assert execute(toy(), cfg, tmp_path, quiet=True).status == "skipped"
    assert execute(toy(), cfg, tmp_path, quiet=True, force=True).status == "done"
    assert [p.name for p in (tmp_path / "test.toy").iterdir()] == [cfg.hash()]


def test_failed_run_leaves_nothing(tmp_path):
    res = execute(toy(), toy().make_config("quick", {"fail": True}), tmp_path, quiet=True)
    assert res.status == "failed" and "boom" in res.error
    assert list((tmp_path / "test.toy").iterdir()) == []


def test_partial_run_dir_is_redone(tmp_path):
    cfg = toy().make_config("quick")
    partial = tmp_path / "test.toy" / cfg.hash()
    (partial / "tables").mkdir(parents=True)
    (partial / "summary.json").write_text("{trunc")
    assert not is_complete(partial)
    assert execute(toy(), cfg, tmp_path, quiet=True).status == "done"
    assert is_complete(partial)


def test_corrupted_run_is_redone_and_legacy_done_marker_is_not_trusted(tmp_path):
    cfg = toy().make_config("quick")
    run = Path(execute(toy(), cfg, tmp_path, quiet=True).path)
    table = run / "tables" / "metrics.csv"
    good = table.read_bytes()
    table.write_bytes(good[:-1] + (b"0" if good[-1:] != b"0" else b"1"))  # same size, other content
    assert is_complete(run) and not is_complete(run, verify=True)
    assert execute(toy(), cfg, tmp_path, quiet=True).status == "done" and table.read_bytes() == good
    (run / "DONE").write_text("2026-11-01T00:00:00+00:00\n")  # a bare timestamp proves nothing
    assert not is_complete(run)


def test_abandoned_attempts_of_dead_processes_on_this_host_are_removed(tmp_path):
    import socket

    cfg = toy().make_config("quick")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host, parent = socket.gethostname(), tmp_path / "test.toy"
    names = {"dead": f".tmp-{cfg.hash()}-{dead.stdout.strip()}@{host}-x1", "alive": f".tmp-{cfg.hash()}-{os.getpid()}@{host}-x2",
             "elsewhere": f".tmp-{cfg.hash()}-{dead.stdout.strip()}@not-{host}-x3"}
    for name in names.values():
        (parent / name).mkdir(parents=True)
    assert execute(toy(), cfg, tmp_path, quiet=True).status == "done"
    assert sorted(p.name for p in parent.iterdir() if p.name.startswith(".")) == sorted([names["alive"], names["elsewhere"]])


def test_unwritable_runs_dir_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(IclabError, match="not writable"):
        execute(toy(), toy().make_config("quick"), f, quiet=True)


def test_grid_parsing():
    assert parse_grid(["n=1,2", "scale=[0.5, 2]"]) == {"n": [1, 2], "scale": [0.5, 2]}
    assert len(expand_grid({"a": [1, 2], "b": [3, 4, 5]})) == 6
    with pytest.raises(IclabError):
        parse_grid(["n="])


def test_sweep_serial_and_resume(tmp_path):
    grid = {"n": [2, 3], "seed": [0, 1]}
    first = sweep("test.toy", grid, tmp_path, executor=SerialExecutor())
    assert sorted(r.status for r in first) == ["done"] * 4
    again = sweep("test.toy", grid, tmp_path, executor=SerialExecutor())
    assert [r.status for r in again] == ["skipped"] * 4
    assert len(finished_runs(tmp_path, "test.toy")) == 4


def test_sweep_validates_before_running(tmp_path):
    with pytest.raises(IclabError, match="field 'n'"):
        sweep("test.toy", {"n": [2, -1]}, tmp_path, executor=SerialExecutor())
    assert not (tmp_path / "test.toy").exists()


def test_local_process_pool_matches_serial(tmp_path):
    grid = {"n": [2, 4], "seed": [3]}
    local = sweep("test.toy", grid, tmp_path / "a", executor=LocalExecutor(2))
    serial = sweep("test.toy", grid, tmp_path / "b", executor=SerialExecutor())
    assert {r.config_hash for r in local} == {r.config_hash for r in serial}
    for r in serial:
        a = (tmp_path / "a" / "test.toy" / r.config_hash / "tables" / "metrics.csv").read_text()
        b = (Path(r.path) / "tables" / "metrics.csv").read_text()
        assert a == b


def test_interrupted_sweep_resumes(tmp_path):
    """Kill a sweep mid-way: finished points stay finished, nothing partial is kept, a rerun completes it."""
    code = (
        "import sys; sys.path.insert(0, '.');"
        "from iclab.runtime import sweep, SerialExecutor;"
        f"sweep('test.toy', {{'seed': [0, 1, 2, 3]}}, r'{tmp_path}', base={{'sleep': 1.0}}, executor=SerialExecutor())"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
    import time

    deadline = time.time() + 60
    while time.time() < deadline and len(finished_runs(tmp_path, "test.toy")) < 1:
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    done_before = len(finished_runs(tmp_path, "test.toy"))
    assert 1 <= done_before < 4
    results = sweep("test.toy", {"seed": [0, 1, 2, 3]}, tmp_path, base={"sleep": 1.0}, executor=SerialExecutor())
    assert sum(r.status == "skipped" for r in results) == done_before
    assert len(finished_runs(tmp_path, "test.toy")) == 4
    leftovers = [p for p in (tmp_path / "test.toy").iterdir() if p.name.startswith(".")]
    # the killed run's temporary directory is the only possible leftover, and it never counts as a result
    assert all(not is_complete(p) for p in leftovers)


def test_reproduce_ends_with_the_report_site(tmp_path):
    from iclab.runtime import reproduce

    results, report = reproduce(tmp_path, preset="quick", only="test.", quiet=True)
    assert [r.status for r in results] == ["done"]
    assert report == tmp_path / "site" / "index.html"
    html = report.read_text()
    assert 'href="spinglass/index.html"' in html and 'href="other/index.html"' in html
    assert "Claims by kind and verdict" in html and 'src="other/test.toy/' in html  # the matrix, the gallery
    (run_page,) = (tmp_path / "site" / "other" / "test.toy").glob("*/index.html")
    assert 'src="figures/draws.png"' in run_page.read_text() and (run_page.parent / "figures" / "draws.png").is_file()
    assert oct(report.stat().st_mode & 0o777) != "0o600" and oct(report.parent.stat().st_mode & 0o777) != "0o700"


def test_research_lines_register_themselves():
    """The runtime names no research line: each `iclab.<pkg>.experiments` registers its own, ordered by rank;
    a new line needs a package of its own, not an edit of the runtime."""
    from iclab.runtime._experiment import OTHER_LINE, ResearchLine, load_lines, register_line, research_line

    lines = load_lines()
    assert list(lines)[:3] == ["spinglass", "taskvectors", "grammar"]
    assert research_line("grammar.theory").package == "iclab.grammar" and research_line("mine.x") is OTHER_LINE
    for path in Path(__file__).resolve().parents[2].joinpath("src/iclab/runtime").glob("*.py"):
        code = "\n".join(line for line in path.read_text().splitlines() if '"' not in line and "#" not in line)
        assert "iclab.grammar" not in code and "iclab.spinglass" not in code and "iclab.taskvectors" not in code, path
    with pytest.raises(RuntimeError, match="registered twice"):
        register_line(ResearchLine("grammar", "another title", "elsewhere", "another paper"))
