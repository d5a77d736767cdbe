"""Dataset profile: read every image once, report what is usable, and return a cleaned index.

The profile answers the questions a practitioner asks before choosing FT or VPT (Han et al.,
ICLR 2024, use training-set size and class balance): how many images are usable, why others were
skipped, how many classes and how balanced they are, and what sizes and colour modes the images have.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import TypedDict

from pydantic import Field

from engine.config import FrozenModel
from engine.data.imageio import (
    MAX_IMAGE_PIXELS,
    ImageInfo,
    ReadImage,
    ReadImages,
    SkippedFile,
    display_path,
    read_images,
)
from engine.data.index import DatasetIndex, Layout, empty_dataset_error, index_dataset
from engine.progress import ProgressCallback

__all__ = ["DatasetProfile", "ReadDataset", "read_dataset", "profile_dataset", "profile_path", "EXAMPLES_PER_REASON"]

EXAMPLES_PER_REASON = 5
"""How many skipped files of each reason the profile lists by name."""


class DatasetProfile(FrozenModel):
    """What :func:`profile_dataset` found (JSON-safe: paths are display strings)."""

    source: str = Field(description="The dataset path as given (folder, list file or CSV).")
    layout: Layout = Field(description="imagefolder, flat, listfile or csv.")
    n_found: int = Field(description="Image entries found (used + skipped).")
    n_used: int = Field(description="Images that decoded and will be used.")
    n_skipped: int = Field(description="Entries skipped while indexing or decoding.")
    skipped_by_reason: dict[str, int] = Field(default_factory=dict, description="Skipped count per reason.")
    skipped_examples: list[SkippedFile] = Field(
        default_factory=list, description=f"Up to {EXAMPLES_PER_REASON} skipped files per reason."
    )
    ignored_files: dict[str, int] = Field(
        default_factory=dict, description="Non-image files in the folder, counted by extension."
    )
    skipped_folders: list[SkippedFile] = Field(
        default_factory=list, description="Folders that gave no image: empty class folders (not counted as "
        "classes), folders that cannot be listed, folder links outside the dataset (reason and detail each)."
    )
    labeled: bool = Field(description="True when every used image has a class.")
    classes: list[str] = Field(default_factory=list, description="Class names in label order.")
    class_counts: dict[str, int] = Field(default_factory=dict, description="Used images per class.")
    class_count_min: int | None = Field(default=None, description="Smallest class (None when unlabeled).")
    class_count_median: float | None = Field(default=None, description="Median class size.")
    class_count_max: int | None = Field(default=None, description="Largest class.")
    width_min: int = Field(description="Smallest image width in pixels.")
    width_median: float = Field(description="Median image width.")
    width_max: int = Field(description="Largest image width.")
    height_min: int = Field(description="Smallest image height in pixels.")
    height_median: float = Field(description="Median image height.")
    height_max: int = Field(description="Largest image height.")
    same_size: bool = Field(description="True when every used image has the same width and height.")
    modes: dict[str, int] = Field(default_factory=dict, description="Original PIL colour modes (before RGB).")
    formats: dict[str, int] = Field(default_factory=dict, description="File formats as detected by PIL.")

    @property
    def num_classes(self) -> int:
        """Number of classes (0 when unlabeled)."""
        return len(self.classes)


@dataclass
class ReadDataset:
    """A dataset read once: its profile, the cleaned index, and each usable file's digest and pixels.

    ``images[k]`` belongs to ``index.samples[k]``; hand it to :func:`engine.fid.run.measure_fid_against_reference`
    (``read=``) so the FID opens no file again.
    """

    profile: DatasetProfile
    index: DatasetIndex
    images: list[ReadImage]


def read_dataset(
    index: DatasetIndex,
    *,
    workers: int = 0,
    on_progress: ProgressCallback | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    hold_bytes: int = 0,
) -> ReadDataset:
    """Open every image of ``index`` once (threads): hash, decode and validate it, and profile the usable ones.

    Args:
        index: from :func:`engine.data.index.index_dataset`.
        workers: decoding threads (``0`` = automatic).
        on_progress: ``on_progress(done, total)`` after each image.
        max_pixels: decompression-bomb limit per image.
        hold_bytes: decoded RGB bytes to keep for the next reader (see :func:`engine.data.imageio.read_images`).

    Returns:
        The profile; a cleaned index (same root, layout and classes, only decodable samples, and every
        skipped entry of indexing and decoding in ``skipped``); and what was read of each usable sample.

    Raises:
        EmptyDatasetError: no image could be used.
    """
    read = read_images([s.path for s in index.samples], workers=workers, on_progress=on_progress,
                       max_pixels=max_pixels, hold_bytes=hold_bytes)
    cleaned = _cleaned_index(index, read)
    source = index.source or index.root
    if not cleaned.samples:
        raise empty_dataset_error(source, cleaned.skipped)
    profile = DatasetProfile(
        source=display_path(source),
        layout=index.layout,
        n_found=len(index.samples) + len(index.skipped),
        n_used=len(cleaned.samples),
        ignored_files=dict(index.ignored),
        skipped_folders=list(index.skipped_folders),
        **_skip_stats(cleaned.skipped),
        **_class_stats(cleaned),
        **_image_stats([r.info for r in read.images]),
    )
    return ReadDataset(profile=profile, index=cleaned, images=read.images)


def profile_dataset(
    index: DatasetIndex,
    *,
    workers: int = 0,
    on_progress: ProgressCallback | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> tuple[DatasetProfile, DatasetIndex]:
    """:func:`read_dataset` without holding any pixels: the profile and the cleaned index.

    Raises:
        EmptyDatasetError: no image could be used.
    """
    read = read_dataset(index, workers=workers, on_progress=on_progress, max_pixels=max_pixels)
    return read.profile, read.index


def _cleaned_index(index: DatasetIndex, decoded: ReadImages) -> DatasetIndex:
    """``index`` keeping only the samples that decoded; indexing and decoding skips together in ``skipped``."""
    return DatasetIndex(
        root=index.root,
        layout=index.layout,
        samples=[index.samples[i] for i in decoded.ok],
        classes=list(index.classes),
        skipped=list(index.skipped) + decoded.skipped,
        ignored=dict(index.ignored),
        source=index.source,
        skipped_folders=list(index.skipped_folders),
    )


class _SkipStats(TypedDict):
    n_skipped: int
    skipped_by_reason: dict[str, int]
    skipped_examples: list[SkippedFile]


class _ClassStats(TypedDict):
    labeled: bool
    classes: list[str]
    class_counts: dict[str, int]
    class_count_min: int | None
    class_count_median: float | None
    class_count_max: int | None


class _ImageStats(TypedDict):
    width_min: int
    width_median: float
    width_max: int
    height_min: int
    height_median: float
    height_max: int
    same_size: bool
    modes: dict[str, int]
    formats: dict[str, int]


def _skip_stats(skipped: list[SkippedFile]) -> _SkipStats:
    """Profile fields about skipped entries: the count, counts per reason (most frequent first) and up to
    :data:`EXAMPLES_PER_REASON` examples of each reason."""
    by_reason = Counter(s.reason for s in skipped)
    examples: list[SkippedFile] = []
    shown: Counter[str] = Counter()
    for s in skipped:
        if shown[s.reason] < EXAMPLES_PER_REASON:
            examples.append(s)
            shown[s.reason] += 1
    return {
        "n_skipped": len(skipped),
        "skipped_by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        "skipped_examples": examples,
    }


def _class_stats(cleaned: DatasetIndex) -> _ClassStats:
    """Profile fields about the classes of the usable samples (empty/None when the data is unlabeled)."""
    labeled = cleaned.labeled
    class_counts: dict[str, int] = {}
    if labeled:
        per_label = Counter(s.label for s in cleaned.samples)
        # names as they will be displayed (escaped control characters, undecodable bytes as \\xNN): JSON-safe
        class_counts = {display_path(name): per_label.get(i, 0) for i, name in enumerate(cleaned.classes)}
    counts = list(class_counts.values())
    return {
        "labeled": labeled,
        "classes": [display_path(c) for c in cleaned.classes] if labeled else [],
        "class_counts": class_counts,
        "class_count_min": min(counts) if counts else None,
        "class_count_median": float(median(counts)) if counts else None,
        "class_count_max": max(counts) if counts else None,
    }


def _image_stats(infos: list[ImageInfo]) -> _ImageStats:
    """Profile fields about the decoded images (at least one): sizes, colour modes and file formats."""
    widths = [info.width for info in infos]
    heights = [info.height for info in infos]
    return {
        "width_min": min(widths),
        "width_median": float(median(widths)),
        "width_max": max(widths),
        "height_min": min(heights),
        "height_median": float(median(heights)),
        "height_max": max(heights),
        "same_size": len({(i.width, i.height) for i in infos}) == 1,
        "modes": dict(Counter(i.mode for i in infos).most_common()),
        "formats": dict(Counter(i.format or "unknown" for i in infos).most_common()),
    }


def profile_path(
    source: Path,
    *,
    workers: int = 0,
    on_progress: ProgressCallback | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    root: Path | None = None,
) -> tuple[DatasetProfile, DatasetIndex]:
    """Index ``source`` (:func:`engine.data.index.index_dataset`, with its ``root``) and profile it.

    Raises:
        DatasetError: see :func:`engine.data.index.index_dataset`.
        EmptyDatasetError: nothing usable.
    """
    index = index_dataset(source, root)
    return profile_dataset(index, workers=workers, on_progress=on_progress, max_pixels=max_pixels)

