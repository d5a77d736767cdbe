"""Seeding: one value seeds ``random``, NumPy, torch and CUDA alike.

The original VPT code seeded ``random`` with a constant regardless of the run's seed; here every
generator gets the same run seed and a ``torch.Generator`` is returned for explicit use.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int, *, deterministic: bool = False) -> torch.Generator:
    """Seed every global generator with ``seed`` and return a fresh CPU ``torch.Generator``.

    Args:
        seed: the run seed.
        deterministic: also switch on ``torch.use_deterministic_algorithms`` (tests use it).

    Returns:
        A generator seeded with ``seed``, for DataLoaders and subset draws.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen
