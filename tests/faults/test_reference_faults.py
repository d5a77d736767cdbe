"""Faults around `reference build`: damaged checkpoints, kill -9, bad names, concurrent builds, bad members."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from advisor.cli import main
from engine.config.fid import FidConfig
from engine.errors import ReferenceStatsError
from engine.fid.refbuild import build_reference
from engine.fid.reference import resolve_reference
from engine.paths import references_dir
from tests.conftest import write_png
from tests.engine.fid_fakes import FakeExtractor, fake_extractors, fake_weights  # noqa: F401 - fixtures
from tests.shard_server import ShardServer, make_shard, png_bytes, shard_server  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]


def _tree(root: Path, n: int = 12, seed: int = 0) -> Path:
    gen = np.random.default_rng(seed)
    for i in range(n):
        write_png(root / f"c{i % 3}" / f"{i}.png", gen.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    return root


def _interrupt_after(images: int):  # noqa: ANN202 - a progress callback
    def cb(done: int, total: int) -> None:
        if done >= images:
            raise KeyboardInterrupt
    return cb


def _config(weights: Path) -> FidConfig:
    return FidConfig(weights=weights, dims=64, batch_size=3)


def test_damaged_checkpoint_is_discarded_and_the_build_resumes_from_the_last_good_state(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    src, config = _tree(tmp_path / "src"), _config(fake_weights)
    build_reference(src, name="good", config=config, device="cpu", checkpoint_every=3)
    with pytest.raises(KeyboardInterrupt):
        build_reference(src, name="r", config=config, device="cpu", checkpoint_every=3, on_progress=_interrupt_after(9))
    ckpt = references_dir() / ".r.partial" / "checkpoint.npz"
    with np.load(ckpt) as f:  # a well-formed npz whose sums no longer match their checksum
        parts = {k: f[k] for k in f.files}
    parts["s1"] = parts["s1"] + 1.0
    np.savez(ckpt, **parts)
    info = build_reference(src, name="r", config=config, device="cpu", checkpoint_every=3)
    assert any("discarded damaged checkpoint" in m and "checksum" in m for m in info.messages)
    np.testing.assert_array_equal(resolve_reference("r")[0].sigma, resolve_reference("good")[0].sigma)


def test_all_state_damaged_restarts_and_overwrite_always_recovers(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    src, config = _tree(tmp_path / "src"), _config(fake_weights)
    build_reference(src, name="good", config=config, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        build_reference(src, name="r", config=config, device="cpu", checkpoint_every=3, on_progress=_interrupt_after(6))
    work = references_dir() / ".r.partial"
    for f in work.iterdir():
        f.write_bytes(b"\x00junk" * 7)
    info = build_reference(src, name="r", config=config, device="cpu")
    assert info.n_images == 12 and any("damaged" in m for m in info.messages)
    np.testing.assert_array_equal(resolve_reference("r")[0].mu, resolve_reference("good")[0].mu)
    work.write_bytes(b"a stray file where the work folder belongs")
    info = build_reference(src, name="r", config=config, device="cpu", overwrite=True)
    assert info.n_images == 12 and not work.exists()


def test_name_with_npz_suffix_is_refused_before_any_work(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor], capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    src = _tree(tmp_path / "src")
    code = main(["reference", "build", str(src), "--name", "foo.npz", "--inception-weights", str(fake_weights)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("Error:") == 1 and "without .npz" in err and "internal error" not in err
    assert not fake_extractors and not list(references_dir().glob("foo*"))


def test_concurrent_builds_of_one_name_fail_fast(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    src, config = _tree(tmp_path / "src"), _config(fake_weights)
    started, release = threading.Event(), threading.Event()

    def slow(done: int, total: int) -> None:
        started.set()
        release.wait(30)

    first = threading.Thread(target=build_reference, args=(src,),
                             kwargs={"name": "same", "config": config, "device": "cpu", "on_progress": slow})
    first.start()
    try:
        assert started.wait(30)
        t0 = time.monotonic()
        busy = "being written by another command.*'reference build --name same'"
        with pytest.raises(ReferenceStatsError, match=busy):
            build_reference(src, name="same", config=config, device="cpu")
        assert time.monotonic() - t0 < 5
        build_reference(src, name="other", config=config, device="cpu")  # other names are not blocked
        from engine.fid.refshare import export_reference, import_reference

        archive = export_reference("other", tmp_path / "other.tar")
        with pytest.raises(ReferenceStatsError, match="being written by another command"):
            import_reference(archive, name="same")  # an import cannot slip in under a running build either
    finally:
        release.set()
        first.join(30)
    assert resolve_reference("same")[1].n_images == 12


def test_bad_members_and_truncated_shards_are_counted_and_reported(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor], capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    gen = np.random.default_rng(4)
    good = {f"n1_{i}.png": png_bytes(gen.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for i in range(4)}
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "a.tar").write_bytes(make_shard({**good, "n1_bad.png": b"this is not a png"}))
    whole = make_shard({f"n2_{i}.png": png_bytes(gen.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for i in range(3)})
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(whole)) as tf:
        last = [m for m in tf.getmembers() if m.name.endswith(".png")][-1]
    (shards / "b.tar").write_bytes(whole[: last.offset_data + 10])  # cut inside the last image
    code = main(["reference", "build", str(shards), "--name", "bad", "--inception-weights", str(fake_weights),
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["n_skipped"] >= 2, out
    assert out["skipped_reasons"].get("not-an-image") == 1 and out["skipped_reasons"].get("truncated", 0) >= 1
    assert out["n_images"] + out["n_skipped"] == 4 + 1 + 3, out
    assert main(["reference", "show", "bad"]) == 0
    assert "Skipped" in capsys.readouterr().out


_CHILD = """
import sys
from tests.engine.fid_fakes import FakeExtractor
import engine.fid.refbuild as rb
rb.load_inception = lambda config, device: FakeExtractor(config)
from advisor.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_during_an_http_build_resumes_to_identical_stats(
    shard_server: ShardServer, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    gen = np.random.default_rng(5)
    shard_server.files = {f"s-{k}.tar": make_shard({f"n{k}_{i}.png": png_bytes(gen.integers(0, 256, (16, 16, 3),
                                                    dtype=np.uint8)) for i in range(3)}) for k in range(4)}
    url = f"{shard_server.base}/files/s-{{0..3}}.tar"
    stalled, release = threading.Event(), threading.Event()

    def stall(name: str) -> None:
        if name == "s-2.tar" and not release.is_set():
            stalled.set()
            release.wait(60)

    shard_server.on_file = stall
    args = ["reference", "build", url, "--name", "web", "--inception-weights", str(fake_weights), "--batch-size", "2",
            "--max-images", "0"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, *args], env=env, cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert stalled.wait(120), child.stderr.read().decode() if child.poll() is not None else "child never got there"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        release.set()
        if child.poll() is None:
            child.kill()
        child.wait(30)
    assert child.returncode == -signal.SIGKILL and not (references_dir() / "web.npz").exists()
    shard_server.log.clear()
    config = FidConfig(weights=fake_weights, batch_size=2)
    info = build_reference(url, name="web", config=config, device="cpu")  # lock freed by the kernel
    fetched = [p for p, _ in shard_server.log if p.startswith("/files/")]
    assert fetched == ["/files/s-2.tar", "/files/s-3.tar"]  # shards 0 and 1 came from the checkpoint
    build_reference(url, name="whole", config=config, device="cpu")
    np.testing.assert_array_equal(resolve_reference("web")[0].sigma, resolve_reference("whole")[0].sigma)
    assert info.n_images == 12 and info.n_shards == 4


def test_a_damaged_feature_cache_never_costs_the_build(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    from engine.fid.cache import default_cache_path

    src = _tree(tmp_path / "src")
    # The clean build differs from the healed one only in the cache: same batch size, so the same float32 kernels run
    # on the same batches (a different batch size changes float32 round-off by ~1e-4 relative on AVX2/AVX-512 CPUs).
    clean = _config(fake_weights).model_copy(update={"use_cache": False})
    build_reference(src, name="clean", config=clean, device="cpu")
    default_cache_path().parent.mkdir(parents=True, exist_ok=True)
    default_cache_path().write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)  # a header, then junk pages
    info = build_reference(src, name="r", config=_config(fake_weights), device="cpu")
    assert info.n_images == 12
    np.testing.assert_array_equal(resolve_reference("r")[0].sigma, resolve_reference("clean")[0].sigma)


def test_special_files_and_non_tar_shards_end_in_one_clear_error(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor], capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    fifo = tmp_path / "pipe.tar"
    os.mkfifo(fifo)
    fake = tmp_path / "shards"
    fake.mkdir()
    (fake / "x.tar").write_bytes(b"definitely not a tar archive" * 40)
    mixed = tmp_path / "mixed"
    (mixed / "c0").mkdir(parents=True)
    (mixed / "a.tar").write_bytes((fake / "x.tar").read_bytes())
    for source, expected in ((mixed, "holds both .tar shards and image files or folders"),
                             (fifo, "not a folder or a regular file"), ("/dev/null", "not a folder or a regular file"),
                             (fake, "only 0 usable image(s) (1 skipped)"), (tmp_path / "nope", "no such folder")):
        code = main(["reference", "build", str(source), "--name", "x", "--inception-weights", str(fake_weights)])
        err = " ".join(capsys.readouterr().err.split())
        assert code == 1 and err.count("Error:") == 1 and expected in err and "internal error" not in err, err
    assert not list(references_dir().glob("x.*"))


def test_rerun_with_other_settings_says_it_starts_over(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    src, config = _tree(tmp_path / "src"), _config(fake_weights)
    with pytest.raises(KeyboardInterrupt):
        build_reference(src, name="r", config=config, device="cpu", checkpoint_every=3, on_progress=_interrupt_after(6))
    info = build_reference(src, name="r", config=config, device="cpu", max_images=8)
    assert info.n_images == 8 and any("other settings (max_images); starting over" in m for m in info.messages)
