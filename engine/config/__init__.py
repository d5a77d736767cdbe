"""Run configurations (pydantic, frozen, ``extra="forbid"`` so a typo fails loudly).

Each area keeps its configs in its own module (``engine.config.fid``, ``engine.config.train``);
they all derive from :class:`FrozenModel`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["FrozenModel"]


class FrozenModel(BaseModel):
    """Base for every run config and result model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")
