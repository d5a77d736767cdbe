"""Network faults while fetching shards: a connection dropped mid-body, a stale partial file.

Each case ends in the right bytes and sha256, with a real socket (``tests.shard_server``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine.data.sources import resolve_source
from tests.engine.test_sources import _images, _serve
from tests.shard_server import ShardServer, shard_server  # noqa: F401 - fixture


@pytest.mark.parametrize("ranges", [True, False])
def test_a_download_cut_mid_shard_resumes_with_a_range_request(
    ranges: bool, tmp_path: Path, shard_server: ShardServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A dropped connection keeps the bytes received: the retry asks for the rest (Range) and the shard's sha256
    is that of the whole file; a server without Range support sends everything again and the result is the same."""
    import engine.data.sources as sources

    monkeypatch.setattr(sources.time, "sleep", lambda _s: None)  # no back-off wait in a test
    monkeypatch.setattr(sources, "_CHUNK", 256)  # several reads per shard, so the cut lands mid-body
    _serve(shard_server, _images(5))
    name = "shard-0001.tar"
    data = shard_server.files[name]
    shard_server.ranges = ranges
    shard_server.cut_once[name] = len(data) // 3
    ref = resolve_source(f"{shard_server.base}/files/{name}").shards[0]
    with sources.fetch_shard(ref, tmp_path / "work") as fetched:
        assert fetched.path.read_bytes() == data
        assert (fetched.sha256, fetched.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert shard_server.ranges_asked == [f"bytes={len(data) // 3}-"]
    assert not list((tmp_path / "work").iterdir())  # the download is removed after the block


def test_a_stale_partial_download_is_never_resumed(tmp_path: Path, shard_server: ShardServer) -> None:
    """A partial file left by a killed run may hold another shard's bytes: the next download starts afresh."""
    from engine.data.sources import fetch_shard

    _serve(shard_server, _images(6))
    name = "shard-0002.tar"
    work = tmp_path / "work"
    work.mkdir()
    (work / "shard.download").write_bytes(b"bytes of some other shard")
    ref = resolve_source(f"{shard_server.base}/files/{name}").shards[0]
    with fetch_shard(ref, work) as fetched:
        assert fetched.path.read_bytes() == shard_server.files[name]
    assert shard_server.ranges_asked == []

