"""Decode-once image tensors and an on-device batch iterator for short training runs.

Images are decoded and resized **once** (VTAB protocol: direct resize to a square, no crop, no
augmentation) into one ``(N, 3, H, W)`` uint8 tensor. Batches are gathered from it by index and
normalised on the device, so an epoch costs no decoding and no per-image Python work. On CUDA the
whole uint8 tensor is moved to the GPU when it is small (1000 images at 224 px are 150 MB).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from engine.data.imageio import SkippedFile, decode_images
from engine.data.index import Sample
from engine.errors import ConfigError, EmptyDatasetError
from engine.progress import ProgressCallback

__all__ = ["NORMALIZATION", "DecodeMemo", "ImageTensors", "TensorLoader", "load_image_tensors"]

DecodeMemo = dict[tuple[Path, int], np.ndarray]
"""Images already decoded and resized, by ``(path, size)``: a reader that decoded a few files early (the pilot's
decode-time probe) hands them on, so no file is decoded twice."""

NORMALIZATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # VPT's VTAB loader
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # timm's cfg for the Google ViT weights
}
"""Mean and std per channel (on the [0, 1] scale) for each ``normalization`` choice."""

_DEVICE_RESIDENT_BYTES = 4 * 2**30
"""Largest uint8 split copied to the GPU once (our choice): 4 GiB holds VTAB-1k's 1,000 training images at
224 px (150 MB) and test splits up to about 28,000 images, and leaves a 16 GB GPU room for ViT-B/16
training; larger splits stay in pinned host memory and move batch by batch."""


@dataclass
class ImageTensors:
    """Decoded images ``(N, 3, H, W)`` uint8 and labels ``(N,)`` int64, on the CPU or a device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ConfigError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ConfigError(f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @classmethod
    def from_numpy(cls, images_nhwc: np.ndarray, labels: Sequence[int] | np.ndarray) -> ImageTensors:
        """Build from an ``(N, H, W, 3)`` uint8 array (``DecodedImages.stack()``) and labels."""
        images = torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2).contiguous()
        return cls(images=images, labels=torch.as_tensor(np.asarray(labels), dtype=torch.long))


def load_image_tensors(
    samples: Sequence[Sample],
    *,
    size: int,
    workers: int = 0,
    on_progress: ProgressCallback | None = None,
    memo: DecodeMemo | None = None,
    fingerprint: bool = False,
) -> tuple[ImageTensors, list[SkippedFile]]:
    """Decode and resize labeled samples once into :class:`ImageTensors` (files found in ``memo`` are not read).

    ``fingerprint``: hash the bytes read into :mod:`engine.fingerprint`'s memo too (see
    :func:`engine.data.imageio.decode_images`).

    Returns:
        The tensors of the images that decoded, and the files that were skipped.

    Raises:
        ConfigError: a sample has no label.
        EmptyDatasetError: no image decoded.
    """
    if any(s.label is None for s in samples):
        raise ConfigError("training needs labeled images (an ImageFolder, or a list/CSV file with labels)")
    memo = memo if memo is not None else {}
    todo = [i for i, s in enumerate(samples) if (s.path, size) not in memo]
    decoded = decode_images([samples[i].path for i in todo], size=size, workers=workers, on_progress=on_progress,
                            fingerprint=fingerprint)
    arrays = {i: a for i, s in enumerate(samples) if (a := memo.get((s.path, size))) is not None}
    arrays.update({todo[j]: a for j, a in zip(decoded.ok, decoded.arrays, strict=True)})
    if not arrays:
        raise EmptyDatasetError(f"none of the {len(samples)} images could be decoded")
    ok = sorted(arrays)
    labels = [label for i in ok if (label := samples[i].label) is not None]  # all labeled: checked above
    return ImageTensors.from_numpy(np.stack([arrays[i] for i in ok]), labels), decoded.skipped


class TensorLoader:
    """Iterate normalised float batches ``(x, y)`` on ``device`` from :class:`ImageTensors`.

    Args:
        data: the decoded images.
        batch_size: images per batch (the last batch may be smaller unless ``drop_last``).
        device: where batches are produced.
        normalization: a key of :data:`NORMALIZATION`.
        shuffle: draw a new permutation each epoch from ``generator``.
        generator: CPU generator for the permutation (seeded by the caller).
        drop_last: skip a final partial batch.
    """

    def __init__(
        self,
        data: ImageTensors,
        *,
        batch_size: int,
        device: torch.device,
        normalization: Literal["imagenet", "inception"] = "imagenet",
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if normalization not in NORMALIZATION:
            raise ConfigError(f"unknown normalization {normalization!r}; use {', '.join(NORMALIZATION)}")
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.generator = generator
        self.drop_last = drop_last
        images, labels = data.images, data.labels
        if device.type != "cpu":
            nbytes = images.numel() * images.element_size()
            if nbytes <= _DEVICE_RESIDENT_BYTES:
                images = images.to(device)
            elif device.type == "cuda":
                images = images.pin_memory()
            labels = labels.to(device)
        self.images = images
        self.labels = labels
        mean, std = NORMALIZATION[normalization]
        # (x / 255 - mean) / std == (x - 255 mean) / (255 std): one sub and one div per element
        self._shift = torch.tensor(mean, device=device).mul(255).view(1, 3, 1, 1)
        self._scale = torch.tensor(std, device=device).mul(255).view(1, 3, 1, 1)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.images.device != idx.device:
                idx_img = idx.to(self.images.device, non_blocking=True)
            else:
                idx_img = idx
            x = self.images.index_select(0, idx_img).to(self.device, non_blocking=True)
            y = self.labels.index_select(0, idx.to(self.labels.device, non_blocking=True))
            x = x.float().sub_(self._shift).div_(self._scale)
            yield x, y
