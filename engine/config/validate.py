"""Validators for values typed on the command line: one function per kind of value, used where it enters.

Each raises :class:`engine.errors.ConfigError` with one line naming the flag, the value and what to do,
so the CLI prints ``Error: ...`` and exits 1. They live in the engine because both the advisor's use
cases and ``benchmarks.vtab`` build requests from flags (and benchmarks may not import the advisor).
Files and data are validated next to their readers (list files in :mod:`engine.data.index`, weights
in :mod:`engine.train.models`, calibration files in :mod:`engine.fid.calibration`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from engine.config.train import MAX_IMG_SIZE
from engine.errors import ConfigError

__all__ = ["MIN_TRAIN_SIZE", "parse_model_args", "parse_sizes", "split_list", "check_output_dir", "check_img_size"]

MIN_TRAIN_SIZE = 4
"""Smallest training-set size a trial accepts (``benchmarks.vtab.trials.TrialConfig.n_train``: with the
paper's 4:1 train:val ratio, fewer images leave no validation image)."""

ModelArg = int | float | bool | str


def split_list(values: list[str] | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (repeatable, comma-separated flags)."""
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]


def parse_model_args(items: list[str] | None) -> dict[str, ModelArg]:
    """``["depth=2", "embed_dim=32"]`` -> ``{"depth": 2, "embed_dim": 32}`` (ints, floats, booleans, strings).

    Raises:
        ConfigError: an item is not ``KEY=VALUE``, a key repeats, or a number is not finite.
    """
    out: dict[str, ModelArg] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not key.isidentifier():
            raise ConfigError(f"--model-arg {item!r} must be KEY=VALUE with a Python name as KEY, e.g. depth=2")
        if key in out:
            raise ConfigError(f"--model-arg {key} is given twice; keep one")
        out[key] = _model_arg_value(key, raw.strip())
    return out


def _model_arg_value(key: str, raw: str) -> ModelArg:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        number = float(raw)
    except ValueError:
        return raw
    if not math.isfinite(number):
        raise ConfigError(f"--model-arg {key}={raw} is not a finite number")
    return number


def parse_sizes(values: list[str] | None, default: tuple[int, ...] = (800,)) -> tuple[int, ...]:
    """``--sizes 400,800`` -> ``(400, 800)``: positive integers of at least :data:`MIN_TRAIN_SIZE`, no repeats.

    Raises:
        ConfigError: a value is not an integer or is too small.
    """
    raw = split_list(values)
    sizes: list[int] = []
    for text in raw:
        try:
            n = int(text)
        except ValueError:
            raise ConfigError(f"--sizes takes training-set sizes such as 400,800,5000; {text!r} is not an integer") \
                from None
        if n < MIN_TRAIN_SIZE:
            raise ConfigError(f"--sizes {n} is too small; a training set needs at least {MIN_TRAIN_SIZE} images")
        sizes.append(n)
    return tuple(dict.fromkeys(sizes)) or default


def check_output_dir(flag: str, path: Path | None) -> None:
    """A folder that results will be written into (``--out``): refused up front when it cannot be one.

    Raises:
        ConfigError: ``path`` exists and is not a folder, or lies under a file.
    """
    if path is None:
        return
    p = Path(path).expanduser()
    for part in (p, *p.parents):
        if part.exists():
            if not part.is_dir():
                what = "is" if part == p else f"lies under {part}, which is"
                raise ConfigError(f"{flag} {path} {what} a file, not a folder; pass a folder to write into")
            if not os.access(part, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag} {path}: {part} is not writable; pass a folder you can write to")
            return


def check_img_size(img_size: int, patch: int | None = None) -> None:
    """Refuse an ``--img-size`` that would exhaust memory or is smaller than one patch.

    Raises:
        ConfigError: ``img_size`` above :data:`~engine.config.train.MAX_IMG_SIZE` or below ``patch``.
    """
    if img_size > MAX_IMG_SIZE:
        raise ConfigError(f"--img-size {img_size} is larger than {MAX_IMG_SIZE}: the sequence grows with its square "
                          "and would exhaust memory; the paper uses 224")
    if patch is not None and img_size < patch:
        raise ConfigError(f"--img-size {img_size} is smaller than the model's {patch}-pixel patches; "
                          f"use at least {patch} (the paper uses 224)")
