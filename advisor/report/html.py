"""Lay out a report :class:`~advisor.report.document.Document` as ONE self-contained HTML file.

Figures are embedded as base64 PNG ``data:`` URIs and the CSS is inline, so the file opens offline,
can be mailed or attached to a ticket, and loads nothing from the network (no scripts, fonts or
style sheets from elsewhere). All text is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from advisor.report.document import Document, FigureImage, Section, Table
from engine.data.imageio import display_text

__all__ = ["render_html", "write_html"]

_CSS = """
:root { --ft: #D55E00; --vpt: #0072B2; --pilot: #6B6B6B; --ink: #1d1d1f; --muted: #5f6368; --line: #dadce0; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       margin: 0; background: #f6f7f9; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 32px 0 10px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
.meta { color: var(--muted); font-size: 13px; }
.verdict { display: flex; align-items: center; gap: 16px; margin: 18px 0 8px; padding: 16px 20px;
           border-radius: 10px; border-left: 8px solid var(--pilot); background: #f1f3f4; }
.verdict.ft { border-color: var(--ft); background: #fbeee6; }
.verdict.vpt { border-color: var(--vpt); background: #e6f0f8; }
.verdict .label { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); }
.verdict .value { font-size: 28px; font-weight: 700; }
.verdict.ft .value { color: var(--ft); } .verdict.vpt .value { color: var(--vpt); }
.confidence { margin-left: auto; text-align: right; }
.confidence .value { font-size: 18px; }
.summary { font-size: 16px; margin: 4px 0 12px; }
.warnings { border: 1px solid #e6a700; background: #fff8e1; border-radius: 8px; padding: 8px 16px; }
.warnings li { margin: 2px 0; }
ul.reasons { padding-left: 20px; } ul.reasons li { margin: 6px 0; }
.source { display: inline-block; font-size: 12px; color: var(--muted); background: #eef0f2; border-radius: 4px;
          padding: 0 6px; margin-left: 6px; white-space: nowrap; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; margin: 8px 0 16px; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f1f3f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 16px 0 28px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 6px; }
figcaption b { color: var(--ink); }
dl.provenance { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; font-size: 13px; }
dl.provenance dt { color: var(--muted); } dl.provenance dd { margin: 0; font-family: ui-monospace, monospace;
                                                           word-break: break-all; }
"""


def _e(text: object) -> str:
    # display_text first: a bidi override or control character in a path would reorder or hide the text around it
    return html.escape(display_text(str(text)), quote=True)


def _verdict_class(verdict: str) -> str:
    text = verdict.strip().lower()
    if "pilot" in text:
        return "pilot"
    if text.startswith(("vpt", "visual prompt")) or "prompt tuning" in text:
        return "vpt"
    if text.startswith(("ft", "full")) or "finetun" in text or "fine-tun" in text:
        return "ft"
    return "pilot"


def _figure(fig: FigureImage) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure id="fig-{_e(fig.name)}"><img src="data:image/png;base64,{data}" alt="{_e(fig.title)}">'
        f"<figcaption><b>{_e(fig.title)}.</b> {_e(fig.caption)}</figcaption></figure>"
    )


def _table(table: Table) -> str:
    def cls(i: int) -> str:
        return ' class="num"' if i in table.numeric else ""

    head = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(table.headers))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{_e(cell)}</td>" for i, cell in enumerate(row)) + "</tr>" for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(section: Section) -> str:
    parts = [f"<section><h2>{_e(section.heading)}</h2>"]
    parts += [f"<p>{_e(p)}</p>" for p in section.paragraphs]
    if section.reasons:
        items = "".join(
            f"<li>{_e(text)}" + (f'<span class="source">{_e(source)}</span>' if source else "") + "</li>"
            for text, source in section.reasons
        )
        parts.append(f'<ul class="reasons">{items}</ul>')
    if section.bullets:
        parts.append("<ul>" + "".join(f"<li>{_e(b)}</li>" for b in section.bullets) + "</ul>")
    if section.table is not None:
        parts.append(_table(section.table))
    parts += [_figure(fig) for fig in section.figures]
    parts.append("</section>")
    return "".join(parts)


def render_html(doc: Document) -> str:
    """Return the whole report as one HTML string (inline CSS, embedded PNGs, no external resources)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(doc.title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(doc.title)}</h1>",
        f'<div class="meta">Generated {_e(doc.generated)} by vpt-advisor</div>',
    ]
    if doc.verdict:
        confidence = (
            f'<div class="confidence"><div class="label">Confidence</div><div class="value">{_e(doc.confidence)}</div>'
            "</div>"
            if doc.confidence
            else ""
        )
        parts.append(
            f'<div class="verdict {_verdict_class(doc.verdict)}" id="verdict"><div><div class="label">Recommendation'
            f'</div><div class="value">{_e(doc.verdict)}</div></div>{confidence}</div>'
        )
    if doc.summary:
        parts.append(f'<p class="summary">{_e(doc.summary)}</p>')
    if doc.warnings:
        parts.append('<div class="warnings"><ul>' + "".join(f"<li>{_e(w)}</li>" for w in doc.warnings) + "</ul></div>")
    parts += [_section(s) for s in doc.sections]
    if doc.provenance:
        items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in doc.provenance.items())
        parts.append(f'<section><h2>Provenance</h2><dl class="provenance">{items}</dl></section>')
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def write_html(doc: Document, path: Path) -> Path:
    """Write :func:`render_html` output to ``path`` (UTF-8), creating the folder; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(doc), encoding="utf-8")
    return path
