"""Run FID work units on Dask: a LocalCluster started for one call, or an existing scheduler.

A *unit* is one call of a module-level function (importable on the workers) whose result is small and
picklable: the partial sums of one shard or chunk of a reference build, or the features of one chunk of
``fid``. The calling process submits every unit, receives the results as they finish and alone writes
files (part files, the feature cache, the reference), so workers need no shared state beyond the inputs.

Lost workers: when a worker dies mid-unit the scheduler re-runs its unit elsewhere (Dask's
``distributed.scheduler.allowed-failures``, default 3); a unit that *raises* is retried ``retries``
times. Results are keyed by unit index and each index is consumed once, so a re-run unit can never be
counted twice.

Threads: each unit sets torch's intra-op threads to ``cores // Dask threads`` of its machine (all its
workers' threads, from the scheduler), so several workers on one machine do not oversubscribe its cores.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from engine.config.fid import FidConfig
from engine.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

    from engine.fid.features import FeatureExtractor

__all__ = ["dask_client", "run_units", "local_workers", "worker_label", "worker_network"]

logger = logging.getLogger(__name__)

_R = TypeVar("_R")
_RETRIES = 2
"""Re-runs of a unit that raised (a flaky download, a worker out of memory); a dead worker is handled by Dask."""


def local_workers(config: FidConfig) -> int:
    """Worker processes of the LocalCluster for ``config`` (0 = one per CPU core)."""
    return config.cluster_workers or max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(config: FidConfig) -> Iterator[Client]:
    """A Dask client: connected to ``config.scheduler``, or to a LocalCluster started (and closed) here.

    The LocalCluster runs :func:`local_workers` processes of one thread each (each unit then uses
    ``cores // workers`` torch threads), without a memory limit (the network and a batch of activations
    must never be paused or killed by the nanny) and without a dashboard.

    Raises:
        ConfigError: dask.distributed is not installed, or the scheduler cannot be reached.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ConfigError("--backend dask needs dask.distributed; pip install 'vpt-advisor[dask]'") from exc
    if config.scheduler:
        try:
            client = Client(config.scheduler, timeout="20s")
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {config.scheduler}: {exc}; is it running?") from None
        try:
            yield client
        finally:
            client.close()
        return
    n = local_workers(config)
    with (LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit=0, dashboard_address=None,
                       silence_logs=logging.ERROR) as cluster, Client(cluster) as client):
        yield client


def run_units(
    fn: Callable[..., _R],
    args: Sequence[tuple[Any, ...]],
    config: FidConfig,
    on_result: Callable[[int, _R], None],
) -> int:
    """Run ``fn(*args[i])`` for every ``i`` on Dask and call ``on_result(i, result)`` here as each finishes.

    Returns the number of workers the cluster had when the units were submitted. The first unit that
    fails for good raises its exception here (results already delivered are kept by the caller).
    """
    if not args:
        return 0
    from distributed import as_completed

    with dask_client(config) as client:
        workers = client.scheduler_info().get("workers", {})
        per_host: dict[str, int] = {}
        for info in workers.values():
            host = str(info.get("host", ""))
            per_host[host] = per_host.get(host, 0) + int(info.get("nthreads", 1))
        run = uuid.uuid4().hex[:8]  # keys name the unit (``shard_unit-3-…``) in logs and dashboards
        futures = {client.submit(_call, fn, per_host, *a, key=f"{fn.__name__}-{i}-{run}", retries=_RETRIES): i
                   for i, a in enumerate(args)}
        try:
            for fut in as_completed(futures):
                on_result(futures[fut], fut.result())
                fut.release()
        finally:
            client.cancel(list(futures))
    return len(workers)


def _call(fn: Callable[..., _R], threads_per_host: dict[str, int], *args: Any) -> _R:
    """Run one unit on a worker with torch threads = this machine's cores // the Dask threads on it (so several
    workers or worker threads on one machine do not oversubscribe its cores)."""
    try:
        from distributed import get_worker

        worker = get_worker()
        busy = threads_per_host.get(str(worker.address).rsplit(":", 1)[0].split("://")[-1], worker.state.nthreads)
    except (ImportError, ValueError):
        busy = 1
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, busy)))
    return fn(*args)


def worker_label() -> str:
    """``host:pid`` of the process running a unit (recorded to count the workers that did the work)."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


_NETS: dict[tuple[str, str], FeatureExtractor] = {}
"""The network of this worker process, loaded by its first unit and reused by the next ones."""


def worker_network(config: FidConfig, device: str, ext_id: str) -> FeatureExtractor:
    """The Inception network for a unit: loaded once per worker process, then reused (one at a time).

    Raises:
        WeightsError: The weights on this worker are not the ones the caller hashed (``ext_id``): features of
            other weights must never be merged.
    """
    from engine.device import resolve_device
    from engine.errors import WeightsError
    from engine.fid.features import load_inception

    key = (ext_id, device)
    if key not in _NETS:
        _NETS.clear()  # another build's network is not kept around
        net = load_inception(config, resolve_device(device))
        if net.id != ext_id:
            raise WeightsError(f"worker {worker_label()} has other Inception weights ({net.id}) than the caller "
                               f"({ext_id}); give every worker the same file")
        _NETS[key] = net
    return _NETS[key]
