"""The method registry: names and aliases, the paper code's settings, and adding a method as one entry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.config.train import PilotConfig, TrainConfig
from engine.errors import UnknownNameError
from engine.train.methods import (
    PAPER_SGD,
    MethodSpec,
    default_pilot_methods,
    family_of,
    get_method,
    method_names,
    method_specs,
    methods_on_side,
    paper_method,
    parse_methods,
    register_method,
    side_of,
    stages_of,
    unregister_method,
    uses_sgd,
)
from engine.train.transfer import build_model, configure_trainable
from tests.gen_vit import make_vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(("alias", "name"), [("ft", "full"), ("VPT", "vpt-deep"), (" head ", "linear"),
                                             ("fine-tune", "full"), ("vpt-shallow", "vpt-shallow")])
def test_aliases(alias: str, name: str) -> None:
    assert get_method(alias).name == name


def test_unknown_method_names_the_choices() -> None:
    with pytest.raises(UnknownNameError, match="unknown method 'prompt'.*vpt-deep"):
        get_method("prompt")
    with pytest.raises(ValueError, match="unknown method"):  # pydantic fields reject it too
        TrainConfig(method="prompt")
    assert parse_methods("ft, vpt,full") == ("full", "vpt-deep")


def test_paper_code_settings() -> None:
    """SGD for prompts and heads, AdamW for weights; ft-then-pt fine-tunes first (ANCHORS section 1)."""
    assert [s.name for s in method_specs() if s.optimizer == "sgd"] == [
        "linear", "vpt-shallow", "vpt-deep", "ft-then-pt"]
    assert uses_sgd("vpt") and not uses_sgd("full") and not uses_sgd("ft-then-pt")  # first stage fine-tunes
    assert stages_of("ft-then-pt") == ("full", "vpt-deep") and stages_of("mixed") == ("mixed",)
    deep = TrainConfig.for_method("vpt-deep")
    assert (deep.optimizer, deep.warmup_epochs, deep.prompt_dropout, deep.weight_decay) == ("sgd", 10, 0.1, 1e-3)
    full = TrainConfig.for_method("ft")
    assert (full.method, full.optimizer, full.warmup_epochs, full.prompt_dropout) == ("full", "adamw", 5, 0.0)
    assert get_method("vpt").paper_batch_size == 64 and get_method("ft").paper_batch_size == 128


def test_sides_answer_the_ft_vs_vpt_question() -> None:
    assert [side_of(n) for n in ("full", "ft", "vpt-deep", "VPT-Shallow", "linear", "mixed", "lora", "nope")] == [
        "FT", "FT", "VPT", "VPT", None, None, None, None]
    assert methods_on_side("VPT") == ("vpt-shallow", "vpt-deep") and methods_on_side("FT") == ("full",)
    assert family_of("vpt") == "prompt" and family_of("lora") == "lora" and family_of("nope") is None


def test_defaults_and_the_paper_protocol_come_from_the_registry() -> None:
    """Nothing outside the registry names the default methods: each spec says whether it is one."""
    assert default_pilot_methods() == ("full", "vpt-deep")
    assert (paper_method("FT").name, paper_method("VPT").name) == ("full", "vpt-deep")
    assert TrainConfig().method == "vpt-deep" and PilotConfig().methods == ("full", "vpt-deep")


def test_the_json_schema_reads_the_registry_when_generated(prompt_only: MethodSpec) -> None:
    enum = TrainConfig.model_json_schema()["properties"]["method"]["enum"]
    assert enum == list(method_names()) and "prompt-only" in enum and "lora" in enum


def test_register_rejects_duplicates_and_unknown_stages() -> None:
    spec = get_method("linear")
    with pytest.raises(ValueError, match="already registered"):
        register_method(spec)
    with pytest.raises(ValueError, match="not a registered method"):
        register_method(spec.model_copy(update={"name": "two-step", "aliases": (), "stages": ("full", "nope")}))


@pytest.fixture
def prompt_only() -> Iterator[MethodSpec]:
    """The README's example method, registered for one test and removed afterwards."""
    spec = register_method(MethodSpec(
        **PAPER_SGD, name="prompt-only", summary="VPT-deep prompts with the random head frozen", family="prompt",
        side="VPT", trains=frozenset({"prompts"}), prompts="deep"))
    yield spec
    unregister_method(spec.name)


@pytest.mark.usefixtures("prompt_only")
def test_a_new_method_is_one_entry() -> None:
    """What the README shows: one register_method call, and model building, configs and the pilot follow."""
    model = build_model(make_vit(seed=0), "prompt-only", 3, num_prompts=2)
    assert configure_trainable(model, "prompt-only") == ["prompts"]
    assert TrainConfig.for_method("prompt-only").optimizer == "sgd"
    assert PilotConfig(methods=("full", "prompt-only")).grid_for("prompt-only") == (1.0, 5.0, 0.25)
    assert side_of("prompt-only") == "VPT" and parse_methods("full,prompt-only") == ("full", "prompt-only")


def test_unregister_restores_the_registry() -> None:
    before = method_specs()
    spec = register_method(get_method("linear").model_copy(update={"name": "probe", "aliases": ("lp",)}))
    assert get_method("lp") is spec
    unregister_method("probe")
    assert method_specs() == before
    with pytest.raises(UnknownNameError):
        get_method("lp")
    with pytest.raises(ValueError, match="stage of ft-then-pt"):
        unregister_method("full")
