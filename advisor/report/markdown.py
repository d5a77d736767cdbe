"""Lay out a report :class:`~advisor.report.document.Document` as Markdown with PNGs beside it.

``report.md`` gets its figures as ``report_<figure>.png`` in the same folder, linked relatively, so
the folder can be committed or viewed on any Markdown renderer. Every text is escaped (:func:`md_text`):
a dataset path or class name holding ``*``, ``[..](..)``, ``<script>`` or ``|`` is shown as written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

from advisor.report.document import Document, Section, Table
from engine.data.imageio import display_text

__all__ = ["render_markdown", "write_markdown", "md_text", "say_if_replacing"]

# CommonMark lets a backslash escape any ASCII punctuation; these start markup anywhere in a line (emphasis, code,
# links, images, raw HTML, table cells, strikethrough, entities, headings and quotes).
_INLINE = re.compile(r"([\\`*_\[\]<>|~&!#])")
# These start markup only at the beginning of a line: list bullets, setext underlines, "1." / "1)" ordered lists.
_LINE_START = re.compile(r"^(?:([-+=])|(\d+)(?=[.)]))")


def md_text(text: object, *, line_start: bool = True) -> str:
    """``text`` as literal Markdown inline text: one line, control characters escaped, markup characters escaped.

    ``line_start=False`` for table cells, where a leading ``-`` or ``1.`` starts nothing.
    """
    flat = _INLINE.sub(r"\\\1", display_text(" ".join(str(text).splitlines())))
    m = _LINE_START.match(flat) if line_start else None
    if m is None:
        return flat
    if m.group(1):
        return "\\" + flat
    return flat[:m.end()] + "\\" + flat[m.end():]  # "1. x" would open an ordered list: escape the dot


def _cell(text: str) -> str:
    return md_text(text, line_start=False)


def _table(table: Table) -> list[str]:
    align = ["---:" if i in table.numeric else "---" for i in range(len(table.headers))]
    lines = ["| " + " | ".join(_cell(h) for h in table.headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return lines + [""]


def _section(section: Section, image_names: dict[str, str]) -> list[str]:
    lines = [f"## {md_text(section.heading)}", ""]
    for paragraph in section.paragraphs:
        lines += [md_text(paragraph), ""]
    if section.reasons:
        lines += [f"- {md_text(text)}" + (f" *({md_text(source)})*" if source else "")
                  for text, source in section.reasons] + [""]
    if section.bullets:
        lines += [f"- {md_text(b)}" for b in section.bullets] + [""]
    if section.table is not None:
        lines += _table(section.table)
    for fig in section.figures:
        # the file name follows the user's --report name: percent-encoded so spaces or ')' cannot end the link
        lines += [f"![{md_text(fig.title)}]({quote(image_names[fig.name])})", "",
                  f"**{md_text(fig.title)}.** {md_text(fig.caption)}", ""]
    return lines


def render_markdown(doc: Document, image_names: dict[str, str]) -> str:
    """Return the Markdown text; ``image_names`` maps each figure name to its relative file name."""
    lines = [f"# {md_text(doc.title)}", "", f"*Generated {md_text(doc.generated)} by vpt-advisor*", ""]
    if doc.verdict:
        lines.append(
            f"**Recommendation: {md_text(doc.verdict)}**"
            + (f" (confidence: {md_text(doc.confidence)})" if doc.confidence else "")
        )
        lines.append("")
    if doc.summary:
        lines += [md_text(doc.summary), ""]
    if doc.warnings:
        lines += [f"> **Warning:** {md_text(w)}" for w in doc.warnings] + [""]
    for section in doc.sections:
        lines += _section(section, image_names)
    if doc.provenance:
        lines += ["## Provenance", ""] + _table(Table(["Item", "Value"], [[k, v] for k, v in doc.provenance.items()]))
    return "\n".join(lines).rstrip() + "\n"


def write_markdown(doc: Document, path: Path) -> Path:
    """Write ``path`` (.md) and one PNG per figure beside it (``<stem>_<figure>.png``, a warning when that
    replaces an existing file); returns ``path``."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_names = {}
    for fig in doc.figures:
        name = f"{path.stem}_{fig.name}.png"
        say_if_replacing(path.parent / name, path)
        (path.parent / name).write_bytes(fig.png)
        image_names[fig.name] = name
    path.write_text(render_markdown(doc, image_names), encoding="utf-8")
    return path


def say_if_replacing(target: Path, named: Path) -> Path:
    """Warn before a file the user did not name (written beside ``named``) replaces an existing one; returns it."""
    if target != named and os.path.lexists(target):
        from advisor.render import warn

        warn(f"replacing the existing file {target} (written beside {named}; move it away to keep it)")
    return target
