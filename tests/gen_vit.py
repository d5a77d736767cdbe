"""Generate random-init ViT weights in every real local format the engine reads.

No weights can be downloaded in tests, so a timm ViT with random weights is saved as

* a Google/JAX ``.npz`` with the key names of the original ``ViT-B_16.npz``
  (``embedding/kernel`` in HWIO, ``Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/
  query/kernel`` as ``(D, heads, head_dim)``, ...), i.e. exactly what timm's ``_load_weights`` reads;
* a ``.safetensors`` and a ``.pth`` timm state dict.

Loading such a file into a fresh model must reproduce the generating model's outputs.
Run ``python -m tests.gen_vit OUTDIR`` to write all three for the tiny test ViT.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["TINY_VIT", "TINY_VIT_NAME", "make_vit", "to_jax_arrays", "write_weights"]

TINY_VIT_NAME = "vit_tiny_patch16_224"
TINY_VIT: dict[str, Any] = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}
"""Architecture overrides of the tiny test ViT (about 32k parameters, 16 patches)."""


def make_vit(seed: int = 0, *, name: str = TINY_VIT_NAME, num_classes: int = 0, **overrides: Any) -> nn.Module:
    """A randomly initialised timm ViT (the tiny test ViT unless ``overrides`` say otherwise)."""
    import timm

    torch.manual_seed(seed)
    kwargs = {**TINY_VIT, **overrides} if name == TINY_VIT_NAME else overrides
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    # random (not default-constant) norms, biases and head, so a loader that skips them is caught
    # and the head does not hide differences in the features (timm may zero-init it)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.normal_(0.0 if p.abs().sum() == 0 else 1.0, 0.1)
            elif p.abs().sum() == 0:
                p.normal_(0.0, 0.1)
    return model.eval()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def to_jax_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's weights under the original Google ViT ``.npz`` names and layouts."""
    d = int(model.embed_dim)
    out: dict[str, np.ndarray] = {
        "embedding/kernel": _np(model.patch_embed.proj.weight.permute(2, 3, 1, 0)),  # OIHW -> HWIO
        "embedding/bias": _np(model.patch_embed.proj.bias),
        "cls": _np(model.cls_token),
        "Transformer/posembed_input/pos_embedding": _np(model.pos_embed),
        "Transformer/encoder_norm/scale": _np(model.norm.weight),
        "Transformer/encoder_norm/bias": _np(model.norm.bias),
    }
    if isinstance(model.head, nn.Linear):
        out["head/kernel"] = _np(model.head.weight.T)
        out["head/bias"] = _np(model.head.bias)
    for i, block in enumerate(model.blocks):
        heads = block.attn.num_heads
        hd = d // heads
        p = f"Transformer/encoderblock_{i}/"
        mha = p + "MultiHeadDotProductAttention_1/"
        out[p + "LayerNorm_0/scale"] = _np(block.norm1.weight)
        out[p + "LayerNorm_0/bias"] = _np(block.norm1.bias)
        w_qkv, b_qkv = block.attn.qkv.weight, block.attn.qkv.bias
        for j, n in enumerate(("query", "key", "value")):
            out[mha + f"{n}/kernel"] = _np(w_qkv[j * d:(j + 1) * d].T.reshape(d, heads, hd))
            out[mha + f"{n}/bias"] = _np(b_qkv[j * d:(j + 1) * d].reshape(heads, hd))
        out[mha + "out/kernel"] = _np(block.attn.proj.weight.reshape(d, heads, hd).permute(1, 2, 0))
        out[mha + "out/bias"] = _np(block.attn.proj.bias)
        out[p + "LayerNorm_2/scale"] = _np(block.norm2.weight)
        out[p + "LayerNorm_2/bias"] = _np(block.norm2.bias)
        out[p + "MlpBlock_3/Dense_0/kernel"] = _np(block.mlp.fc1.weight.T)
        out[p + "MlpBlock_3/Dense_0/bias"] = _np(block.mlp.fc1.bias)
        out[p + "MlpBlock_3/Dense_1/kernel"] = _np(block.mlp.fc2.weight.T)
        out[p + "MlpBlock_3/Dense_1/bias"] = _np(block.mlp.fc2.bias)
    return out


def write_weights(model: nn.Module, path: Path) -> Path:
    """Save ``model`` in the format named by ``path``'s suffix (.npz, .safetensors, .pth)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        np.savez(path, **to_jax_arrays(model))
    elif suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    elif suffix in (".pth", ".pt"):
        torch.save({"state_dict": model.state_dict()}, path)  # wrapped, as many training scripts save
    else:
        raise ValueError(f"unsupported suffix {suffix!r}")
    return path


def main(argv: list[str] | None = None) -> None:
    """Write the tiny ViT in all three formats into OUTDIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = make_vit(args.seed)
    for suffix in (".npz", ".safetensors", ".pth"):
        print(write_weights(model, args.outdir / f"tiny_vit{suffix}"))


if __name__ == "__main__":
    main()
