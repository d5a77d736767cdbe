"""``reference build --backend dask``: one Dask task per shard (or per chunk of a folder plan), merged exactly.

FID statistics are sums: ``n``, ``sum(x)`` and ``sum(x x^T)`` in float64. Each unit returns the partial sums
of its images; the calling process writes each unit's sums to its own part file
(``<references>/.<name>.partial/parts/<unit>.npz``, atomic, with a sha256 over its contents, as the
one-process checkpoints) as soon as it arrives, and merges the parts in unit order at the end. An
interrupted build therefore resumes without redoing any finished unit, and a unit re-run after its worker
died is written once (results are keyed by unit; see :mod:`engine.fid.cluster`).

Why the statistics equal the one-process build (to float64 rounding of the merge, far below 1e-9):
every image's float32 features are bit-identical in both builds, because the network sees exactly the same
batches. A shard unit reads its shard with the one shard reader (:func:`engine.fid.buildparts._read_shard`:
the same seeded draw, batches of ``batch_size`` members in storage order); a folder unit is one stretch
between two checkpoints of the one-process build, which is a whole number of batches. Batches matter
because float32 convolution results can depend on the batch they are computed in on some CPUs. Only the
order of the float64 additions differs (per unit, then across units in unit order).

Units are planned up front, so a shard's quota is fixed when the build starts: ``ceil(images still
planned / shards left)``, which is what the one-process build takes when no shard is short. A short
shard's deficit is not moved to the others (they run at the same time); the build then says how many
images it got, as the one-process build does when all shards together fall short.

Workers read what the plan names: remote shards are downloaded by the worker that reads them (so
downloads spread over the machines too); local shard files and folder images must be readable at the
same path on every worker (a shared filesystem; always true for a LocalCluster).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.config.fid import FidConfig, device_type
from engine.data.imageio import display_path
from engine.data.sources import ShardRef, remove_tree
from engine.fid.buildparts import (
    _CHECKPOINT_DAMAGE,
    _checkpoint_stride,
    _digest,
    _Extractor,
    _folder_note,
    _folder_plan,
    _Job,
    _load_plan,
    _one_ahead,
    _read_checkpoint,
    _read_shard,
    _shard_note,
    _shard_plan,
    _Sums,
)
from engine.fid.cluster import run_units, worker_label, worker_network
from engine.fid.frechet import BuildInfo, ShardRecord
from engine.io import atomic_write_bytes
from engine.progress import report

__all__ = ["dask_build", "UnitSpec", "UnitSums", "folder_unit", "shard_unit"]

logger = logging.getLogger(__name__)

_PARTS = "parts"


@dataclass(frozen=True)
class UnitSpec:
    """What every unit of one build needs besides its images (sent to the workers)."""

    config: FidConfig
    device: str
    preprocessing: str
    ext_id: str


@dataclass
class UnitSums:
    """The partial sums of one unit, returned by a worker."""

    s1: npt.NDArray[np.float64]
    s2: npt.NDArray[np.float64]
    n: int
    skipped: list[dict]
    record: dict | None = None
    """The shard's :class:`ShardRecord` (shard units)."""
    worker: str = ""
    n_cached: int = 0
    extra: dict = field(default_factory=dict)


def _unit_extractor(spec: UnitSpec) -> _Extractor:
    net = worker_network(spec.config, spec.device, spec.ext_id)
    ext = _Extractor(spec.config, spec.device, spec.preprocessing, spec.ext_id)
    ext._net = net
    return ext


def _result(sums: _Sums, ext: _Extractor, record: ShardRecord | None = None) -> UnitSums:
    return UnitSums(sums.s1, sums.s2, sums.n, sums.skipped, record.model_dump() if record else None,
                    worker_label(), ext.n_cached)


def folder_unit(paths: list[str], spec: UnitSpec) -> UnitSums:
    """Partial sums of one stretch of a folder plan (runs on a worker)."""
    dims, bs = spec.config.dims, spec.config.batch_for(device_type(spec.device))
    sums = _Sums(np.zeros(dims), np.zeros((dims, dims)))
    ext = _unit_extractor(spec)
    try:
        starts = list(range(0, len(paths), bs))
        with contextlib.closing(_one_ahead(lambda a: ext.decode_files(paths[a:a + bs]), starts)) as batches:
            for batch, feats in ext.featurize(batches):
                sums.add(batch, feats)
        return _result(sums, ext)
    finally:
        ext.close()


def shard_unit(ref: ShardRef, quota: int | None, seed: int, spec: UnitSpec) -> UnitSums:
    """Partial sums of one shard (runs on a worker; a remote shard is downloaded to a temporary folder)."""
    dims = spec.config.dims
    sums = _Sums(np.zeros(dims), np.zeros((dims, dims)))
    ext = _unit_extractor(spec)
    download = Path(tempfile.mkdtemp(prefix="vpt-advisor-shard-"))
    try:
        record = _read_shard(ext, spec.config.batch_for(device_type(spec.device)), download, sums, ref, quota, seed)
        return _result(sums, ext, record)
    finally:
        ext.close()
        shutil.rmtree(download, ignore_errors=True)


# --- part files ------------------------------------------------------------------------------------------


def _save_part(path: Path, part: UnitSums) -> None:
    state = {"n": part.n, "skipped": part.skipped, "record": part.record, "worker": part.worker,
             "n_cached": part.n_cached}
    blob = json.dumps(state, sort_keys=True).encode()
    buf = io.BytesIO()
    np.savez(buf, s1=part.s1, s2=part.s2, state=np.frombuffer(blob, np.uint8),
             digest=np.frombuffer(_digest(part.s1, part.s2, blob).encode(), np.uint8))
    atomic_write_bytes(path, buf.getvalue())


def _load_parts(folder: Path, units: int, dims: int, messages: list[str]) -> dict[int, UnitSums]:
    """Every part that passes its checksum; a damaged one is discarded with a message (its unit runs again)."""
    parts: dict[int, UnitSums] = {}
    for j in range(units):
        path = folder / f"{j:05d}.npz"
        if not path.exists():
            continue
        try:
            s1, s2, state = _read_checkpoint(path)
            if s1.shape != (dims,) or s2.shape != (dims, dims):
                raise ValueError(f"shapes {s1.shape} and {s2.shape} do not match dims {dims}")
        except _CHECKPOINT_DAMAGE as exc:
            messages.append(f"discarded damaged part {display_path(path)} ({type(exc).__name__}: {exc}); "
                            "its unit is computed again")
            logger.warning("%s", messages[-1])
            path.unlink(missing_ok=True)
            continue
        parts[j] = UnitSums(s1, s2, int(state["n"]), list(state["skipped"]), state.get("record"),
                            str(state.get("worker", "")), int(state.get("n_cached", 0)))
    return parts


# --- the build -------------------------------------------------------------------------------------------


def _plan_units(job: _Job, body: dict, max_images: int | None, seed: int, spec: UnitSpec) -> list[tuple]:
    """The argument tuple of every unit, in unit order."""
    if job.source.kind == "folder":
        stride = _checkpoint_stride(job.checkpoint_every, job.batch_size)
        plan = body["plan"]
        return [(plan[a:a + stride], spec) for a in range(0, len(plan), stride)]
    picked = body["picked"]
    units: list[tuple] = []
    planned = 0
    for j, idx in enumerate(picked):
        quota = None if max_images is None else math.ceil(max(0, max_images - planned) / (len(picked) - j))
        if quota == 0:
            break
        planned += quota or 0
        units.append((job.source.shards[idx], quota, seed, spec))
    return units


def dask_build(job: _Job, *, max_images: int | None, per_class: int | None, n_shards: int | None,
               seed: int) -> tuple[_Sums, dict]:
    """Run (or resume) a build on Dask; returns the merged sums and the sidecar extras for ``_finish``."""
    config = job.ext.config
    body = _load_plan(job.work, job.params, job.messages) if job.work.is_dir() else None
    if body is None:
        remove_tree(job.work)
        job.work.mkdir(parents=True, exist_ok=True)
        if job.source.kind == "folder":
            body = _folder_plan(job, max_images, per_class, seed)
        else:
            body = _shard_plan(job, max_images, n_shards)
    spec = UnitSpec(config, str(job.ext.device), job.ext.preprocessing, job.ext.ext_id)
    units = _plan_units(job, body, max_images, seed, spec)
    folder = job.work / _PARTS
    folder.mkdir(parents=True, exist_ok=True)
    parts = _load_parts(folder, len(units), config.dims, job.messages)
    if parts:
        logger.info("resuming reference %r: %d of %d units already done", job.name, len(parts), len(units))
    total = len(body["plan"]) if job.source.kind == "folder" else (max_images or 0)
    report(job.on_progress, sum(p.n for p in parts.values()), total)

    def arrived(j: int, part: UnitSums) -> None:
        if j in parts:  # never merge a unit twice
            return
        _save_part(folder / f"{j:05d}.npz", part)
        parts[j] = part
        report(job.on_progress, sum(p.n for p in parts.values()), total)

    todo = [j for j in range(len(units)) if j not in parts]
    fn = folder_unit if job.source.kind == "folder" else shard_unit
    run_units(fn, [units[j] for j in todo], config, lambda i, part: arrived(todo[i], part))
    return _merge(job, body, parts, len(units), max_images, per_class, seed)


def _merge(job: _Job, body: dict, parts: dict[int, UnitSums], n_units: int, max_images: int | None,
           per_class: int | None, seed: int) -> tuple[_Sums, dict]:
    """Sum the parts in unit order (a fixed order: the result does not depend on which worker finished first)."""
    dims = job.ext.config.dims
    sums = _Sums(np.zeros(dims), np.zeros((dims, dims)))
    for j in range(n_units):
        part = parts[j]
        sums.s1 += part.s1
        sums.s2 += part.s2
        sums.n += part.n
        sums.skipped += part.skipped
        job.ext.n_cached += part.n_cached
    by_worker = Counter(p.worker for p in parts.values())
    build = BuildInfo(backend="dask", workers=len(by_worker), units=n_units,
                      worker_units=dict(sorted(by_worker.items())), scheduler=job.ext.config.scheduler or "")
    if job.source.kind == "folder":
        sums.skipped = list(body["index_skipped"]) + sums.skipped
        return sums, {"notes": [_folder_note(body, max_images, per_class, seed)], "shards": [], "build": build}
    records = [ShardRecord.model_validate(parts[j].record) for j in range(n_units) if parts[j].record is not None]
    return sums, {"notes": [_shard_note(job, sums.n, len(records), max_images, seed)], "shards": records,
                  "build": build}
