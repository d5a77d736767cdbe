"""Build reference FID statistics from an image tree or WebDataset-style tar shards, resumably.

Sources:

* a folder tree (any layout :func:`engine.data.index.index_dataset` accepts): the class of an image is its
  first-level folder (for ImageNet-21k, the WordNet id such as ``n01440764``);
* a ``.tar`` file, or a folder holding ``.tar``/``.tar.gz`` shards (WebDataset layout). Image members
  are read one by one with :mod:`tarfile` (never extracted to disk). The class of a member is its
  first folder (``n01440764/x.JPEG``) or else the prefix of its key before the first ``_``
  (``n01440764_10026.jpg``), else the shard's name.

Sampling (reproducible from ``seed``): classes are visited round-robin in a seeded order; each
round takes the next image of every class (images shuffled within each class), at most
``per_class`` rounds, until ``max_images`` images are planned. The plan is then read in storage
order (sorted by file / shard and member), so tar shards stream forward.

Resumability: the plan, the running float64 sums ``sum(x)`` and ``sum(x x^T)`` and the position
are checkpointed atomically in ``<references>/.<name>.partial/`` every ``checkpoint_every``
images (at batch boundaries). A rerun with the same arguments continues from there and performs
the same float operations in the same order as an uninterrupted build, so it gives the same
statistics. ``sigma = (sum(x x^T) - n mu mu^T) / (n - 1)`` in float64 (the features are float32
network outputs, so float64 sums lose nothing that matters at n <= 10^7).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import shutil
import tarfile
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from engine.io import atomic_write_bytes, atomic_write_text, json_digest
from engine.config.fid import FidConfig
from engine.errors import ConfigError, DatasetError, EmptyDatasetError, ImageDecodeError, ReferenceStatsError
from engine.fid.features import (
    PREPROCESSING,
    extractor_id,
    forward_arrays,
    load_inception,
    resolve_weights,
    to_model_array,
    weights_sha256,
)
from engine.fid.frechet import FeatureStats, StatsProvenance, library_versions, save_stats
from engine.data.imageio import MAX_IMAGE_PIXELS, SkippedFile, display_path, is_image_name, open_rgb, resolve_workers
from engine.paths import references_dir
from engine.progress import ProgressCallback, report
from engine.fid.reference import ReferenceInfo, reference_path, resolve_reference, validate_reference_name

if TYPE_CHECKING:
    import torch

__all__ = ["build_reference", "plan_sample", "discover_items", "plan_digest", "PlanItem"]

logger = logging.getLogger(__name__)
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class PlanItem:
    """One image to read: a file (``shard == -1``, ``name`` = path) or tar member ``name`` of ``shard``."""

    cls: str
    shard: int
    name: str
    order: int


def _is_tar(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_TAR_SUFFIXES)


def _member_class(member: str, shard: Path) -> str:
    parts = member.strip("/").split("/")
    if len(parts) > 1:
        return parts[0]
    key = parts[0].split(".", 1)[0]
    return key.split("_", 1)[0] if "_" in key else shard.name.split(".", 1)[0]


def discover_items(source: Path) -> tuple[str, list[Path], list[PlanItem], int]:
    """List every candidate image of ``source``.

    Returns:
        ``(kind, shards, items, n_skipped_while_indexing)`` where ``kind`` is ``"tar"`` or ``"folder"``.
    """
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"{display_path(source)}: no such folder or tar file")
    shards = [source] if _is_tar(source) else []
    if source.is_dir():
        shards = sorted(p for p in source.iterdir() if _is_tar(p) and not p.name.startswith("."))
    if shards:
        items: list[PlanItem] = []
        for s, shard in enumerate(shards):
            try:
                with tarfile.open(shard, "r:*") as tf:
                    for k, m in enumerate(tf):
                        if m.isfile() and m.size > 0 and is_image_name(m.name):
                            items.append(PlanItem(_member_class(m.name, shard), s, m.name, k))
            except (tarfile.TarError, OSError) as exc:
                raise DatasetError(f"{display_path(shard)}: not a readable tar file ({exc})") from None
        return "tar", shards, items, 0
    from engine.data.index import index_dataset

    index = index_dataset(source)
    names = index.classes
    items = [
        PlanItem(names[smp.label] if smp.label is not None else "", -1, os.fsdecode(smp.path), k)
        for k, smp in enumerate(index.samples)
    ]
    return "folder", [], items, len(index.skipped)


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


def _decode_bytes(data: bytes, label: str) -> object:
    """Decode image bytes to RGB exactly as :func:`engine.data.imageio.open_rgb` converts files."""
    from PIL import Image, UnidentifiedImageError

    from engine.data.imageio import to_rgb  # the one shared conversion rule (module docstring there)

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


class _Reader:
    """Sequential access to plan items; tar shards stay open while consecutive items use them."""

    def __init__(self, shards: Sequence[Path]) -> None:
        self.shards = list(shards)
        self._shard = -1
        self._tf: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}

    def read(self, item: PlanItem) -> bytes | ImageDecodeError:
        label = f"{self.shards[item.shard].name}:{item.name}" if item.shard >= 0 else item.name
        if item.shard < 0:
            return b""  # files are opened by the decode threads themselves
        try:
            if item.shard != self._shard:
                self.close()
                self._tf = tarfile.open(self.shards[item.shard], "r:*")
                self._members = {m.name: m for m in self._tf.getmembers()}
                self._shard = item.shard
            assert self._tf is not None
            fh = self._tf.extractfile(self._members[item.name])
            if fh is None:
                return ImageDecodeError(label, "not-an-image", "not a regular member")
            return fh.read()
        except (tarfile.TarError, OSError, KeyError, EOFError) as exc:
            return ImageDecodeError(label, "unreadable", str(exc))

    def close(self) -> None:
        if self._tf is not None:
            self._tf.close()
        self._tf, self._shard, self._members = None, -1, {}


def _save_checkpoint(work: Path, pos: int, n: int, s1: npt.NDArray, s2: npt.NDArray, skipped: list[dict]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, s1=s1, s2=s2)
    atomic_write_bytes(work / "sums.npz", buffer.getvalue())
    atomic_write_text(work / "state.json", json.dumps({"pos": pos, "n": n, "skipped": skipped}))


def build_reference(
    source: Path,
    *,
    name: str,
    config: FidConfig,
    device: torch.device | str,
    max_images: int | None = None,
    per_class: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    checkpoint_every: int = 2000,
    on_progress: ProgressCallback | None = None,
) -> ReferenceInfo:
    """Compute reference statistics and store them as ``<references>/<name>.npz`` + ``.json``.

    Args:
        source: Folder tree, one ``.tar`` shard, or a folder of shards.
        name: Reference name (``in21k`` is what ``recommend`` uses by default).
        config: Feature extraction settings; ``resize='auto'`` means ``pil-bicubic-299`` here
            (reference collections have mixed sizes, and a fixed choice keeps references comparable).
        device: Where the network runs.
        max_images: Stop after this many planned images (None = all).
        per_class: At most this many images per class (None = no cap).
        seed: Sampling seed.
        overwrite: Replace an existing reference of that name.
        checkpoint_every: Images between checkpoints (rounded up to whole batches).
        on_progress: ``on_progress(done, total)`` after each batch (an exception raised from it
            interrupts the build; the last checkpoint is kept and a rerun resumes).

    Raises:
        ReferenceStatsError: The reference exists (without ``overwrite``) or nothing usable was found.
        WeightsNotFoundError: No Inception weights.
    """
    validate_reference_name(name)
    if (max_images is not None and max_images < 2) or (per_class is not None and per_class < 1):
        raise ConfigError("--max-images must be >= 2 and --per-class >= 1")
    target = reference_path(name)
    if target.exists() and not overwrite:
        raise ReferenceStatsError(f"reference {name!r} already exists at {target}; pass --overwrite to rebuild it")
    preprocessing = "pil-bicubic-299" if config.resize == "auto" else config.resize
    ext_id = extractor_id(config.dims, weights_sha256(resolve_weights(config)))
    source = Path(source).expanduser().resolve()
    params = {
        "source": os.fsdecode(source), "max_images": max_images, "per_class": per_class, "seed": seed,
        "extractor": ext_id, "preprocessing": preprocessing, "dims": config.dims, "batch_size": config.batch_size,
    }
    work = references_dir() / f".{name}.partial"
    pos, n, skipped = 0, 0, []
    s1 = np.zeros(config.dims, np.float64)
    s2 = np.zeros((config.dims, config.dims), np.float64)
    resumed = False
    try:
        meta = json.loads((work / "params.json").read_text(encoding="utf-8"))
        if meta["params"] == params:
            kind, shards = meta["kind"], [Path(p) for p in meta["shards"]]
            plan = [PlanItem(**d) for d in meta["plan"]]
            n_index_skipped, n_classes = meta["n_index_skipped"], meta["n_classes"]
            state = json.loads((work / "state.json").read_text(encoding="utf-8"))
            with np.load(work / "sums.npz", allow_pickle=False) as f:
                s1, s2 = f["s1"].copy(), f["s2"].copy()
            pos, n, skipped = state["pos"], state["n"], state["skipped"]
            resumed = True
            logger.info("resuming reference %r at image %d of %d", name, pos, len(plan))
    except (OSError, ValueError, KeyError, TypeError):
        resumed = False
    if not resumed:
        shutil.rmtree(work, ignore_errors=True)
        kind, shards, items, n_index_skipped = discover_items(source)
        if not items:
            raise EmptyDatasetError(f"{display_path(source)}: no images found to build reference {name!r}")
        plan = plan_sample(items, max_images=max_images, per_class=per_class, seed=seed)
        n_classes = len({i.cls for i in plan})
        work.mkdir(parents=True, exist_ok=True)
        _save_checkpoint(work, 0, 0, s1, s2, [])
        atomic_write_text(work / "params.json", json.dumps({
            "params": params, "kind": kind, "shards": [os.fsdecode(p) for p in shards],
            "plan": [asdict(i) for i in plan], "n_index_skipped": n_index_skipped, "n_classes": n_classes,
        }))

    total = len(plan)
    bs = config.batch_size
    every = max(1, -(-checkpoint_every // bs)) * bs
    report(on_progress, pos, total)
    if pos < total:
        extractor = load_inception(config, _device(device))
        reader = _Reader(shards)
        workers = resolve_workers(config.workers)

        def decode(k: int, data: bytes | ImageDecodeError) -> npt.NDArray[np.uint8] | ImageDecodeError:
            if isinstance(data, ImageDecodeError):
                return data
            it = plan[k]
            try:
                img = open_rgb(Path(it.name)) if it.shard < 0 else _decode_bytes(data, f"{shards[it.shard].name}:{it.name}")
                return to_model_array(img, preprocessing)
            except ImageDecodeError as exc:
                return exc

        def prepare(start: int, pool: ThreadPoolExecutor) -> list[npt.NDArray[np.uint8] | ImageDecodeError]:
            ks = range(start, min(total, start + bs))
            raw = [reader.read(plan[k]) for k in ks]  # sequential: tar streams forward
            return list(pool.map(decode, ks, raw))

        with ThreadPoolExecutor(max_workers=workers) as pool, ThreadPoolExecutor(max_workers=1) as ahead:
            nxt: Future = ahead.submit(prepare, pos, pool)
            try:
                while pos < total:
                    batch = nxt.result()
                    pos = min(total, pos + bs)
                    if pos < total:
                        nxt = ahead.submit(prepare, pos, pool)
                    arrays = [a for a in batch if not isinstance(a, ImageDecodeError)]
                    skipped += [SkippedFile(path=e.path, reason=e.reason, detail=e.detail).model_dump()
                                for e in batch if isinstance(e, ImageDecodeError)]
                    if arrays:
                        f = forward_arrays(extractor, arrays).astype(np.float64)
                        s1 += f.sum(axis=0)
                        s2 += f.T @ f
                        n += f.shape[0]
                    if pos % every == 0 or pos == total:
                        _save_checkpoint(work, pos, n, s1, s2, skipped)
                    report(on_progress, pos, total)
            finally:
                if not nxt.cancel():  # let a running prefetch finish before closing its tar file
                    with contextlib.suppress(Exception):
                        nxt.result()
                reader.close()
    if n < 2:
        raise EmptyDatasetError(f"{display_path(source)}: only {n} usable image(s); a reference needs at least 2")
    mu = s1 / n
    sigma = (s2 - n * np.outer(mu, mu)) / (n - 1)
    sigma = 0.5 * (sigma + sigma.T)
    notes = [
        f"{kind} source; {n_classes} classes; round-robin class-balanced sample, seed {seed}, "
        f"max_images {max_images}, per_class {per_class}",
        f"preprocessing: {PREPROCESSING[preprocessing]}",
    ]
    prov = StatsProvenance(
        source=display_path(source), n_images=n, n_skipped=len(skipped) + n_index_skipped, dims=config.dims,
        extractor=ext_id, preprocessing=preprocessing, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        versions=library_versions(), notes=notes,
    )
    save_stats(target, FeatureStats(mu=mu, sigma=sigma, n=n), prov)
    shutil.rmtree(work, ignore_errors=True)
    logger.info("reference %r: %d images, %d skipped -> %s", name, n, prov.n_skipped, target)
    return resolve_reference(name)[1]


def _device(device: torch.device | str) -> torch.device:
    from engine.device import resolve_device

    return resolve_device(device) if isinstance(device, str) else device


def plan_digest(plan: Sequence[PlanItem]) -> str:
    """sha256 over a plan (for tests and logs)."""
    return json_digest([asdict(i) for i in plan])
