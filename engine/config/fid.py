"""Run configuration for FID feature extraction (pytorch-fid's Inception, our pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from engine.config import FrozenModel
from engine.vocab import FeatureDims

__all__ = ["FidConfig", "ResizePolicy", "Dims", "FidBackend", "CPU_PASS_BATCH", "ACCELERATOR_PASS_BATCH", "device_type"]

ResizePolicy = Literal["auto", "pytorch-fid", "pil-bicubic-299"]
Dims = FeatureDims
FidBackend = Literal["local", "dask"]

CPU_PASS_BATCH = 16
"""Images per forward pass on a CPU when none is given. Measured with ``python -m benchmarks.perf.fid_speed
--batch-sweep`` (one torch thread per pass, passes side by side): 16 was the fastest of 4-50 on this project's
2-core CPU, about 1.3x pytorch-fid's 50 (large batches spill the caches), and a small batch also leaves less of
a folder's tail to one pass while the other core idles."""
ACCELERATOR_PASS_BATCH = 50
"""Images per forward pass on a GPU when none is given: pytorch-fid's default (not measured here: no GPU)."""


def device_type(device: object) -> str:
    """``"cpu"``, ``"cuda"``, ... of a ``torch.device`` or a device string (``"cuda:1"`` -> ``"cuda"``), without
    importing torch. ``"auto"`` stays ``"auto"``: resolve it before anything depends on the type."""
    kind = getattr(device, "type", None)
    return kind if isinstance(kind, str) else str(device).split(":", 1)[0]


class FidConfig(FrozenModel):
    """How features are extracted for FID.

    ``resize``: ``pytorch-fid`` feeds each image unchanged (``ToTensor``) and lets the network resize
    it to 299x299 bilinearly, exactly as pytorch-fid; it needs every image of a set to have the same
    size. ``pil-bicubic-299`` first resizes each image to 299x299 with PIL bicubic (antialiased when
    shrinking), which works for mixed sizes. ``auto`` uses ``pytorch-fid`` when all images of a set
    share one size and ``pil-bicubic-299`` otherwise; the chosen name is recorded in every result.
    """

    dims: Dims = Field(default=2048, description="Inception feature layer: 2048 = pool3 (standard FID).")
    batch_size: int | None = Field(
        default=None, ge=1, le=4096,
        description="Images per forward pass; None = automatic for the device (:meth:`batch_for`).",
    )
    workers: int = Field(default=0, ge=0, le=64, description="Decoding threads; 0 = number of CPU cores.")
    resize: ResizePolicy = Field(default="auto", description="Preprocessing policy (see class docstring).")
    weights: Path | None = Field(
        default=None,
        description="pytorch-fid Inception weights file; None = the torch hub cache pytorch-fid uses.",
    )
    offline: bool = Field(default=False, description="Never try to download the Inception weights.")
    use_cache: bool = Field(default=True, description="Reuse and store per-file features in the cache.")
    backend: FidBackend = Field(
        default="local",
        description="Where features are extracted: 'local' (this process) or 'dask' (one task per shard or chunk "
        "on a Dask cluster: a LocalCluster, or the scheduler at 'scheduler').",
    )
    scheduler: str | None = Field(
        default=None, description="Dask scheduler address (tcp://host:8786) for backend 'dask'; None = a LocalCluster."
    )
    cluster_workers: int = Field(
        default=0, ge=0, le=256,
        description="Worker processes of the LocalCluster started for backend 'dask' (0 = one per CPU core).",
    )
    fuse_batchnorm: bool = Field(
        default=True,
        description="Fold each BatchNorm into its convolution (inference-only speed-up; changes features "
        "by float32 rounding only, about 1e-6 relative).",
    )

    def batch_for(self, device_type: str) -> int:
        """Images per forward pass on a device of type ``device_type`` (``"cpu"``, ``"cuda"``, ...): the one
        given, else :data:`CPU_PASS_BATCH` on a CPU and :data:`ACCELERATOR_PASS_BATCH` elsewhere."""
        if self.batch_size is not None:
            return self.batch_size
        return CPU_PASS_BATCH if device_type == "cpu" else ACCELERATOR_PASS_BATCH

    def for_device(self, device_type: str) -> FidConfig:
        """This config with :attr:`batch_size` fixed for the device (what a run records and resumes by)."""
        if self.batch_size is not None:
            return self
        return self.model_copy(update={"batch_size": self.batch_for(device_type)})

    @model_validator(mode="after")
    def _scheduler_needs_dask(self) -> FidConfig:
        if self.scheduler is not None and self.backend != "dask":
            raise ValueError(f"--scheduler {self.scheduler} needs --backend dask")
        return self
