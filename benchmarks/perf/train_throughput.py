"""Training throughput and peak memory of FT vs VPT-deep vs VPT-shallow, side by side in one run.

ViT-B/16 at 224 px, batch 64 by default (random weights: speed does not depend on their values),
through the project's own training step (``engine.train.loop.train_one_epoch`` over a decode-once
uint8 tensor). Each method runs in its **own subprocess**, so the CPU peak RSS of one method is
not polluted by another; on CUDA the peak is ``max_memory_allocated``. FLOPs per training step
are counted once per method with ``torch.utils.flop_counter`` on the meta device (no compute),
so on a GPU the bf16 model-FLOPs utilisation (MFU) is reported against the device's dense bf16
peak; the analytic count (:func:`vit_step_flops`, matmul FLOPs of the ViT blocks) is printed beside
it, and TFLOP/s and MFU use the analytic count whenever CUDA is present.

Precisions are measured side by side (``--precisions fp32,bf16``): the bf16/fp32 speed-up per method
is printed against issue 11's target (>= 1.6x on a CPU with native bf16). The CPU's bf16 capability
(``/proc/cpuinfo`` flags avx512_bf16/amx_bf16, torch's CPU capability) is printed first; where bf16
is emulated the bf16 runs are skipped (``--allow-emulated-bf16`` times them anyway) and the table
says the target cannot be measured on this machine.

Targets: VPT-deep peak memory <= 0.7x FT (issue 3); >= 40 % MFU for FT in bf16 on GPU (issue 3);
bf16 >= 1.6x fp32 for FT and VPT-deep on a native-bf16 CPU (issue 11).

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

from benchmarks.perf.cpuinfo import cpu_line
from engine.train.methods import get_method, method_specs, paper_method, prompt_methods, uses_sgd

# timm, torch are imported inside the functions that use them: importing this module does not load them.

__all__ = ["main", "count_step_flops", "peak_bf16_flops", "vit_step_flops"]

BF16_TARGET = 1.6
"""Issue 11: bf16 autocast at least 1.6x fp32 img/s for FT and VPT-deep on a CPU with native bf16."""

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
    return build_model(backbone, method, classes, num_prompts=prompts)


def vit_step_flops(*, depth: int, dim: int, tokens: int, batch: int, method: str, mlp_ratio: float = 4.0) -> float:
    """Analytic matmul FLOPs of one training step of a ViT (patch embedding and head left out).

    Per block and image, forward: QKV and output projections ``8 N D^2``, MLP ``4 r N D^2``
    (``r = mlp_ratio``), attention scores and weighted sum ``4 N^2 D`` (2 FLOPs per multiply-add).
    Backward costs 2x forward when weights are trained (input and weight gradients) and 1x when only
    prompts and head are (input gradients only, still needed through every block): FT ``3x``,
    prompt methods ``2x`` forward. ``tokens`` includes the prompts.
    """
    forward = depth * (8 * tokens * dim**2 + 4 * mlp_ratio * tokens * dim**2 + 4 * tokens**2 * dim)
    # a staged method (FT-then-PT) is timed in its fine-tuning stage, which trains the backbone
    factor = 3.0 if any("backbone" in get_method(s).trains for s in get_method(method).stage_names) else 2.0
    return factor * forward * batch


def _tokens(model_name: str, method: str, *, prompts: int, img_size: int) -> tuple[int, int, int]:
    """(depth, width, tokens incl. CLS and prompts) of a timm ViT, from its config (no weights)."""
    import timm

    with __import__("torch").device("meta"):
        m = timm.create_model(model_name, pretrained=False, num_classes=0, img_size=img_size)
    from engine.train.vpt import as_vit, vit_geometry

    depth, width, patch = vit_geometry(as_vit(m))
    extra = prompts if method in prompt_methods() else 0
    return depth, width, (img_size // patch) ** 2 + 1 + extra


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

    from engine.data.tensors import ImageTensors, TensorLoader
    from engine.device import Precision, autocast_context, resolve_device
    from engine.train.loop import make_optimizer, train_one_epoch
    from engine.train.transfer import set_train_mode

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision: Precision = args.precision or "fp32"
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


def _run_method(method: str, precision: str, argv: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.perf.train_throughput", "--worker", method, *argv,
           "--precision", precision]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{method} ({precision}) worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _methods(text: str | None) -> list[str]:
    """``--methods``, or every method on a side of the FT-vs-VPT question (the registry's)."""
    if text is None:
        return [s.name for s in method_specs() if s.side is not None]
    return [m.strip() for m in text.split(",") if m.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="FT vs VPT training throughput and peak memory.")
    parser.add_argument("--methods", default=None, help="Comma-separated (default: the FT and VPT methods of the "
                        "method registry).")
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=10, help="Prompt tokens per set (VPT README examples: 10).")
    parser.add_argument("--steps", type=int, default=10, help="Timed steps (median reported).")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps first.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", default="auto",
                        help="Comma-separated fp32/bf16/fp16, measured side by side (auto: fp32 and bf16 on GPU or "
                        "on a CPU with native bf16, fp32 elsewhere).")
    parser.add_argument("--allow-emulated-bf16", action="store_true",
                        help="Time bf16 even where the CPU emulates it (slow; never used by the pilot).")
    parser.add_argument("--precision", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default).")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="Override the GPU's dense bf16 peak.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


def _precisions(args: argparse.Namespace, native_bf16: bool, cuda: bool) -> tuple[list[str], str | None]:
    """The precisions to time and, where bf16 is skipped or emulated, why."""
    wanted = (["fp32", "bf16"] if cuda or native_bf16 else ["fp32"]) if args.precisions == "auto" else [
        p.strip() for p in args.precisions.split(",") if p.strip()]
    note = None
    if not cuda and not native_bf16:
        note = (f"bf16 is emulated on this CPU, so the >= {BF16_TARGET}x bf16 target cannot be measured on this "
                "machine")
        if "bf16" in wanted and not args.allow_emulated_bf16:
            wanted.remove("bf16")
            note += " (bf16 runs skipped; --allow-emulated-bf16 times them anyway)"
    return wanted, note


def _add_flops(row: dict[str, Any], args: argparse.Namespace) -> None:
    method = row["method"]
    row["flops_per_step"] = count_step_flops(args.model, method, prompts=args.prompts, img_size=args.img_size,
                                             batch=args.batch_size)
    depth, dim, tokens = _tokens(args.model, method, prompts=args.prompts, img_size=args.img_size)
    row["analytic_flops_per_step"] = vit_step_flops(depth=depth, dim=dim, tokens=tokens, batch=args.batch_size,
                                                    method=method)
    row["img_s"] = args.batch_size / row["step_s"]
    flops = row["analytic_flops_per_step"] if row["gpu"] else row["flops_per_step"]
    row["achieved_tflops"] = flops / row["step_s"] / 1e12
    peak = args.peak_tflops * 1e12 if args.peak_tflops else (peak_bf16_flops(row["gpu"]) if row["gpu"] else None)
    row["mfu"] = flops / row["step_s"] / peak if peak and row["precision"] == "bf16" else None


def main(argv: list[str] | None = None) -> None:
    """Run every method (and precision) in a subprocess and print side-by-side tables with ratios."""
    args = _parser().parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args)))
        return
    from engine.device import cpu_bf16_support, resolve_device

    cpu = cpu_bf16_support()
    cuda = resolve_device(args.device).type == "cuda"
    precisions, note = _precisions(args, cpu.native, cuda)
    raw = argv if argv is not None else sys.argv[1:]
    passthrough = [a for a in raw if a not in ("--json", "--allow-emulated-bf16")]
    rows = []
    start = time.perf_counter()
    for precision in precisions:
        for method in _methods(args.methods):
            row = _run_method(method, precision, passthrough)
            _add_flops(row, args)
            rows.append(row)
    if args.json:
        print(json.dumps({"cpu": cpu_line(), "bf16": cpu.describe(), "bf16_note": note, "rows": rows}, indent=2))
        return
    print(cpu_line())
    print(cpu.describe())
    for precision in precisions:
        _print_table(args, [r for r in rows if r["precision"] == precision], time.perf_counter() - start)
    _print_bf16(rows, note)


def _print_table(args: argparse.Namespace, rows: list[dict[str, Any]], total_s: float) -> None:
    ft = next((r for r in rows if r["method"] == paper_method("FT").name), None)
    first = rows[0]
    where = first["gpu"] or f"({first['threads']} threads)"
    print(f"\n{args.model} @ {args.img_size}px, batch {args.batch_size}, {args.prompts} prompts, "
          f"{first['device']} {where}, {first['precision']}, "
          f"torch {first['torch']}; median of {args.steps} steps after {args.warmup} warm-up; "
          f"{total_s:.0f}s total so far")
    cpu = first["peak_kind"] == "cpu peak RSS"
    print(f"{'method':<12}{'img/s':>9}{'x FT':>7}{'peak mem GB':>13}{'x FT':>7}"
          + (f"{'train GB':>10}{'x FT':>7}" if cpu else "")
          + f"{'GFLOP/img':>11}{'analytic':>10}{'TFLOP/s':>9}{'MFU':>7}{'trainable':>12}")
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
              f"{r['flops_per_step'] / args.batch_size / 1e9:>11.1f}"
              f"{r['analytic_flops_per_step'] / args.batch_size / 1e9:>10.1f}{r['achieved_tflops']:>9.2f}{mfu:>7}"
              f"{r['trainable']:>12,}")
    print(f"peak memory = {first['peak_kind']}" + (" (whole process, incl. ~"
          f"{first['rss_before_train'] / 1e9:.2f} GB before training)" if cpu else ""))
    deep = next((r for r in rows if r["method"] == paper_method("VPT").name), None)
    if ft and deep:
        ratio = deep["peak_bytes"] / ft["peak_bytes"]
        print(f"target VPT-deep peak memory <= 0.70x FT: {ratio:.2f}x {'PASS' if ratio <= 0.7 else 'MISS'}")
    if ft and ft["mfu"] is not None:
        print(f"target FT bf16 MFU >= 40%: {100 * ft['mfu']:.1f}% {'PASS' if ft['mfu'] >= 0.4 else 'MISS'}")


def _print_bf16(rows: list[dict[str, Any]], note: str | None) -> None:
    by = {(r["method"], r["precision"]): r for r in rows}
    pairs = [(m, by[(m, "fp32")], by[(m, "bf16")]) for m, p in by if p == "fp32" and (m, "bf16") in by]
    if pairs:
        print(f"\n{'method':<12}{'fp32 img/s':>12}{'bf16 img/s':>12}{'bf16/fp32':>11}  target >= {BF16_TARGET}x")
        for m, f32, b16 in pairs:
            ratio = b16["img_s"] / f32["img_s"]
            verdict = "PASS" if ratio >= BF16_TARGET else "MISS"
            if note:
                verdict = "not measurable (emulated bf16)"
            print(f"{m:<12}{f32['img_s']:>12.2f}{b16['img_s']:>12.2f}{ratio:>11.2f}  {verdict}")
    if note:
        print(note + ".")


if __name__ == "__main__":
    main()
