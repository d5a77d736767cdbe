"""engine.data.demo: the counting demo is complete, byte-identical across runs, reused, and written atomically."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import engine.data.demo as demo
from engine.data.index import index_dataset
from engine.paths import demo_dir


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def test_demo_is_deterministic_and_complete(tmp_path: Path) -> None:
    a = demo.ensure_demo_dataset(tmp_path / "one")
    b = demo.ensure_demo_dataset(tmp_path / "two")
    assert _digest(a) == _digest(b)
    index = index_dataset(a)
    assert index.classes == [str(k) for k in range(1, 9)]
    assert len(index.samples) == 8 * demo.DEMO_IMAGES_PER_CLASS
    # Images differ from each other (seeded per image, not one picture repeated).
    assert len({hashlib.sha256(s.path.read_bytes()).hexdigest() for s in index.samples}) == len(index.samples)


@pytest.mark.parametrize("count", [1, 5, 8])
def test_demo_image_has_that_many_shapes(count: int) -> None:
    from scipy import ndimage

    img = np.asarray(demo.draw_counting_image(count, 3))
    assert img.shape == (64, 64, 3)
    foreground = np.any(img != img[0, 0], axis=2)  # shapes never touch the corner pixel's background
    _, n_blobs = ndimage.label(foreground, structure=np.ones((3, 3)))  # 8-connected: triangle tips are diagonal
    assert n_blobs == count


def test_default_location_and_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    first = demo.ensure_demo_dataset()
    assert first.parent == demo_dir()
    monkeypatch.setattr(demo, "_write", lambda folder: pytest.fail("regenerated a complete demo"))
    assert demo.ensure_demo_dataset() == first


def test_interrupted_write_leaves_no_half_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = demo._write

    def crash(folder: Path) -> None:
        (folder / "1").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_write", crash)
    with pytest.raises(KeyboardInterrupt):
        demo.ensure_demo_dataset(tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither a target nor a temp folder is left behind
    # A stale folder without the marker (e.g. from an older version) is replaced.
    (tmp_path / "counting" / "junk").mkdir(parents=True)
    monkeypatch.setattr(demo, "_write", real)
    out = demo.ensure_demo_dataset(tmp_path)
    assert not (out / "junk").exists() and len(list(out.rglob("*.png"))) == 8 * demo.DEMO_IMAGES_PER_CLASS
