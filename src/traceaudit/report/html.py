"""The report as one self-contained HTML page, for people who were not at the terminal.

::

    from traceaudit import analyze
    from traceaudit.report.html import write_html

    report = analyze("Logfile.CSV")
    write_html(report, "report.html", inputs=["Logfile.CSV"])

The page is a single file that can be mailed or attached to an issue, and opens offline:
its stylesheet and its small script (``html_assets/report.css`` and ``report.js``, no
framework) are inlined, and a Content-Security-Policy forbids loading anything from
anywhere and allows just that one style and that one script, by their SHA-256 hashes.
The page is rendered complete on the server and reads without script (and prints: every
row shown, filters hidden, details opened); the script only enhances it. It reads top to
bottom: the answer (who held what, how long operations stayed blocked, the advice and its
coverage, the warning that matters most), what was analysed, the verdicts and blockers,
every conflict with the handles that blocked it (filterable by verdict, holder, process and
path text, sortable by time and hold time; its data is also a JSON block,
``#conflict-data``), a zoomable SVG timeline of each of the most telling blocked paths
(drawn here, see :mod:`traceaudit.report.html_timeline`; each failure mark links to its
table row), blocked and hold times, the retry advice (with the replay of real tools, and
the code in tabs, closed until asked for), the application's own retries, and the
warnings. The static matplotlib figures are for ``--plots``; only the blocked-time
distribution is embedded here.

Every string that comes from the trace (paths, process names, Procmon's Detail) is
HTML-escaped, and escaped again inside the JSON block (``<`` as ``\\u003c``): a file may
well be called ``</script><script>alert(1)</script>.txt``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import os
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from traceaudit._atomic import write_atomically
from traceaudit._outputs import same_file
from traceaudit.analysis.rules import SEP, fold, path_key
from traceaudit.display import access_text, fmt_duration, fmt_ms, plural, share_text
from traceaudit.errors import UsageError
from traceaudit.report import figure_data as data
from traceaudit.report.answer import answer
from traceaudit.report.html_timeline import timeline_svg
from traceaudit.report.text import VERDICT_WORDS, _with_clock_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from traceaudit.policy import RetryPolicy
    from traceaudit.report.data import ReportData as Report

__all__ = ["render_html", "write_html"]

MAX_CONFLICT_ROWS = 500
"""Conflicts listed in the table; the JSON output (``--json``) has all of them."""

MAX_BLOCKERS_PER_CONFLICT = 5
MAX_TIMELINES = 5
MAX_DELAYS_SHOWN = 12


_ASSETS = "html_assets"


def _asset(name: str) -> str:
    """The text of one of the page's inlined assets (``report.css``, ``report.js``)."""
    return (resources.files("traceaudit.report") / _ASSETS / name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return (
        "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"
    )


def _csp(style: str, script: str) -> str:
    """Nothing from anywhere: the one style and the one script are allowed by their hash."""
    return (
        f"default-src 'none'; img-src data:; style-src {_sha256(style)}; "
        f"script-src {_sha256(script)}; base-uri 'none'; form-action 'none'"
    )


# ---------------------------------------------------------------------------- helpers


def _e(value: object) -> str:
    """HTML-escape anything (``None`` becomes an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _ms(value: float | None) -> str:
    return _e(fmt_ms(value))


def _path(value: object) -> str:
    """An escaped path that may wrap after each ``\\`` or ``/`` (and nowhere else)."""
    text = _e(value)
    return text.replace("\\", "\\<wbr>").replace("/", "/<wbr>")


def _camel_breaks(text: str) -> str:
    """``SetRenameInformationFile`` may wrap between its words (already escaped text)."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "<wbr>", text)


def _json_block(element_id: str, payload: object) -> str:
    """``payload`` as a JSON data block that trace text cannot break out of.

    ``<``, ``>`` and ``&`` are written as ``\\u`` escapes, so neither ``</script>`` nor
    ``<!--`` can appear inside; ``JSON.parse`` reads them back unchanged.
    """
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: frozenset[int] | set[int] = frozenset(),
    css_class: str | None = None,
) -> str:
    """A table from already-escaped cells; columns in ``numeric`` are right-aligned."""

    def cls(i: int) -> str:
        return ' class="num"' if i in numeric else ""

    attrs = f' class="{css_class}"' if css_class else ""
    out = [f'<div class="scroll"><table{attrs}><thead><tr>']
    out += [f"<th{cls(i)}>{h}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _figure(figure: Figure | None, alt: str, caption: str, fmt: str) -> str:
    """A figure embedded as a ``data:`` image (SVG or PNG), with its caption."""
    if figure is None:
        return ""
    from traceaudit.report.plot import figure_bytes

    payload = base64.b64encode(figure_bytes(figure, fmt)).decode("ascii")
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return (
        f'<figure><img src="data:{mime};base64,{payload}" alt="{_e(alt)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


# ---------------------------------------------------------------------------- sections


def _header(report: Report) -> str:
    names = ", ".join(t.name for t in report.traces) or "no trace"
    rows = []
    for t in report.traces:
        span = "-"
        if t.first is not None and t.last is not None:
            seconds = (t.last - t.first).total_seconds()
            span = (
                f"{t.first:%Y-%m-%d %H:%M:%S} to {t.last:%H:%M:%S} ({fmt_duration(seconds * 1000)})"
            )
        skipped = sum(t.skipped.values())
        rows.append(
            [
                f'<span class="path">{_e(t.name)}</span>',
                _e(t.format),
                f"{t.events:,}",
                f"{t.processes:,}",
                _e(span),
                _e(t.clock),
                f"{skipped:,}",
            ]
        )
    filters = {k: v for k, v in report.filters.items() if v}
    filter_text = (
        '<p class="note">Filters: '
        + "; ".join(f"{_e(k)} = <code>{_e(v)}</code>" for k, v in filters.items())
        + " (only matching conflicts are reported; every process's handles still count as"
        " blockers).</p>"
        if filters
        else ""
    )
    return (
        f"<header><h1>traceaudit report: {_e(names)}</h1>"
        f'<p class="lead">{_headline(report)}</p>{_answer(report)}</header>'
        + _nav(report)
        + '<section id="traces"><h2>What was analysed</h2>'
        + _table(
            [
                "trace",
                "format",
                "events",
                "processes",
                "time span",
                "clock",
                "damaged rows skipped",
            ],
            rows,
            numeric={2, 3, 6},
        )
        + filter_text
        + "</section>"
    )


def _headline(report: Report) -> str:
    conflicts = report.conflicts
    if conflicts.is_empty():
        return "No failed file operation in this trace can be explained by a lock."
    counts = dict(conflicts.group_by("verdict").len().iter_rows())
    paths = conflicts["path"].str.to_lowercase().n_unique()
    parts = [f"{counts[v]:,} {VERDICT_WORDS[v]}" for v in VERDICT_WORDS if counts.get(v)]
    return (  # built from constants and numbers only
        f"{plural(conflicts.height, 'conflict')} on {plural(paths, 'path')}: "
        + "; ".join(parts)
        + "."
    )


def _answer(report: Report) -> str:
    """The answer first: the same lines the terminal report opens with."""
    items = "".join(
        f"<dt>{_e(label)}</dt><dd>{_e(text)}</dd>" for label, text in answer(report).lines()
    )
    return f'<dl class="answer">{items}</dl>'  # every value escaped


def _nav(report: Report) -> str:
    items = [
        ("traces", "What was analysed"),
        ("verdicts", "Verdicts and blockers"),
        ("conflicts", "Conflicts"),
        ("timelines", "Timelines of the blocked paths"),
        ("windows", "Blocked time and hold time"),
        ("advice", "Retry advice"),
        ("retries", "The application's own retries"),
        *([("minifilters", "Minifilters below Procmon")] if report.minifilters else []),
        ("warnings", "Warnings"),
    ]
    links = "".join(f'<li><a href="#{a}">{_e(t)}</a></li>' for a, t in items)
    return f"<nav><ol>{links}</ol></nav>"


def _verdicts(report: Report) -> str:
    conflicts = report.conflicts
    out = ['<section id="verdicts"><h2>Verdicts and blockers</h2>']
    if conflicts.is_empty():
        out.append("<p>No conflicts.</p></section>")
        return "".join(out)
    counts = dict(conflicts.group_by("verdict").len().iter_rows())
    rows = [
        [f'<span class="badge {_e(v)}">{_e(v)}</span>', _e(VERDICT_WORDS[v]), f"{counts[v]:,}"]
        for v in VERDICT_WORDS
        if counts.get(v)
    ]
    out.append(_table(["verdict", "meaning", "conflicts"], rows, numeric={2}))
    blockers = data.blocker_counts(report)
    if blockers.height:
        most = max(int(blockers["conflicts"].max() or 1), 1)  # type: ignore[arg-type]
        rows = []
        for r in blockers.iter_rows(named=True):
            width = max(round(120 * r["conflicts"] / most), 1)
            own = ' class="own"' if r["own"] else ""
            bar = (
                f'<svg class="hbar" width="120" height="10" aria-hidden="true">'
                f'<rect{own} width="{width}" height="10"/></svg>'
            )
            rows.append(
                [
                    _e(r["process"]) + (" (its own handle)" if r["own"] else ""),
                    f"{r['conflicts']:,}{bar}",
                    f"{r['censored']:,}",
                    _ms(r["median_ms"]),
                ]
            )
        out.append("<h3>Conflicts by blocking process</h3>")
        out.append('<p class="note">Each conflict is counted for the holder that let go last.</p>')
        out.append(
            _table(
                ["blocking process", "conflicts", "still held at the end", "median time held"],
                rows,
                numeric={1, 2, 3},
            )
        )
    out.append("</section>")
    return "".join(out)


def _items(entries: list[dict[str, Any]], render: Any, what: str) -> str:
    items = "".join(render(e) for e in entries[:MAX_BLOCKERS_PER_CONFLICT])
    if len(entries) > MAX_BLOCKERS_PER_CONFLICT:
        items += f"<li>… and {len(entries) - MAX_BLOCKERS_PER_CONFLICT} more {what}</li>"
    return items


def _section_item(s: dict[str, Any]) -> str:
    own = " <i>(its own)</i>" if s["own"] else ""
    return (
        f"<li>mapped section of <b>{_e(s['process'])}</b> ({_e(s['pid'])}){own}: "
        f'<span class="muted">{_e(s["source"])} at {_e(s["mapped_text"])}, row '
        f"{_e(s['row'])}; "
        + (
            "no event shows when it went away"
            if s["ended"] is None
            else f"gone by the process's exit at {_e(s['ended_text'])}, at the latest"
        )
        + "</span></li>"
    )


def _blocker_item(b: dict[str, Any], *, candidate: bool = False) -> str:
    """One handle in the way; its path only when it is not the failing path itself."""
    opened = "before the capture" if b["opened"] is None else b["opened_text"]
    closed = "still open at the end" if b["closed"] is None else b["closed_text"]
    if candidate and b["closed"] is None:
        closed = "no close in the capture"
    own = " <i>(its own handle)</i>" if b["own"] else ""
    role = "candidate, not evidence: " if candidate else ""
    where = (
        ""
        if b.get("relation") == "same-path"
        else f'<br><span class="path">{_path(b["path"])}</span>'
    )
    return (
        f"<li>{role}<b>{_e(b['process'])}</b> ({_e(b['pid'])}){own}{where}<br>"
        f'<span class="muted">access {_e(access_text(b["access_mask"]))}, '
        f"share mode {_e(share_text(b['share_mode']))}; {_e(b['relation'])}; "
        f"open {_e(opened)} → {_e(closed)}</span></li>"
    )


def _anchors(shown: pl.DataFrame) -> dict[tuple[str, int], str]:
    """The row id of each conflict listed, by (trace, conflict number)."""
    traces = shown["trace"] if "trace" in shown.columns else pl.Series(["<memory>"] * shown.height)
    return {
        (str(t), int(c)): f"conflict-{i}"
        for i, (t, c) in enumerate(zip(traces, shown["conflict"], strict=True), start=1)
    }


def _listed(report: Report, limit: int) -> pl.DataFrame:
    """The conflicts the table lists, in time order."""
    return report.conflicts.sort("time", maintain_order=True).head(limit)


def _holders(r: dict[str, Any]) -> list[str]:
    """The processes holding the file at a failure: blockers and mapped sections."""
    names = [b["process"] for b in (r["blockers"] or [])]
    names += [s["process"] for s in (r["sections"] or [])]
    return list(dict.fromkeys(str(n) for n in names if n is not None))


def _conflicts(report: Report, limit: int) -> str:
    conflicts = report.conflicts
    out = ['<section id="conflicts"><h2>Conflicts</h2>']
    if conflicts.is_empty():
        out.append("<p>No failed file operation in this trace can be explained by a lock.</p>")
        out.append("</section>")
        return "".join(out)
    out.append(
        '<p class="note">Each failed open, rename or delete whose result can mean that a '
        "handle was in the way, with the handles open at that instant that block it under "
        "Windows' sharing rules. <i>Held for</i> is the time from the failure until the "
        "last of them closed. <i>Candidates</i> are handles that only look open because the "
        "capture cannot show them close; they are no evidence. A mapped section keeps a "
        "file in use after its handle closed; no event shows when it goes away.</p>"
    )
    shown = _listed(report, limit)
    anchors = _anchors(shown)
    frame = _with_clock_text(shown).with_columns(clock=pl.col("time_text"))
    multi = len(report.traces) > 1
    rows, records = [], []
    for i, r in enumerate(frame.iter_rows(named=True)):
        anchor = anchors[(str(r.get("trace", "<memory>")), int(r["conflict"]))]
        target = (
            f'<br>→ <span class="path">{_path(r["rename_target"])}</span>'
            if r.get("rename_target")
            else ""
        )
        items = _items(r["blockers"] or [], _blocker_item, "handles")
        items += _items(
            r["candidates"] or [], lambda b: _blocker_item(b, candidate=True), "candidates"
        )
        items += _items(r["sections"] or [], _section_item, "sections")
        reason = (
            ""
            if r["verdict"] == "blocked-by-other-process" or not r["verdict_reason"]
            else f'<details class="why"><summary>why this verdict</summary>'
            f'<p class="muted">{_e(r["verdict_reason"])}</p></details>'
        )
        cell = (f'<ul class="blockers">{items}</ul>' if items else "") + reason
        held_ms: float | None = None
        if r["censored"]:
            held = "still held at<br>the trace's end"
        elif r["remaining_ms"] is not None and r["kind"] == "lock":
            held, held_ms = _ms(r["remaining_ms"]), float(r["remaining_ms"])
        else:
            held = "-"
        when = _e(r["clock"]) + (
            f'<br><span class="muted">{_e(r["trace"])}</span>' if multi else ""
        )
        rows.append(
            f'<tr id="{anchor}">'
            f'<td class="c-time">{when}</td>'
            f'<td class="c-proc">{_e(r["process"])} ({_e(r["pid"])})</td>'
            f'<td class="c-op">{_camel_breaks(_e(r["operation"]))}<br><span class="muted">'
            f"{_e(r['result'])}</span></td>"
            f'<td class="c-path"><span class="path">{_path(r["path"])}</span>{target}</td>'
            f'<td class="c-verdict"><span class="badge {_e(r["verdict"])}">'
            f"{_e(r['verdict'])}</span></td>"
            f'<td class="c-blockers">{cell}</td>'
            f'<td class="c-held num">{held}</td></tr>'
        )
        records.append(
            {
                "id": anchor,
                "order": i,
                "verdict": r["verdict"],
                "process": r["process"],
                "pid": r["pid"],
                "path": r["path"] + (" → " + r["rename_target"] if r.get("rename_target") else ""),
                "holders": _holders(r),
                "held_ms": held_ms,
                "censored": bool(r["censored"]),
            }
        )
    choices = _choices(records)
    out.append(_filters(choices, len(records), conflicts.height))
    out.append(
        '<div class="scroll"><table class="conflicts" id="conflicts-table"><thead><tr>'
        '<th data-sort="order" aria-sort="ascending">time</th><th>process</th>'
        "<th>operation, result</th><th>path</th><th>verdict</th><th>blockers</th>"
        '<th class="num" data-sort="held">held for</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></div>"
    )
    out.append(
        _json_block("conflict-data", {"total": conflicts.height, "conflicts": records, **choices})
    )
    if conflicts.height > limit:
        out.append(
            f'<p class="note">The first {limit:,} of {conflicts.height:,} conflicts; '
            "<code>traceaudit analyze --json</code> lists all of them.</p>"
        )
    out.append("</section>")
    return "".join(out)


def _choices(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The values each filter offers; the options' values are indices into these lists."""
    return {
        "verdicts": list(dict.fromkeys(r["verdict"] for r in records)),
        "holders": sorted({h for r in records for h in r["holders"]}, key=str.casefold),
        "processes": sorted({r["process"] for r in records}, key=str.casefold),
    }


def _filters(choices: dict[str, list[str]], listed: int, total: int) -> str:
    """The filter controls; hidden until the script shows them (they need it to work)."""

    def select(label: str, name: str, values: list[str], extra: str = "") -> str:
        options = "".join(f'<option value="{i}">{_e(v)}</option>' for i, v in enumerate(values))
        return (
            f'<label>{label}<select name="{name}"><option value="">any</option>{extra}'
            f"{options}</select></label>"
        )

    more = f" ({total:,} in the trace)" if total > listed else ""
    return (
        '<form class="filters" id="conflict-filters" hidden>'
        + select("verdict", "verdict", choices["verdicts"])
        + select("holder", "holder", choices["holders"], '<option value="none">no holder</option>')
        + select("process", "process", choices["processes"])
        + '<label>path contains<input type="search" name="path" '
        'placeholder="e.g. .dll or AppData" autocomplete="off"></label>'
        '<button type="reset">clear</button>'
        f'<output id="conflict-count" aria-live="polite">showing {listed:,} of {listed:,}'
        f"{more}</output></form>"
    )


def _failure_anchors(
    report: Report, td: data.TimelineData, key: str, anchors: dict[tuple[str, int], str]
) -> list[str | None]:
    """The table row of each failure mark of ``td`` (same order as ``td.failures``)."""
    conflicts = report.conflicts
    if "trace" not in conflicts.columns:
        conflicts = conflicts.with_columns(trace=pl.lit("<memory>"))
    folded = path_key("path")
    prefix = key if key.endswith(SEP) else key + SEP
    on_path = conflicts.filter(
        ((folded == key) | folded.str.starts_with(prefix)) & (pl.col("trace") == td.trace)
    ).sort("time")
    return [
        anchors.get((str(t), int(c))) for t, c in on_path.select("trace", "conflict").iter_rows()
    ]


def _timeline_in(report: Report, entry: data.BlockedPath) -> data.TimelineData | None:
    """The timeline of ``entry``'s path in its own trace (a report may hold several)."""
    if len(report.traces) > 1:

        def only(frame: pl.DataFrame) -> pl.DataFrame:
            return (
                frame.filter(pl.col("trace") == entry.trace) if "trace" in frame.columns else frame
            )

        report = dataclasses.replace(
            report,
            traces=tuple(t for t in report.traces if t.name == entry.trace) or report.traces,
            conflicts=only(report.conflicts),
            handles=only(report.handles),
            blocking=only(report.blocking),
            chains=only(report.chains),
        )
    return data.timeline_data(report, entry.path)


def _timelines(report: Report, limit: int, listed: int) -> str:
    out = ['<section id="timelines"><h2>Timelines of the blocked paths</h2>']
    paths = data.blocked_paths(report)
    if not paths:
        out.append("<p>No blocked path.</p></section>")
        return "".join(out)
    out.append(
        '<p class="note">One row per process, one bar per handle on the path or below it '
        "(and every handle that blocked it). Hover over or tab to a bar for its access, "
        "share mode and open and close times; click a ✕ to see its conflict in the table. "
        "Zoom with the mouse wheel or the buttons, drag to pan. Time is in ms after the "
        "first failure on the path.</p>"
        '<ul class="legend"><li><span class="sw blocker"></span>blocked a failure</li>'
        '<li><span class="sw failing"></span>the failing process\'s own handle</li>'
        '<li><span class="sw other"></span>another handle</li>'
        '<li><span class="sw edge"></span>open before the capture or no close in it</li>'
        '<li><span class="sw held"></span>the file stayed held</li>'
        '<li><span class="sw fail">✕</span>failure</li>'
        '<li><span class="sw ok"></span>the retry that worked</li></ul>'
    )
    anchors = _anchors(_listed(report, listed))
    drawn = 0
    for n, entry in enumerate(paths[:limit], start=1):
        td = _timeline_in(report, entry)
        if td is None:
            continue
        drawn += 1
        who = ", ".join(entry.blockers) or "no holder in the trace"
        out.append(
            f'<h3 class="path">{_path(entry.path)}</h3>'
            f'<p class="muted">{plural(entry.conflicts, "conflict")}, '
            f"{entry.blocked_by_other:,} blocked by another process; held by {_e(who)}"
            + (
                f"; {plural(td.hidden_processes, 'more process', 'more processes')} not shown"
                if td.hidden_processes
                else ""
            )
            + "</p>"
        )
        marks = _failure_anchors(report, td, fold(entry.path), anchors)
        out.append(
            f'<div class="tl-wrap" data-timeline="tl-{n}">'
            f'<div class="tl-controls" hidden><button type="button" data-zoom="in" '
            'title="zoom in" aria-label="zoom in">+</button>'
            '<button type="button" data-zoom="out" title="zoom out" aria-label="zoom out">−</button>'
            '<button type="button" data-zoom="left" title="earlier" aria-label="earlier">←</button>'
            '<button type="button" data-zoom="right" title="later" aria-label="later">→</button>'
            '<button type="button" data-zoom="reset">reset</button>'
            '<output class="tl-range"></output></div>'
            + timeline_svg(td, anchors=marks, key=n)
            + '<div class="tip" hidden role="tooltip"></div></div>'
        )
    if len(paths) > drawn:
        out.append(
            f'<p class="note">{len(paths) - drawn} more blocked paths are in the conflicts '
            "table; <code>traceaudit timeline TRACE PATH</code> shows any of them.</p>"
        )
    out.append("</section>")
    return "".join(out)


def _time_table(table: pl.DataFrame, key: str, unit: str) -> str:
    rows = [
        [
            "<b>all</b>" if r[key] == "all" else _e(r[key]),
            f"{r['count']:,}",
            f"{r['censored']:,}",
            _ms(r["p50_ms"]),
            _ms(r["p90_ms"]),
            _ms(r["p99_ms"]),
            _ms(r["max_ms"]),
        ]
        for r in table.iter_rows(named=True)
    ]
    return _table(
        [_e(key), _e(unit), "censored", "p50", "p90", "p99", "max"],
        rows,
        numeric={1, 2, 3, 4, 5, 6},
    )


def _windows(report: Report, fig: str) -> str:
    out = ['<section id="windows"><h2>Blocked time and hold time</h2>']
    blocked, hold = report.blocked_windows, report.windows
    if (hold.is_empty() or hold["count"][0] == 0) and (
        blocked.is_empty() or blocked["count"][0] == 0
    ):
        out.append(
            "<p>No failure was blocked by a handle whose release the capture shows: there "
            "is nothing to time.</p></section>"
        )
        return "".join(out)
    if blocked.height and blocked["count"][0]:
        out.append(
            "<h3>Blocked time, per lock episode</h3>"
            '<p class="note">How long the operation stayed blocked: from the first failure of '
            "a retry chain until a retry could first have succeeded, counting every handle "
            "that would have blocked a retry, including ones that opened after the failure. "
            "This is what a retry policy must ride out. Episodes still blocked when the trace "
            "ended are <i>censored</i>: counted, but left out of the percentiles. Each "
            "episode is attributed to the holder at its first failure.</p>"
        )
        out.append(_time_table(blocked, "holder", "episodes"))
        out.append(fig)
    if hold.height and hold["count"][0]:
        out.append(
            "<h3>Hold time, per failure</h3>"
            '<p class="note">How long the handles present at each failure stayed open: from '
            "the failed attempt until the last of them closed. Shorter than the blocked time "
            "when other handles open meanwhile (a scanner moving on to the next file below a "
            "directory). Each failure is attributed to the holder that let go last.</p>"
        )
        out.append(_time_table(hold, "blocker", "failures"))
    out.append("</section>")
    return "".join(out)


def _advice(report: Report) -> str:
    out = ['<section id="advice"><h2>Retry advice</h2>']
    policy = report.policy
    if policy is None:
        reason = report.policy_withheld or (
            "No retry advice: no failure in this capture calls for a retry."
        )
        out.append(f"<p>{_e(reason)}</p></section>")
        return "".join(out)
    out += _policy_paragraphs(policy)
    if report.replay.height:
        out += _replay_table(report.replay)
    code = report.snippets()
    if code:
        out += _snippet_blocks(code)
    out.append("</section>")
    return "".join(out)


def _policy_paragraphs(policy: RetryPolicy) -> list[str]:
    """The suggested policy, what it covers and costs, the error codes it retries on."""
    out = []
    target = f"{policy.target:.0%}" if policy.target is not None else "the chosen share"
    out.append(f"<p>To ride out {_e(target)} of these lock episodes, retry with:</p>")
    out.append(f'<p class="policy">{_e(policy.describe())}</p>')
    facts = []
    if policy.coverage is not None and policy.n_windows is not None:
        facts.append(f"covers {policy.coverage:.1%} of {plural(policy.n_windows, 'lock episode')}")
    if policy.expected_wait_ms is not None:
        facts.append(f"expected added wait {fmt_ms(policy.expected_wait_ms)}")
    if policy.worst_wait_ms is not None:
        facts.append(f"worst {fmt_ms(policy.worst_wait_ms)}")
    if policy.error_codes:
        facts.append("on Win32 errors " + ", ".join(str(c) for c in policy.error_codes))
    if facts:
        out.append(f"<p>{_e('; '.join(facts))}.</p>")
    if policy.notes:
        out.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in policy.notes) + "</ul>")
    return out


def _replay_table(replay: pl.DataFrame) -> list[str]:
    """How real tools' retry policies would have fared, one row per tool.

    Each tool retries only on the Win32 errors its runtime maps to a retryable error, so
    the note says which ones before the table.
    """
    out = ["<h3>How real tools' retry policies would have fared on these lock episodes</h3>"]
    out.append(
        '<p class="note">Each tool retries only on its own error codes (Rust maps only '
        "5 to PermissionDenied; libuv maps 32 and 33 to EBUSY). Success is over the "
        "episodes whose outcome the trace decides; <i>censored</i> ones ran past its "
        "end. An episode a tool does not retry fails at once: it counts as a failure with "
        "no wait. Jittered policies are averaged over seeded draws.</p>"
    )
    head = [
        "tool",
        "version",
        "retries on",
        "episodes it retries",
        "success",
        "median wait",
        "worst wait",
        "mean attempts",
        "censored",
    ]
    numeric = {3, 4, 5, 6, 7, 8}
    rows = []
    for r in replay.iter_rows(named=True):
        cells = [
            _e(r["tool"]),
            _e(r["version"]),
            _e(r["triggers"]),
            f"{r['triggered']:,} of {r['episodes']:,}"
            + (
                f'<br><span class="muted">the other {r["episodes"] - r["triggered"]:,} '
                "fail at once</span>"
                if 0 < r["triggered"] < r["episodes"]
                else ""
            ),
        ]
        if not r["triggered"]:  # its runtime does not map these errors to a retryable one
            cells.append('<td class="does-not-retry" colspan="4">does not retry this error</td>')
        else:
            rate = "-" if r["success_rate"] is None else f"{r['success_rate']:.0%}"
            mean = "-" if r["mean_attempts"] is None else f"{r['mean_attempts']:.1f}"
            cells += [_e(rate), _ms(r["median_wait_ms"]), _ms(r["worst_wait_ms"]), mean]
        cells.append(f"{r['censored']:,}")
        rows.append(
            "<tr>"
            + "".join(
                c if c.startswith("<td") else f"<td{_NUM if i in numeric else ''}>{c}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    out.append(
        '<div class="scroll"><table class="replay"><thead><tr>'
        + "".join(f"<th{_NUM if i in numeric else ''}>{h}</th>" for i, h in enumerate(head))
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )
    return out


_NUM = ' class="num"'

_LANGUAGES = {
    "rust": "Rust (backon)",
    "python": "Python (tenacity)",
    "go": "Go",
    "dotnet": ".NET (Polly)",
}


def _snippet_blocks(code: dict[str, str]) -> list[str]:
    """The suggested policy in code: a closed ``<details>``, one tab per language.

    Without script every language is shown under its own heading once it is opened; the
    script turns the headings into tabs.
    """
    panels = "".join(
        f'<div class="snippet" id="snippet-{_e(lang)}" data-label="'
        f'{_e(_LANGUAGES.get(lang, lang))}"><h4>{_e(_LANGUAGES.get(lang, lang))}</h4>'
        f"<pre><code>{_e(text.rstrip())}</code></pre></div>"
        for lang, text in code.items()
    )
    return [
        '<details class="snippets" id="snippets"><summary>The suggested policy in code: '
        + _e(", ".join(_LANGUAGES.get(lang, lang) for lang in code))
        + f'</summary><div class="tabs" role="tablist" hidden></div>{panels}</details>'
    ]


def _retries(report: Report) -> str:
    out = ['<section id="retries"><h2>The application\'s own retries</h2>']
    everything = report.retry_records() if report.chains.height else []
    records = [r for r in everything if r["attempts"] > 1]
    singles = len(everything) - len(records)
    not_retried = (
        f'<p class="note">{plural(singles, "failure")} not retried at all.</p>' if singles else ""
    )
    if not records:
        out.append("<p>No failed operation was retried by the process that saw it.</p>")
        out.append(not_retried + "</section>")
        return "".join(out)
    out.append(
        '<p class="note">A retry chain is the same process repeating the same operation on '
        "the same path after a failure; its delays are the application's actual schedule.</p>"
    )
    rows = []
    for r in records:
        delays = ", ".join(f"{d:g}" for d in r["delays_ms"][:MAX_DELAYS_SHOWN])
        if len(r["delays_ms"]) > MAX_DELAYS_SHOWN:
            delays += ", …"
        outcome = "succeeded" if r["succeeded"] else "gave up"
        rows.append(
            [
                f"{_e(r['process'])} ({_e(r['pid'])})",
                _camel_breaks(_e(r["operation"])),
                f'<span class="path">{_path(r["path"])}</span>',
                f"{r['attempts']:,}",
                _e(delays + " ms" if delays else "-"),
                _ms(r["total_ms"]),
                _e(outcome),
                _e(r.get("schedule") or "-"),
                _e(r.get("advice") or r.get("assessment") or ""),
            ]
        )
    out.append(
        _table(
            [
                "process",
                "operation",
                "path",
                "attempts",
                "delays",
                "total",
                "outcome",
                "schedule",
                "assessment",
            ],  # fmt: skip
            rows,
            numeric={3, 5},
            css_class="retries",
        )
    )
    out.append(not_retried + "</section>")
    return "".join(out)


def _minifilters(report: Report) -> str:
    """The ``--filters`` listing: each minifilter below Procmon, its load order group and,
    where Microsoft's allocated-altitudes list has it, whose it is."""
    listing = report.minifilters
    if listing is None:
        return ""
    where = (
        f"{listing.procmon.name} at {listing.cutoff}"
        if listing.procmon is not None
        else f"{listing.cutoff}, PROCMON24's altitude (no Procmon line in the listing)"
    )
    out = [
        '<section id="minifilters"><h2>Minifilters below Procmon</h2>',
        f"<p>From {_e(listing.source)}; Procmon: {_e(where)}. A filter below Procmon can "
        "open, scan, hold or refuse a file without any process showing it in the capture.</p>",
    ]
    rows = []
    for f in listing.below:
        group = f.group
        owners = "; ".join(
            f"{a.company} ({a.minifilter})" if a.minifilter else a.company for a in f.allocations
        )
        rows.append(
            [
                _e(f.name),
                _e(f.altitude or "-"),
                _e("-" if group is None else f"{group.name} ({group.range_text})"),
                _e(owners or "not in the bundled list"),
            ]
        )
    if rows:
        out.append(_table(["filter", "altitude", "load order group", "allocated to"], rows, {1}))
    else:
        out.append(
            "<p>None: every filter listed sits above Procmon, so Procmon sees their I/O.</p>"
        )
    if listing.unplaced:
        names = ", ".join(f.name for f in listing.unplaced)
        out.append(
            f'<p class="note">Listed without an altitude (legacy filters, position unknown): '
            f"{_e(names)}.</p>"
        )
    out.append(
        '<p class="note">Vendors come from Microsoft\'s allocated-altitudes list; the bundled '
        "copy may be partial (traceaudit.minifilters.bundled_source() says which).</p></section>"
    )
    return "".join(out)


def _warnings(report: Report) -> str:
    out = ['<section id="warnings"><h2>Warnings</h2>']
    if report.warnings:
        out.append(
            '<ul class="warnings">'
            + "".join(f"<li>{_e(w)}</li>" for w in report.warnings)
            + "</ul>"
        )
    else:
        out.append("<p>None: the trace held what the analysis needs.</p>")
    out.append("</section>")
    return "".join(out)


# ---------------------------------------------------------------------------- public


def render_html(
    report: Report,
    *,
    figures: str | None = "svg",
    max_conflicts: int = MAX_CONFLICT_ROWS,
    max_timelines: int = MAX_TIMELINES,
) -> str:
    """The whole report as one self-contained HTML document (a string).

    ``figures`` is ``"svg"`` (default: sharp at any zoom), ``"png"``, or None to leave the
    one matplotlib figure (the blocked-time distribution) out: no matplotlib needed. The
    timelines and the blockers' bars are the page's own SVG either way. At most ``max_conflicts`` conflicts are listed and
    ``max_timelines`` blocked paths drawn; the page says when it left some out.
    """
    from traceaudit._version import __version__

    if figures not in ("svg", "png", None):
        raise UsageError(f"figures={figures!r}: use 'svg', 'png' or None.")
    windows_fig = ""
    if figures is not None:
        from traceaudit.report import plot

        made = dict(plot.report_figures(report, max_timelines=0))
        windows_fig = _figure(
            made.get("windows"),
            "Blocked times as a cumulative distribution, with retry schedules",
            "The black step: share of lock episodes no longer blocked by each time after "
            "the first failure (log scale). Coloured steps: how far each retry policy gets "
            "by then, ending where it gives up; below, each policy's retry times. ▶ marks "
            "episodes still blocked when the trace ended.",
            figures,
        )

    names = ", ".join(t.name for t in report.traces) or "no trace"
    clocks = ", ".join(sorted({t.clock for t in report.traces})) or "local"
    body = "".join(
        [
            _header(report),
            _verdicts(report),
            _conflicts(report, max_conflicts),
            _timelines(report, max_timelines, max_conflicts),
            _windows(report, windows_fig),
            _advice(report),
            _retries(report),
            _minifilters(report),
            _warnings(report),
        ]
    )
    style, script = _asset("report.css"), _asset("report.js")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_csp(style, script)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="traceaudit {_e(__version__)}">'
        f"<title>traceaudit: {_e(names)}</title>"
        f"<style>{style}</style></head>\n<body>\n{body}\n"
        f"<footer>Made by traceaudit {_e(__version__)}. Times are the trace's {_e(clocks)} "
        "clock. This page is self-contained: its script and styles are inline and it loads "
        "nothing from elsewhere; it reads without script too.</footer>\n"
        f"<script>{script}</script>"
        "\n</body></html>\n"
    )


def write_html(
    report: Report,
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    **options: Any,
) -> Path:
    """Write :func:`render_html` to ``path`` atomically and return the path.

    Never overwrites a trace: refuses (:class:`~traceaudit.errors.UsageError`) when
    ``path`` is one of ``inputs`` (give the trace files the report was made from), or when
    it is an existing file named like one of the report's traces, since the report keeps
    only their names. The page goes to a temporary file beside ``path`` first and is
    moved into place only when complete. ``options`` go to :func:`render_html`.
    """
    target = Path(path)
    for source in inputs:
        if str(source) != "-" and same_file(target, Path(source)):
            raise UsageError(
                f"{target}: this is an input trace; refusing to write the HTML report over "
                "it. Give another file name, e.g. report.html."
            )
    if target.exists():
        if target.is_dir():
            raise UsageError(f"{target}: is a directory; give a file name such as report.html.")
        names = {t.name.casefold() for t in report.traces}
        if target.name.casefold() in names:
            raise UsageError(
                f"{target}: has the name of a trace this report was made from; refusing to "
                "write the HTML report over it. Give another file name, e.g. report.html."
            )
    if not target.parent.exists():
        raise UsageError(f"{target.parent}: no such directory for the HTML report.")
    text = render_html(report, **options)
    write_atomically(target, text.encode("utf-8"))
    return target
