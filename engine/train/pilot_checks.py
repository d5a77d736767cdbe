"""Checks around a pilot: refuse a plan that cannot work before anything loads, and refuse to turn a
pilot whose every trial diverged into advice.

A pilot compares validation accuracies, so it needs two classes, validation images (one image per
class leaves none: every class keeps one for training), and a backbone
:class:`engine.train.vpt.PromptedViT` can prompt at the requested size. All of this is known from the
index and the config, so it is checked before weights load or images decode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.config.train import PilotConfig
from engine.data.index import DatasetIndex, train_val_split
from engine.errors import ConfigError, RunFailedError
from engine.train.models import check_backbone_request, check_weights_file

if TYPE_CHECKING:
    from engine.train.pilot_summary import TrialResult

__all__ = ["check_pilot_data", "check_some_converged"]


def check_pilot_data(index: DatasetIndex, config: PilotConfig | None = None) -> None:
    """Refuse a pilot that cannot work, before any weights are loaded or any image is decoded.

    Checks that ``index`` is labeled with at least two classes and, with ``config``, that the
    train/validation split leaves validation images (one image per class leaves none: every class
    keeps one for training) and that the backbone can be prompted at the requested image size
    (:func:`engine.train.models.check_backbone_request`).

    Raises:
        ConfigError: one of the above, with what to do.
    """
    if not index.labeled:
        raise ConfigError(f"the pilot needs labeled images (an ImageFolder, or a list/CSV file with labels); "
                          f"{index.root} has none")
    if index.num_classes < 2:
        raise ConfigError(f"the pilot needs at least 2 classes, found {index.num_classes} in {index.root}")
    if config is None:
        return
    present = len({s.label for s in index.samples})
    if present < 2:
        raise ConfigError(f"the pilot needs images of at least 2 classes; every usable image in {index.root} has "
                          "the same label")
    _, val = train_val_split(index.samples, val_fraction=config.val_fraction, seed=config.split_seed)
    if not val:
        raise ConfigError(
            f"the pilot needs validation images, but {index.root} has {len(index.samples)} usable images for "
            f"{present} classes and every class keeps one for training; add images (at least 2 in some class)")
    backbone = config.backbone
    check_backbone_request(backbone.model, img_size=config.img_size, model_kwargs=dict(backbone.model_kwargs))
    if backbone.weights is not None:
        check_weights_file(backbone.weights)


def check_some_converged(results: list[TrialResult]) -> None:
    """Raise when every trial diverged: their 0% accuracies must never become advice."""
    if not results or not all(r.fit.diverged for r in results):
        return
    methods = ", ".join(dict.fromkeys(r.spec.method for r in results))
    raise RunFailedError(
        f"{len(results)} pilot trials failed: the loss became NaN/inf in every one ({methods}); check that the "
        "weights are finite and the images are valid, or lower the learning rates (finished trials are kept)")
