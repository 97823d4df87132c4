"""The Ray backend: a sweep's grid points as Ray tasks, on this machine or on a cluster.

Ray does the distributed work (scheduling by each run's `cpus`/`gpus`, re-running a task
whose worker died, cancelling); the run store does the rest. A run is written to a
temporary directory and sealed with a manifest, so a worker killed mid-run leaves nothing
that counts as a result, and its retry (or a later rerun of the sweep) starts it afresh.
All nodes must see the same run store (a shared filesystem) and have iclab installed.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import IclabError, TaskLost
from ._threads import init_worker

# Environment a worker needs to run our experiments exactly as the driver would.
_PASSED_ENV = ("PYTHONPATH",)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise IclabError("the ray backend needs Ray: pip install 'iclab[ray]' (or use --backend local)") from None
    return ray


def _run_with_threads(fn: Callable[[Any], Any], item: Any, threads: int) -> Any:
    """Runs inside a Ray worker: give the run the threads it asked for, as the local pool does."""
    init_worker(threads)
    return fn(item)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


@dataclass
class RayExecutor:
    """Runs items as Ray tasks; yields `(item, result)` as they finish, `TaskLost` for lost ones.

    address: None starts a private Ray instance on this machine (stopped afterwards); "auto"
    joins the cluster this machine belongs to (`ray start`); "host:port" or "ray://host:10001"
    joins a remote one.
    """

    address: str | None = None
    num_cpus: int | None = None  # CPUs of the private instance (address=None); default: all cores
    max_retries: int = 2  # re-runs of a task whose worker process or node died

    def _check_reachable(self) -> None:
        """Fail in seconds on a wrong HOST:PORT; Ray itself would retry for minutes."""
        if self.address in (None, "auto"):
            return
        host, sep, port = self.address.removeprefix("ray://").rpartition(":")
        if not sep or not port.isdigit():
            raise IclabError(f"bad --address {self.address!r}: give auto, HOST:PORT or ray://HOST:PORT")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
        except OSError as err:
            raise IclabError(f"no Ray cluster answers at --address {self.address} ({err.strerror or err}); "
                             "check the address printed by `ray start --head`") from None

    def _connect(self, ray: Any) -> None:
        self._check_reachable()
        env = {k: v for k, v in os.environ.items() if k.startswith("ICLAB_") or k in _PASSED_ENV}
        env["ICLAB_NO_PROGRESS"] = "1"
        common = dict(runtime_env={"env_vars": env}, logging_level=logging.ERROR, log_to_driver=False)
        try:
            if self.address is None:
                # "local": always a new instance, never a cluster that `ray start` left running here
                ray.init(address="local", num_cpus=self.num_cpus or os.cpu_count() or 1, include_dashboard=False,
                         **common)
            else:
                ray.init(address=self.address, **common)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = f"--address {self.address}" if self.address else "this machine"
            raise IclabError(f"cannot start or reach a Ray cluster at {where} ({_first_line(err)}); start one with "
                             "`ray start --head` (docs/howto/ray-cluster.md) or drop --address") from None

    def _check_fits(self, ray: Any, items: Sequence[Any]) -> None:
        """A run asking for more than the whole cluster has would wait forever: say so instead."""
        have = ray.cluster_resources()
        for key, field in (("CPU", "cpus"), ("GPU", "gpus")):
            want = max((getattr(item, field, 0.0) for item in items), default=0.0)
            if want > have.get(key, 0.0):
                raise IclabError(f"a run asks for {field}={want:g} but the Ray cluster has {have.get(key, 0.0):g} "
                                 f"{key}s in all; lower --{field} or add nodes (or --workers for a private instance)")

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        ray = _import_ray()
        own = not ray.is_initialized()
        if own:
            self._connect(ray)
        task = ray.remote(_run_with_threads)
        pending: dict[Any, Any] = {}
        try:
            self._check_fits(ray, items)
            for item in items:
                cpus, gpus = getattr(item, "cpus", 1.0), getattr(item, "gpus", 0.0)
                ref = task.options(num_cpus=cpus, num_gpus=gpus, max_retries=self.max_retries,
                                   retry_exceptions=False).remote(fn, item, max(1, int(cpus)))
                pending[ref] = item
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                item = pending.pop(done[0])
                try:
                    result = ray.get(done[0])
                except ray.exceptions.RayError as err:  # worker or node died past its retries, or task raised
                    result = TaskLost(f"{_first_line(err)} (after up to {self.max_retries} retries)")
                yield item, result
        finally:  # Ctrl-C or an error in the caller: stop what still runs; finished runs are kept
            if own:
                ray.shutdown()  # ends our job, and Ray kills its running tasks (cancelling each first races Ray)
            else:
                for ref in pending:
                    ray.cancel(ref, force=True)
