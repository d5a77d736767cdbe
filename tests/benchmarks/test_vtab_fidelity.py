"""The ``paper`` protocol carries the original code's training details into every trial (issue 13).

Sources for each default are tabulated in ``benchmarks/vtab/README.md``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.vtab.layout import check_layout
from benchmarks.vtab.protocol import Protocol, get_protocol
from benchmarks.vtab.run import SweepRequest, plan_search
from benchmarks.vtab.tasks import TASKS
from benchmarks.vtab.trials import TrialConfig, split_samples
from engine.config.train import TrainConfig
from engine.data.index import first_k, index_dataset
from engine.errors import ConfigError
from tests.benchmarks.vtab_tree import make_vtab_tree

_DETAILS = ("prompt_dropout_mode", "lr_schedule", "head_init", "ft_dropout", "on_divergence")


def test_paper_protocol_defaults_are_the_original_choices() -> None:
    p = get_protocol("paper")
    t = p.train
    assert (p.subset, t.prompt_dropout_mode, t.lr_schedule, t.head_init, t.ft_dropout, t.on_divergence) == (
        "first-k", "per-sample", "per-epoch", "vpt", 0.1, "last-finite")
    engine_defaults = TrainConfig()
    for name in _DETAILS:  # one set of defaults: the protocol and the engine agree
        assert getattr(t, name) == getattr(engine_defaults, name), name
    assert get_protocol("paper", lr_schedule="per-step").train.lr_schedule == "per-step"
    with pytest.raises(ValueError):
        Protocol(subset="random")  # type: ignore[arg-type]


def test_search_trials_carry_the_protocol_details(tmp_path: Path) -> None:
    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd"])
    proto = get_protocol("paper", head_init="torch", subset="stratified")
    req = SweepRequest(root=root, tasks=["dtd"], db=tmp_path / "db", protocol=proto)
    search = plan_search(req, check_layout(root, [TASKS["dtd"]]))
    assert {(c.train.head_init, c.subset, c.train.lr_schedule, c.train.ft_dropout) for c in search} == {
        ("torch", "stratified", "per-epoch", 0.1)}


def _cfg(root: Path, **kw: object) -> TrialConfig:
    base = dict(root=str(root), task="dtd", folder=TASKS["dtd"].folder, num_classes=TASKS["dtd"].num_classes,
                train=TrainConfig(method="vpt", lr=0.1, weight_decay=0.0, seed=42, epochs=1, warmup_epochs=0,
                                  batch_size=4))
    return TrialConfig(**{**base, **kw})


def test_sizes_below_800_take_the_first_k_of_the_lists(tmp_path: Path) -> None:
    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd"], per_split={"train800": 12, "val200": 8, "test": 2})
    folder = root / TASKS["dtd"].folder
    train_list = index_dataset(folder / "train800.txt").samples
    val_list = index_dataset(folder / "val200.txt").samples
    fit_on, eval_on = split_samples(_cfg(root, n_train=8, phase="search"))
    assert [s.path for s in fit_on] == [s.path for s in train_list[:8]]
    assert [s.path for s in eval_on] == [s.path for s in val_list[:2]]
    final, _ = split_samples(_cfg(root, n_train=8, phase="final"))
    assert [s.path for s in final] == [s.path for s in train_list[:8] + val_list[:2]]
    strat, _ = split_samples(_cfg(root, n_train=4, phase="search", subset="stratified", sample_seed=3))
    assert sorted(s.label for s in strat) == [0, 0, 1, 1]  # class-balanced draw, the explicit option
    assert {s.path for s in strat} <= {s.path for s in train_list}


def test_first_k_keeps_list_order_and_refuses_empty() -> None:
    assert first_k([3, 1, 2, 5], 2) == [3, 1]
    assert first_k([3, 1], 5) == [3, 1]
    with pytest.raises(ConfigError, match="subset size"):
        first_k([1], 0)



def test_cli_protocol_set_changes_a_detail_and_refuses_others(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from advisor.cli import main
    from benchmarks.vtab.reproduce import build_sweep_request

    common = dict(protocol="quick", tasks=None, methods=None, sizes=None, backend="local", scheduler=None, jobs=0,
                  db=None, model="m", weights=None, random_init=True, model_args=None, img_size=None, device="cpu",
                  batch_vpt=True)
    req = build_sweep_request(tmp_path, **common, protocol_set=["lr_schedule=per-step", "ft_dropout=0"])
    assert (req.protocol.train.lr_schedule, req.protocol.train.ft_dropout, req.protocol.train.head_init) == (
        "per-step", 0.0, "vpt")
    with pytest.raises(ConfigError, match="cannot change 'epochs'"):
        build_sweep_request(tmp_path, **common, protocol_set=["epochs=3"])
    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd"])
    args = ["reproduce-vtab", str(root), "--protocol", "quick", "--db", str(tmp_path / "db")]
    assert main([*args, "--protocol-set", "head_init=xavier"]) == 1
    err = capsys.readouterr().err
    assert "head_init" in err and "xavier" in err and "Traceback" not in err
