"""Names of the transfer methods compared by Han et al. (ICLR 2024); torch-free, cheap to import.

``full`` (FT), ``linear`` (head only), ``vpt-shallow`` and ``vpt-deep`` (Jia et al., 2022),
``mixed`` (VPT-deep prompts plus every backbone weight) and ``ft-then-pt`` (fine-tune, then freeze
and prompt-tune). ``engine.train.transfer`` builds and configures the models.
"""

from __future__ import annotations

from typing import Literal, get_args

from engine.errors import UnknownNameError

__all__ = ["Method", "METHODS", "PROMPT_METHODS", "parse_method", "parse_methods", "uses_sgd", "stages_of"]

Method = Literal["full", "linear", "vpt-shallow", "vpt-deep", "mixed", "ft-then-pt"]
METHODS: tuple[Method, ...] = get_args(Method)
PROMPT_METHODS: frozenset[str] = frozenset({"vpt-shallow", "vpt-deep", "mixed", "ft-then-pt"})
"""Methods whose model carries prompts (a ``PromptedViT``); mixed and ft-then-pt use deep prompts."""

_ALIASES = {"ft": "full", "finetune": "full", "vpt": "vpt-deep", "head": "linear"}


def parse_method(name: str) -> Method:
    """Validate a method name (``ft``, ``vpt`` and ``head`` are aliases of full, vpt-deep, linear).

    Raises:
        UnknownNameError: not a known method.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        raise UnknownNameError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return key  # type: ignore[return-value]


def parse_methods(text: str) -> tuple[Method, ...]:
    """Parse a comma-separated list such as ``"full,vpt-deep"`` (duplicates removed, order kept)."""
    out: list[Method] = []
    for part in text.split(","):
        if part.strip():
            m = parse_method(part)
            if m not in out:
                out.append(m)
    if not out:
        raise UnknownNameError(f"no method in {text!r}; choose from {', '.join(METHODS)}")
    return tuple(out)


def uses_sgd(method: Method) -> bool:
    """True where the paper's code uses SGD (prompts and head), False for AdamW (weights)."""
    return method in ("vpt-shallow", "vpt-deep", "linear")


def stages_of(method: Method) -> tuple[Method, ...]:
    """The trainable configurations a method runs in order (two for ``ft-then-pt``)."""
    return ("full", "vpt-deep") if method == "ft-then-pt" else (method,)
