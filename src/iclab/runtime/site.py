"""A static multi-page site over every finished run (`iclab report`, and the end of `iclab reproduce`).

Layout, all links relative so it works from file:// and from any web server:

    index.html                              the research lines, counts, targets met, environments
    <line>/index.html                       one research line: its experiments
    <line>/<experiment>/index.html          one experiment: its runs, newest first
    <line>/<experiment>/<hash>/index.html   one run: claims, figures, notes, settings, environment
    <line>/<experiment>/<hash>/figures/*.png, tables/*.csv   copies, so the site stands alone

The site is built in a temporary directory beside its destination and swapped into place,
so a reader never sees half a site, and it depends on the runs only (no build time in it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .claims import PAPER_KINDS, count_verdicts
from .errors import IclabError
from .experiment import OTHER_LINE, RESEARCH_LINES, ResearchLine, research_line
from .report import _esc, _fmt, claims_table, estimate_text, page, run_section, verdict_html
from .results import flatten_config, run_key, run_seed, varying
from .store import finished_runs, replace_dir

MARKER = ".iclab-site"  # marks a directory as ours to replace on the next build
PER_RUN_ENV = {"seed", "started", "seconds"}  # what differs run to run; the rest describes a machine
MAX_CLAIM_COLUMNS = 6

Run = dict[str, Any]


def build_site(runs_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the site over every finished run under `runs_dir` (default `<runs_dir>/site`); return its index.html."""
    runs_dir = Path(runs_dir)
    out = Path(out_dir) if out_dir is not None else runs_dir / "site"
    runs = finished_runs(runs_dir)
    if not runs:
        raise IclabError(f"no finished runs in {runs_dir}/; run `iclab reproduce --quick` or "
                         "`iclab run EXPERIMENT` first (or pass --runs-dir)")
    _check_replaceable(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{out.name}-"))
    except OSError as err:
        raise IclabError(f"cannot write the site to {out} ({err.strerror or err}); pass another with --out") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a site is for reading
        _write_site(tmp, runs)
        (tmp / MARKER).write_text("built by `iclab report`; the next build replaces this whole directory\n")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"


def _check_replaceable(out: Path) -> None:
    """Never replace a directory we did not build: only a missing, empty or earlier site."""
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MARKER).is_file())):
        raise IclabError(f"{out} exists and is not an iclab site; pass --out a new or empty directory")


# -- grouping ------------------------------------------------------------------------------

def _preset(run: Run) -> str:
    """A run made without a preset (defaults plus overrides, e.g. a model another experiment trained)."""
    return run["meta"].get("preset") or "defaults"


def _experiment(run: Run) -> str:
    return Path(run["path"]).parent.name


def _newest_first(runs: list[Run]) -> list[Run]:
    return sorted(runs, key=lambda r: (r["env"].get("started", ""), run_key(r)), reverse=True)


def _lines(runs: list[Run]) -> dict[ResearchLine, dict[str, list[Run]]]:
    """line -> experiment -> its runs (newest first); the three research lines always, `other` if used."""
    by_exp: dict[str, list[Run]] = {}
    for r in runs:
        by_exp.setdefault(_experiment(r), []).append(r)
    out: dict[ResearchLine, dict[str, list[Run]]] = {line: {} for line in RESEARCH_LINES.values()}
    for name in sorted(by_exp):
        out.setdefault(research_line(name), {})[name] = _newest_first(by_exp[name])
    return out


def _met(runs: list[Run]) -> str:
    """Verdicts of the paper's claims (paper-value and paper-shape) over these runs, e.g. '5 reproduced,
    1 differs'; sanity and engineering claims are not counted."""
    counts = count_verdicts([c for r in runs for c in r["summary"].get("claims", [])])
    tally: dict[str, int] = {}
    for kind in PAPER_KINDS:
        for verdict, n in counts[kind].items():
            tally[verdict] = tally.get(verdict, 0) + n
    order = ["reproduced", "differs", "inconclusive", "reported"]
    return ", ".join(f"{tally[v]} {v}" for v in order if tally.get(v)) or "—"


def _href(*parts: str) -> str:
    return _esc("/".join(quote(p) for p in parts))


def _link(text: str, *parts: str) -> str:
    return f'<a href="{_href(*parts)}">{_esc(text)}</a>'


def _table(head: list[str], rows: list[list[str]]) -> str:
    """Cells are HTML already (escaped by the caller)."""
    ths = "".join(f"<th>{_esc(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{ths}</tr>{trs}</table>"


def _nav(*crumbs: str) -> str:
    return "<nav>" + " › ".join(crumbs) + "</nav>"


# -- pages ---------------------------------------------------------------------------------

def _write(path: Path, title: str, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(title, body), encoding="utf-8")


def _write_site(root: Path, runs: list[Run]) -> None:
    lines = _lines(runs)
    _write(root / "index.html", "iclab results", _index_body(lines, runs))
    for line, exps in lines.items():
        _write(root / line.name / "index.html", f"iclab: {line.title}", _line_body(line, exps))
        for name, exp_runs in exps.items():
            _write(root / line.name / name / "index.html", f"iclab: {name}", _experiment_body(line, name, exp_runs))
            for r in exp_runs:
                run_page = root / line.name / name / run_key(r)
                _write(run_page / "index.html", f"iclab: {name} {run_key(r)}", _run_body(line, name, r, run_page))


def _index_body(lines: dict[ResearchLine, dict[str, list[Run]]], runs: list[Run]) -> str:
    rows = []
    for line, exps in lines.items():
        line_runs = [r for rs in exps.values() for r in rs]
        rows.append([_link(line.title, line.name, "index.html"), _esc(line.paper), f"<code>{_esc(line.package)}</code>",
                     str(len(exps)), str(len(line_runs)), _met(line_runs)])
    n_exp = sum(len(exps) for exps in lines.values())
    return (f"<h1>iclab results</h1><p>{len(runs)} finished runs of {n_exp} experiments. Each run page shows the "
            "paper's claim beside our number, every figure with its settings and seed, and the environment.</p>"
            "<h2>Research lines</h2>"
            + _table(["research line", "paper", "package", "experiments", "runs", "verdicts (paper claims)"], rows)
            + "<h2>Environments</h2><p>The machines and versions the runs came from.</p>" + _environments(runs))


def _environments(runs: list[Run]) -> str:
    groups: dict[str, list[Run]] = {}
    for r in sorted(runs, key=lambda r: (r["env"].get("started", ""), run_key(r))):
        machine = {k: v for k, v in r["env"].items() if k not in PER_RUN_ENV}
        groups.setdefault(json.dumps(machine, sort_keys=True, default=str), []).append(r)
    keys = list(dict.fromkeys(k for r in runs for k in r["env"] if k not in PER_RUN_ENV))  # as env.json orders them
    rows = []
    for blob, members in groups.items():
        machine = json.loads(blob)
        rows.append([f"<code>{_esc(_fmt(machine[k]))}</code>" if k in machine else "" for k in keys]
                    + [str(len(members)), _esc(members[0]["env"].get("started", "")),
                       _esc(members[-1]["env"].get("started", ""))])
    return _table(keys + ["runs", "first run", "last run"], rows)


def _line_body(line: ResearchLine, exps: dict[str, list[Run]]) -> str:
    head = _nav(_link("iclab results", "..", "index.html"), _esc(line.title))
    intro = f"<h1>{_esc(line.title)}</h1><p><b>{_esc(line.paper)}</b> · package <code>{_esc(line.package)}</code></p>"
    if not exps:
        prefix = "" if line is OTHER_LINE else f" --only {line.name}."
        return head + intro + f"<p>No finished runs yet: run <code>iclab reproduce --quick{_esc(prefix)}</code>.</p>"
    rows = []
    for name, runs in exps.items():
        meta, newest = runs[0]["meta"], runs[0]
        rows.append([_link(name, name, "index.html"), _esc(meta.get("title", "")), _esc(meta.get("paper", "")),
                     str(len(runs)), _esc(", ".join(sorted({_preset(r) for r in runs}))),
                     _link(f"{run_key(newest)} ({_preset(newest)})", name, run_key(newest), "index.html"),
                     _met(runs)])
    return head + intro + _table(["experiment", "what", "reproduces", "runs", "presets", "newest run",
                                  "verdicts (paper claims)"], rows)


def _experiment_body(line: ResearchLine, name: str, runs: list[Run]) -> str:
    meta = runs[0]["meta"]
    head = _nav(_link("iclab results", "..", "..", "index.html"), _link(line.title, "..", "index.html"), _esc(name))
    configs = [{k: v for k, v in flatten_config(r["meta"].get("config", {})).items() if k != "seed"} for r in runs]
    fields = list(dict.fromkeys(k for c in configs for k in c))
    vary = varying(configs, fields)
    rows = [[_link(run_key(r), run_key(r), "index.html"), _esc(_preset(r)), _esc(run_seed(r))]
            + [f"<code>{_esc(_fmt(c.get(f, '')))}</code>" for f in vary]
            + [_esc(r["env"].get("started", "")), _esc(r["env"].get("seconds", "")), _met([r])]
            for r, c in zip(runs, configs)]
    body = (head + f"<h1>{_esc(name)}: {_esc(meta.get('title', ''))}</h1><p>Reproduces <b>{_esc(meta.get('paper', ''))}"
            f"</b>. {len(runs)} finished run{'s' if len(runs) != 1 else ''}, newest first"
            + (f"; the settings that differ between them: {_esc(', '.join(vary))}" if vary else "") + ".</p>"
            + "<h2>Runs</h2>"
            + _table(["run", "preset", "seed", *vary, "started", "seconds", "verdicts (paper claims)"], rows)
            + _claims_across(runs))
    newest = runs[0]
    body += (f"<h2>Newest run's claims ({_link(run_key(newest), run_key(newest), 'index.html')})</h2>"
             + (claims_table(newest["summary"].get("claims", [])) or "<p>This run states no claims.</p>"))
    return body


def _claims_across(runs: list[Run]) -> str:
    """Our number for each claim every run states, one row per run: how a result moves across a sweep."""
    if len(runs) < 2:
        return ""
    per_run = [{c["name"]: c for c in r["summary"].get("claims", [])} for r in runs]
    common = [n for n in per_run[0] if all(n in claims for claims in per_run)][:MAX_CLAIM_COLUMNS]
    if not common:
        return ""

    def cell(c: dict[str, Any]) -> str:
        return f"{_esc(estimate_text(c['ours']))} {verdict_html(c['verdict'])}"

    rows = [[_link(run_key(r), run_key(r), "index.html")] + [cell(claims[n]) for n in common]
            for r, claims in zip(runs, per_run)]
    return "<h2>Our numbers across runs</h2>" + _table(["run", *common], rows)


def _run_body(line: ResearchLine, name: str, run: Run, page_dir: Path) -> str:
    src = Path(run["path"])
    head = _nav(_link("iclab results", "..", "..", "..", "index.html"), _link(line.title, "..", "..", "index.html"),
                _link(name, "..", "index.html"), _esc(run_key(run)))
    return head + run_section(src, run["meta"], run["env"], run["summary"], level=1, img=_copy_img(page_dir),
                              csv_href=_copy_csv(src, page_dir), open_details=True)


def _copy_img(page_dir: Path) -> Callable[[Path], str]:
    def img(png: Path) -> str:
        dest = page_dir / "figures" / png.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, dest)
        return f'<a href="{_href("figures", png.name)}"><img alt="{_esc(png.stem)}" src="{_href("figures", png.name)}"></a>'

    return img


def _copy_csv(src: Path, page_dir: Path) -> Callable[[str], str]:
    def href(name: str) -> str:
        dest = page_dir / "tables" / f"{name}.csv"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / "tables" / f"{name}.csv", dest)
        return "/".join(quote(p) for p in ("tables", f"{name}.csv"))

    return href
