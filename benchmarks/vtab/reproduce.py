"""The ``reproduce-vtab`` use case: reconcile the options, check the budget, run the sweep, build the table.

The CLI (``advisor.commands.vtab``) only parses options into :func:`build_sweep_request`, calls
:func:`reproduce_vtab` with its progress callbacks and renders the result; ``--out`` files are
written by :func:`write_outputs`.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.vtab.plan import ProtocolPlan, build_plan
from benchmarks.vtab.protocol import get_protocol, parse_detail_overrides
from benchmarks.vtab.run import EventCallback, SweepReport, SweepRequest, run_sweep
from benchmarks.vtab.tables import VtabTable, build_table, to_csv, to_json, to_markdown
from engine.config.train import BackboneSpec
from engine.config.validate import check_img_size, parse_model_args, parse_sizes, split_list
from engine.errors import BudgetError, ConfigError, RunFailedError
from engine.progress import StageProgress, no_progress

__all__ = ["parse_model_args", "build_sweep_request", "check_budget", "plan_vtab", "reproduce_vtab", "write_outputs"]


def build_sweep_request(root: Path, *, protocol: str, tasks: list[str] | None, methods: list[str] | None,
                        sizes: list[str] | None, backend: str, scheduler: str | None, jobs: int, db: Path | None,
                        model: str, weights: Path | None, random_init: bool, model_args: list[str] | None,
                        img_size: int | None, device: str, batch_vpt: bool,
                        protocol_set: list[str] | None = None) -> SweepRequest:
    """Reconcile the CLI flags into a ``SweepRequest`` (pure: no I/O beyond validation)."""
    if backend != "local" and jobs:
        raise ConfigError("--jobs applies to --backend local only; the cluster decides its own workers")
    if backend == "local" and scheduler:
        raise ConfigError("--scheduler needs --backend dask (or ray)")
    method_list = split_list(methods) or ["ft", "vpt"]
    bad = [m for m in method_list if m not in ("ft", "vpt")]
    if bad:
        raise ConfigError(f"unknown method(s) {bad}; choose ft and/or vpt")
    size_list = parse_sizes(sizes)
    if img_size:
        check_img_size(img_size)
    overrides: dict[str, object] = {"img_size": img_size} if img_size else {}
    overrides.update(parse_detail_overrides(protocol_set))
    return SweepRequest(root=root, protocol=get_protocol(protocol, **overrides), tasks=split_list(tasks) or None,
                        methods=tuple(dict.fromkeys(method_list)), sizes=size_list, backend=backend,
                        scheduler=scheduler, jobs=jobs, db=db, device=device, batch_vpt=batch_vpt,
                        backbone=BackboneSpec(model=model, weights=weights, random_init=random_init,
                                              model_kwargs=parse_model_args(model_args)))


def check_budget(request: SweepRequest, yes: bool) -> None:
    """Refuse the paper protocol on a local CPU unless ``yes``: it would run for weeks."""
    if yes or request.protocol.name == "quick" or request.backend != "local":
        return
    from engine.device import resolve_device

    if resolve_device(request.device).type == "cpu":
        raise BudgetError("the paper protocol trains thousands of ViT-B/16 epochs per task, far beyond a CPU; "
                          "use --protocol quick for a smoke test, a GPU or --backend dask, or --yes to start anyway")


def plan_vtab(request: SweepRequest) -> ProtocolPlan:
    """``reproduce-vtab --plan``: what the sweep would train, per task, method and grid point; reads no data."""
    return build_plan(request)


def reproduce_vtab(request: SweepRequest, *, yes: bool = False, progress: StageProgress = no_progress,
                   on_event: EventCallback | None = None) -> tuple[SweepReport, VtabTable]:
    """Check the budget, run (or resume) the sweep and compare it with the paper's tables.

    Args:
        request: the reconciled request (:func:`build_sweep_request`).
        yes: start the paper protocol on a local CPU anyway.
        progress: opens the "VTAB-1k trials" stage (trials done of planned; finished ones count).
        on_event: one-line messages about phases and unusable tasks.

    Raises:
        BudgetError: the paper protocol on a local CPU without ``yes``.
        RunFailedError: trials ran and every one failed (identical errors grouped in the message).
        ConfigError, DatasetError, StoreError: as :func:`benchmarks.vtab.run.run_sweep`.
    """
    check_budget(request, yes)
    with progress("VTAB-1k trials") as on_progress:
        report = run_sweep(request, on_progress=on_progress, on_event=on_event)
    if report.all_failed:  # an empty table with exit 0 would read as "nothing to do"
        raise RunFailedError(f"every trial failed: {'; '.join(report.failure_summary)}; fix the cause and rerun "
                             f"(failed trials are retried; store {report.db})")
    return report, build_table(report)


def write_outputs(out: Path, request: SweepRequest, table: VtabTable, report: SweepReport) -> list[Path]:
    """Write ``config.json``, ``table.md/.csv/.json`` and ``report.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"config.json": request.model_dump_json(indent=2) + "\n", "table.md": to_markdown(table),
             "table.csv": to_csv(table), "table.json": to_json(table), "report.json": report.model_dump_json(indent=2)}
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    return [out / n for n in files]
