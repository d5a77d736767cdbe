"""FID comparisons with a threshold that has no N: plain FID vs FID with the small-N bias taken off.

Synthetic 2048-d Gaussian features with a known population FID. The data is ``N(mu, diag(l1))``, the
reference ``N(0, diag(l2))`` with exact statistics (a reference from very many images), spectra decaying
as ``1/i`` and ``1/i^0.9``, scaled so that the plain FID of N images is biased upwards by about 36 / 22 /
10 points at N = 500 / 1,000 / 2,000 (the size of the bias issue 18 reports for 2048-d features). The
mean ``mu`` sets the population FID to the threshold minus 20 and plus 40, for the Table 19 default
(175.8, band 169.1-182.5) and for a ``--fid-threshold`` without band. Each case is classified by
``engine.fid.calibration.similarity_side`` as ``recommend`` does: without a bias (before) and with the
bias estimated from the same features (``small_n_bias``: twice FID(N/2) - FID(N), N/2 a mean over 5
subsets). The promise: 20 below is never called dissimilar at N = 500, 1,000, 2,000; 40 above is
never called similar at N >= 1,000.

Run: ``.venv/bin/python -m benchmarks.perf.fid_small_n [--repeats 2]`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.perf.cpuinfo import cpu_line
from engine.fid.calibration import similarity_side, small_n_bias
from engine.fid.equal_n import SUBSETS, ProjectedFeatures
from engine.fid.frechet import PreparedReference

__all__ = ["Case", "SIZES", "THRESHOLDS", "broken", "cases", "main"]

SIZES = (500, 1000, 2000)
OFFSETS = (-20.0, 40.0)
THRESHOLDS: dict[str, tuple[float, tuple[float, float]]] = {
    "Table 19 default": (175.8, (169.117, 182.487)),
    "--fid-threshold 175.8": (175.8, (175.8, 175.8)),
}
SCALE = 2.5
"""Spectrum scale: with it the plain FID's bias is about 36 / 22 / 10 points at N = 500 / 1,000 / 2,000."""


@dataclass(frozen=True)
class Case:
    """One draw at one N, one population FID and one threshold."""

    threshold: str
    n: int
    offset: float
    population: float
    fid: float
    bias: float
    before: str
    after: str


def _reference(dims: int) -> tuple[np.ndarray, PreparedReference, float]:
    idx = np.arange(1, dims + 1, dtype=np.float64)
    l1, l2 = SCALE * 4.0 / idx, SCALE * 3.0 / idx ** 0.9
    ref = PreparedReference(mu=np.zeros(dims), trace=float(l2.sum()), sqrt=np.diag(np.sqrt(l2)),
                            eigenvalues=np.sort(l2), n=0)
    covariance_part = float(l1.sum() + l2.sum() - 2.0 * np.sqrt(l1 * l2).sum())
    return l1, ref, covariance_part


def cases(*, dims: int = 2048, sizes: tuple[int, ...] = SIZES, repeats: int = 1, seed: int = 0) -> list[Case]:
    """Every (threshold, N, offset, draw) classified before and after the bias correction."""
    l1, ref, cov_part = _reference(dims)
    gen = np.random.default_rng(seed)
    out = []
    for n in sizes:
        for _ in range(repeats):
            # one draw of centred noise serves every population: a mean shift d along the first axis changes an
            # FID (reference mean 0) by 2 * mean_0 * d + d^2 only, so each subset's FID is computed once
            proj = ProjectedFeatures(gen.standard_normal((n, dims)) * np.sqrt(l1), ref)
            subsets = [np.arange(n)] + [gen.choice(n, size=n // 2, replace=False) for _ in range(SUBSETS)]
            base = [(proj.fid(rows), float(proj.x[rows, 0].mean())) for rows in subsets]
            for label, (thr, band) in THRESHOLDS.items():
                for offset in OFFSETS:
                    shift = float(np.sqrt(thr + offset - cov_part))
                    fids = [f + 2.0 * m * shift + shift * shift for f, m in base]
                    fid, half = fids[0], float(np.mean(fids[1:]))
                    bias = small_n_bias(fid, half)
                    out.append(Case(label, n, offset, thr + offset, fid, bias, similarity_side(fid, thr, band),
                                    similarity_side(fid, thr, band, bias=bias)))
    return out


def broken(rows: list[Case], *, use_bias: bool = True) -> list[Case]:
    """Cases that break the promise (20 below called dissimilar; 40 above called similar at N >= 1,000)."""
    def side(c: Case) -> str:
        return c.after if use_bias else c.before

    return [c for c in rows if (c.offset < 0 and side(c) == "dissimilar")
            or (c.offset > 0 and c.n >= 1000 and side(c) == "similar")]


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit 1 when a promise is broken with the bias correction."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="Draws per N.")
    parser.add_argument("--dims", type=int, default=2048)
    args = parser.parse_args(argv)
    print(cpu_line())
    t0 = time.perf_counter()
    rows = cases(dims=args.dims, repeats=args.repeats)
    print(f"{'threshold':<22} {'N':>5} {'population':>10} {'FID_N':>7} {'bias':>6} {'est. bias':>9} "
          f"{'before':>11} {'after':>11}")
    for c in rows:
        print(f"{c.threshold:<22} {c.n:>5} {c.population:>10.1f} {c.fid:>7.1f} {c.fid - c.population:>6.1f} "
              f"{c.bias:>9.1f} {c.before:>11} {c.after:>11}")
    before, after = broken(rows, use_bias=False), broken(rows)
    print(f"{len(rows)} cases in {time.perf_counter() - t0:.0f} s; promise broken: {len(before)} before, "
          f"{len(after)} with the bias taken off")
    return 1 if after else 0


if __name__ == "__main__":
    raise SystemExit(main())
