"""Sharing references: export, import (validated), pull by sha256 from a real local HTTP server."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from advisor.cli import main
from engine.errors import ConfigError, ReferenceStatsError
from engine.fid.frechet import FeatureStats, StatsProvenance, save_stats
from engine.fid.reference import list_references, resolve_reference
from engine.fid.refshare import export_reference, import_reference, pull_reference
from engine.paths import references_dir
from tests.shard_server import ShardServer, shard_server  # noqa: F401 - fixture


def _make_reference(name: str, seed: int = 0, dims: int = 8) -> FeatureStats:
    gen = np.random.default_rng(seed)
    x = gen.standard_normal((50, dims))
    stats = FeatureStats(mu=x.mean(0), sigma=np.cov(x, rowvar=False), n=50)
    prov = StatsProvenance(source="hf://datasets/acme/x", n_images=50, dims=dims, extractor="test:dims=8",
                           preprocessing="pil-bicubic-299", weights_sha256="ab" * 32)
    references_dir().mkdir(parents=True, exist_ok=True)
    save_stats(references_dir() / f"{name}.npz", stats, prov)
    return stats


def _names() -> list[str]:
    return sorted(p.name for p in references_dir().iterdir())


def test_export_then_import_round_trips_stats_and_provenance(tmp_path: Path) -> None:
    stats = _make_reference("team")
    archive = export_reference("team", tmp_path / "team.tar")
    info = import_reference(archive, name="copy")
    got, got_info = resolve_reference("copy")
    np.testing.assert_array_equal(got.sigma, stats.sigma)
    assert info.n_images == 50 and got_info.source == "hf://datasets/acme/x" and got_info.extractor == "test:dims=8"
    with pytest.raises(ReferenceStatsError, match="already exists"):
        import_reference(archive, name="copy")
    assert import_reference(archive, name="copy", overwrite=True).name == "copy"
    with pytest.raises(ReferenceStatsError, match="'team' already exists"):  # the name defaults to the archive's
        import_reference(archive)
    with pytest.raises(ReferenceStatsError, match="exists"):
        export_reference("team", archive)


def test_import_refuses_damaged_or_foreign_files_and_writes_nothing(tmp_path: Path) -> None:
    _make_reference("team")
    archive = export_reference("team", tmp_path / "team.tar")
    before = _names()
    with tarfile.open(archive) as tf:  # same members, but the npz's sigma tampered with
        parts = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]
    with np.load(io.BytesIO(parts["team.npz"])) as f:
        mu, sigma = f["mu"], f["sigma"]
    buf = io.BytesIO()
    np.savez(buf, mu=mu, sigma=sigma * 2)
    cases = {
        "tampered.tar": {"team.npz": buf.getvalue(), "team.json": parts["team.json"]},
        "extra.tar": {**parts, "evil.sh": b"rm -rf /"},
        "nested.tar": {"../team.npz": parts["team.npz"]},
    }
    for fname, members in cases.items():
        path = tmp_path / fname
        with tarfile.open(path, "w") as tf:
            for n, data in members.items():
                m = tarfile.TarInfo(n)
                m.size = len(data)
                tf.addfile(m, io.BytesIO(data))
        with pytest.raises(ReferenceStatsError):
            import_reference(path, name="x")
    nan = tmp_path / "nan.npz"
    np.savez(nan, mu=np.full(8, np.nan), sigma=np.eye(8))
    with pytest.raises(ReferenceStatsError, match="NaN"):
        import_reference(nan, name="x")
    asym = tmp_path / "asym.npz"
    s = np.eye(8)
    s[0, 1] = 0.5
    np.savez(asym, mu=np.zeros(8), sigma=s)
    with pytest.raises(ReferenceStatsError, match="not symmetric"):
        import_reference(asym, name="x")
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all")
    with pytest.raises(ReferenceStatsError, match="not a"):
        import_reference(tmp_path / "junk.tar", name="x")
    assert _names() == before  # no half-imported files, no staging folders left
    bare = tmp_path / "bare.npz"
    np.savez(bare, mu=np.zeros(8), sigma=np.eye(8))
    info = import_reference(bare, name="bare")
    assert info.n_images == 0 and any("without a provenance sidecar" in m for m in info.messages)


def test_pull_verifies_the_sha256_before_importing(tmp_path: Path, shard_server: ShardServer) -> None:
    _make_reference("team")
    archive = export_reference("team", tmp_path / "team.tar")
    data = archive.read_bytes()
    shard_server.files = {"team.tar": data}
    url = f"{shard_server.base}/files/team.tar"
    before = _names()
    with pytest.raises(ReferenceStatsError, match="nothing was imported"):
        pull_reference(url, sha256="0" * 64, name="pulled")
    assert _names() == before
    with pytest.raises(ConfigError, match="64 hex"):
        pull_reference(url, sha256="abc", name="pulled")
    with pytest.raises(ReferenceStatsError, match="download failed"):
        pull_reference(f"{shard_server.base}/files/nope.tar", sha256="0" * 64)
    info = pull_reference(url, sha256=hashlib.sha256(data).hexdigest(), name="pulled")
    assert info.name == "pulled" and "pulled" in [r.name for r in list_references()]


def test_cli_export_import_pull(tmp_path: Path, shard_server: ShardServer, capsys: pytest.CaptureFixture[str]) -> None:
    _make_reference("team")
    out_file = tmp_path / "share.tar"
    assert main(["reference", "export", "team", str(out_file)]) == 0
    printed = capsys.readouterr().out
    digest = hashlib.sha256(out_file.read_bytes()).hexdigest()
    assert digest in printed.replace("\n", "")
    assert main(["reference", "import", str(out_file), "--name", "mine", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "mine"
    shard_server.files = {"share.tar": out_file.read_bytes()}
    code = main(["reference", "pull", f"{shard_server.base}/files/share.tar", "--sha256", "f" * 64, "--name", "p"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("Error:") == 1 and "internal error" not in err
    assert main(["reference", "pull", f"{shard_server.base}/files/share.tar", "--sha256", digest, "--name", "p"]) == 0
