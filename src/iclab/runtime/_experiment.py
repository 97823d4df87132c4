"""The experiment registry and the context an experiment writes its results through.

An experiment is three small functions: compute (config -> saved tables and arrays), figures
(saved results -> figures) and verdicts (saved results -> claims):

    @experiment("spinglass.fig4b", Fig4bConfig, presets={"quick": {...}, "paper": {...}},
                title="ICL test loss vs prompt length", paper="Li, Bai, Huang 2024, Fig. 4b")
    def compute(cfg: Fig4bConfig, ctx: RunContext) -> None:
        ctx.table(df, "metrics")                      # everything the figures and verdicts need

    @compute.figures
    def figures(cfg: Fig4bConfig, res: Results, ctx: RunContext) -> None:
        ctx.figure(fig, "test_loss_vs_N", caption="...")   # drawn from res.table("metrics") only

    @compute.verdicts
    def verdicts(cfg: Fig4bConfig, res: Results, ctx: RunContext) -> None:
        ctx.claim("AMP − Adam at N=200", kind="paper-shape", paper="AMP tracks Adam", source="Fig. 4b",
                  ours=Estimate.mean(gaps), expect=("<=", 0.02))

Figures and verdicts read only what compute saved, so `iclab redraw RUN_DIR` rebuilds them (and the
report) without recomputing, and the runtime, not the experiment, computes every verdict
(`iclab.runtime._claims`). The runtime (`iclab.runtime._store`) owns where things go on disk;
experiments never touch paths themselves, which is what makes runs atomic and resumable.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ._claims import Claim, Estimate
from ._config import ExperimentConfig, build_config
from ._errors import IclabError

T = TypeVar("T")

# Research lines are the subpackages of `iclab` with an `experiments` package, found at load time;
# each registers itself (`register_line`). Users add their own experiment modules with
# ICLAB_EXPERIMENTS="my_pkg.my_exp,other_module" (inherited by workers).


@dataclass(frozen=True)
class ResearchLine:
    """A research line: the experiments whose names start with `<name>.` (the report groups by it)."""

    name: str
    title: str
    package: str
    paper: str
    quick_minutes: float = 1.0  # about how long its quick presets take on 2 cores: balances reproduce's lanes
    rank: int = 100  # order in listings and the report site (lowest first)


# The research lines, keyed by experiment-name prefix, in their `rank` order: filled by `register_line`
# as each line's experiments package is imported (the runtime names no line itself).
RESEARCH_LINES: dict[str, ResearchLine] = {}


def register_line(line: ResearchLine) -> ResearchLine:
    """Declare a research line (from its `experiments/__init__.py`, before its modules register)."""
    if RESEARCH_LINES.get(line.name, line) != line:
        raise RuntimeError(f"research line {line.name!r} registered twice, differently")
    RESEARCH_LINES[line.name] = line
    ordered = sorted(RESEARCH_LINES.values(), key=lambda l: (l.rank, l.name))
    RESEARCH_LINES.clear()
    RESEARCH_LINES.update((l.name, l) for l in ordered)
    return line


OTHER_LINE = ResearchLine("other", "Other experiments", "modules in ICLAB_EXPERIMENTS",
                          "experiments outside the research lines, e.g. your own", rank=1000)


def research_line(experiment_name: str) -> ResearchLine:
    """The line an experiment belongs to, by its name's prefix; anything else is `other`."""
    load_lines()
    return RESEARCH_LINES.get(experiment_name.split(".", 1)[0], OTHER_LINE)


def load_lines() -> dict[str, ResearchLine]:
    """Import every research line's experiments package (each registers its line and experiments);
    the experiment modules of ICLAB_EXPERIMENTS are `load_experiments`' business."""
    for mod in _line_packages():
        importlib.import_module(mod)
    return RESEARCH_LINES


def _line_packages() -> list[str]:
    """`iclab.<pkg>.experiments` for every subpackage of iclab that has one: the research lines."""
    import iclab

    found = []
    for mod in pkgutil.iter_modules(iclab.__path__):
        if mod.ispkg and importlib.util.find_spec(f"iclab.{mod.name}.experiments") is not None:
            found.append(f"iclab.{mod.name}.experiments")
    return sorted(found)


@dataclass
class FigureRecord:
    name: str
    caption: str
    files: list[str]


FORMAT = 2  # of a run directory: 2 = compute / figures / verdicts, claims with kinds and intervals


@dataclass
class Experiment:
    name: str
    config_cls: type[ExperimentConfig]
    fn: Callable[[Any, "RunContext"], None]  # compute: config -> saved tables, arrays, json
    presets: dict[str, dict[str, Any]]
    title: str
    paper: str  # citation of the figure / table reproduced
    description: str = ""
    reproduce: bool = True  # False: a tool (run on the user's own model), left out of `iclab reproduce`
    # Minutes of its quick preset on 2 cores, for an experiment that shares no trained model with the rest of
    # its line: `iclab reproduce` may then run it in another lane than its line (None: with its line).
    lane_minutes: float | None = None
    draw: Callable[[Any, "Results", "RunContext"], None] | None = None  # saved results -> figures
    judge: Callable[[Any, "Results", "RunContext"], None] | None = None  # saved results -> claims

    def figures(self, fn: Callable[[Any, Results, RunContext], None]) -> Callable[[Any, Results, RunContext], None]:
        """Decorator: register `fn(cfg, results, ctx)` as this experiment's figures."""
        self.draw = fn
        return fn

    def verdicts(self, fn: Callable[[Any, Results, RunContext], None]) -> Callable[[Any, Results, RunContext], None]:
        """Decorator: register `fn(cfg, results, ctx)` as this experiment's claims."""
        self.judge = fn
        return fn

    def __call__(self, cfg: Any, ctx: RunContext) -> None:
        """Compute, then draw and judge from what was saved (the order `execute` follows)."""
        ctx.phase = "compute"
        self.fn(cfg, ctx)
        ctx.save_computed()
        self.finish(cfg, ctx)

    def finish(self, cfg: Any, ctx: RunContext) -> None:
        """Figures and claims from the saved results in ctx.out_dir (a fresh run, or `iclab redraw`)."""
        res = Results(ctx.out_dir)
        if self.draw is not None:
            from ._plots import pyplot

            pyplot()  # the headless backend and iclab's style, also for figures drawn with plt directly
            ctx.phase = "figures"
            self.draw(cfg, res, ctx)
        if self.judge is not None:
            ctx.phase = "verdicts"
            self.judge(cfg, res, ctx)
        ctx.phase = "done"

    def make_config(self, preset: str | None = None, overrides: dict[str, Any] | None = None,
                    saved: bool = False) -> ExperimentConfig:
        """The config of a preset with overrides; `saved=True` reads back a finished run's config, whose
        machine-dependent values (its device) are kept as recorded rather than checked against this machine."""
        values: dict[str, Any] = {}
        if preset is not None:
            if preset not in self.presets:
                raise IclabError(
                    f"experiment {self.name} has no preset {preset!r}; choose one of {sorted(self.presets)}"
                )
            values.update(self.presets[preset])
        values.update(overrides or {})
        return build_config(self.config_cls, values, where=self.name, saved=saved)


_REGISTRY: dict[str, Experiment] = {}
_LOADED = False


def experiment(
    name: str,
    config: type[ExperimentConfig],
    *,
    presets: dict[str, dict[str, Any]],
    title: str,
    paper: str,
    reproduce: bool = True,
    lane_minutes: float | None = None,
) -> Callable[[Callable[[Any, RunContext], None]], Experiment]:
    """Register `fn(cfg, ctx)` as the compute step of experiment `name` (e.g. ``"spinglass.fig4b"``);
    the returned Experiment's `.figures` and `.verdicts` decorators register the other two steps."""
    for p, values in presets.items():  # fail at import time, not at run time
        build_config(config, values, where=f"{name} preset {p!r}")

    def deco(fn: Callable[[Any, RunContext], None]) -> Experiment:
        if name in _REGISTRY:
            raise RuntimeError(f"experiment {name} registered twice")
        exp = Experiment(name, config, fn, presets, title, paper, inspect.cleandoc(fn.__doc__ or ""), reproduce,
                         lane_minutes)
        _REGISTRY[name] = exp
        return exp

    return deco


def _extra_modules() -> list[str]:
    return [m.strip() for m in os.environ.get("ICLAB_EXPERIMENTS", "").split(",") if m.strip()]


def _import_extra(mod: str) -> None:
    """Import one module of ICLAB_EXPERIMENTS (it registers its experiments), or say what to check."""
    try:
        importlib.import_module(mod)
    except ModuleNotFoundError as err:
        if err.name == mod.split(".")[0]:
            raise IclabError(f"cannot import experiment module {mod!r} from ICLAB_EXPERIMENTS; "
                             "check the name and that it is on PYTHONPATH") from None
        raise


def load_experiments() -> dict[str, Experiment]:
    """Every experiment: all research lines and the modules of ICLAB_EXPERIMENTS, imported once."""
    global _LOADED
    if not _LOADED:
        _LOADED = True  # set first: a line's package may ask for its line while it loads
        try:
            load_lines()
            for mod in _extra_modules():
                _import_extra(mod)
        except BaseException:
            _LOADED = False
            raise
    return dict(sorted(_REGISTRY.items()))


def _load_where_named(name: str) -> None:
    """Import only what `name` points to: the line package of its prefix (`LINE.fig` ->
    iclab.LINE.experiments), or, for a name outside the lines, the ICLAB_EXPERIMENTS modules.
    A run, a sweep worker or a Ray worker then starts without importing the other lines (and an
    experiment of your own without torch or transformers, if it needs neither): bench/bench_startup.py."""
    prefix = name.split(".", 1)[0]
    package = f"iclab.{prefix}.experiments"
    try:
        found = prefix.isidentifier() and importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:  # no iclab.<prefix> at all
        found = False
    if found:
        importlib.import_module(package)
    else:
        for mod in _extra_modules():
            _import_extra(mod)


def get_experiment(name: str) -> Experiment:
    if name not in _REGISTRY and not _LOADED:
        _load_where_named(name)
    registry = _REGISTRY if name in _REGISTRY else load_experiments()
    if name not in registry:
        close = [n for n in registry if name.split(".")[-1] in n]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise IclabError(f"unknown experiment {name!r}{hint}; run `iclab list` to see them all")
    return registry[name]


class Results:
    """A run's saved results, as the figures and verdicts steps read them (and nothing else)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        computed = json.loads((self.path / COMPUTED).read_text())
        self.tables: list[str] = computed["tables"]
        self.notes: list[str] = computed["notes"]

    def table(self, name: str = "metrics") -> Any:
        import pandas as pd

        path = self.path / "tables" / f"{name}.csv"
        if not path.is_file():
            raise IclabError(f"run {self.path} has no table {name!r}; its tables: {', '.join(self.tables) or 'none'}")
        return pd.read_csv(path)

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        path = self.path / "arrays" / f"{name}.npz"
        if not path.is_file():
            raise IclabError(f"run {self.path} has no arrays {name!r}")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def json(self, name: str) -> Any:
        path = self.path / "data" / f"{name}.json"
        if not path.is_file():
            raise IclabError(f"run {self.path} has no data {name!r}")
        return json.loads(path.read_text(encoding="utf-8"))


COMPUTED = "computed.json"  # what compute saved (tables, notes) and the run's format


@dataclass
class RunContext:
    """Where an experiment writes: tables, arrays and data (compute), figures (figures), claims
    (verdicts). Paths are the runtime's business."""

    out_dir: Path
    experiment: str
    quiet: bool = False
    runs_dir: Path | None = None  # the store this run belongs to: experiments may execute other runs in it
    figures: list[FigureRecord] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    phase: str = "compute"  # compute | figures | verdicts | done: what may be written now

    def _only_in(self, phase: str, what: str) -> None:
        if self.phase != phase:
            raise RuntimeError(f"{self.experiment}: {what} belong in the experiment's {phase} step "
                               f"(called during {self.phase}); figures and verdicts read saved results only")

    def save_computed(self) -> None:
        """Record what compute saved: `Results` and `iclab redraw` read it back."""
        (self.out_dir / COMPUTED).write_text(dump_json({"format": FORMAT, "tables": self.tables, "notes": self.notes}))

    # -- outputs ---------------------------------------------------------------------------
    def figure(self, fig: Any, name: str, caption: str) -> None:
        """Save a matplotlib figure as PNG and SVG (laid out once for both: `save_figure`), record its
        caption, and close it."""
        import matplotlib.pyplot as plt

        from ._plots import save_figure

        self._only_in("figures", "figures")
        paths = save_figure(fig, self.out_dir / "figures" / name)
        files = [str(path.relative_to(self.out_dir)) for path in paths]
        plt.close(fig)
        self.figures.append(FigureRecord(name, caption, files))

    def table(self, df: Any, name: str = "metrics") -> None:
        """Save a tidy pandas DataFrame as CSV (`metrics` is the run's main table)."""
        self._only_in("compute", "tables")
        path = self.out_dir / "tables" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
        self.tables.append(name)

    def arrays(self, name: str, **arrays: Any) -> None:
        """Save raw arrays (npz, no pickles) so figures can be redrawn without rerunning."""
        self._only_in("compute", "arrays")
        path = self.out_dir / "arrays" / f"{name}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items()})

    def json(self, name: str, obj: Any) -> None:
        """Save JSON-serialisable data (e.g. the exact prompts a number came from) as data/<name>.json."""
        self._only_in("compute", "data")
        path = self.out_dir / "data" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    def claim(self, name: str, *, kind: str, paper: str, ours: Estimate, paper_value: float | list[float] | None = None,
              source: str | None = None, tolerance: float | None = None, rel_tolerance: float | None = None,
              expect: tuple[Any, ...] | None = None, note: str = "") -> None:
        """Put our estimate beside a statement of the paper, under a tolerance declared here; the runtime
        computes the verdict (`iclab.runtime._claims`). A malformed claim is a one-line IclabError."""
        self._only_in("verdicts", "claims")
        if any(c.name == name for c in self.claims):
            raise IclabError(f"{self.experiment}: claim {name!r} stated twice; give each claim its own name")
        if isinstance(paper_value, np.ndarray):
            paper_value = paper_value.tolist()
        self.claims.append(Claim(name, kind, paper, ours, paper_value, source, tolerance, rel_tolerance,
                                 expect, note))

    def note(self, text: str) -> None:
        """A sentence for the report: a deviation from the paper, a documented choice (any step)."""
        self.notes.append(str(text))

    # -- progress --------------------------------------------------------------------------
    def progress(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate with a rich progress bar (silent when quiet or not a terminal)."""
        from ._progress import track

        yield from track(items, description=f"{self.experiment}: {description}", total=total, quiet=self.quiet)

    def log(self, msg: str) -> None:
        if not self.quiet:
            from rich.console import Console

            Console(stderr=True).print(f"[dim]{self.experiment}[/dim] {msg}")

    def summary(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "figures": [vars(f) for f in self.figures],
            "tables": self.tables,
            "claims": [c.to_dict() for c in self.claims],
            "notes": self.notes,
        }


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str)
