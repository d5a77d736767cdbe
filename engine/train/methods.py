"""The registry of transfer methods compared by Han et al. (ICLR 2024); torch-free, cheap to import.

One :class:`MethodSpec` per method says everything the rest of the code needs: its name and aliases,
which parts train (head, backbone, prompts), whether it carries shallow or deep prompts, its stages,
the optimiser settings of the paper's code, its prompt dropout, the pilot's lr grid and, for the two
methods of the VTAB-1k protocol, the paper's search grid and batch size. Model building
(``engine.train.transfer``), the training loop, the pilot, the advisor's reading of pilot scores and
the VTAB-1k protocol all ask this registry; adding a method is one :func:`register_method` call
(plus its tests), in the spirit of timm's ``register_model``.

The paper code's optimiser choices (inherited from VPT): prompts and heads train with SGD (momentum
0.9, 10 warm-up epochs of 100), full fine-tuning with AdamW (5 warm-up epochs); both scale every
grid lr by ``batch_size / 256`` (``engine.config.train.LR_SCALE_BATCH``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from engine.errors import UnknownNameError

__all__ = [
    "Method", "MethodSpec", "Part", "register_method", "unregister_method", "get_method", "method_specs", "METHODS",
    "PROMPT_METHODS", "parse_method", "parse_methods", "uses_sgd", "stages_of", "family_of",
]

Part = Literal["head", "backbone", "prompts"]
"""What a method can train."""

PAPER_VPT_LRS: tuple[float, ...] = (50.0, 25.0, 10.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05)
"""VPT's VTAB-1k base-lr search grid (the paper's ``tune_vtab.py``; ANCHORS section 1)."""
PAPER_FT_LRS: tuple[float, ...] = (1e-3, 1e-4, 5e-4, 5e-3)
"""Full fine-tuning's VTAB-1k base-lr search grid (same source)."""
_PILOT_SGD_LRS: tuple[float, ...] = (1.0, 5.0, 0.25)
"""Pilot grid for SGD methods: best-first picks from :data:`PAPER_VPT_LRS` (the budget keeps a prefix)."""
_PILOT_ADAMW_LRS: tuple[float, ...] = (5e-4, 1e-3, 1e-4)
"""Pilot grid for AdamW methods: best-first picks from :data:`PAPER_FT_LRS`."""


class MethodSpec(BaseModel):
    """Everything about one transfer method (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Canonical name (what reports and stores record).")
    aliases: tuple[str, ...] = Field((), description="Other accepted spellings (e.g. ft, vpt).")
    summary: str = Field(description="One line for help texts and reports.")
    trains: frozenset[Part] = Field(description="Trainable parts of the final model.")
    prompts: Literal["none", "shallow", "deep"] = Field("none", description="Prompts the model carries.")
    stages: tuple[str, ...] = Field((), description="Methods run in order ((): the method alone, one stage).")
    optimizer: Literal["sgd", "adamw"] = Field(description="Optimiser of the (last) stage, as the paper's code.")
    lr: float = Field(gt=0, description="Default base lr (before the batch/256 scale).")
    weight_decay: float = Field(ge=0, description="Default weight decay.")
    warmup_epochs: int = Field(ge=0, description="Warm-up epochs of 100 (the pilot scales them to its epochs).")
    prompt_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the prompts (VPT: 0.1 deep, 0 shallow).")
    pilot_lrs: tuple[float, ...] = Field(min_length=1, description="Pilot base lrs, best guess first.")
    family: Literal["ft", "vpt"] | None = Field(
        None, description="Which side of the FT-vs-VPT question pilot scores of this method count for.")
    paper_lrs: tuple[float, ...] | None = Field(None, description="The paper's VTAB-1k search grid (None: not run).")
    paper_batch_size: int | None = Field(None, ge=1, description="The paper's VTAB-1k batch size (None: not run).")

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The trainable configurations run in order (the method itself when it has one stage)."""
        return self.stages or (self.name,)


_REGISTRY: dict[str, MethodSpec] = {}
_ALIASES: dict[str, str] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the registry (names and aliases must be new; stages must be registered)."""
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
    return tuple(_REGISTRY.values())


def get_method(name: str) -> MethodSpec:
    """The spec of ``name`` or one of its aliases (case and surrounding spaces ignored).

    Raises:
        UnknownNameError: not a known method.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownNameError(f"unknown method {name!r}; choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def parse_method(name: str) -> str:
    """Validate a method name and return its canonical name (``ft``, ``vpt`` and ``head`` are aliases).

    Raises:
        UnknownNameError: not a known method.
    """
    return get_method(name).name




def parse_methods(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list such as ``"full,vpt-deep"`` (duplicates removed, order kept)."""
    out: list[str] = []
    for part in text.split(","):
        if part.strip():
            m = parse_method(part)
            if m not in out:
                out.append(m)
    if not out:
        raise UnknownNameError(f"no method in {text!r}; choose from {', '.join(_REGISTRY)}")
    return tuple(out)


def uses_sgd(method: str) -> bool:
    """True where the paper's code trains the method's first stage with SGD (prompts, head)."""
    return get_method(get_method(method).stage_names[0]).optimizer == "sgd"


def stages_of(method: str) -> tuple[str, ...]:
    """The trainable configurations a method runs in order (two for ``ft-then-pt``)."""
    return get_method(method).stage_names


def family_of(name: str) -> Literal["ft", "vpt"] | None:
    """``"ft"`` or ``"vpt"`` for a method that answers the FT-vs-VPT question; ``None`` otherwise or if unknown."""
    try:
        return get_method(name).family
    except UnknownNameError:
        return None


_SGD: dict[str, Any] = {"optimizer": "sgd", "lr": 1.0, "weight_decay": 1e-3, "warmup_epochs": 10,
                        "pilot_lrs": _PILOT_SGD_LRS}
"""The paper code's settings for prompt and head training (VPT's ``configs``: SGD, wd 1e-3, 10 warm-up)."""
_ADAMW: dict[str, Any] = {"optimizer": "adamw", "lr": 5e-4, "weight_decay": 1e-2, "warmup_epochs": 5,
                          "pilot_lrs": _PILOT_ADAMW_LRS}
"""The paper code's settings for fine-tuning weights (AdamW, wd 1e-2, 5 warm-up)."""


def _spec(defaults: dict[str, Any], **fields: Any) -> MethodSpec:
    return register_method(MethodSpec.model_validate({**defaults, **fields}))


_spec(_ADAMW, name="full", aliases=("ft", "finetune", "fine-tune", "full-finetuning", "full_finetuning"),
      summary="full fine-tuning: every weight trains", trains=frozenset({"head", "backbone"}), family="ft",
      paper_lrs=PAPER_FT_LRS, paper_batch_size=128)  # batch 128: the paper README's FT commands
_spec(_SGD, name="linear", aliases=("head",), summary="linear probe: only the head trains",
      trains=frozenset({"head"}))
_spec(_SGD, name="vpt-shallow", summary="VPT-shallow: prompts at the input only, and the head",
      trains=frozenset({"head", "prompts"}), prompts="shallow", family="vpt")
_spec(_SGD, name="vpt-deep", aliases=("vpt",), summary="VPT-deep: prompts at every block, and the head",
      trains=frozenset({"head", "prompts"}), prompts="deep", prompt_dropout=0.1, family="vpt",
      paper_lrs=PAPER_VPT_LRS, paper_batch_size=64)  # dropout 0.1, batch 64: the paper README's VPT commands
_spec(_ADAMW, name="mixed", summary="Mixed: VPT-deep prompts and every backbone weight",
      trains=frozenset({"head", "backbone", "prompts"}), prompts="deep", prompt_dropout=0.1)
_spec(_SGD, name="ft-then-pt", summary="FT-then-PT: fine-tune without prompts, then freeze and prompt-tune",
      trains=frozenset({"head", "prompts"}), prompts="deep", stages=("full", "vpt-deep"), prompt_dropout=0.1)

METHODS: tuple[str, ...] = tuple(_REGISTRY)
"""The built-in methods, in registration order."""
PROMPT_METHODS: frozenset[str] = frozenset(s.name for s in method_specs() if s.prompts != "none")
"""Methods whose model carries prompts (a ``PromptedViT``)."""


def _validate_method(name: str) -> str:
    try:
        return parse_method(name)
    except UnknownNameError as exc:  # pydantic turns ValueError into a ValidationError naming the field
        raise ValueError(str(exc)) from None


Method = Annotated[str, AfterValidator(_validate_method), WithJsonSchema({"type": "string", "enum": list(METHODS)})]
"""A canonical method name: pydantic fields of this type accept aliases, reject unknown names and store the
canonical name (a registry-checked string rather than a ``Literal``, so a new method is one entry)."""
