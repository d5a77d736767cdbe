"""Training throughput and peak memory of FT vs VPT-deep vs VPT-shallow, side by side in one run.

ViT-B/16 at 224 px, batch 64 by default (random weights: speed does not depend on their values),
through the project's own training step (``engine.train.loop.train_one_epoch`` over a decode-once
uint8 tensor). Each method runs in its **own subprocess**, so the CPU peak RSS of one method is
not polluted by another; on CUDA the peak is ``max_memory_allocated``. FLOPs per training step
are counted once per method with ``torch.utils.flop_counter`` on the meta device (no compute),
so on a GPU the bf16 model-FLOPs utilisation (MFU) is reported against the device's dense bf16
peak. Targets (issue 3): VPT-deep peak memory <= 0.7x FT; >= 40 % MFU for FT in bf16 on GPU.

Run: ``python -m benchmarks.perf.train_throughput`` (GPU), or on a CPU e.g.
``python -m benchmarks.perf.train_throughput --batch-size 32 --steps 2 --threads 2``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

__all__ = ["main", "count_step_flops", "peak_bf16_flops"]

_PEAK_BF16_TFLOPS = {  # dense (no sparsity) tensor-core bf16 peaks from the vendors' datasheets
    "H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0,
    "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.2,
}


def peak_bf16_flops(gpu_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a known GPU (longest matching name wins), else None."""
    matches = [k for k in _PEAK_BF16_TFLOPS if k.lower() in gpu_name.lower()]
    return _PEAK_BF16_TFLOPS[max(matches, key=len)] * 1e12 if matches else None


def _build(model_name: str, method: str, prompts: int, img_size: int, classes: int) -> Any:
    import timm

    from engine.train.transfer import build_model

    backbone = timm.create_model(model_name, pretrained=False, num_classes=0, img_size=img_size)
    return build_model(backbone, method, classes, num_prompts=prompts)  # type: ignore[arg-type]


def count_step_flops(model_name: str, method: str, *, prompts: int, img_size: int, batch: int,
                     classes: int = 100) -> float:
    """FLOPs of one forward+backward training step, counted on the meta device."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = _build(model_name, method, prompts, img_size, classes)
        x = torch.randn(batch, 3, img_size, img_size)
        y = torch.zeros(batch, dtype=torch.long)
        with FlopCounterMode(display=False) as counter:
            F.cross_entropy(model(x), y).backward()
    return float(counter.get_total_flops())


def _worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from engine.device import autocast_context, resolve_device
    from engine.train.methods import uses_sgd
    from engine.data.tensors import ImageTensors, TensorLoader
    from engine.train.loop import make_optimizer, train_one_epoch
    from engine.train.transfer import set_train_mode

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    torch.manual_seed(0)
    model = _build(args.model, args.worker, args.prompts, args.img_size, 100)
    if args.grad_checkpointing:
        if hasattr(model, "grad_checkpointing") and hasattr(model, "prompts"):
            model.grad_checkpointing = True
        else:
            model.set_grad_checkpointing(True)
    model.to(device)
    kind = "sgd" if uses_sgd(args.worker) else "adamw"
    optimizer = make_optimizer(model, kind=kind, lr=1e-4, weight_decay=1e-4, device=device)
    gen = torch.Generator().manual_seed(0)
    data = ImageTensors(torch.randint(0, 256, (args.batch_size, 3, args.img_size, args.img_size), generator=gen,
                                      dtype=torch.uint8), torch.randint(0, 100, (args.batch_size,), generator=gen))
    loader = TensorLoader(data, batch_size=args.batch_size, device=device)
    autocast = autocast_context(device, precision)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    set_train_mode(model)
    for i in range(args.warmup + args.steps):
        stats = train_one_epoch(model, loader, optimizer, None, autocast=autocast, device=device)  # one step
        if i >= args.warmup:
            times.append(stats.seconds)
    if device.type == "cuda":
        peak, kind_name = int(torch.cuda.max_memory_allocated(device)), "cuda max_memory_allocated"
        gpu = torch.cuda.get_device_name(device)
    else:
        peak, kind_name = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu peak RSS"
        gpu = ""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"method": args.worker, "step_s": statistics.median(times), "steps": times, "peak_bytes": peak,
            "peak_kind": kind_name, "rss_before_train": rss_before, "device": str(device), "gpu": gpu,
            "precision": precision, "threads": torch.get_num_threads(), "trainable": trainable,
            "torch": torch.__version__}


def _run_method(method: str, argv: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.perf.train_throughput", "--worker", method, *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{method} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="FT vs VPT training throughput and peak memory.")
    parser.add_argument("--methods", default="full,vpt-deep,vpt-shallow")
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=10, help="Prompt tokens per set (VPT README examples: 10).")
    parser.add_argument("--steps", type=int, default=10, help="Timed steps (median reported).")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps first.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default=None, help="fp32/bf16/fp16 (default: bf16 on GPU, fp32 on CPU).")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default).")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="Override the GPU's dense bf16 peak.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _measure(args: argparse.Namespace, passthrough: list[str]) -> list[dict[str, Any]]:
    """One subprocess per method, plus FLOPs, img/s, TFLOP/s and MFU per row."""
    rows = []
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        row = _run_method(method, passthrough)
        row["flops_per_step"] = count_step_flops(args.model, method, prompts=args.prompts, img_size=args.img_size,
                                                 batch=args.batch_size)
        row["img_s"] = args.batch_size / row["step_s"]
        row["achieved_tflops"] = row["flops_per_step"] / row["step_s"] / 1e12
        peak = args.peak_tflops * 1e12 if args.peak_tflops else (peak_bf16_flops(row["gpu"]) if row["gpu"] else None)
        row["mfu"] = row["flops_per_step"] / row["step_s"] / peak if peak and row["precision"] == "bf16" else None
        rows.append(row)
    return rows


def _print_table(args: argparse.Namespace, rows: list[dict[str, Any]], seconds: float) -> None:
    ft = next((r for r in rows if r["method"] == "full"), None)
    first = rows[0]
    where = first["gpu"] or f"({first['threads']} threads)"
    print(f"{args.model} @ {args.img_size}px, batch {args.batch_size}, {args.prompts} prompts, "
          f"{first['device']} {where}, {first['precision']}, "
          f"torch {first['torch']}; median of {args.steps} steps after {args.warmup} warm-up; "
          f"{seconds:.0f}s total")
    cpu = first["peak_kind"] == "cpu peak RSS"
    print(f"{'method':<12}{'img/s':>9}{'x FT':>7}{'peak mem GB':>13}{'x FT':>7}"
          + (f"{'train GB':>10}{'x FT':>7}" if cpu else "")
          + f"{'GFLOP/img':>11}{'TFLOP/s':>9}{'MFU':>7}{'trainable':>12}")
    for r in rows:
        speed = f"{r['img_s'] / ft['img_s']:.2f}" if ft else "-"
        mem = f"{r['peak_bytes'] / ft['peak_bytes']:.2f}" if ft else "-"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        extra = ""
        if cpu:  # growth of the peak RSS during training (model and libraries excluded)
            grow = r["peak_bytes"] - r["rss_before_train"]
            ft_grow = ft["peak_bytes"] - ft["rss_before_train"] if ft else 0
            extra = f"{grow / 1e9:>10.2f}" + (f"{grow / ft_grow:>7.2f}" if ft_grow > 0 else f"{'-':>7}")
        print(f"{r['method']:<12}{r['img_s']:>9.2f}{speed:>7}{r['peak_bytes'] / 1e9:>13.2f}{mem:>7}{extra}"
              f"{r['flops_per_step'] / args.batch_size / 1e9:>11.1f}{r['achieved_tflops']:>9.2f}{mfu:>7}"
              f"{r['trainable']:>12,}")
    print(f"peak memory = {first['peak_kind']}" + (" (whole process, incl. ~"
          f"{first['rss_before_train'] / 1e9:.2f} GB before training)" if first["peak_kind"] == "cpu peak RSS" else ""))


def _print_targets(rows: list[dict[str, Any]]) -> None:
    ft = next((r for r in rows if r["method"] == "full"), None)
    deep = next((r for r in rows if r["method"] == "vpt-deep"), None)
    if ft and deep:
        ratio = deep["peak_bytes"] / ft["peak_bytes"]
        print(f"target VPT-deep peak memory <= 0.70x FT: {ratio:.2f}x {'PASS' if ratio <= 0.7 else 'MISS'}")
    if ft and ft["mfu"] is not None:
        print(f"target FT bf16 MFU >= 40%: {100 * ft['mfu']:.1f}% {'PASS' if ft['mfu'] >= 0.4 else 'MISS'}")


def main(argv: list[str] | None = None) -> None:
    """Run every method in a subprocess and print a side-by-side table with ratios to FT."""
    args = _parse(argv)
    if args.worker:
        print(json.dumps(_worker(args)))
        return
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--json"]
    start = time.perf_counter()
    rows = _measure(args, passthrough)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    _print_table(args, rows, time.perf_counter() - start)
    _print_targets(rows)


if __name__ == "__main__":
    main()
