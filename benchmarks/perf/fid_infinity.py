"""Accuracy of the plain FID and of FID-infinity at N = 500, 1,000, 2,000, 5,000 on synthetic features.

Both "datasets" are Gaussians in d = 2048 with a known population FID: the data is
``N(mu1, diag(l1))`` and the reference ``N(mu2, Q diag(l2) Q^T)`` (Q a random rotation; spectra
decaying as ``1/i``, like Inception pool3 features). The reference enters with its exact population
statistics (a reference built from very many images), so the only error is the dataset's finite N.
For each N and repetition the benchmark draws N samples and prints:

* plain FID — the FID of the N samples (what every tool reports), and its relative error;
* FID-infinity — Chong & Forsyth (CVPR 2020): FIDs of random subsets at 5 sizes between N/5 and N,
  a line of FID against 1/N, its value at 1/N = 0 (``engine.fid.equal_n.fid_infinity``).

Run: ``.venv/bin/python -m benchmarks.perf.fid_infinity [--repeats 3] [--dims 2048]`` (about 2-4 minutes
on 2 cores at the defaults).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks.perf.cpuinfo import cpu_line
from engine.fid.equal_n import ProjectedFeatures, fid_infinity, infinity_sizes
from engine.fid.frechet import PreparedReference, psd_clip

__all__ = ["main", "population"]

SIZES = (500, 1000, 2000, 5000)


def population(dims: int, seed: int) -> tuple[np.ndarray, np.ndarray, PreparedReference, float]:
    """``(mu1, l1, prepared reference, population FID)`` of the synthetic pair.

    The reference's square root is built from its known spectrum (``Q diag(sqrt l2) Q^T``), so the
    setup costs one QR and one eigendecomposition.
    """
    gen = np.random.default_rng(seed)
    idx = np.arange(1, dims + 1, dtype=np.float64)
    l1 = 4.0 / idx  # data spectrum (1/i decay)
    l2 = 3.0 / idx ** 0.9  # reference spectrum: different scale and decay
    q, _ = np.linalg.qr(gen.standard_normal((dims, dims)))
    sqrt = (q * np.sqrt(l2)) @ q.T
    sqrt = 0.5 * (sqrt + sqrt.T)
    mu1 = gen.normal(0.0, 0.05, dims)
    ref = PreparedReference(mu=np.zeros(dims), trace=float(l2.sum()), sqrt=sqrt, eigenvalues=np.sort(l2), n=0)
    m = (sqrt * l1) @ sqrt  # Sigma_ref^{1/2} diag(l1) Sigma_ref^{1/2}
    tr_covmean = float(np.sqrt(psd_clip(np.linalg.eigvalsh(0.5 * (m + m.T)))).sum())
    true = float(mu1 @ mu1) + float(l1.sum()) + ref.trace - 2.0 * tr_covmean
    return mu1, l1, ref, true


def main(argv: list[str] | None = None) -> int:
    """Print the error table; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="Samples drawn per N (mean |error| over them).")
    parser.add_argument("--dims", type=int, default=2048, help="Feature dimensionality.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(cpu_line())
    t0 = time.perf_counter()
    mu1, l1, prepared, true = population(args.dims, args.seed)
    print(f"d = {args.dims}, population FID = {true:.3f}; {args.repeats} draws per N "
          f"(setup {time.perf_counter() - t0:.1f} s)")
    print(f"{'N':>6} {'plain FID':>10} {'error':>8} {'FID-inf':>10} {'error':>8}  fitted sizes")
    gen = np.random.default_rng(args.seed + 1)
    for n in SIZES:
        plain, inf = [], []
        for r in range(args.repeats):
            x = mu1 + gen.standard_normal((n, args.dims)) * np.sqrt(l1)
            proj = ProjectedFeatures(x, prepared)
            full = proj.fid()
            est = fid_infinity(proj, seed=args.seed + r, full=full)
            plain.append(full)
            inf.append(est.value if est is not None else float("nan"))
        e_plain = statistics.mean(abs(v - true) / true for v in plain)
        e_inf = statistics.mean(abs(v - true) / true for v in inf)
        print(f"{n:>6} {statistics.mean(plain):>10.3f} {100 * e_plain:>7.1f}% {statistics.mean(inf):>10.3f} "
              f"{100 * e_inf:>7.1f}%  {infinity_sizes(n)}")
    print(f"total {time.perf_counter() - t0:.0f} s. Errors are mean |estimate - population| / population.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
