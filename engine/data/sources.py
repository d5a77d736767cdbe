"""Dataset sources: one place that turns a source text into image files or tar shards, and shards into images.

A *source* is what a user types where a dataset is expected:

* a folder tree of image files (any layout :func:`engine.data.index.index_dataset` accepts);
* a local WebDataset ``.tar`` shard, a folder holding ``.tar`` shards, or a brace pattern of local
  shards (``/data/shard-{0000..0099}.tar``);
* HTTP(S) URLs with the same brace patterns (``https://host/path/shard-{0000..0099}.tar``);
* a Hugging Face Hub dataset repo ``hf://datasets/OWNER/REPO[/subdir][/PATTERN][@revision]``: every ``.tar``
  file under ``subdir`` (at any depth) whose name matches ``PATTERN`` (shell wildcards or braces, e.g.
  ``imagenet22k-train-*.tar``) is a shard. The repo is listed with ``huggingface_hub`` (``HfApi.list_repo_tree``),
  pinned to the commit it had when listed, and each shard is fetched from its ``resolve`` URL
  (:func:`huggingface_hub.hf_hub_url`). ``HF_TOKEN`` (or a ``huggingface-cli login`` token) is sent to
  the Hub endpoint only (never to the storage host a download is redirected to); ``HF_ENDPOINT`` names
  the Hub (read at call time, so a mirror or a test server can stand in).

:func:`resolve_source` classifies the text; :func:`fetch_shard` makes one shard readable as a local file
(a download lands in a folder the caller owns, so at most one shard is on disk at a time) and computes
its sha256; :func:`list_tar_images` lists a shard's image members, counting unreadable or truncated ones.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from engine.config import FrozenModel
from engine.data.imageio import SkippedFile, display_path, is_image_name, unreachable_link
from engine.errors import ConfigError, DatasetError

# huggingface_hub is imported inside the functions that use it: importing this module does not load it.

__all__ = [
    "ShardRef",
    "Source",
    "FetchedShard",
    "TarListing",
    "HF_PREFIX",
    "expand_braces",
    "resolve_source",
    "hub_endpoint",
    "fetch_shard",
    "list_tar_images",
    "is_remote",
    "only_shards",
    "unpack_shards",
]

logger = logging.getLogger(__name__)

HF_PREFIX = "hf://datasets/"
_DEFAULT_HUB = "https://huggingface.co"  # huggingface_hub's default endpoint (constants._HF_DEFAULT_ENDPOINT)
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_MAX_BRACE_EXPANSION = 1_000_000
"""Refuse brace patterns naming more shards than this (a typo such as {0..99999999} would hang listing)."""
_HTTP_TIMEOUT_S = 60.0
"""Seconds without data before a download attempt is abandoned (then retried)."""
_HTTP_ATTEMPTS = 3
"""Download attempts per shard before the build stops with an error (transient network faults)."""
_CHUNK = 1 << 20
"""Bytes per read while downloading or hashing (1 MiB)."""


class ShardRef(FrozenModel):
    """One tar shard: a local path or an HTTP(S) URL, with what its listing said about it."""

    name: str = Field(description="Shard file name (for messages).")
    url: str = Field(description="HTTP(S) URL or absolute local path.")
    sha256: str = Field(default="", description="Expected sha256 from the listing ('' = not published).")
    size: int | None = Field(default=None, description="Size in bytes from the listing (None = unknown).")


class Source(FrozenModel):
    """A classified source text."""

    text: str = Field(description="The source as given.")
    kind: Literal["folder", "shards"] = Field(description="Image-file tree, or tar shards.")
    root: str = Field(default="", description="Folder root (kind 'folder').")
    shards: list[ShardRef] = Field(default_factory=list, description="Shards in listing order (kind 'shards').")
    revision: str = Field(default="", description="Hub commit the listing was pinned to ('' = not a Hub repo).")


@dataclass
class FetchedShard:
    """A shard readable as a local file, with the sha256 of its bytes."""

    ref: ShardRef
    path: Path
    sha256: str
    size: int
    temporary: bool


@dataclass
class TarListing:
    """Image members of one shard in storage order, and the members that could not be listed."""

    members: list[tarfile.TarInfo] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    skipped: list[SkippedFile] = field(default_factory=list)


def is_remote(text: str) -> bool:
    """True for ``http(s)://`` URLs and ``hf://`` paths."""
    return text.startswith(("http://", "https://", "hf://"))


_BRACE_RE = re.compile(r"\{([^{}]*)\}")


def _brace_options(body: str, text: str) -> list[str]:
    m = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if m:
        lo, hi = m.group(1), m.group(2)
        if int(hi) < int(lo):
            raise ConfigError(f"{text}: brace range {{{body}}} runs backwards; write {{{hi}..{lo}}}")
        if int(hi) - int(lo) >= _MAX_BRACE_EXPANSION:
            raise ConfigError(f"{text}: the pattern names more than {_MAX_BRACE_EXPANSION:,} shards")
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        return [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    if "," in body:
        return body.split(",")
    raise ConfigError(f"{text}: cannot expand {{{body}}}; use {{0000..0099}} or {{a,b,c}}")


def expand_braces(text: str) -> list[str]:
    """Expand WebDataset brace patterns: ``a-{00..02}.tar`` -> ``a-00.tar``, ``a-01.tar``, ``a-02.tar``.

    ``{a,b}`` lists alternatives; several groups multiply. Zero padding follows the first bound.

    Raises:
        ConfigError: A malformed or backwards range, or more than a million names.
    """
    m = _BRACE_RE.search(text)
    if m is None:
        return [text]
    options = _brace_options(m.group(1), text)
    rest = expand_braces(text[m.end():])
    if len(options) * len(rest) > _MAX_BRACE_EXPANSION:
        raise ConfigError(f"{text}: the pattern names more than {_MAX_BRACE_EXPANSION:,} shards")
    return [text[: m.start()] + o + r for o in options for r in rest]


def _is_tar_name(name: str) -> bool:
    return name.lower().endswith(_TAR_SUFFIXES)


def _local_shards(text: str) -> list[ShardRef] | None:
    """Shards of a local source, or None when it is an image-file tree."""
    if "{" in text:
        paths = [Path(p).expanduser() for p in expand_braces(text)]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DatasetError(f"{display_path(missing[0])}: no such shard ({len(missing)} of {len(paths)} missing)")
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise DatasetError(f"{display_path(path)}: {unreachable_link(path) or 'no such folder, tar file or URL'}")
        if not path.is_dir() and not path.is_file():
            raise DatasetError(f"{display_path(path)}: not a folder or a regular file (a device, pipe or socket); "
                               "give a folder of images, .tar shards or a URL")
        if path.is_file():
            if not _is_tar_name(path.name):
                raise DatasetError(f"{display_path(path)}: not a folder or a .tar shard")
            paths = [path]
        else:
            visible = [p for p in path.iterdir() if not p.name.startswith(".")]
            paths = sorted(p for p in visible if p.is_file() and _is_tar_name(p.name))
            if not paths:
                return None
            mixed = [p for p in visible if p.is_dir() or is_image_name(p.name)]
            if mixed:  # either reading would silently leave the other half out
                raise DatasetError(f"{display_path(path)}: holds both .tar shards and image files or folders "
                                   f"(e.g. {mixed[0].name}); point at the shards or at the images, not both")
    return [ShardRef(name=p.name, url=os.fsdecode(p.resolve())) for p in paths]


def _http_shards(text: str) -> list[ShardRef]:
    urls = expand_braces(text)
    return [ShardRef(name=urllib.parse.urlsplit(u).path.rsplit("/", 1)[-1] or u, url=u) for u in urls]


def resolve_source(text: str | os.PathLike[str]) -> Source:
    """Classify a source text and list its shards (see the module docstring).

    Raises:
        DatasetError: A local path that does not exist, a Hub repo that cannot be listed, no shards.
        ConfigError: A malformed brace pattern or ``hf://`` path.
    """
    text = os.fspath(text)
    if text.startswith("hf://"):
        revision, shards = _hf_shards(text)
        return Source(text=text, kind="shards", shards=shards, revision=revision)
    if text.startswith(("http://", "https://")):
        return Source(text=text, kind="shards", shards=_http_shards(text))
    local = _local_shards(text)
    if local is None:
        return Source(text=text, kind="folder", root=os.fsdecode(Path(text).expanduser().resolve()))
    return Source(text=text, kind="shards", shards=local)


# --- Hugging Face Hub ---------------------------------------------------------------------------------


def hub_endpoint() -> str:
    """The Hub base URL: ``HF_ENDPOINT`` now (not when huggingface_hub was imported), else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or _DEFAULT_HUB).rstrip("/")


def _hub_token() -> str | None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def _parse_hf(text: str) -> tuple[str, str, str | None]:
    """``hf://datasets/OWNER/REPO[/subdir][@rev]`` -> (repo_id, subdir, revision)."""
    if not text.startswith(HF_PREFIX):
        raise ConfigError(f"{text}: only dataset repos are supported; write hf://datasets/OWNER/REPO[/subdir]")
    rest, _, revision = text[len(HF_PREFIX):].partition("@")
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 2 or any(p in (".", "..") for p in parts):
        raise ConfigError(f"{text}: expected hf://datasets/OWNER/REPO[/subdir], e.g. hf://datasets/timm/imagenet-22k-wds")
    return f"{parts[0]}/{parts[1]}", "/".join(parts[2:]), revision or None


def _hf_error(text: str, repo_id: str, exc: Exception) -> DatasetError:
    from huggingface_hub.errors import (
        GatedRepoError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        return DatasetError(f"{text}: the repo is gated; accept its terms at {hub_endpoint()}/datasets/{repo_id} "
                            "and set HF_TOKEN (or run huggingface-cli login)")
    if isinstance(exc, RevisionNotFoundError):
        return DatasetError(f"{text}: no such revision in {repo_id}")
    if isinstance(exc, RepositoryNotFoundError):
        return DatasetError(f"{text}: no dataset repo {repo_id} at {hub_endpoint()} (or it is private: set HF_TOKEN)")
    if isinstance(exc, OfflineModeIsEnabled):
        return DatasetError(f"{text}: HF_HUB_OFFLINE is set; unset it to read from the Hub")
    return DatasetError(f"{text}: cannot list the repo at {hub_endpoint()}: {type(exc).__name__}: {exc}")


def _matches(name: str, pattern: str) -> bool:
    """Shell-style match of a file name, after brace expansion (empty pattern = everything)."""
    return not pattern or any(fnmatch.fnmatchcase(name, p) for p in expand_braces(pattern))


def _hf_shards(text: str) -> tuple[str, list[ShardRef]]:
    """List the ``.tar`` files of a Hub dataset repo, pinned to its current commit."""
    from huggingface_hub import HfApi, constants, hf_hub_url
    from huggingface_hub.hf_api import RepoFile

    repo_id, subdir, revision = _parse_hf(text)
    pattern = ""
    if any(c in subdir.rsplit("/", 1)[-1] for c in "*?[{"):
        subdir, _, pattern = subdir.rpartition("/")
    if constants.is_offline_mode():
        raise DatasetError(f"{text}: HF_HUB_OFFLINE is set; unset it to read from the Hub")
    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint, token=_hub_token())
    try:
        sha = api.dataset_info(repo_id, revision=revision).sha or revision or "main"
        entries = list(api.list_repo_tree(repo_id, path_in_repo=subdir or None, recursive=True,
                                          repo_type="dataset", revision=sha))
    except Exception as exc:  # noqa: BLE001 - huggingface_hub and httpx raise many types; all become one message
        raise _hf_error(text, repo_id, exc) from None
    files = sorted((e for e in entries if isinstance(e, RepoFile) and _is_tar_name(e.path)
                    and _matches(e.path.rsplit("/", 1)[-1], pattern)), key=lambda e: e.path)
    if not files:
        where = repo_id + (f"/{subdir}" if subdir else "") + (f" matching {pattern}" if pattern else "")
        raise DatasetError(f"{text}: no .tar shards in {where}")
    shards = [
        ShardRef(name=f.path, url=hf_hub_url(repo_id, f.path, repo_type="dataset", revision=sha, endpoint=endpoint),
                 sha256=f.lfs.sha256 if f.lfs is not None else "", size=f.size)
        for f in files
    ]
    return sha, shards


# --- fetching and reading shards ------------------------------------------------------------------------


class _NoAuthAcrossHosts(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never carry the Hub token to another host (the Hub redirects to storage)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # urllib's signature
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


def _request(url: str) -> urllib.request.Request:
    req = urllib.request.Request(url, headers={"User-Agent": "vpt-advisor"})
    hub = urllib.parse.urlsplit(hub_endpoint()).netloc
    if urllib.parse.urlsplit(url).netloc == hub:
        token = _hub_token()
        if token:
            req.add_header("Authorization", f"Bearer {token}")
    return req


def _resume_offset(resp: http.client.HTTPResponse, have: int) -> int:
    """Where the response's bytes start: ``have`` when the server honoured our ``Range`` (206 from ``have``), else 0."""
    if have and resp.status == 206:
        match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == have:
            return have
    return 0


def _hash_prefix(path: Path, digest: hashlib._Hash) -> None:
    """Feed ``digest`` the bytes already downloaded (to continue it over the rest)."""
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)


def _download_once(ref: ShardRef, dest: Path) -> tuple[str, int]:
    """Download ``ref`` to ``dest``, continuing a partial ``dest`` with an HTTP Range request when the server
    supports it (else from the start); return (sha256, size). Raises OSError / urllib errors."""
    opener = urllib.request.build_opener(_NoAuthAcrossHosts())
    have = dest.stat().st_size if dest.is_file() else 0
    req = _request(ref.url)
    if have:
        req.add_header("Range", f"bytes={have}-")
    with opener.open(req, timeout=_HTTP_TIMEOUT_S) as resp:
        start = _resume_offset(resp, have)
        digest = hashlib.sha256()
        if start:
            _hash_prefix(dest, digest)
        length = resp.headers.get("Content-Length")
        expected = start + int(length) if length is not None else None
        size = start
        with open(dest, "ab" if start else "wb") as out:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    if expected is not None and expected != size:
        raise OSError(f"connection closed after {size} of {expected} bytes")
    return digest.hexdigest(), size


def _http_message(ref: ShardRef, exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code in (401, 403):
            return (f"{ref.url}: HTTP {exc.code} (access denied); for a gated Hub repo accept its terms and set "
                    "HF_TOKEN")
        return f"{ref.url}: HTTP {exc.code} {exc.reason}"
    return f"{ref.url}: download failed ({type(exc).__name__}: {exc})"


def _download(ref: ShardRef, folder: Path) -> FetchedShard:
    dest = folder / "shard.download"
    dest.unlink(missing_ok=True)  # a partial file left by a killed run may be another shard: resume only our own
    for attempt in range(1, _HTTP_ATTEMPTS + 1):
        try:
            sha, size = _download_once(ref, dest)
        except urllib.error.HTTPError as exc:
            dest.unlink(missing_ok=True)
            if exc.code < 500 or attempt == _HTTP_ATTEMPTS:
                raise DatasetError(_http_message(ref, exc)) from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeouts, short or broken
            # chunked reads (IncompleteRead is no OSError): keep the bytes received and resume from them
            if attempt == _HTTP_ATTEMPTS:
                dest.unlink(missing_ok=True)
                raise DatasetError(_http_message(ref, exc) + f"; tried {_HTTP_ATTEMPTS} times") from None
        else:
            if ref.sha256 and sha != ref.sha256:
                dest.unlink(missing_ok=True)
                if attempt == _HTTP_ATTEMPTS:
                    raise DatasetError(f"{ref.url}: sha256 {sha[:12]}... differs from the listed {ref.sha256[:12]}... "
                                       f"after {_HTTP_ATTEMPTS} downloads; the shard or the listing is damaged")
                continue
            return FetchedShard(ref=ref, path=dest, sha256=sha, size=size, temporary=True)
        time.sleep(min(30.0, 2.0**attempt))  # back off before the next attempt
    raise AssertionError("unreachable")  # pragma: no cover


def _hash_local(ref: ShardRef) -> FetchedShard:
    path = Path(ref.url)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise DatasetError(f"{display_path(path)}: cannot read shard ({exc.strerror or exc})") from None
    return FetchedShard(ref=ref, path=path, sha256=digest.hexdigest(), size=size, temporary=False)


@contextlib.contextmanager
def fetch_shard(ref: ShardRef, folder: Path) -> Iterator[FetchedShard]:
    """Make one shard readable as a local file for the ``with`` block.

    A remote shard is downloaded into ``folder`` (one file, removed when the block ends, so at most one
    shard is on disk per caller); a local shard is read in place. Either way its sha256 is computed,
    and a remote shard whose listing gave a sha256 is verified against it (re-downloaded on mismatch).
    A download cut by the network is continued from the bytes received (an HTTP ``Range`` request; from
    the start when the server ignores it), up to ``_HTTP_ATTEMPTS`` attempts.

    Raises:
        DatasetError: The shard cannot be read or downloaded (HTTP errors name the status; 401/403 say
            how to pass a token), or keeps arriving damaged.
    """
    if not is_remote(ref.url):
        yield _hash_local(ref)
        return
    folder.mkdir(parents=True, exist_ok=True)
    fetched = _download(ref, folder)
    try:
        yield fetched
    finally:
        fetched.path.unlink(missing_ok=True)


def _label_of(member: str, fallback: str) -> str:
    """Class of a member: its first folder (``n01440764/x.JPEG``), else the key prefix before ``_``."""
    parts = [p for p in member.strip("/").split("/") if p not in ("", ".")]  # "./n014/x.JPEG" (tar -C dir .)
    if len(parts) > 1:
        return parts[0]
    key = parts[0].split(".", 1)[0]
    return key.split("_", 1)[0] if "_" in key else fallback


_SKIPPED_FILE = ".skipped.json"
"""Inside an unpacked shard tree: the members skipped while unpacking (hidden, so indexing ignores it)."""
_LABEL_SUFFIX = ".cls"
"""WebDataset's class-label member: ``<key>.cls`` holding the label as text (e.g. ``417``)."""
_MAX_LABEL_BYTES = 256
"""A ``.cls`` member larger than this is not a label (a label is a short integer or name)."""
_END_OF_ARCHIVE = 2 * tarfile.BLOCKSIZE
"""A complete tar ends with two zero blocks (POSIX ustar); a file that stops earlier was cut short."""


def _is_compressed(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(6)
    return head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00"


def _wds_key(member: str) -> str:
    """WebDataset sample key: the member path up to the first dot of its file name."""
    folder, _, base = member.rpartition("/")
    return (folder + "/" if folder else "") + base.split(".", 1)[0]


def _read_label(tf: tarfile.TarFile, m: tarfile.TarInfo) -> str:
    try:
        fh = tf.extractfile(m)
        return (fh.read() if fh is not None else b"").decode("utf-8", "replace").strip()
    except (tarfile.TarError, OSError, EOFError):
        return ""


def _scan(tf: tarfile.TarFile, label: str, file_size: int, plain: bool, out: TarListing) -> dict[str, str]:
    """Fill ``out`` with the image members of ``tf``; returns the ``.cls`` label text per sample key."""
    cls: dict[str, str] = {}
    for m in tf:
        if m.isfile() and m.name.endswith(_LABEL_SUFFIX) and 0 < m.size <= _MAX_LABEL_BYTES:
            cls[_wds_key(m.name)] = _read_label(tf, m)
        elif not (m.isfile() and is_image_name(m.name)):
            continue
        elif m.size == 0:
            out.skipped.append(SkippedFile(path=f"{label}:{m.name}", reason="zero-byte", detail=""))
        elif plain and m.offset_data + m.size > file_size:
            out.skipped.append(SkippedFile(path=f"{label}:{m.name}", reason="truncated",
                                           detail="member data runs past the end of the shard"))
        else:
            out.members.append(m)
    if plain and file_size < tf.offset + _END_OF_ARCHIVE and not any(s.reason == "truncated" for s in out.skipped):
        out.skipped.append(SkippedFile(path=label, reason="truncated", detail="no end-of-archive marker: the "
                                       "shard is cut short, members after the last one listed are lost"))
    return cls


def list_tar_images(path: Path, label: str) -> TarListing:
    """Image members of a tar shard in storage order, with each one's class.

    The class is the sample's ``.cls`` member (WebDataset's label convention) when there is one, else the
    member's first folder (``n01440764/x.JPEG``), else its key prefix before ``_`` (``n01440764_10026.jpg``),
    else the shard's name. A member whose header or data lies past the end of the file (a truncated shard)
    or a shard that is not a tar at all is recorded in ``skipped`` (``truncated`` / ``not-a-tar``), never raised.
    """
    out = TarListing()
    stem = Path(label).name.split(".", 1)[0]
    cls: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:*") as tf:
            cls = _scan(tf, label, path.stat().st_size, not _is_compressed(path), out)
    except (tarfile.TarError, EOFError, OSError) as exc:
        reason = "truncated" if out.members or out.skipped or isinstance(exc, EOFError) else "not-a-tar"
        if not any(s.reason == "truncated" for s in out.skipped):  # one record per cut, not two
            out.skipped.append(SkippedFile(path=label, reason=reason, detail=f"stopped listing: {exc}"))
    out.labels = {m.name: cls.get(_wds_key(m.name)) or _label_of(m.name, stem) for m in out.members}
    return out


def only_shards(path: Path) -> bool:
    """True when a local path is a ``.tar`` file, or a folder whose visible entries are all ``.tar`` files."""
    if path.is_file():
        return _is_tar_name(path.name)
    if not path.is_dir():
        return False
    visible = [p for p in path.iterdir() if not p.name.startswith(".")]
    return bool(visible) and all(p.is_file() and _is_tar_name(p.name) for p in visible)


def _safe_name(shard: str, member: str) -> str:
    """A flat file name for a member (no folders, nothing that can leave the target folder)."""
    flat = f"{Path(shard).name.split('.', 1)[0]}__{member.strip('/')}"
    return re.sub(r"[^\w.+-]", "_", flat).replace("..", "_")


UNPACK_VERSION = 2
"""Version of the unpacked tree's layout and labelling, part of its name: a change (v2: members stored as
``./class/x.png`` take ``class``, not ``.``) unpacks anew instead of reusing a tree labelled the old way."""


def unpack_shards(src: Source, cache: Path) -> tuple[Path, list[SkippedFile]]:
    """The image members of shard source ``src`` as an image-folder tree (one folder per class) under ``cache``.

    For commands that index files (``profile``, ``fid``, ``recommend``). The tree is named by a sha256 over
    every shard's sha256, written once (in a temporary folder, renamed when complete, so a half-written tree
    is never used) and reused while the shards are unchanged. Returns the tree and the members skipped
    while listing (kept in the tree's ``.skipped.json``).
    """
    digest = hashlib.sha256(f"unpack-v{UNPACK_VERSION}".encode())
    for ref in src.shards:
        with fetch_shard(ref, cache / ".download") as got:
            digest.update(got.sha256.encode())
    final = cache / digest.hexdigest()[:32]
    if not (final / _SKIPPED_FILE).is_file():
        _unpack_into(src, cache, final)
    try:
        raw = json.loads((final / _SKIPPED_FILE).read_text(encoding="utf-8"))
        return final, [SkippedFile.model_validate(r) for r in raw]
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{display_path(final)}: unpacked shards unreadable ({exc}); delete that folder") from None


def _unpack_into(src: Source, cache: Path, final: Path) -> None:
    work = cache / ".unpacking"
    remove_tree(work)
    work.mkdir(parents=True)
    skipped: list[SkippedFile] = []
    try:
        for ref in src.shards:
            with fetch_shard(ref, cache / ".download") as got:
                listing = list_tar_images(got.path, ref.name)
                skipped += listing.skipped
                if not listing.members:
                    continue
                with tarfile.open(got.path, "r:*") as tf:
                    for m in listing.members:
                        fh = tf.extractfile(m)
                        folder = re.sub(r"[^\w+-]", "_", listing.labels[m.name]) or "_"  # a safe folder name
                        dest = work / folder / _safe_name(ref.name, m.name)
                        dest.parent.mkdir(exist_ok=True)
                        dest.write_bytes(fh.read() if fh is not None else b"")
        (work / _SKIPPED_FILE).write_text(json.dumps([x.model_dump() for x in skipped]), encoding="utf-8")
        remove_tree(final)
        os.replace(work, final)
    finally:
        remove_tree(work)


def remove_tree(path: Path) -> None:
    """Remove a work folder (or a stray file in its place) without raising."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
