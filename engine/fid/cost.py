"""What a reference build will cost, said before it starts: images, shards, download and time on this machine.

A newcomer's first question about the similarity axis is "how long, and how much to download?". The answer has
three parts, each labelled by where it comes from:

- **images and shards** follow the build's own plan rule (``K = ceil(images / IMAGES_PER_SHARD)`` shards, each read
  whole; :mod:`engine.fid.refbuild`);
- **download** for the in21k source rests on the dataset cards (README, "Download size and time"): 13,673,551 images
  in 4,096 shards, and an *assumed* 88 KB per JPEG image. Another shard source's size is known only once its
  listing is read, so it is not guessed;
- **time** is images ÷ the forward rate of pytorch-fid's Inception **measured on this machine** by a short probe
  through the extraction entry point the build uses (:func:`engine.fid.features.iter_feature_batches`), cached per
  device, CPU and thread count in the data home. Without Inception weights there is nothing to measure, and the time
  is reported as unknown rather than guessed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.config.fid import FidConfig
from engine.fid.features import forward_lanes, iter_feature_batches, load_inception
from engine.fid.gates import MIN_REFERENCE_IMAGES
from engine.fid.refbuild import IMAGES_PER_SHARD
from engine.io import atomic_write_bytes
from engine.paths import cache_dir

logger = logging.getLogger(__name__)

__all__ = ["BuildCost", "CostEstimate", "ForwardRate", "IN21K_SHARDS", "IN21K_IMAGES", "ASSUMED_BYTES_PER_IMAGE",
           "build_cost", "measure_forward_rate", "cached_forward_rate"]

IN21K_IMAGES = 13_673_551
"""Images in the train split of ``timm/imagenet-22k-wds`` (its dataset card)."""
IN21K_SHARDS = 4_096
"""Shard names ``imagenet22k-train-{0000..4095}.tar`` on the same card."""
ASSUMED_BYTES_PER_IMAGE = 88_000
"""An assumption, not a measurement: the ``timm/imagenet-w21-webp-wds`` card gives 645.65 GB for 13,151,276 WEBP
images and says WEBP is about 56 % of the JPEG size, so about 88 KB per JPEG image (README)."""
_RATE_FILE = "fid_forward_rate.json"


class ForwardRate(BaseModel):
    """Inception images per second on one device, measured here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    images_per_s: float = Field(gt=0, description="Forward rate of the extraction path the build uses.")
    device: str = Field(description="Device measured on.")
    cpu: str = Field(description="CPU model (or platform) measured on.")
    threads: int = Field(description="torch threads available to the process when measured.")
    batch_size: int = Field(ge=1, description="Images per forward pass measured with (the build's batch).")
    measured_at: float = Field(description="Unix time of the measurement.")
    cached: bool = Field(default=False, description="Read from the data home's rate file instead of probed now.")


class BuildCost(BaseModel):
    """The cost of building a reference of ``images`` images, stated before the build."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    images: int = Field(description="Images the build will use (the planned maximum).")
    shards: int | None = Field(description="Shards read whole (shard sources with a known listing), else None.")
    download_bytes: int | None = Field(description="Assumed download (in21k only; None where not known).")
    download_basis: str = Field(description="Where the download figure comes from.")
    seconds: float | None = Field(description="Feature-extraction time at the measured rate (None: not measured).")
    rate: ForwardRate | None = Field(description="The measured forward rate behind ``seconds``.")
    passes_gate: bool = Field(description="Whether a reference of this size can verify FIDs.")


class CostEstimate(BaseModel):
    """``reference build --estimate --json``: the planned build and the smallest one that verifies FIDs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    planned: BuildCost | None = Field(description="The build as asked (None: every image of an unlisted source).")
    smallest_that_passes: BuildCost = Field(description="The smallest reference the FID check accepts.")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _rate_key(device: str, cpu: str, threads: int, dims: int, batch_size: int) -> str:
    return f"{device}|{cpu}|{threads}|{dims}|b{batch_size}"


def cached_forward_rate(config: FidConfig, device: str = "auto") -> ForwardRate | None:
    """A rate measured earlier on this device, CPU, thread count, feature layer and batch, or None (a damaged file
    counts as none)."""
    import torch  # deferred for the same reason as in measure_forward_rate

    from engine.device import resolve_device

    dev = resolve_device(device)
    key = _rate_key(str(dev), _cpu_name(), torch.get_num_threads(), config.dims, config.batch_for(dev.type))
    try:
        entry = json.loads((cache_dir() / _RATE_FILE).read_text())[key]
        return ForwardRate.model_validate({**entry, "cached": True})
    except (OSError, ValueError, KeyError, TypeError):  # missing, damaged or another machine's: probe again
        return None


def measure_forward_rate(config: FidConfig, device: str = "auto", *, batches: int = 0) -> ForwardRate:
    """Time the Inception forward pass on random 299x299 images through the build's extraction path.

    One warm-up batch per lane is not timed (first-call allocations); then ``batches`` batches (default: two per
    lane) are. The rate is stored in the data home for :func:`cached_forward_rate`; a failed write only costs the
    cache. Raises what :func:`engine.fid.features.load_inception` raises when the weights are missing or bad.
    """
    # torch (and engine.device, which imports it) load here, not at module top: `reference build --help` and the
    # cost of a build without weights must not pay torch's import time.
    import torch

    from engine.device import resolve_device

    dev = resolve_device(device)
    extractor = load_inception(config, dev)
    bs = config.batch_for(dev.type)  # the batch the build will run: the rate depends on it
    lanes = forward_lanes(extractor, 0, bs)
    batches = batches or 2 * lanes
    gen = np.random.default_rng(0)
    images = [gen.integers(0, 256, (299, 299, 3), dtype=np.uint8) for _ in range(bs)]

    def run(n_batches: int) -> float:
        items = [images[i % bs] for i in range(n_batches * bs)]
        start = time.perf_counter()
        for _ in iter_feature_batches(items, lambda a: a, extractor, batch_size=bs, lanes=lanes):
            pass
        return time.perf_counter() - start

    run(lanes)
    elapsed = run(batches)
    rate = ForwardRate(images_per_s=batches * bs / elapsed, device=str(dev), cpu=_cpu_name(),
                       threads=torch.get_num_threads(), batch_size=bs, measured_at=time.time())
    _store(rate, config.dims)
    return rate


def _store(rate: ForwardRate, dims: int) -> None:
    path = cache_dir() / _RATE_FILE
    try:
        try:
            table = json.loads(path.read_text())
            table = table if isinstance(table, dict) else {}
        except (OSError, ValueError):
            table = {}
        key = _rate_key(rate.device, rate.cpu, rate.threads, dims, rate.batch_size)
        table[key] = rate.model_dump(exclude={"cached"})
        os.makedirs(path.parent, exist_ok=True)
        atomic_write_bytes(path, json.dumps(table, indent=1, sort_keys=True).encode())
    except OSError as exc:  # a cache: losing it costs a probe next time, never this answer
        logger.warning("could not save the measured FID rate to %s (%s)", path, exc)


def build_cost(images: int, *, in21k: bool, shards: int | None = None, rate: ForwardRate | None = None) -> BuildCost:
    """The cost of a build of ``images`` images (``in21k``: the Hub's ImageNet-22k shards, whose card is known)."""
    n_shards = shards or (math.ceil(images / IMAGES_PER_SHARD) if in21k else None)
    if in21k and n_shards is not None:
        # Shards are read whole, then sampled: the download is the shards', not the images'.
        per_shard = IN21K_IMAGES / IN21K_SHARDS
        download: int | None = round(n_shards * per_shard * ASSUMED_BYTES_PER_IMAGE)
        basis = (f"{n_shards} whole shards x {per_shard:,.0f} images x an assumed {ASSUMED_BYTES_PER_IMAGE // 1000} KB "
                 "per image, from the dataset cards (README)")
    else:
        download, basis = None, "not known before the source is listed (folders: nothing to download)"
    seconds = images / rate.images_per_s if rate is not None else None
    return BuildCost(images=images, shards=n_shards, download_bytes=download, download_basis=basis, seconds=seconds,
                     rate=rate, passes_gate=images >= MIN_REFERENCE_IMAGES)
