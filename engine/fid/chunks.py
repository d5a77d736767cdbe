"""``fid`` / ``recommend`` feature extraction with ``--backend dask``: one task per chunk of image files.

The caller (:func:`engine.fid.run.extract_file_features`) looks every file up in its feature cache first and
sends only the misses, in chunks of whole batches, to the cluster; each chunk comes back as float32 features
(plus the files that failed to decode), which the caller stores in its cache as they arrive. Workers decode
and run the network exactly as the one-process path does (:func:`engine.fid.features.iter_feature_batches`
over the same batches), so features do not depend on the backend. Files are read by path on the worker: a
LocalCluster always can; a remote cluster needs the dataset at the same path (a shared filesystem).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.config.fid import FidConfig, device_type
from engine.data.imageio import SkippedFile, open_rgb
from engine.fid.cluster import run_units, worker_network
from engine.fid.features import iter_feature_batches, to_model_array

__all__ = ["ChunkFeatures", "chunk_unit", "extract_on_dask", "CHUNK_BATCHES"]

CHUNK_BATCHES = 2
"""Batches per task: small enough to spread a few hundred images over the workers, large enough that the
per-task overhead (a round trip, a decode pool) stays small next to two forward passes."""


@dataclass
class ChunkFeatures:
    """Features of one chunk: ``features[k]`` belongs to the chunk's file ``ok[k]``."""

    ok: list[int]
    features: npt.NDArray[np.float32]
    skipped: list[tuple[int, SkippedFile]]


def chunk_unit(paths: list[str], config: FidConfig, device: str, preprocessing: str, ext_id: str) -> ChunkFeatures:
    """Decode and extract one chunk of files (runs on a worker)."""
    net = worker_network(config, device, ext_id)

    def decode(p: str) -> npt.NDArray[np.uint8]:
        return to_model_array(open_rgb(Path(p)), preprocessing)

    ok: list[int] = []
    feats: list[npt.NDArray[np.float32]] = []
    skipped: list[tuple[int, SkippedFile]] = []
    for idx, batch, failed in iter_feature_batches(paths, decode, net, batch_size=config.batch_for(device_type(device)),
                                                   workers=config.workers):
        ok += idx
        feats.append(batch)
        skipped += [(i, SkippedFile(path=e.path, reason=e.reason, detail=e.detail)) for i, e in failed]
    array = np.concatenate(feats) if feats else np.empty((0, config.dims), np.float32)
    return ChunkFeatures(ok, array, skipped)


def extract_on_dask(paths: list[Path], config: FidConfig, device: str, preprocessing: str, ext_id: str,
                    on_chunk: Callable[[list[int], ChunkFeatures], None]) -> None:
    """Extract ``paths`` on Dask; ``on_chunk(indices into paths, result)`` is called here as chunks finish."""
    size = config.batch_for(device_type(device)) * CHUNK_BATCHES
    starts = list(range(0, len(paths), size))
    args = [([str(p) for p in paths[a:a + size]], config, device, preprocessing, ext_id) for a in starts]

    def arrived(i: int, chunk: ChunkFeatures) -> None:
        on_chunk(list(range(starts[i], min(len(paths), starts[i] + size))), chunk)

    run_units(chunk_unit, args, config, arrived)
