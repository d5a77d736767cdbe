"""Sweep orchestration for ``vpt-advisor reproduce-vtab``: plan, run, select, final runs, collect.

1. Check the VTAB-1k root (:mod:`benchmarks.vtab.layout`); unusable tasks are reported and left out.
2. Plan the search: task x method x size x (lr, wd) grid, one run each with the search seed.
3. Run every trial not yet finished in the store (:mod:`benchmarks.vtab.store`) through the scheduler
   (:mod:`benchmarks.vtab.schedule`); VPT grid points of one task/size are one batched unit.
4. Select per task/method/size on val accuracy (ties: smaller lr, then smaller wd).
5. Retrain the selection on train+val with each final seed, test, and collect mean/std per cell.

Everything is written to the store as soon as it finishes; a rerun of the same request skips
finished trials, so an interrupted sweep (even ``kill -9``) resumes where it stopped.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from benchmarks.vtab.layout import LayoutReport, check_layout
from benchmarks.vtab.protocol import MethodName, Protocol, select_best
from benchmarks.vtab.schedule import Backend, run_units
from benchmarks.vtab.store import TrialRecord, TrialStore
from benchmarks.vtab.tasks import TASKS, TaskSpec, resolve_tasks
from benchmarks.vtab.trials import TrialConfig, TrialResult, group_key
from engine.config import FrozenModel
from engine.config.train import BackboneSpec
from engine.errors import ConfigError
from engine.fingerprint import file_fingerprint, files_fingerprint, path_fingerprint
from engine.io import json_digest
from engine.paths import data_home
from engine.progress import ProgressCallback, report

__all__ = ["SweepRequest", "CellResult", "SweepReport", "default_db_path", "plan_search", "plan_final",
           "make_units", "run_sweep", "summarize_failures"]

log = logging.getLogger(__name__)

EventCallback = Callable[[str], None]


class SweepRequest(FrozenModel):
    """A resolved ``reproduce-vtab`` request (the CLI builds it; written next to the results)."""

    root: Path = Field(description="VTAB-1k root in the NOAH layout.")
    protocol: Protocol = Field(default_factory=Protocol, description="The protocol (paper or quick).")
    tasks: list[str] | None = Field(None, description="Task names/groups (None = all 19).")
    methods: tuple[MethodName, ...] = Field(("ft", "vpt"), min_length=1, description="Methods to run.")
    sizes: tuple[int, ...] = Field((800,), min_length=1, description="Training-set sizes (Tables 5-6).")
    backend: Backend = Field("local", description="local, dask or ray.")
    scheduler: str | None = Field(None, description="Dask scheduler / Ray address.")
    jobs: int = Field(0, ge=0, description="Local worker processes (0 = one per GPU, or 1).")
    db: Path | None = Field(None, description="Results store (None = default_db_path(protocol)).")
    backbone: BackboneSpec = Field(default_factory=BackboneSpec, description="The pretrained backbone.")
    device: str = Field("auto", description="Device spec resolved in each worker.")
    batch_vpt: bool = Field(True, description="Train a task's VPT grid (and final seeds) as one batched unit.")
    max_rows: int = Field(512, ge=1, description="Sequences per forward in batched VPT (memory bound).")


class CellResult(FrozenModel):
    """One task x method x size of the reproduction."""

    task: str = Field(description="Task key.")
    method: MethodName = Field(description="ft or vpt.")
    n_train: int = Field(description="Training size point.")
    lr: float | None = Field(None, description="Selected base lr.")
    weight_decay: float | None = Field(None, description="Selected weight decay.")
    val_acc: float | None = Field(None, description="Best search val accuracy (%).")
    search_done: int = Field(0, description="Finished search trials.")
    search_total: int = Field(0, description="Planned search trials.")
    test_accs: list[float] = Field(default_factory=list, description="Test accuracy per final seed (%).")
    seeds: list[int] = Field(default_factory=list, description="Seeds of test_accs.")
    mean: float | None = Field(None, description="Mean test accuracy over the final seeds (%).")
    std: float | None = Field(None, description="Sample std over the final seeds (points).")


class SweepReport(FrozenModel):
    """Everything ``reproduce-vtab`` renders."""

    request: SweepRequest = Field(description="The resolved request.")
    db: str = Field(description="The results store used.")
    layout: LayoutReport = Field(description="The up-front layout check.")
    cells: list[CellResult] = Field(default_factory=list, description="Results per task/method/size.")
    counts: dict[str, int] = Field(default_factory=dict, description="Store rows per status after the run.")
    ran: int = Field(0, description="Trials run by this invocation.")
    reused: int = Field(0, description="Finished trials found in the store and skipped.")
    failures: list[str] = Field(default_factory=list, description="Failed trials (retried by the next run).")
    failed: int = Field(0, description="Trials that failed in this invocation.")
    failure_summary: list[str] = Field(default_factory=list,
                                       description="Identical errors grouped: '12 trials failed: <error>'.")
    warnings: list[str] = Field(default_factory=list, description="Store problems that were healed, and the like.")
    skipped: dict[str, int] = Field(default_factory=dict,
                                    description="List-file entries skipped per task (bad files, duplicates...).")

    @property
    def all_failed(self) -> bool:
        """True when trials were attempted and not one finished (nor was found finished)."""
        return self.failed > 0 and self.ran == 0 and self.reused == 0


def summarize_failures(errors: list[str]) -> list[str]:
    """Group identical error texts, most frequent first: ``"12 trials failed: WeightsNotFoundError: ..."``."""
    counts = Counter(errors)
    return [f"{n} trial{'s' if n != 1 else ''} failed: {text}" for text, n in counts.most_common()]


def default_db_path(protocol: str) -> Path:
    """``<data home>/vtab/<protocol>.sqlite``."""
    return data_home() / "vtab" / f"{protocol}.sqlite"


def _data_fingerprint(root: str, folder: str) -> str:
    """One fingerprint of a task folder's list files and every image they name (hashes memoised by mtime)."""
    from engine.data.index import index_dataset
    from engine.errors import DatasetError

    parts = []
    for listing in sorted((Path(root) / folder).glob("*.txt")):
        parts.append(f"{listing.name}={file_fingerprint(listing)}")
        try:
            samples = index_dataset(listing).samples
        except DatasetError:  # not a list of this task's images (a README...): its bytes are enough
            continue
        parts.append(files_fingerprint(s.path for s in samples))
    return json_digest(parts)


def _base(request: SweepRequest, task: TaskSpec, method: MethodName, n_train: int, folder: str,
          content: dict[str, str]) -> dict[str, Any]:
    """The fields of a cell's trials besides ``phase`` and ``train``."""
    p = request.protocol
    return dict(root=str(Path(request.root).expanduser().resolve()), content=content, task=task.key, folder=folder,
                num_classes=task.num_classes, protocol=p.name, n_train=n_train, backbone=request.backbone,
                max_train=p.max_train, max_eval=p.max_eval, subset=p.subset,
                engine="batched" if (method == "vpt" and request.batch_vpt) else "fit")


def _prompts(protocol: Protocol, task: TaskSpec) -> int:
    """The task's prompt length from the paper, capped by the protocol's ``max_prompts``."""
    cap = protocol.max_prompts
    return task.prompt_length if cap is None else min(task.prompt_length, cap)


def plan_search(request: SweepRequest, layout: LayoutReport) -> list[TrialConfig]:
    """Every search trial of the usable tasks, in paper order."""
    checks = {t.key: t for t in layout.tasks if t.status == "ok"}
    p = request.protocol
    out = []
    weights = path_fingerprint(request.backbone.weights) or "hub"
    for key, check in checks.items():
        content = {"weights": weights, "data": _data_fingerprint(str(Path(request.root).expanduser().resolve()),
                                                                check.folder)}
        for method in request.methods:
            for n_train in (s for s in request.sizes if s in check.sizes):
                base = _base(request, TASKS[key], method, n_train, check.folder, content)
                out += [TrialConfig(**base, phase="search", train=p.trial_train(
                            method, lr=lr, weight_decay=wd, seed=p.search_seed, num_prompts=_prompts(p, TASKS[key])))
                        for lr, wd in p.grid(method)]
    return out


def _selection(search: list[TrialConfig], store: TrialStore) -> dict[tuple[str, str, int], tuple[float, float, float]]:
    finished = {r.hash: r for r in store.records(status="finished", phase="search")}
    points: dict[tuple[str, str, int], list[tuple[float, float, float]]] = defaultdict(list)
    for cfg in search:
        rec = finished.get(cfg.key)
        if rec is not None:
            points[(cfg.task, cfg.method, cfg.n_train)].append(
                (cfg.train.lr, cfg.train.weight_decay, float(rec.metrics["eval_acc"])))
    return {cell: select_best(p) for cell, p in points.items()}


def plan_final(request: SweepRequest, search: list[TrialConfig], store: TrialStore) -> list[TrialConfig]:
    """Final runs of every cell whose search has at least one finished trial.

    A final run copies the selected search trial's training config (so it keeps that point's optimiser: FT
    at wd 0 is SGD under the original rule) and changes only the phase and the seed.
    """
    chosen = _selection(search, store)
    picked: dict[tuple[str, str, int], TrialConfig] = {}
    for cfg in search:
        cell = (cfg.task, cfg.method, cfg.n_train)
        if cell in chosen and (cfg.train.lr, cfg.train.weight_decay) == chosen[cell][:2]:
            picked.setdefault(cell, cfg)
    out = []
    for best in picked.values():
        out += [best.model_validate({**best.model_dump(), "phase": "final", "train": {
                    **best.train.model_dump(), "seed": seed}})
                for seed in request.protocol.final_seeds]
    return out


def make_units(configs: list[TrialConfig]) -> list[list[TrialConfig]]:
    """Group batchable VPT trials (same :func:`group_key`) into one unit each; others run alone."""
    groups: dict[Any, list[TrialConfig]] = {}
    units: list[list[TrialConfig]] = []
    for cfg in configs:
        key = group_key(cfg)
        if key is None:
            units.append([cfg])
        elif key in groups:
            groups[key].append(cfg)
        else:
            groups[key] = [cfg]
            units.append(groups[key])
    return units


class _Runner:
    """Runs planned trials, skipping finished ones, writing every outcome to the store at once."""

    def __init__(self, request: SweepRequest, store: TrialStore, total: int,
                 on_progress: ProgressCallback | None, on_event: EventCallback | None) -> None:
        self.request, self.store, self.total = request, store, total
        self.on_progress, self.on_event = on_progress, on_event
        self.done = self.ran = self.reused = 0
        self.failures: list[str] = []
        self.errors: list[str] = []

    def run(self, configs: list[TrialConfig], phase: str) -> None:
        status = self.store.statuses(c.key for c in configs)
        todo = [c for c in configs if status.get(c.key) != "finished"]
        self.reused += len(configs) - len(todo)
        self.done += len(configs) - len(todo)
        report(self.on_progress, self.done, self.total)
        if not todo:
            return
        units = make_units(todo)
        if self.on_event:
            done = len(configs) - len(todo)
            self.on_event(f"{phase}: {len(todo)} trials in {len(units)} units ({done} already done)")
        self.store.mark_running((c.key, c) for c in todo)

        def outcome(index: int, result: list[TrialResult] | str) -> None:
            unit = units[index]
            if isinstance(result, str):
                for cfg in unit:
                    self.store.mark_failed(cfg.key, result)
                    self.errors.append(result)
                    t = cfg.train
                    self.failures.append(f"{cfg.task}/{cfg.method}/{cfg.phase} lr={t.lr:g} wd={t.weight_decay:g} "
                                         f"seed={t.seed}: {result}")
            else:
                configs = {c.key: c for c in unit}
                for res in result:
                    self.store.mark_finished(res.key, metrics=res.metrics(), timings=res.timings(),
                                             versions=res.versions, device=res.device, config=configs.get(res.key))
                self.ran += len(unit)
            self.done += len(unit)
            report(self.on_progress, self.done, self.total)

        run_units(units, outcome, backend=self.request.backend, jobs=self.request.jobs,
                  scheduler=self.request.scheduler, device=self.request.device, max_rows=self.request.max_rows)


def _collect(search: list[TrialConfig], final: list[TrialConfig], store: TrialStore) -> list[CellResult]:
    records: dict[str, TrialRecord] = {r.hash: r for r in store.records(status="finished")}
    chosen = _selection(search, store)
    cells: dict[tuple[str, str, int], dict[str, Any]] = {}
    for cfg in search:
        cell = cells.setdefault((cfg.task, cfg.method, cfg.n_train), {"done": 0, "total": 0, "accs": [], "seeds": []})
        cell["total"] += 1
        cell["done"] += cfg.key in records
    for cfg in final:
        rec = records.get(cfg.key)
        if rec is not None:
            cells[(cfg.task, cfg.method, cfg.n_train)]["accs"].append(float(rec.metrics["eval_acc"]))
            cells[(cfg.task, cfg.method, cfg.n_train)]["seeds"].append(cfg.train.seed)
    out = []
    for (task, method, n), c in cells.items():
        lr, wd, val = chosen.get((task, method, n), (None, None, None))
        accs = c["accs"]
        out.append(CellResult(task=task, method=method, n_train=n, lr=lr, weight_decay=wd, val_acc=val,
                              search_done=c["done"], search_total=c["total"], test_accs=accs, seeds=c["seeds"],
                              mean=statistics.fmean(accs) if accs else None,
                              std=statistics.stdev(accs) if len(accs) > 1 else None))
    return out


def _check_backbone(request: SweepRequest) -> None:
    """Refuse a backbone no trial could build (weights out of reach, not a ViT, bad --model-arg, missing --weights)
    before any work: the weights once, up front, rather than every trial failing on them."""
    from engine.train.availability import check_backbone_available

    backbone = request.backbone
    check_backbone_available(backbone.model, weights=Path(backbone.weights) if backbone.weights else None,
                             random_init=backbone.random_init)
    from engine.train.models import check_backbone_request, check_weights_file

    check_backbone_request(backbone.model, img_size=request.protocol.train.img_size,
                           model_kwargs=dict(backbone.model_kwargs))
    if backbone.weights is not None:
        check_weights_file(Path(backbone.weights))


def run_sweep(request: SweepRequest, *, on_progress: ProgressCallback | None = None,
              on_event: EventCallback | None = None) -> SweepReport:
    """Run (or resume) a VTAB-1k reproduction and collect its results.

    Args:
        request: the resolved request.
        on_progress: ``(trials_done, trials_total)``; finished trials found in the store count as done.
        on_event: one-line messages about phases (for the CLI).

    Returns:
        The :class:`SweepReport` (cells of tasks that could not run are absent; see ``layout``).

    Raises:
        DatasetError: the root is not a folder.
        ConfigError: no requested task is usable, no task has a requested size, or the backbone
            cannot be built (checked before any trial).
        WeightsError: ``--weights`` is missing or of an unknown format.
        StoreError: the store cannot be opened (a damaged store is moved aside instead).
    """
    tasks = resolve_tasks(request.tasks)
    _check_backbone(request)
    layout = check_layout(request.root, tasks, tuple(request.sizes))
    if on_event is not None:  # up front: what cannot run and what to do about it
        for check in layout.unusable:
            on_event(f"{check.status} {check.key}: " + " ".join(check.problems))
    if not layout.usable:
        problems = "; ".join(f"{t.key}: {t.problems[0]}" for t in layout.unusable[:3])
        raise ConfigError(f"no usable VTAB-1k task under {layout.root} ({problems})")
    db = Path(request.db) if request.db else default_db_path(request.protocol.name)
    search = plan_search(request, layout)
    if not search:
        notes = "; ".join(n for t in layout.tasks for n in t.notes if n.startswith("size"))
        raise ConfigError(f"no usable task has a split for --sizes {','.join(map(str, request.sizes))}"
                          + (f" ({notes})" if notes else "") + "; choose sizes the split files can provide")
    cells = len({(c.task, c.method, c.n_train) for c in search})
    total = len(search) + cells * len(request.protocol.final_seeds)
    with TrialStore(db) as store:
        runner = _Runner(request, store, total, on_progress, on_event)
        runner.run(search, "search")
        final = plan_final(request, search, store)
        runner.run(final, "final")
        cells_out = _collect(search, final, store)
        counts = store.counts()
        warnings = list(store.warnings)
    skipped = {t.key: sum(t.skipped.values()) for t in layout.tasks if sum(t.skipped.values())}
    return SweepReport(request=request, db=str(db), layout=layout, cells=cells_out, counts=counts, ran=runner.ran,
                       reused=runner.reused, failures=runner.failures, failed=len(runner.errors),
                       failure_summary=summarize_failures(runner.errors), warnings=warnings, skipped=skipped)
