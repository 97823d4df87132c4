"""Benchmark: finding an experiment by name, importing only its line vs every line, side by side.

Every `iclab run`, sweep worker and Ray worker starts by looking its experiment up. Both ways run in
a fresh Python process each time (what a worker pays), alternating, and must find the same experiment:

* ours (`get_experiment(name)`): imports the package the name points to (`LINE.x` ->
  iclab.LINE.experiments), or only the ICLAB_EXPERIMENTS modules for a name outside the lines;
* every line (how the lookup first worked): `load_experiments()` imports all research lines and
  the ICLAB_EXPERIMENTS modules, then looks the name up.

    .venv/bin/python bench/bench_startup.py            # one experiment per line + one of your own (tests' toy)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAYS = {
    "ours": "from iclab.runtime import get_experiment; print(get_experiment({name!r}).name)",
    "every line": "from iclab.runtime import load_experiments; print(load_experiments()[{name!r}].name)",
}


def seconds(code: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ICLAB_EXPERIMENTS": "tests.runtime.toy"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, out.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", default="spinglass.fig2,taskvectors.main,grammar.train,test.toy")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"{'experiment':<18} {'ours (s)':>9} {'every line (s)':>15} {'speed-up':>9}   (median of {args.repeats})")
    for name in args.names.split(","):
        times: dict[str, list[float]] = {way: [] for way in WAYS}
        for _ in range(args.repeats):
            for way, code in WAYS.items():  # alternating, so both see the same machine
                t, found = seconds(code.format(name=name))
                assert found == name, (way, found)
                times[way].append(t)
        ours, every = statistics.median(times["ours"]), statistics.median(times["every line"])
        print(f"{name:<18} {ours:9.2f} {every:15.2f} {every / ours:8.2f}x")


if __name__ == "__main__":
    main()
