"""Compare two run stores experiment by experiment: are the results the same?

    python scripts/compare_runs.py OLD_RUNS NEW_RUNS

For every run (experiment and config hash) finished in both stores, it compares the computed tables
(tables/*.csv, value for value, timing columns such as `seconds` and `tokens_per_s` left out), the raw
arrays (arrays/*.npz, byte for byte), and every claim's number, interval and verdict (engineering
claims, which are wall times, left out). Claim texts and sources are compared separately, so a
reworded source shows as such and not as a changed result. Exit status 1 if any result differs.
Used to check that a refactor changed no number.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from iclab.runtime import finished_runs


TIMING = re.compile(r"(^|_)(seconds|tokens_per_s|wall)$")  # columns that time a run, not its results


def by_run(runs_dir: Path) -> dict[str, Path]:
    """Finished runs keyed `<experiment>/<config-hash>` (the store's layout)."""
    return {f"{Path(r['path']).parent.name}/{Path(r['path']).name}": Path(r["path"]) for r in finished_runs(runs_dir)}


def tables(path: Path) -> dict[str, object]:
    out = {}
    for f in sorted((path / "tables").glob("*.csv")):
        df = pd.read_csv(f, keep_default_na=False)
        out[f.name] = df.drop(columns=[c for c in df.columns if TIMING.search(str(c))])
    return out


def arrays(path: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted((path / "arrays").glob("*")) if f.is_file()}


def claims(path: Path) -> tuple[list, list]:
    summary = json.loads((path / "summary.json").read_text())
    kept = [c for c in summary.get("claims", []) if c.get("kind") != "engineering"]
    numbers = [(c.get("name"), c.get("kind"), json.dumps(c.get("ours"), sort_keys=True), c.get("verdict")) for c in kept]
    texts = [(c.get("name"), c.get("paper"), c.get("source")) for c in kept]
    return numbers, texts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    args = ap.parse_args()
    old, new = by_run(args.old), by_run(args.new)
    only = sorted(old.keys() ^ new.keys())
    differ = 0
    for name in sorted(old.keys() & new.keys()):
        a, b = old[name], new[name]
        ta_, tb_ = tables(a), tables(b)
        bad = sorted(k for k in ta_.keys() | tb_.keys()
                     if k not in ta_ or k not in tb_ or not ta_[k].equals(tb_[k]))
        parts = [f"tables {'same' if not bad else 'DIFFER: ' + ', '.join(bad)} ({len(ta_)})"]
        aa, ab = arrays(a), arrays(b)
        bad = sorted(k for k in aa.keys() | ab.keys() if aa.get(k) != ab.get(k))
        parts.append(f"arrays {'same' if not bad else 'DIFFER: ' + ', '.join(bad)} ({len(aa)})")
        (na, ta), (nb, tb) = claims(a), claims(b)
        parts.append(f"claims {'same' if na == nb else 'DIFFER'} ({len(na)})")
        if ta != tb:
            parts.append("claim texts reworded")
        differ += any("DIFFER" in p for p in parts)
        print(f"{name:42s} " + "; ".join(parts))
    for name in only:
        print(f"{name:42s} only in {'old' if name in old else 'new'}")
    print(f"{len(old.keys() & new.keys())} runs compared ({len(only)} in one store only), {differ} with different results")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
