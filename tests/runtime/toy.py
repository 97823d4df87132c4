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

from iclab.runtime import ExperimentConfig, experiment


class ToyConfig(ExperimentConfig):
    n: int = Field(5, gt=0, description="Number of draws.")
    scale: float = Field(1.0, gt=0, description="Scale of the draws.")
    fail: bool = Field(False, description="Raise mid-run (to test that nothing half-written is kept).")
    sleep: float = Field(0.0, ge=0, description="Seconds to sleep before finishing.")
    pid_dir: str = Field("", description="If set, record each attempt as <pid_dir>/<seed>-<pid>-<ns> (fault tests).")
    die: bool = Field(False, description="Kill the worker process mid-run, as an OOM kill or a lost node would.")


@experiment("test.toy", ToyConfig, presets={"quick": {"n": 3}, "paper": {"n": 50}},
            title="toy", paper="nobody 2026, Fig. 0")
def run(cfg: ToyConfig, ctx):
    if cfg.pid_dir:
        (Path(cfg.pid_dir) / f"{cfg.seed}-{os.getpid()}-{time.time_ns()}").touch()
    rng = np.random.default_rng(cfg.seed)
    x = rng.normal(size=cfg.n) * cfg.scale
    ctx.table(pd.DataFrame({"i": np.arange(cfg.n), "x": x}))
    fig, ax = plt.subplots()
    ax.plot(x)
    ctx.figure(fig, "draws", caption="the draws")
    time.sleep(cfg.sleep)
    if cfg.die:
        os.kill(os.getpid(), signal.SIGKILL)
    if cfg.fail:
        raise RuntimeError("boom")
    ctx.claim("mean", paper="about 0", ours=float(x.mean()), target="|mean| < 10", passed=abs(x.mean()) < 10)
