"""Trials per hour of a VPT lr x wd grid: sequential trials vs one batched-VPT unit, side by side.

Run: ``.venv/bin/python -m benchmarks.perf.vtab_sweep [--configs 40] [--repeats 3] [--device cpu]``.

Both arms go through the production trial path (``benchmarks.vtab.trials.run_trials``) on one
generated VTAB-1k-shaped task: ``sequential`` runs each of the K grid configurations as its own trial
(``engine="fit"``: build the VPT model, ``engine.train.loop.fit`` with per-epoch validation), ``batched``
runs all K as one unit (``engine="batched"``: ``engine.train.batched_vpt``). Decoded images and the
pristine backbone are cached per process in both arms (warmed first), so the comparison is about
training. Prints the CPU first, then medians over ``--repeats`` and the ratio measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.perf.cpuinfo import cpu_line
from benchmarks.vtab.protocol import VPT_LRS, WEIGHT_DECAYS, get_protocol
from benchmarks.vtab.tasks import TASKS
from benchmarks.vtab.trials import TrialConfig, run_trials
from engine.config.train import BackboneSpec

# torch is imported inside the functions that use it: importing this module does not load it.

MODEL = "vit_tiny_patch16_224"
MODEL_ARGS = {"patch_size": 8, "depth": 4, "embed_dim": 64, "num_heads": 2}


def _make_task(root: Path, n_train: int, n_val: int, size: int) -> None:
    gen = np.random.default_rng(0)
    folder = root / TASKS["dtd"].folder
    for split, n in (("train800", n_train), ("val200", n_val), ("test", n_val), ("train800val200", n_train + n_val)):
        lines = []
        for i in range(n):
            label = i % 4
            arr = np.clip(gen.normal(60 * label + 40, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            rel = f"images/{split}/{i:06d}.png"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(folder / rel)
            lines.append(f"{rel} {label}")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")


def _configs(root: Path, k: int, *, engine: str, epochs: int, batch: int, size: int) -> list[TrialConfig]:
    grid = [(lr, wd) for lr in VPT_LRS for wd in WEIGHT_DECAYS][:k]
    protocol = get_protocol("paper", epochs=epochs, warmup_epochs=1, img_size=size, vpt_batch_size=batch)
    return [TrialConfig(root=str(root), task="dtd", folder=TASKS["dtd"].folder, num_classes=47, protocol="bench",
                        phase="search",
                        train=protocol.trial_train("vpt", lr=lr, weight_decay=wd, seed=42, num_prompts=10),
                        backbone=BackboneSpec(model=MODEL, random_init=True, model_kwargs=MODEL_ARGS),
                        engine=engine)
            for lr, wd in grid]


def main(argv: list[str] | None = None) -> None:
    """Measure and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=40, help="Grid points (paper VPT grid: 40).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train", type=int, default=64, help="Training images (steps = train/batch x epochs).")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default).")
    args = parser.parse_args(argv)
    MODEL_ARGS.update(depth=args.depth, embed_dim=args.dim)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="vtab-sweep-bench-"))
    _make_task(tmp, args.train, max(4, args.train // 4), args.size)
    seq = _configs(tmp, args.configs, engine="fit", epochs=args.epochs, batch=args.batch, size=args.size)
    bat = _configs(tmp, args.configs, engine="batched", epochs=args.epochs, batch=args.batch, size=args.size)
    run_trials(seq[:1], args.device)  # warm the image and backbone caches and the kernels
    run_trials(bat[:2], args.device)
    times: dict[str, list[float]] = {"sequential": [], "batched": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for cfg in seq:
            run_trials([cfg], args.device)
        times["sequential"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_trials(bat, args.device)
        times["batched"].append(time.perf_counter() - t0)
    steps = -(-args.train // args.batch) * args.epochs
    print(cpu_line())
    print(f"VPT grid of {args.configs} configs, {steps} steps each (batch {args.batch}, {args.size}px, "
          f"{MODEL} {MODEL_ARGS}), device {args.device}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats}")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, secs in med.items():
        print(f"  {name:<10} {secs:8.2f} s per grid   {args.configs * 3600 / secs:10.0f} trials/hour   "
              f"(runs: {', '.join(f'{t:.2f}' for t in times[name])})")
    print(f"  speedup batched vs sequential: {med['sequential'] / med['batched']:.2f}x (target >= 5x)")


if __name__ == "__main__":
    main()
