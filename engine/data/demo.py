"""The embedded demo dataset: a deterministic counting task (1-8 shapes per image).

Counting is one of VTAB-1k's structured, high-disparity tasks (CLEVR/count in Han et al., ICLR 2024),
so the demo exercises the paper's "VPT preferable for high disparity" rule offline. Classes ``1`` ..
``8`` hold 64x64 PNGs with that many separate (at least ~3 px apart) circles, squares and triangles of varied colours
on varied backgrounds. Every image is drawn from its own seed ``(DEMO_SEED, count, index)``, so the
files are byte-identical across runs on the same Pillow version.

The dataset is written to a hidden temporary folder next to the target and renamed into place, with
a marker file recording its version: an interrupted write never leaves a half dataset, and later
calls reuse a complete one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.paths import demo_dir

__all__ = [
    "DEMO_VERSION",
    "DEMO_SEED",
    "DEMO_IMAGES_PER_CLASS",
    "DEMO_IMAGE_SIZE",
    "DEMO_MAX_COUNT",
    "ensure_demo_dataset",
    "draw_counting_image",
]

log = logging.getLogger(__name__)

DEMO_VERSION = 1
DEMO_SEED = 20240121
DEMO_IMAGES_PER_CLASS = 25
DEMO_IMAGE_SIZE = 64
DEMO_MAX_COUNT = 8
_MARKER = ".vpt-advisor-demo.json"
_NAME = "counting"


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(0, 256, 3))
    return r, g, b


def _far_colour(rng: np.random.Generator, background: tuple[int, int, int]) -> tuple[int, int, int]:
    """A random colour clearly distinguishable from the background (Euclidean RGB distance > 120)."""
    bg = np.array(background)
    for _ in range(100):
        col = _colour(rng)
        if np.linalg.norm(np.array(col) - bg) > 120:
            return col
    r, g, b = background
    return 255 - r, 255 - g, 255 - b


def _place(rng: np.random.Generator, count: int, size: int) -> list[tuple[float, float, float]]:
    """Non-overlapping circles (cx, cy, r) that each shape is inscribed in; shrinks on failure."""
    r_max = 9.0
    while True:
        placed: list[tuple[float, float, float]] = []
        for _ in range(count):
            for _try in range(200):
                r = float(rng.uniform(r_max * 0.55, r_max))
                cx, cy = (float(v) for v in rng.uniform(r + 1, size - r - 1, 2))
                if all(math.hypot(cx - x, cy - y) > r + q + 4 for x, y, q in placed):
                    placed.append((cx, cy, r))
                    break
            else:
                break
        if len(placed) == count:
            return placed
        r_max *= 0.85  # crowded: retry with smaller shapes (deterministic, drawn from the same rng)


def draw_counting_image(count: int, index: int, *, size: int = DEMO_IMAGE_SIZE, seed: int = DEMO_SEED) -> Image.Image:
    """Draw one demo image with ``count`` shapes (deterministic in ``count``, ``index`` and ``seed``)."""
    if not 1 <= count <= DEMO_MAX_COUNT:
        raise ValueError(f"count must be in 1..{DEMO_MAX_COUNT}, got {count}")
    rng = np.random.default_rng([seed, count, index])
    background = _colour(rng)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for cx, cy, r in _place(rng, count, size):
        kind = int(rng.integers(0, 3))
        fill = _far_colour(rng, background)
        if kind == 0:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:  # square (4 sides) or triangle (3 sides), randomly rotated, inscribed in the circle
            sides = 4 if kind == 1 else 3
            draw.regular_polygon((cx, cy, r), sides, rotation=float(rng.uniform(0, 360)), fill=fill)
    return image


def _marker_ok(folder: Path) -> bool:
    try:
        meta = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta == _marker_content()


def _marker_content() -> dict[str, int | str]:
    return {
        "name": _NAME,
        "version": DEMO_VERSION,
        "seed": DEMO_SEED,
        "images_per_class": DEMO_IMAGES_PER_CLASS,
        "size": DEMO_IMAGE_SIZE,
        "classes": DEMO_MAX_COUNT,
    }


def _write(folder: Path) -> None:
    for count in range(1, DEMO_MAX_COUNT + 1):
        cls = folder / str(count)
        cls.mkdir()
        for i in range(DEMO_IMAGES_PER_CLASS):
            draw_counting_image(count, i).save(cls / f"{i:03d}.png", format="PNG")
    # The marker is written last: a folder without it is never trusted.
    (folder / _MARKER).write_text(json.dumps(_marker_content(), indent=2) + "\n", encoding="utf-8")


def ensure_demo_dataset(root: Path | None = None) -> Path:
    """Return the demo ImageFolder (``<root>/counting``), generating it the first time (~1 s).

    Args:
        root: parent folder; default :func:`engine.paths.demo_dir`.

    Returns:
        The dataset folder: classes ``1`` .. ``8``, :data:`DEMO_IMAGES_PER_CLASS` PNGs each.
    """
    parent = Path(root) if root is not None else demo_dir()
    target = parent / _NAME
    if _marker_ok(target):
        return target
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_NAME}.tmp-", dir=parent))
    try:
        _write(tmp)
        if target.exists() or target.is_symlink():
            log.info("replacing stale or incomplete demo dataset at %s", target)
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _marker_ok(target):  # not a concurrent writer that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote the counting demo dataset to %s", target)
    return target
