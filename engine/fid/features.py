"""pytorch-fid's InceptionV3 feature extractor: weights resolution, loading, batched forward.

The network is pytorch-fid's FID Inception (the TF-ported Inception-v3 with its patched blocks, its
bilinear resize to 299 and its scaling to [-1, 1]), defined in :mod:`engine.fid.inception` with the same
layers and arithmetic so that a run imports neither torchvision nor pytorch-fid (about 1 s of every cold
start); tests compare its features with ``pytorch_fid.inception.InceptionV3`` at every feature layer. What
we add is the weights handling and a faster CPU forward:

* Weights come from the same file pytorch-fid downloads (``FID_WEIGHTS_URL``) in the same place
  (``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``), or from an explicit path.
  Files are always read with ``torch.load(weights_only=True)``. Offline and without the file, a
  :class:`WeightsNotFoundError` says where to put it; nothing ever hangs on the network.
* The forward runs in ``torch.inference_mode`` with channels-last tensors and, by default, each
  BatchNorm folded into its convolution, in place (the arithmetic of ``torch.nn.utils.fusion.fuse_conv_bn_eval``,
  without its deep copy of every layer, which took half the load time). Folding is
  exact in real arithmetic; in float32 it changes features by rounding only (~1e-6 relative).

Named preprocessing (recorded in every result, like clean-fid's ``mode``):

* ``pytorch-fid``: the decoded RGB image as is (``ToTensor``: uint8 / 255), resized to 299x299 by
  the network itself (``F.interpolate`` bilinear, ``align_corners=False``, no antialias). Identical
  to ``python -m pytorch_fid``; needs all images of a set at one size.
* ``pil-bicubic-299``: each image is first resized to 299x299 with PIL bicubic (antialiased when
  shrinking); then as above (the network's resize is then the identity). Used for mixed sizes.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image

from engine.config.fid import FidConfig
from engine.data.imageio import content_sha256, resolve_workers
from engine.errors import ImageDecodeError, WeightsError, WeightsNotFoundError
from engine.fid.frechet import file_sha256
from engine.io import atomic_write_text
from engine.paths import cache_dir

# torch (and the network module, which needs it) is imported inside the functions that use it: importing this
# module does not load it.

if TYPE_CHECKING:
    import torch

__all__ = [
    "INCEPTION_FILENAME",
    "FID_WEIGHTS_URL",
    "PREPROCESSING",
    "default_weights_path",
    "resolve_weights",
    "weights_sha256",
    "extractor_id",
    "FeatureExtractor",
    "InceptionExtractor",
    "load_inception",
    "is_offline",
    "content_sha256",
    "header_size",
    "to_model_array",
    "iter_feature_batches",
    "forward_lanes",
    "one_thread_per_pass",
    "run_ordered",
    "forward_arrays",
]

logger = logging.getLogger(__name__)

INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILENAME}"
PREPROCESSING: dict[str, str] = {
    "pytorch-fid": "ToTensor (uint8/255); bilinear resize to 299 inside the network "
    "(F.interpolate, align_corners=False, no antialias); scale to [-1, 1]",
    "pil-bicubic-299": "PIL bicubic resize to 299x299 (antialiased when shrinking), then ToTensor; scale to [-1, 1]",
}
_DOWNLOAD_TIMEOUT_S = 30.0
_T = TypeVar("_T")
_OFFLINE_ENV = ("VPT_ADVISOR_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch (same env-variable precedence)."""
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir())
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        torch_home = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "torch")
    return Path(os.path.expanduser(torch_home)) / "hub"


def default_weights_path() -> Path:
    """Where pytorch-fid's ``load_state_dict_from_url`` keeps the Inception weights."""
    return _torch_hub_dir() / "checkpoints" / INCEPTION_FILENAME


def is_offline(config: FidConfig | None = None) -> bool:
    """True when downloads are switched off (config, or HF_HUB_OFFLINE / VPT_ADVISOR_OFFLINE set)."""
    if config is not None and config.offline:
        return True
    return any(os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no") for v in _OFFLINE_ENV)


def _missing_message(target: Path, why: str) -> str:
    return (
        f"Inception weights for FID not found ({why}). Put {INCEPTION_FILENAME} (from {FID_WEIGHTS_URL}) "
        f"in {target.parent}/ or pass --inception-weights PATH"
    )


def _download(target: Path) -> None:
    """Download the weights like pytorch-fid, with a socket timeout so no call hangs for long."""
    import torch.hub

    target.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(target), progress=False)
    finally:
        socket.setdefaulttimeout(old)


def resolve_weights(config: FidConfig) -> Path:
    """Return the Inception weights file to use, downloading it once when allowed.

    Raises:
        WeightsNotFoundError: ``config.weights`` does not exist, or the cache file is absent and
            we are offline or the download failed. The message names the file, folder and flag.
    """
    if config.weights is not None:
        path = Path(config.weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"--inception-weights {path}: no such file; expected pytorch-fid's {INCEPTION_FILENAME} "
                f"(from {FID_WEIGHTS_URL})"
            )
        return path
    target = default_weights_path()
    if target.is_file():
        return target
    from engine.network import host_reachable

    if is_offline(config) or not host_reachable(FID_WEIGHTS_URL):  # one short attempt, not a 30 s timeout
        raise WeightsNotFoundError(_missing_message(target, "offline, and no cached file"))
    logger.info("downloading pytorch-fid Inception weights to %s", target)
    try:
        _download(target)
    except Exception as exc:  # noqa: BLE001 - any network/IO failure means "not available"
        raise WeightsNotFoundError(_missing_message(target, f"download failed: {type(exc).__name__}: {exc}")) from None
    return target


def weights_sha256(path: Path) -> str:
    """sha256 of a weights file, memoised in the cache dir by (path, size, mtime)."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    memo = cache_dir() / "weights-sha256.json"
    table: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        table = json.loads(memo.read_text(encoding="utf-8"))
    if key in table:
        return table[key]
    digest = file_sha256(path)
    table[key] = digest
    with contextlib.suppress(OSError):
        atomic_write_text(memo, json.dumps(table))
    return digest


def extractor_id(dims: int, weights_digest: str) -> str:
    """Stable id of the feature extractor: network, layer and weights hash."""
    return f"pytorch-fid-inception-v3:dims={dims}:weights={weights_digest[:16]}"


class FeatureExtractor(Protocol):
    """What the batching helpers need from a feature network: :class:`InceptionExtractor`, or a stand-in
    in tests that must not load Inception weights."""

    @property
    def dims(self) -> int:
        """Feature dimensionality."""

    @property
    def id(self) -> str:
        """Stable id of the network and its weights (:func:`extractor_id`); part of every cache key."""

    def features(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Features ``(N, dims)`` of one uint8 NHWC batch."""


class InceptionExtractor:
    """pytorch-fid's InceptionV3 prepared for fast inference, with its provenance.

    Call :meth:`features` with a uint8 batch ``(N, H, W, 3)`` to get float32 ``(N, dims)`` features.
    """

    def __init__(self, model: torch.nn.Module, *, dims: int, device: torch.device, weights: Path, digest: str) -> None:
        self.model = model
        self.dims = dims
        self.device = device
        self.weights = weights
        self.weights_digest = digest
        self.id = extractor_id(dims, digest)

    def features(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Forward one uint8 NHWC batch; returns (N, dims) float32 features."""
        import torch
        import torch.nn.functional as F

        if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
            raise ValueError(f"expected a uint8 (N, H, W, 3) batch, got {batch.dtype} {batch.shape}")
        with torch.inference_mode():
            # NHWC memory viewed as NCHW is exactly channels_last: no copy before the float cast,
            # and the cast keeps the layout. uint8 -> float32 / 255 equals torchvision's ToTensor.
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
            x = x.to(torch.float32).div(255)
            out = self.model(x)
            if out.shape[2] != 1 or out.shape[3] != 1:  # dims < 2048: spatial map, pooled as pytorch-fid
                out = F.adaptive_avg_pool2d(out, output_size=(1, 1))
            return out.reshape(out.shape[0], -1).float().cpu().numpy()


def _fold_batchnorm(model: torch.nn.Module) -> int:
    """Fold every BasicConv2d's BatchNorm into its convolution, in place (eval mode only). Returns the count.

    Same arithmetic, in the same order, as ``torch.nn.utils.fusion.fuse_conv_bn_weights`` (so features are the
    bits the library's fusion gives): w' = w * (gamma * rsqrt(var + eps)), b' = (b - mean) * rsqrt(var + eps) *
    gamma + beta, with b = 0 for these bias-free convolutions."""
    import torch
    import torch.nn as nn

    from engine.fid.inception import BasicConv2d

    n = 0
    with torch.no_grad():
        for module in model.modules():
            if not (isinstance(module, BasicConv2d) and isinstance(module.bn, nn.BatchNorm2d)):
                continue
            conv, bn = module.conv, module.bn
            if bn.running_mean is None or bn.running_var is None:  # no statistics to fold (not an FID net's BN)
                continue
            rsqrt = torch.rsqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.mul_((bn.weight * rsqrt).reshape([-1] + [1] * (conv.weight.ndim - 1)))
            conv.bias = nn.Parameter((bias - bn.running_mean) * rsqrt * bn.weight + bn.bias, requires_grad=False)
            module.bn = nn.Identity()
            n += 1
    return n


_LOADED: dict[tuple[str, str, int, bool, str], InceptionExtractor] = {}
"""The last network :func:`load_inception` built, by (path, weights sha256, dims, fold, device): ``fid A B`` extracts
two sides and ``recommend`` several sets, and each would otherwise read and build it again (~0.3-2 s on a CPU)."""
_LOAD_LOCK = threading.Lock()


def load_inception(config: FidConfig, device: torch.device) -> InceptionExtractor:
    """Build pytorch-fid's InceptionV3 with its FID weights, ready for :meth:`InceptionExtractor.features`.

    The network is kept for the next call with the same weights (by content), layer, folding and device; only the
    last one is kept.

    Raises:
        WeightsNotFoundError: No weights available (see :func:`resolve_weights`).
        WeightsError: The file is not a loadable state dict for this network.
    """
    path = resolve_weights(config)
    digest = weights_sha256(path)
    key = (str(path), digest, config.dims, config.fuse_batchnorm, str(device))
    with _LOAD_LOCK:
        if key not in _LOADED:
            extractor = _build_inception(config, device, path, digest)
            _LOADED.clear()
            _LOADED[key] = extractor
        return _LOADED[key]


def _build_inception(config: FidConfig, device: torch.device, path: Path, digest: str) -> InceptionExtractor:
    import torch

    from engine.fid.inception import FidInceptionV3, load_fid_state

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip/IO errors all mean "bad file"
        raise WeightsError(f"{path}: cannot read Inception weights ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    model = FidInceptionV3(config.dims)
    try:
        load_fid_state(model, state)
    except RuntimeError as exc:  # load_state_dict: missing/unexpected keys or shape mismatch
        raise WeightsError(
            f"{path}: not pytorch-fid Inception weights ({str(exc).splitlines()[0]}); "
            f"expected {INCEPTION_FILENAME} from {FID_WEIGHTS_URL}"
        ) from None
    model.eval()
    if config.fuse_batchnorm:
        _fold_batchnorm(model)
    # Module.to accepts memory_format at run time (passed on to each tensor); torch's typed overloads omit it
    model = model.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    logger.info("loaded Inception weights %s (sha256 %s)", path, digest[:12])
    return InceptionExtractor(model, dims=config.dims, device=device, weights=path, digest=digest)


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an image header without decoding pixels; None if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # noqa: BLE001 - bad files are reported by the decoder later
        return None


def to_model_array(image: object, preprocessing: str) -> npt.NDArray[np.uint8]:
    """A decoded RGB ``PIL.Image`` -> the HxWx3 uint8 array fed to the network under ``preprocessing``."""
    assert isinstance(image, Image.Image)
    if preprocessing == "pil-bicubic-299" and image.size != (299, 299):
        image = image.resize((299, 299), Image.Resampling.BICUBIC)
    elif preprocessing not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {preprocessing!r}; one of {sorted(PREPROCESSING)}")
    return np.asarray(image, dtype=np.uint8)


_PASS_BYTES_PER_IMAGE = 12 * 2**20
"""Memory one image takes in a forward pass at 299x299 (activations alive at once): fid_speed measured a peak
RSS of about 1.5 GiB for two passes of 50 images side by side, about 0.5 GiB of it torch and the network."""


def forward_lanes(extractor: FeatureExtractor, requested: int = 0, batch_size: int = 50) -> int:
    """How many batches go through the network at once: ``requested`` if given; on a CPU one per torch thread
    this process may use (each pass then runs on one thread, see :func:`one_thread_per_pass`), but no more
    than half the available memory holds (many-core machines); else 1."""
    if requested > 0:
        return requested
    device = getattr(extractor, "device", None)
    if device is None or getattr(device, "type", "cpu") != "cpu":
        return 1
    import torch

    lanes = max(1, torch.get_num_threads())
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: no memory cap
        return lanes
    return max(1, min(lanes, available // 2 // (batch_size * _PASS_BYTES_PER_IMAGE)))


@contextlib.contextmanager
def one_thread_per_pass(extractor: FeatureExtractor) -> Iterator[None]:
    """On a CPU, run every forward pass on exactly one torch thread (restored afterwards).

    Why: float32 convolutions give results that depend on the number of threads and on the batch (on
    this project's CPU features move by ~1e-6 relative with either). With one thread per pass and fixed
    batches, an image's features are the same bits in every process (one-process build, Dask worker,
    ``fid``), so partial sums from different machines merge exactly. The cores are used by running
    several passes side by side (:func:`run_ordered`), which on 2 cores is also faster than splitting one
    pass over two threads (no per-layer synchronisation)."""
    device = getattr(extractor, "device", None)
    if device is None or getattr(device, "type", "cpu") != "cpu":
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_A = TypeVar("_A")
_B = TypeVar("_B")


def run_ordered(fn: Callable[[_A], _B], items: Iterator[_A], lanes: int) -> Iterator[_B]:
    """``fn`` over ``items`` on ``lanes`` threads, yielded in input order; at most ``lanes + 1`` pending.

    ``items`` is advanced in the calling thread (so it may touch non-thread-safe state, e.g. a cache).
    """
    if lanes <= 1:
        for item in items:
            yield fn(item)
        return
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="fid-forward") as pool:
        pending: list[Future[_B]] = []
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                while len(pending) > lanes:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for fut in pending:
                fut.cancel()


def iter_feature_batches(
    items: Sequence[_T],
    decode: Callable[[_T], npt.NDArray[np.uint8]],
    extractor: FeatureExtractor,
    *,
    batch_size: int,
    workers: int = 0,
    lanes: int = 0,
) -> Iterator[tuple[list[int], npt.NDArray[np.float32], list[tuple[int, ImageDecodeError]]]]:
    """Decode ``items`` on a thread pool and run the network batch by batch, yielded in input order.

    The one extraction entry point of ``fid`` and ``recommend`` (also in Dask chunks): ``decode`` makes an
    item the model-ready uint8 array (a file through :func:`to_model_array`, or an array decoded earlier).
    Batches are ``items[k*batch_size:(k+1)*batch_size]`` whatever the parallelism. Decoding runs at most
    ``lanes + 2`` batches ahead of the network; ``lanes`` passes run side by side, one torch thread each on
    a CPU (:func:`forward_lanes`, :func:`one_thread_per_pass`).

    Yields:
        ``(indices, features, failures)`` per batch: ``features[k]`` belongs to ``items[indices[k]]``;
        ``failures`` lists the items whose ``decode`` raised :class:`ImageDecodeError`.
    """
    n = len(items)
    threads = resolve_workers(workers)
    lanes = forward_lanes(extractor, lanes, batch_size)
    window = (lanes + 2) * batch_size

    def call(i: int) -> npt.NDArray[np.uint8] | ImageDecodeError:
        try:
            return decode(items[i])
        except ImageDecodeError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fid-decode") as pool:
        futures: dict[int, Future[npt.NDArray[np.uint8] | ImageDecodeError]] = {}

        def starts() -> Iterator[int]:
            submitted = 0
            for start in range(0, n, batch_size):
                while submitted < min(n, start + window):
                    futures[submitted] = pool.submit(call, submitted)
                    submitted += 1
                yield start

        def forward(start: int) -> tuple[list[int], npt.NDArray[np.float32], list[tuple[int, ImageDecodeError]]]:
            idx, arrays, failed = _collect(futures, range(start, min(n, start + batch_size)))
            return idx, forward_arrays(extractor, arrays), failed

        try:
            with one_thread_per_pass(extractor):
                yield from run_ordered(forward, starts(), lanes)
        finally:
            for fut in list(futures.values()):
                fut.cancel()


def _collect(
    futures: dict[int, Future[npt.NDArray[np.uint8] | ImageDecodeError]], positions: range
) -> tuple[list[int], list[npt.NDArray[np.uint8]], list[tuple[int, ImageDecodeError]]]:
    """Wait for the decoded items at ``positions``: (indices decoded, their arrays, failures)."""
    idx: list[int] = []
    arrays: list[npt.NDArray[np.uint8]] = []
    failed: list[tuple[int, ImageDecodeError]] = []
    for i in positions:
        res = futures.pop(i).result()
        if isinstance(res, ImageDecodeError):
            failed.append((i, res))
        else:
            idx.append(i)
            arrays.append(res)
    return idx, arrays, failed


def forward_arrays(extractor: FeatureExtractor, arrays: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
    """Features of a list of HxWx3 uint8 arrays (one forward per distinct size)."""
    if not arrays:
        return np.empty((0, extractor.dims), dtype=np.float32)
    shapes = {a.shape for a in arrays}
    if len(shapes) == 1:
        return extractor.features(np.stack(arrays))
    # Mixed sizes inside one batch only happen under "pytorch-fid" preprocessing when the caller
    # checked sizes from headers; keep working (one forward per size), as pytorch-fid cannot.
    out = np.empty((len(arrays), extractor.dims), dtype=np.float32)
    for shape in shapes:
        sel = [k for k, a in enumerate(arrays) if a.shape == shape]
        out[sel] = extractor.features(np.stack([arrays[k] for k in sel]))
    return out
