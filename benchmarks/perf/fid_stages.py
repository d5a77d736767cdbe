"""Where the time of a cold ``vpt-advisor fid A B`` goes, stage by stage, and the fp32 limit of this CPU.

Each stage is timed alone on the same images and weights as :mod:`benchmarks.perf.fid_speed` (which calls
:func:`measure_stages` after its side-by-side runs):

* process start, imports and exit: a fresh interpreter importing what ``fid`` imports before it reads an image
  (the CLI, the FID engine and its network, torch), then exiting as the console script does;
* model load: :func:`engine.fid.features.load_inception` (read the weights, build, fold BatchNorm);
* decode and resize: every image decoded and brought to the network's input (the preprocessing ``fid``
  chooses) on the decode thread pool, without the network; also for photo-sized JPEGs (500x375, resized
  to 299 with PIL bicubic) so the rate is not flattered by tiny images;
* forward: the network alone on the decoded arrays, as the pipeline runs it (side-by-side passes,
  :func:`engine.fid.features.iter_feature_batches`);
* statistics: the Fréchet distance from the two feature sets.

The fp32 limit is the best measured GEMM rate divided by 11.4 GFLOP per image (Inception-v3 at 299x299:
about 5.7 G multiply-adds; ``torch.utils.flop_counter`` counts 11.42 for pytorch-fid's network); the share is
forward rate / limit. The GEMM is timed three ways and the fastest counts, each run as the network runs (one
torch thread per core, side by side): a 2048x2048 ``torch.mm`` (torch's BLAS, MKL) and two GEMM-bound
convolutions in channels-last float32 with shapes of the network's own layers (oneDNN, the library its
convolutions run in): a 1x1 768->192 at 17x17 (Mixed_6) and a 3x3 448->384 at 8x8 (Mixed_7), batch 16. On AMD
CPUs MKL takes an AVX2 path (here about 105 GFLOP/s per core) while oneDNN uses AVX-512 (about 240), so a
``torch.mm`` rate alone is not the CPU's limit. Decoding must outpace the forward pass by at least
``DECODE_TARGET`` (issue 22), so that on a GPU the network, not decoding, is the limit.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.fid.features import FeatureExtractor

__all__ = ["Stages", "measure_stages", "gemm_gflops", "batch_sweep", "INCEPTION_GFLOP", "DECODE_TARGET"]

INCEPTION_GFLOP = 11.4
"""fp32 FLOP per 299x299 image through Inception-v3 (about 5.7e9 multiply-adds, 2 FLOP each)."""
DECODE_TARGET = 3.0

_IMPORTS = "import advisor.cli, engine.fid.run, engine.fid.features, engine.fid.inception, torch, gc; gc.freeze()"
"""What ``fid`` imports before it reads an image, then the exit the console script makes (:func:`advisor.cli.entry`)."""


@dataclass
class Stages:
    """Seconds per stage for ``n`` images, and the rates derived from them."""

    n: int
    start_imports_s: float
    load_s: float
    decode_s: float
    forward_s: float
    statistics_s: float
    photo_decode_rate: float
    gemm: dict[str, float]
    batch: int
    sweep: dict[int, float] | None = None

    @property
    def gemm_gflops(self) -> float:
        return max(self.gemm.values())

    @property
    def forward_rate(self) -> float:
        return self.n / self.forward_s

    @property
    def decode_rate(self) -> float:
        return self.n / self.decode_s

    @property
    def limit_rate(self) -> float:
        return self.gemm_gflops / INCEPTION_GFLOP

    def lines(self, cold_wall: float) -> list[str]:
        """The printed table: one line per stage, then the rates against the fp32 limit."""
        rows = [("process start/imports/exit", self.start_imports_s), ("model load", self.load_s),
                ("decode and resize (alone)", self.decode_s), ("forward (alone)", self.forward_s),
                ("statistics (Frechet)", self.statistics_s)]
        out = [f"where the cold time goes ({self.n} images; each stage timed alone):"]
        out += [f"  {name:<28}{sec:>8.2f} s{100 * sec / cold_wall:>7.1f} % of cold wall" for name, sec in rows]
        serial = sum(sec for _, sec in rows)
        out.append(f"  {'sum of stages':<28}{serial:>8.2f} s  (cold wall {cold_wall:.2f} s; decoding overlaps the "
                   "forward pass)")
        gemm = ", ".join(f"{k} {v:.1f}" for k, v in self.gemm.items())
        out.append(f"forward {self.forward_rate:.2f} img/s at batch {self.batch}; fp32 limit of this CPU "
                   f"{self.limit_rate:.2f} img/s (best GEMM {self.gemm_gflops:.1f} GFLOP/s [{gemm}] / "
                   f"{INCEPTION_GFLOP} GFLOP per image): {100 * self.forward_rate / self.limit_rate:.0f} % of the "
                   "limit")
        ratio, photo = self.decode_rate / self.forward_rate, self.photo_decode_rate / self.forward_rate
        out.append(f"decode-only {self.decode_rate:.1f} img/s = {ratio:.1f}x the forward rate; 500x375 JPEG photos "
                   f"resized to 299: {self.photo_decode_rate:.1f} img/s = {photo:.1f}x (target >= {DECODE_TARGET}x)")
        if self.sweep:
            base = self.sweep.get(50) or next(iter(self.sweep.values()))
            out.append("forward img/s by batch size (same images, same lanes; ratio to batch 50): " + ", ".join(
                f"{bs}: {r:.1f} ({r / base:.2f}x)" for bs, r in self.sweep.items()))
        return out


def gemm_gflops(size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best fp32 GFLOP/s per kernel: ``mm`` (a ``size``-cubed ``torch.mm``), ``conv1x1`` and ``conv3x3`` (oneDNN
    convolutions shaped like the network's Mixed_6 and Mixed_7 layers, batch 16). Each is timed as the network
    runs, one call per core side by side on one thread each. The best of ``repeats`` rather than the median: on a
    shared machine the limit is what the CPU can do, not what it did while other jobs ran."""
    import torch
    import torch.nn.functional as F

    def conv(n: int, c: int, hw: int, o: int, k: int) -> tuple[Callable[[], object], float]:
        x = torch.randn(n, c, hw, hw).contiguous(memory_format=torch.channels_last)
        w = torch.randn(o, c, k, k).contiguous(memory_format=torch.channels_last)
        return (lambda: F.conv2d(x, w, padding=k // 2)), 2.0 * n * hw * hw * o * c * k * k

    a, b = torch.randn(size, size), torch.randn(size, size)
    kernels = {"mm": ((lambda: a @ b), 2.0 * size**3), "conv1x1": conv(16, 768, 17, 192, 1),
               "conv3x3": conv(16, 448, 8, 384, 3)}
    lanes = torch.get_num_threads()
    out: dict[str, float] = {}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=lanes) as pool, torch.inference_mode():
            for name, (fn, flop) in kernels.items():
                t0 = time.perf_counter()
                fn()  # warm-up (first-call allocations, weight reorders) and a first timing
                calls = max(1, round(0.2 / (time.perf_counter() - t0)))  # ~0.2 s per lane: pool start-up is noise

                def lane(_: int, f: Callable[[], object] = fn, k: int = calls) -> None:
                    for _ in range(k):
                        f()

                best = 0.0
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    list(pool.map(lane, range(lanes)))
                    best = max(best, lanes * calls * flop / (time.perf_counter() - t0) / 1e9)
                out[name] = best
    finally:
        torch.set_num_threads(before)
    return out


def batch_sweep(net: FeatureExtractor, arrays: list[np.ndarray], sizes: tuple[int, ...]) -> dict[int, float]:
    """Steady forward images/s of the pipeline (:func:`engine.fid.features.iter_feature_batches`, its lanes) at
    each batch size, on the same decoded images after one untimed warm-up batch per lane. Each size runs a whole
    number of rounds (lanes x batch images each, about ``len(arrays)`` in all, the images reused in turn), so no
    size is charged for a last round that leaves a lane idle."""
    from engine.fid.features import forward_lanes, iter_feature_batches

    rates = {}
    for bs in sizes:
        lanes = forward_lanes(net, 0, bs)
        n = lanes * bs * max(1, round(len(arrays) / (lanes * bs)))
        items = [arrays[i % len(arrays)] for i in range(n)]
        for _ in iter_feature_batches(items[: lanes * bs], lambda a: a, net, batch_size=bs):  # warm-up
            pass
        t0 = time.perf_counter()
        for _ in iter_feature_batches(items, lambda a: a, net, batch_size=bs):
            pass
        rates[bs] = n / (time.perf_counter() - t0)
    return rates


def _photos(root: Path, n: int) -> list[Path]:
    from PIL import Image

    gen = np.random.default_rng(7)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        low = Image.fromarray((gen.random((8, 6, 3)) * 255).astype(np.uint8)).resize((500, 375))
        arr = np.clip(np.asarray(low, np.int16) + gen.integers(-20, 21, (375, 500, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / f"{i:04d}.jpg", quality=90)
        out.append(root / f"{i:04d}.jpg")
    return out


def _decode_all(paths: list[Path], preprocessing: str) -> tuple[float, list[np.ndarray]]:
    """Seconds to decode and preprocess ``paths`` on the pipeline's decode pool (no network)."""
    from engine.data.imageio import open_rgb, resolve_workers
    from engine.fid.features import to_model_array

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=resolve_workers(0)) as pool:
        arrays = list(pool.map(lambda p: to_model_array(open_rgb(p), preprocessing), paths))
    return time.perf_counter() - t0, arrays


def measure_stages(folders: list[Path], weights: Path, work: Path, env: dict[str, str],
                   sweep: tuple[int, ...] = ()) -> Stages:
    """Time every stage of a cold ``fid`` over the images of ``folders`` (see the module docstring); with
    ``sweep``, also the forward rate at each of those batch sizes."""
    import torch

    import engine.fid.inception  # noqa: F401 - imported before the model-load stage: the imports stage counts it
    from engine.config.fid import FidConfig
    from engine.fid.features import iter_feature_batches, load_inception
    from engine.fid.frechet import frechet_distance_from_features

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", _IMPORTS], env=env, check=True)
    start_imports = time.perf_counter() - t0
    config = FidConfig(weights=weights, use_cache=False).for_device("cpu")
    t0 = time.perf_counter()
    net = load_inception(config, torch.device("cpu"))
    load = time.perf_counter() - t0
    paths = [sorted(f.glob("*.jpg")) for f in folders]
    decode, arrays = 0.0, []
    for group in paths:  # each folder has one image size: pytorch-fid preprocessing, as fid chooses
        sec, arrs = _decode_all(group, "pytorch-fid")
        decode += sec
        arrays.append(arrs)
    photo_s, _ = _decode_all(_photos(work / "photos", 40), "pil-bicubic-299")
    feats, t0 = [], time.perf_counter()
    for arrs in arrays:
        feats.append(np.concatenate([f for _, f, _ in iter_feature_batches(
            arrs, lambda a: a, net, batch_size=config.batch_for("cpu"))]))
    forward = time.perf_counter() - t0
    t0 = time.perf_counter()
    frechet_distance_from_features(feats[0], feats[1])
    stats_s = time.perf_counter() - t0
    return Stages(n=sum(len(p) for p in paths), start_imports_s=start_imports, load_s=load, decode_s=decode,
                  forward_s=forward, statistics_s=stats_s, photo_decode_rate=40 / photo_s, gemm=gemm_gflops(),
                  batch=config.batch_for("cpu"),
                  sweep=batch_sweep(net, arrays[0] + arrays[1], sweep) if sweep else None)
