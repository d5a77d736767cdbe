"""Named reference statistics (e.g. ``in21k``): where they live, how to find, list and show them.

No ImageNet-21k FID statistics are published, so users build them once with
``vpt-advisor reference build SRC --name in21k`` (:func:`engine.fid.refbuild.build_reference`). A
reference is two files in :func:`engine.paths.references_dir` (``$VPT_ADVISOR_HOME/references``):
``<name>.npz`` (``mu``/``sigma``, pytorch-fid's format) and ``<name>.json`` (the
:class:`engine.fid.frechet.StatsProvenance` sidecar: source, N, sampling, extractor, preprocessing,
versions, sha256). Anywhere a name is accepted, a path to a ``.npz`` works too.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pydantic import Field

from engine.config import FrozenModel
from engine.errors import ConfigError, ReferenceNotFoundError, StatsFileError
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
    "DEFAULT_REFERENCE",
    "ReferenceInfo",
    "reference_path",
    "validate_reference_name",
    "list_references",
    "resolve_reference",
    "resolve_reference_path",
    "resolve_prepared_reference",
    "reference_info",
    "build_reference",
]

DEFAULT_REFERENCE = "in21k"
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


def validate_reference_name(name: str) -> str:
    """Check a reference name (letters, digits, ``._-``; no path separators).

    Raises:
        ConfigError: If the name could escape the references folder or is empty.
    """
    if not _NAME_RE.match(name) or name in (".", ".."):
        raise ConfigError(
            f"invalid reference name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (e.g. in21k)"
        )
    return name


def reference_path(name: str) -> Path:
    """``<references dir>/<name>.npz``."""
    return references_dir() / f"{validate_reference_name(name)}.npz"


def _info(name: str, npz: Path, prov: StatsProvenance | None, dims: int) -> ReferenceInfo:
    if prov is None:
        return ReferenceInfo(name=name, path=str(npz), dims=dims, notes=["no provenance sidecar (.json) found"])
    return ReferenceInfo(
        name=name, path=str(npz), n_images=prov.n_images, source=prov.source, created=prov.created,
        extractor=prov.extractor, preprocessing=prov.preprocessing, dims=prov.dims or dims,
        npz_sha256=prov.npz_sha256, notes=list(prov.notes),
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
    size = " --max-images 50000" if name == DEFAULT_REFERENCE else ""
    src = "/path/to/imagenet21k" if name == DEFAULT_REFERENCE else "/path/to/images"
    return f"build it with: vpt-advisor reference build {src} --name {name}{size}"


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
        stats, prov = load_stats(npz)
    except StatsFileError as exc:
        raise StatsFileError(f"reference {name!r}: {exc}") from None
    return stats, _info(name, npz, prov, stats.dims)


def resolve_prepared_reference(
    name_or_path: str | Path, cache_folder: Path | None
) -> tuple[FeatureStats, ReferenceInfo, PreparedReference]:
    """:func:`resolve_reference` plus the prepared form the Fréchet distance needs (cached by content).

    Raises:
        ReferenceNotFoundError / StatsFileError: as :func:`resolve_reference`.
    """
    name, npz = resolve_reference_path(name_or_path)
    try:
        stats, prov, prepared = load_prepared_reference(npz, cache_folder)
    except StatsFileError as exc:
        raise StatsFileError(f"reference {name!r}: {exc}") from None
    return stats, _info(name, npz, prov, stats.dims), prepared


def reference_info(name_or_path: str | Path) -> ReferenceInfo:
    """Metadata of one reference (``reference show NAME``); verifies the npz against its sidecar."""
    return resolve_reference(name_or_path)[1]


def build_reference(*args: object, **kwargs: object) -> ReferenceInfo:
    """Build a named reference; see :func:`engine.fid.refbuild.build_reference` (imported lazily: torch)."""
    from engine.fid.refbuild import build_reference as _build

    return _build(*args, **kwargs)  # type: ignore[arg-type]
