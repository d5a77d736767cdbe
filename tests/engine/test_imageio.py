"""engine.data.imageio: every bad-file kind is skipped with its reason; every colour mode becomes correct RGB."""

from __future__ import annotations

import builtins
import io
import json
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data.imageio import (
    IMAGE_EXTENSIONS,
    check_file,
    decode_images,
    display_path,
    is_image_name,
    open_rgb,
    resolve_workers,
)
from engine.errors import ImageDecodeError
from tests.conftest import write_png


def _reason(path: Path, **kw: int) -> str:
    with pytest.raises(ImageDecodeError) as info:
        open_rgb(path, **kw)
    return info.value.reason


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG declaring ``width`` x ``height`` with one row of pixel data (a few dozen bytes on disk)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


# --------------------------------------------------------------------------------------- bad files
def test_extensions_are_case_insensitive() -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"} == IMAGE_EXTENSIONS
    assert is_image_name("A.JPG") and is_image_name("b.TiFf") and not is_image_name("c.txt")


def test_zero_byte(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    assert _reason(tmp_path / "empty.png") == "zero-byte"


def test_missing_and_dangling_symlink(tmp_path: Path) -> None:
    assert _reason(tmp_path / "nope.png") == "missing"
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageDecodeError, match="dangling symlink"):
        open_rgb(tmp_path / "dangling.png")


def test_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "self.png").symlink_to(tmp_path / "self.png")
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    assert _reason(tmp_path / "self.png") == "symlink-loop"
    assert _reason(tmp_path / "a.jpg") == "symlink-loop"


def test_text_file_named_jpg(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("this is not an image\n")
    assert _reason(tmp_path / "notes.jpg") == "not-an-image"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated(tmp_path: Path, fmt: str) -> None:
    gen = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(gen.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    assert _reason(path) == "truncated"


def test_directory_and_fifo_named_like_images(tmp_path: Path) -> None:
    (tmp_path / "folder.png").mkdir()
    assert _reason(tmp_path / "folder.png") == "not-an-image"
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block forever; it must not be opened
    assert _reason(tmp_path / "pipe.png") == "not-an-image"


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """We run as root (chmod 000 stays readable), so make open() fail the way it does for a user."""
    path = write_png(tmp_path / "secret.png", np.zeros((4, 4, 3), np.uint8))
    real_open = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert _reason(path) == "unreadable"
    if os.geteuid() != 0:  # the real thing, where it can be produced
        monkeypatch.undo()
        path.chmod(0)
        try:
            assert _reason(path) == "unreadable"
        finally:
            path.chmod(0o644)


def test_too_large_checked_from_header_before_decoding(tmp_path: Path) -> None:
    # Declares 100000 x 100000 pixels but holds no pixel data: rejected from the header alone.
    huge = _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    assert huge.stat().st_size < 100
    assert _reason(huge) == "too-large"
    # Just over a custom limit: a real, small, valid image is refused by the limit, accepted without it.
    path = write_png(tmp_path / "ok.png", np.zeros((10, 20, 3), np.uint8))
    assert _reason(path, max_pixels=199) == "too-large"
    assert open_rgb(path, max_pixels=200).size == (20, 10)


# --------------------------------------------------------------------------------- mode conversions
def _save(path: Path, im: Image.Image) -> Path:
    im.save(path)
    return path


def test_grayscale_and_palette_to_rgb(tmp_path: Path) -> None:
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    out = np.asarray(open_rgb(_save(tmp_path / "g.png", Image.fromarray(gray, "L"))))
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putdata([0, 1])
    out = np.asarray(open_rgb(_save(tmp_path / "p.png", pal)))
    np.testing.assert_array_equal(out[0], [[10, 20, 30], [200, 100, 50]])


def test_rgba_drops_alpha_keeping_colour(tmp_path: Path) -> None:
    px = np.array([[[255, 0, 0, 0], [0, 255, 0, 128], [0, 0, 255, 255]]], dtype=np.uint8)
    out = np.asarray(open_rgb(_save(tmp_path / "a.png", Image.fromarray(px, "RGBA"))))
    np.testing.assert_array_equal(out, px[..., :3])  # colour kept even where fully transparent


def test_cmyk_to_rgb(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putdata([(0, 0, 0, 0), (255, 0, 0, 0)])  # white, then full cyan
    out = np.asarray(open_rgb(_save(tmp_path / "c.tif", cmyk)))
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [0, 255, 255]])


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_is_scaled_not_clipped(tmp_path: Path, mode: str) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 8-bit 0, 1, 128, 255
    dtype = ">u2" if mode == "I;16B" else "<u2"
    im = Image.frombytes(mode, (4, 1), values.astype(dtype).tobytes())
    path = tmp_path / f"deep_{mode.replace(';', '')}.tif"
    im.save(path)
    assert Image.open(path).mode.startswith("I;16")
    out = np.asarray(open_rgb(path))
    for c in range(3):
        np.testing.assert_array_equal(out[0, :, c], [0, 1, 128, 255])


def test_16_bit_png(tmp_path: Path) -> None:
    values = np.array([[0, 65535], [257 * 100, 257 * 7]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    np.testing.assert_array_equal(np.asarray(open_rgb(path))[..., 1], [[0, 255], [100, 7]])


def test_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert Image.open(path).n_frames == 2
    np.testing.assert_array_equal(np.asarray(open_rgb(path))[0, 0], [255, 0, 0])


# ----------------------------------------------------------------------------------------- names
def test_non_utf8_file_name(tmp_path: Path) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9_\xff.png")
    Image.new("RGB", (3, 3), (1, 2, 3)).save(os.fsdecode(raw))
    path = Path(os.fsdecode(raw))
    assert open_rgb(path).getpixel((0, 0)) == (1, 2, 3)
    shown = display_path(path)
    assert shown.endswith("caf\\xe9_\\xff.png")
    json.dumps(shown).encode("utf-8")  # JSON- and UTF-8-safe
    assert display_path(raw) == shown
    assert display_path("line\nbreak.png") == "line\\x0abreak.png"


# -------------------------------------------------------------------------------------- batch decode
def test_decode_images_keeps_order_and_skips_bad(tmp_path: Path) -> None:
    gen = np.random.default_rng(3)
    arrays = [gen.integers(0, 256, (8 + i, 10, 3), dtype=np.uint8) for i in range(6)]
    paths = [write_png(tmp_path / f"{i}.png", a) for i, a in enumerate(arrays)]
    (tmp_path / "bad.png").write_bytes(b"")
    paths.insert(2, tmp_path / "bad.png")
    seen: list[tuple[int, int]] = []
    res = decode_images(paths, workers=3, on_progress=lambda d, t: seen.append((d, t)))
    assert res.ok == [0, 1, 3, 4, 5, 6]
    for got, want in zip(res.arrays, arrays, strict=False):
        np.testing.assert_array_equal(got, want)
    assert [(s.reason, Path(s.path).name) for s in res.skipped] == [("zero-byte", "bad.png")]
    assert seen[0] == (0, 7) and seen[-1] == (7, 7)
    assert [(i.width, i.height, i.mode) for i in res.infos][:2] == [(10, 8, "RGB"), (10, 9, "RGB")]
    with pytest.raises(ValueError, match="different sizes"):
        res.stack()


def test_decode_images_resize_matches_pil(tmp_path: Path) -> None:
    gen = np.random.default_rng(4)
    arr = gen.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    path = write_png(tmp_path / "x.png", arr)
    for resample, filt in [("bicubic", Image.Resampling.BICUBIC), ("bilinear", Image.Resampling.BILINEAR)]:
        res = decode_images([path, path], size=16, resample=resample, workers=1)  # type: ignore[arg-type]
        want = np.asarray(Image.fromarray(arr).resize((16, 16), filt))
        stacked = res.stack()
        assert stacked.shape == (2, 16, 16, 3)
        np.testing.assert_array_equal(stacked[1], want)
    empty = decode_images([], size=8)
    assert empty.stack().shape == (0, 8, 8, 3)


def test_decode_images_uses_threads_and_survives_decoder_bugs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.data.imageio as imageio

    paths = [write_png(tmp_path / f"{i}.png", np.full((4, 4, 3), i, np.uint8)) for i in range(8)]
    threads: set[str] = set()
    real = imageio._to_rgb

    def buggy(im: Image.Image) -> Image.Image:
        threads.add(threading.current_thread().name)
        if im.getpixel((0, 0)) == (5, 5, 5):
            raise RuntimeError("decoder bug")
        return real(im)

    monkeypatch.setattr(imageio, "_to_rgb", buggy)
    res = decode_images(paths, workers=4)
    assert res.ok == [0, 1, 2, 3, 4, 6, 7]
    assert res.skipped[0].reason == "not-an-image" and "decoder bug" in res.skipped[0].detail
    assert threads and all(name.startswith("decode") for name in threads)
    assert resolve_workers(0) == min(8, os.cpu_count() or 1) and resolve_workers(3) == 3


def test_check_file_returns_size(tmp_path: Path) -> None:
    path = write_png(tmp_path / "s.png", np.zeros((2, 2, 3), np.uint8))
    assert check_file(path) == path.stat().st_size
