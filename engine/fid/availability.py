"""What the FID needs before it can be measured, checked without reading a weight or an image.

Two downloads stand between a new user and a measured FID: reference statistics (``in21k``, built from ImageNet-21k
shards) and pytorch-fid's Inception weights. Each check here costs a file lookup, so a command can name every missing
piece, with the command that gets it, in its first message instead of failing on one piece after the other.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import ReferenceNotFoundError
from engine.fid.features import FID_WEIGHTS_URL, default_weights_path
from engine.fid.gates import MIN_REFERENCE_IMAGES
from engine.fid.reference import DEFAULT_REFERENCE, IN21K_SOURCE, resolve_reference_path

__all__ = ["reference_available", "weights_available", "reference_build_command", "weights_fetch_command",
           "missing_fid_pieces"]


def reference_available(name_or_path: str) -> bool:
    """True when a reference of that name (or that ``.npz``) exists; reads nothing."""
    try:
        resolve_reference_path(name_or_path)
    except ReferenceNotFoundError:
        return False
    return True


def weights_available(weights: Path | None) -> bool:
    """True when the Inception weights are on disk (``weights``, else pytorch-fid's cache file); never downloads."""
    return (Path(weights).expanduser() if weights is not None else default_weights_path()).is_file()


def reference_build_command(name: str) -> str:
    """The command that builds reference ``name``: for ``in21k`` the smallest one the FID check accepts."""
    if name == DEFAULT_REFERENCE:
        # MIN_REFERENCE_IMAGES: fewer images and the FID is shown as 'unverified' and never decides (engine.fid.gates)
        return f"vpt-advisor reference build {IN21K_SOURCE} --name {name} --max-images {MIN_REFERENCE_IMAGES}"
    return f"vpt-advisor reference build /path/to/images --name {name}"


def weights_fetch_command() -> str:
    """A shell command putting pytorch-fid's Inception weights where ``fid`` and ``recommend`` look for them."""
    return f"curl -L --create-dirs -o {default_weights_path()} {FID_WEIGHTS_URL}"


def missing_fid_pieces(reference: str, weights: Path | None) -> list[str]:
    """One phrase per missing piece, each ending in ``with: <command>`` (empty when both are present).

    A named reference counts as present when its file exists, weights when theirs does: a damaged file is not missing,
    and the error that reading it gives says more than a command to get another.
    """
    out = []
    if not reference_available(reference):
        how = (f"build the smallest the FID check accepts ({MIN_REFERENCE_IMAGES:,} images, needs HF_TOKEN)"
               if reference == DEFAULT_REFERENCE else "build it")
        out.append(f"no reference '{reference}'; {how} with: {reference_build_command(reference)}")
    if not weights_available(weights):
        where = f"--inception-weights {weights} does not exist" if weights is not None else "no Inception weights"
        out.append(f"{where}; get pytorch-fid's with: {weights_fetch_command()}")
    return out
