"""The report as one self-contained HTML page, for people who were not at the terminal.

::

    from traceaudit import analyze
    from traceaudit.report.html import write_html

    report = analyze("Logfile.CSV")
    write_html(report, "report.html", inputs=["Logfile.CSV"])

The page is a single file that can be mailed or attached to an issue: the figures are
embedded as ``data:`` SVG images, the CSS is inline, there is no script at all, and a
Content-Security-Policy forbids loading anything from anywhere else. It reads top to
bottom: the answer (who held what, how long operations stayed blocked, the advice and its
coverage, the warning that matters most), what was analysed, the verdicts, every conflict
with the handles that blocked it (and the candidates and mapped sections), timelines of
the most telling blocked paths, blocked and hold times, the retry advice (with the replay
of real tools and code), the application's own retries, and the warnings.

Every string that comes from the trace (paths, process names, Procmon's Detail) is
HTML-escaped: a file may well be called ``<script>.txt``.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from traceaudit._atomic import write_atomically
from traceaudit._outputs import same_file
from traceaudit.display import access_text, fmt_duration, fmt_ms, plural, share_text
from traceaudit.errors import UsageError
from traceaudit.report import figure_data as data
from traceaudit.report.answer import answer
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


_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
:root { color-scheme: light; --fg: #1d1d1f; --muted: #5f6368; --line: #d9dce1;
  --stripe: #f6f7f9; --other: #b3400a; --own: #0b5cad; --none: #6b6b6b; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); margin: 0 auto; padding: 1.5rem 2rem 4rem; max-width: 1280px; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; }
h2 { font-size: 1.25rem; margin: 2.4rem 0 .6rem; padding-bottom: .25rem;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; }
p.lead { font-size: 1.08rem; margin: .2rem 0 1rem; }
.muted, figcaption, .note { color: var(--muted); font-size: .9rem; }
nav ol { columns: 2; margin: .4rem 0; padding-left: 1.3rem; font-size: .93rem; }
a { color: var(--own); }
table { border-collapse: collapse; width: 100%; font-size: .86rem; margin: .5rem 0 1rem; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .45rem; text-align: left;
  vertical-align: top; }
th { background: #eef0f3; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: var(--stripe); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.path, code, pre { font-family: ui-monospace, "Cascadia Mono", Consolas, monospace; }
.path { word-break: break-all; font-size: .82rem; }
.nowrap { white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
ul.blockers { margin: 0; padding-left: 1rem; }
ul.blockers li { margin: 0 0 .2rem; }
.badge { display: inline-block; padding: 0 .4rem; border-radius: .6rem; font-size: .78rem;
  white-space: nowrap; color: #fff; background: var(--none); }
.badge.blocked-by-other-process { background: var(--other); }
.badge.blocked-by-own-handle { background: var(--own); }
.badge.mapped-by-other-process { background: var(--other); }
.badge.mapped-by-own-process { background: var(--own); }
dl.answer { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem;
  margin: .6rem 0 1rem; padding: .7rem 1rem; border: 1px solid var(--line);
  background: var(--stripe); }
dl.answer dt { font-weight: 600; }
dl.answer dd { margin: 0; }
figure { margin: .8rem 0 1.6rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
pre { background: #f4f5f7; border: 1px solid var(--line); padding: .7rem .9rem;
  overflow-x: auto; font-size: .82rem; line-height: 1.4; }
details > summary { cursor: pointer; font-weight: 600; margin: .4rem 0; }
.warnings li { margin-bottom: .4rem; }
.policy { font-size: 1.08rem; font-weight: 600; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem;
  border-top: 1px solid var(--line); padding-top: .6rem; }
@media print { th { position: static; } details { display: block; } }
"""


# ---------------------------------------------------------------------------- helpers


def _e(value: object) -> str:
    """HTML-escape anything (``None`` becomes an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _ms(value: float | None) -> str:
    return _e(fmt_ms(value))


def _table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: frozenset[int] | set[int] = frozenset(),
) -> str:
    """A table from already-escaped cells; columns in ``numeric`` are right-aligned."""

    def cls(i: int) -> str:
        return ' class="num"' if i in numeric else ""

    out = ['<div class="scroll"><table><thead><tr>']
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
        ("warnings", "Warnings"),
    ]
    links = "".join(f'<li><a href="#{a}">{_e(t)}</a></li>' for a, t in items)
    return f"<nav><ol>{links}</ol></nav>"


def _verdicts(report: Report, fig: str) -> str:
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
        rows = [
            [
                _e(r["process"]) + (" (its own handle)" if r["own"] else ""),
                f"{r['conflicts']:,}",
                f"{r['censored']:,}",
                _ms(r["median_ms"]),
            ]
            for r in blockers.iter_rows(named=True)
        ]
        out.append("<h3>Conflicts by blocking process</h3>")
        out.append(
            _table(
                ["blocking process", "conflicts", "still held at the end", "median time held"],
                rows,
                numeric={1, 2, 3},
            )
        )
    out.append(fig)
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
    opened = "before the capture" if b["opened"] is None else b["opened_text"]
    closed = "still open at the end" if b["closed"] is None else b["closed_text"]
    if candidate and b["closed"] is None:
        closed = "no close in the capture"
    own = " <i>(its own handle)</i>" if b["own"] else ""
    role = "candidate, not evidence: " if candidate else ""
    return (
        f"<li>{role}<b>{_e(b['process'])}</b> ({_e(b['pid'])}){own}: "
        f'<span class="path">{_e(b["path"])}</span><br>'
        f'<span class="muted">access {_e(access_text(b["access_mask"]))}, '
        f"share mode {_e(share_text(b['share_mode']))}; {_e(b['relation'])}; "
        f"open {_e(opened)} → {_e(closed)}</span></li>"
    )


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
        "Windows' sharing rules. <i>Hold time</i> is the time from the failure until the "
        "last of them closed. <i>Candidates</i> are handles that only look open because the "
        "capture cannot show them close; they are no evidence. A mapped section keeps a "
        "file in use after its handle closed; no event shows when it goes away.</p>"
    )
    shown = conflicts.sort("time").head(limit)
    frame = _with_clock_text(shown).with_columns(clock=pl.col("time_text"))
    multi = len(report.traces) > 1
    rows = []
    for r in frame.iter_rows(named=True):
        target = (
            f'<br>→ <span class="path">{_e(r["rename_target"])}</span>'
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
            if r["verdict"] == "blocked-by-other-process"
            else f'<p class="muted">{_e(r["verdict_reason"])}</p>'
        )
        cell = (f'<ul class="blockers">{items}</ul>' if items else "") + reason
        if r["censored"]:
            held = "still held at the end of the trace"
        elif r["remaining_ms"] is not None and r["kind"] == "lock":
            held = _ms(r["remaining_ms"])
        else:
            held = "-"
        when = _e(r["clock"]) + (
            f'<br><span class="muted">{_e(r["trace"])}</span>' if multi else ""
        )
        rows.append(
            [
                f'<span class="nowrap">{when}</span>',
                f"{_e(r['process'])} ({_e(r['pid'])})",
                _e(r["operation"]),
                f'<span class="path">{_e(r["path"])}</span>{target}',
                _e(r["result"]),
                f'<span class="badge {_e(r["verdict"])}">{_e(r["verdict"])}</span>',
                cell,
                held,
            ]
        )
    out.append(
        _table(
            ["time", "process", "operation", "path", "result", "verdict", "blockers", "hold time"],
            rows,
            numeric={7},
        )
    )
    if conflicts.height > limit:
        out.append(
            f'<p class="note">The first {limit:,} of {conflicts.height:,} conflicts; '
            "<code>traceaudit analyze --json</code> lists all of them.</p>"
        )
    out.append("</section>")
    return "".join(out)


def _timelines(report: Report, figures: list[tuple[data.BlockedPath, str]]) -> str:
    out = ['<section id="timelines"><h2>Timelines of the blocked paths</h2>']
    paths = data.blocked_paths(report, limit=MAX_TIMELINES)
    if not paths:
        out.append("<p>No blocked path.</p></section>")
        return "".join(out)
    out.append(
        '<p class="note">One row per process, one bar per handle on the path or below it '
        "(and every handle that blocked it): orange bars blocked a failure or a retry, blue "
        "ones belong to the failing process. Hatched bars were open before the capture "
        "started or still open when it ended. ✕ marks a failure, a green dot the retry that "
        "worked; the shaded band is the time the file stayed held.</p>"
    )
    total = len(data.blocked_paths(report))
    for entry, fig in figures:
        who = ", ".join(entry.blockers) or "no holder in the trace"
        out.append(
            f'<h3 class="path">{_e(entry.path)}</h3>'
            f'<p class="muted">{plural(entry.conflicts, "conflict")}, '
            f"{entry.blocked_by_other:,} blocked by another process; held by {_e(who)}</p>"
        )
        out.append(fig)
    if total > len(figures):
        out.append(
            f'<p class="note">{total - len(figures)} more blocked paths are in the conflicts '
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
        "end. Jittered policies are averaged over seeded draws.</p>"
    )
    rows = []
    for r in replay.iter_rows(named=True):
        rate = "-" if r["success_rate"] is None else f"{r['success_rate']:.0%}"
        rows.append(
            [
                _e(r["tool"]),
                _e(r["version"]),
                _e(r["triggers"]),
                f"{r['triggered']:,} of {r['episodes']:,}",
                _e(rate),
                _ms(r["median_wait_ms"]),
                _ms(r["worst_wait_ms"]),
                "-" if r["mean_attempts"] is None else f"{r['mean_attempts']:.1f}",
                f"{r['censored']:,}",
            ]
        )
    out.append(
        _table(
            [
                "tool",
                "version",
                "retries on",
                "episodes it retries",
                "success",
                "median wait",
                "worst wait",
                "mean attempts",
                "censored",
            ],  # fmt: skip
            rows,
            numeric={3, 4, 5, 6, 7, 8},
        )
    )
    return out


def _snippet_blocks(code: dict[str, str]) -> list[str]:
    """The suggested policy in code, one open ``<details>`` per language."""
    names = {
        "rust": "Rust (backon)",
        "python": "Python (tenacity)",
        "go": "Go",
        "dotnet": ".NET (Polly)",
    }
    out = ["<h3>The suggested policy in code</h3>"]
    for language, snippet in code.items():
        out.append(
            f"<details open><summary>{_e(names.get(language, language))}</summary>"
            f"<pre><code>{_e(snippet.rstrip())}</code></pre></details>"
        )
    return out


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
                _e(r["operation"]),
                f'<span class="path">{_e(r["path"])}</span>',
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
        )
    )
    out.append(not_retried + "</section>")
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
    figures out (no matplotlib needed). At most ``max_conflicts`` conflicts are listed and
    ``max_timelines`` blocked paths drawn; the page says when it left some out.
    """
    from traceaudit._version import __version__

    if figures not in ("svg", "png", None):
        raise UsageError(f"figures={figures!r}: use 'svg', 'png' or None.")
    blocker_fig = windows_fig = ""
    timeline_figs: list[tuple[data.BlockedPath, str]] = []
    if figures is not None:
        from traceaudit.report import plot

        made = {name: fig for name, fig in plot.report_figures(report, max_timelines=0)}
        blocker_fig = _figure(
            made.get("blockers"),
            "Bar chart: conflicts per blocking process",
            "Conflicts per blocking process, each counted for the holder that let go last.",
            figures,
        )
        windows_fig = _figure(
            made.get("windows"),
            "Blocked times as a cumulative distribution, with retry schedules",
            "The black step: share of lock episodes no longer blocked by each time after "
            "the first failure (log scale). Coloured steps: how far each retry policy gets "
            "by then, ending where it gives up; below, each policy's retry times. ▶ marks "
            "episodes still blocked when the trace ended.",
            figures,
        )
        for entry, fig in plot.timeline_figures(report, max_timelines):
            timeline_figs.append(
                (
                    entry,
                    _figure(
                        fig,
                        f"Timeline of the handles on {entry.path}",
                        "Time in ms after the first failure on this path.",
                        figures,
                    ),
                )
            )
    else:
        timeline_figs = [(entry, "") for entry in data.blocked_paths(report, limit=max_timelines)]

    names = ", ".join(t.name for t in report.traces) or "no trace"
    clocks = ", ".join(sorted({t.clock for t in report.traces})) or "local"
    body = "".join(
        [
            _header(report),
            _verdicts(report, blocker_fig),
            _conflicts(report, max_conflicts),
            _timelines(report, timeline_figs),
            _windows(report, windows_fig),
            _advice(report),
            _retries(report),
            _warnings(report),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="traceaudit {_e(__version__)}">'
        f"<title>traceaudit: {_e(names)}</title>"
        f"<style>{_CSS}</style></head>\n<body>\n{body}\n"
        f"<footer>Made by traceaudit {_e(__version__)}. Times are the trace's {_e(clocks)} "
        "clock. This page is self-contained: no scripts, nothing loaded from elsewhere.</footer>"
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
