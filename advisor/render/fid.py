"""Rich output for ``vpt-advisor fid`` and ``vpt-advisor reference``."""

from __future__ import annotations

from pydantic import BaseModel
from rich.text import Text

from advisor.render import console, print_fields, print_message, warn
from advisor.render.tables import Col, fit_table
from engine.fid.reference import ReferenceInfo
from engine.fid.run import FidResult, SideSummary

__all__ = ["ReferenceList", "render_fid", "render_reference", "render_reference_list"]


class ReferenceList(BaseModel):
    """JSON shape of ``reference list --json``."""

    references: list[ReferenceInfo]


def _side_row(label: str, s: SideSummary) -> list[str | Text]:
    n = str(s.n_images) if s.n_images else "unknown"
    detail = {"images": f"{s.n_cached} from cache", "reference": "stored reference"}.get(s.kind, "stats file")
    return [label, n, str(s.n_skipped), detail, Text(s.preprocessing or "-")]


def render_fid(result: FidResult) -> None:
    """Print the FID, both sides (table, then each source path on its own line) and any warnings."""
    if result.fid is not None:
        mark = " [yellow](unverified)[/yellow]" if result.status == "unverified" else ""
        console.print(f"[bold]FID:[/bold] {result.fid:.6f}{mark}")
    sides = [("A", result.a)] + ([("B", result.b)] if result.b is not None else [])
    cols = [Col("side"), Col("images", "right"), Col("skipped", "right"), Col("features"), Col("preprocessing")]
    console.print(fit_table(cols, [_side_row(label, s) for label, s in sides], width=console.width))
    print_fields([(f"{label}:", s.source) for label, s in sides])
    extractor = result.a.extractor or (result.b.extractor if result.b else "")
    print_message(f"Extractor: {extractor or 'unknown'} · dims {result.dims} · {result.seconds:.1f} s")
    if result.saved_stats:
        print_message(f"Statistics of A written to {result.saved_stats}")
    for w in result.warnings:
        warn(w)
    for reason in result.unverified_reasons:
        warn(f"FID unverified: {reason}")


def render_reference(info: ReferenceInfo) -> None:
    """Print one reference's provenance (paths and hashes whole, on their own line when long)."""
    pairs = [
        ("Path", info.path), ("Images", str(info.n_images) if info.n_images else "unknown"),
        ("Source", info.source or "unknown"), ("Created", info.created or "unknown"),
        ("Extractor", info.extractor or "unknown"), ("Preprocessing", info.preprocessing or "unknown"),
        ("Dims", str(info.dims)), ("npz sha256", info.npz_sha256 or "-"),
    ]
    if info.n_shards:
        pairs.append(("Shards", str(info.n_shards)))
    if info.n_skipped or info.skipped_reasons:
        detail = ", ".join(f"{k} {v}" for k, v in info.skipped_reasons.items())
        pairs.append(("Skipped", f"{info.n_skipped}" + (f" ({detail})" if detail else "")))
    pairs += [("Note", n) for n in info.notes]
    pairs += [("Warning", m) for m in info.messages]
    print_fields(pairs, title=f"Reference {info.name}")


def _extractor_parts(extractor: str) -> tuple[str, str]:
    """``pytorch-fid-inception-v3:dims=2048:weights=0123abcd...`` -> (``inception-v3``, ``0123abcd...``)."""
    if not extractor:
        return "?", "?"
    fields = dict(part.split("=", 1) for part in extractor.split(":") if "=" in part)
    network = extractor.split(":", 1)[0].removeprefix("pytorch-fid-")
    return network, fields.get("weights", "?")


def render_reference_list(refs: ReferenceList) -> None:
    """Print the table of references (extractor and weights hash included), then each source whole."""
    if not refs.references:
        from engine.fid.availability import reference_build_command
        from engine.fid.gates import MIN_REFERENCE_IMAGES
        from engine.fid.reference import DEFAULT_REFERENCE

        # ';' ends each command: print_message puts each on a line of its own, the prose on others
        print_message(f"No references yet. Build the smallest '{DEFAULT_REFERENCE}' the FID check accepts "
                      f"({MIN_REFERENCE_IMAGES:,} images, needs HF_TOKEN) with: "
                      f"{reference_build_command(DEFAULT_REFERENCE)}; or pull a shared one with: "
                      "vpt-advisor reference pull URL --sha256 HEX")
        return
    cols = [Col("name"), Col("images", "right"), Col("dims", "right"), Col("extractor"),
            Col("weights sha256", short="weights"), Col("created")]
    rows: list[list[str | Text]] = []
    for r in refs.references:
        network, digest = _extractor_parts(r.extractor)
        rows.append([Text(r.name), str(r.n_images) if r.n_images else "?", str(r.dims), Text(network), digest,
                     (r.created or "?")[:10]])
    console.print(fit_table(cols, rows, width=console.width))
    print_fields([(f"{r.name}:", r.source or "source unknown") for r in refs.references])
