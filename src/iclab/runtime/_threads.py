"""The one thread policy: how many torch threads each kind of work gets, and the variables that set it.

| variable | read by | default | for |
|---|---|---|---|
| `ICLAB_THREADS` | `run_threads`: every run's small tensor ops | 1 | many tiny ops, for which a second thread only adds synchronisation (and a 2-thread pool stalls 10-40× when another process holds a core); sweeps get their parallelism from processes |
| `ICLAB_LM_THREADS` | `lm_threads`: forward passes of pretrained LMs | all cores | large matmuls, which do use every core |
| `ICLAB_WORKER_THREADS` | `compute_threads`: training a transformer | all cores | set by the executors in each worker to its share of the cores (`init_worker`); training and corpus sampling use all of that share |

`iclab reproduce` runs its lanes with `ICLAB_LM_THREADS=1` unless set, so two lanes share two cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ._errors import IclabError

__all__ = ["compute_threads", "init_worker", "lm_threads", "run_threads", "torch_threads"]


def _positive(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        raise IclabError(f"{name} must be a positive integer (got {value!r})")
    return int(value)


def run_threads() -> int:
    """Torch threads for a run's small tensor ops: ICLAB_THREADS, else 1."""
    return _positive("ICLAB_THREADS", 1)


def lm_threads() -> int:
    """Torch threads for forward passes of pretrained LMs: ICLAB_LM_THREADS, else all cores."""
    return _positive("ICLAB_LM_THREADS", os.cpu_count() or 1)


def compute_threads() -> int:
    """Torch threads for training (and the processes that sample its corpus): a sweep worker's share of
    the cores (ICLAB_WORKER_THREADS, set by `init_worker`), else all of them."""
    return _positive("ICLAB_WORKER_THREADS", os.cpu_count() or 1)


def init_worker(threads: int) -> None:
    """Set up a worker process of an executor: its share of the cores, and no progress bars."""
    import torch

    torch.set_num_threads(threads)
    os.environ["ICLAB_NO_PROGRESS"] = "1"
    os.environ["ICLAB_WORKER_THREADS"] = str(threads)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with n intra-op torch threads, then restore the previous setting."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
