"""Shared test building blocks: isolated user dirs, tiny images, a tiny ViT, generated weights.

No test downloads anything: HF_HUB_OFFLINE=1, and TORCH_HOME / VPT_ADVISOR_HOME point into the
test's temporary folder, so generated weight files are placed exactly where the real code looks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["tests.gen_inception", "tests.engine.fid_fakes"]
"""Fixture modules available to every test: random FID-Inception weights, fake feature extractors."""

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("COLUMNS", "120")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Give every test its own data home and torch hub, offline, with a fixed terminal width."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("VPT_ADVISOR_HOME", str(home / "vpt-advisor"))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("VPT_ADVISOR_DEBUG", raising=False)


@pytest.fixture(autouse=True)
def _quiet_plain_progress(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain progress lines (stderr not a terminal, as under pytest) appear only once a stage has run for
    ``PLAIN_QUIET_S``, so on a loaded machine they would land in some tests' stderr and not in others'. Tests of the
    command output get a deterministic stderr; the tests marked ``plain_progress`` check those lines themselves."""
    if request.node.get_closest_marker("plain_progress") is None:
        monkeypatch.setattr("advisor.commands._callbacks.PLAIN_QUIET_S", float("inf"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 HxWx3 (or HxW) array as PNG, creating parent folders."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def tiny_image_dir(tmp_path: Path) -> Path:
    """Eight random 32x32 RGB PNGs in a flat folder."""
    gen = np.random.default_rng(0)
    root = tmp_path / "tiny"
    for i in range(8):
        write_png(root / f"img_{i}.png", gen.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return root


@pytest.fixture
def tiny_imagefolder(tmp_path: Path) -> Path:
    """A 3-class ImageFolder of 32x32 PNGs, 6 per class, each class a different mean colour."""
    gen = np.random.default_rng(1)
    root = tmp_path / "folder"
    for c, name in enumerate(["cat", "dog", "fox"]):
        for i in range(6):
            base = np.zeros((32, 32, 3), dtype=np.int16)
            base[..., c] = 160
            noise = gen.integers(0, 64, (32, 32, 3))
            write_png(root / name / f"{i}.png", np.clip(base + noise, 0, 255).astype(np.uint8))
    return root


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``).

    The tiny test models' kernels take microseconds; with several threads on a busy 2-core machine the
    thread hand-offs cost ten times more than the work.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_colour_dataset(root: Path, per_class: int) -> Path:
    """Three classes (red, green, blue) of 32x32 PNGs told apart by the bright channel."""
    gen = np.random.default_rng(0)
    for c, name in enumerate(["red", "green", "blue"]):
        for i in range(per_class):
            img = gen.integers(0, 80, (32, 32, 3)).astype(np.uint8)
            img[..., c] += 150
            write_png(root / name / f"{i}.png", img)
    return root


@pytest.fixture
def colour_dataset(tmp_path: Path) -> Path:
    """:func:`write_colour_dataset` with 10 images per class (30 in all)."""
    return write_colour_dataset(tmp_path / "colours", 10)


@pytest.fixture
def cpu():
    import torch

    return torch.device("cpu")


@pytest.fixture
def tiny_vit():
    """A two-block, 32-wide timm ViT on 32x32 inputs (about 32k parameters), 3 classes."""
    import timm

    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        depth=2,
        embed_dim=32,
        num_heads=2,
        num_classes=3,
    )
