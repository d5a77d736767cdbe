"""Rich rendering of ``vpt-advisor recommend``: a short answer by default, the full argument with ``--explain``.

Short view (what a person reads in ten seconds): the answer with its confidence, one line per reason
with the table it rests on, the nearest-task evidence table, each caveat once, and where the full
text is. ``--explain`` prints every reason in full, the data-size trend and the provenance, as the
report does. Both views render only what the recommendation carries, so added evidence fields stay
visible without changes here (the JSON is the complete record).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from rich.console import RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from advisor.evidence import fmt_acc
from advisor.render import console, err_console, print_message, warn
from advisor.render.tables import Col, fit_table, kv_table
from advisor.schemas import NearestTask, Reason, Recommendation, RecommendReport, RecommendRequest

__all__ = ["render_recommendation", "render_report", "short_reason", "FULL_TEXT_HINT"]

_COLOURS = {"FT": "cyan", "VPT": "green", "pilot": "yellow"}
_LABELS = {"FT": "Full finetuning (FT)", "VPT": "Visual prompt tuning (VPT)", "pilot": "Run a pilot of FT and VPT"}
FULL_TEXT_HINT = "More: --explain (-v) for the full reasoning, --json, --report out.html"
SHORT_VIEW_LINES = 25
"""The short view (stdout and the warnings on stderr) fits one 80x25 terminal screen: the evidence table gives up rows
(the dissenting experiments are kept, the rest counted) until it does; ``--explain`` shows every row."""
MIN_TABLE_ROWS = 2
"""The table never shrinks below this many rows: the minority's first row and one of the majority, so a split vote
shows both sides (the line under the table counts the rest)."""
SHORT_REASON_CHARS = 150
"""A short reason longer than this is cut at its first clause boundary (two lines at 80 columns)."""


def _norm(text: str) -> str:
    return " ".join(text.split()).rstrip(".").lower()


def _strip_parentheticals(text: str) -> str:
    out, depth = [], 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return re.sub(r"\s+([,.;:])", r"\1", re.sub(r"\s{2,}", " ", "".join(out))).strip()


def _first_sentence(text: str) -> str:
    m = re.search(r"(?<=[a-z0-9%)'\]])\.\s+(?=[A-Z])", text)
    return text[: m.start()] if m else text.rstrip(".")


def short_reason(reason: Reason, rec: Recommendation) -> str:
    """One line (two at most at 80 columns) saying what a reason says; the full sentence is in --explain."""
    inp = rec.inputs
    if reason.rule == "similarity":
        thr = rec.provenance.threshold
        if inp.fid is None:
            tail = "; high disparity decides without it" if rec.disparity == "high" else ""
            return f"FID not measured (similarity unknown){tail}"
        where = {"borderline": f"inside the borderline band {thr.band[0]:.1f}-{thr.band[1]:.1f}",
                 "similar": f"below the threshold {thr.value:.1f}: similar data",
                 "dissimilar": f"above the threshold {thr.value:.1f}: dissimilar data",
                 "unverified": "unverified, so it does not decide"}.get(rec.similarity, rec.similarity)
        return f"FID {inp.fid:.1f} is {where}"
    text = _first_sentence(_strip_parentheticals(reason.sentence))
    source = _strip_parentheticals(reason.source)
    if text.startswith(source + ": "):  # the source is printed in front of the line already
        text = text[len(source) + 2:]
        text = text[:1].upper() + text[1:]
    if len(text) > SHORT_REASON_CHARS:
        cut = min((i for i in (text.find("; "), text.find(": ")) if i >= 40), default=-1)
        if cut > 0:
            text = text[:cut]
    return text


def _headline(rec: Recommendation) -> Text:
    colour = _COLOURS[rec.recommendation]
    lean = f" (leaning {rec.lean})" if rec.lean else ""
    line = Text.assemble("Recommendation: ", (_LABELS[rec.recommendation], f"bold {colour}"), lean, " · confidence ",
                         (rec.confidence, "bold"))
    return line


def _facts(report: RecommendReport) -> str:
    rec, inp = report.recommendation, report.recommendation.inputs
    n = f"n_train={inp.n_train:,}" if inp.n_train else "n_train unknown"  # "=": label and value never split
    fid = f"FID {inp.fid:.1f} ({rec.similarity})" if inp.fid is not None else "FID unmeasured"
    if inp.fid is not None and inp.fid_n is not None:  # the N it was compared at, and its interval
        interval = f", interval {inp.fid_interval[0]:.1f}-{inp.fid_interval[1]:.1f}" if inp.fid_interval else ""
        fid = f"FID {inp.fid:.1f} at N={inp.fid_n:,}{interval} ({rec.similarity})"
    task_line = _short_list(rec.task_line)  # 'counting: task type, high disparity, like ...'
    task = task_line or (f"{inp.task} ({rec.disparity} disparity)" if inp.task else f"{rec.disparity} disparity")
    backbone = f" · backbone {inp.backbone}" if inp.backbone != "in21k" else ""
    return f"{task} · {fid} · {n}{backbone}"


def _vote_title(rec: Recommendation) -> str | None:
    """'The paper's experiments that voted: VPT 5, FT 0 of 5' when the recommendation carries a vote."""
    vote = rec.vote
    if vote is None:
        return None
    ties = f", tie {vote.ties}" if vote.ties else ""
    return f"The paper's experiments that voted: VPT {vote.vpt}, FT {vote.ft}{ties} of {vote.n_voters}"


SHORT_LIST_ITEMS = 3
"""A 'like A, B, C, D, ...' list in the short view names this many, then says how many more."""


def _short_list(line: str) -> str:
    """``'x: like A, B, C, D, E'`` -> ``'x: like A, B, C and 2 more'`` (the full list is in --explain)."""
    head, sep, items = line.rpartition("like ")
    names = items.split(", ")
    if not sep or len(names) <= SHORT_LIST_ITEMS:
        return line
    return f"{head}like {', '.join(names[:SHORT_LIST_ITEMS])} and {len(names) - SHORT_LIST_ITEMS} more"


def _shown_tasks(tasks: list[NearestTask], max_rows: int | None, said: str = "") -> list[NearestTask]:
    """At most ``max_rows`` of ``tasks`` in their order: those the minority won first (a split stays visible), then
    those the reasons name (``said``), then the rest."""
    if max_rows is None or len(tasks) <= max_rows:
        return tasks
    winners = [t.winner for t in tasks]
    majority = max(set(winners), key=winners.count)
    ranked = sorted(range(len(tasks)), key=lambda i: (tasks[i].winner == majority, tasks[i].name not in said, i))
    keep = set(ranked[:max_rows])
    return [t for i, t in enumerate(tasks) if i in keep]


def _rest_line(tasks: list[NearestTask], shown: list[NearestTask]) -> str | None:
    """'+ 6 more that voted (all VPT): --explain lists every one' for the rows the short view left out."""
    rest = [t for t in tasks if t not in shown]
    if not rest:
        return None
    counts = {w: sum(t.winner == w for t in rest) for w in dict.fromkeys(t.winner for t in rest)}
    sides = f"all {rest[0].winner}" if len(counts) == 1 else ", ".join(f"{w} {c}" for w, c in counts.items())
    return f"+ {len(rest)} more ({sides}): --explain lists every one"


def _nearest(rec: Recommendation, *, width: int, detail: bool, max_rows: int | None = None) -> list[RenderableType]:
    """The evidence table; why each row is there is a letter explained once under it."""
    tasks = _shown_tasks(rec.nearest_tasks, max_rows, " ".join(short_reason(r, rec) for r in rec.reasons))
    whys = list(dict.fromkeys(_why(t) for t in tasks))
    letter = {w: "abcdefghijklmnopqrstuvwxyz"[i % 26] for i, w in enumerate(whys)}
    sources = list(dict.fromkeys(t.source.split(" (")[0] for t in tasks))
    cols = [Col("Task"), Col("Group")]
    if len(sources) > 1:
        cols.append(Col("Table"))
    cols += [Col("n", "right"), Col("FT %", "right"), Col("VPT %", "right"),
             Col("VPT-FT", "right", short="Δ", meaning="VPT-FT (points)"), Col("Winner", short="Win")]
    show_fid = any(t.fid is not None for t in tasks)
    if show_fid:
        cols.append(Col("FID", "right"))
    if len(whys) > 1:
        cols.append(Col("Near", short="N", meaning="why near, below"))
    rows = []
    for t in tasks:
        row: list[str | Text] = [Text(t.name), t.group]
        if len(sources) > 1:
            row.append(Text(t.source.split(" (")[0]))
        row += [f"{t.n_train:,}" if t.n_train is not None else "full", fmt_acc(t.ft), fmt_acc(t.vpt),
                f"{t.gap:+.1f}", t.winner]
        if show_fid:
            row.append(f"{t.fid:.1f}" if t.fid is not None else "-")
        if len(whys) > 1:
            row.append(letter[_why(t)])
        rows.append(row)
    at_800 = "; n=800: Tables 1-2" if detail and any(t.n_train == 800 for t in tasks) else ""
    title = _vote_title(rec) or f"Nearest paper tasks (ViT-B/16 IN-21k; {', '.join(sorted(sources))}{at_800})"
    if max_rows == 0:
        return [Text(f"{title}: --explain lists every one", style="dim")]
    out: list[RenderableType] = [fit_table(cols, rows, title=title, width=width)]
    rest = _rest_line(rec.nearest_tasks, tasks)
    if rest is not None:
        out.append(Text(rest, style="dim"))
    if len(whys) == 1:
        out.append(Text(f"Near because: {whys[0]}", style="dim"))
    else:
        out.append(Text("Near: " + "; ".join(f"{letter[w]} = {w}" for w in whys), style="dim"))
    return out


def _why(t: NearestTask) -> str:
    one_shot = ", one-shot" if t.setting == "one-shot" else ""
    return t.why + one_shot


def _caveats(report: RecommendReport, said: Iterable[str]) -> list[str]:
    """Warnings and provenance notes not already said in ``said`` (each caveat once)."""
    said_norm = [_norm(s) for s in said]
    out: list[str] = []
    seen: set[str] = set()
    for text in [*report.warnings, *report.recommendation.provenance.notes]:
        key = _norm(text)
        core = _norm(text.split(": ", 1)[1]) if ": " in text else key
        if key in seen or any(core in s or key in s for s in said_norm):
            continue
        seen.add(key)
        out.append(text)
    return out


def _short(report: RecommendReport) -> None:
    """The short view within :data:`SHORT_VIEW_LINES` lines: counted once off screen, then printed."""
    rec = report.recommendation
    max_rows = None
    if len(rec.nearest_tasks) > MIN_TABLE_ROWS:
        with console.capture() as out, err_console.capture() as err:  # the lines at this width, warnings included
            _short_view(report, max_rows=None, say_warning=lambda t: print_message(
                t, prefix="[yellow]Warning:[/yellow] ", target=err_console))
        over = out.get().count("\n") + err.get().count("\n") - SHORT_VIEW_LINES
        if over > 0:  # one more line is taken by the '+ N more' line
            max_rows = len(rec.nearest_tasks) - over - 1
            if max_rows < MIN_TABLE_ROWS:  # still too long (many reasons): the table gives way to one line
                max_rows = 0
    _short_view(report, max_rows=max_rows, say_warning=warn)


def _short_view(report: RecommendReport, *, max_rows: int | None, say_warning: Callable[[str], None]) -> None:
    rec = report.recommendation
    console.print(_headline(rec))
    console.print(Text(_facts(report), style="dim"))
    why = Table.grid(padding=(0, 1))
    why.add_column(justify="right", no_wrap=True)
    why.add_column()
    # the held-out record is one sentence of --explain (and --json: record); the short view stays short
    for i, r in enumerate([r for r in rec.reasons if r.rule != "record"], 1):  # wrapped lines hang under the word
        text = short_reason(r, rec)
        if r.rule == "similarity" and report.fid_would_change:  # what measuring it would change, on the same line
            text = f"FID not measured; {report.fid_would_change}"
        why.add_row(f" {i}.", Text.assemble((_strip_parentheticals(r.source), "magenta"), " · ", text))
    console.print(why)
    if rec.nearest_tasks:
        for part in _nearest(rec, width=console.width, detail=False, max_rows=max_rows):
            console.print(part)
    thr = rec.provenance.threshold
    shown = [r.sentence for r in rec.reasons if r.rule != "similarity"]
    if rec.inputs.fid is not None and thr.source == "table19-default":
        console.print(Text(_strip_parentheticals(thr.description.split(": ")[0]), style="dim"))
        shown.append(thr.description)
    for text in _caveats(report, shown):
        if text in report.warnings:
            say_warning(text)
        elif rec.inputs.fid is not None or "FID" not in text:  # an FID caveat without an FID: --explain only
            print_message(text, style="dim")
    console.print(Text(FULL_TEXT_HINT, style="dim"))


# ---------------------------------------------------------------- --explain: the full argument


def _panel(rec: Recommendation) -> Panel:
    colour = _COLOURS[rec.recommendation]
    lines = [f"[bold {colour}]{_LABELS[rec.recommendation]}[/]"
             + (f"  [dim](the priors lean {rec.lean})[/]" if rec.lean else ""),
             f"Confidence: [bold]{rec.confidence}[/]   Quadrant: {escape(rec.quadrant)}",
             f"Disparity: {rec.disparity}   Similarity: {rec.similarity}"]
    return Panel("\n".join(lines), title="Recommendation", border_style=colour, expand=False)


def _inputs(report: RecommendReport) -> Table:
    inp = report.recommendation.inputs
    pairs: list[tuple[str, str | Text]] = []
    if report.dataset is not None:
        d = report.dataset
        skipped = f", {d.n_skipped} skipped" if d.n_skipped else ""
        pairs.append(("dataset", Text(f"{d.source} ({d.layout}, {d.n_used} images{skipped}, {d.num_classes} classes)")))
    pairs.append(("task", Text(report.recommendation.task_line or "-")))
    pairs.append(("disparity", Text(f"{inp.disparity} (from {inp.disparity_source})")))
    pairs.append(("n_train", Text(f"{inp.n_train:,} ({inp.n_train_source})" if inp.n_train else "unknown")))
    fid = (f"{inp.fid:.2f} ({inp.fid_source}, reference '{inp.reference}')" if inp.fid is not None
           else "unmeasured (see the first reason)")
    pairs.append(("FID", Text(fid + _fid_detail(report))))
    pairs.append(("backbone", Text(inp.backbone)))
    return kv_table(pairs)


def _fid_detail(report: RecommendReport) -> str:
    """N, interval, FID of all images, FID-infinity and the verification mark of a measured FID."""
    m = report.fid_measurement
    if m is None or m.compared is None:
        return ""
    c = m.compared
    parts = [f"at N = {c.n:,}" + (f" (mean of {c.n_subsets} subsets)" if c.n_subsets > 1 else ""),
             f"{c.level:.0%} interval {c.interval[0]:.1f}-{c.interval[1]:.1f}"]
    if c.n != m.n_images:
        parts.append(f"all {m.n_images:,} images: {m.fid:.2f}")
    if m.infinity is not None:
        parts.append(f"FID-infinity ~ {m.infinity.value:.1f} (estimate)")
    mark = "; UNVERIFIED: " + "; ".join(m.unverified_reasons) if m.status == "unverified" else ""
    return " · " + ", ".join(parts) + mark


def _trend_lines(rec: Recommendation) -> list[str]:
    tr = rec.size_trend
    if tr is None:
        return []
    curve = "  ".join(f"{n:,}: {g:+.1f}" for n, g in tr.curve.items())
    lines = [
        f"Data-size trend ({tr.source}; {tr.grouping})",
        f"  mean VPT-FT gap at n={tr.n_train:,}{' (assumed)' if tr.n_assumed else ''}: {tr.mean_gap:+.1f} points "
        f"(range {tr.min_gap:+.1f} to {tr.max_gap:+.1f}, VPT ahead on {tr.vpt_ahead}/{len(tr.tasks)} tasks)",
        f"  mean gap at the table sizes: {curve}",
        f"  {tr.catch_up_note}",
    ]
    if tr.extrapolation_note:
        lines.append(f"  extrapolation: {tr.extrapolation_note}")
    return lines


def _explain(report: RecommendReport) -> None:
    rec = report.recommendation
    console.print(_inputs(report))
    console.print(_panel(rec))
    console.print("[bold]Why[/]")
    for i, r in enumerate(rec.reasons, 1):
        print_message(f" {i}. {r.sentence} [{r.source}]")
    if report.fid_would_change:
        print_message(report.fid_would_change[:1].upper() + report.fid_would_change[1:] + ".")
    if rec.nearest_tasks:
        for part in _nearest(rec, width=console.width, detail=True):
            console.print(part)
    for line in _trend_lines(rec):
        print_message(line)
    if rec.backbone is not None and rec.backbone.backbone != "in21k":
        b = rec.backbone
        groups = ", ".join(f"{g} {w}/{n}" for g, (w, n) in b.groups.items())
        console.print(Text(f"Backbone {b.backbone} ({b.source}): VPT wins per group {groups}"))
    for text in _caveats(report, [r.sentence for r in rec.reasons]):
        warn(text) if text in report.warnings else print_message(text, style="dim")
    p = rec.provenance
    print_message(f"Source: {p.paper} (arXiv {p.arxiv}); paper data sha256 {p.paper_data_sha256[:12]}; "
                  f"FID threshold {p.threshold.value:.1f} ({p.threshold.source}); vpt-advisor {p.advisor_version}.",
                  style="dim")


def render_recommendation(rec: Recommendation, *, explain: bool = False) -> None:
    """Print a recommendation on its own (``pilot`` uses this): short, or in full with ``explain``."""
    report = RecommendReport(recommendation=rec, request=RecommendRequest())
    if explain:
        _explain(report)
    else:
        _short(report)


def render_report(report: RecommendReport, *, explain: bool = False) -> None:
    """Print ``recommend``'s answer: the short view, or with ``explain`` the inputs and the full argument.

    Warnings of the report are printed here, once (a warning already said by a reason is not repeated).
    """
    if explain:
        _explain(report)
    else:
        _short(report)
