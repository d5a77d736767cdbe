"""Our FID Inception (engine.fid.inception) against pytorch-fid's module, from the same weights file.

The weights are random (tests/gen_inception.py) but in the real file's format and key layout, with BatchNorm
statistics far from the identity, so every layer's arithmetic shows in the output. The networks run the same
operations in the same order, so their outputs agree to float32 rounding at every feature layer; the tolerance
is loose enough for any x86-64 CPU (AVX2 or AVX-512 kernels) and tight enough that a wrong pooling mode, padding
or branch order (each a >1e-2 change here) fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.fid.inception import BLOCK_BY_DIMS, FidInceptionV3, load_fid_state


def _state(fid_weights: Path) -> dict[str, torch.Tensor]:
    state = torch.load(fid_weights, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(1)
    for key, value in state.items():
        if key.endswith("running_var"):
            state[key] = value.abs() + torch.rand(value.shape, generator=gen)
        elif key.endswith(("running_mean", "bn.bias")):
            state[key] = 0.1 * torch.randn(value.shape, generator=gen)
    return state


def _theirs(state: dict[str, torch.Tensor], dims: int) -> torch.nn.Module:
    import pytorch_fid.inception as pfi

    original = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *args, **kwargs: state  # their constructor loads the file itself
    try:
        return pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).eval()
    finally:
        pfi.load_state_dict_from_url = original


@pytest.mark.slow
@pytest.mark.parametrize("dims", sorted(BLOCK_BY_DIMS))
def test_features_equal_pytorch_fids_network_at_every_layer(fid_weights: Path, dims: int) -> None:
    state = _state(fid_weights)
    ours = FidInceptionV3(dims).eval()
    load_fid_state(ours, state)
    theirs = _theirs(state, dims)
    x = torch.rand(2, 3, 180, 240, generator=torch.Generator().manual_seed(dims))  # resized to 299 inside
    with torch.inference_mode():
        want = theirs(x)[0]
        got = ours(x)
    assert got.shape == want.shape
    scale = want.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)


def test_the_weights_file_loads_strictly(fid_weights: Path) -> None:
    state = torch.load(fid_weights, map_location="cpu", weights_only=True)
    model = FidInceptionV3(2048)
    load_fid_state(model, state)  # every key of the real layout, no more, no fewer
    assert set(model.state_dict()) == set(state)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_fid_state(FidInceptionV3(2048), {k: v for k, v in state.items() if not k.startswith("Mixed_7c.")})
    with pytest.raises(ValueError, match="dims must be one of"):
        FidInceptionV3(100)


def test_extracting_features_imports_neither_torchvision_nor_pytorch_fid(fid_weights: Path, tmp_path: Path) -> None:
    """The point of owning the network: a cold run does not pay torchvision's import (torch._dynamo)."""
    code = (
        "import sys, numpy as np, torch\n"
        "from pathlib import Path\n"
        "from engine.config.fid import FidConfig\n"
        "from engine.fid.features import load_inception\n"
        f"net = load_inception(FidConfig(weights=Path({str(fid_weights)!r}), dims=64), torch.device('cpu'))\n"
        "net.features(np.zeros((1, 32, 32, 3), np.uint8))\n"
        "print(sorted(m for m in ('torchvision', 'pytorch_fid', 'torch._dynamo') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "[]"
