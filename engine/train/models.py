"""Pretrained ViT backbones through timm, with local weight files and a clear offline story.

The default backbone is ``vit_base_patch16_224.orig_in21k``: the original Google ImageNet-21k
ViT-B/16 weights that VPT (Jia et al., ECCV 2022) and the Elephant paper (Han et al., ICLR 2024)
used. The old name ``vit_base_patch16_224_in21k`` now maps to the *AugReg* weights, which differ.

Weights come from one of three places:

* ``weights=None``: timm's own hub download (Hugging Face, or the torch hub cache for URL-only
  weights). Offline without a cached copy this raises :class:`WeightsNotFoundError` at once; when
  the host does not answer one connection attempt within ``engine.network.REACHABILITY_TIMEOUT_S``
  the load runs as in offline mode (no minute of retries).
* ``weights=PATH`` to a Google ``.npz`` (``ViT-B_16.npz``): loaded through timm's
  ``model.load_pretrained`` (``_load_weights``), which understands the JAX key names and resamples
  the position embedding.
* ``weights=PATH`` to a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` state dict (``.pth`` is read
  with ``torch.load(weights_only=True)``): run through timm's ``checkpoint_filter_fn`` and loaded
  strictly, apart from the classification head.

A randomly initialised backbone makes every pilot result meaningless, so it is only built when
``random_init=True`` is asked for explicitly.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import re
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.config.train import DEFAULT_BACKBONE, BackboneSpec
from engine.config.validate import check_img_size
from engine.errors import ConfigError, UnknownNameError, WeightsError, WeightsNotFoundError
from engine.train.vpt import as_vit

# huggingface_hub, safetensors, timm are imported inside the functions that use them: importing this module
# does not load them.

__all__ = ["DEFAULT_BACKBONE", "WEIGHT_SUFFIXES", "check_backbone_request", "check_weights_file", "create_backbone",
           "create_backbone_from", "load_backbone_weights", "count_parameters"]

logger = logging.getLogger(__name__)


WEIGHT_SUFFIXES = (".npz", ".safetensors", ".pth", ".pt", ".bin")
"""Local weight formats :func:`create_backbone` reads."""

_STATE_DICT_WRAPPERS = ("state_dict_ema", "model_ema", "state_dict", "model")


def _vit_class() -> type[nn.Module]:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer


def _check_name(name: str) -> None:
    import timm

    base = name.split(".", 1)[0]
    if timm.is_model(name) or timm.is_model(base):
        return
    close = difflib.get_close_matches(base, timm.list_models("vit_*"), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models('vit_*')"
    raise UnknownNameError(f"unknown timm model {name!r}{hint}")


_PROMPTABLE_MODULES = ("timm.models.vision_transformer", "timm.models.deit")
"""timm modules whose models are ``VisionTransformer``s that :class:`engine.train.vpt.PromptedViT` can wrap."""


def check_backbone_request(name: str, *, img_size: int | None = None,
                           model_kwargs: dict[str, int | float | bool | str] | None = None) -> None:
    """Refuse a backbone the engine cannot prompt or build, before any weights are loaded.

    Checks the name against timm's registry, that it is a plain timm ViT (``resnet18`` is not),
    that ``img_size`` is at least one patch, and that timm accepts ``model_kwargs`` (the model is
    built on PyTorch's ``meta`` device: no memory, no weights, no download).

    Raises:
        UnknownNameError: timm does not know ``name``.
        ConfigError: not a ViT, an image smaller than a patch, or arguments timm rejects.
    """
    import timm
    from timm.models import model_entrypoint

    _check_name(name)
    base = name.split(".", 1)[0]
    module = model_entrypoint(base).__module__
    if module not in _PROMPTABLE_MODULES:
        raise ConfigError(f"{name!r} is not a timm Vision Transformer (it comes from {module}); VPT and the pilot "
                          f"prompt timm ViTs only, e.g. {DEFAULT_BACKBONE}")
    kwargs: dict[str, Any] = dict(model_kwargs or {})
    patch = kwargs.get("patch_size")
    if patch is None:
        match = re.search(r"patch(\d+)", base)
        patch = int(match.group(1)) if match else None
    if img_size is not None:
        check_img_size(img_size, patch if isinstance(patch, int) else None)
        kwargs["img_size"] = img_size
    try:
        with torch.device("meta"):
            timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError, KeyError) as exc:
        args = ", ".join(f"{k}={v}" for k, v in (model_kwargs or {}).items()) or "none"
        raise ConfigError(f"timm cannot build {name!r} with img_size={img_size} and --model-arg {args} "
                          f"({type(exc).__name__}: {exc}); fix or drop those arguments") from None


def _is_offline_error(exc: BaseException) -> bool:
    """True when ``exc`` (or its cause chain) is a missing-download error rather than a bug."""
    names = {
        "LocalEntryNotFoundError",
        "OfflineModeIsEnabled",
        "EntryNotFoundError",
        "RepositoryNotFoundError",
        "HfHubHTTPError",
        "ConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "MaxRetryError",
    }
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__name__ in names or isinstance(cur, (urllib.error.URLError, ConnectionError, TimeoutError)):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _hub_offline() -> bool:
    """True when the Hugging Face client is already in offline mode (``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


@contextlib.contextmanager
def _hub_offline_mode() -> Iterator[None]:
    """Run the Hugging Face client as with ``HF_HUB_OFFLINE=1`` (read per request from its constants module)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _offline_error(name: str) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"pretrained weights for {name!r} are not in the local cache and cannot be downloaded "
        "(offline); run once with internet, or pass --weights PATH to a local .npz/.safetensors/.pth"
    )


def _download_context(name: str) -> contextlib.AbstractContextManager[None]:
    """Offline mode when the weights' host does not answer one short connection attempt (else no change).

    Hub weights then load from the local cache or fail at once with the offline message; URL-only
    weights (torch hub cache) fail at once when the file is not cached.
    """
    import timm

    from engine.network import host_reachable

    if _hub_offline():
        return contextlib.nullcontext()
    cfg = timm.models.get_pretrained_cfg(name)
    hf_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    url = getattr(cfg, "url", None) if cfg is not None else None
    if hf_id or not url:
        from huggingface_hub import constants

        return contextlib.nullcontext() if host_reachable(constants.ENDPOINT) else _hub_offline_mode()
    if host_reachable(url):
        return contextlib.nullcontext()
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if not cached.is_file():
        raise _offline_error(name)
    return contextlib.nullcontext()


def create_backbone_from(spec: BackboneSpec, *, img_size: int | None = None) -> nn.Module:
    """:func:`create_backbone` for a :class:`~engine.config.train.BackboneSpec` (an ``img_size`` in its
    ``model_kwargs`` applies when ``img_size`` is not given)."""
    kwargs = dict(spec.model_kwargs)
    size = img_size or kwargs.pop("img_size", None)
    kwargs.pop("img_size", None)
    return create_backbone(spec.model, weights=spec.weights, random_init=spec.random_init, init_seed=spec.init_seed,
                           img_size=int(size) if size else None, **kwargs)


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    weights: Path | None = None,
    random_init: bool = False,
    img_size: int | None = None,
    init_seed: int = 0,
    **timm_kwargs: Any,
) -> nn.Module:
    """Build a timm ViT backbone with pretrained weights and no classification head.

    Args:
        name: any timm ViT name, with or without a pretrained tag (``arch.tag``).
        weights: a local ``.npz`` (Google/big_vision), ``.safetensors`` or ``.pth`` file; overrides
            the hub download.
        random_init: build with random weights (tests and smoke runs only; results are meaningless).
        img_size: input resolution (the position embedding is resampled when loading).
        init_seed: seed of the random weights (``random_init`` only): the same seed builds the same backbone.
        **timm_kwargs: extra ``timm.create_model`` arguments (e.g. ``depth`` for test models).

    Returns:
        A ``timm.models.vision_transformer.VisionTransformer`` with ``num_classes=0`` unless
        ``timm_kwargs`` sets it.

    Raises:
        UnknownNameError: ``name`` is not a timm model.
        ConfigError: both ``weights`` and ``random_init`` were given, or the model is not a ViT.
        WeightsNotFoundError: offline and the weights are not cached, or the file does not exist.
        WeightsError: the file exists but does not fit the model.
    """
    import timm

    _check_name(name)
    if weights is not None and random_init:
        raise ConfigError("--weights and --random-init contradict each other; give only one")
    kwargs: dict[str, Any] = {"num_classes": 0, **timm_kwargs}
    if img_size is not None:
        kwargs["img_size"] = img_size

    if random_init:
        logger.warning("building %s with RANDOM weights: results say nothing about pretrained transfer", name)
        import torch

        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's generator
            torch.manual_seed(init_seed)
            model = timm.create_model(name, pretrained=False, **kwargs)
    elif weights is not None:
        model = timm.create_model(name, pretrained=False, **kwargs)
        load_backbone_weights(model, Path(weights))
    else:
        model = _create_pretrained(name, kwargs)
    if not isinstance(model, _vit_class()):
        raise ConfigError(
            f"{name!r} builds a {type(model).__name__}, not a timm VisionTransformer; "
            "VPT and the pilot support timm ViTs (vit_*) only"
        )
    return model


def _create_pretrained(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model(name, pretrained=True)`` from the hub (or its cache), with download failures
    translated into one :class:`WeightsNotFoundError` that says what to do.

    Raises:
        WeightsNotFoundError: offline and the weights are not cached, or timm has no weights for ``name``.
    """
    import timm

    try:
        with _download_context(name):
            return timm.create_model(name, pretrained=True, **kwargs)
    except WeightsNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - translate download failures into one clear error
        if _is_offline_error(exc):
            raise _offline_error(name) from exc
        if isinstance(exc, RuntimeError) and "No pretrained weights" in str(exc):
            raise WeightsNotFoundError(
                f"timm has no pretrained weights for {name!r}; name a tagged model "
                f"(e.g. {DEFAULT_BACKBONE}) or pass --weights PATH"
            ) from exc
        raise


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unusable
        raise WeightsError(f"{path}: cannot read {suffix} weights ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, dict):
        for key in _STATE_DICT_WRAPPERS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors, found {type(obj).__name__}")
    # DataParallel / torch.compile prefixes
    for prefix in ("module.", "_orig_mod."):
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def check_weights_file(path: Path) -> Path:
    """The weights validator: an existing regular file with a known suffix (contents are checked on load).

    Raises:
        WeightsNotFoundError: ``path`` does not exist or is not a file.
        WeightsError: unknown suffix.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist or is not a file; check --weights")
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(f"{path}: unknown weights format {suffix!r}; use one of {', '.join(WEIGHT_SUFFIXES)}")
    return path


def load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Load a local weight file into a timm ViT in place (head excluded unless it fits).

    Raises:
        WeightsNotFoundError: ``path`` does not exist.
        WeightsError: unknown suffix, unreadable file, or tensors that do not fit the model.
    """
    path = check_weights_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            as_vit(model).load_pretrained(str(path))  # timm's _load_weights: JAX names, pos-embed resampling
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(
                f"{path}: not a Google ViT .npz that fits this model ({type(exc).__name__}: {exc})"
            ) from exc
        _check_finite(model, path)
        return
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = _read_state_dict(path)
    try:
        state = checkpoint_filter_fn(state, as_vit(model))
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"{path}: cannot convert weights for this model ({type(exc).__name__}: {exc})") from exc
    own = model.state_dict()
    head_keys = {k for k in own if k.startswith("head.")} | {k for k in state if k.startswith("head.")}
    for key in list(state):
        if key in head_keys and (key not in own or own[key].shape != state[key].shape):
            del state[key]  # a head for another class count is dropped, as timm does
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in state if k in own and state[k].shape != own[k].shape]
    if mismatched:
        raise WeightsError(f"{path}: shapes do not fit the model ({'; '.join(mismatched[:3])}); wrong architecture?")
    missing = [k for k in own if k not in state and k not in head_keys]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys, e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys, e.g. {', '.join(unexpected[:3])}")
        raise WeightsError(f"{path}: weights do not match the model ({'; '.join(parts)}); wrong --model?")
    model.load_state_dict(state, strict=False)
    _check_finite(model, path)


def _check_finite(model: nn.Module, path: Path) -> None:
    """Refuse weights holding NaN or inf: every trial would diverge and report 0% accuracy."""
    bad = [name for name, t in model.state_dict().items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise WeightsError(f"{path}: {len(bad)} weight tensors hold NaN or inf (e.g. {', '.join(bad[:3])}); "
                           "the file is damaged or was saved from a diverged run; use other weights")


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Return ``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
