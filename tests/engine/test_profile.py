"""engine.data.profile: numbers on a known dataset, bad files moved to skipped, empty datasets refused."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data.index import index_dataset
from engine.data.profile import EXAMPLES_PER_REASON, profile_dataset, profile_path
from engine.errors import EmptyDatasetError
from tests.conftest import write_png


def test_profile_of_tiny_imagefolder(tiny_imagefolder: Path) -> None:
    calls: list[tuple[int, int]] = []
    profile, cleaned = profile_path(tiny_imagefolder, workers=2, on_progress=lambda d, t: calls.append((d, t)))
    assert (profile.layout, profile.n_found, profile.n_used, profile.n_skipped) == ("imagefolder", 18, 18, 0)
    assert profile.classes == ["cat", "dog", "fox"] and profile.class_counts == {"cat": 6, "dog": 6, "fox": 6}
    assert (profile.class_count_min, profile.class_count_median, profile.class_count_max) == (6, 6.0, 6)
    assert (profile.width_min, profile.width_max, profile.height_median) == (32, 32, 32.0) and profile.same_size
    assert profile.modes == {"RGB": 18} and profile.formats == {"PNG": 18}
    assert calls[-1] == (18, 18) and len(cleaned.samples) == 18
    profile.model_dump_json()  # JSON-serialisable


def test_profile_counts_bad_files_and_cleans_index(tmp_path: Path) -> None:
    gen = np.random.default_rng(0)
    for i, (w, h) in enumerate([(10, 20), (30, 40), (50, 60)]):
        write_png(tmp_path / "a" / f"{i}.png", gen.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (tmp_path / "b").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "b" / "g.png")
    buf = io.BytesIO()
    Image.fromarray(gen.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    (tmp_path / "b" / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "b" / "text.png").write_text("hello")
    (tmp_path / "c").mkdir()
    for i in range(EXAMPLES_PER_REASON + 2):
        (tmp_path / "c" / f"z{i}.png").write_bytes(b"")
    index = index_dataset(tmp_path)
    profile, cleaned = profile_dataset(index, workers=1)
    assert profile.n_found == 4 + 2 + EXAMPLES_PER_REASON + 2 and profile.n_used == 4
    assert profile.skipped_by_reason == {"zero-byte": EXAMPLES_PER_REASON + 2, "not-an-image": 1, "truncated": 1}
    assert sum(s.reason == "zero-byte" for s in profile.skipped_examples) == EXAMPLES_PER_REASON
    assert profile.class_counts == {"a": 3, "b": 1, "c": 0} and profile.class_count_min == 0
    assert (profile.width_min, profile.width_median, profile.width_max) == (8, 20.0, 50)
    assert profile.modes == {"RGB": 3, "L": 1} and not profile.same_size
    assert [s.path.name for s in cleaned.samples] == ["0.png", "1.png", "2.png", "g.png"]
    assert len(cleaned.skipped) == profile.n_skipped and cleaned.classes == index.classes


def test_all_bad_dataset_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_text("not an image")
    (tmp_path / "y.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(EmptyDatasetError) as info:
        profile_path(tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and "all 2 files were skipped" in message
    assert "vpt-advisor profile" in message
