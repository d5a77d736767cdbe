"""Is the backbone's pretrained checkpoint within reach? Answered in about a second, before torch is imported.

A pilot or a VTAB-1k sweep that cannot get its weights should say so before it imports torch (seconds), builds a
ViT-B (seconds more) or schedules a trial. This check looks only at files and, at most, one short connection:

* ``--random-init``: nothing to load.
* ``--weights PATH``: the file must exist.
* a timm hub name: timm keeps its pretrained ViTs on the Hugging Face Hub as ``timm/<name>``, so a copy in the Hub
  cache (``models--timm--<name>``) or any checkpoint in torch's hub folder (URL-only weights) leaves the answer to
  the real loader. With neither, downloads switched off (``HF_HUB_OFFLINE``...) or the Hub not answering within
  ``PROBE_TIMEOUT_S`` means the load cannot succeed, and the error says what to do, ``--random-init`` included.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import WeightsNotFoundError

__all__ = ["PROBE_TIMEOUT_S", "check_backbone_available", "hub_cache_dir"]

PROBE_TIMEOUT_S = 1.0
"""One TCP connection attempt to the Hub; a reachable host answers in well under a second."""

_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".npz", ".safetensors")


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache, read from the environment as huggingface_hub does (HF_HUB_CACHE > HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _maybe_cached(model: str) -> bool:
    """True when some local copy might hold ``model``'s weights (then only the real loader can tell)."""
    hub = hub_cache_dir()
    pattern = f"models--timm--{model}" if "." in model else f"models--timm--{model}.*"  # untagged: any tag
    if hub.is_dir() and any(hub.glob(pattern)):
        return True
    from engine.fid.features import _torch_hub_dir

    checkpoints = _torch_hub_dir() / "checkpoints"
    return checkpoints.is_dir() and any(p.suffix in _CHECKPOINT_SUFFIXES for p in checkpoints.iterdir())


def check_backbone_available(model: str, *, weights: Path | None = None, random_init: bool = False) -> None:
    """Raise when ``model``'s weights certainly cannot be loaded (see the module docstring); else return.

    Raises:
        WeightsNotFoundError: ``weights`` does not exist, or the hub weights are neither cached nor downloadable.
    """
    smoke = "; for a smoke test of the pipeline without weights, add --random-init (its results are meaningless)"
    if random_init:
        return
    if weights is not None:
        if not Path(weights).expanduser().is_file():
            raise WeightsNotFoundError(f"weights file {weights} does not exist or is not a file; check --weights"
                                       f"{smoke}")
        return
    if _maybe_cached(model):
        return
    from engine.fid.features import is_offline
    from engine.network import host_reachable

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if is_offline():
        why = "downloads are switched off by HF_HUB_OFFLINE or VPT_ADVISOR_OFFLINE"
    elif not host_reachable(endpoint, timeout=PROBE_TIMEOUT_S):
        why = f"{endpoint} did not answer within {PROBE_TIMEOUT_S:.0f} s"
    else:
        return
    raise WeightsNotFoundError(
        f"pretrained weights for {model!r} are not in the local cache and cannot be downloaded ({why}); run once "
        f"with internet, or pass --weights PATH to a local .npz/.safetensors/.pth{smoke}")
