"""Random-init Inception weights in pytorch-fid's real file format, for tests and benchmarks only.

pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` is a ``torch.save``d state dict of
torchvision's Inception3 (1008 classes, no aux head) with pytorch-fid's patched FID blocks. We
build that same architecture with random (seeded) parameters and non-trivial BatchNorm statistics,
save its state dict under the real file name, and place it in ``$TORCH_HOME/hub/checkpoints``,
where pytorch-fid's ``load_state_dict_from_url`` and our loader look. The numbers it gives are
not meaningful FIDs; they exercise the real loading and inference code.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

# pytorch_fid, torch are imported inside the functions that use them: importing this module does not load them.

__all__ = ["FILENAME", "build_random_fid_inception_state", "write_random_inception", "install_inception_weights",
           "torch_hub_checkpoints"]

FILENAME = "pt_inception-2015-12-05-6726825d.pth"
"""The file name pytorch-fid downloads its FID Inception weights to (pytorch_fid.inception.FID_WEIGHTS_URL)."""


def build_random_fid_inception_state(seed: int = 0) -> dict[str, Any]:
    """State dict of pytorch-fid's FID Inception architecture with random parameters."""
    import pytorch_fid.inception as pfi
    import torch

    torch.manual_seed(seed)
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    gen = torch.Generator().manual_seed(seed)
    # Data-dependent BatchNorm statistics: with default statistics a deep random network maps every
    # image to almost the same features. One train-mode pass over smooth random images sets each
    # running mean/var to that channel's actual statistics, so features keep varying with the input.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    low = torch.rand((12, 3, 8, 8), generator=gen)
    calib = torch.nn.functional.interpolate(low, size=(299, 299), mode="bilinear", align_corners=False)
    net.train()
    with torch.no_grad():
        net(2 * calib - 1)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 0.1
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
    net.eval()
    return net.state_dict()


def write_random_inception(path: Path, seed: int = 0) -> Path:
    """Save random FID-Inception weights to ``path`` (a plain ``torch.save`` of the state dict)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_random_fid_inception_state(seed), path)
    return path


def torch_hub_checkpoints() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch.hub's rule, read from the environment now)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(home).expanduser() / "hub" / "checkpoints"


def install_inception_weights(source: Path) -> Path:
    """Place ``source`` as the cached pytorch-fid weights file (hard link when possible, else copy)."""
    target = torch_hub_checkpoints() / FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


if __name__ == "__main__":  # pragma: no cover - manual use: python -m benchmarks.perf.random_inception
    print(install_inception_weights(write_random_inception(Path("/tmp") / FILENAME)))
