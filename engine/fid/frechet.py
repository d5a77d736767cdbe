"""Fréchet Inception Distance maths and statistics files (pure numpy, no torch).

FID (Heusel et al., NeurIPS 2017, "GANs trained by a two time-scale update rule...") models each
image set's Inception pool3 features as a Gaussian N(mu, Sigma) and measures

    d^2 = ||mu1 - mu2||^2 + Tr(Sigma1) + Tr(Sigma2) - 2 Tr((Sigma1 Sigma2)^{1/2}).

The split follows pytorch-fid (features -> statistics -> distance) and its ``.npz`` format
(keys ``mu`` and ``sigma``), so stats files move between the two tools both ways. Unlike
pytorch-fid we never call ``scipy.linalg.sqrtm`` (its ``disp`` argument is gone in SciPy 1.18 and
it is slow at d=2048); see :func:`frechet_distance` for the numerics.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import Field

from engine.io import atomic_write_bytes
from engine.config import FrozenModel
from engine.errors import StatsFileError

__all__ = [
    "FeatureStats",
    "StatsProvenance",
    "frechet_distance",
    "frechet_distance_from_features",
    "compute_feature_stats",
    "small_sample_warning",
    "save_stats",
    "load_stats",
    "sidecar_path",
    "file_sha256",
    "RECOMMENDED_MIN_IMAGES",
    "library_versions",
]

logger = logging.getLogger(__name__)

RECOMMENDED_MIN_IMAGES = 2048
"""Below this many images the 2048-d covariance is rank deficient (pytorch-fid / TTUR advice)."""


@dataclass
class FeatureStats:
    """Gaussian summary of a feature set: mean ``mu`` (d,), covariance ``sigma`` (d, d), count ``n``.

    ``n`` is 0 when unknown (a stats file without a sidecar, e.g. one written by pytorch-fid).
    """

    mu: npt.NDArray[np.float64]
    sigma: npt.NDArray[np.float64]
    n: int

    @property
    def dims(self) -> int:
        """Feature dimensionality d."""
        return int(self.mu.shape[0])


class StatsProvenance(FrozenModel):
    """Where a stats file came from; stored as the JSON sidecar next to the ``.npz``."""

    source: str = Field(description="Folder, tar shards or file the statistics were computed from.")
    n_images: int = Field(description="Number of images whose features went into mu/sigma.")
    n_skipped: int = Field(default=0, description="Files skipped because they could not be decoded.")
    dims: int = Field(default=2048, description="Feature dimensionality.")
    extractor: str = Field(default="", description="Feature extractor id (network, layer, weights hash).")
    preprocessing: str = Field(default="", description="Named preprocessing (see engine.fid.features).")
    created: str = Field(default="", description="UTC time the statistics were written (ISO 8601).")
    versions: dict[str, str] = Field(default_factory=dict, description="Library versions used.")
    npz_sha256: str = Field(default="", description="sha256 of the .npz file this sidecar describes.")
    notes: list[str] = Field(default_factory=list, description="Sampling choices and other remarks.")


def _psd_clip(w: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Eigenvalues of a PSD matrix with rounding noise removed.

    Eigenvalues below ``d * eps * max|w|`` (LAPACK's accuracy for a symmetric eigensolver) are
    zero up to rounding: set them to 0 instead of taking square roots of noise, which would add
    ~sqrt(1e-16 * scale) per null direction when the covariance is rank deficient (N < d).
    """
    tol = w.shape[0] * np.finfo(np.float64).eps * float(np.max(np.abs(w), initial=0.0))
    return np.where(w > tol, w, 0.0)


def _sqrt_psd(sigma: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Symmetric square root of a PSD matrix via ``eigh``."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(_psd_clip(w))) @ v.T


def _trace_sqrt_product(sigma1: npt.NDArray[np.float64], sigma2: npt.NDArray[np.float64]) -> float:
    r = _sqrt_psd(sigma1)
    m = r @ sigma2 @ r
    m = 0.5 * (m + m.T)  # remove the asymmetry rounding leaves, so eigvalsh sees a symmetric matrix
    ev = np.linalg.eigvalsh(m)
    return float(np.sqrt(_psd_clip(ev)).sum())


def frechet_distance(
    mu1: npt.ArrayLike,
    sigma1: npt.ArrayLike,
    mu2: npt.ArrayLike,
    sigma2: npt.ArrayLike,
    eps: float = 1e-6,
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    Numerics: ``Sigma1 Sigma2`` is not symmetric, which is why pytorch-fid needs the general
    ``sqrtm`` and can meet imaginary parts. It is similar to the symmetric PSD matrix
    ``M = Sigma1^{1/2} Sigma2 Sigma1^{1/2}`` (same eigenvalues), so
    ``Tr sqrt(Sigma1 Sigma2) = sum_i sqrt(lambda_i(M))``. We take ``Sigma1^{1/2}`` from one ``eigh``
    and the eigenvalues of ``M`` from ``eigvalsh``. Eigenvalues within rounding of zero (singular
    covariances, e.g. fewer images than dimensions) are set to 0, so there is no imaginary
    component to discard and no square root of rounding noise. This is about 5x faster than ``sqrtm`` at d=2048 and works
    with any SciPy (none is needed).

    ``eps`` keeps pytorch-fid's meaning as a fallback: if the eigensolver fails to converge,
    ``eps`` is added to both diagonals and the computation retried once.

    Args:
        mu1: Mean of the first feature set, shape (d,).
        sigma1: Covariance of the first set, shape (d, d), symmetric PSD.
        mu2: Mean of the second set.
        sigma2: Covariance of the second set.
        eps: Diagonal offset used only for the non-convergence fallback.

    Returns:
        The squared Fréchet distance (what every FID tool reports as "FID"), >= 0 up to rounding.

    Raises:
        ValueError: If shapes disagree or an input is not finite.
    """
    m1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    m2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if m1.shape != m2.shape:
        raise ValueError(f"mean vectors have different lengths: {m1.shape} vs {m2.shape}")
    d = m1.shape[0]
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"covariances must be ({d}, {d}); got {s1.shape} and {s2.shape}")
    for name, arr in (("mu1", m1), ("sigma1", s1), ("mu2", m2), ("sigma2", s2)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    diff = m1 - m2
    try:
        tr_covmean = _trace_sqrt_product(s1, s2)
    except np.linalg.LinAlgError:
        logger.warning("eigendecomposition did not converge; adding %g to the covariance diagonals", eps)
        offset = np.eye(d) * eps
        tr_covmean = _trace_sqrt_product(s1 + offset, s2 + offset)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_distance_from_features(feats1: npt.ArrayLike, feats2: npt.ArrayLike) -> float:
    """The same value as ``frechet_distance`` of the two feature sets' statistics, via their cross-Gram matrix.

    With centred features ``X1`` (n1, d) and ``X2`` (n2, d), ``Sigma_k = X_k^T X_k / (n_k - 1)``.
    The non-zero eigenvalues of ``Sigma1 Sigma2`` are the squared singular values of
    ``C = X1 X2^T / sqrt((n1 - 1)(n2 - 1))`` (n1 x n2), so ``Tr sqrt(Sigma1 Sigma2)`` is the sum of
    C's singular values (its nuclear norm). When ``min(n1, n2) < d`` this is far cheaper than two
    d x d eigendecompositions (500 vs 500 images at d=2048: one 500 x 500 SVD), and it is exact
    for rank-deficient covariances instead of relying on clipping. Everything is float64.

    Raises:
        ValueError: If the arrays are not 2-D with equal d, or a set has fewer than 2 rows.
    """
    x1 = np.asarray(feats1, dtype=np.float64)
    x2 = np.asarray(feats2, dtype=np.float64)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise ValueError(f"features must be (n, d) arrays with the same d; got {x1.shape} and {x2.shape}")
    n1, n2 = x1.shape[0], x2.shape[0]
    if n1 < 2 or n2 < 2:
        raise ValueError(f"need at least 2 images per set; got {n1} and {n2}")
    mu1, mu2 = x1.mean(axis=0), x2.mean(axis=0)
    c1, c2 = x1 - mu1, x2 - mu2
    diff = mu1 - mu2
    tr1 = float(np.einsum("ij,ij->", c1, c1)) / (n1 - 1)
    tr2 = float(np.einsum("ij,ij->", c2, c2)) / (n2 - 1)
    cross = (c1 @ c2.T) / np.sqrt((n1 - 1) * (n2 - 1))
    tr_covmean = float(np.linalg.svd(cross, compute_uv=False).sum())
    return float(diff @ diff + tr1 + tr2 - 2.0 * tr_covmean)


def compute_feature_stats(feats: npt.ArrayLike) -> FeatureStats:
    """Mean and unbiased covariance (``np.cov``, ddof=1, as pytorch-fid) of an (N, d) feature array.

    Raises:
        ValueError: If ``feats`` is not 2-D or has fewer than 2 rows.
    """
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D (N, d) array; got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 images to estimate a covariance; got {x.shape[0]}")
    return FeatureStats(mu=x.mean(axis=0), sigma=np.cov(x, rowvar=False), n=int(x.shape[0]))


def small_sample_warning(n: int, dims: int, label: str = "") -> str | None:
    """The warning text for a set of ``n`` images (None when ``n`` is large enough)."""
    if n <= 0 or n >= max(RECOMMENDED_MIN_IMAGES, dims):
        return None
    who = f"{label}: " if label else ""
    return (
        f"{who}only {n} images (< {max(RECOMMENDED_MIN_IMAGES, dims)}): the {dims}x{dims} covariance is "
        f"rank deficient and FID is biased upwards at small N; compare FIDs only at equal N "
        f"(>= 2048, ideally >= 5000 images, is recommended)"
    )


def library_versions() -> dict[str, str]:
    """Versions of the libraries that can change FID numbers (recorded in stats sidecars)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "numpy": np.__version__}
    for pkg in ("torch", "torchvision", "pytorch-fid", "pillow", "vpt-advisor"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def sidecar_path(npz_path: Path) -> Path:
    """``stats.npz`` -> ``stats.json`` (the provenance sidecar)."""
    return npz_path.with_suffix(".json")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_stats(path: Path, stats: FeatureStats, provenance: StatsProvenance | None = None) -> None:
    """Write ``mu``/``sigma`` as a compressed ``.npz`` (pytorch-fid's format) and a JSON sidecar.

    Both files are written atomically. The sidecar records the npz's sha256, so a later edit of
    either file is detected by :func:`load_stats`.

    Args:
        path: Output path; must end in ``.npz``.
        stats: The statistics to save.
        provenance: Provenance to store; a minimal one (``n``, dims) is written when None.

    Raises:
        StatsFileError: If ``path`` does not end in ``.npz``.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise StatsFileError(f"{path}: stats files must end in .npz (pytorch-fid's format)")
    buf = io.BytesIO()
    np.savez_compressed(buf, mu=np.asarray(stats.mu, np.float64), sigma=np.asarray(stats.sigma, np.float64))
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    prov = provenance or StatsProvenance(source="", n_images=stats.n, dims=stats.dims)
    prov = prov.model_copy(update={"npz_sha256": hashlib.sha256(data).hexdigest(), "dims": stats.dims})
    atomic_write_bytes(sidecar_path(path), (prov.model_dump_json(indent=2) + "\n").encode())


def _read_sidecar(path: Path) -> StatsProvenance | None:
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        prov = StatsProvenance.model_validate(json.loads(side.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable stats sidecar %s: %s", side, exc)
        return None
    if prov.npz_sha256 and prov.npz_sha256 != file_sha256(path):
        logger.warning("ignoring stats sidecar %s: it describes a different version of %s", side, path.name)
        return None
    return prov


def load_stats(path: Path) -> tuple[FeatureStats, StatsProvenance | None]:
    """Read a ``.npz`` with ``mu`` (d,) and ``sigma`` (d, d) (ours or pytorch-fid's).

    Loaded with ``allow_pickle=False``. The provenance comes from the JSON sidecar when one exists
    and matches the npz's sha256; otherwise it is None and ``n`` is 0 (unknown).

    Raises:
        StatsFileError: If the file is missing, unreadable, lacks a key or has wrong shapes/values.
    """
    path = Path(path)
    hint = "regenerate it with 'vpt-advisor fid DIR OTHER --save-stats OUT.npz' or 'python -m pytorch_fid --save-stats'"
    if not path.is_file():
        raise StatsFileError(f"{path}: stats file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            missing = [k for k in ("mu", "sigma") if k not in keys]
            if missing:
                raise StatsFileError(
                    f"{path}: no key {', '.join(repr(k) for k in missing)} (found {sorted(keys)}); {hint}"
                )
            mu, sigma = f["mu"], f["sigma"]
    except StatsFileError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise StatsFileError(f"{path}: not a readable .npz stats file ({exc}); {hint}") from exc
    if mu.dtype.kind not in "fiu" or sigma.dtype.kind not in "fiu":
        raise StatsFileError(f"{path}: mu/sigma must be numeric arrays; {hint}")
    mu = np.asarray(mu, np.float64)
    sigma = np.asarray(sigma, np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise StatsFileError(f"{path}: mu has shape {mu.shape} and sigma {sigma.shape}; expected (d,) and (d, d)")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise StatsFileError(f"{path}: mu/sigma contain NaN or infinite values; {hint}")
    prov = _read_sidecar(path)
    return FeatureStats(mu=mu, sigma=sigma, n=prov.n_images if prov else 0), prov
