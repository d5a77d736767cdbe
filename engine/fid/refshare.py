"""Share reference statistics: export one to a file, import a file, pull one from a URL by sha256.

A team builds ``in21k`` once (``reference build``), exports it, and everyone else pulls it:

* the exchange file is an uncompressed ``.tar`` holding exactly ``<name>.npz`` (``mu``/``sigma``) and
  ``<name>.json`` (the provenance sidecar, whose ``npz_sha256`` ties it to that npz);
* import accepts that archive or a bare ``.npz`` (with its ``.json`` next to it when there is one),
  validates everything (members, sizes, keys, shapes, finite values, symmetric covariance, sidecar hash)
  in a temporary folder, and only then moves the files into place (each move atomic);
* pull downloads the archive, refuses it unless its sha256 equals the one given (nothing is written
  into the references folder on a mismatch), then imports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from engine.data.imageio import display_path
from engine.errors import ConfigError, ReferenceStatsError, StatsFileError
from engine.fid.frechet import StatsProvenance, file_sha256, load_stats, sidecar_path
from engine.fid.reference import (
    ReferenceInfo,
    reference_lock,
    reference_path,
    resolve_reference,
    validate_reference_name,
)
from engine.io import atomic_write_bytes
from engine.paths import references_dir

__all__ = ["export_reference", "import_reference", "pull_reference", "MAX_ARCHIVE_BYTES"]

MAX_ARCHIVE_BYTES = 512 * 2**20
"""Largest archive or member accepted (512 MiB). A 2048-d reference is about 32 MiB uncompressed (2048^2
float64 for sigma), so this leaves room for larger feature sizes while refusing runaway downloads."""
_HTTP_TIMEOUT_S = 60.0
"""Seconds without data before a pull is abandoned."""
_SHA_RE = re.compile(r"^[0-9a-fA-F]{64}$")


def export_reference(name: str, dest: Path, *, overwrite: bool = False) -> Path:
    """Write reference ``name`` (npz + sidecar) to the archive ``dest``.

    Raises:
        ReferenceNotFoundError: No such reference.
        ReferenceStatsError: It has no valid sidecar, or ``dest`` exists (without ``overwrite``).
    """
    validate_reference_name(name)
    _, info = resolve_reference(name)
    npz = Path(info.path)
    side = sidecar_path(npz)
    if not info.npz_sha256 or not side.is_file():
        raise ReferenceStatsError(f"reference {name!r} has no provenance sidecar matching its .npz; rebuild it "
                                  "with 'vpt-advisor reference build' before sharing it")
    dest = Path(dest).expanduser()
    if dest.exists() and not overwrite:
        raise ReferenceStatsError(f"{display_path(dest)} already exists; pass --overwrite or choose another file")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in (npz, side):
            data = path.read_bytes()
            member = tarfile.TarInfo(f"{name}{path.suffix}")
            member.size, member.mode = len(data), 0o644
            tf.addfile(member, io.BytesIO(data))
    atomic_write_bytes(dest, buf.getvalue())
    return dest


def _unpack(archive: Path, into: Path) -> tuple[Path, Path | None, str]:
    """Extract the two members of an exported archive into ``into``; returns (npz, json or None, name)."""
    try:
        with tarfile.open(archive, "r:") as tf:
            members = tf.getmembers()
            npzs = [m for m in members if m.name.endswith(".npz")]
            jsons = [m for m in members if m.name.endswith(".json")]
            bad = [m.name for m in members if not m.isfile() or "/" in m.name or m.name.startswith(".")
                   or m.size > MAX_ARCHIVE_BYTES]
            if bad or len(npzs) != 1 or len(jsons) > 1 or len(members) != len(npzs) + len(jsons):
                raise ReferenceStatsError(
                    f"{display_path(archive)}: not a reference archive (expected NAME.npz and NAME.json, found "
                    f"{', '.join(m.name for m in members) or 'nothing'}); "
                    "create one with 'vpt-advisor reference export'")
            out: list[Path | None] = []
            for m in (npzs[0], jsons[0] if jsons else None):
                if m is None:
                    out.append(None)
                    continue
                fh = tf.extractfile(m)
                target = into / ("stats" + Path(m.name).suffix)
                target.write_bytes(fh.read() if fh is not None else b"")
                out.append(target)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ReferenceStatsError(f"{display_path(archive)}: not a readable reference archive ({exc})") from None
    assert out[0] is not None
    return out[0], out[1], Path(npzs[0].name).stem


def _validate(npz: Path, side: Path | None, label: str) -> StatsProvenance | None:
    """Check the statistics (``load_stats`` runs the one stats validator) and their sidecar; returns the
    provenance (None without a sidecar)."""
    try:
        stats, prov = load_stats(npz)
    except StatsFileError as exc:
        raise ReferenceStatsError(f"{label}: {exc}") from None
    if side is None:
        return None
    try:
        raw = StatsProvenance.model_validate(json.loads(side.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ReferenceStatsError(f"{label}: the provenance sidecar is not valid ({exc})") from None
    if raw.npz_sha256 and raw.npz_sha256 != file_sha256(npz):
        raise ReferenceStatsError(f"{label}: the sidecar describes a different .npz (sha256 mismatch); "
                                  "export the reference again")
    if raw.dims and raw.dims != stats.dims:
        raise ReferenceStatsError(f"{label}: the sidecar says {raw.dims} dims but the stats have {stats.dims}")
    return prov or raw


@contextlib.contextmanager
def _staging() -> Iterator[Path]:
    folder = references_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=folder))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def import_reference(file: Path, *, name: str | None = None, overwrite: bool = False) -> ReferenceInfo:
    """Validate ``file`` (an exported archive, or a ``.npz`` with optional sidecar) and store it as ``name``.

    ``name`` defaults to the name inside the archive (or the npz's stem).

    Raises:
        ReferenceStatsError: Invalid file, or the name is taken (without ``overwrite``).
        ConfigError: Invalid name.
    """
    file = Path(file).expanduser()
    if not file.is_file():
        raise ReferenceStatsError(f"{display_path(file)}: no such file")
    if file.stat().st_size > MAX_ARCHIVE_BYTES:
        raise ReferenceStatsError(
            f"{display_path(file)}: larger than {MAX_ARCHIVE_BYTES // 2**20} MiB; not a reference")
    with _staging() as tmp:
        if file.suffix.lower() == ".npz":
            npz = tmp / "stats.npz"
            shutil.copyfile(file, npz)
            side: Path | None = None
            if sidecar_path(file).is_file():
                side = tmp / "stats.json"
                shutil.copyfile(sidecar_path(file), side)
            inner = file.stem
        else:
            npz, side, inner = _unpack(file, tmp)
        target_name = validate_reference_name(name or inner)
        prov = _validate(npz, side, display_path(file))
        target = reference_path(target_name)
        with reference_lock(target_name, "reference import"):
            if target.exists() and not overwrite:
                raise ReferenceStatsError(f"reference {target_name!r} already exists; pass --overwrite or --name OTHER")
            sidecar_path(target).unlink(missing_ok=True)
            if side is not None:  # sidecar first: until the npz lands, the old npz no longer matches it
                os.replace(side, sidecar_path(target))
            os.replace(npz, target)
    info = resolve_reference(target_name)[1]
    if prov is None:
        info = info.model_copy(update={"messages": [
            "imported without a provenance sidecar: its extractor, preprocessing and N are unknown, so FIDs "
            "against it cannot be verified"]})
    return info


def pull_reference(url: str, *, sha256: str, name: str | None = None, overwrite: bool = False) -> ReferenceInfo:
    """Download an exported archive, check its sha256, and import it.

    Raises:
        ConfigError: ``sha256`` is not 64 hex digits.
        ReferenceStatsError: Download failed or the sha256 differs (nothing is written), or import failed.
    """
    if not _SHA_RE.match(sha256):
        raise ConfigError(f"--sha256 {sha256!r}: expected 64 hex digits (the sha256 of the archive)")
    if name is not None:
        validate_reference_name(name)
    with _staging() as tmp:
        dest = tmp / "download.tar"
        digest = hashlib.sha256()
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "vpt-advisor"})
            with urllib.request.urlopen(req, timeout=_HTTP_TIMEOUT_S) as resp, open(dest, "wb") as out:  # noqa: S310
                size = 0
                while chunk := resp.read(1 << 20):
                    size += len(chunk)
                    if size > MAX_ARCHIVE_BYTES:
                        raise ReferenceStatsError(
                            f"{url}: larger than {MAX_ARCHIVE_BYTES // 2**20} MiB; not a reference")
                    out.write(chunk)
                    digest.update(chunk)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ReferenceStatsError(f"{url}: download failed ({exc})") from None
        got = digest.hexdigest()
        if got != sha256.lower():
            raise ReferenceStatsError(f"{url}: sha256 is {got}, not the expected {sha256.lower()}; nothing was "
                                      "imported (the file changed or the hash is wrong)")
        return import_reference(dest, name=name, overwrite=overwrite)
