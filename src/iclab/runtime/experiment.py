"""The experiment registry and the context an experiment writes its results through.

An experiment is a small Python function decorated with `@experiment(...)`:

    @experiment("spinglass.fig4b", Fig4bConfig, presets={"quick": {...}, "paper": {...}},
                title="ICL test loss vs prompt length", paper="Li, Bai, Huang 2024, Fig. 4b")
    def run(cfg: Fig4bConfig, ctx: RunContext) -> None:
        ...
        ctx.table(df, "metrics")
        ctx.figure(fig, "test_loss_vs_N", caption="...")
        ctx.claim("AMP vs Adam", paper="AMP tracks Adam", ours=gap, target="<= 0.02", passed=gap <= 0.02)

The runtime (`iclab.runtime.store`) owns where things go on disk; experiments never
touch paths themselves, which is what makes runs atomic and resumable.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .config import ExperimentConfig, build_config
from .errors import IclabError

T = TypeVar("T")

# Modules whose import registers experiments; one line per research line. Users add their
# own experiment files with ICLAB_EXPERIMENTS="my_pkg.my_exp,other_module" (inherited by workers).
EXPERIMENT_MODULES = [
    "iclab.linear.experiments",
    "iclab.taskvectors.experiments",
    "iclab.grammar.experiments",
]


@dataclass(frozen=True)
class ResearchLine:
    """A research line: the experiments whose names start with `<name>.` (the report groups by it)."""

    name: str
    title: str
    package: str
    paper: str


# The research lines, keyed by experiment-name prefix: the one place their names and papers live.
RESEARCH_LINES = {
    "spinglass": ResearchLine("spinglass", "Linear attention as a spin glass", "iclab.linear",
                              "Li, Bai, Huang 2024, Spin glass model of in-context learning"),
    "taskvectors": ResearchLine("taskvectors", "Task vectors in pretrained LMs", "iclab.taskvectors",
                                "Hendel, Geva, Globerson 2023, In-context learning creates task vectors"),
    "grammar": ResearchLine("grammar", "ICL from compositional structure", "iclab.grammar",
                            "Hahn, Goyal 2023, A theory of emergent in-context learning as implicit structure induction"),
}
OTHER_LINE = ResearchLine("other", "Other experiments", "modules in ICLAB_EXPERIMENTS",
                          "experiments outside the three research lines, e.g. your own")


def research_line(experiment_name: str) -> ResearchLine:
    """The line an experiment belongs to, by its name's prefix; anything else is `other`."""
    return RESEARCH_LINES.get(experiment_name.split(".", 1)[0], OTHER_LINE)


@dataclass
class Claim:
    """One number of ours beside the paper's statement of it."""

    name: str
    paper: str  # what the paper claims, in words or numbers
    ours: Any  # the value we computed
    target: str | None = None  # the acceptance criterion, e.g. "<= 0.02"
    passed: bool | None = None  # None: qualitative, no criterion


@dataclass
class FigureRecord:
    name: str
    caption: str
    files: list[str]


@dataclass
class Experiment:
    name: str
    config_cls: type[ExperimentConfig]
    fn: Callable[[Any, "RunContext"], None]
    presets: dict[str, dict[str, Any]]
    title: str
    paper: str  # citation of the figure / table reproduced
    description: str = ""

    def make_config(self, preset: str | None = None, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
        values: dict[str, Any] = {}
        if preset is not None:
            if preset not in self.presets:
                raise IclabError(
                    f"experiment {self.name} has no preset {preset!r}; choose one of {sorted(self.presets)}"
                )
            values.update(self.presets[preset])
        values.update(overrides or {})
        return build_config(self.config_cls, values, where=self.name)


_REGISTRY: dict[str, Experiment] = {}
_LOADED = False


def experiment(
    name: str,
    config: type[ExperimentConfig],
    *,
    presets: dict[str, dict[str, Any]],
    title: str,
    paper: str,
) -> Callable[[Callable[[Any, RunContext], None]], Callable[[Any, RunContext], None]]:
    """Register `fn(cfg, ctx)` as experiment `name` (e.g. ``"spinglass.fig4b"``)."""
    for p, values in presets.items():  # fail at import time, not at run time
        build_config(config, values, where=f"{name} preset {p!r}")

    def deco(fn: Callable[[Any, RunContext], None]) -> Callable[[Any, RunContext], None]:
        if name in _REGISTRY:
            raise RuntimeError(f"experiment {name} registered twice")
        _REGISTRY[name] = Experiment(name, config, fn, presets, title, paper, inspect.cleandoc(fn.__doc__ or ""))
        return fn

    return deco


def load_experiments() -> dict[str, Experiment]:
    global _LOADED
    if not _LOADED:
        extra = [m.strip() for m in os.environ.get("ICLAB_EXPERIMENTS", "").split(",") if m.strip()]
        for mod in EXPERIMENT_MODULES + extra:
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as err:
                if mod in extra and err.name == mod.split(".")[0]:
                    raise IclabError(f"cannot import experiment module {mod!r} from ICLAB_EXPERIMENTS; "
                                     "check the name and that it is on PYTHONPATH") from None
                raise
        _LOADED = True
    return dict(sorted(_REGISTRY.items()))


def get_experiment(name: str) -> Experiment:
    registry = load_experiments()
    if name not in registry:
        close = [n for n in registry if name.split(".")[-1] in n]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise IclabError(f"unknown experiment {name!r}{hint}; run `iclab list` to see them all")
    return registry[name]


@dataclass
class RunContext:
    """Where an experiment writes: tables, figures, arrays, claims. Paths are the runtime's business."""

    out_dir: Path
    experiment: str
    quiet: bool = False
    runs_dir: Path | None = None  # the store this run belongs to: experiments may execute other runs in it
    figures: list[FigureRecord] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # -- outputs ---------------------------------------------------------------------------
    def figure(self, fig: Any, name: str, caption: str) -> None:
        """Save a matplotlib figure as PNG and SVG, record its caption, and close it."""
        import matplotlib.pyplot as plt

        files = []
        for ext in ("png", "svg"):
            path = self.out_dir / "figures" / f"{name}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=120, bbox_inches="tight", **({"metadata": {"Date": None}} if ext == "svg" else {}))
            files.append(str(path.relative_to(self.out_dir)))
        plt.close(fig)
        self.figures.append(FigureRecord(name, caption, files))

    def table(self, df: Any, name: str = "metrics") -> None:
        """Save a tidy pandas DataFrame as CSV (`metrics` is the run's main table)."""
        path = self.out_dir / "tables" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
        self.tables.append(name)

    def arrays(self, name: str, **arrays: Any) -> None:
        """Save raw arrays (npz, no pickles) so figures can be redrawn without rerunning."""
        path = self.out_dir / "arrays" / f"{name}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items()})

    def json(self, name: str, obj: Any) -> None:
        """Save JSON-serialisable data (e.g. the exact prompts a number came from) as data/<name>.json."""
        path = self.out_dir / "data" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    def claim(self, name: str, *, paper: str, ours: Any, target: str | None = None, passed: bool | None = None) -> None:
        """Put one of our numbers beside the paper's claim (and an acceptance target, if any)."""
        if isinstance(ours, (np.floating, np.integer)):
            ours = ours.item()
        self.claims.append(Claim(name, paper, ours, target, None if passed is None else bool(passed)))

    def note(self, text: str) -> None:
        """A sentence for the report: a deviation from the paper, a documented choice."""
        self.notes.append(text)

    # -- progress --------------------------------------------------------------------------
    def progress(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate with a rich progress bar (silent when quiet or not a terminal)."""
        from .progress import track

        yield from track(items, description=f"{self.experiment}: {description}", total=total, quiet=self.quiet)

    def log(self, msg: str) -> None:
        if not self.quiet:
            from rich.console import Console

            Console(stderr=True).print(f"[dim]{self.experiment}[/dim] {msg}")

    def summary(self) -> dict[str, Any]:
        return {
            "figures": [vars(f) for f in self.figures],
            "tables": self.tables,
            "claims": [vars(c) for c in self.claims],
            "notes": self.notes,
        }


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str)
