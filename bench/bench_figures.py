"""Benchmark: saving a run's figure as PNG and SVG, laid out once vs `savefig(bbox_inches="tight")` per file.

Every experiment saves each figure twice (PNG for the report, SVG for papers). With a constrained layout
(what `iclab.runtime.subplots` sets), `savefig(..., bbox_inches="tight")` lays the figure out again for
each file before drawing it. Ours (`RunContext.figure`) lays it out and finds the tight box once, then
draws both files. The figure: six panels of four lines with legends, one image with a colour bar.

    .venv/bin/python bench/bench_figures.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from iclab.runtime import pyplot, save_figure, subplots


def make():
    fig, axes = subplots(2, 3, size=(4.0, 3.2))
    rng = np.random.default_rng(0)
    for ax in axes.flat:
        for k in range(4):
            ax.plot(np.arange(50), rng.normal(size=50).cumsum(), marker=".", label=f"series {k}")
        ax.set(xlabel="step", ylabel="value", title="a panel")
        ax.legend(fontsize=7)
    fig.colorbar(axes[0, 0].imshow(rng.normal(size=(20, 20))), ax=axes[0, 0])
    fig.suptitle("six panels")
    return fig


def per_file(fig, stem: Path) -> Path:
    """The plain way: each savefig lays the figure out and crops it itself."""
    for ext in ("png", "svg"):
        fig.savefig(f"{stem}.{ext}", dpi=120, bbox_inches="tight")
    return Path(f"{stem}.png")


def once(fig, stem: Path) -> Path:
    """What `RunContext.figure` does (`iclab.runtime.save_figure`): one layout, one tight box, two draws."""
    return save_figure(fig, stem)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    plt = pyplot()
    times: dict[str, list[float]] = {"per file": [], "once": []}
    sizes: dict[str, tuple[int, int]] = {}
    out = Path(tempfile.mkdtemp(prefix="iclab-bench-figures-"))
    for _ in range(args.repeats):  # interleaved, so both see the same machine
        for way, fn in (("per file", per_file), ("once", once)):
            fig = make()
            t = time.perf_counter()
            png = fn(fig, out / way.replace(" ", "_")).read_bytes()
            times[way].append(time.perf_counter() - t)
            plt.close(fig)
            sizes[way] = (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big"))  # PNG width, height
    best = {k: min(v) for k, v in times.items()}
    print(f"best of {args.repeats}, PNG + SVG of one six-panel figure")
    print("| way | layouts | wall (s) | PNG size (px) | speed-up |")
    print("|---|---|---|---|---|")
    for way, layouts in (("per file", 2), ("once", 1)):
        w, h = sizes[way]
        print(f"| {way} | {layouts} | {best[way]:.3f} | {w} × {h} | {best['per file'] / best[way]:.2f}× |")


if __name__ == "__main__":
    main()
