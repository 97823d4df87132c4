"""Compare two run stores experiment by experiment: are the results the same?

    python scripts/compare_runs.py OLD_RUNS NEW_RUNS

For every experiment with a finished run in both stores (the newest run of each), it compares the
computed tables (tables/*.csv), the raw arrays (arrays/*.npz), and every claim's number, interval and
verdict (engineering claims, which are wall times, left out), byte for byte or value for value. Claim
texts and sources are compared separately, so a reworded source shows as such and not as a changed
result. Exit status 1 if any result differs. Used to check that a refactor changed no number.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from iclab.runtime import finished_runs


def newest(runs_dir: Path) -> dict[str, Path]:
    out: dict[str, tuple[str, Path]] = {}
    for run in finished_runs(runs_dir):
        path = Path(run["path"])
        started = json.loads((path / "env.json").read_text()).get("started", "") if (path / "env.json").is_file() else ""
        if run["experiment"] not in out or started > out[run["experiment"]][0]:
            out[run["experiment"]] = (started, path)
    return {name: path for name, (_, path) in out.items()}


def files(path: Path, sub: str) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted((path / sub).glob("*")) if f.is_file()}


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
    old, new = newest(args.old), newest(args.new)
    differ = 0
    for name in sorted(old.keys() | new.keys()):
        if name not in old or name not in new:
            print(f"{name:32s} only in {'old' if name in old else 'new'}")
            continue
        a, b = old[name], new[name]
        parts = []
        for sub in ("tables", "arrays"):
            fa, fb = files(a, sub), files(b, sub)
            bad = sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))
            parts.append(f"{sub} {'same' if not bad else 'DIFFER: ' + ', '.join(bad)} ({len(fa)} files)")
        (na, ta), (nb, tb) = claims(a), claims(b)
        parts.append(f"claims {'same' if na == nb else 'DIFFER'} ({len(na)})")
        if ta != tb:
            parts.append("claim texts reworded")
        differ += any("DIFFER" in p for p in parts)
        print(f"{name:32s} {a.name} {'=' if a.name == b.name else '≠'} {b.name}  " + "; ".join(parts))
    print(f"{len(old.keys() & new.keys())} experiments compared, {differ} with different results")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
