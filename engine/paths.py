"""Where vpt-advisor keeps its per-user data: reference statistics, feature caches, demo data.

``VPT_ADVISOR_HOME`` overrides the location (tests point it at a temporary folder). Otherwise
``$XDG_DATA_HOME/vpt-advisor`` (``~/.local/share/vpt-advisor``) is used, as other Linux tools do.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_home", "references_dir", "cache_dir", "demo_dir"]

ENV_HOME = "VPT_ADVISOR_HOME"


def data_home() -> Path:
    """Return the per-user data directory (not created)."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "vpt-advisor"


def references_dir() -> Path:
    """Directory holding named reference statistics (``<name>.npz`` + ``<name>.json``)."""
    return data_home() / "references"


def cache_dir() -> Path:
    """Directory holding content-keyed feature caches."""
    return data_home() / "cache"


def demo_dir() -> Path:
    """Directory where the embedded demo dataset is generated."""
    return data_home() / "demo"
