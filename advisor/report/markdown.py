"""Lay out a report :class:`~advisor.report.document.Document` as Markdown with PNGs beside it.

``report.md`` gets its figures as ``report_<figure>.png`` in the same folder, linked relatively, so
the folder can be committed or viewed on any Markdown renderer. Table cells escape ``|``.
"""

from __future__ import annotations

from pathlib import Path

from advisor.report.document import Document, Section, Table

__all__ = ["render_markdown", "write_markdown"]


def _cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> list[str]:
    align = ["---:" if i in table.numeric else "---" for i in range(len(table.headers))]
    lines = ["| " + " | ".join(_cell(h) for h in table.headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return lines + [""]


def _section(section: Section, image_names: dict[str, str]) -> list[str]:
    lines = [f"## {section.heading}", ""]
    for paragraph in section.paragraphs:
        lines += [paragraph, ""]
    if section.reasons:
        lines += [f"- {text}" + (f" *({source})*" if source else "") for text, source in section.reasons] + [""]
    if section.bullets:
        lines += [f"- {b}" for b in section.bullets] + [""]
    if section.table is not None:
        lines += _table(section.table)
    for fig in section.figures:
        lines += [f"![{fig.title}]({image_names[fig.name]})", "", f"**{fig.title}.** {fig.caption}", ""]
    return lines


def render_markdown(doc: Document, image_names: dict[str, str]) -> str:
    """Return the Markdown text; ``image_names`` maps each figure name to its relative file name."""
    lines = [f"# {doc.title}", "", f"*Generated {doc.generated} by vpt-advisor*", ""]
    if doc.verdict:
        lines.append(
            f"**Recommendation: {doc.verdict}**" + (f" (confidence: {doc.confidence})" if doc.confidence else "")
        )
        lines.append("")
    if doc.summary:
        lines += [doc.summary, ""]
    if doc.warnings:
        lines += [f"> **Warning:** {w}" for w in doc.warnings] + [""]
    for section in doc.sections:
        lines += _section(section, image_names)
    if doc.provenance:
        lines += ["## Provenance", ""] + _table(Table(["Item", "Value"], [[k, v] for k, v in doc.provenance.items()]))
    return "\n".join(lines).rstrip() + "\n"


def write_markdown(doc: Document, path: Path) -> Path:
    """Write ``path`` (.md) and one PNG per figure beside it (``<stem>_<figure>.png``); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_names = {}
    for fig in doc.figures:
        name = f"{path.stem}_{fig.name}.png"
        (path.parent / name).write_bytes(fig.png)
        image_names[fig.name] = name
    path.write_text(render_markdown(doc, image_names), encoding="utf-8")
    return path
