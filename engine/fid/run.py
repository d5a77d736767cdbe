"""FID orchestration: image folder / stats file / dataset index -> statistics -> Fréchet distance.

Pipeline for a set of image files (:func:`extract_file_features`):

1. Fingerprint every file on a thread pool: read its bytes once, hash them (sha256) and read the
   image size from the header. Unreadable files are skipped with their reason.
2. Pick the named preprocessing (``auto``: ``pytorch-fid`` when all sizes agree, else
   ``pil-bicubic-299``; see :mod:`engine.fid.features`).
3. Look every file up in the content-keyed feature cache (:mod:`engine.fid.cache`).
4. Only for misses: load the network, decode on threads while the network runs, store each batch.

A second run over the same files therefore decodes nothing and never loads the network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from pydantic import Field

from engine.config import FrozenModel
from engine.config.fid import FidConfig, device_type
from engine.data.imageio import (
    ReadImage,
    SkippedFile,
    check_file,
    display_path,
    open_rgb,
    resolve_workers,
    unreachable_link,
)
from engine.data.index import index_dataset
from engine.errors import ConfigError, DatasetError, EmptyDatasetError, ImageDecodeError, StatsFileError, WeightsError
from engine.fid.cache import FeatureCache, cache_key
from engine.fid.equal_n import FidAtN, FidInfinity, ProjectedFeatures, fid_at_n, fid_infinity
from engine.fid.features import (
    content_sha256,
    extractor_id,
    header_size,
    iter_feature_batches,
    load_inception,
    resolve_weights,
    to_model_array,
    weights_sha256,
)
from engine.fid.frechet import (
    FeatureStats,
    PreparedReference,
    StatsProvenance,
    compute_feature_stats,
    frechet_distance,
    frechet_distance_from_features,
    library_versions,
    save_stats,
    small_sample_warning,
)
from engine.fid.gates import FidVerdict, implausible_fid_warning, verify_fid
from engine.fid.reference import (
    ReferenceInfo,
    reference_path,
    resolve_prepared_reference,
    validate_reference_name,
)
from engine.paths import cache_dir
from engine.progress import ProgressCallback, report

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from engine.data.index import DatasetIndex

__all__ = [
    "FileFeatures",
    "SideSummary",
    "FidResult",
    "FidMeasurement",
    "extract_file_features",
    "compute_fid",
    "measure_fid_against_reference",
    "config_for_reference",
    "library_versions",
]

logger = logging.getLogger(__name__)


@dataclass
class FileFeatures:
    """Features of a list of image files; ``ok[k]`` is the input index of ``features[k]``."""

    features: npt.NDArray[np.float32]
    ok: list[int]
    skipped: list[SkippedFile]
    preprocessing: str
    extractor: str
    n_cached: int
    warnings: list[str] = field(default_factory=list)


class SideSummary(FrozenModel):
    """One side of an FID comparison."""

    source: str = Field(description="Folder or stats file.")
    kind: str = Field(description="'images' (features extracted), 'stats' (a .npz) or 'reference' (a name).")
    n_images: int = Field(description="Images in the statistics (0 = unknown, e.g. a pytorch-fid .npz).")
    n_skipped: int = Field(default=0, description="Files skipped as unreadable.")
    n_cached: int = Field(default=0, description="Images whose features came from the cache.")
    extractor: str = Field(default="", description="Feature extractor id ('' = unknown).")
    preprocessing: str = Field(default="", description="Named preprocessing ('' = unknown).")


class FidResult(FrozenModel):
    """Result of ``vpt-advisor fid A B``."""

    fid: float | None = Field(description="Fréchet Inception Distance (None when only stats were saved).")
    a: SideSummary
    b: SideSummary | None = None
    dims: int = Field(description="Feature dimensionality.")
    warnings: list[str] = Field(default_factory=list)
    saved_stats: str | None = Field(default=None, description="Where the first side's stats were written.")
    seconds: float = Field(description="Wall time.")
    status: str | None = Field(default=None, description=(
        "Images against a stored reference or .npz: 'verified' or 'unverified' (see engine.fid.gates); else None."))
    unverified_reasons: list[str] = Field(default_factory=list, description="Why the FID is unverified.")


class FidMeasurement(FrozenModel):
    """FID of a dataset against a named reference, with everything needed to trust the number."""

    fid: float = Field(description="FID of all n_images images (the number 'vpt-advisor fid' prints).")
    n_images: int
    n_skipped: int
    reference: ReferenceInfo
    extractor: str
    preprocessing: str
    warnings: list[str] = Field(default_factory=list)
    at_n: list[FidAtN] = Field(default_factory=list, description=(
        "The FID at each requested sample size N (clamped to n_images; all images when none was requested), "
        "with bootstrap intervals."))
    infinity: FidInfinity | None = Field(default=None, description="FID-infinity estimate (None below 50 images).")
    status: str = Field(default="verified", description="'verified' or 'unverified' (see engine.fid.gates).")
    unverified_reasons: list[str] = Field(default_factory=list, description="Why the FID is unverified.")
    frechet_s: float = Field(default=0.0,
                             description="Seconds of linear algebra for the FID (reference load included).")
    total_linear_algebra_s: float = Field(default=0.0, description="The same plus subsets, bootstrap and FID-infinity.")

    def estimate(self, n: int | None) -> FidAtN:
        """The entry of :attr:`at_n` for sample size ``n`` (clamped to the dataset); all images when None.

        Raises:
            KeyError: ``n`` was not requested from :func:`measure_fid_against_reference`.
        """
        want = self.n_images if n is None else min(n, self.n_images)
        for entry in self.at_n:
            if entry.n == want:
                return entry
        raise KeyError(f"no FID at N = {want} was measured (measured: {[e.n for e in self.at_n]})")


def _resolve_device(device: torch.device | str) -> torch.device:
    from engine.device import resolve_device

    return resolve_device(device) if isinstance(device, str) else device


_Fingerprint = tuple[str, tuple[int, int] | None]
"""A readable file's content sha256 and its (width, height) from the header (None when unknown)."""


def _fingerprint(path: Path) -> _Fingerprint | ImageDecodeError:
    try:
        check_file(path)
        with open(path, "rb") as fh:
            data = fh.read()
    except ImageDecodeError as exc:
        return exc
    except OSError as exc:
        return ImageDecodeError(display_path(path), "unreadable", exc.strerror or str(exc))
    return content_sha256(data), header_size(data)


def _fingerprint_files(paths: Sequence[Path], workers: int) -> tuple[dict[int, _Fingerprint], list[SkippedFile]]:
    """Fingerprints of the readable files by input index (ascending), and the unreadable ones as skipped."""
    with ThreadPoolExecutor(max_workers=resolve_workers(workers)) as pool:
        prints = list(pool.map(_fingerprint, paths))
    readable: dict[int, _Fingerprint] = {}
    skipped: list[SkippedFile] = []
    for i, fp in enumerate(prints):
        if isinstance(fp, ImageDecodeError):
            skipped.append(SkippedFile(path=fp.path, reason=fp.reason, detail=fp.detail))
        else:
            readable[i] = fp
    return readable, skipped


def _choose_preprocessing(config: FidConfig, sizes: Sequence[tuple[int, int] | None]) -> str:
    distinct = {s for s in sizes if s is not None}
    if config.resize == "auto":
        return "pytorch-fid" if len(distinct) <= 1 else "pil-bicubic-299"
    if config.resize == "pytorch-fid" and len(distinct) > 1:
        raise ConfigError(
            f"preprocessing 'pytorch-fid' needs images of one size, found {len(distinct)} sizes "
            f"(e.g. {sorted(distinct)[:3]}); use resize 'auto' or 'pil-bicubic-299'"
        )
    return config.resize


def extract_file_features(
    paths: Sequence[Path],
    config: FidConfig,
    device: torch.device | str,
    *,
    on_progress: ProgressCallback | None = None,
    cache: FeatureCache | None = None,
    read: Sequence[ReadImage] | None = None,
) -> FileFeatures:
    """Features of image files, from the cache where possible (see the module docstring).

    Args:
        paths: Image files.
        config: Extraction settings.
        device: Where the network runs ("auto"/"cpu"/... strings are resolved only on a cache miss).
        on_progress: ``on_progress(done, total)`` over the images.
        cache: An open cache to use; by default the user cache when ``config.use_cache``.
        read: ``paths`` already read by :func:`engine.data.imageio.read_images` (same order): their digests
            and sizes replace the fingerprint pass and their held pixels the decode, so no file is opened
            again (a file whose pixels were not held is decoded from disk on a cache miss).

    Raises:
        WeightsNotFoundError: No Inception weights (needed even on a full cache hit: they name the cache key).
    """
    paths = list(paths)
    ext_id = extractor_id(config.dims, weights_sha256(resolve_weights(config)))
    if read is None:
        readable, skipped = _fingerprint_files(paths, config.workers)
    else:
        readable, skipped = {i: (r.sha256, (r.info.width, r.info.height)) for i, r in enumerate(read)}, []
    preprocessing = _choose_preprocessing(config, [size for _, size in readable.values()])
    job = _Extraction(paths=paths, keys={i: cache_key(sha, ext_id, preprocessing) for i, (sha, _) in readable.items()},
                      preprocessing=preprocessing, ext_id=ext_id, config=config, skipped=skipped,
                      on_progress=on_progress, held=[r.rgb for r in read] if read is not None else [])
    own_cache = cache is None and config.use_cache
    job.cache = FeatureCache() if own_cache else cache
    try:
        _cached_features(job)
        n_cached = len(job.feats)
        if len(job.feats) < len(job.keys):
            _extract_missing(job, device)
    finally:
        if own_cache and job.cache is not None:
            job.cache.close()
    ok = [i for i in job.keys if i in job.feats]
    array = np.stack([job.feats[i] for i in ok]) if ok else np.empty((0, config.dims), np.float32)
    report(on_progress, len(paths), len(paths))
    healed = [job.cache.problem] if job.cache is not None and job.cache.problem else []  # reported, never silent
    return FileFeatures(array, ok, skipped, preprocessing, ext_id, n_cached, warnings=healed)


@dataclass
class _Extraction:
    """One :func:`extract_file_features` call: what its cache lookup and its extraction share."""

    paths: list[Path]
    keys: dict[int, str]
    """Cache key of every readable file, by input index (ascending)."""
    preprocessing: str
    ext_id: str
    config: FidConfig
    skipped: list[SkippedFile]
    """Unreadable files, then files that fail to decode during extraction (appended)."""
    on_progress: ProgressCallback | None
    held: list[Image.Image | None] = field(default_factory=list)
    """Decoded RGB images by input index, when the caller read the files already (None: decode from disk)."""
    cache: FeatureCache | None = None
    feats: dict[int, npt.NDArray[np.float32]] = field(default_factory=dict)
    """Features found so far, by input index."""
    done: int = 0
    """Files accounted for (features found or skipped while decoding), for ``on_progress``."""


def _cached_features(job: _Extraction) -> None:
    """Fill ``job.feats`` with every file's features already in the cache, and report them as done."""
    found = job.cache.get_many(list(job.keys.values()), job.config.dims) if job.cache is not None else {}
    job.feats.update({i: found[k] for i, k in job.keys.items() if k in found})
    job.done = len(job.feats)
    report(job.on_progress, job.done, len(job.paths))


def _extract_missing(job: _Extraction, device: torch.device | str) -> None:
    """Load the network and extract the files the cache lacked (decoding on threads while it runs), storing
    each batch in the cache as it comes; files that fail to decode join ``job.skipped``."""
    misses = [i for i in job.keys if i not in job.feats]
    if job.config.backend == "dask":
        _extract_on_dask(job, misses, device)
        return
    extractor = load_inception(job.config, _resolve_device(device))
    if extractor.id != job.ext_id:  # the file was replaced after it was hashed: never key features by the wrong net
        raise WeightsError(f"the Inception weights changed while the FID ran ({job.ext_id.rsplit('=', 1)[-1]} when "
                           f"checked, {extractor.id.rsplit('=', 1)[-1]} when loaded); run the command again")

    def decode(i: int) -> npt.NDArray[np.uint8]:
        image = job.held[i] if i < len(job.held) else None
        return to_model_array(image if image is not None else open_rgb(job.paths[i]), job.preprocessing)

    batch_size = job.config.batch_for(device_type(getattr(extractor, "device", "cpu")))
    for idx, batch, failed in iter_feature_batches(
        misses, decode, extractor, batch_size=batch_size, workers=job.config.workers
    ):
        new = {misses[k]: batch[j] for j, k in enumerate(idx)}
        job.feats.update(new)
        if job.cache is not None and new:
            job.cache.put_many((job.keys[i], f) for i, f in new.items())
        for _, exc in failed:
            job.skipped.append(SkippedFile(path=exc.path, reason=exc.reason, detail=exc.detail))
        job.done += len(idx) + len(failed)
        report(job.on_progress, job.done, len(job.paths))


def _extract_on_dask(job: _Extraction, misses: list[int], device: torch.device | str) -> None:
    """:func:`_extract_missing` on Dask (:mod:`engine.fid.chunks`): the same batches, results cached here."""
    from engine.fid.chunks import ChunkFeatures, extract_on_dask

    def arrived(positions: list[int], chunk: ChunkFeatures) -> None:
        new = {misses[positions[k]]: chunk.features[j] for j, k in enumerate(chunk.ok)}
        job.feats.update(new)
        if job.cache is not None and new:
            job.cache.put_many((job.keys[i], f) for i, f in new.items())
        job.skipped += [s for _, s in chunk.skipped]
        job.done += len(chunk.ok) + len(chunk.skipped)
        report(job.on_progress, job.done, len(job.paths))

    dev = _resolve_device(device)  # the batch is fixed here, so every worker runs the same batches
    extract_on_dask([job.paths[i] for i in misses], job.config.for_device(dev.type), str(dev), job.preprocessing,
                    job.ext_id, arrived)


@dataclass
class _Side:
    stats: FeatureStats
    summary: SideSummary
    warnings: list[str]
    features: npt.NDArray[np.float32] | None = None
    prepared: PreparedReference | None = None
    preprocessing: str = ""
    info: ReferenceInfo | None = None


def _distance(x: _Side, y: _Side) -> float:
    """Fréchet distance, by the cheapest exact route.

    Images against a stored reference or ``.npz``: through the prepared reference (the same code as
    ``recommend``, so both print the same number). Two image sets with fewer images than dims:
    through the features' cross-Gram matrix. Otherwise the two covariances.
    """
    if x.features is not None and y.prepared is not None:
        return ProjectedFeatures(x.features, y.prepared).fid()
    if y.features is not None and x.prepared is not None:
        return ProjectedFeatures(y.features, x.prepared).fid()
    if x.features is not None and y.features is not None and min(x.stats.n, y.stats.n) < x.stats.dims:
        return frechet_distance_from_features(x.features, y.features)
    # both sides come from load_stats (validated) or compute_feature_stats (PSD by construction)
    return frechet_distance(x.stats.mu, x.stats.sigma, y.stats.mu, y.stats.sigma, validate=False)


def config_for_reference(config: FidConfig, reference_preprocessing: str) -> FidConfig:
    """The one preprocessing rule of every command: the reference's recorded preprocessing wins.

    With ``resize='auto'`` a set is measured the way the reference was built when that is possible:
    ``pil-bicubic-299`` always is; ``pytorch-fid`` needs one image size per set, so ``auto`` keeps
    choosing it for such sets and falls back to ``pil-bicubic-299`` for mixed sizes (then the
    measurement is marked as differing from the reference). An explicit ``resize`` is kept.
    """
    if config.resize == "auto" and reference_preprocessing == "pil-bicubic-299":
        return config.model_copy(update={"resize": "pil-bicubic-299"})
    return config


def _prepared_cache() -> Path:
    return cache_dir() / "frechet"


def _stats_from_images(
    source: str, paths: Sequence[Path], n_index_skipped: int, config: FidConfig, device: torch.device | str,
    on_progress: ProgressCallback | None, read: Sequence[ReadImage] | None = None,
) -> _Side:
    res = extract_file_features(paths, config, device, on_progress=on_progress, read=read)
    n_skipped = n_index_skipped + len(res.skipped)
    if len(res.ok) < 2:
        raise EmptyDatasetError(
            f"{source}: {len(res.ok)} usable image(s) ({n_skipped} skipped); FID needs at least 2 (ideally >= 2048)"
        )
    stats = compute_feature_stats(res.features)
    warnings = [w for w in [small_sample_warning(stats.n, config.dims, source)] if w] + res.warnings
    summary = SideSummary(
        source=source, kind="images", n_images=stats.n, n_skipped=n_skipped, n_cached=res.n_cached,
        extractor=res.extractor, preprocessing=res.preprocessing,
    )
    return _Side(stats, summary, warnings, res.features, preprocessing=res.preprocessing)


def _is_reference_name(text: str) -> bool:
    try:
        return reference_path(validate_reference_name(text)).is_file()
    except ConfigError:
        return False


def _stats_side(source: Path, config: FidConfig) -> _Side | None:
    """A side given as a ``.npz`` path or a reference name (None when ``source`` is neither)."""
    text = str(source)
    if source.suffix.lower() != ".npz" and (source.exists() or not _is_reference_name(text)):
        return None
    cache = _prepared_cache() if config.use_cache else None
    stats, info, prepared = resolve_prepared_reference(source if source.suffix.lower() == ".npz" else text, cache)
    label = display_path(source) if source.suffix.lower() == ".npz" else f"reference {info.name}"
    summary = SideSummary(
        source=label, kind="stats" if source.suffix.lower() == ".npz" else "reference", n_images=stats.n,
        extractor=info.extractor, preprocessing=info.preprocessing,
    )
    warns = [w for w in [small_sample_warning(stats.n, stats.dims, label)] if w]
    return _Side(stats, summary, warns, prepared=prepared, preprocessing=info.preprocessing, info=info)


def _source_side(
    source: Path, config: FidConfig, device: torch.device | str, on_progress: ProgressCallback | None,
    root: Path | None = None,
) -> _Side:
    source = Path(source)
    label = display_path(source)
    side = _stats_side(source, config)
    if side is not None:
        return side
    if not source.exists():
        why = unreachable_link(source) or "no such folder, .npz stats file or reference name"
        raise DatasetError(f"{label}: {why}")

    index = index_dataset(source, root if source.is_file() else None)  # --root: for list files and CSVs only
    return _stats_from_images(label, [s.path for s in index.samples], len(index.skipped), config, device, on_progress)


def _compat_warnings(a: SideSummary, b: SideSummary) -> list[str]:
    out = []
    if a.extractor and b.extractor and a.extractor != b.extractor:
        out.append(f"the two sides used different feature extractors ({a.extractor} vs {b.extractor}); "
                   "the FID is not meaningful")
    if a.preprocessing and b.preprocessing and a.preprocessing != b.preprocessing:
        out.append(f"the two sides used different preprocessing ({a.preprocessing} vs {b.preprocessing})")
    return out


def _provenance(summary: SideSummary, dims: int, notes: list[str] | None = None) -> StatsProvenance:
    return StatsProvenance(
        source=summary.source, n_images=summary.n_images, n_skipped=summary.n_skipped, dims=dims,
        extractor=summary.extractor, preprocessing=summary.preprocessing,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), versions=library_versions(),
        notes=list(notes or []),
    )


def compute_fid(
    a: Path,
    b: Path | None,
    *,
    config: FidConfig,
    device: torch.device | str,
    save_stats_to: Path | None = None,
    on_progress: ProgressCallback | None = None,
    root: Path | None = None,
) -> FidResult:
    """FID between two folders / stats files (``vpt-advisor fid A B``); optionally save A's stats.

    ``root`` is the folder the paths of a list-file or CSV side are relative to (``--root``).

    Raises:
        ConfigError: Neither ``b`` nor ``save_stats_to`` given, or the dims of the two sides differ.
    """
    t0 = time.perf_counter()
    if b is None and save_stats_to is None:
        raise ConfigError("give a second folder/.npz to compare with, or --save-stats OUT.npz")
    side2_first = _stats_side(Path(b), config) if b is not None else None
    if side2_first is not None:  # the reference's recorded preprocessing wins, as in recommend
        config = config_for_reference(config, side2_first.preprocessing)
    side1 = _source_side(Path(a), config, device, on_progress, root)
    if side2_first is None and side1.prepared is not None and b is not None:
        config = config_for_reference(config, side1.preprocessing)
    s1, sum1, warn = side1.stats, side1.summary, list(side1.warnings)
    saved = None
    if save_stats_to is not None:
        save_stats(Path(save_stats_to), s1, _provenance(sum1, s1.dims))
        saved = display_path(save_stats_to)
    fid = None
    sum2 = None
    verdict: FidVerdict | None = None
    if b is not None:
        side2 = side2_first if side2_first is not None else _source_side(Path(b), config, device, on_progress, root)
        sum2 = side2.summary
        warn += side2.warnings
        if s1.dims != side2.stats.dims:
            raise StatsFileError(
                f"feature dimensions differ: {sum1.source} has {s1.dims}, {sum2.source} has {side2.stats.dims}"
            )
        warn += _compat_warnings(sum1, sum2)
        fid = _distance(side1, side2)
        verdict = _fid_verdict(side1, side2)
    for w in warn:
        logger.info("warning: %s", w)  # also returned in .warnings, which the CLI shows
    return FidResult(fid=fid, a=sum1, b=sum2, dims=s1.dims, warnings=warn, saved_stats=saved,
                     seconds=time.perf_counter() - t0, status=verdict.status if verdict else None,
                     unverified_reasons=list(verdict.reasons) if verdict else [])


def _fid_verdict(x: _Side, y: _Side) -> FidVerdict | None:
    """The gates of ``recommend`` for images measured against a stored reference or ``.npz``."""
    images, ref = (x, y) if y.info is not None and x.features is not None else (y, x)
    if ref.info is None or images.features is None:
        return None
    return verify_fid(ref.info, images.summary.extractor, images.summary.preprocessing)


def _measure_warnings(side: _Side, fid: float, verdict: FidVerdict) -> list[str]:
    warnings = list(side.warnings)
    warnings += [f"--trust-reference: accepted although {doubt}" for doubt in verdict.trusted]
    warnings += [f"FID unverified: {reason}" for reason in verdict.reasons]
    implausible = implausible_fid_warning(fid, side.stats.n, verdict)
    if implausible:
        warnings.append(implausible)
    if fid == 0.0:
        warnings.append("FID is 0: the dataset has the same feature statistics as the reference (the same images?)")
    return warnings


def measure_fid_against_reference(
    index: DatasetIndex,
    reference: str | Path,
    *,
    config: FidConfig,
    device: torch.device | str,
    on_progress: ProgressCallback | None = None,
    at_n: Sequence[int] = (),
    seed: int = 0,
    trust_reference: bool = False,
    read: Sequence[ReadImage] | None = None,
) -> FidMeasurement:
    """FID of a dataset's images against reference statistics (``recommend``'s similarity axis).

    The reference is resolved first, so a missing one fails before any image is read. Features are
    extracted once; the FID at each size in ``at_n`` (mean over random subsets, seeded), the FID of
    all images, their bootstrap intervals and FID-infinity all reuse them (:mod:`engine.fid.equal_n`).
    The gates of :mod:`engine.fid.gates` set ``status``. ``read`` (aligned with ``index.samples``) is the
    profile's single read of the files (:func:`engine.data.profile.read_dataset`), handed on so that no
    file is opened a second time.

    Raises:
        ReferenceNotFoundError: Unknown reference name/path (the message says how to build it).
        WeightsNotFoundError: No Inception weights (the message says where to put the file).
        EmptyDatasetError: Fewer than 2 usable images.
    """
    t0 = time.perf_counter()
    ref_stats, ref_info, prepared = resolve_prepared_reference(
        reference, _prepared_cache() if config.use_cache else None)
    prep_s = time.perf_counter() - t0
    config = config_for_reference(config, ref_info.preprocessing)
    if ref_stats.dims != config.dims:
        raise ConfigError(f"reference {ref_info.name!r} has {ref_stats.dims}-d features but dims={config.dims}")
    side = _stats_from_images(
        display_path(index.root), [s.path for s in index.samples], len(index.skipped), config, device, on_progress,
        read=read,
    )
    assert side.features is not None
    t1 = time.perf_counter()
    proj = ProjectedFeatures(side.features, prepared)
    fid = proj.fid()
    frechet_s = prep_s + time.perf_counter() - t1
    sizes = sorted({min(int(n), side.stats.n) for n in at_n if n >= 2} or {side.stats.n})
    estimates = [fid_at_n(proj, n, seed=seed, full=fid) for n in sizes]
    infinity = fid_infinity(proj, seed=seed, full=fid)
    verdict = verify_fid(ref_info, side.summary.extractor, side.summary.preprocessing, trust_reference=trust_reference)
    warnings = _measure_warnings(side, fid, verdict)
    for w in warnings:
        logger.info("warning: %s", w)  # also returned in .warnings, which callers show
    return FidMeasurement(
        fid=fid, n_images=side.stats.n, n_skipped=side.summary.n_skipped, reference=ref_info,
        extractor=side.summary.extractor, preprocessing=side.summary.preprocessing, warnings=warnings,
        at_n=estimates, infinity=infinity, status=verdict.status, unverified_reasons=list(verdict.reasons),
        frechet_s=frechet_s, total_linear_algebra_s=prep_s + time.perf_counter() - t1,
    )
