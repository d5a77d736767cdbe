"""A generated VTAB-1k tree in the NOAH layout: all 19 task folders, a handful of tiny PNGs per split.

Image colour depends on the label, so the tiny models can learn something; ``train800val200`` holds
duplicated files as NOAH's export does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.vtab.tasks import TASKS
from engine.config.train import BackboneSpec
from tests.conftest import write_png

SPLITS = {"train800": 4, "val200": 2, "test": 4}
TINY_MODEL_ARGS = {"patch_size": 8, "depth": 1, "embed_dim": 16, "num_heads": 2}
TINY_MODEL = "vit_tiny_patch16_224"
TINY_BACKBONE = BackboneSpec(model=TINY_MODEL, random_init=True, model_kwargs=TINY_MODEL_ARGS)
"""A random one-block ViT for plumbing tests (results meaningless)."""
IMG_SIZE = 16


def make_vtab_tree(root: Path, *, size: int = 16, tasks: list[str] | None = None,
                   per_split: dict[str, int] | None = None) -> Path:
    """Write ``root/<folder>/images/<split>/*.png`` and the four list files for each task."""
    gen = np.random.default_rng(0)
    counts = per_split or SPLITS
    for key, task in TASKS.items():
        if tasks is not None and key not in tasks:
            continue
        folder = root / task.folder
        lines: dict[str, list[str]] = {}
        n_labels = min(task.num_classes, 2)
        for split, n in counts.items():
            lines[split] = []
            for i in range(n):
                label = i % n_labels
                base = np.full((size, size, 3), 40 + 160 * label, dtype=np.int16)
                img = np.clip(base + gen.integers(-30, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                rel = f"images/{split}/{i:06d}.png"
                write_png(folder / rel, img)
                lines[split].append(f"{rel} {label}")
        trval = []
        for split in ("train800", "val200"):
            for j, line in enumerate(lines[split]):
                rel, label = line.split()
                src = folder / rel
                dst_rel = f"images/train800val200/{split}_{j:06d}.png"
                (folder / dst_rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / dst_rel).write_bytes(src.read_bytes())
                trval.append(f"{dst_rel} {label}")
        lines["train800val200"] = trval
        for split, entries in lines.items():
            (folder / f"{split}.txt").write_text("\n".join(entries) + "\n", encoding="utf-8")
    return root
