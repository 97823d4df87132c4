"""Every command in the docs runs: the fenced blocks of README.md and docs/**/*.md, executed in order.

The convention (written up in docs/index.md, "Docs conventions"):

* Every fenced block has a language tag. ```bash blocks run with `bash -euo pipefail`, ```python
  blocks with the venv's python (`python -c`, so the working directory is on sys.path); every other
  language (text, console, yaml, json, csv, ...) is output or illustration and is not run.
* Words after the language: `file=NAME` writes the block's content to NAME in the working directory
  (and does not run it), so a ```yaml file=my.yaml block defines a file that later blocks use;
  `slow` runs the block only under `pytest -m slow`; `slurm` puts tests/docs/slurm_shims first on
  PATH. Nothing else is accepted: there is no `norun`.
* The runnable blocks of one markdown file run in order, in one fresh working directory per file,
  that looks like a checkout: the repository's top-level files and folders (`scripts/`, `bench/`,
  `src/`, `.venv/`, `pyproject.toml`, ...) are symlinked into it, except `runs/`, so commands written
  for the repository root (`bash scripts/reproduce.sh`, `.venv/bin/python bench/bench_amp.py`) work
  as written while everything they write (`runs/`, `my-model/`, ...) lands in the temporary
  directory. `$ICLAB_REPO` is the repository root, for the rare command that needs an absolute path.
* Environment: PATH starts with the venv's bin, ICLAB_NO_PROGRESS=1, CI and the rest inherited from the
  shell that started pytest (not what test modules set for themselves at import, such as a Ray token).
  Each block is its own process, in its own session: `cd` and `export` do not carry over to the
  next block, and whatever it leaves running in the background is killed when it ends.
* Relative links between the pages must resolve.

`test_doc_commands[FILE]` runs a file's non-slow blocks (CI); `test_doc_commands_slow[FILE]`
(marked slow) runs all of its blocks in order, slow ones included. Under pytest-xdist each file is
its own unit of work, so the files spread over the workers (tests/conftest.py), and each block gets
one torch thread, as every process the suite starts under xdist does (`THREAD_VARS` in tests/conftest.py),
so that it does not fight the other workers for cores. A page that starts Ray shares the
machine's Ray with the Ray tests; one that runs `ray stop` (which ends every Ray process on the
machine) holds it alone (`ray_on_this_machine` in tests/conftest.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import USER_ENV, ray_on_this_machine

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # the venv running the tests (not resolved: keep the venv's own bin)
SLURM_SHIMS = ROOT / "tests" / "docs" / "slurm_shims"
RUNNABLE = {"bash", "python"}
FLAGS = {"slow", "slurm"}
KEYS = {"file"}
NOT_LINKED = {"runs", ".git", ".pytest_cache", ".ruff_cache", ".mypy_cache", "__pycache__", "build", "dist"}
TIMEOUT = float(os.environ.get("ICLAB_DOCS_TIMEOUT", "1800"))  # seconds per block, CI
SLOW_TIMEOUT = float(os.environ.get("ICLAB_DOCS_SLOW_TIMEOUT", str(6 * 3600)))  # seconds per block tagged slow


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


@dataclass
class Block:
    doc: str  # path relative to the repository root
    line: int  # 1-based line of the opening fence
    info: str  # the fence's info string
    text: str
    closed: bool = True
    lang: str = ""
    flags: set[str] = field(default_factory=set)
    file: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def runnable(self) -> bool:
        return self.lang in RUNNABLE and self.file is None

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line} (```{self.info})"


_OPEN = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def parse_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file (CommonMark fences: ``` or ~~~, any indent)."""
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m or (m["fence"][0] == "`" and "`" in m["info"]):
            i += 1
            continue
        indent, fence, info = len(m["indent"]), m["fence"], m["info"].strip()
        close = re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body, j = [], i + 1
        while j < len(lines) and not close.match(lines[j]):
            line = lines[j]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))):])
            j += 1
        block = Block(rel, i + 1, info, "\n".join(body) + "\n", closed=j < len(lines))
        _read_info(block)
        blocks.append(block)
        i = j + 1
    return blocks


def _read_info(block: Block) -> None:
    words = block.info.split()
    if not block.closed:
        block.errors.append("the fence is never closed")
    if not words:
        block.errors.append("no language tag: write ```bash or ```python for commands, ```text for output")
        return
    block.lang = words[0].lower()
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if eq and key in KEYS:
            if not value or value.startswith(("/", "~")) or ".." in Path(value).parts:
                block.errors.append(f"file={value!r}: give a relative path inside the working directory")
            block.file = value
        elif not eq and word in FLAGS:
            block.flags.add(word)
        elif word == "norun":
            block.errors.append("'norun' is not allowed: every command in the docs runs (tag slow ones `slow`)")
        else:
            block.errors.append(f"unknown word {word!r} in the info string; use file=NAME, slow or slurm")
    if block.flags and block.lang not in RUNNABLE:
        block.errors.append(f"{' and '.join(sorted(block.flags))} only applies to bash or python blocks")
    if block.file is not None and block.flags:
        block.errors.append("a file= block is written, not run: it cannot be slow or slurm")


DOCS = doc_files()
DOC_IDS = [p.relative_to(ROOT).as_posix() for p in DOCS]
BLOCKS = {p: parse_blocks(p) for p in DOCS}
SLOW_DOCS = [p for p in DOCS if any(b.runnable and "slow" in b.flags for b in BLOCKS[p])]


def test_every_block_is_tagged():
    """Every fenced block in README.md and docs/**/*.md has a language tag and a valid info string."""
    problems = [f"{b.where}: {err}" for p in DOCS for b in BLOCKS[p] for err in b.errors]
    assert not problems, "\n".join(problems)


def test_the_checker_sees_the_docs():
    """Guard against a parser regression that would silently run nothing."""
    assert len(DOCS) >= 7 and sum(b.runnable for p in DOCS for b in BLOCKS[p]) >= 20


def test_relative_links_resolve():
    """Every relative link in the docs (outside code blocks) points at a file or folder that exists."""
    broken = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for b in BLOCKS[doc]:  # blank out the code blocks, fences included
            end = b.line + len(b.text.splitlines()) + 1
            lines[b.line - 1:end] = [""] * len(lines[b.line - 1:end])
        for m in re.finditer(r"\]\(([^)\s]+)\)", "\n".join(lines)):
            target = m.group(1).split("#")[0]
            if target and not re.match(r"[a-z]+:", target) and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {m.group(1)}")
    assert not broken, "\n".join(broken)


def make_workdir(tmp_path: Path) -> Path:
    """A fresh directory that looks like a checkout: the repository's entries symlinked in, minus runs/."""
    work = tmp_path / "work"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in NOT_LINKED or entry.name.endswith(".egg-info"):
            continue
        (work / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return work


def block_env(block: Block) -> dict[str, str]:
    env = dict(USER_ENV)  # not what other test modules set for themselves (a Ray token, a toy registry)
    path = [str(VENV_BIN)]
    if "slurm" in block.flags:
        path.insert(0, str(SLURM_SHIMS))
    env["PATH"] = os.pathsep.join([*path, env.get("PATH", "")])
    env["ICLAB_NO_PROGRESS"] = "1"
    env["ICLAB_REPO"] = str(ROOT)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _numbered(text: str) -> str:
    return "\n".join(f"{k:4d} | {line}" for k, line in enumerate(text.rstrip("\n").splitlines(), 1))


def _tail(text: str, n: int) -> str:
    return text if len(text) <= n else "[...]\n" + text[-n:]


def write_file(block: Block, work: Path) -> None:
    target = work / block.file
    if not target.parent.resolve().is_relative_to(work.resolve()):
        pytest.fail(f"{block.where}: file={block.file} would write into the repository (a symlinked folder)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(block.text, encoding="utf-8")


def _end_session(pid: int) -> None:
    """Kill what is left of a block's process group (background jobs it started and did not stop)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_block(block: Block, work: Path, scripts: Path, index: int, log: list[str]) -> None:
    """Run one block in `work`; fail with the block's text and its output if it exits non-zero."""
    timeout = SLOW_TIMEOUT if "slow" in block.flags else TIMEOUT
    if block.lang == "bash":
        script = scripts / f"block{index:02d}-line{block.line}.sh"
        script.write_text(block.text, encoding="utf-8")
        cmd = ["bash", "-euo", "pipefail", str(script)]
    else:
        cmd = [sys.executable, "-c", block.text]
    start = time.perf_counter()
    # Its own session, so that whatever the block leaves running in the background is ended with it.
    with subprocess.Popen(cmd, cwd=work, env=block_env(block), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, text=True, start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _end_session(proc.pid)
            stdout, stderr = proc.communicate()
            pytest.fail(f"{block.where} timed out after {timeout:.0f} s (ICLAB_DOCS_TIMEOUT)\n--- block ---\n"
                        f"{_numbered(block.text)}\n--- stderr ---\n{_tail(stderr, 6000)}", pytrace=False)
        finally:
            _end_session(proc.pid)
    log.append(f"{block.where}: exit {proc.returncode}, {time.perf_counter() - start:.1f} s")
    if proc.returncode != 0:
        pytest.fail(f"{block.where} failed with exit status {proc.returncode} (in {work})\n"
                    f"--- block ---\n{_numbered(block.text)}\n"
                    f"--- stderr ---\n{_tail(stderr, 6000)}\n"
                    f"--- stdout ---\n{_tail(stdout, 2000)}", pytrace=False)


def run_doc(doc: Path, tmp_path: Path, slow: bool) -> list[str]:
    """Run a file's blocks in order in a fresh working directory; returns a timing log."""
    blocks = BLOCKS[doc]
    bad = [f"{b.where}: {err}" for b in blocks for err in b.errors]
    if bad:
        pytest.fail("\n".join(bad), pytrace=False)
    todo = [b for b in blocks if b.file is not None or (b.runnable and (slow or "slow" not in b.flags))]
    if not any(b.runnable for b in todo):
        pytest.skip("every runnable block of this file is tagged slow (pytest -m slow runs them)")
    work = make_workdir(tmp_path)
    scripts = tmp_path / "blocks"
    scripts.mkdir()
    log: list[str] = []
    start = time.perf_counter()
    for index, block in enumerate(todo):
        if block.file is not None:
            write_file(block, work)
        else:
            run_block(block, work, scripts, index, log)
    seconds = time.perf_counter() - start
    log.append(f"{DOC_IDS[DOCS.index(doc)]}: {seconds:.1f} s in all")
    return log


def ray_use(doc: Path) -> str | None:
    """How a page's commands use the machine's Ray: "alone" if they run `ray stop` (which ends every Ray
    process on the machine), "shared" if they start Ray, None if they do not touch it."""
    lines = [line for b in BLOCKS[doc] if b.runnable or b.file is not None for line in b.text.splitlines()]
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))  # not commented-out commands
    if "ray stop" in text:
        return "alone"
    return "shared" if "--backend ray" in text or "ray start" in text else None


@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_doc_commands(doc: Path, tmp_path: Path):
    """The file's blocks that are not tagged slow, in order (what CI runs)."""
    with ray_on_this_machine(ray_use(doc)):
        print("\n".join(run_doc(doc, tmp_path, slow=False)))


@pytest.mark.slow
@pytest.mark.parametrize("doc", SLOW_DOCS, ids=[p.relative_to(ROOT).as_posix() for p in SLOW_DOCS])
def test_doc_commands_slow(doc: Path, tmp_path: Path):
    """All of the file's blocks in order, slow ones included (`pytest -m slow`)."""
    with ray_on_this_machine(ray_use(doc)):
        print("\n".join(run_doc(doc, tmp_path, slow=True)))


def test_parser_reads_the_convention(tmp_path, monkeypatch):
    """The parser on a sample: tags, file=, flags, indented fences, tildes, and the errors."""
    sample = tmp_path / "sample.md"
    sample.write_text(
        "```bash\necho hi\n```\n"
        "- item\n  ```yaml file=conf/my.yaml\n  a: 1\n  ```\n"
        "~~~python slow slurm\nprint(1)\n~~~\n"
        "````text\n```bash\nnot a fence inside\n````\n"
        "```\nuntagged\n```\n"
        "```bash norun\nx\n```\n"
        "```yaml slow\nx: 1\n```\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    blocks = parse_blocks(sample)
    assert [b.lang for b in blocks] == ["bash", "yaml", "python", "text", "", "bash", "yaml"]
    assert blocks[1].file == "conf/my.yaml" and blocks[1].text == "a: 1\n" and not blocks[1].runnable
    assert blocks[2].flags == {"slow", "slurm"} and blocks[2].runnable and blocks[2].line == 8
    assert blocks[3].text == "```bash\nnot a fence inside\n"
    assert blocks[4].errors and "no language tag" in blocks[4].errors[0]
    assert "'norun' is not allowed" in blocks[5].errors[0]
    assert "only applies to bash or python" in blocks[6].errors[0]
    assert all(not b.errors for b in blocks[:4])
    assert blocks[0].text == "echo hi\n" and blocks[0].runnable
