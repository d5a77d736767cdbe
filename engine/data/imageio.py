"""Robust image decoding: one image to RGB, many images in parallel, bad files skipped with a reason.

Every dataset reader in vpt-advisor goes through :func:`open_rgb`. It never lets a bad file crash a
run: it raises :class:`engine.errors.ImageDecodeError` with a short ``reason`` code, and
:func:`decode_images` turns those into :class:`SkippedFile` records.

Conversion choices (kept identical to ``PIL.Image.convert("RGB")``, which is what pytorch-fid and
torchvision's ImageFolder use, so FID numbers stay comparable):

* ``L``, ``P``, ``CMYK``, ``YCbCr``, ``1``, ``LA``/``PA`` are converted with PIL's own ``convert``.
* ``RGBA`` (and palette transparency) **drops the alpha channel**: the stored colour of each pixel is
  kept, which is what ``convert("RGB")`` does. Compositing on black would change fully transparent
  pixels that carry colour, and would disagree with pytorch-fid.
* 16-bit greyscale (``I;16``, ``I;16B``, ``I;16L``, ``I``) is **scaled** to 8 bit with
  ``round(v * 255 / 65535)``; PIL's ``convert`` would clip every value above 255 to white. ``I``
  images whose values all fit in 0..255 are taken as 8-bit data. Float images (``F``) in 0..1 are
  scaled by 255, others clipped to 0..255.
* GIF and other animated formats: the first frame.
* EXIF orientation is **not** applied (neither pytorch-fid nor torchvision apply it).
* JPEG ``draft`` mode (DCT-domain downscaling) is **not** used: it changes pixel values compared with a
  full decode followed by a resize, so results would depend on a speed switch.

Decompression bombs: the pixel count is read from the header (``Image.open`` is lazy) and compared
with ``max_pixels`` before any pixel data is decoded. :data:`MAX_IMAGE_PIXELS` equals Pillow's own
warning threshold (89,478,485 pixels, about 9459 x 9459, 256 MiB as RGB). Pillow itself refuses
images over twice its threshold at open time; those are reported as ``too-large`` too, so a
``max_pixels`` above 178,956,970 has no further effect.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import stat
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from struct import error as struct_error  # raised by a few Pillow plugins on damaged data
from typing import Literal, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from engine.config import FrozenModel
from engine.errors import ImageDecodeError
from engine.fingerprint import FileIdentity, remember_digests
from engine.progress import ProgressCallback, report

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "DECODE_REASONS",
    "SkippedFile",
    "ImageInfo",
    "DecodedImages",
    "display_path",
    "display_text",
    "unreachable_link",
    "is_image_name",
    "check_file",
    "open_rgb",
    "to_rgb",
    "decode_images",
    "ReadImage",
    "ReadImages",
    "read_images",
    "content_sha256",
    "resolve_workers",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
"""File extensions read as images (compared lower-case, so ``.JPG`` counts)."""

MAX_IMAGE_PIXELS: int = 89_478_485
"""Default decompression-bomb limit in pixels (Pillow's warning threshold; see the module docstring)."""

DECODE_REASONS: tuple[str, ...] = (
    "missing",
    "zero-byte",
    "unreadable",
    "symlink-loop",
    "not-an-image",
    "truncated",
    "too-large",
)
"""Every ``reason`` code :func:`open_rgb` can raise."""

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_T = TypeVar("_T")


class SkippedFile(FrozenModel):
    """One file that was not used, with a short reason code and a human-readable detail."""

    path: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class ImageInfo:
    """What the header and decoder said about one image before conversion to RGB."""

    width: int
    height: int
    mode: str
    format: str | None


@dataclass
class DecodedImages:
    """Result of :func:`decode_images`; ``ok[i]`` is the index in the input of ``arrays[i]``."""

    arrays: list[np.ndarray]
    ok: list[int]
    skipped: list[SkippedFile]
    infos: list[ImageInfo] = field(default_factory=list)
    size: int | None = None

    def stack(self) -> np.ndarray:
        """Stack into one ``(N, H, W, 3)`` uint8 array (all images must have the same size)."""
        if not self.arrays:
            side = self.size or 0
            return np.empty((0, side, side, 3), dtype=np.uint8)
        shapes = {a.shape for a in self.arrays}
        if len(shapes) != 1:
            raise ValueError(f"cannot stack images of different sizes {sorted(shapes)[:3]}; decode with size=...")
        return np.stack(self.arrays)


def display_text(text: str) -> str:
    """Return ``text`` (a name from the user's disk, or a message holding one) as printable, JSON-safe text.

    The one place a name becomes displayable: bytes that are not UTF-8 (kept by Python as lone
    surrogates) become ``\\xNN`` escapes, and control characters (newlines, ANSI escape sequences...),
    bidirectional overrides (U+202E) and other invisible format characters become ``\\xNN``/``\\uNNNN``
    escapes, so one file is one line and what is shown is what is on disk. Rich markup and emoji codes
    are left as they are: the terminal renderers print this text literally (``advisor.render``).
    """
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def display_path(path: str | os.PathLike[str] | os.PathLike[bytes] | bytes) -> str:
    """Return ``path`` as printable, JSON-safe text (see :func:`display_text`)."""
    return display_text(os.fsdecode(os.fspath(path)))


def unreachable_link(path: Path) -> str | None:
    """Why a named ``path`` that does not resolve is a link problem, or ``None`` when it is simply absent.

    ``Path.exists()`` is False both for nothing at all and for a symbolic link that loops or points nowhere;
    a user who sees "no such folder" for a link they can list would look in the wrong place.
    """
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop (the link points back to itself); fix or remove the link"
        if os.path.islink(path):
            target = display_path(os.readlink(path))
            return f"a broken symbolic link (it points to {target}, which does not exist); fix or remove the link"
    return None


def is_image_name(name: str | os.PathLike[str]) -> bool:
    """True when the file name ends with one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(os.fspath(name))[1].lower() in IMAGE_EXTENSIONS


def _fail(path: Path, reason: str, detail: str = "") -> ImageDecodeError:
    return ImageDecodeError(display_path(path), reason, detail)


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink-loop"
    if isinstance(exc, FileNotFoundError):
        return "missing"
    return "unreadable"


def check_file(path: Path) -> int:
    """Check that ``path`` is a non-empty regular file without reading it; return its size in bytes.

    This is the cheap part of :func:`open_rgb` (one ``stat``), used by the indexer too.

    Raises:
        ImageDecodeError: reason ``missing`` (also dangling symlinks), ``symlink-loop``,
            ``unreadable``, ``not-an-image`` (a directory, FIFO or device) or ``zero-byte``.
    """
    try:
        st = os.stat(path)
    except ValueError:  # e.g. an embedded NUL byte from a list file
        raise _fail(path, "missing", "invalid file name") from None
    except OSError as exc:
        reason = _os_reason(exc)
        detail = "dangling symlink" if reason == "missing" and os.path.islink(path) else (exc.strerror or "")
        raise _fail(path, reason, detail) from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "not-an-image", "is a directory")
    if not stat.S_ISREG(st.st_mode):  # never open a FIFO or device: reading could block forever
        raise _fail(path, "not-an-image", "not a regular file")
    if st.st_size == 0:
        raise _fail(path, "zero-byte", "file is empty")
    return st.st_size


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert a loaded image of any mode to RGB (the rules are in the module docstring)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.int64)
        if mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 255:
            out = arr.astype(np.uint8)
        else:
            # Round-to-nearest 16 -> 8 bit: 0 -> 0, 65535 -> 255, 257*k -> k exactly.
            out = ((np.clip(arr, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(np.repeat(out[..., None], 3, axis=2), "RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        out = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(out[..., None], 3, axis=2), "RGB")
    return im.convert("RGB")


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert a loaded PIL image to RGB with the same rules as :func:`open_rgb` (module docstring).

    For images that do not come from a file (e.g. tar members decoded from bytes).
    """
    return _to_rgb(im)


def content_sha256(data: bytes) -> str:
    """Hex sha256 of a file's bytes: the feature cache's key for an image (``engine.fid.cache``)."""
    return hashlib.sha256(data).hexdigest()


def _read_bytes(path: Path) -> bytes:
    return _read_identified(path)[0]


def _read_identified(path: Path) -> tuple[bytes, FileIdentity | None]:
    """A file's bytes and the identity (size, mtime_ns, inode) of the open file they came from.

    The identity is None when the file changed while it was read (size or mtime moved, or fewer bytes than its
    size): those bytes then vouch for no version of the file, and its fingerprint reads it again.
    """
    check_file(path)
    try:
        with open(path, "rb") as fh:
            before = os.fstat(fh.fileno())
            data = fh.read()
            after = os.fstat(fh.fileno())
    except OSError as exc:
        raise _fail(path, _os_reason(exc), exc.strerror or str(exc)) from None
    ident = (before.st_size, before.st_mtime_ns, before.st_ino)
    same = len(data) == before.st_size and ident == (after.st_size, after.st_mtime_ns, after.st_ino)
    return data, ident if same else None


class _Digests:
    """Digests of the bytes a reader read anyway, handed to :func:`engine.fingerprint.remember_digests` at the
    end, so the content fingerprint of the same files (the pilot's trial keys) does not open them again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reads: dict[Path, tuple[FileIdentity, str]] = {}

    def read(self, path: Path) -> tuple[bytes, str]:
        """Read ``path`` once; return its bytes and their hex sha256 (recorded when the file held still)."""
        data, ident = _read_identified(path)
        sha = content_sha256(data)
        if ident is not None:
            with self.lock:
                self.reads[path] = (ident, sha)
        return data, sha

    def remember(self) -> None:
        remember_digests(self.reads)


def _load(path: Path, max_pixels: int) -> tuple[Image.Image, ImageInfo]:
    return _decode(path, _read_bytes(path), max_pixels)


def _decode(path: Path, data: bytes, max_pixels: int) -> tuple[Image.Image, ImageInfo]:
    """Decode a file's bytes (read once by the caller) to a detached RGB image; ``path`` names it in errors."""
    with io.BytesIO(data) as fh:
        try:
            im = Image.open(fh)
        except Image.DecompressionBombError as exc:
            raise _fail(path, "too-large", str(exc)) from None
        except UnidentifiedImageError:
            raise _fail(path, "not-an-image", "not a recognised image format") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise _fail(path, "not-an-image", f"bad header: {exc}") from None
        with im:
            width, height = im.size
            if width <= 0 or height <= 0:
                raise _fail(path, "not-an-image", f"invalid size {width}x{height}")
            if width * height > max_pixels:
                raise _fail(path, "too-large", f"{width}x{height} pixels exceeds the limit of {max_pixels}")
            info = ImageInfo(width=width, height=height, mode=im.mode, format=im.format)
            try:
                im.load()  # the full decode: fails here on truncated or damaged data
            except MemoryError:
                raise _fail(path, "too-large", "out of memory while decoding") from None
            except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct_error) as exc:
                raise _fail(path, "truncated", f"decoding failed: {exc}") from None
            try:
                rgb = _to_rgb(im)
                rgb.load()
            except (OSError, ValueError) as exc:
                raise _fail(path, "not-an-image", f"cannot convert mode {info.mode} to RGB: {exc}") from None
            # convert() may return a view sharing the file-backed image; detach it before closing.
            return (rgb.copy() if rgb is im else rgb), info


def open_rgb(path: Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open one image fully decoded as RGB.

    Args:
        path: the image file.
        max_pixels: refuse images whose header declares more pixels than this (checked before decoding).

    Returns:
        A loaded ``RGB`` image, detached from the file (the file is closed).

    Raises:
        ImageDecodeError: ``reason`` is one of :data:`DECODE_REASONS`.
    """
    return _load(Path(path), max_pixels)[0]


def resolve_workers(workers: int) -> int:
    """``0`` means ``min(8, os.cpu_count())``; negative values are rejected."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return workers or min(8, os.cpu_count() or 1)


def _run_parallel(
    fn: Callable[[Path], _T],
    paths: Sequence[Path],
    workers: int,
    on_progress: ProgressCallback | None,
) -> list[_T | ImageDecodeError]:
    """Apply ``fn`` to every path on a thread pool (Pillow releases the GIL while decoding).

    Results keep the input order; ``ImageDecodeError`` is returned in place of a result.
    """
    total = len(paths)
    results: dict[int, _T | ImageDecodeError] = {}

    def call(i: int) -> tuple[int, _T | ImageDecodeError]:
        try:
            return i, fn(paths[i])
        except ImageDecodeError as exc:
            return i, exc
        except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not stop the run
            log.debug("unexpected error decoding %s", display_path(paths[i]), exc_info=True)
            return i, _fail(paths[i], "not-an-image", f"{type(exc).__name__}: {exc}")

    report(on_progress, 0, total)
    n_threads = min(resolve_workers(workers), max(total, 1))
    if n_threads == 1:
        for done, i in enumerate(range(total), start=1):
            results[i] = call(i)[1]
            report(on_progress, done, total)
        return [results[i] for i in range(total)]
    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="decode") as pool:
        futures = [pool.submit(call, i) for i in range(total)]
        try:
            for done, fut in enumerate(as_completed(futures), start=1):
                i, res = fut.result()
                results[i] = res
                report(on_progress, done, total)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return [results[i] for i in range(total)]


def decode_images(
    paths: Sequence[Path],
    *,
    size: int | None = None,
    resample: Literal["bicubic", "bilinear"] = "bicubic",
    workers: int = 0,
    on_progress: ProgressCallback | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    keep_arrays: bool = True,
    fingerprint: bool = False,
) -> DecodedImages:
    """Decode many images to RGB uint8 arrays on a thread pool; bad files go to ``skipped``.

    Args:
        paths: image files, in the order wanted.
        size: when given, every image is resized to ``size x size`` with PIL (antialiased, no crop,
            aspect ratio not kept: the VTAB protocol's direct resize).
        resample: PIL filter for the resize.
        workers: decoding threads; ``0`` means ``min(8, os.cpu_count())``, ``1`` decodes serially.
        on_progress: ``on_progress(done, total)`` after each file.
        max_pixels: decompression-bomb limit passed to :func:`open_rgb`.
        keep_arrays: ``False`` decodes and validates every file but keeps only ``infos`` (profiling
            a large dataset without holding every image in memory).
        fingerprint: also hash each file's bytes into :mod:`engine.fingerprint`'s memo (readers whose results
            are keyed by the files' content, like the pilot's trials), so the fingerprint does not reopen them.

    Returns:
        :class:`DecodedImages` with ``arrays``/``infos`` in input order for the indices in ``ok``.
    """
    if size is not None and size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if resample not in _RESAMPLE:
        raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
    filt = _RESAMPLE[resample]
    digests = _Digests()  # stays empty without ``fingerprint``

    def work(path: Path) -> tuple[np.ndarray | None, ImageInfo]:
        im, info = _decode(path, digests.read(path)[0] if fingerprint else _read_bytes(path), max_pixels)
        if not keep_arrays:
            return None, info
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), filt)
        return np.asarray(im, dtype=np.uint8).copy(), info

    out = DecodedImages(arrays=[], ok=[], skipped=[], size=size)
    for i, res in enumerate(_run_parallel(work, list(paths), workers, on_progress)):
        if isinstance(res, ImageDecodeError):
            out.skipped.append(SkippedFile(path=res.path, reason=res.reason, detail=res.detail))
            continue
        array, info = res
        out.ok.append(i)
        out.infos.append(info)
        if array is not None:
            out.arrays.append(array)
    digests.remember()
    if out.skipped:
        log.info("decoded %d images, skipped %d", len(out.ok), len(out.skipped))
    return out


@dataclass(frozen=True)
class ReadImage:
    """One image file read once: its content digest, what its header said, and (when held) its RGB pixels."""

    sha256: str
    info: ImageInfo
    rgb: Image.Image | None
    """The decoded RGB image, or None when it did not fit in the caller's holding budget."""


@dataclass
class ReadImages:
    """Result of :func:`read_images`; ``images[k]`` belongs to input ``ok[k]``."""

    ok: list[int]
    images: list[ReadImage]
    skipped: list[SkippedFile]


def read_images(
    paths: Sequence[Path],
    *,
    workers: int = 0,
    on_progress: ProgressCallback | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    hold_bytes: int = 0,
) -> ReadImages:
    """Open each file once: hash its bytes, decode and validate it, and hold the pixels while they fit.

    This is the single read of a command that needs both the profile and the FID of a dataset
    (``recommend``): the digest keys the feature cache and the held images feed the network, so
    neither opens the file again; the digests also feed :mod:`engine.fingerprint`'s memo, so a pilot on the
    same files (``recommend --pilot``) keys its trials without reading them again. Images beyond ``hold_bytes``
    (RGB bytes, counted in completion order) are decoded and validated but not kept; their reader opens them
    again when it needs pixels.
    """
    lock = threading.Lock()
    held = [0]
    digests = _Digests()

    def work(path: Path) -> ReadImage:
        data, sha = digests.read(path)
        rgb, info = _decode(path, data, max_pixels)
        size = 3 * rgb.width * rgb.height
        with lock:
            keep = held[0] + size <= hold_bytes
            held[0] += size if keep else 0
        return ReadImage(sha256=sha, info=info, rgb=rgb if keep else None)

    out = ReadImages(ok=[], images=[], skipped=[])
    for i, res in enumerate(_run_parallel(work, list(paths), workers, on_progress)):
        if isinstance(res, ImageDecodeError):
            out.skipped.append(SkippedFile(path=res.path, reason=res.reason, detail=res.detail))
        else:
            out.ok.append(i)
            out.images.append(res)
    digests.remember()
    return out
