"""The parts of a reference build that both backends use: the plan, checkpoints, the extractor, shard reading.

:mod:`engine.fid.refbuild` runs a build in one process and hands ``--backend dask`` to
:mod:`engine.fid.refdask`; both plan the same sample, write the same checksummed ``.npz`` state files,
featurize through the same :class:`_Extractor` and read shards with the one :func:`_read_shard`. That
sharing is what makes the two backends give the same statistics (see refdask's docstring). The parts live
here, below both, so that refbuild imports refdask and refdask never imports refbuild (no import circle).
What a build does (sampling, checkpoints, resuming) is described in :mod:`engine.fid.refbuild`.

The public names (:class:`PlanItem`, :func:`discover_items`, :func:`plan_sample`, :func:`spread_shards`,
:data:`IMAGES_PER_SHARD`) are re-exported by :mod:`engine.fid.refbuild`, where callers import them.
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
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from engine.config.fid import FidConfig, device_type
from engine.data.imageio import (
    MAX_IMAGE_PIXELS,
    SkippedFile,
    display_path,
    open_rgb,
    resolve_workers,
    to_rgb,  # the one shared conversion rule (module docstring there)
)
from engine.data.index import index_dataset
from engine.data.sources import ShardRef, Source, fetch_shard, list_tar_images
from engine.errors import EmptyDatasetError, ImageDecodeError, StoreError
from engine.fid.cache import FeatureCache, cache_key
from engine.fid.features import (
    FeatureExtractor,
    content_sha256,
    forward_arrays,
    forward_lanes,
    load_inception,
    one_thread_per_pass,
    run_ordered,
    to_model_array,
)
from engine.fid.frechet import ShardRecord
from engine.io import NPZ_DAMAGE, DamagedFileError, atomic_write_bytes, read_npz
from engine.progress import ProgressCallback

if TYPE_CHECKING:
    import torch

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


# --- checkpoints and the build plan ----------------------------------------------------------------------


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

    def __init__(self, config: FidConfig, device: torch.device | str, preprocessing: str, ext_id: str,
                 loader: Callable[[FidConfig, torch.device], FeatureExtractor] = load_inception) -> None:
        self.config, self.device, self.preprocessing, self.ext_id = config, device, preprocessing, ext_id
        self._loader = loader  # how load() gets the network; refbuild passes one that looks up its own name
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
            self._net = self._loader(self.config, _device(self.device))
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
            lanes = forward_lanes(net, batch_size=self.config.batch_for(device_type(self.device)))
            for item, fresh in run_ordered(forward, prepared(), lanes):
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


# --- one build's job, its plan, notes and shard reading ---------------------------------------------


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
