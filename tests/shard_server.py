"""A real HTTP server on 127.0.0.1 serving generated tar shards, plus the few Hub API routes huggingface_hub uses.

Routes (what ``HfApi.dataset_info``, ``HfApi.list_repo_tree`` and ``hf_hub_url`` address):

* ``GET /files/<name>`` - a shard's bytes (plain HTTP source);
* ``GET /api/datasets/<owner>/<repo>/revision/<rev>`` - ``{"id", "sha"}`` (dataset_info);
* ``GET /api/datasets/<owner>/<repo>/tree/<rev>[/<path>]`` - the file list with LFS sha256 (list_repo_tree);
* ``GET /datasets/<owner>/<repo>/resolve/<rev>/<path>`` - a 302 redirect to ``/files/...`` on ``localhost``
  (another host name, like the Hub's redirect to its storage), so tests can see the token is not forwarded.

``gated=True`` makes the API and resolve routes answer 401 without ``Authorization: Bearer <token>``.
Every request is recorded (path and Authorization header) in ``server.log``.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "acme/tiny-wds"


def png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_shard(images: dict[str, bytes]) -> bytes:
    """A WebDataset-style tar: ``<key>.png`` plus a ``<key>.cls`` label member (the key's prefix before ``_``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in images.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
            label = name.rsplit(".", 1)[0].split("_", 1)[0].encode()
            meta = tarfile.TarInfo(name.rsplit(".", 1)[0] + ".cls")
            meta.size = len(label)
            tf.addfile(meta, io.BytesIO(label))
    return buf.getvalue()


@dataclass
class ShardServer:
    """The running server's state (shards by file name, log of requests)."""

    files: dict[str, bytes] = field(default_factory=dict)
    subdir: str = "train"
    gated: bool = False
    token: str = "hf_test_token"
    log: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0
    on_file: Callable[[str], None] | None = None  # called before a shard's bytes are sent
    ranges: bool = True  # honour "Range: bytes=N-" with 206 (as the Hub's storage does); False: always 200
    cut_once: dict[str, int] = field(default_factory=dict)  # file -> bytes sent before the first response drops
    ranges_asked: list[str] = field(default_factory=list)  # Range headers received

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tree(self) -> list[dict]:
        return [{"type": "file", "path": f"{self.subdir}/{n}", "size": len(d), "oid": hashlib.sha1(d).hexdigest(),
                 "lfs": {"oid": hashlib.sha256(d).hexdigest(), "size": len(d), "pointerSize": 134}}
                for n, d in sorted(self.files.items())] + [
                {"type": "file", "path": "README.md", "size": 5, "oid": "0" * 40}]


def _handler(state: ShardServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def _send(self, code: int, body: bytes, ctype: str = "application/octet-stream",
                  extra: dict | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _file(self, name: str) -> None:
            data, asked = state.files[name], self.headers.get("Range")
            start = 0
            if asked:
                state.ranges_asked.append(asked)
                if state.ranges:
                    start = int(asked.removeprefix("bytes=").split("-")[0])
            cut = state.cut_once.pop(name, None)
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            self.wfile.write(data[start:] if cut is None else data[start:start + cut])
            if cut is not None:  # drop the connection mid-body, as a network failure does
                self.close_connection = True

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = urllib.parse.urlsplit(self.path).path
            state.log.append((path, self.headers.get("Authorization", "")))
            if path.startswith("/files/") and path[7:] in state.files:
                if state.on_file is not None:
                    state.on_file(path[7:])
                return self._file(path[7:])
            repo_api = f"/api/datasets/{REPO}/"
            resolve = f"/datasets/{REPO}/resolve/"
            if not (path.startswith((repo_api, resolve)) or path == repo_api.rstrip("/")):
                return self._send(404, b'{"error": "not found"}', "application/json",
                                  {"X-Error-Code": "RepoNotFound"})
            if state.gated and self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._send(401, b'{"error": "gated"}', "application/json", {"X-Error-Code": "GatedRepo"})
            if path.startswith(repo_api + "revision/") or path == repo_api.rstrip("/"):
                return self._send(200, json.dumps({"id": REPO, "sha": COMMIT}).encode(), "application/json")
            if path.startswith(repo_api + "tree/"):
                return self._send(200, json.dumps(state.tree()).encode(), "application/json")
            name = path.rsplit("/", 1)[-1]
            return self._send(302, b"", extra={"Location": f"http://localhost:{state.port}/files/{name}"})

    return Handler


@pytest.fixture
def shard_server() -> Iterator[ShardServer]:
    """Start the server in a thread on a free port of 127.0.0.1; stop it after the test."""
    state = ShardServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
