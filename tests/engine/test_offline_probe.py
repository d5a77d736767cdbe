"""Offline is detected in one short connection attempt (issue 14), tested against a closed local port.

With ``HF_HUB_OFFLINE`` unset and no network, the hub client used to retry for about a minute before
failing. Now one TCP connection with a timeout of at most 2 s decides, and the error is the very same
one-line message as with ``HF_HUB_OFFLINE=1``. No test here touches the real network.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import WeightsNotFoundError
from engine.network import REACHABILITY_TIMEOUT_S, host_reachable


@pytest.fixture
def closed_port() -> int:
    """A local port nobody listens on (bound, then released: connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """Record the timeout of every connection attempt made through engine.network."""
    calls: list[float | None] = []
    real = socket.create_connection

    def spy(address: tuple[str, int], timeout: float | None = None, *args: object, **kwargs: object) -> socket.socket:
        calls.append(timeout)
        return real(address, timeout, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("engine.network.socket.create_connection", spy)
    return calls


@pytest.fixture
def online_hub(monkeypatch: pytest.MonkeyPatch, closed_port: int) -> Iterator[None]:
    """HF_HUB_OFFLINE unset, the hub endpoint pointed at a closed local port, no proxy."""
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VPT_ADVISOR_OFFLINE", "HTTPS_PROXY", "https_proxy",
                "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    yield


def test_probe_tells_open_from_closed(closed_port: int, attempts: list[float | None]) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        assert host_reachable(f"http://127.0.0.1:{server.getsockname()[1]}/weights.pth")
    finally:
        server.close()
    assert not host_reachable(f"https://127.0.0.1:{closed_port}/weights.pth")
    assert attempts == [REACHABILITY_TIMEOUT_S] * 2 and REACHABILITY_TIMEOUT_S <= 2.0


def test_probe_goes_through_the_proxy(monkeypatch: pytest.MonkeyPatch, closed_port: int,
                                      attempts: list[float | None]) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{server.getsockname()[1]}")
    try:  # the target is closed, but the proxy that would carry the request answers
        assert host_reachable(f"https://127.0.0.1:{closed_port}/x")
    finally:
        server.close()


def test_unreachable_hub_gives_the_offline_error(online_hub: None, attempts: list[float | None],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from engine.train.models import create_backbone

    name = "vit_base_patch16_224.orig_in21k"
    kwargs = {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 16, "num_heads": 2}
    with pytest.raises(WeightsNotFoundError) as unreachable:
        create_backbone(name, **kwargs)
    assert attempts == [REACHABILITY_TIMEOUT_S]  # one attempt, no retries
    assert constants.HF_HUB_OFFLINE is False  # offline mode was only borrowed for the load
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotFoundError) as offline:
        create_backbone(name, **kwargs)
    assert str(unreachable.value) == str(offline.value)
    assert "not in the local cache" in str(offline.value) and "--weights PATH" in str(offline.value)


def test_unreachable_fid_weights_url_gives_the_offline_error(online_hub: None, closed_port: int,
                                                             attempts: list[float | None],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.fid.features as features
    from engine.config.fid import FidConfig

    monkeypatch.setattr(features, "FID_WEIGHTS_URL", f"https://127.0.0.1:{closed_port}/{features.INCEPTION_FILENAME}")

    def no_download(target: Path) -> None:
        raise AssertionError("a download was attempted although the host did not answer")

    monkeypatch.setattr(features, "_download", no_download)
    with pytest.raises(WeightsNotFoundError) as unreachable:
        features.resolve_weights(FidConfig())
    assert attempts == [REACHABILITY_TIMEOUT_S]
    with pytest.raises(WeightsNotFoundError) as offline:
        features.resolve_weights(FidConfig(offline=True))
    assert str(unreachable.value) == str(offline.value)
    assert features.INCEPTION_FILENAME in str(offline.value) and "--inception-weights" in str(offline.value)


def test_pilot_without_network_is_one_line(online_hub: None, tmp_path: Path, attempts: list[float | None],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from advisor.cli import main
    from tests.conftest import write_png

    gen = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(5):
            write_png(tmp_path / "data" / c / f"{i}.png", gen.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    code = main(["pilot", str(tmp_path / "data"), "--task", "dtd", "--out", str(tmp_path / "s"), "--device", "cpu"])
    err = capsys.readouterr().err
    from engine.train.availability import PROBE_TIMEOUT_S

    # one attempt, by the up-front check (before torch is imported), shorter than the loader's own probe
    assert code == 1 and attempts == [PROBE_TIMEOUT_S] and PROBE_TIMEOUT_S <= REACHABILITY_TIMEOUT_S
    assert err.startswith("Error:") and "not in the local cache" in err and len(err.strip().splitlines()) == 1
