"""Benchmark: one grid of quick runs on the local process pool vs on Ray, side by side.

Both sweeps run the same 32 grid points (the quick preset of `spinglass.fig2` over 32 seeds by
default) into fresh run stores with the same number of CPUs, and must produce identical results.
The Ray time includes starting (and stopping) a private Ray instance on this machine, as
`iclab sweep --backend ray` without --address does; `--address` measures an existing cluster instead.

    .venv/bin/python bench/bench_sweep_backends.py
    .venv/bin/python bench/bench_sweep_backends.py --experiment spinglass.figS3 --points 32
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from iclab.runtime._ray_backend import RayExecutor
from iclab.runtime import result_files
from iclab.runtime import LocalExecutor
from iclab.runtime import sweep



def timed_sweep(experiment: str, grid: dict, runs: Path, executor) -> float:
    t0 = time.perf_counter()
    results = sweep(experiment, grid, runs, preset="quick", executor=executor)
    seconds = time.perf_counter() - t0
    bad = [r for r in results if r.status != "done"]
    assert not bad, f"{len(bad)} points did not finish: {bad[0].error}"
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="spinglass.fig2")
    ap.add_argument("--points", type=int, default=32, help="Grid points (seeds 0..points-1).")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="Workers / Ray CPUs.")
    ap.add_argument("--address", default=None, help="Use this Ray cluster instead of starting one.")
    args = ap.parse_args()
    grid = {"seed": list(range(args.points))}

    with tempfile.TemporaryDirectory(prefix="iclab-bench-") as tmp:
        local = timed_sweep(args.experiment, grid, Path(tmp) / "local", LocalExecutor(args.cpus))
        ray = timed_sweep(args.experiment, grid, Path(tmp) / "ray",
                          RayExecutor(address=args.address, num_cpus=args.cpus))
        a, b = result_files(Path(tmp) / "local"), result_files(Path(tmp) / "ray")
        same = a.keys() == b.keys() and all(a[k] == b[k] for k in a)

    print(f"{args.experiment} quick preset, {args.points} points, {args.cpus} CPUs")
    print("| backend | wall time (s) | per point (s) | ratio to local |")
    print("|---|---|---|---|")
    print(f"| local process pool ({args.cpus} workers) | {local:.1f} | {local / args.points:.2f} | 1.00× |")
    where = args.address or f"private instance, {args.cpus} CPUs, start-up included"
    print(f"| Ray ({where}) | {ray:.1f} | {ray / args.points:.2f} | {ray / local:.2f}× |")
    print(f"results identical: {same} ({len(a)} files compared)")
    assert same, "local and Ray results differ"


if __name__ == "__main__":
    main()
