"""Shared matplotlib helpers: a headless backend and one look for every figure.

matplotlib loads on first use (the runtime and the CLI import without it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

STYLE = {
    "figure.dpi": 110,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 9,
    "svg.hashsalt": "iclab",  # deterministic SVG ids
}
_styled = False


def pyplot() -> Any:
    """`matplotlib.pyplot`, on the headless backend (CI, workers, ssh) with iclab's style applied once."""
    global _styled
    import matplotlib

    if not _styled:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not _styled:
        plt.rcParams.update(STYLE)
        _styled = True
    return plt


def save_figure(fig: Any, stem: Any, formats: tuple[str, ...] = ("png", "svg"), dpi: int = 120) -> list[Any]:
    """Save `fig` as STEM.png, STEM.svg, ... cropped to its tight box, and return the paths.

    The figure is laid out and its tight box found once for all files: `savefig(..., bbox_inches="tight")`
    would run the (constrained) layout again for each, which costs more than drawing the figure
    (bench/bench_figures.py)."""
    from pathlib import Path

    plt = pyplot()
    fig.draw_without_rendering()  # the layout engine places every artist, once
    bbox = fig.get_tightbbox().padded(plt.rcParams["savefig.pad_inches"])  # what "tight" would crop to
    fig.set_layout_engine(None)  # laid out already: the saves below must not redo it
    paths = []
    for ext in formats:
        path = Path(f"{stem}.{ext}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches=bbox, **({"metadata": {"Date": None}} if ext == "svg" else {}))
        paths.append(path)
    return paths


def subplots(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (4.0, 3.2), **kw: Any):
    """`plt.subplots` with a per-panel size, so multi-panel figures scale sensibly."""
    fig, axes = pyplot().subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False, **kw)
    fig.set_layout_engine("constrained")
    return fig, axes


def heatmap(ax: Any, M: Any, title: str = "", *, cmap: str = "RdBu_r", symmetric: bool = True, colorbar: bool = True):
    """A matrix as an image; diverging and centred on 0 by default (weights, couplings, fields)."""
    M = np.asarray(M, dtype=float)
    vmax = float(np.nanmax(np.abs(M))) if symmetric and np.isfinite(M).any() else None
    im = ax.imshow(M, cmap=cmap, vmin=-vmax if vmax else None, vmax=vmax, interpolation="nearest")
    ax.set_title(title)
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8)
    return im
