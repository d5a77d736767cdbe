"""Run units of trials locally (joblib) or on a cluster (Dask; Ray when installed).

A *unit* is one trial or one batched-VPT group (:func:`benchmarks.vtab.trials.run_trials`). Units
are independent pure functions of their configs, so any backend may run them in any order; results
come back to the calling process, which alone writes the store.

* ``local`` with ``jobs=1``: units run in this process, one after the other.
* ``local`` with several jobs: joblib's loky process pool; on a machine with several GPUs each
  worker claims one GPU for its lifetime, so there is one trial per GPU (``jobs`` defaults to the GPU
  count there). On CPU each worker gets ``cores / jobs`` torch threads.
* ``dask``: ``dask.distributed.Client(ADDRESS)``; each unit is one task; ``device`` is resolved on
  the worker (``auto`` picks the worker's GPU).
* ``ray``: ``ray.remote`` tasks, only if ``ray`` is installed.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Literal

from benchmarks.vtab.trials import TrialConfig, TrialResult, run_trials
from engine.errors import ConfigError

# dask, joblib, ray, torch are imported inside the functions that use them: importing this module does not load them.

__all__ = ["Backend", "UnitOutcome", "run_units", "default_jobs"]

log = logging.getLogger(__name__)

Backend = Literal["local", "dask", "ray"]
UnitOutcome = Callable[[int, list[TrialResult] | str], None]
"""``on_outcome(unit_index, results_or_error_text)``, called in the calling process as units finish."""

_WORKER_DEVICE: str | None = None


def default_jobs(device: str) -> int:
    """One job per GPU when several CUDA devices are visible and ``device`` allows CUDA, else 1."""
    if device not in ("auto", "cuda"):
        return 1
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no usable torch/CUDA: run locally
        return 1


def _claim_device(device: str, queue: Any, threads: int) -> str:
    """The device of this worker process: a GPU from ``queue`` (claimed once per process) or ``device``."""
    global _WORKER_DEVICE
    if _WORKER_DEVICE is None:
        if queue is not None:
            try:
                _WORKER_DEVICE = f"cuda:{queue.get(timeout=5)}"
            except Exception:  # noqa: BLE001 - a restarted worker finds the queue empty
                import torch

                _WORKER_DEVICE = f"cuda:{os.getpid() % max(1, torch.cuda.device_count())}"
        else:
            _WORKER_DEVICE = device
            if threads > 0:
                import torch

                torch.set_num_threads(threads)
    return _WORKER_DEVICE


def _work(index: int, unit: Sequence[TrialConfig], device: str, max_rows: int, queue: Any = None,
          threads: int = 0) -> tuple[int, list[TrialResult] | str]:
    """Run one unit; an error becomes its text so one bad trial never stops a sweep."""
    try:
        dev = _claim_device(device, queue, threads) if (queue is not None or threads) else device
        return index, run_trials(list(unit), dev, max_rows=max_rows)
    except Exception as exc:  # noqa: BLE001 - recorded as a failed trial, rerun next time
        log.debug("unit %d failed:\n%s", index, traceback.format_exc())
        return index, f"{type(exc).__name__}: {exc}"


def _run_local(units: list[list[TrialConfig]], on_outcome: UnitOutcome, *, jobs: int, device: str,
               max_rows: int) -> None:
    if jobs <= 1 or len(units) <= 1:
        for i, unit in enumerate(units):
            on_outcome(*_work(i, unit, device, max_rows))
        return
    from joblib import Parallel, delayed

    queue = None
    threads = 0
    gpus = default_jobs(device) if device in ("auto", "cuda") else 0
    if gpus > 1:
        import multiprocessing

        manager = multiprocessing.Manager()
        queue = manager.Queue()
        for g in range(gpus):
            queue.put(g)
        jobs = min(jobs, gpus)
    else:
        cpus = os.cpu_count() or 1
        if jobs > cpus:  # more processes than cores only multiplies memory (each holds a backbone)
            log.warning("--jobs %d is more than the %d CPU cores; using %d worker processes", jobs, cpus, cpus)
            jobs = cpus
        jobs = min(jobs, len(units))
        threads = max(1, cpus // jobs)
    parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")
    for index, outcome in parallel(delayed(_work)(i, u, device, max_rows, queue, threads)
                                   for i, u in enumerate(units)):
        on_outcome(index, outcome)


def _run_dask(units: list[list[TrialConfig]], on_outcome: UnitOutcome, *, scheduler: str | None, device: str,
              max_rows: int) -> None:
    try:
        from dask.distributed import Client, as_completed
    except ImportError as exc:
        raise ConfigError("--backend dask needs dask.distributed; pip install 'vpt-advisor[dask]'") from exc
    if not scheduler:
        raise ConfigError("--backend dask needs --scheduler ADDRESS (e.g. tcp://10.0.0.5:8786)")
    try:
        client = Client(scheduler, timeout="20s")
    except OSError as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}; is it running?") from exc
    try:
        futures = [client.submit(_work, i, u, device, max_rows, pure=False) for i, u in enumerate(units)]
        for fut in as_completed(futures):
            on_outcome(*fut.result())
    finally:
        client.close()


def _run_ray(units: list[list[TrialConfig]], on_outcome: UnitOutcome, *, scheduler: str | None, device: str,
             max_rows: int) -> None:  # pragma: no cover - ray is optional and not installed in CI
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--backend ray needs ray (pip install ray); use --backend dask or local") from exc
    ray.init(address=scheduler or None, ignore_reinit_error=True)
    task = ray.remote(num_gpus=1 if device.startswith("cuda") else 0)(_work)
    pending = [task.remote(i, u, device, max_rows) for i, u in enumerate(units)]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        on_outcome(*ray.get(done[0]))


def run_units(units: list[list[TrialConfig]], on_outcome: UnitOutcome, *, backend: Backend = "local",
              jobs: int = 0, scheduler: str | None = None, device: str = "auto", max_rows: int = 512) -> None:
    """Run every unit and report each outcome as it arrives.

    Args:
        units: lists of trial configs (one trial, or one batched-VPT group).
        on_outcome: called in this process with ``(unit_index, results | error text)``.
        backend: ``local``, ``dask`` or ``ray``.
        jobs: local worker processes (0 = one per GPU, or 1 on CPU).
        scheduler: Dask scheduler address (or Ray address).
        device: device spec resolved inside each worker.
        max_rows: sequences per forward in batched groups.

    Raises:
        ConfigError: unknown backend, missing scheduler, unreachable cluster.
    """
    if backend == "local":
        _run_local(units, on_outcome, jobs=jobs or default_jobs(device), device=device, max_rows=max_rows)
    elif backend == "dask":
        _run_dask(units, on_outcome, scheduler=scheduler, device=device, max_rows=max_rows)
    elif backend == "ray":
        _run_ray(units, on_outcome, scheduler=scheduler, device=device, max_rows=max_rows)
    else:
        raise ConfigError(f"unknown backend {backend!r}; choose local, dask or ray")
