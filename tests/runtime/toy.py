"""A tiny experiment registered only by the runtime tests."""

import os
import signal
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from pydantic import Field

from iclab.runtime import Estimate, ExperimentConfig, experiment


class ToyConfig(ExperimentConfig):
    n: int = Field(5, gt=0, description="Number of draws.")
    scale: float = Field(1.0, gt=0, description="Scale of the draws.")
    fail: bool = Field(False, description="Raise mid-run (to test that nothing half-written is kept).")
    sleep: float = Field(0.0, ge=0, description="Seconds to sleep before finishing.")
    pid_dir: str = Field("", description="If set, record each attempt as <pid_dir>/<seed>-<pid>-<ns> (fault tests).")
    die: bool = Field(False, description="Kill the worker process mid-run, as an OOM kill or a lost node would.")
    paper_mean: float = Field(0.0, description="The 'paper value' the mean is compared with (to plant wrong ones).")


@experiment("test.toy", ToyConfig, presets={"quick": {"n": 3}, "paper": {"n": 50}},
            title="toy", paper="nobody 2026, Fig. 0")
def run(cfg: ToyConfig, ctx):
    if cfg.pid_dir:
        (Path(cfg.pid_dir) / f"{cfg.seed}-{os.getpid()}-{time.time_ns()}").touch()
    rng = np.random.default_rng(cfg.seed)
    x = rng.normal(size=cfg.n) * cfg.scale
    ctx.table(pd.DataFrame({"i": np.arange(cfg.n), "x": x}))
    time.sleep(cfg.sleep)
    if cfg.die:
        os.kill(os.getpid(), signal.SIGKILL)
    if cfg.fail:
        raise RuntimeError("boom")
    ctx.note("draws are standard normal times scale")


@run.figures
def figures(cfg: ToyConfig, res, ctx):
    fig, ax = plt.subplots()
    ax.plot(res.table().x)
    ctx.figure(fig, "draws", caption="the draws")


@run.verdicts
def verdicts(cfg: ToyConfig, res, ctx):
    x = res.table().x.to_numpy()
    ctx.claim("mean", kind="paper-value", paper="the mean is about 0", paper_value=cfg.paper_mean,
              source="nobody 2026, Fig. 0", ours=Estimate.mean(x, unit="draws"), tolerance=1.0)
    ctx.claim("count", kind="sanity", paper="one row per draw", ours=Estimate.exact(len(x)),
              expect=("between", cfg.n, cfg.n))
