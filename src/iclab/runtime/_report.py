"""HTML building blocks: every figure with its settings and the paper's claim beside ours.

A run's own `report.html` embeds its images as base64 PNGs, so it is one file that can be
mailed or archived; the multi-page site over all runs (`site.py`) reuses these pieces with
image files instead.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._claims import PAPER_KINDS, Claim

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.unsure{color:#9a6700;font-weight:600}.info{color:#57606a}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#444}
details{margin:.5em 0}code{background:#f6f8fa;padding:0 .2em}.note{background:#fff8c5;padding:.3em .6em;margin:.3em 0}
nav{font-size:.9em;color:#555;margin-bottom:1em}a{color:#0550ae}td{overflow-wrap:anywhere}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:1em}
.card{border:1px solid #ddd;padding:.5em;font-size:.9em}.card img{display:block;max-width:100%;margin:0 auto .4em}
.nofig{display:block;padding:3em 0;text-align:center;color:#888}table.matrix td,table.matrix th,.nowrap{white-space:nowrap}
"""


def esc(x: Any) -> str:
    return html.escape(str(x))


def fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


VERDICT_CLASS = {"reproduced": "pass", "holds": "pass", "differs": "fail", "fails": "fail",
                 "inconclusive": "unsure", "reported": "info"}


def verdict_html(verdict: str) -> str:
    return f'<span class="{VERDICT_CLASS.get(verdict, "info")}">{esc(verdict)}</span>'


def estimate_text(ours: dict[str, Any]) -> str:
    """'0.75 [0.71, 0.79]' with the interval when there is one."""
    v = fmt(ours["value"])
    if ours.get("lo") is None or ours["lo"] == ours["hi"] == ours["value"]:
        return v
    return f"{v} [{fmt(ours['lo'])}, {fmt(ours['hi'])}]"


def paper_value_text(pv: Any) -> str:
    if pv is None:
        return ""
    if isinstance(pv, list):
        shown = ", ".join(fmt(float(x)) for x in pv[:8])
        return f"[{shown}{', …' if len(pv) > 8 else ''}]"
    return fmt(float(pv))


def claim_text(saved: dict[str, Any]) -> dict[str, str]:
    """A saved claim as the strings every table shows (the site's HTML, the docs' markdown). Its
    tolerance text and verdict are recomputed from the numbers, never read back."""
    c = Claim.from_dict(saved)
    return {"kind": c.kind, "name": c.name, "paper": c.paper, "paper_value": paper_value_text(c.paper_value),
            "source": c.source or "", "ours": estimate_text(saved["ours"]), "method": c.ours.method,
            "tolerance": c.target or "none declared", "verdict": c.verdict, "note": c.note}


SECTIONS = (("paper-value", "Paper's numbers"), ("paper-shape", "Paper's qualitative claims"),
            ("sanity", "Sanity checks (not counted as reproduction)"),
            ("engineering", "Engineering (sizes, speed; not science)"))
CLAIM_HEAD = ["paper's claim", "paper's value (source)", "ours ± CI (method)", "tolerance", "verdict"]
CHECK_HEAD = ["check", "ours ± CI (method)", "expected", "verdict"]  # sanity and engineering: no paper value


def claim_cells(saved: dict[str, Any]) -> list[str]:
    """One claim as HTML cells: under CLAIM_HEAD for the paper's kinds, CHECK_HEAD for the others."""
    t = claim_text(saved)

    def small(text: str) -> str:
        return f"<br><small>{esc(text)}</small>" if text else ""

    cells = [f"{esc(t['paper'])}{small(t['name'])}", f"{esc(t['paper_value'] or '—')}{small(t['source'])}",
             f"{esc(t['ours'])}{small(t['method'])}", esc(t["tolerance"]), verdict_html(t["verdict"]) + small(t["note"])]
    return cells if t["kind"] in PAPER_KINDS else [cells[0], *cells[2:]]


def claim_head(kind: str) -> list[str]:
    return CLAIM_HEAD if kind in PAPER_KINDS else CHECK_HEAD


def html_table(head: list[str], rows: list[list[str]]) -> str:
    """Cells are HTML already (escaped by the caller)."""
    ths = "".join(f"<th>{esc(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{ths}</tr>{trs}</table>"


def claims_table(claims: list[dict[str, Any]]) -> str:
    """The claims of one run, a section per kind: the paper's claim and value (with its source), ours
    with its interval and how it was made, the declared tolerance, and the computed verdict."""
    out = []
    for kind, title in SECTIONS:
        rows = [claim_cells(c) for c in claims if c.get("kind") == kind]
        if rows:
            out.append(f"<h3>{esc(title)}</h3>" + html_table(claim_head(kind), rows))
    return "".join(out)


def kv_table(d: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td><code>{esc(fmt(v))}</code></td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def csv_table(path: Path, max_rows: int = 40) -> str:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return ""
    head, body = rows[0], rows[1:]
    more = f"<p>… {len(body) - max_rows} more rows in <code>{esc(path.name)}</code></p>" if len(body) > max_rows else ""

    def cell(v: str) -> str:
        try:
            return esc(f"{float(v):.4g}")
        except ValueError:
            return esc(v)

    trs = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in body[:max_rows])
    return "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + f"</tr>{trs}</table>{more}"


def embed_png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{esc(path.stem)}" src="data:image/png;base64,{data}">'


def run_section(run_path: Path, meta: dict[str, Any], env: dict[str, Any], summary: dict[str, Any], level: int = 2,
                *, img: Callable[[Path], str] = embed_png, csv_href: Callable[[str], str] | None = None,
                open_details: bool = False) -> str:
    """The body of one run: claims, figures with captions, notes, tables, config and environment.

    `img` renders a figure's PNG (embedded by default); `csv_href`, if given, links each table's CSV;
    `open_details` shows settings and environment unfolded.
    """
    h = f"h{level}"
    out = io.StringIO()
    out.write(f"<{h} id=\"{esc(meta['experiment'])}\">{esc(meta['experiment'])}: {esc(meta['title'])}</{h}>")
    out.write(f"<p>Reproduces <b>{esc(meta['paper'])}</b>. Preset: <code>{esc(meta.get('preset') or 'defaults')}</code>, "
              f"config hash <code>{esc(meta['config_hash'])}</code>, seed <code>{esc(env.get('seed'))}</code>, "
              f"{esc(env.get('seconds'))} s.</p>")
    out.write(claims_table(summary.get("claims", [])))
    for note in summary.get("notes", []):
        out.write(f'<p class="note">{esc(note)}</p>')
    for fig in summary.get("figures", []):
        png = next((f for f in fig["files"] if f.endswith(".png")), None)
        if png and (run_path / png).is_file():
            out.write(f"<figure>{img(run_path / png)}<figcaption>{esc(fig['caption'])}</figcaption></figure>")
        elif png:
            out.write(f'<p class="note">figure {esc(fig["name"])}: its PNG is missing from the run</p>')
    for name in summary.get("tables", []):
        path = run_path / "tables" / f"{name}.csv"
        if path.is_file():
            link = f' (<a href="{esc(csv_href(name))}">{esc(name)}.csv</a>)' if csv_href else ""
            out.write(f"<details><summary>table <code>{esc(name)}</code>{link}</summary>{csv_table(path)}</details>")
    unfold = " open" if open_details else ""
    out.write(f"<details{unfold}><summary>settings</summary>{kv_table(meta['config'])}</details>")
    out.write(f"<details{unfold}><summary>environment</summary>{kv_table(env)}</details>")
    return out.getvalue()


def page(title: str, body: str) -> str:
    # the empty icon stops browsers asking every server for /favicon.ico
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head><body>{body}</body></html>\n")


def render_run_report(run_path: Path, meta: dict[str, Any], env: dict[str, Any], summary: dict[str, Any]) -> str:
    return page(meta["experiment"], run_section(run_path, meta, env, summary, level=1))
