"""Print one research line's claims as markdown tables, from finished runs: the docs paste this output,
so no number or verdict in them is typed in.

    .venv/bin/python scripts/claims_tables.py spinglass [--runs-dir runs]

As on the report site, the newest run of each experiment and preset counts. First the scoreboard of
the paper's claims (paper-value and paper-shape), then the sanity checks and the engineering numbers,
apart, then the number of claims per kind and verdict.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from iclab.runtime import finished_runs
from iclab.runtime import KINDS, PAPER_KINDS, VERDICTS, count_verdicts
from iclab.runtime import load_lines
from iclab.runtime._report import SECTIONS, claim_head, claim_text
from iclab.runtime._results import newest_runs, run_experiment

Run = dict[str, Any]


def md(text: str) -> str:
    """Text from a claim, safe in a markdown table cell (no stray emphasis, code or column breaks)."""
    for ch in "\\`*_|":
        text = text.replace(ch, "\\" + ch)
    return text.replace("\n", " ")


def md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def claim_row(run: Run, saved: dict[str, Any]) -> list[str]:
    """experiment | claim (quantity) | paper's value (source) | ours ± CI (method) | tolerance | verdict: note;
    sanity and engineering without the paper's value."""
    t = {k: md(v) for k, v in claim_text(saved).items()}
    where = f"`{run_experiment(run)}` ({md(run['meta'].get('preset') or 'defaults')})"
    verdict = f"**{t['verdict']}**" + (f": {t['note']}" if t["note"] else "")
    paper = [f"{t['paper_value'] or '—'} ({t['source']})"] if t["kind"] in PAPER_KINDS else []
    return [where, f"{t['paper']} ({t['name']})", *paper, f"{t['ours']} ({t['method']})", t["tolerance"], verdict]


def section(runs: list[Run], kinds: tuple[str, ...], title: str) -> str:
    rows = [claim_row(r, c) for r in runs for kind in kinds for c in r["summary"].get("claims", []) if c["kind"] == kind]
    if not rows:
        return f"**{title}**: none.\n"
    return f"**{title}**\n\n{md_table(['experiment', *claim_head(kinds[0])], rows)}\n"


def counts(runs: list[Run]) -> str:
    tally = count_verdicts([c for r in runs for c in r["summary"].get("claims", [])])
    rows = [[kind, str(sum(tally[kind].values())),
             ", ".join(f"{tally[kind][v]} {v}" for v in (*VERDICTS[kind], "reported") if tally[kind].get(v))]
            for kind in KINDS if tally[kind]]
    return "**Claims per kind and verdict**\n\n" + md_table(["kind", "claims", "verdicts"], rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("line", choices=sorted(load_lines()), help="the research line")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="the run store (default: runs)")
    args = parser.parse_args(argv)
    runs = [r for r in newest_runs(finished_runs(args.runs_dir)) if run_experiment(r).startswith(f"{args.line}.")]
    if not runs:
        sys.exit(f"no finished runs of {args.line}.* in {args.runs_dir}/; run `iclab reproduce --quick --only "
                 f"{args.line}.` first (or pass --runs-dir)")
    runs.sort(key=lambda r: (run_experiment(r), r["meta"].get("preset") or ""))
    titles = dict(SECTIONS)
    print(f"From the newest run of each experiment and preset ({len(runs)} run{'s' * (len(runs) != 1)}).\n")
    print(section(runs, PAPER_KINDS, "The paper's claims"))
    print(section(runs, ("sanity",), titles["sanity"]))
    print(section(runs, ("engineering",), titles["engineering"]))
    print(counts(runs), end="")


if __name__ == "__main__":
    main()
