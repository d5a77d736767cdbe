"""Deterministic subsets and train/validation splits: class-stratified, or the first ``k`` of a list.

Pilots need small labeled subsets that keep the class proportions of the full dataset. Every draw uses
``numpy.random.default_rng(seed)`` explicitly, never global state, so the same seed gives the same subset
on every machine. VTAB-1k itself takes contiguous slices in TFDS order (KMnP/vpt ``src/data/vtab_datasets/``,
the task_adaptation definitions): ``train800`` is ``train[:800]`` for every task; ``val200`` is the first 200
images of the task's validation slice, which is ``validation[:200]`` where TFDS has a validation split (DTD,
Flowers, Sun397, PCam, Retinopathy, DMLab, KITTI), ``train[c:c+200]`` right after the task's own train slice of
``c`` images where the validation set is carved from TFDS's train split (CIFAR-100, Caltech101, Pets, SVHN,
EuroSAT, Resisc45, Clevr, dSprites), and ``test[:200]`` for SmallNORB. ``benchmarks/vtab/README.md`` lists
each task's slices. NOAH's list files keep that order, so :func:`first_k` on ``train800.txt``/``val200.txt``
takes the start of the same slices. Re-exported by :mod:`engine.data.index`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

import numpy as np

from engine.errors import ConfigError

__all__ = ["stratified_subsample", "first_k", "train_val_split", "SUBSET_MODES"]

SUBSET_MODES = ("first-k", "stratified")
"""How a smaller subset is drawn from a list: its first ``k`` entries (VTAB-1k style) or class-stratified."""



class Labeled(Protocol):
    """Anything with an integer class label or None (``engine.data.index.Sample``; splits need nothing else)."""

    @property
    def label(self) -> int | None: ...


_S = TypeVar("_S", bound=Labeled)


def _labels(samples: Sequence[_S], what: str) -> np.ndarray:
    if any(s.label is None for s in samples):
        raise ConfigError(f"{what} needs labeled samples; this dataset has unlabeled images (use class folders)")
    return np.array([s.label for s in samples], dtype=np.int64)


def _allocate(total: int, counts: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Split ``total`` over classes proportionally to ``counts`` (largest remainder), within [low, high]."""
    exact = total * counts / counts.sum()
    quota = np.clip(np.floor(exact).astype(np.int64), low, high)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")  # largest remainder first
    while quota.sum() < total:
        grown = False
        for k in order:
            if quota.sum() >= total:
                break
            if quota[k] < high[k]:
                quota[k] += 1
                grown = True
        if not grown:
            break
    shrink = np.argsort(-(quota - exact), kind="stable")
    while quota.sum() > total:
        shrunk = False
        for k in shrink:
            if quota.sum() <= total:
                break
            if quota[k] > low[k]:
                quota[k] -= 1
                shrunk = True
        if not shrunk:
            break
    return quota


def stratified_subsample(samples: Sequence[_S], n: int, *, seed: int) -> list[_S]:
    """Draw ``n`` samples with per-class proportions kept (deterministic for a given ``seed``).

    Every class keeps at least one sample when ``n`` is at least the number of classes; otherwise
    ``n`` classes are chosen at random. The result keeps the input order.

    Raises:
        ConfigError: ``n`` < 1 or a sample is unlabeled.
    """
    if n < 1:
        raise ConfigError(f"subsample size must be >= 1, got {n}")
    labels = _labels(samples, "stratified subsampling")
    if n >= len(samples):
        return list(samples)
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    low = np.ones_like(counts) if n >= len(classes) else np.zeros_like(counts)
    if n < len(classes):
        chosen = rng.choice(len(classes), size=n, replace=False)
        quota = np.zeros_like(counts)
        quota[chosen] = 1
    else:
        quota = _allocate(n, counts, low, counts)
    keep: list[int] = []
    for k in range(len(classes)):
        members = np.flatnonzero(inverse == k)
        keep.extend(rng.choice(members, size=int(quota[k]), replace=False).tolist())
    return [samples[i] for i in sorted(keep)]


def first_k(samples: Sequence[_S], n: int) -> list[_S]:
    """The first ``n`` samples in list order (all of them when there are fewer), as VTAB-1k's ``train[:800]``
    (a list file in split order: the first ``n`` of ``val200.txt`` are the start of the task's validation slice).

    Raises:
        ConfigError: ``n`` < 1.
    """
    if n < 1:
        raise ConfigError(f"subset size must be >= 1, got {n}")
    return list(samples[:n])


def train_val_split(
    samples: Sequence[_S], *, val_fraction: float = 0.2, seed: int
) -> tuple[list[_S], list[_S]]:
    """Split per class into train and validation sets (deterministic for a given ``seed``).

    About ``val_fraction`` of the samples go to validation, allocated to classes in proportion to
    their size; every class keeps at least one training sample. Both lists keep the input order.

    Raises:
        ConfigError: ``val_fraction`` not in (0, 1), or a sample is unlabeled.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    labels = _labels(samples, "a stratified train/val split")
    if not len(labels):
        return [], []
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    n_val = int(round(len(labels) * val_fraction))
    quota = _allocate(n_val, counts, np.zeros_like(counts), counts - 1)
    is_val = np.zeros(len(labels), dtype=bool)
    for k in range(len(classes)):
        members = np.flatnonzero(inverse == k)
        is_val[rng.choice(members, size=int(quota[k]), replace=False)] = True
    train = [s for s, v in zip(samples, is_val, strict=False) if not v]
    val = [s for s, v in zip(samples, is_val, strict=False) if v]
    return train, val
