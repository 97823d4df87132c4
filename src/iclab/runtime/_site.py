"""A static multi-page site over every finished run (`iclab report`, and the end of `iclab reproduce`).

Layout, all links relative so it works from file:// and from any web server:

    index.html                              claims per kind and verdict per research line, a gallery of
                                            each line's experiments (main figure and verdicts), environments
    <line>/index.html                       one research line: its gallery, the scoreboard of the paper's
                                            claims, then its sanity checks and engineering numbers apart
    <line>/<experiment>/index.html          one experiment: its runs, newest first
    <line>/<experiment>/<hash>/index.html   one run: claims by kind, figures, notes, settings, environment
    <line>/<experiment>/<hash>/figures/*.png, tables/*.csv   copies, so the site stands alone
    <line>/<experiment>/<hash>/thumbs/*.png  the gallery's downscaled main figure (newest run only)

Counts and scoreboards use the newest run of each experiment and preset (`results.newest_runs`), so
a sweep of ten seeds counts once; the experiment pages show every run.

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

from ._claims import KINDS, PAPER_KINDS, VERDICTS, count_verdicts
from ._errors import IclabError
from ._experiment import OTHER_LINE, RESEARCH_LINES, ResearchLine, load_lines, research_line
from ._report import (claim_cells, claim_head, claim_text, claims_table, esc, fmt, html_table, page,
                     run_section, verdict_html)
from ._results import flatten_config, newest_runs, run_experiment, run_key, run_seed, varying
from ._store import finished_runs, replace_dir

MARKER = ".iclab-site"  # marks a directory as ours to replace on the next build
PER_RUN_ENV = {"seed", "started", "seconds"}  # what differs run to run; the rest describes a machine
MAX_CLAIM_COLUMNS = 6
THUMB_SIZE = (360, 270)  # px, at most: a gallery card's picture

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


def _newest_first(runs: list[Run]) -> list[Run]:
    return sorted(runs, key=lambda r: (r["env"].get("started", ""), run_key(r)), reverse=True)


def _lines(runs: list[Run]) -> dict[ResearchLine, dict[str, list[Run]]]:
    """line -> experiment -> its runs (newest first); the three research lines always, `other` if used."""
    by_exp: dict[str, list[Run]] = {}
    for r in runs:
        by_exp.setdefault(run_experiment(r), []).append(r)
    load_lines()  # the research lines register themselves as their packages load
    out: dict[ResearchLine, dict[str, list[Run]]] = {line: {} for line in RESEARCH_LINES.values()}
    for name in sorted(by_exp):
        out.setdefault(research_line(name), {})[name] = _newest_first(by_exp[name])
    return out


def _scored(exps: dict[str, list[Run]]) -> list[Run]:
    """The runs the scoreboards and counts use: the newest of each experiment and preset."""
    return newest_runs([r for runs in exps.values() for r in runs])


def _claims(runs: list[Run], kinds: tuple[str, ...]) -> list[tuple[Run, dict[str, Any]]]:
    return [(r, c) for r in runs for kind in kinds for c in r["summary"].get("claims", []) if c.get("kind") == kind]


def _tally(runs: list[Run], kinds: tuple[str, ...] = PAPER_KINDS) -> str:
    """The verdicts of these runs' claims of `kinds`, coloured, e.g. '5 reproduced · 1 differs' (HTML)."""
    counts = count_verdicts([c for _, c in _claims(runs, kinds)])
    tally: dict[str, int] = {}
    for kind in kinds:
        for verdict, n in counts[kind].items():
            tally[verdict] = tally.get(verdict, 0) + n
    order = [v for kind in kinds for v in (*VERDICTS[kind], "reported")]
    return " · ".join(f"{tally[v]} {verdict_html(v)}" for v in dict.fromkeys(order) if tally.get(v)) or "—"


def _href(*parts: str) -> str:
    return esc("/".join(quote(p) for p in parts))


def _link(text: str, *parts: str) -> str:
    return f'<a href="{_href(*parts)}">{esc(text)}</a>'


def _nav(*crumbs: str) -> str:
    return "<nav>" + " › ".join(crumbs) + "</nav>"


# -- pages ---------------------------------------------------------------------------------

def _write(path: Path, title: str, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(title, body), encoding="utf-8")


def _write_site(root: Path, runs: list[Run]) -> None:
    lines = _lines(runs)
    thumbs: dict[str, tuple[str, ...] | None] = {}  # experiment -> its thumbnail, relative to its line's page
    for line, exps in lines.items():
        for name, exp_runs in exps.items():
            _write(root / line.name / name / "index.html", f"iclab: {name}", _experiment_body(line, name, exp_runs))
            for r in exp_runs:
                run_page = root / line.name / name / run_key(r)
                _write(run_page / "index.html", f"iclab: {name} {run_key(r)}", _run_body(line, name, r, run_page))
            thumbs[name] = _thumbnail(root / line.name, name, exp_runs[0])
    _write(root / "index.html", "iclab results", _index_body(lines, runs, thumbs))
    for line, exps in lines.items():
        _write(root / line.name / "index.html", f"iclab: {line.title}", _line_body(line, exps, thumbs))


def _thumbnail(line_dir: Path, name: str, run: Run) -> tuple[str, ...] | None:
    """A small PNG of the run's main figure (its first), beside its run page; None if it drew none.
    Pillow comes with matplotlib."""
    from PIL import Image

    figures = run["summary"].get("figures", [])
    png = next((f for f in (figures[0]["files"] if figures else []) if f.endswith(".png")), None)
    if png is None or not (Path(run["path"]) / png).is_file():
        return None
    parts = (name, run_key(run), "thumbs", Path(png).name)
    dest = line_dir.joinpath(*parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(Path(run["path"]) / png) as im:
        im.thumbnail(THUMB_SIZE)
        im.save(dest, optimize=True)
    return parts


def _gallery(exps: dict[str, list[Run]], thumbs: dict[str, tuple[str, ...] | None], *base: str) -> str:
    """One card per experiment: its main figure (a link to its newest run's page), title and verdicts."""
    cards = []
    for name, runs in exps.items():
        newest, thumb = runs[0], thumbs.get(name)
        run_page = (*base, name, run_key(newest), "index.html")
        picture = (f'<img alt="{esc(name)}: main figure" src="{_href(*base, *thumb)}">' if thumb
                   else '<span class="nofig">no figure</span>')
        sanity = _claims([newest], ("sanity",))
        cards.append(f'<div class="card"><a href="{_href(*run_page)}">{picture}</a><div>'
                     f'{_link(name, *base, name, "index.html")} · {esc(newest["meta"].get("title", ""))}'
                     f'<br><small>{esc(newest["meta"].get("paper", ""))}; newest run '
                     f'{_link(run_key(newest), *run_page)} ({esc(_preset(newest))})</small>'
                     f'<br>paper claims: {_tally([newest])}'
                     + (f'<br><small>sanity: {_tally([newest], ("sanity",))}</small>' if sanity else "")
                     + "</div></div>")
    return f'<div class="gallery">{"".join(cards)}</div>'


def _matrix(lines: dict[ResearchLine, dict[str, list[Run]]]) -> str:
    """Claims per kind (rows) and research line (columns), each cell its verdict counts, over the scored runs."""
    head = "".join(f"<th>{_link(line.title, line.name, 'index.html')}</th>" for line in lines)
    rows = "".join(f"<tr><th>{esc(kind)}</th>" + "".join(f"<td>{_tally(_scored(exps), (kind,))}</td>"
                                                          for exps in lines.values()) + "</tr>"
                   for kind in KINDS)
    return f'<table class="matrix"><tr><th>claims</th>{head}</tr>{rows}</table>'


def _index_body(lines: dict[ResearchLine, dict[str, list[Run]]], runs: list[Run],
                thumbs: dict[str, tuple[str, ...] | None]) -> str:
    n_exp = sum(len(exps) for exps in lines.values())
    n_scored = sum(len(_scored(exps)) for exps in lines.values())
    body = (f"<h1>iclab results</h1><p>{len(runs)} finished runs of {n_exp} experiments. Counts and scoreboards use "
            f"the newest run of each experiment and preset ({n_scored} runs); each experiment's page lists all of its "
            "runs. A paper's claim is <i>reproduced</i> when our confidence interval lies inside the tolerance "
            "declared in the experiment's code, <i>differs</i> when it lies outside, <i>inconclusive</i> when it "
            "straddles the border. Sanity checks and engineering numbers are counted apart: they are not "
            "reproduction.</p><h2>Claims by kind and verdict</h2>" + _matrix(lines))
    for line, exps in lines.items():
        if not exps and line is OTHER_LINE:
            continue
        body += (f"<h2>{_link(line.title, line.name, 'index.html')}</h2><p><b>{esc(line.paper)}</b> · package "
                 f"<code>{esc(line.package)}</code> · paper claims: {_tally(_scored(exps))}</p>"
                 + (_gallery(exps, thumbs, line.name) if exps else _no_runs(line)))
    return body + "<h2>Environments</h2><p>The machines and versions the runs came from.</p>" + _environments(runs)


def _no_runs(line: ResearchLine) -> str:
    prefix = "" if line is OTHER_LINE else f" --only {line.name}."
    return f"<p>No finished runs yet: run <code>iclab reproduce --quick{esc(prefix)}</code>.</p>"


def _environments(runs: list[Run]) -> str:
    groups: dict[str, list[Run]] = {}
    for r in sorted(runs, key=lambda r: (r["env"].get("started", ""), run_key(r))):
        machine = {k: v for k, v in r["env"].items() if k not in PER_RUN_ENV}
        groups.setdefault(json.dumps(machine, sort_keys=True, default=str), []).append(r)
    keys = list(dict.fromkeys(k for r in runs for k in r["env"] if k not in PER_RUN_ENV))  # as env.json orders them
    rows = []
    for blob, members in groups.items():
        machine = json.loads(blob)
        rows.append([f"<code>{esc(fmt(machine[k]))}</code>" if k in machine else "" for k in keys]
                    + [str(len(members)), esc(members[0]["env"].get("started", "")),
                       esc(members[-1]["env"].get("started", ""))])
    return html_table(keys + ["runs", "first run", "last run"], rows)


def _line_body(line: ResearchLine, exps: dict[str, list[Run]], thumbs: dict[str, tuple[str, ...] | None]) -> str:
    head = _nav(_link("iclab results", "..", "index.html"), esc(line.title))
    intro = f"<h1>{esc(line.title)}</h1><p><b>{esc(line.paper)}</b> · package <code>{esc(line.package)}</code></p>"
    if not exps:
        return head + intro + _no_runs(line)
    scored = _scored(exps)
    rows = [[_link(name, name, "index.html"), esc(runs[0]["meta"].get("title", "")),
             esc(runs[0]["meta"].get("paper", "")), str(len(runs)),
             esc(", ".join(sorted({_preset(r) for r in runs}))),
             _tally(newest_runs(runs))] for name, runs in exps.items()]
    return (head + intro + _gallery(exps, thumbs)
            + f"<h2>Scoreboard: the paper's claims</h2><p>The paper-value and paper-shape claims of the newest run "
              f"of each experiment and preset ({len(scored)} run{'s' * (len(scored) != 1)}; each row links its run). "
              f"Verdicts: {_tally(scored)}.</p>"
            + _board(scored, PAPER_KINDS, "No run of this line states a claim of the paper.")
            + "<h2>Sanity checks (not counted as reproduction)</h2><p>Identities and consistency checks of our own "
              "code, from the same runs.</p>" + _board(scored, ("sanity",), "No sanity checks.")
            + "<h2>Engineering (sizes, speed; not science)</h2>" + _board(scored, ("engineering",), "None.")
            + "<h2>Experiments</h2>" + html_table(["experiment", "what", "reproduces", "runs", "presets",
                                                   "verdicts (paper claims, newest run per preset)"], rows))


def _board(runs: list[Run], kinds: tuple[str, ...], empty: str) -> str:
    """The claims of `kinds`, one row each, behind the experiment and run they come from."""
    pairs = _claims(runs, kinds)
    if not pairs:
        return f"<p>{esc(empty)}</p>"
    rows = [[f'<span class="nowrap">{_link(run_experiment(r), run_experiment(r), run_key(r), "index.html")}</span>'
             f"<br><small>{esc(_preset(r))}</small>", *claim_cells(c)] for r, c in pairs]
    return html_table(["experiment", *claim_head(kinds[0])], rows)


def _experiment_body(line: ResearchLine, name: str, runs: list[Run]) -> str:
    meta = runs[0]["meta"]
    head = _nav(_link("iclab results", "..", "..", "index.html"), _link(line.title, "..", "index.html"), esc(name))
    configs = [{k: v for k, v in flatten_config(r["meta"].get("config", {})).items() if k != "seed"} for r in runs]
    fields = list(dict.fromkeys(k for c in configs for k in c))
    vary = varying(configs, fields)
    rows = [[_link(run_key(r), run_key(r), "index.html"), esc(_preset(r)), esc(run_seed(r))]
            + [f"<code>{esc(fmt(c.get(f, '')))}</code>" for f in vary]
            + [esc(r["env"].get("started", "")), esc(r["env"].get("seconds", "")), _tally([r])]
            for r, c in zip(runs, configs)]
    body = (head + f"<h1>{esc(name)}: {esc(meta.get('title', ''))}</h1><p>Reproduces <b>{esc(meta.get('paper', ''))}"
            f"</b>. {len(runs)} finished run{'s' if len(runs) != 1 else ''}, newest first"
            + (f"; the settings that differ between them: {esc(', '.join(vary))}" if vary else "") + ".</p>"
            + "<h2>Runs</h2>"
            + html_table(["run", "preset", "seed", *vary, "started", "seconds", "verdicts (paper claims)"], rows)
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
        t = claim_text(c)
        return f"{esc(t['ours'])} {verdict_html(t['verdict'])}"

    rows = [[_link(run_key(r), run_key(r), "index.html")] + [cell(claims[n]) for n in common]
            for r, claims in zip(runs, per_run)]
    return "<h2>Our numbers across runs</h2>" + html_table(["run", *common], rows)


def _run_body(line: ResearchLine, name: str, run: Run, page_dir: Path) -> str:
    src = Path(run["path"])
    head = _nav(_link("iclab results", "..", "..", "..", "index.html"), _link(line.title, "..", "..", "index.html"),
                _link(name, "..", "index.html"), esc(run_key(run)))
    return head + run_section(src, run["meta"], run["env"], run["summary"], level=1, img=_copy_img(page_dir),
                              csv_href=_copy_csv(src, page_dir), open_details=True)


def _copy_img(page_dir: Path) -> Callable[[Path], str]:
    def img(png: Path) -> str:
        dest = page_dir / "figures" / png.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, dest)
        return f'<a href="{_href("figures", png.name)}"><img alt="{esc(png.stem)}" src="{_href("figures", png.name)}"></a>'

    return img


def _copy_csv(src: Path, page_dir: Path) -> Callable[[str], str]:
    def href(name: str) -> str:
        dest = page_dir / "tables" / f"{name}.csv"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / "tables" / f"{name}.csv", dest)
        return "/".join(quote(p) for p in ("tables", f"{name}.csv"))

    return href
