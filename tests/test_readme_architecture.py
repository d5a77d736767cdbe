"""The README's architecture section names real code: every path exists, every dotted name imports, and the
configuration table's composition is the models' actual fields."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("### Architecture")
    return text[start:text.index("\n### ", start + 1)]


def test_every_path_in_the_architecture_section_exists() -> None:
    section = _section()
    paths = set(re.findall(r"`((?:advisor|engine|benchmarks|tests)/[\w/.]*)`", section))
    assert len(paths) > 10  # the pattern still finds the table's paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README architecture names paths that do not exist: {missing}"


def test_every_dotted_name_in_the_architecture_section_imports() -> None:
    names = set(re.findall(r"`((?:engine|advisor|benchmarks)(?:\.\w+)+)`", _section()))
    assert names
    broken = []
    for name in sorted(names):
        module, _, attr = name.rpartition(".")
        try:
            getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            try:
                importlib.import_module(name)
            except ImportError:
                broken.append(name)
    assert not broken, f"README architecture names code that does not exist: {broken}"


def test_the_configuration_table_matches_the_models() -> None:
    from advisor.usecases.pilot import PilotRequest
    from benchmarks.vtab.protocol import Protocol
    from benchmarks.vtab.run import SweepRequest
    from benchmarks.vtab.trials import TrialConfig
    from engine.config.train import BackboneSpec, PilotConfig, TrainConfig

    def field_type(model: type, name: str) -> object:
        return model.model_fields[name].annotation

    assert field_type(Protocol, "train") is TrainConfig and hasattr(Protocol, "trial_train")
    assert field_type(TrialConfig, "train") is TrainConfig and field_type(TrialConfig, "backbone") is BackboneSpec
    assert field_type(SweepRequest, "protocol") is Protocol and field_type(SweepRequest, "backbone") is BackboneSpec
    assert field_type(PilotConfig, "backbone") is BackboneSpec and field_type(PilotConfig, "train") is TrainConfig
    assert field_type(PilotRequest, "backbone") is BackboneSpec
    shared = set(TrainConfig.model_fields)  # no model copies TrainConfig's fields flat any more
    for model in (Protocol, TrialConfig, SweepRequest):
        assert not shared & set(model.model_fields), (model.__name__, shared & set(model.model_fields))
    # the pilot's two requests its plan resolves (None: chosen from the budget / the model) are all it keeps
    assert shared & set(PilotConfig.model_fields) == {"epochs", "img_size"}
    assert not set(BackboneSpec.model_fields) & set(PilotRequest.model_fields)
