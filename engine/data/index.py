"""Dataset indexing: ImageFolder trees, flat folders, VTAB-1k list files and CSV files.

:func:`index_dataset` turns a path into a :class:`DatasetIndex` (sorted, deterministic) without
decoding any image; :mod:`engine.data.profile` decodes and cleans it. Supported layouts:

* **ImageFolder** - class sub-folders; an image at any depth below a class folder belongs to that
  class. Classes are the sorted folder names (torchvision's convention). Images lying directly in the
  root of such a tree have no class and are skipped with reason ``no-class-folder``.
* **flat** - a folder whose images all lie at the top level: unlabeled (FID only).
* **list file** (any non-``.csv`` file) - ``relative/path label`` per line, as written by NOAH's
  ``get_vtab1k.py`` (``images/train800/000000.jpg 3``). Paths are relative to the list file's
  folder; each line is split once from the right on whitespace so paths may contain spaces. Blank
  lines and ``#`` comments are ignored; a non-integer label is a :class:`ListFileError`.
* **CSV** - ``path,label`` (header optional; columns found by name when there is one). Labels may be
  integers (used as class indices) or class names (mapped to sorted class indices).

Security: a list/CSV entry that resolves (after ``..``, absolute paths and symlinks) outside the
folder holding the list is never opened; it is recorded as skipped with reason ``outside-root``.
Skipping (rather than rejecting the whole file) keeps every other entry and reports each escape.
Directory walks skip hidden entries, follow directory symlinks but visit each real directory once
(so symlink cycles cannot hang or duplicate), and stat every candidate once, so dangling links,
self-referencing links, empty files and non-files are reported before any decoding.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import stat
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.data.checks import (
    DUPLICATE,
    MAX_CLASS_INDEX,
    Dedup,
    check_list_size,
    check_source_kind,
    check_text,
    classes_for_ints,
    excerpt,
    looks_like_int,
    parse_int_label,
)
from engine.data.imageio import SkippedFile, check_file, display_path, is_image_name
from engine.data.sources import only_shards, resolve_source, unpack_shards
from engine.data.splits import first_k, stratified_subsample, train_val_split
from engine.errors import ConfigError, DatasetError, EmptyDatasetError, ImageDecodeError, ListFileError
from engine.paths import cache_dir

__all__ = [
    "DUPLICATE",
    "MAX_CLASS_INDEX",
    "Layout",
    "SkippedFile",
    "Sample",
    "DatasetIndex",
    "index_dataset",
    "stratified_subsample",
    "first_k",
    "train_val_split",
    "empty_dataset_error",
]

log = logging.getLogger(__name__)

Layout = Literal["imagefolder", "flat", "listfile", "csv"]

_PATH_COLUMNS = {"path", "file", "filename", "file_name", "filepath", "image", "image_path", "img", "relpath"}
_LABEL_COLUMNS = {"label", "class", "class_name", "target", "category", "y", "label_id"}


@dataclass(frozen=True)
class Sample:
    """One image file and its class index (``None`` for unlabeled data)."""

    path: Path
    label: int | None


@dataclass
class DatasetIndex:
    """The files of a dataset, in deterministic order, plus what was skipped while indexing."""

    root: Path
    layout: Layout
    samples: list[Sample]
    classes: list[str]
    skipped: list[SkippedFile]
    ignored: dict[str, int] = field(default_factory=dict)
    """Non-image files that were not considered, counted by extension (``""`` for none)."""
    skipped_folders: list[SkippedFile] = field(default_factory=list)
    """Folders of the tree that gave no image: ``empty`` class folders, ``unreadable`` folders (cannot be
    listed) and folder links that resolve ``outside-root`` (never walked)."""
    source: Path | None = None
    """The path the user gave (the list file for list/CSV layouts); ``root`` when ``None``."""

    @property
    def labeled(self) -> bool:
        """True when every sample has a label (and there is at least one sample)."""
        return bool(self.samples) and all(s.label is not None for s in self.samples)

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for unlabeled data)."""
        return len(self.classes)


def _skip(path: str | os.PathLike[str], reason: str, detail: str = "") -> SkippedFile:
    return SkippedFile(path=display_path(path), reason=reason, detail=detail)


def empty_dataset_error(source: Path, skipped: Sequence[SkippedFile]) -> EmptyDatasetError:
    """Build the one-line error for a dataset with nothing usable (names the path and what to do)."""
    if skipped and all(s.reason == OUTSIDE_ROOT for s in skipped):
        # profile would only repeat this: say what to change instead
        return EmptyDatasetError(
            f"no usable images in {display_path(source)}: all {len(skipped)} entries lie outside its folder "
            f"(first: {skipped[0].path}); a list may only name files below its root: pass --root with the folder "
            "that holds the images, or move the list file into that folder"
        )
    if skipped:
        counts = Counter(s.reason for s in skipped)
        why = ", ".join(f"{r} {n}" for r, n in sorted(counts.items()))
        return EmptyDatasetError(
            f"no usable images in {display_path(source)}: all {len(skipped)} files were skipped ({why}); "
            "run 'vpt-advisor profile' on it to list them, then fix or remove those files"
        )
    return EmptyDatasetError(
        f"no images found in {display_path(source)}; expected .jpg/.jpeg/.png/.bmp/.webp/.tif/.tiff/.gif files "
        "(in class sub-folders for labels), a 'path label' list file or a 'path,label' CSV"
    )


# ----------------------------------------------------------------------------------------------- walk
EMPTY_FOLDER, UNREADABLE_FOLDER, OUTSIDE_ROOT = "empty", "unreadable", "outside-root"
"""Reasons a folder of an image tree gave no image (``DatasetIndex.skipped_folders``)."""


def _walk_images(root: Path, ignored: Counter[str], links: set[str] | None = None,
                 folders: list[SkippedFile] | None = None) -> list[Path]:
    """All image files under ``root`` in sorted depth-first order, each real directory visited once.

    Image files that are symlinks are also added to ``links`` (the only files that can appear twice).
    Folders that cannot be listed, and folder links resolving outside ``root`` (a class folder linked to
    ``/`` would index the whole disk), are not walked and are added to ``folders`` with their reason.
    """
    found: list[Path] = []
    skipped = folders if folders is not None else []
    seen_dirs: set[tuple[int, int]] = set()
    st = os.stat(root)
    seen_dirs.add((st.st_dev, st.st_ino))
    root_real = os.path.realpath(root)
    stack: list[Path] = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            log.warning("cannot list %s: %s", display_path(folder), exc.strerror or exc)
            skipped.append(_skip(folder, UNREADABLE_FOLDER, f"cannot be listed ({exc.strerror or exc})"))
            continue
        subdirs: list[Path] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:  # e.g. a symlink loop: let check_file name it later
                is_dir = False
            if is_dir:
                try:
                    dst = os.stat(path)
                except OSError:
                    continue
                key = (dst.st_dev, dst.st_ino)
                if key in seen_dirs:
                    log.debug("not revisiting %s (already walked through another path)", display_path(path))
                    continue
                seen_dirs.add(key)
                if entry.is_symlink():
                    real = os.path.realpath(path)
                    if os.path.commonpath([root_real, real]) != root_real:
                        log.warning("not walking %s: it links to %s, outside the dataset folder %s",
                                    display_path(path), display_path(real), display_path(root_real))
                        skipped.append(_skip(path, OUTSIDE_ROOT, f"links to {display_path(real)}, outside "
                                             f"{display_path(root_real)}; copy or move the folder into the dataset"))
                        continue
                subdirs.append(path)
            elif is_image_name(entry.name):
                found.append(path)
                if links is not None and entry.is_symlink():
                    links.add(str(path))
            else:
                ignored[os.path.splitext(entry.name)[1].lower()] += 1
        stack.extend(reversed(subdirs))  # pop() then visits them in sorted order
    return found


def _empty_class_folders(root: Path, files: list[Path], folders: list[SkippedFile]) -> list[SkippedFile]:
    """Top-level folders of a class tree holding no image (not already skipped for another reason)."""
    with_images = {p.relative_to(root).parts[0] for p in files if p.parent != root}
    already = set(s.path for s in folders)
    empty: list[SkippedFile] = []
    try:
        with os.scandir(root) as it:
            names = sorted((e.name for e in it if not e.name.startswith(".") and _is_dir(e)), key=os.fsencode)
    except OSError:
        return empty
    for name in names:
        if name not in with_images and display_path(root / name) not in already:
            empty.append(_skip(root / name, EMPTY_FOLDER, "class folder without image files; not a class"))
    if empty:
        log.warning("%d class folder(s) hold no image and are not classes: %s", len(empty),
                    ", ".join(display_path(os.path.basename(s.path)) for s in empty[:5])
                    + (" ..." if len(empty) > 5 else ""))
    return empty


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _index_folder(root: Path) -> DatasetIndex:
    ignored: Counter[str] = Counter()
    links: set[str] = set()
    folders: list[SkippedFile] = []
    files = _walk_images(root, ignored, links, folders)
    top = [p for p in files if p.parent == root]
    nested = [p for p in files if p.parent != root]
    skipped: list[SkippedFile] = []
    if not nested:
        layout: Layout = "flat"
        classes: list[str] = []
        labeled: list[tuple[Path, int | None]] = [(p, None) for p in top]
    else:
        layout = "imagefolder"
        class_of = {p: p.relative_to(root).parts[0] for p in nested}
        classes = sorted(set(class_of.values()), key=os.fsencode)
        ids = {c: i for i, c in enumerate(classes)}
        labeled = [(p, ids[class_of[p]]) for p in nested]
        skipped += [_skip(p, "no-class-folder", "image in the root of a class-folder tree") for p in top]
        folders += _empty_class_folders(root, files, folders)
        if top:
            log.warning("%d images in the root of %s have no class folder; skipped", len(top), display_path(root))
    samples: list[Sample] = []
    dedup = Dedup()
    real_dirs: dict[str, str] = {}  # one realpath per folder, not per file (trees hold millions of files)
    for path, label in labeled:
        try:
            check_file(path)
        except ImageDecodeError as exc:
            skipped.append(SkippedFile(path=exc.path, reason=exc.reason, detail=exc.detail))
            continue
        text = str(path)
        if text in links:
            real = os.path.realpath(text)
        else:
            folder, name = os.path.split(text)
            parent = real_dirs.get(folder)
            if parent is None:
                parent = real_dirs[folder] = os.path.realpath(folder)
            real = os.path.join(parent, name)
        twin = dedup.check(path, label, text, real)  # a file linked into the tree twice
        if twin is not None:
            skipped.append(twin)
            continue
        samples.append(Sample(path, label))
    return DatasetIndex(root, layout, samples, classes, skipped, dict(sorted(ignored.items())), skipped_folders=folders)


def _only_shards(source: Path) -> bool:
    return only_shards(source)


def _index_shards(source: Path) -> DatasetIndex:
    """WebDataset ``.tar`` shards: unpacked once into the cache (see :func:`engine.data.sources.unpack_shards`)."""
    root, skipped = unpack_shards(resolve_source(source), cache_dir() / "shards")
    index = _index_folder(root)
    index.skipped[:0] = skipped
    index.source = source
    return index


# ----------------------------------------------------------------------------------------- list files
def _read_text(path: Path) -> str:
    try:
        size = os.stat(path).st_size
        check_list_size(path, size)
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read list file {display_path(path)}: {exc.strerror or exc}") from None
    check_text(path, data)
    # surrogateescape keeps non-UTF-8 file names byte-exact for os functions.
    return data.decode("utf-8-sig", errors="surrogateescape")


def _resolve_entry(root_real: str, base: Path, entry: str) -> tuple[Path | None, SkippedFile | None, str]:
    """Map a list entry to ``(path inside the root, None, real path)``, or to ``(None, skip record, "")``."""
    rel = entry.strip()
    if "\x00" in rel:
        return None, _skip(rel.replace("\x00", "?"), "missing", "path contains a NUL byte"), ""
    candidate = Path(rel) if os.path.isabs(rel) else base / rel
    real = os.path.realpath(candidate)
    if os.path.commonpath([root_real, real]) != root_real:
        why = f"resolves to {display_path(real)}, outside {display_path(root_real)}"
        return None, _skip(rel, "outside-root", why), ""
    try:
        check_file(candidate)
    except ImageDecodeError as exc:
        return None, _skip(candidate, exc.reason, exc.detail), ""
    return Path(os.path.normpath(candidate)), None, real


def _index_listfile(list_path: Path, root: Path | None = None) -> DatasetIndex:
    base = root or list_path.parent
    root_real = os.path.realpath(base)
    samples: list[Sample] = []
    skipped: list[SkippedFile] = []
    dedup = Dedup()
    for lineno, raw in enumerate(_read_text(list_path).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        where = f"{display_path(list_path)}, line {lineno}"
        if len(parts) != 2:
            raise ListFileError(f"{where}: expected 'relative/path label', got {excerpt(line)!r}")
        label = parse_int_label(parts[1], where)
        if label is None:
            raise ListFileError(
                f"{where}: label {display_path(parts[1])!r} is not an integer; each line must be 'relative/path label'"
            )
        if label < 0:
            raise ListFileError(f"{where}: label {label} is negative; labels are class indices 0..K-1")
        path, skip, real = _resolve_entry(root_real, base, parts[0])
        if skip is None and path is not None:
            skip = dedup.check(path, label, f"line {lineno}", real)
        if skip is not None:
            skipped.append(skip)
        elif path is not None:
            samples.append(Sample(path, label))
    labels = [s.label for s in samples if s.label is not None]
    classes = classes_for_ints(labels, display_path(list_path))
    return DatasetIndex(base, "listfile", samples, classes, skipped, source=list_path)


def _index_csv(csv_path: Path, root: Path | None = None) -> DatasetIndex:
    base = root or csv_path.parent
    root_real = os.path.realpath(base)
    rows = [(n, r) for n, r in enumerate(csv.reader(io.StringIO(_read_text(csv_path))), start=1)]
    rows = [(n, [c.strip() for c in r]) for n, r in rows if r and any(c.strip() for c in r)]
    rows = [(n, r) for n, r in rows if not r[0].startswith("#")]
    path_col, label_col = 0, 1
    if rows:
        head = [c.lower() for c in rows[0][1]]
        if any(c in _PATH_COLUMNS for c in head) or any(c in _LABEL_COLUMNS for c in head):
            path_col = next((i for i, c in enumerate(head) if c in _PATH_COLUMNS), 0)
            label_col = next((i for i, c in enumerate(head) if c in _LABEL_COLUMNS), -1)
            rows = rows[1:]
        elif len(rows) > 1 and not is_image_name(rows[0][1][0]) and is_image_name(rows[1][1][0]):
            rows = rows[1:]  # a header with unfamiliar column names: columns by position
        if rows and max(len(r) for _, r in rows) == 1:
            label_col = -1
    where = display_path(csv_path)
    entries: list[tuple[int, str, str | None]] = []
    for lineno, row in rows:
        if path_col >= len(row) or not row[path_col]:
            raise ListFileError(f"{where}, line {lineno}: no path in this row")
        label: str | None = None
        if label_col >= 0:
            if label_col >= len(row) or not row[label_col]:
                raise ListFileError(f"{where}, line {lineno}: missing label; expected 'path,label'")
            label = row[label_col]
        entries.append((lineno, row[path_col], label))
    raw_labels = [lab for _, _, lab in entries if lab is not None]
    classes: list[str]
    if not raw_labels:
        to_id: dict[str, int] = {}
        classes = []
    elif all(looks_like_int(lab) for lab in raw_labels):
        # every label is a number: each must be written canonically (the first that is not is named)
        line_of = {lab: n for n, _, lab in reversed(entries) if lab is not None}
        ints = [_canonical(lab, f"{where}, line {line_of[lab]}") for lab in raw_labels]
        if min(ints) < 0:
            raise ListFileError(f"{where}: negative label {min(ints)}; integer labels are class indices 0..K-1")
        to_id = {lab: int(lab) for lab in raw_labels}
        classes = classes_for_ints(ints, where)
    else:  # class names: sorted, like ImageFolder folders
        classes = sorted(set(raw_labels))
        to_id = {c: i for i, c in enumerate(classes)}
    samples: list[Sample] = []
    skipped: list[SkippedFile] = []
    dedup = Dedup()
    for lineno, rel, lab in entries:
        label_id = None if lab is None else to_id[lab]
        path, skip, real = _resolve_entry(root_real, base, rel)
        if skip is None and path is not None:
            skip = dedup.check(path, label_id, f"line {lineno}", real)
        if skip is not None:
            skipped.append(skip)
        elif path is not None:
            samples.append(Sample(path, label_id))
    return DatasetIndex(base, "csv", samples, classes, skipped, source=csv_path)


def _canonical(text: str, where: str) -> int:
    value = parse_int_label(text, where)
    if value is None:  # unreachable after looks_like_int; kept so a change there cannot pass a name as a label
        raise ListFileError(f"{where}: label {excerpt(text)!r} is not an integer")
    return value


# ---------------------------------------------------------------------------------------------- API
def _check_root(root: Path | None, source: Path, is_dir: bool) -> Path | None:
    """``--root``: the folder list/CSV entries are relative to and confined to (default: the list's folder)."""
    if root is None:
        return None
    root = Path(os.path.abspath(Path(root).expanduser()))
    if is_dir:
        raise ConfigError(f"--root {display_path(root)}: only list files and CSVs take a root; "
                          f"{display_path(source)} is a folder (its own root)")
    if not root.is_dir():
        raise ConfigError(f"--root {display_path(root)}: not a folder; pass the folder the list's paths are under")
    return root


def index_dataset(source: Path, root: Path | None = None) -> DatasetIndex:
    """Index a dataset folder, list file or CSV without decoding images.

    Args:
        source: an ImageFolder tree, a flat image folder, a ``.csv`` file, a list file
            (``relative/path label`` lines, e.g. VTAB-1k's ``<task>/train800val200.txt``), or WebDataset
            ``.tar`` shards (one file, or a folder holding only shards; class = each sample's ``.cls``).
        root: for a list file or CSV, the folder its paths are relative to and may not leave (default:
            the list file's own folder); refused for folders.

    Returns:
        The index: samples in sorted (folders) or file (lists) order, class names, and the entries
        skipped while indexing (``missing``, ``outside-root``, ``zero-byte``, ``symlink-loop``...).

    Raises:
        DatasetError: the path does not exist, is a single image, or cannot be read.
        ListFileError: a list/CSV line is malformed.
        EmptyDatasetError: nothing usable was found.
    """
    source = Path(os.path.abspath(Path(source).expanduser()))  # absolute, symlinks kept as given
    try:
        st = os.stat(source)
    except OSError as exc:
        raise DatasetError(
            f"dataset path {display_path(source)} does not exist or cannot be read ({exc.strerror or exc}); "
            "pass an image folder, a 'path label' list file or a 'path,label' CSV"
        ) from None
    check_source_kind(source, st.st_mode)
    root = _check_root(root, source, stat.S_ISDIR(st.st_mode))
    if root is None and _only_shards(source):
        index = _index_shards(source)
    elif stat.S_ISDIR(st.st_mode):
        index = _index_folder(source)
    elif is_image_name(source):
        raise DatasetError(f"{display_path(source)} is a single image; pass the folder that contains the dataset")
    elif source.suffix.lower() == ".csv":
        index = _index_csv(source, root)
    else:
        index = _index_listfile(source, root)
    if not index.samples:
        raise empty_dataset_error(source, index.skipped)
    if index.skipped:
        log.info("indexed %d images in %s, skipped %d", len(index.samples), display_path(source), len(index.skipped))
    return index
