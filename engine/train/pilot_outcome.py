"""What a finished pilot may claim and keep: its verdict, the FT+VPT ensemble, and the winner's weights.

* :func:`verdict_of` reads the comparison rows of FT and the VPT variant ``compare_methods`` paired
  (each at its selected lr, seeds in order) into :func:`engine.train.verdict.judge`.
* :func:`ensemble_of` feeds the same trials' stored per-image probabilities to
  :func:`engine.train.ensemble.ensemble_result`; trials from a store written before probabilities were
  kept make it unavailable (with the reason), never an error.
* With ``--save``, :class:`WeightKeeper` keeps each method's best trial so far (final selection accuracy)
  as safetensors in the store, and :func:`save_winner` copies the winner's file to the user's folder.
  A file holds the trainable tensors only (all weights for FT; prompts and head for VPT, whose backbone
  is the pretrained one) with the method, backbone, classes and data fingerprint in its metadata.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from engine.config import FrozenModel
from engine.train.ensemble import EnsembleResult, ensemble_result, unavailable
from engine.train.verdict import Verdict, judge

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from torch import nn

    from engine.config.train import PilotConfig
    from engine.train.pilot_plan import PilotPlan
    from engine.train.pilot_summary import MethodSummary, TrialResult
    from engine.train.power import PairedComparison

__all__ = ["verdict_of", "ensemble_of", "SavedWeights", "WeightKeeper", "save_winner", "WEIGHTS_FORMAT"]

logger = logging.getLogger(__name__)

WEIGHTS_FORMAT = "vpt-advisor pilot trainable weights v1"
"""``format`` metadata of a saved trial (safetensors metadata holds strings only)."""


def _runs(methods: list[MethodSummary], trials: list[TrialResult], method: str) -> list[TrialResult]:
    """The method's comparison-scored trials at its selected lr, by seed (what ``compare_methods`` pairs)."""
    best = next((m.best_lr for m in methods if m.method == method), None)
    return sorted((t for t in trials if t.spec.method == method and t.spec.lr == best and t.compare_correct
                   and not t.fit.diverged), key=lambda t: t.spec.seed)


def verdict_of(plan: PilotPlan, methods: list[MethodSummary], trials: list[TrialResult],
               paired: PairedComparison | None) -> Verdict:
    """The pilot's verdict on the pair ``compare_methods`` chose (``no-comparison`` without one)."""
    if paired is None:
        return judge(plan, None, None)
    ft, vpt = _runs(methods, trials, paired.ft_method), _runs(methods, trials, paired.vpt_method)
    return judge(plan, [t.compare_correct for t in ft], [t.compare_correct for t in vpt],
                 ft_method=paired.ft_method, vpt_method=paired.vpt_method)


def ensemble_of(plan: PilotPlan, methods: list[MethodSummary], trials: list[TrialResult],
                paired: PairedComparison | None, probs: dict[str, npt.NDArray[np.float32]],
                labels: npt.ArrayLike | None) -> EnsembleResult:
    """The FT+VPT ensemble of the paired methods' trials (unavailable when probabilities are missing)."""
    if paired is None or labels is None:
        return unavailable("the pilot has no paired FT-vs-VPT comparison on held-out images")
    ft, vpt = _runs(methods, trials, paired.ft_method), _runs(methods, trials, paired.vpt_method)
    missing = [t for t in ft + vpt if t.key not in probs]
    if missing:
        return unavailable(f"{len(missing)} trial(s) were stored by an earlier version of the pilot, without "
                           "per-image probabilities; rerun with a fresh --out to measure the ensemble")
    size = {m.method: (m.trainable_params, m.total_params) for m in methods}
    return ensemble_result([probs[t.key] for t in ft], [probs[t.key] for t in vpt], labels,
                           ft_method=paired.ft_method, vpt_method=paired.vpt_method,
                           ft_params=size.get(paired.ft_method, (0, 0)),
                           vpt_params=size.get(paired.vpt_method, (0, 0)), assumed_seed_sd=plan.assumed_seed_sd)


class SavedWeights(FrozenModel):
    """The winner's trainable weights written by ``pilot --save``."""

    path: str | None = Field(None, description="The safetensors file written (None: nothing could be saved).")
    method: str | None = None
    trial_key: str | None = None
    lr: float | None = None
    seed: int | None = None
    selection_acc: float | None = Field(None, description="Final selection accuracy (%) of the saved model.")
    tensors: int = 0
    reason: str = Field("", description="Why nothing was saved, when path is None.")


def _score(t: TrialResult) -> float:
    """The saved model is the final one, so it is ranked by its final selection accuracy."""
    return t.fit.val_accs[-1] if t.fit.val_accs else t.fit.final_val_acc


class WeightKeeper:
    """Keeps each method's best trial so far (``<store>/weights/<method>.safetensors``) during a run."""

    def __init__(self, store_dir: Path, metadata: dict[str, str]) -> None:
        self.dir = store_dir / "weights"
        self.metadata = metadata

    def path(self, method: str) -> Path:
        """Where ``method``'s best trial is kept."""
        return self.dir / f"{method}.safetensors"

    def _stored_score(self, method: str) -> float | None:
        from safetensors import safe_open

        path = self.path(method)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            return float(meta["selection_acc"])
        except (OSError, ValueError, KeyError, RuntimeError):
            return None

    def offer(self, trial: TrialResult, model: nn.Module) -> None:
        """Keep ``model`` when ``trial`` beats the method's kept trial (ties keep the earlier one)."""
        from safetensors.torch import save_file

        if trial.fit.diverged:
            return
        method = trial.spec.method
        stored = self._stored_score(method)
        if stored is not None and _score(trial) <= stored:
            return
        tensors = {n: p.detach().to("cpu").contiguous().clone() for n, p in model.named_parameters()
                   if p.requires_grad}
        meta = {**self.metadata, "method": method, "trial_key": trial.key, "lr": repr(trial.spec.lr),
                "seed": str(trial.spec.seed), "selection_acc": repr(_score(trial)),
                "compare_acc": repr(trial.compare_acc)}
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.path(method).with_suffix(".tmp")
            save_file(tensors, str(tmp), metadata=meta)
            tmp.replace(self.path(method))
        except OSError as exc:
            logger.warning("cannot keep the %s trial's weights in %s (%s)", method, self.dir, exc.strerror or exc)


def weights_metadata(config: PilotConfig, plan: PilotPlan, classes: list[str], data_key: str) -> dict[str, str]:
    """What a saved trial needs to be continued: backbone, input, classes and the data fingerprint."""
    bb = config.backbone
    source = "random-init" if bb.random_init else str(bb.weights) if bb.weights else "hub"
    return {"format": WEIGHTS_FORMAT, "backbone": bb.model, "backbone_weights": source,
            "model_kwargs": json.dumps(dict(bb.model_kwargs), sort_keys=True), "img_size": str(plan.img_size),
            "num_prompts": str(plan.num_prompts), "num_classes": str(plan.num_classes),
            "classes": json.dumps(classes), "data_fingerprint": data_key, "precision": plan.precision}


def save_winner(keeper: WeightKeeper, out_dir: Path, trials: list[TrialResult], method: str | None) -> SavedWeights:
    """Copy the kept trial of ``method`` to ``out_dir``; say why not when it is missing or not the best."""
    from safetensors import safe_open

    from engine.errors import StoreError

    if method is None:
        return SavedWeights(reason="no method finished a trial")
    mine = [t for t in trials if t.spec.method == method and not t.fit.diverged]
    src = keeper.path(method)
    if not mine or not src.is_file():
        return SavedWeights(method=method, reason=f"no {method} trial was trained by a run with --save (resumed "
                            "trials keep no weights); rerun with --save and a fresh --out")
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata() or {}
        count = len(list(f.keys()))
    best = max(mine, key=_score)
    if _score(best) > float(meta.get("selection_acc", "-inf")):
        return SavedWeights(method=method, reason=f"the best {method} trial ({best.spec.lr:g}, seed {best.spec.seed})"
                            " was trained by an earlier run without --save; rerun with --save and a fresh --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        dest = out_dir / f"pilot-{method}.safetensors"
        shutil.copyfile(src, dest)
    except OSError as exc:
        raise StoreError(f"cannot write the pilot's weights to {out_dir}: {exc.strerror or exc}; pass a writable "
                         "--save folder") from exc
    return SavedWeights(path=str(dest), method=method, trial_key=meta.get("trial_key"),
                        lr=float(meta["lr"]) if "lr" in meta else None,
                        seed=int(meta["seed"]) if "seed" in meta else None,
                        selection_acc=float(meta["selection_acc"]), tensors=count)
