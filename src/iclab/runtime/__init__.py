"""The shared runtime: configs, the experiment registry, the run store, sweeps, results and reports.

Research lines build on this API only; the modules behind it are private. Importing it loads
neither torch nor pandas (they load when a run, a table or a figure needs them).

    @experiment("myline.fig1", MyConfig, presets={"quick": {...}}, paper="…")   # a small file per experiment
    def compute(cfg: MyConfig, ctx: RunContext) -> None: ...
    register_line(ResearchLine("myline", "…", "iclab.myline", "…"))             # in iclab/myline/experiments/
"""

from ._claims import KINDS, PAPER_KINDS, VERDICTS, Claim, Estimate, count_verdicts, judge
from ._config import ExperimentConfig
from ._errors import IclabError, TaskLost
from ._executors import Executor, LocalExecutor, SerialExecutor, make_executor
from ._experiment import (Experiment, ResearchLine, Results, RunContext, experiment, get_experiment, load_experiments,
                          load_lines, register_line)
from ._export import export_mlflow, export_wandb
from ._plots import heatmap, pyplot, save_figure, subplots
from ._reproduce import reproduce
from ._results import claims, results
from ._seeding import make_gen, make_rng, seed_sequence
from ._site import build_site
from ._store import RunResult, execute, finished_runs, is_complete, redraw, result_files, run_dir
from ._sweep import RunSpec, run_spec, sweep
from ._threads import compute_threads, lm_threads, torch_threads
from ._validators import IncreasingPositiveInts, PositiveFloats, PositiveInts, UnitIntervalFloats

__all__ = [
    "KINDS", "PAPER_KINDS", "VERDICTS", "Claim", "Estimate", "Executor", "Experiment", "ExperimentConfig",
    "IclabError", "IncreasingPositiveInts", "LocalExecutor", "PositiveFloats", "PositiveInts", "ResearchLine",
    "Results", "RunContext", "RunResult", "RunSpec", "SerialExecutor", "TaskLost", "UnitIntervalFloats", "build_site",
    "claims", "compute_threads", "count_verdicts", "execute", "experiment", "export_mlflow", "export_wandb",
    "finished_runs", "get_experiment", "heatmap", "is_complete", "judge", "lm_threads", "load_experiments",
    "load_lines", "make_executor", "make_gen", "make_rng", "redraw", "register_line", "reproduce", "result_files",
    "pyplot", "results", "run_dir", "run_spec", "save_figure", "seed_sequence", "subplots", "sweep", "torch_threads",
]  # fmt: skip
