"""FID speed: ``python -m pytorch_fid A B`` vs ``vpt-advisor fid A B`` (cold cache, then warm), side by side.

Both tools run as subprocesses on the same two folders, with the same Inception weights (random
weights in pytorch-fid's real file format, placed in a temporary ``$TORCH_HOME``), the same device
and the same thread settings. Printed: wall time, images/s, peak RSS of each process tree (``wait4``
rusage), the two FID values and their relative difference, and the ratios pytorch-fid/cold and
cold/warm. Targets: cold >= 3x faster than pytorch-fid with equal numbers (1e-5 relative; issue 22),
warm >= 20x faster than cold (issue 2). Then where the cold time goes, stage by stage, with the fp32
limit of this CPU and the decode-only rate (:mod:`benchmarks.perf.fid_stages`).

Each repeat runs the three tools one after the other (interleaved), so on a shared machine every tool
sees the same load on average; medians are printed.

Run: ``.venv/bin/python -m benchmarks.perf.fid_speed [--n-images 160] [--size 500x375] [--repeats 1] [--quick]
[--batch-sweep]``. The defaults are issue 22's case: two folders of 160 photo-sized JPEGs (500x375, the common
size of web photos). ``--batch-sweep`` adds the forward rate at batch sizes 4-50 (how the CPU default
``engine.config.fid.CPU_PASS_BATCH`` was chosen).
On a shared machine, note the load average printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.perf.cpuinfo import cpu_line
from benchmarks.perf.fid_stages import Stages, measure_stages
from engine.fid.frechet import frechet_distance, load_stats

__all__ = ["main", "make_folder", "Run"]

TARGET_COLD = 3.0
TARGET_WARM = 20.0
FID_RTOL = 1e-5


@dataclass
class Run:
    """One timed subprocess."""

    wall_s: float
    peak_rss_mib: float
    fid: float


SWEEP = (4, 8, 16, 24, 32, 50)
"""Batch sizes of ``--batch-sweep``."""


def make_folder(root: Path, n: int, size: int | tuple[int, int], seed: int, tint: float) -> Path:
    """``n`` smooth random photo-like JPEGs of ``size`` (width, height; an int is square): low-frequency
    noise plus detail."""
    width, height = (size, size) if isinstance(size, int) else size
    gen = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        low = gen.random((6, 6, 3)) * 255 * tint
        img = Image.fromarray(low.astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.int16) + gen.integers(-20, 21, (height, width, 3))
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(root / f"{i:05d}.jpg", quality=90)
    return root


def _size(text: str) -> tuple[int, int]:
    """``--size``: ``500x375`` or ``400`` (square)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT or a side in pixels") from None
    if len(parts) not in (1, 2) or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT or a side in pixels (each >= 8)")
    return (parts[0], parts[-1])


def _timed(cmd: list[str], env: dict[str, str], check: bool = True) -> tuple[float, float, str, str, int]:
    """Run ``cmd``; return wall seconds, peak RSS in MiB of its process tree (wait4 rusage) and stdout."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # rusage of this child and its reaped children only
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024, stdout, stderr, proc.returncode


def _run_pytorch_fid(a: Path, b: Path, env: dict[str, str], work: Path) -> tuple[Run, str]:
    """Time ``python -m pytorch_fid A B``. Returns the run and a note.

    Below 2048 images pytorch-fid's ``sqrtm`` often fails at the very end ("Imaginary component",
    pytorch-fid #13) after doing all the work, so its wall time is still the end-to-end cost. Its
    number is then taken as our float64 distance of pytorch-fid's *own* statistics (written by two
    untimed ``--save-stats`` runs), which still checks that both tools compute the same features.
    """
    cmd = [sys.executable, "-m", "pytorch_fid", "--device", "cpu"]
    wall, rss, out, err, code = _timed(cmd + [str(a), str(b)], env, check=False)
    match = re.search(r"FID:\s+([0-9.eE+-]+)", out)
    if code == 0 and match:
        return Run(wall, rss, float(match.group(1))), "pytorch-fid computed its own FID"
    reason = (err.strip().splitlines() or ["?"])[-1]

    stats = []
    for src, name in ((a, "a.npz"), (b, "b.npz")):
        (work / name).unlink(missing_ok=True)  # pytorch-fid refuses to overwrite (a second repeat)
        _timed(cmd + ["--save-stats", str(src), str(work / name)], env)
        stats.append(load_stats(work / name)[0])
    fid = frechet_distance(stats[0].mu, stats[0].sigma, stats[1].mu, stats[1].sigma)
    return Run(wall, rss, fid), f"pytorch-fid failed at the distance ({reason}); its FID = our distance of its stats"


def _run_ours(a: Path, b: Path, env: dict[str, str]) -> Run:
    exe = Path(sys.executable).with_name("vpt-advisor")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "advisor.cli"]
    wall, rss, out, _, _ = _timed(cmd + ["fid", str(a), str(b), "--json", "--device", "cpu"], env)
    return Run(wall, rss, float(json.loads(out)["fid"]))


def _clear_cache(home: Path) -> None:
    for p in (home / "cache").glob("features.sqlite*"):
        p.unlink()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the side-by-side table; exit 1 if a number disagrees."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=160, help="images per folder (two folders)")
    ap.add_argument("--size", type=_size, default=(500, 375), help="WIDTHxHEIGHT or a side in pixels (all alike)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per tool (medians are printed)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 60 images per folder")
    ap.add_argument("--no-stages", action="store_true", help="skip the stage-by-stage breakdown")
    ap.add_argument("--batch-sweep", action="store_true", help=f"also time the forward pass at batch sizes {SWEEP}")
    args = ap.parse_args(argv)
    n = 60 if args.quick else args.n_images

    with tempfile.TemporaryDirectory(prefix="fid-speed-") as tmp:
        root = Path(tmp)
        env = dict(os.environ, TORCH_HOME=str(root / "torch"), VPT_ADVISOR_HOME=str(root / "home"),
                   HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
        # Random weights in pytorch-fid's real file format, where both tools look, made in a subprocess:
        # a parent that imported torch would inflate the children's reported peak RSS.
        gen = ("from pathlib import Path; from benchmarks.perf.random_inception import install_inception_weights, "
               "write_random_inception; "
               f"install_inception_weights(write_random_inception(Path({str(root)!r}) / 'w.pth'))")
        subprocess.run([sys.executable, "-c", gen], env=env, check=True, cwd=Path(__file__).resolve().parents[2])
        a = make_folder(root / "a", n, args.size, seed=0, tint=1.0)
        b = make_folder(root / "b", n, args.size, seed=1, tint=0.7)
        theirs, cold, warm, notes = [], [], [], set()
        for _ in range(args.repeats):
            run, note = _run_pytorch_fid(a, b, env, root)
            theirs.append(run)
            notes.add(note)
            _clear_cache(root / "home")
            cold.append(_run_ours(a, b, env))
            warm.append(_run_ours(a, b, env))
        load_after = os.getloadavg()[0]
        os.environ["VPT_ADVISOR_HOME"] = env["VPT_ADVISOR_HOME"]  # the weights-hash memo goes to the temp home
        stages = None if args.no_stages else measure_stages([a, b], root / "w.pth", root, env,
                                                            SWEEP if args.batch_sweep else ())

    return _report(n, args, theirs, cold, warm, sorted(notes), load_after, stages)


def _report(n: int, args: argparse.Namespace, theirs: list[Run], cold: list[Run], warm: list[Run], notes: list[str],
            load_after: float, stages: Stages | None) -> int:
    """Print the side-by-side table, the ratios and the stages; 1 when a number disagrees."""
    total = 2 * n
    def med(runs: list[Run], attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs)

    rows = [("pytorch-fid", theirs), ("vpt-advisor cold", cold), ("vpt-advisor warm", warm)]
    print(cpu_line())
    print(f"FID speed: 2 folders x {n} images of {args.size[0]}x{args.size[1]} JPEG, CPU, torch threads "
          f"{os.environ.get('OMP_NUM_THREADS', 'default')}, load average {os.getloadavg()[0]:.2f}, "
          f"{args.repeats} repeat(s)")
    print(f"{'tool':<18}{'wall s':>9}{'img/s':>9}{'peak RSS MiB':>14}{'FID':>18}")
    for name, runs in rows:
        wall = med(runs, "wall_s")
        print(f"{name:<18}{wall:>9.2f}{total / wall:>9.1f}{med(runs, 'peak_rss_mib'):>14.0f}{med(runs, 'fid'):>18.6f}")
    for note in notes:
        print(f"note: {note}")
    speed_cold = med(theirs, "wall_s") / med(cold, "wall_s")
    speed_warm = med(cold, "wall_s") / med(warm, "wall_s")
    rel = abs(med(cold, "fid") - med(theirs, "fid")) / abs(med(theirs, "fid"))
    rel_warm = abs(med(warm, "fid") - med(cold, "fid")) / abs(med(cold, "fid"))
    print(f"cold speed-up vs pytorch-fid: {speed_cold:.2f}x (target >= {TARGET_COLD}x)")
    print(f"warm speed-up vs cold:        {speed_warm:.1f}x (target >= {TARGET_WARM}x)")
    print(f"FID relative difference vs pytorch-fid: {rel:.2e} (tolerance {FID_RTOL:g}); warm vs cold: {rel_warm:.1e}")
    print(f"load average at the end of the timed runs: {load_after:.2f}")
    if stages is not None:
        print("\n".join(stages.lines(med(cold, "wall_s"))))
    return 0 if rel <= FID_RTOL and rel_warm <= FID_RTOL else 1


if __name__ == "__main__":
    raise SystemExit(main())
