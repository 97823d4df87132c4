"""The shared runtime: configs, the experiment registry, the run store, sweeps, results and reports."""

from .config import ExperimentConfig as ExperimentConfig
from .errors import IclabError as IclabError
from .claims import Claim as Claim
from .claims import Estimate as Estimate
from .claims import judge as judge
from .experiment import Experiment as Experiment
from .experiment import Results as Results
from .experiment import RunContext as RunContext
from .experiment import experiment as experiment
from .experiment import get_experiment as get_experiment
from .experiment import load_experiments as load_experiments
from .reproduce import reproduce as reproduce
from .results import claims as claims
from .results import results as results
from .site import build_site as build_site
from .store import RunResult as RunResult
from .store import execute as execute
from .store import finished_runs as finished_runs
from .store import redraw as redraw
from .executors import Executor as Executor
from .executors import LocalExecutor as LocalExecutor
from .executors import SerialExecutor as SerialExecutor
from .sweep import sweep as sweep
