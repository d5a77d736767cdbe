"""Tell "offline" from "slow" in one short connection attempt, before any download starts.

Without this, a machine with no network spends about a minute in the Hugging Face client's retries
(or in a socket timeout for a plain URL) before it fails. One TCP connection to the download host
(or to the proxy that would carry the request) with a short timeout settles it; callers then behave
exactly as in offline mode (``HF_HUB_OFFLINE=1``): the local cache, or a one-line error with a hint.
"""

from __future__ import annotations

import logging
import os
import socket
from urllib.parse import urlsplit

__all__ = ["REACHABILITY_TIMEOUT_S", "host_reachable"]

logger = logging.getLogger(__name__)

REACHABILITY_TIMEOUT_S = 2.0
"""Longest wait for the one connection attempt (issue 14: the command says "offline" within 2 s)."""

_DEFAULT_PORTS = {"https": 443, "http": 80}


def _proxy_for(scheme: str) -> str | None:
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        value = os.environ.get(name, "").strip()
        if value:
            return value if "://" in value else f"http://{value}"
    return None


def _bypasses_proxy(host: str) -> bool:
    no_proxy = os.environ.get("no_proxy", os.environ.get("NO_PROXY", ""))
    entries = [e.strip().lstrip(".") for e in no_proxy.split(",") if e.strip()]
    return "*" in entries or any(host == e or host.endswith("." + e) for e in entries)


def host_reachable(url: str, *, timeout: float = REACHABILITY_TIMEOUT_S) -> bool:
    """True when a TCP connection to ``url``'s host (or its proxy) opens within ``timeout`` seconds.

    Args:
        url: the download URL (only the scheme, host and port are used).
        timeout: seconds for the single attempt (no retries).
    """
    parts = urlsplit(url)
    scheme = parts.scheme or "https"
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS.get(scheme, 443)
    proxy = None if _bypasses_proxy(host) else _proxy_for(scheme)
    if proxy is not None:
        pp = urlsplit(proxy)
        host, port = pp.hostname or host, pp.port or _DEFAULT_PORTS.get(pp.scheme, 80)
    if not host:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError as exc:  # refused, unreachable, DNS failure or timeout: all mean "cannot download now"
        logger.info("%s:%s not reachable within %.1f s (%s)", host, port, timeout, exc)
        return False
