"""The registry of transfer methods; torch-free, cheap to import.

A method owns everything about itself, as a method does in huggingface/peft (``register_peft_method``): one
:class:`MethodSpec` says its name and aliases, its display label and chart colour, its family and which side of
the FT-vs-VPT question it answers (if any), which parts train (head, backbone, prompts, adapters), its prompts
and stages, the optimiser settings it trains with (optimiser, lr, weight decay, warm-up, whether the lr is scaled
by ``batch / 256``), its dropouts, the pilot's lr grid, the VTAB-1k protocol's grid and batch size, the weights
it adds inside the backbone (an :class:`Adapter`, e.g. LoRA) and the optional packages it needs.

The methods live in ``engine/train/tuners/``, one module per family, each registering its methods with
:func:`register_method` when imported. The registry imports every module of that package the first time it is
asked anything, so adding a method is adding one module there (plus its tests): model building
(``engine.train.transfer``), the training loop, the pilot and its comparison, the VTAB-1k protocol, the CLI's
``--methods``, reports, figures and JSON schemas all ask the registry when they run. Those modules must stay
cheap to import: a method's heavy dependencies (torch, peft) are imported when its model is built.

The paper code's optimiser conventions (inherited from VPT) are :data:`PAPER_SGD` and :data:`PAPER_ADAMW`.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SerializeAsAny

from engine.errors import ConfigError, UnknownNameError
from engine.vocab import Side

__all__ = [
    "Adapter", "Method", "MethodSpec", "Part", "PAPER_SGD", "PAPER_ADAMW", "register_method",
    "unregister_method", "get_method", "method_specs", "method_names", "prompt_methods", "parse_method",
    "parse_methods", "uses_sgd", "stages_of", "side_of", "family_of", "methods_on_side", "paper_method",
    "default_pilot_methods", "unavailable_reason", "TUNERS_PACKAGE",
]

Part = Literal["head", "backbone", "prompts", "adapters"]
"""What a method can train: the task head, every backbone weight, prompt tokens, or the weights of its adapter."""

TUNERS_PACKAGE = "engine.train.tuners"
"""The package whose modules define the methods (imported on the registry's first use)."""

PAPER_SGD: dict[str, Any] = {"optimizer": "sgd", "lr": 1.0, "weight_decay": 1e-3, "warmup_epochs": 10,
                             "pilot_lrs": (1.0, 5.0, 0.25)}
"""The paper code's settings for prompt and head training (VPT's ``configs``: SGD, wd 1e-3, 10 warm-up epochs of
100). The pilot grid is best-first picks from VPT's VTAB-1k grid (the budget keeps a prefix)."""
PAPER_ADAMW: dict[str, Any] = {"optimizer": "adamw", "lr": 5e-4, "weight_decay": 1e-2, "warmup_epochs": 5,
                               "pilot_lrs": (5e-4, 1e-3, 1e-4)}
"""The paper code's settings for fine-tuning weights (AdamW, wd 1e-2, 5 warm-up epochs); the pilot grid is
best-first picks from FT's VTAB-1k grid."""


class Adapter(BaseModel):
    """Weights a method adds inside the backbone (LoRA's low-rank updates, say); its fields are the method's knobs.

    A subclass implements :meth:`attach` and :meth:`parameters`, importing torch (and its own packages) inside
    them so that the registry stays cheap to import.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def attach(self, backbone: Any) -> None:
        """Insert the adapter's (fresh) weights into ``backbone`` in place; the task head is already attached."""
        raise NotImplementedError

    def parameters(self, model: Any) -> list[Any]:
        """The adapter's parameters in ``model`` (found by module identity, never by parameter-name matches)."""
        raise NotImplementedError


class MethodSpec(BaseModel):
    """Everything about one transfer method (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Canonical name (what reports and stores record).")
    aliases: tuple[str, ...] = Field((), description="Other accepted spellings (e.g. ft, vpt).")
    summary: str = Field(description="One line for help texts and reports.")
    label: str = Field("", description="Display name in charts and reports ('' = the name).")
    colour: str | None = Field(None, description="Chart colour (hex; None = the next free palette colour).")
    family: str = Field(description="Method family: methods of one family share a tuners module.")
    side: Side | None = Field(
        None, description="Which side of the FT-vs-VPT question pilot scores of this method count for (None: "
        "neither; the pilot still compares it with full finetuning).")
    pilot_default: bool = Field(False, description="Run by the pilot when --methods is not given.")
    trains: frozenset[Part] = Field(description="Trainable parts of the final model.")
    prompts: Literal["none", "shallow", "deep"] = Field("none", description="Prompts the model carries.")
    stages: tuple[str, ...] = Field((), description="Methods run in order ((): the method alone, one stage).")
    optimizer: Literal["sgd", "adamw"] = Field(description="Optimiser of the (last) stage.")
    lr: float = Field(gt=0, description="Default base lr (before the batch/256 scale when lr_scale_batch).")
    lr_scale_batch: bool = Field(True, description="Train with lr * batch / 256, as the paper's code does.")
    weight_decay: float = Field(ge=0, description="Default weight decay.")
    warmup_epochs: int = Field(ge=0, description="Warm-up epochs of 100 (the pilot scales them to its epochs).")
    prompt_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the prompts (VPT: 0.1 deep, 0 shallow).")
    backbone_dropout: bool = Field(
        False, description="Apply the original ViT-B/16 config's dropout (TrainConfig.ft_dropout) while the "
        "backbone trains end to end without prompts (full, and the FT stage of ft-then-pt).")
    pilot_lrs: tuple[float, ...] = Field(min_length=1, description="Pilot base lrs, best guess first.")
    paper_lrs: tuple[float, ...] | None = Field(None, description="The paper's VTAB-1k search grid (None: not run).")
    paper_batch_size: int | None = Field(None, ge=1, description="The paper's VTAB-1k batch size (None: not run).")
    adapter: SerializeAsAny[Adapter] | None = Field(None, description="Weights added inside the backbone.")
    requires: tuple[str, ...] = Field((), description="Optional packages (import names) the method needs.")
    extra: str | None = Field(None, description="The pip extra that installs them (pip install vpt-advisor[extra]).")

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The trainable configurations run in order (the method itself when it has one stage)."""
        return self.stages or (self.name,)

    @property
    def display(self) -> str:
        """The label charts and reports show."""
        return self.label or self.name


_REGISTRY: dict[str, MethodSpec] = {}
_ALIASES: dict[str, str] = {}
_LOADED = False


def _ensure_loaded() -> None:
    """Import every module of :data:`TUNERS_PACKAGE` once (each registers its methods); sorted by module name."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True  # first: the modules call register_method while they load
    package = importlib.import_module(TUNERS_PACKAGE)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{TUNERS_PACKAGE}.{info.name}")


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the registry (names and aliases must be new; stages must be registered)."""
    _ensure_loaded()
    for key in (spec.name, *spec.aliases):
        if key != key.strip().lower() or not key:
            raise ValueError(f"method name {key!r} must be lower case without surrounding spaces (lookups fold case)")
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"method name {key!r} is already registered")
    for stage in spec.stages:
        if stage not in _REGISTRY:
            raise ValueError(f"{spec.name}: stage {stage!r} is not a registered method")
    if ("prompts" in spec.trains) and spec.prompts == "none":
        raise ValueError(f"{spec.name}: trains prompts but has none")
    if ("adapters" in spec.trains) != (spec.adapter is not None):
        raise ValueError(f"{spec.name}: 'adapters' in trains and an adapter go together")
    _REGISTRY[spec.name] = spec
    _ALIASES.update({alias: spec.name for alias in spec.aliases})
    return spec


def unregister_method(name: str) -> MethodSpec:
    """Remove a method and its aliases (for tests and plugins that register temporary methods).

    Raises:
        UnknownNameError: not a registered method.
        ValueError: another registered method runs it as a stage.
    """
    spec = get_method(name)
    users = [s.name for s in _REGISTRY.values() if spec.name in s.stages]
    if users:
        raise ValueError(f"{spec.name} is a stage of {', '.join(users)}")
    del _REGISTRY[spec.name]
    for alias in spec.aliases:
        _ALIASES.pop(alias, None)
    return spec


def method_specs() -> tuple[MethodSpec, ...]:
    """Every registered method, in registration order."""
    _ensure_loaded()
    return tuple(_REGISTRY.values())


def method_names() -> tuple[str, ...]:
    """The canonical names of every registered method, in registration order."""
    return tuple(s.name for s in method_specs())


def prompt_methods() -> frozenset[str]:
    """Methods whose model carries prompts (a ``PromptedViT``)."""
    return frozenset(s.name for s in method_specs() if s.prompts != "none")


def get_method(name: str) -> MethodSpec:
    """The spec of ``name`` or one of its aliases (case and surrounding spaces ignored).

    Raises:
        UnknownNameError: not a known method.
    """
    _ensure_loaded()
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownNameError(f"unknown method {name!r}; choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def unavailable_reason(spec: MethodSpec) -> str | None:
    """Why ``spec`` cannot run here (an optional package is missing, and how to install it), else ``None``."""
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    how = f"pip install 'vpt-advisor[{spec.extra}]'" if spec.extra else f"pip install {' '.join(missing)}"
    return f"method {spec.name!r} needs the optional package {', '.join(missing)}, which is not installed: {how}"


def parse_method(name: str) -> str:
    """Validate a method the user selects and return its canonical name (``ft``, ``vpt``, ``head`` are aliases).

    Raises:
        UnknownNameError: not a known method.
        ConfigError: the method needs an optional package that is not installed.
    """
    spec = get_method(name)
    reason = unavailable_reason(spec)
    if reason is not None:
        raise ConfigError(reason)
    return spec.name


def parse_methods(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list such as ``"full,vpt"`` (duplicates removed, order kept)."""
    out: list[str] = []
    for part in text.split(","):
        if part.strip():
            m = parse_method(part)
            if m not in out:
                out.append(m)
    if not out:
        raise UnknownNameError(f"no method in {text!r}; choose from {', '.join(method_names())}")
    return tuple(out)


def uses_sgd(method: str) -> bool:
    """True where the method's first stage trains with SGD (prompts, head, as the paper's code)."""
    return get_method(get_method(method).stage_names[0]).optimizer == "sgd"


def stages_of(method: str) -> tuple[str, ...]:
    """The trainable configurations a method runs in order (two for a method with stages)."""
    return get_method(method).stage_names


def side_of(name: str) -> Side | None:
    """``"FT"`` or ``"VPT"`` for a method (or side word) that answers the FT-vs-VPT question; else ``None``."""
    try:
        return get_method(name).side
    except UnknownNameError:
        return None


def family_of(name: str) -> str | None:
    """The method family of ``name`` (``None`` if unknown)."""
    try:
        return get_method(name).family
    except UnknownNameError:
        return None


def methods_on_side(side: Side) -> tuple[str, ...]:
    """The registered methods whose scores count for ``side``, in registration order."""
    return tuple(s.name for s in method_specs() if s.side == side)


def paper_method(side: Side) -> MethodSpec:
    """The method the paper's VTAB-1k protocol runs for ``side`` (the one on that side with a paper grid).

    Raises:
        ConfigError: no such method, or more than one, is registered.
    """
    found = [s for s in method_specs() if s.side == side and s.paper_lrs is not None]
    if len(found) != 1:
        raise ConfigError(f"expected one registered {side} method with the paper's VTAB-1k grid, found "
                          f"{[s.name for s in found]}")
    return found[0]


def default_pilot_methods() -> tuple[str, ...]:
    """The methods the pilot compares when none are named (each spec's ``pilot_default``)."""
    return tuple(s.name for s in method_specs() if s.pilot_default)


def _validate_method(name: str) -> str:
    try:
        return get_method(name).name
    except UnknownNameError as exc:  # pydantic turns ValueError into a ValidationError naming the field
        raise ValueError(str(exc)) from None


class _RegistryEnum:
    """JSON schema of :data:`Method`: the registered names, read when the schema is generated."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "enum": list(method_names())}


Method = Annotated[str, AfterValidator(_validate_method), _RegistryEnum()]
"""A canonical method name: pydantic fields of this type accept aliases, reject unknown names and store the
canonical name (a registry-checked string rather than a ``Literal``, so a new method is one module)."""
