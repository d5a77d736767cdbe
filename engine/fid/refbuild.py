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
import io
import json
import logging
import math
import os
import random
import sqlite3
import tarfile
from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from engine.config.fid import FidConfig
from engine.data.imageio import (
    MAX_IMAGE_PIXELS,
    SkippedFile,
    display_path,
    open_rgb,
    resolve_workers,
    to_rgb,  # the one shared conversion rule (module docstring there)
)
from engine.data.index import index_dataset
from engine.data.sources import ShardRef, Source, fetch_shard, list_tar_images, remove_tree, resolve_source
from engine.errors import ConfigError, EmptyDatasetError, ImageDecodeError, ReferenceStatsError, StoreError
from engine.fid.cache import FeatureCache, cache_key
from engine.fid.features import (
    PREPROCESSING,
    FeatureExtractor,
    content_sha256,
    extractor_id,
    forward_arrays,
    forward_lanes,
    load_inception,
    one_thread_per_pass,
    resolve_weights,
    run_ordered,
    to_model_array,
    weights_sha256,
)
from engine.fid.frechet import BuildInfo, FeatureStats, ShardRecord, StatsProvenance, library_versions, save_stats
from engine.fid.reference import (
    ReferenceInfo,
    reference_lock,
    reference_path,
    resolve_reference,
    validate_reference_name,
)
from engine.io import NPZ_DAMAGE, DamagedFileError, atomic_write_bytes, read_npz
from engine.paths import references_dir
from engine.progress import ProgressCallback, report

if TYPE_CHECKING:
    import torch

__all__ = ["build_reference", "plan_sample", "discover_items", "PlanItem", "spread_shards",
           "IMAGES_PER_SHARD"]

logger = logging.getLogger(__name__)

IMAGES_PER_SHARD = 2000
"""Default images taken per shard. timm/imagenet-22k-wds holds 13,673,551 training images in 4,096 shards
(its dataset card), about 3,338 per shard, so 2,000 leaves room for short shards while reading few shards."""
_CKPT = "checkpoint.npz"
_CKPT_PREV = "checkpoint.prev.npz"
_PLAN = "plan.json"


@dataclass(frozen=True)
class PlanItem:
    """One image file to read (folder sources)."""

    cls: str
    shard: int
    name: str
    order: int


# --- planning -------------------------------------------------------------------------------------------


def discover_items(source: Path) -> tuple[list[PlanItem], list[SkippedFile]]:
    """Every candidate image of a folder tree, and the files skipped while indexing it."""
    index = index_dataset(Path(source))
    names = index.classes
    items = [
        PlanItem(names[smp.label] if smp.label is not None else "", -1, os.fsdecode(smp.path), k)
        for k, smp in enumerate(index.samples)
    ]
    return items, list(index.skipped)


def plan_sample(
    items: Sequence[PlanItem], *, max_images: int | None, per_class: int | None, seed: int
) -> list[PlanItem]:
    """Seeded round-robin class-balanced sample (see the module docstring), in storage order."""
    by_class: dict[str, list[PlanItem]] = defaultdict(list)
    for it in items:
        by_class[it.cls].append(it)
    rng = random.Random(seed)
    classes = sorted(by_class)
    rng.shuffle(classes)
    pools = []
    for c in classes:
        pool = sorted(by_class[c], key=lambda i: (i.shard, i.order))
        rng.shuffle(pool)
        pools.append(pool)
    limit = max_images if max_images is not None else len(items)
    rounds = per_class if per_class is not None else max((len(p) for p in pools), default=0)
    chosen: list[PlanItem] = []
    for r in range(rounds):
        added = False
        for pool in pools:
            if r < len(pool):
                chosen.append(pool[r])
                added = True
                if len(chosen) >= limit:
                    return sorted(chosen, key=lambda i: (i.shard, i.order))
        if not added:
            break
    return sorted(chosen, key=lambda i: (i.shard, i.order))


def spread_shards(n_shards: int, k: int) -> list[int]:
    """``k`` shard indices spread evenly over ``0..n_shards-1`` (the middle of each of k equal strata)."""
    k = max(1, min(k, n_shards))
    return [min(n_shards - 1, ((2 * i + 1) * n_shards) // (2 * k)) for i in range(k)]


# --- checkpoints and the build lock ----------------------------------------------------------------------


_CHECKPOINT_DAMAGE: tuple[type[BaseException], ...] = (*NPZ_DAMAGE, DamagedFileError, TypeError, AttributeError)
"""Anything reading a damaged checkpoint raises (the npz reader's errors, a bad checksum or state as ValueError)."""


def _digest(s1: npt.NDArray[np.float64], s2: npt.NDArray[np.float64], state: bytes) -> str:
    h = hashlib.sha256()
    for part in (np.ascontiguousarray(s1).tobytes(), np.ascontiguousarray(s2).tobytes(), state):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _save_checkpoint(work: Path, s1: npt.NDArray[np.float64], s2: npt.NDArray[np.float64], state: dict) -> None:
    """One atomic write of sums + state + checksum; the previous checkpoint becomes ``checkpoint.prev``."""
    blob = json.dumps(state, sort_keys=True).encode()
    buf = io.BytesIO()
    np.savez(buf, s1=s1, s2=s2, state=np.frombuffer(blob, np.uint8),
             digest=np.frombuffer(_digest(s1, s2, blob).encode(), np.uint8))
    if (work / _CKPT).exists():
        os.replace(work / _CKPT, work / _CKPT_PREV)
    atomic_write_bytes(work / _CKPT, buf.getvalue())


def _read_checkpoint(path: Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], dict]:
    """Load and verify one checkpoint file. Raises one of :data:`_CHECKPOINT_DAMAGE` when damaged."""
    f = read_npz(path, ("s1", "s2", "state", "digest"))
    s1, s2 = f["s1"].astype(np.float64), f["s2"].astype(np.float64)
    blob, digest = f["state"].tobytes(), f["digest"].tobytes().decode()
    if _digest(s1, s2, blob) != digest:
        raise ValueError("checksum mismatch")
    state = json.loads(blob)
    if not isinstance(state, dict) or not isinstance(state.get("n"), int) or not isinstance(state.get("skipped"), list):
        raise ValueError("checkpoint state has no image count or skipped list")
    return s1, s2, state


def _load_checkpoint(work: Path,
                     messages: list[str]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], dict] | None:
    """The newest checkpoint that passes its checksum; damaged ones are discarded with a message."""
    for name in (_CKPT, _CKPT_PREV):
        path = work / name
        if not path.exists():
            continue
        try:
            return _read_checkpoint(path)
        except _CHECKPOINT_DAMAGE as exc:
            msg = f"discarded damaged checkpoint {display_path(path)} ({type(exc).__name__}: {exc})"
            messages.append(msg + "; continuing from the previous good state")
            logger.warning("%s", messages[-1])
            path.unlink(missing_ok=True)
    return None


def _load_plan(work: Path, params: dict, messages: list[str]) -> dict | None:
    path = work / _PLAN
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("body"), dict):
            raise ValueError("no plan in the file")
        body = json.dumps(raw["body"], sort_keys=True)
        if hashlib.sha256(body.encode()).hexdigest() != raw["digest"]:
            raise ValueError("checksum mismatch")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        messages.append(f"discarded damaged build plan {display_path(path)} ({exc}); starting over")
        logger.warning("%s", messages[-1])
        return None
    old = raw["body"].get("params")
    if old != params:
        changed = sorted(k for k in set(params) | set(old or {}) if (old or {}).get(k) != params.get(k))
        messages.append(f"an unfinished build of this name used other settings ({', '.join(changed)}); starting over")
        logger.warning("%s", messages[-1])
        return None
    return raw["body"]


def _save_plan(work: Path, body: dict) -> None:
    text = json.dumps(body, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    atomic_write_bytes(work / _PLAN, json.dumps({"body": body, "digest": digest}).encode())


# --- feature accumulation ---------------------------------------------------------------------------------


def _decode_bytes(data: bytes, label: str) -> object:
    """Decode image bytes to RGB exactly as :func:`engine.data.imageio.open_rgb` converts files."""

    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(label, "too-large", str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(label, "not-an-image", str(exc)) from None
    with im:
        w, h = im.size
        if w * h > MAX_IMAGE_PIXELS:
            raise ImageDecodeError(label, "too-large", f"{w}x{h} pixels exceeds the limit of {MAX_IMAGE_PIXELS}")
        try:
            im.load()
            rgb = to_rgb(im)
            rgb.load()
        except Exception as exc:  # noqa: BLE001 - damaged data in any plugin
            raise ImageDecodeError(label, "truncated", f"decoding failed: {exc}") from None
        return rgb.copy() if rgb is im else rgb


_Decoded = tuple[str, "npt.NDArray[np.uint8] | ImageDecodeError"]
"""(feature-cache key, model-ready array or the reason it could not be decoded)."""


@dataclass
class _Sums:
    """Running float64 sums of features, and what was skipped."""

    s1: npt.NDArray[np.float64]
    s2: npt.NDArray[np.float64]
    n: int = 0
    skipped: list[dict] = field(default_factory=list)

    def add(self, batch: Sequence[_Decoded], features: npt.NDArray[np.float32]) -> int:
        """Add one batch: ``features`` are those of its decoded images, in order (:meth:`_Extractor.featurize`)."""
        good = [(k, a) for k, a in batch if not isinstance(a, ImageDecodeError)]
        self.skipped += [SkippedFile(path=e.path, reason=e.reason, detail=e.detail).model_dump()
                         for _, e in batch if isinstance(e, ImageDecodeError)]
        if good:
            f = features.astype(np.float64)
            self.s1 += f.sum(axis=0)
            self.s2 += f.T @ f
            self.n += f.shape[0]
        return len(good)


@dataclass
class _Pending:
    """One decoded batch on its way through :meth:`_Extractor.featurize`."""

    batch: list[_Decoded]
    keys: list[str]
    """Cache key of each decoded image ('' = unknown)."""
    found: dict[str, npt.NDArray[np.float32]]
    """Cached features by key."""
    miss: list[int]
    """Positions (among the decoded images) the network must compute."""
    arrays: list[npt.NDArray[np.uint8]]
    """Their model-ready arrays."""


class _Extractor:
    """Decodes in a thread pool; features from the shared content-keyed cache, else from the network.

    The cache (:mod:`engine.fid.cache`, the one ``fid`` and ``recommend`` use) stores the network's float32
    output, so a cached image contributes exactly what a fresh forward pass did. A cache that cannot be
    opened or read is left out with a warning: it is an optimisation and never costs the build.
    """

    def __init__(self, config: FidConfig, device: torch.device | str, preprocessing: str, ext_id: str) -> None:
        self.config, self.device, self.preprocessing, self.ext_id = config, device, preprocessing, ext_id
        self._net: FeatureExtractor | None = None  # loaded on the first cache miss
        self.pool = ThreadPoolExecutor(max_workers=resolve_workers(config.workers))
        self.cache: FeatureCache | None = None
        self.n_cached = 0
        if config.use_cache:
            try:
                self.cache = FeatureCache()
            except (StoreError, OSError, sqlite3.Error) as exc:
                logger.warning("building without the feature cache: %s", exc)

    def load(self) -> FeatureExtractor:
        """The network, loaded on the first call (callers load it before any download, so bad weights fail
        before the work)."""
        if self._net is None:
            self._net = load_inception(self.config, _device(self.device))
        return self._net

    def _cached(self, keys: list[str]) -> dict[str, npt.NDArray[np.float32]]:
        if self.cache is None:
            return {}
        try:
            return self.cache.get_many(keys, self.config.dims)
        except sqlite3.Error as exc:
            logger.warning("feature cache unreadable (%s); continuing without it", exc)
            self.cache = None
            return {}

    def featurize(self, batches: Iterator[list[_Decoded]]) -> Iterator[tuple[list[_Decoded], npt.NDArray[np.float32]]]:
        """Each decoded batch with the features of its decoded images, in order.

        The cache is read and written in the calling thread; the network's passes over the images the cache
        lacks run side by side, one torch thread each on a CPU (:func:`engine.fid.features.one_thread_per_pass`:
        an image's features are then the same bits in every process that forms the same batch).
        """
        net = self.load()

        def prepared() -> Iterator[_Pending]:
            for batch in batches:
                good = [(k, a) for k, a in batch if not isinstance(a, ImageDecodeError)]
                keys = [k for k, _ in good]
                found = self._cached([k for k in keys if k])
                miss = [i for i, k in enumerate(keys) if not k or k not in found]
                yield _Pending(batch, keys, found, miss, [good[i][1] for i in miss])

        def forward(item: _Pending) -> tuple[_Pending, npt.NDArray[np.float32] | None]:
            return item, forward_arrays(net, item.arrays) if item.miss else None

        with one_thread_per_pass(net):
            for item, fresh in run_ordered(forward, prepared(), forward_lanes(net, batch_size=self.config.batch_size)):
                out = np.empty((len(item.keys), self.config.dims), np.float32)
                for i, k in enumerate(item.keys):
                    if k in item.found:
                        out[i] = item.found[k]
                if item.miss and fresh is not None:
                    out[item.miss] = fresh
                    self._store((item.keys[i], out[i]) for i in item.miss if item.keys[i])
                self.n_cached += len(item.keys) - len(item.miss)
                yield item.batch, out

    def _store(self, rows: Iterator[tuple[str, npt.NDArray[np.float32]]]) -> None:
        if self.cache is not None:
            try:
                self.cache.put_many(rows)
            except sqlite3.Error as exc:
                logger.warning("feature cache not writable (%s); continuing without it", exc)
                self.cache = None

    def _key(self, data: bytes) -> str:
        return cache_key(content_sha256(data), self.ext_id, self.preprocessing)

    def decode_files(self, paths: Sequence[str]) -> list[_Decoded]:
        def one(p: str) -> _Decoded:
            try:
                key = self._key(Path(p).read_bytes())
            except OSError:
                key = ""  # open_rgb below reports the precise reason
            try:
                return key, to_model_array(open_rgb(Path(p)), self.preprocessing)
            except ImageDecodeError as exc:
                return key, exc
        return list(self.pool.map(one, paths))

    def decode_blobs(self, blobs: Sequence[tuple[str, bytes | ImageDecodeError]]) -> list[_Decoded]:
        def one(item: tuple[str, bytes | ImageDecodeError]) -> _Decoded:
            label, data = item
            if isinstance(data, ImageDecodeError):
                return "", data
            try:
                return self._key(data), to_model_array(_decode_bytes(data, label), self.preprocessing)
            except ImageDecodeError as exc:
                return "", exc
        return list(self.pool.map(one, blobs))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.cache is not None:
            self.cache.close()


def _device(device: torch.device | str) -> torch.device:
    from engine.device import resolve_device

    return resolve_device(device) if isinstance(device, str) else device


# --- the two pipelines -----------------------------------------------------------------------------------


@dataclass
class _Job:
    """Everything one build needs, fixed before any work starts."""

    name: str
    source: Source
    work: Path
    params: dict
    ext: _Extractor
    batch_size: int
    checkpoint_every: int
    on_progress: ProgressCallback | None
    messages: list[str] = field(default_factory=list)


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


def _folder_plan(job: _Job, max_images: int | None, per_class: int | None, seed: int) -> dict:
    """Index the folder tree, draw the sample (:func:`plan_sample`) and save it as the build plan."""
    items, skipped_index = discover_items(Path(job.source.root))
    if not items:
        raise EmptyDatasetError(f"{display_path(job.source.root)}: no images found to build reference {job.name!r}")
    plan = plan_sample(items, max_images=max_images, per_class=per_class, seed=seed)
    body = {"params": job.params, "plan": [i.name for i in plan], "n_classes": len({i.cls for i in plan}),
            "index_skipped": [s.model_dump() for s in skipped_index]}
    _save_plan(job.work, body)
    return body


def _folder_note(body: dict, max_images: int | None, per_class: int | None, seed: int) -> str:
    return (f"folder source; {body['n_classes']} classes; round-robin class-balanced sample, seed {seed}, "
            f"max_images {max_images}, per_class {per_class}")


def _checkpoint_stride(checkpoint_every: int, batch_size: int) -> int:
    """Images between folder checkpoints: ``checkpoint_every`` rounded up to whole batches, so every stretch
    between two checkpoints (a Dask unit) holds the same batches as the one-process build."""
    return max(1, -(-checkpoint_every // batch_size)) * batch_size


def _one_ahead(prepare: Callable[[int], list[_Decoded]],
               starts: Sequence[int]) -> Generator[list[_Decoded], None, None]:
    """``prepare(start)`` for each start, the next one running in a thread while the caller uses the current one.

    Reading and decoding overlap the network this way. On early exit (``close()``), the batch in flight is
    awaited before returning, so the caller may close the files it reads from right after.
    """
    if not starts:
        return
    with ThreadPoolExecutor(max_workers=1) as ahead:
        nxt: Future[list[_Decoded]] = ahead.submit(prepare, starts[0])
        try:
            for i in range(len(starts)):
                batch = nxt.result()
                if i + 1 < len(starts):
                    nxt = ahead.submit(prepare, starts[i + 1])
                yield batch
        finally:
            if not nxt.cancel():
                with contextlib.suppress(Exception):
                    nxt.result()


def _choose_members(members: list[tarfile.TarInfo], quota: int | None, seed: int, shard: str) -> list[tarfile.TarInfo]:
    """A seeded draw of ``quota`` members of one shard, returned in storage order."""
    if quota is None or quota >= len(members):
        return members
    rng = random.Random(f"{seed}:{shard}")
    keep = set(rng.sample(range(len(members)), quota))
    return [m for k, m in enumerate(members) if k in keep]


def _read_shard(ext: _Extractor, batch_size: int, download: Path, sums: _Sums, ref: ShardRef, quota: int | None,
                seed: int, on_batch: Callable[[], None] | None = None) -> ShardRecord:
    """Download (if remote, into ``download``), list, sample and accumulate one shard; returns its provenance
    record. The one shard reader of both backends: batches are ``batch_size`` chosen members in storage order."""
    n0, skipped0 = sums.n, len(sums.skipped)
    with fetch_shard(ref, download) as got:
        listing = list_tar_images(got.path, ref.name)
        sums.skipped += [s.model_dump() for s in listing.skipped]
        chosen = _choose_members(listing.members, quota, seed, ref.name)
        if not chosen:  # nothing usable (the listing recorded why)
            return ShardRecord(url=ref.url, sha256=got.sha256, size=got.size, n_images=0,
                               n_skipped=len(sums.skipped) - skipped0)
        with tarfile.open(got.path, "r:*") as tf:
            def prepare(start: int) -> list[_Decoded]:
                blobs: list[tuple[str, bytes | ImageDecodeError]] = []
                for m in chosen[start:start + batch_size]:  # read in storage order, by one thread
                    label = f"{ref.name}:{m.name}"
                    try:
                        fh = tf.extractfile(m)
                        blobs.append((label, fh.read() if fh is not None else b""))
                    except (tarfile.TarError, OSError, EOFError) as exc:
                        blobs.append((label, ImageDecodeError(label, "truncated", str(exc))))
                return ext.decode_blobs(blobs)

            with contextlib.closing(_one_ahead(prepare, list(range(0, len(chosen), batch_size)))) as batches:
                for batch, feats in ext.featurize(batches):
                    sums.add(batch, feats)
                    if on_batch is not None:
                        on_batch()
    return ShardRecord(url=ref.url, sha256=got.sha256, size=got.size, n_images=sums.n - n0,
                       n_skipped=len(sums.skipped) - skipped0)


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


def _shard_plan(job: _Job, max_images: int | None, n_shards: int | None) -> dict:
    """Pick the shards to read (:func:`spread_shards`) and save them as the build plan."""
    shards = job.source.shards
    k = n_shards or (math.ceil(max_images / IMAGES_PER_SHARD) if max_images else len(shards))
    body = {"params": job.params, "picked": spread_shards(len(shards), k)}
    sizes = [shards[i].size for i in body["picked"]]
    logger.info("reading %d of %d shards%s", len(body["picked"]), len(shards),
                "" if None in sizes else f" ({sum(s or 0 for s in sizes) / 1e9:.2f} GB)")
    _save_plan(job.work, body)
    return body


def _shard_note(job: _Job, n: int, n_done: int, max_images: int | None, seed: int) -> str:
    """The sidecar note of a shard build (and a message when fewer images than asked could be read)."""
    if max_images is not None and n < max_images:
        job.messages.append(f"only {n} of the requested {max_images} images could be read from {n_done} "
                            "shards; pass --shards with a larger number to read more shards")
    return (f"shard source; {n_done} of {len(job.source.shards)} shards, spread evenly over the listing; seeded "
            f"draw inside each shard (seed {seed}); max_images {max_images}")


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
    preprocessing = "pil-bicubic-299" if config.resize == "auto" else config.resize
    with reference_lock(name, "reference build"):
        src = resolve_source(source)
        if src.kind == "shards" and per_class is not None:
            raise ConfigError("--per-class needs a folder tree with class folders; shard sources are sampled per shard")
        if src.kind == "folder" and shards is not None:
            raise ConfigError("--shards applies to tar-shard sources; this source is a folder of images")
        params = _params(src, config, weights_digest, preprocessing,
                         {"max_images": max_images, "per_class": per_class, "shards": shards, "seed": seed})
        job = _Job(name=name, source=src, work=references_dir() / f".{name}.partial", params=params,
                   ext=_Extractor(config, device, preprocessing, params["extractor"]), batch_size=config.batch_size,
                   checkpoint_every=checkpoint_every, on_progress=on_progress)
        try:
            job.ext.load()
            sums, extra = _run(job, max_images, per_class, shards, seed)
        finally:
            job.ext.close()
        return _finish(job, target, sums, extra, weights_digest)


def _run(job: _Job, max_images: int | None, per_class: int | None, shards: int | None, seed: int) -> tuple[_Sums, dict]:
    """The build itself, in this process or on Dask (:mod:`engine.fid.refdask`); returns the sums and sidecar extras."""
    if job.ext.config.backend == "dask":
        from engine.fid.refdask import dask_build

        return dask_build(job, max_images=max_images, per_class=per_class, n_shards=shards, seed=seed)
    sums, body, state = _start(job, job.ext.config.dims)
    if job.source.kind == "folder":
        return sums, _folder_build(job, sums, body, state, (max_images, per_class, seed))
    return sums, _shard_build(job, sums, body, state, (max_images, shards, seed))


def _params(src: Source, config: FidConfig, weights_digest: str, preprocessing: str, limits: dict) -> dict:
    """Everything that must match for a rerun to resume (a change starts the build over)."""
    return {"source": src.text if src.kind == "shards" else src.root, "revision": src.revision,
            "shard_urls": hashlib.sha256("\n".join(s.url for s in src.shards).encode()).hexdigest(), **limits,
            "extractor": extractor_id(config.dims, weights_digest), "preprocessing": preprocessing,
            "dims": config.dims, "batch_size": config.batch_size}


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
        build=extra.get("build") or BuildInfo(backend="local", workers=1, units=max(1, len(extra["shards"]))),
    )
    save_stats(target, FeatureStats(mu=mu, sigma=sigma, n=n), prov)
    remove_tree(job.work)
    logger.info("reference %r: %d images (%d from the feature cache), %d skipped -> %s", job.name, n,
                job.ext.n_cached, prov.n_skipped, target)
    info = resolve_reference(job.name)[1]
    return info.model_copy(update={"messages": list(job.messages)})
