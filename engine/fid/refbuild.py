"""Build reference FID statistics from any dataset source, streaming and resumably.

Sources are classified by :func:`engine.data.sources.resolve_source`: an image-folder tree, or tar shards
(local files, HTTP(S) brace patterns, or a ``hf://datasets/OWNER/REPO`` Hub repo).

Folder trees (class = first folder level, e.g. the WordNet id ``n01440764``): classes are visited
round-robin in a seeded order; each round takes the next image of every class (images shuffled within
each class), at most ``per_class`` rounds, until ``max_images`` images are planned. The plan is read in
storage order. A checkpoint is written every ``checkpoint_every`` images.

Tar shards (WebDataset): ``K`` shards spread evenly over the whole listing are read, one at a time
(a remote shard is downloaded, read, and deleted before the next: at most one shard on disk).
``K`` is ``--shards``, by default ``ceil(max_images / IMAGES_PER_SHARD)`` (all shards when there is no
``max_images``). Shard ``j`` of ``K`` takes ``ceil(still needed / shards left)`` images, chosen by a
seeded draw inside the shard and read in storage order, so a short shard's deficit moves to the
next ones. A checkpoint is written after every finished shard, and every shard's URL, sha256, size
and image count go into the provenance sidecar.

Checkpoints (``<references>/.<name>.partial/``) hold the running float64 sums ``sum(x)`` and
``sum(x x^T)``, the count and the position in one ``.npz`` written in one atomic step (temporary file,
fsync, rename) with a sha256 over its contents. The previous checkpoint is kept; a damaged one fails its
checksum and is discarded with a warning, and the build continues from the previous one (or from the
start). A rerun performs the same float operations in the same order as an uninterrupted build, so it
gives the same statistics. ``sigma = (sum(x x^T) - n mu mu^T) / (n - 1)``.

One build per name at a time: a second build of the same name fails at once (an ``flock`` on
``<references>/.<name>.lock``, released by the kernel even after kill -9).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.config.fid import FidConfig
from engine.data.imageio import display_path
from engine.data.sources import Source, remove_tree, resolve_source
from engine.errors import ConfigError, EmptyDatasetError, ReferenceStatsError
from engine.fid.buildparts import (
    _PLAN,
    IMAGES_PER_SHARD,
    PlanItem,
    _checkpoint_stride,
    _device,
    _Extractor,
    _folder_note,
    _folder_plan,
    _Job,
    _load_checkpoint,
    _load_plan,
    _one_ahead,
    _read_shard,
    _save_checkpoint,
    _shard_note,
    _shard_plan,
    _Sums,
    discover_items,
    plan_sample,
    spread_shards,
)
from engine.fid.cluster import worker_label
from engine.fid.features import (
    PREPROCESSING,
    FeatureExtractor,
    extractor_id,
    load_inception,
    resolve_weights,
    weights_sha256,
)
from engine.fid.frechet import BuildInfo, FeatureStats, ShardRecord, StatsProvenance, library_versions, save_stats
from engine.fid.refdask import dask_build
from engine.fid.reference import (
    ReferenceInfo,
    reference_lock,
    reference_path,
    resolve_reference,
    validate_reference_name,
)
from engine.paths import references_dir
from engine.progress import ProgressCallback, report

if TYPE_CHECKING:
    import torch

# The planning names live in engine.fid.buildparts (shared with the Dask backend) and are re-exported here,
# where callers and tests import them.
__all__ = ["build_reference", "plan_sample", "discover_items", "PlanItem", "spread_shards",
           "IMAGES_PER_SHARD"]

logger = logging.getLogger(__name__)

# --- the one-process pipelines ----------------------------------------------------------------------


def _start(job: _Job, dims: int) -> tuple[_Sums, dict | None, dict]:
    """Resume state (sums, plan body or None, checkpoint state) from the work folder, or a fresh start."""
    body = _load_plan(job.work, job.params, job.messages) if job.work.is_dir() else None
    if body is not None:
        got = _load_checkpoint(job.work, job.messages)
        if got is not None:
            s1, s2, state = got
            if s1.shape == (dims,) and s2.shape == (dims, dims):
                logger.info("resuming reference %r from its checkpoint", job.name)
                return _Sums(s1, s2, int(state["n"]), list(state["skipped"])), body, state
    remove_tree(job.work)
    job.work.mkdir(parents=True, exist_ok=True)
    return _Sums(np.zeros(dims), np.zeros((dims, dims))), None, {}


def _folder_build(job: _Job, sums: _Sums, body: dict | None, state: dict, limits: tuple) -> dict:
    max_images, per_class, seed = limits
    if body is None:
        body = _folder_plan(job, max_images, per_class, seed)
        state = {"pos": 0, "n": 0, "skipped": []}
        _save_checkpoint(job.work, sums.s1, sums.s2, state)
    plan, pos, bs = body["plan"], int(state.get("pos", 0)), job.batch_size
    every = _checkpoint_stride(job.checkpoint_every, bs)
    report(job.on_progress, pos, len(plan))
    starts = list(range(pos, len(plan), bs))
    with contextlib.closing(_one_ahead(lambda a: job.ext.decode_files(plan[a:a + bs]), starts)) as batches:
        for batch, feats in job.ext.featurize(batches):
            sums.add(batch, feats)
            pos = min(len(plan), pos + bs)
            if pos % every == 0 or pos == len(plan):
                _save_checkpoint(job.work, sums.s1, sums.s2, {"pos": pos, "n": sums.n, "skipped": sums.skipped})
            report(job.on_progress, pos, len(plan))
    sums.skipped = list(body["index_skipped"]) + sums.skipped
    return {"notes": [_folder_note(body, max_images, per_class, seed)], "shards": []}


def _shard_build(job: _Job, sums: _Sums, body: dict | None, state: dict, limits: tuple) -> dict:
    max_images, n_shards, seed = limits
    shards = job.source.shards
    if body is None:
        body = _shard_plan(job, max_images, n_shards)
        state = {"n": 0, "skipped": [], "done": []}
        _save_checkpoint(job.work, sums.s1, sums.s2, state)
    picked, done = body["picked"], [ShardRecord(**d) for d in state.get("done", [])]
    total = max_images or 0
    report(job.on_progress, sums.n, total)
    for j in range(len(done), len(picked)):
        quota = None if max_images is None else math.ceil(max(0, max_images - sums.n) / (len(picked) - j))
        if quota == 0:
            break
        ref = shards[picked[j]]
        logger.info("shard %d/%d: %s", j + 1, len(picked), ref.url)
        done.append(_read_shard(job.ext, job.batch_size, job.work / "download", sums, ref, quota, seed,
                                lambda: report(job.on_progress, sums.n, total or sums.n)))
        _save_checkpoint(job.work, sums.s1, sums.s2,
                         {"n": sums.n, "skipped": sums.skipped, "done": [d.model_dump() for d in done]})
        report(job.on_progress, sums.n, total or sums.n)
    return {"notes": [_shard_note(job, sums.n, len(done), max_images, seed)], "shards": done}


# --- entry point ------------------------------------------------------------------------------------------


def _check_args(name: str, max_images: int | None, per_class: int | None, shards: int | None, overwrite: bool) -> Path:
    validate_reference_name(name)
    if max_images is not None and max_images < 2:
        raise ConfigError(f"--max-images {max_images}: a reference needs at least 2 images")
    if per_class is not None and per_class < 1:
        raise ConfigError(f"--per-class {per_class}: must be at least 1")
    if shards is not None and shards < 1:
        raise ConfigError(f"--shards {shards}: must be at least 1")
    target = reference_path(name)
    if target.exists() and not overwrite:
        raise ReferenceStatsError(f"reference {name!r} already exists at {target}; pass --overwrite to rebuild it")
    return target


def _load_network(config: FidConfig, device: torch.device) -> FeatureExtractor:
    """The Inception network of this process's build. ``load_inception`` is looked up in this module when called,
    so replacing ``engine.fid.refbuild.load_inception`` (as the tests' fake network does) reaches the build."""
    return load_inception(config, device)


def build_reference(
    source: str | os.PathLike[str],
    *,
    name: str,
    config: FidConfig,
    device: torch.device | str,
    max_images: int | None = None,
    per_class: int | None = None,
    shards: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    checkpoint_every: int = 2000,
    on_progress: ProgressCallback | None = None,
) -> ReferenceInfo:
    """Compute reference statistics and store them as ``<references>/<name>.npz`` + ``.json``.

    Args:
        source: Folder tree, ``.tar`` shard(s), folder of shards, HTTP(S) brace pattern or ``hf://datasets/...``.
        name: Reference name (``in21k`` is what ``recommend`` uses by default).
        config: Feature extraction settings; ``resize='auto'`` means ``pil-bicubic-299`` here.
        device: Where the network runs.
        max_images: Stop after this many images (None = all).
        per_class: At most this many images per class (folder sources only).
        shards: How many shards to read, spread over the listing (shard sources; default see module doc).
        seed: Sampling seed.
        overwrite: Replace an existing reference of that name.
        checkpoint_every: Images between checkpoints for folder sources (shard sources: every shard).
        on_progress: ``on_progress(done, total)`` after each batch; an exception raised from it
            interrupts the build (the last checkpoint is kept and a rerun resumes).

    Raises:
        ConfigError: A bad name or limit (checked before any work).
        ReferenceStatsError: The reference exists (without ``overwrite``) or another build of it runs.
        DatasetError: The source cannot be listed or read; EmptyDatasetError: fewer than 2 usable images.
        WeightsNotFoundError: No Inception weights.
    """
    target = _check_args(name, max_images, per_class, shards, overwrite)
    weights_digest = weights_sha256(resolve_weights(config))
    work = references_dir() / f".{name}.partial"
    if config.batch_size is None:  # automatic: an unfinished build keeps the batch it started with, so it resumes
        batch = _unfinished_batch(work) or config.batch_for(_device(device).type)
        config = config.model_copy(update={"batch_size": batch})
    preprocessing = "pil-bicubic-299" if config.resize == "auto" else config.resize
    with reference_lock(name, "reference build"):
        src = resolve_source(source)
        if src.kind == "shards" and per_class is not None:
            raise ConfigError("--per-class needs a folder tree with class folders; shard sources are sampled per shard")
        if src.kind == "folder" and shards is not None:
            raise ConfigError("--shards applies to tar-shard sources; this source is a folder of images")
        params = _params(src, config, weights_digest, preprocessing,
                         {"max_images": max_images, "per_class": per_class, "shards": shards, "seed": seed})
        job = _Job(name=name, source=src, work=work, params=params,
                   ext=_Extractor(config, device, preprocessing, params["extractor"], _load_network),
                   batch_size=params["batch_size"], checkpoint_every=checkpoint_every, on_progress=on_progress)
        try:
            job.ext.load()
            sums, extra = _run(job, max_images, per_class, shards, seed)
        finally:
            job.ext.close()
        return _finish(job, target, sums, extra, weights_digest)


def _run(job: _Job, max_images: int | None, per_class: int | None, shards: int | None, seed: int) -> tuple[_Sums, dict]:
    """The build itself, in this process or on Dask (:mod:`engine.fid.refdask`); returns the sums and sidecar extras."""
    if job.ext.config.backend == "dask":
        return dask_build(job, max_images=max_images, per_class=per_class, n_shards=shards, seed=seed)
    sums, body, state = _start(job, job.ext.config.dims)
    if job.source.kind == "folder":
        return sums, _folder_build(job, sums, body, state, (max_images, per_class, seed))
    return sums, _shard_build(job, sums, body, state, (max_images, shards, seed))


def _unfinished_batch(work: Path) -> int | None:
    """The batch size an unfinished build in ``work`` recorded (None: no readable plan). Only a hint: the plan is
    checked in full when the build resumes."""
    try:
        batch = json.loads((work / _PLAN).read_text(encoding="utf-8"))["body"]["params"]["batch_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return batch if isinstance(batch, int) and batch >= 1 else None


def _params(src: Source, config: FidConfig, weights_digest: str, preprocessing: str, limits: dict) -> dict:
    """Everything that must match for a rerun to resume (a change starts the build over)."""
    return {"source": src.text if src.kind == "shards" else src.root, "revision": src.revision,
            "shard_urls": hashlib.sha256("\n".join(s.url for s in src.shards).encode()).hexdigest(), **limits,
            "extractor": extractor_id(config.dims, weights_digest), "preprocessing": preprocessing,
            "dims": config.dims, "batch_size": config.batch_size}


def _local_build(units: int) -> BuildInfo:
    return BuildInfo(backend="local", workers=1, units=units, worker_units={worker_label(): units})


def _finish(job: _Job, target: Path, sums: _Sums, extra: dict, weights_digest: str) -> ReferenceInfo:
    n, params = sums.n, job.params
    if n < 2:
        raise EmptyDatasetError(f"{display_path(job.source.text)}: only {n} usable image(s) "
                                f"({len(sums.skipped)} skipped); a reference needs at least 2")
    mu = sums.s1 / n
    sigma = (sums.s2 - n * np.outer(mu, mu)) / (n - 1)
    sigma = 0.5 * (sigma + sigma.T)
    reasons = Counter(str(s.get("reason", "")) for s in sums.skipped)
    prov = StatsProvenance(
        source=job.source.text if job.source.kind == "shards" else display_path(job.source.root), n_images=n,
        n_skipped=len(sums.skipped), dims=params["dims"], extractor=params["extractor"],
        preprocessing=params["preprocessing"], created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        versions=library_versions(),
        notes=[*extra["notes"], f"preprocessing: {PREPROCESSING[params['preprocessing']]}"],
        weights_sha256=weights_digest, source_kind=job.source.kind, revision=job.source.revision,
        shards=extra["shards"], skipped_reasons=dict(sorted(reasons.items())),
        build=extra.get("build") or _local_build(max(1, len(extra["shards"]))),
    )
    save_stats(target, FeatureStats(mu=mu, sigma=sigma, n=n), prov)
    remove_tree(job.work)
    logger.info("reference %r: %d images (%d from the feature cache), %d skipped -> %s", job.name, n,
                job.ext.n_cached, prov.n_skipped, target)
    info = resolve_reference(job.name)[1]
    return info.model_copy(update={"messages": list(job.messages)})
