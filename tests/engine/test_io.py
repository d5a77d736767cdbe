"""engine.io: atomic writes leave the old file or the new one, and canonical digests ignore key order."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.io import atomic_write_bytes, atomic_write_text, canonical_json, json_digest


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]  # the failure under test
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_canonical_json_is_order_free_and_compact() -> None:
    assert canonical_json({"b": 1, "a": [Path("x"), 2]}) == '{"a":["x",2],"b":1}'
    assert json_digest({"a": 1, "b": 2}) == json_digest({"b": 2, "a": 1})
    assert len(json_digest({}, length=16)) == 16 and json_digest({}) != json_digest([])
