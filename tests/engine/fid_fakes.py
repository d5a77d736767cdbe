"""A stand-in for the Inception extractor (pytorch-fid's tests mock the network the same way).

It keeps the real interface (``id``, ``dims``, ``features(uint8 NHWC batch)``) and records every
batch shape, so plumbing tests run in milliseconds and can count extractions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.config.fid import FidConfig
from engine.fid.features import extractor_id, resolve_weights, weights_sha256


class FakeExtractor:
    """Features = fixed random projection of 4x4 block means of the image (deterministic)."""

    def __init__(self, config: FidConfig) -> None:
        self.dims = config.dims
        self.id = extractor_id(config.dims, weights_sha256(resolve_weights(config)))
        self.shapes: list[tuple[int, ...]] = []
        self._proj = np.random.default_rng(123).standard_normal((48, config.dims)).astype(np.float32)

    @property
    def n_images(self) -> int:
        return sum(s[0] for s in self.shapes)

    def features(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        n, h, w, _ = batch.shape
        x = batch.astype(np.float32) / 255
        blocks = x[:, : h - h % 4, : w - w % 4].reshape(n, 4, (h - h % 4) // 4, 4, (w - w % 4) // 4, 3)
        return blocks.mean(axis=(2, 4)).reshape(n, 48) @ self._proj


@pytest.fixture
def fake_weights(tmp_path: Path) -> Path:
    """A dummy weights file (only hashed: the fake extractor never reads it)."""
    path = tmp_path / "fake-inception.pth"
    path.write_bytes(b"fake weights for plumbing tests")
    return path


@pytest.fixture
def fake_extractors(monkeypatch: pytest.MonkeyPatch) -> list[FakeExtractor]:
    """Patch the network loader in fidrun/refbuild; returns the list of extractors created."""
    made: list[FakeExtractor] = []

    def load(config: FidConfig, device: object) -> FakeExtractor:
        made.append(FakeExtractor(config))
        return made[-1]

    monkeypatch.setattr("engine.fid.run.load_inception", load)
    monkeypatch.setattr("engine.fid.refbuild.load_inception", load)
    return made
