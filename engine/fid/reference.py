"""Named reference statistics (e.g. ``in21k``): where they live, how to find, list and show them.

No ImageNet-21k FID statistics are published, so users build them once with
``vpt-advisor reference build SRC --name in21k`` (:func:`engine.fid.refbuild.build_reference`). A
reference is two files in :func:`engine.paths.references_dir` (``$VPT_ADVISOR_HOME/references``):
``<name>.npz`` (``mu``/``sigma``, pytorch-fid's format) and ``<name>.json`` (the
:class:`engine.fid.frechet.StatsProvenance` sidecar: source, N, sampling, extractor, preprocessing,
versions, sha256). Anywhere a name is accepted, a path to a ``.npz`` works too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from engine.config import FrozenModel
from engine.errors import ConfigError, ReferenceNotFoundError, ReferenceStatsError, StatsFileError
from engine.fid.frechet import (
    FeatureStats,
    PreparedReference,
    StatsProvenance,
    load_prepared_reference,
    load_stats,
    sidecar_path,
)
from engine.paths import references_dir

__all__ = [
    "MIN_REFERENCE_IMAGES",
    "DEFAULT_REFERENCE",
    "ReferenceInfo",
    "reference_path",
    "reference_lock",
    "validate_reference_name",
    "list_references",
    "resolve_reference",
    "resolve_reference_path",
    "resolve_prepared_reference",
    "reference_info",
]

MIN_REFERENCE_IMAGES = 10_000
"""Our rule (applied by :mod:`engine.fid.gates`): a reference from fewer images is unverified. Its 2048 x 2048
covariance then rests on fewer than 5 images per dimension, and the FID against it moves with the reference's own
sample."""

DEFAULT_REFERENCE = "in21k"
IN21K_SOURCE = "'hf://datasets/timm/imagenet-22k-wds/imagenet22k-train-*.tar'"
"""ImageNet-22k fall11 train shards on the Hugging Face Hub (gated), the data behind the in21k ViT-B/16 (shell-quoted:
the shard names follow the dataset card, ``imagenet22k-train-{0000..4095}.tar``)."""
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ReferenceInfo(FrozenModel):
    """What a report says about the reference it measured against."""

    name: str = Field(description="Reference name (file stem).")
    path: str = Field(description="The .npz file.")
    n_images: int = Field(default=0, description="Images in the statistics (0 = unknown).")
    source: str = Field(default="", description="Where the images came from.")
    created: str = Field(default="", description="When the statistics were built (UTC, ISO 8601).")
    extractor: str = Field(default="", description="Feature extractor id ('' = unknown, e.g. a pytorch-fid file).")
    preprocessing: str = Field(default="", description="Named preprocessing ('' = unknown).")
    dims: int = Field(default=2048, description="Feature dimensionality.")
    npz_sha256: str = Field(default="", description="sha256 of the .npz.")
    notes: list[str] = Field(default_factory=list, description="Sampling and other remarks.")
    n_skipped: int = Field(default=0, description="Images skipped while building (undecodable, truncated...).")
    skipped_reasons: dict[str, int] = Field(default_factory=dict, description="Skipped images per reason code.")
    n_shards: int = Field(default=0, description="Tar shards read (0 = a folder source or unknown).")
    messages: list[str] = Field(default_factory=list, description="What happened during this build (e.g. a "
                                "damaged checkpoint discarded); empty when only shown.")


def validate_reference_name(name: str) -> str:
    """Check a reference name (letters, digits, ``._-``; no path separators).

    Raises:
        ConfigError: If the name could escape the references folder or is empty.
    """
    if not _NAME_RE.match(name) or name in (".", ".."):
        raise ConfigError(
            f"invalid reference name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (e.g. in21k)"
        )
    stem, dot, ext = name.rpartition(".")
    if dot and ext.lower() in ("npz", "json"):
        raise ConfigError(f"invalid reference name {name!r}: give the name without .{ext} (e.g. {stem}); "
                          "the files <name>.npz and <name>.json are created for you")
    return name


@contextlib.contextmanager
def reference_lock(name: str, what: str) -> Iterator[None]:
    """Hold ``<references>/.<name>.lock`` while ``what`` writes reference ``name``; fail at once if it is held.

    An ``flock``: the kernel releases it when the holder exits, even after kill -9, so no stale lock remains.

    Raises:
        ReferenceStatsError: Another process (or thread) holds the lock.
    """
    folder = references_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{validate_reference_name(name)}.lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no cross-process lock available
        yield
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ReferenceStatsError(
                f"reference {name!r} is being written by another command ({what} found {path} locked; e.g. another "
                f"'reference build --name {name}' is running); wait for it to finish, or stop it and rerun") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def reference_path(name: str) -> Path:
    """``<references dir>/<name>.npz``."""
    return references_dir() / f"{validate_reference_name(name)}.npz"


def _info(name: str, npz: Path, prov: StatsProvenance | None, dims: int) -> ReferenceInfo:
    if prov is None:
        return ReferenceInfo(name=name, path=str(npz), dims=dims, notes=["no provenance sidecar (.json) found"])
    return ReferenceInfo(
        name=name, path=str(npz), n_images=prov.n_images, source=prov.source, created=prov.created,
        extractor=prov.extractor, preprocessing=prov.preprocessing, dims=prov.dims or dims,
        npz_sha256=prov.npz_sha256, notes=list(prov.notes), n_skipped=prov.n_skipped,
        skipped_reasons=dict(prov.skipped_reasons), n_shards=len(prov.shards),
    )


def _quick_info(npz: Path) -> ReferenceInfo:
    """Info from the sidecar alone (does not read or verify the npz)."""
    side = sidecar_path(npz)
    prov = None
    if side.is_file():
        try:
            prov = StatsProvenance.model_validate(json.loads(side.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            prov = None
    return _info(npz.stem, npz, prov, prov.dims if prov else 0)


def list_references() -> list[ReferenceInfo]:
    """Every reference in the references folder, sorted by name (sidecars only; fast)."""
    folder = references_dir()
    if not folder.is_dir():
        return []
    return [_quick_info(p) for p in sorted(folder.glob("*.npz")) if not p.name.startswith(".")]


def _build_hint(name: str) -> str:
    if name == DEFAULT_REFERENCE:
        return (f"build the smallest the FID check accepts ({MIN_REFERENCE_IMAGES:,} images, needs HF_TOKEN) with: "
                f"vpt-advisor reference build {IN21K_SOURCE} --name {name} --max-images {MIN_REFERENCE_IMAGES}; "
                "or pull a colleague's with: vpt-advisor reference pull URL --sha256 HEX")
    return f"build it with: vpt-advisor reference build /path/to/images --name {name}"


def _looks_like_path(text: str) -> bool:
    return text.lower().endswith(".npz") or os.sep in text or (os.altsep is not None and os.altsep in text)


def resolve_reference_path(name_or_path: str | Path) -> tuple[str, Path]:
    """``(name, npz path)`` of a reference given by name (``in21k``) or by ``.npz`` path; reads nothing.

    Raises:
        ReferenceNotFoundError: No such reference; the message lists the available names and the
            command that builds it.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        npz = Path(text).expanduser()
        if not npz.is_file():
            raise ReferenceNotFoundError(f"reference stats file {npz} not found")
        return npz.stem, npz
    try:
        npz = reference_path(text)
    except ConfigError as exc:
        raise ReferenceNotFoundError(str(exc)) from None
    if not npz.is_file():
        have = [r.name for r in list_references()]
        available = f"available: {', '.join(have)}" if have else "no references built yet"
        raise ReferenceNotFoundError(
            f"no reference statistics named {text!r} in {npz.parent} ({available}); {_build_hint(text)}"
        )
    return text, npz


def resolve_reference(name_or_path: str | Path) -> tuple[FeatureStats, ReferenceInfo]:
    """Load a reference by name (``in21k``) or by ``.npz`` path.

    Raises:
        ReferenceNotFoundError: No such reference; the message lists the available names and the
            command that builds it.
        StatsFileError: The file exists but is not valid statistics.
    """
    name, npz = resolve_reference_path(name_or_path)
    try:
        stats, prov = load_stats(npz, hint=_stored_hint(name, npz))
    except StatsFileError as exc:
        raise StatsFileError(f"reference {name!r}: {exc}") from None
    return stats, _info(name, npz, prov, stats.dims)


def _stored_hint(name: str, npz: Path) -> str | None:
    """What to do about a damaged *stored* reference (the generic stats-file advice otherwise)."""
    if npz.parent != references_dir():
        return None
    return (f"rebuild it with 'vpt-advisor reference build SOURCE --name {name} --overwrite' or import it again "
            f"with 'vpt-advisor reference import FILE --name {name} --overwrite'")


def resolve_prepared_reference(
    name_or_path: str | Path, cache_folder: Path | None
) -> tuple[FeatureStats, ReferenceInfo, PreparedReference]:
    """:func:`resolve_reference` plus the prepared form the Fréchet distance needs (cached by content).

    Raises:
        ReferenceNotFoundError / StatsFileError: as :func:`resolve_reference`.
    """
    name, npz = resolve_reference_path(name_or_path)
    try:
        stats, prov, prepared = load_prepared_reference(npz, cache_folder, hint=_stored_hint(name, npz))
    except StatsFileError as exc:
        raise StatsFileError(f"reference {name!r}: {exc}") from None
    return stats, _info(name, npz, prov, stats.dims), prepared


def reference_info(name_or_path: str | Path) -> ReferenceInfo:
    """Metadata of one reference (``reference show NAME``); verifies the npz against its sidecar."""
    return resolve_reference(name_or_path)[1]
