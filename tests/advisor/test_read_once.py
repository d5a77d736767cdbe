"""One pass over the data: ``recommend DATASET`` and ``pilot`` open every image file once, ``recommend --pilot``
at most twice.

Every file open of the process is counted (``builtins.open``, which Pillow and the engine both go
through), so a second reader added anywhere on the path fails here. The FID stays the number of
``vpt-advisor fid DATASET in21k``, which reads the files its own way.
"""

from __future__ import annotations

import builtins
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from advisor.cli import main
from advisor.usecases.pilot import PilotRequest
from tests.advisor.test_pilot_cli import TINY
from tests.advisor.test_recommend_fid import _reference
from tests.conftest import write_colour_dataset, write_png
from tests.engine.fid_fakes import FakeExtractor, fake_extractors, fake_weights  # noqa: F401 - fixtures


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], Counter[str]]:
    """``opens(root)``: how many times each file under ``root`` was opened since the fixture started."""
    seen: Counter[str] = Counter()
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(file, str | Path):
            seen[str(Path(file).resolve())] += 1
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)

    def under(root: Path) -> Counter[str]:
        prefix = str(root.resolve())
        return Counter({p: n for p, n in seen.items() if p.startswith(prefix)})

    return under


def _images(root: Path) -> set[str]:
    return {str(p.resolve()) for p in root.rglob("*.png")}


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:  # type: ignore[type-arg]
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("mixed_sizes", [False, True], ids=["one-size", "mixed-sizes"])
def test_recommend_opens_each_image_once_and_keeps_the_fid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_weights: Path,  # noqa: F811
    fake_extractors: list[FakeExtractor], opens: Callable[[Path], Counter[str]], mixed_sizes: bool,  # noqa: F811
) -> None:
    _reference(tmp_path, fake_weights)
    capsys.readouterr()
    data = write_colour_dataset(tmp_path / "colours", 6)
    if mixed_sizes:  # pil-bicubic-299 instead of pytorch-fid preprocessing: the held pixels must feed both
        write_png(data / "red" / "wide.png", np.random.default_rng(1).integers(0, 256, (20, 40, 3)).astype(np.uint8))
    (data / "blue" / "broken.png").write_bytes(b"\x89PNG not really")  # skipped, and still opened only once
    w = ["--inception-weights", str(fake_weights)]
    before = opens(data)
    cold = _json(capsys, ["recommend", str(data), "--task", "dtd", *w])
    counts = opens(data) - before
    assert set(counts) == _images(data) and set(counts.values()) == {1}, counts
    assert cold["dataset"]["n_skipped"] == 1

    before, extracted = opens(data), sum(e.n_images for e in fake_extractors)
    warm = _json(capsys, ["recommend", str(data), "--task", "dtd", *w])  # features from the cache
    assert set((opens(data) - before).values()) == {1}
    assert sum(e.n_images for e in fake_extractors) == extracted  # the network ran on nothing new
    fid = _json(capsys, ["fid", str(data), "in21k", *w])
    assert cold["fid_measurement"]["fid"] == warm["fid_measurement"]["fid"] == fid["fid"]


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_pilot_opens_each_image_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], opens: Callable[[Path], Counter[str]],
) -> None:
    data = write_colour_dataset(tmp_path / "colours", 10)
    before = opens(data)
    _json(capsys, ["pilot", str(data), "--task", "dtd", *TINY, "--out", str(tmp_path / "store")])
    counts = opens(data) - before
    # one decode, which also hashes the bytes for the content fingerprint that keys the stored trials
    # (engine.fingerprint); the plan's decode-time probe hands the files it decoded on to the run
    assert set(counts) == _images(data) and set(counts.values()) == {1}, counts


def _tiny_pilot(out: Path) -> Callable[..., object]:
    """The real pilot use case on TINY's settings: ``recommend`` has no --model/--random-init/--quick of its own."""
    import advisor.usecases.recommend as rec_uc
    from engine.config.train import BackboneSpec

    real = rec_uc.run_pilot_request

    def run(request: PilotRequest, **kwargs: object) -> object:
        tiny = request.model_copy(update={
            "backbone": BackboneSpec(model="vit_tiny_patch16_224", random_init=True), "img_size": 32,
            "batch_size": 16, "seeds": 2, "device": "cpu", "quick": True, "min_detectable": 40.0, "out": out})
        return real(tiny, **kwargs)  # type: ignore[arg-type]

    return run


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_recommend_pilot_opens_each_image_at_most_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], opens: Callable[[Path], Counter[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import advisor.usecases.recommend as rec_uc

    monkeypatch.setattr(rec_uc, "run_pilot_request", _tiny_pilot(tmp_path / "store"))
    data = write_colour_dataset(tmp_path / "colours", 10)
    before = opens(data)
    out = _json(capsys, ["recommend", str(data), "--task", "dtd", "--fid", "100", "--pilot", "--yes"])
    counts = opens(data) - before
    assert out["pilot"] is not None  # the pilot ran and trained
    # one read by recommend (its digests key the pilot's trials too, engine.fingerprint), one decode by the pilot
    assert set(counts) == _images(data) and max(counts.values()) <= 2, counts


def test_digests_read_anyway_key_the_fingerprint_and_a_changed_file_is_hashed_again(
    tmp_path: Path, opens: Callable[[Path], Counter[str]],
) -> None:
    import hashlib
    import os

    from engine.data.imageio import read_images
    from engine.fingerprint import file_fingerprint, files_fingerprint, remember_digests

    data = write_colour_dataset(tmp_path / "colours", 2)
    paths = sorted(data.rglob("*.png"))
    before = opens(data)
    read_images(paths)
    fps = [file_fingerprint(p) for p in paths]
    assert set((opens(data) - before).values()) == {1}  # the fingerprint took the read's digests
    assert fps == [f"{p.stat().st_size}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in paths]  # same keys
    assert files_fingerprint(paths) == hashlib.sha256("".join(f"{f}\n" for f in fps).encode()).hexdigest()

    changed = paths[0]  # same size, new bytes, a later mtime: the digest of the old bytes must not be used
    st = changed.stat()
    changed.write_bytes(b"x" * st.st_size)
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert file_fingerprint(changed) == f"{st.st_size}:{hashlib.sha256(changed.read_bytes()).hexdigest()}"

    other = paths[1]  # a digest offered for an identity the path no longer has is refused
    ost = other.stat()
    stale = {other: ((ost.st_size, ost.st_mtime_ns - 1, ost.st_ino), "0" * 64)}
    assert remember_digests(stale) == 0 and not file_fingerprint(other).endswith("0" * 64)
