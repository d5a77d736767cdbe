"""A third family end to end: LoRA (registered by one module) in ``pilot --methods``, its comparison with FT, the
pilot table, the HTML and Markdown reports and ``--json``; and the one-line error where peft is missing."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from advisor.cli import main
from engine.train.methods import register_method, unregister_method
from tests.advisor.test_pilot_cli import TINY, colour_dataset  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.skipif(importlib.util.find_spec("peft") is None,
                    reason="LoRA needs peft: pip install 'vpt-advisor[peft]' (the test extra installs it)")
def test_lora_runs_in_the_pilot_and_shows_everywhere(colour_dataset: Path, tmp_path: Path,  # noqa: F811
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    store = tmp_path / "store"
    args = ["pilot", str(colour_dataset), "--task", "counting", "--methods", "full,vpt-deep,lora", *TINY,
            "--out", str(store)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    pilot = report["pilot"]
    assert [m["method"] for m in pilot["methods"]] == ["full", "vpt-deep", "lora"]
    lora = next(m for m in pilot["methods"] if m["method"] == "lora")
    assert lora["finished_trials"] == 2 and 0 < lora["trainable_pct"] < 100
    # the verdict stays FT vs VPT; every other method is compared with FT on the same held-out images
    assert (pilot["paired"]["ft_method"], pilot["paired"]["vpt_method"]) == ("full", "vpt-deep")
    pairs = {(c["ft_method"], c["vpt_method"]): c for c in pilot["comparisons"]}
    assert set(pairs) == {("full", "vpt-deep"), ("full", "lora")}
    assert pairs[("full", "lora")]["n_compare"] == pilot["plan"]["n_compare"] == 10
    assert {s["method"] for s in report["evidence"]["scores"]} == {"full", "vpt-deep", "lora"}

    html, md = tmp_path / "pilot.html", tmp_path / "pilot.md"
    assert main([*args, "--report", str(html)]) == 0  # resumes every trial, then writes the report
    out = " ".join(capsys.readouterr().out.split())
    assert "lora" in out and "lora − full on the same images" in out and "neither FT nor VPT" in out
    assert main([*args, "--report", str(md)]) == 0
    capsys.readouterr()
    for path in (html, md):
        text = path.read_text(encoding="utf-8")
        assert "lora vs full" in text and "lora" in text, path


@pytest.fixture
def lora_without_peft() -> Iterator[None]:
    spec = unregister_method("lora")
    register_method(spec.model_copy(update={"requires": ("vpt_advisor_no_such_package",)}))
    yield
    unregister_method("lora")
    register_method(spec)


@pytest.mark.usefixtures("lora_without_peft")
def test_lora_without_peft_is_one_clear_error(colour_dataset: Path, tmp_path: Path,  # noqa: F811
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["pilot", str(colour_dataset), "--methods", "full,lora", *TINY, "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("Error: method 'lora' needs the optional package")
    assert "pip install 'vpt-advisor[peft]'" in " ".join(err.split())
    assert not (tmp_path / "s").exists()  # refused before anything ran
