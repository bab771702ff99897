"""The terminal report: the answer first, then the details behind it.

Order: what was analysed; the answer (who held what, how long operations stayed blocked,
the advice and its coverage, the warning that matters most); then the details: conflicts
by path (at most ``limit`` paths, saying how many more there are and how to see them),
the application's own retries, blocked and hold times, the advice's evidence, every
warning, and the advice as code only when asked for (``snippets``).

Times are printed at the trace's own 100 ns precision, as Procmon shows them. Plain text
apart from the trace's own strings and the policy's ``×``/``≤``, so it prints on any Windows
console (the CLI replaces what a console cannot encode).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from traceaudit.display import access_text, clock_expr, fmt_ms, plural, share_text
from traceaudit.report.answer import answer

if TYPE_CHECKING:
    from traceaudit.report.data import ReportData as Report

__all__ = ["render_text", "replay_table", "VERDICT_WORDS", "DEFAULT_LIMIT", "NOT_RETRIED"]

DEFAULT_LIMIT = 10
MAX_CONFLICTS_PER_PATH = 5
MAX_BLOCKERS_SHOWN = 5
MAX_TABLE_ROWS = 10

VERDICT_WORDS = {
    "blocked-by-other-process": "blocked by another process",
    "blocked-by-own-handle": "blocked by its own handle",
    "mapped-by-other-process": "a mapped section of another process is in the way",
    "mapped-by-own-process": "its own mapped section is in the way",
    "incomplete-capture": "the capture cannot show the holder",
    "oplock-probe": "an oplock probe, declined by design",
    "no-holder-permission": "no holder in the trace (permission refusal?)",
    "no-holder-filtered": "no holder in the trace (filtered out of the capture?)",
}

BELOW_PROCMON_WORDS = "no holder in the trace (a minifilter below Procmon, or filtered out?)"
"""The verdict's words for a failure with no holder in a capture that could show one."""

_LABEL = 11


def _header(report: Report) -> list[str]:
    lines = []
    for t in report.traces:
        span = (
            f"{t.first:%Y-%m-%d %H:%M:%S} to {t.last:%H:%M:%S}"
            if t.first and t.last
            else "no events"
        )
        lines.append(
            f"Trace {t.name}: {t.format}, {plural(t.events, 'event')}, "
            f"{plural(t.processes, 'process', 'processes')}, {span} ({t.clock} time)"
        )
    return lines


def _answer(report: Report) -> list[str]:
    lines = ["", "Answer:"]
    found = answer(report)
    if not found.conflicts and not found.filter_note:
        lines.append(
            f"  {'':<{_LABEL}} No failed file operation in this trace can be explained by a lock."
        )
    for label, text in found.lines():
        lines.append(f"  {label:<{_LABEL}} {text}")
    return lines


def _verdict_counts(conflicts: pl.DataFrame) -> str:
    below = (
        (pl.col("unseen_holder") == "below-procmon") & (pl.col("verdict") == "no-holder-filtered")
        if "unseen_holder" in conflicts.columns
        else pl.lit(False)
    )
    keyed = conflicts.with_columns(
        verdict=pl.when(below.fill_null(False))
        .then(pl.lit("below-procmon"))
        .otherwise(pl.col("verdict"))
    )
    counts = dict(keyed.group_by("verdict").len().iter_rows())
    paths = conflicts["path"].str.to_lowercase().n_unique()
    words = {**VERDICT_WORDS, "below-procmon": BELOW_PROCMON_WORDS}
    parts = [f"{counts[v]:,} {words[v]}" for v in words if counts.get(v)]
    return (
        f"{plural(conflicts.height, 'conflict')} on {plural(paths, 'path')}: "
        + "; ".join(parts)
        + "."
    )


def _with_clock_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Times as text at 100 ns, for the conflict rows and each handle or section in them."""
    field = pl.element().struct.field

    def handles(column: str) -> pl.Expr:
        return pl.col(column).list.eval(
            pl.struct(
                pl.element().struct.unnest(),
                opened_text=clock_expr(field("opened")),
                closed_text=clock_expr(field("closed")),
            )
        )

    return frame.with_columns(
        time_text=clock_expr(pl.col("time")),
        blockers=handles("blockers"),
        candidates=handles("candidates"),
        sections=pl.col("sections").list.eval(
            pl.struct(
                pl.element().struct.unnest(),
                mapped_text=clock_expr(field("mapped")),
                ended_text=clock_expr(field("ended")),
            )
        ),
    )


def _handle_line(b: dict[str, Any], role: str) -> str:
    opened = "before capture" if b["opened"] is None else b["opened_text"]
    closed = "no close in the capture" if b["closed"] is None else b["closed_text"]
    own = ", its own" if b["own"] else ""
    return (
        f"      {role} {b['process']} ({b['pid']}){own}: {b['path']}\n"
        f"        open {opened} -> {closed}; access {access_text(b['access_mask'])}, "
        f"share {share_text(b['share_mode'])}; {b['relation']}"
    )


def _section_line(s: dict[str, Any]) -> str:
    own = ", its own" if s["own"] else ""
    end = (
        "no event shows when the section went away"
        if s["ended"] is None
        else f"it was gone by the process's exit at {s['ended_text']}, at the latest"
    )
    return (
        f"      mapped by {s['process']} ({s['pid']}){own}: {s['source']} at {s['mapped_text']}"
        f" (row {s['row']}); {end}"
    )


def _outcome(row: dict[str, Any], follow_up: dict[tuple[Any, int], str]) -> str:
    if row["kind"] in ("oplock", "section"):
        return follow_up.get((row.get("trace"), row["conflict"]), "")
    if row["censored"]:
        return "holder still open at end of trace"
    if row["remaining_ms"] is not None:
        return f"released {fmt_ms(row['remaining_ms'])} later"
    return ""


def _follow_ups(report: Report) -> dict[tuple[Any, int], str]:
    """For oplock probes and sections: what the same process did next on that path."""
    chains = report.chains
    if chains.is_empty():
        return {}
    out = {}
    for r in chains.filter(pl.col("attempts") > 1).iter_rows(named=True):
        after = r["delays_ms"][0] if r["delays_ms"] else r["total_ms"]
        if r["same_request"] and r["succeeded"]:
            text = f"the same request succeeded {fmt_ms(r['total_ms'])} later"
        elif r["succeeded"]:
            text = f"opened again {fmt_ms(after)} later without the oplock: SUCCESS"
        else:
            text = f"tried {r['attempts']} times over {fmt_ms(r['total_ms'])}, never succeeded"
        out[(r.get("trace"), r["first_conflict"])] = text
    return out


def _conflict_groups(report: Report, limit: int | None) -> list[str]:
    conflicts = report.conflicts
    if conflicts.is_empty():
        return []
    lines = ["", "Conflicts by path: " + _verdict_counts(conflicts)]
    pooled = len(report.traces) > 1 and "trace" in conflicts.columns
    # Pooled traces: each path of each trace is a group, named with its trace.
    key = pl.col("path").str.to_lowercase()
    keyed = conflicts.with_columns(
        key=pl.concat_str(pl.col("trace"), pl.lit("\x00"), key) if pooled else key
    )
    keys = keyed["key"].unique(maintain_order=True)
    # Only the paths shown are grouped and formatted: a big trace has 100,000s of conflicts.
    shown_keys = keys if not limit else keys.head(limit)
    if len(shown_keys) < len(keys):
        keyed = keyed.filter(pl.col("key").is_in(shown_keys.implode()))
    follow_up = _follow_ups(report)
    shown = list(_with_clock_text(keyed).group_by("key", maintain_order=True))
    for _, group in shown:
        first = group.row(0, named=True)
        ops = ", ".join(sorted(set(group["operation"].fill_null("?"))))
        target = f" -> {first['rename_target']}" if first["rename_target"] else ""
        lines.append("")
        lines.append(f"{first['path']}" + (f"  (trace {first['trace']})" if pooled else ""))
        lines.append(
            f"  {ops}{target}: {plural(group.height, 'failed attempt')} by "
            f"{', '.join(sorted(set(group['process'].fill_null('?'))))}"
        )
        for row in group.head(MAX_CONFLICTS_PER_PATH).iter_rows(named=True):
            outcome = _outcome(row, follow_up)
            words = (
                BELOW_PROCMON_WORDS
                if row.get("unseen_holder") == "below-procmon"
                and row["verdict"] == "no-holder-filtered"
                else VERDICT_WORDS[row["verdict"]]
            )
            lines.append(
                f"    {row['time_text']}  {row['process']} ({row['pid']}) {row['operation']}: "
                f"{row['result']} - {words}" + (f"; {outcome}" if outcome else "")
            )
            role = "prevented the oplock:" if row["kind"] == "oplock" else "held by"
            lines += _listed(row["blockers"], lambda b, r=role: _handle_line(b, r), "handle")
            lines += _listed(
                row["candidates"],
                lambda b: _handle_line(b, "candidate (cannot show it closed):"),
                "candidate",
            )
            lines += _listed(row["sections"], _section_line, "section")
            if row["verdict"] not in ("blocked-by-other-process",):
                lines.append(f"      {row['verdict_reason']}")
        if group.height > MAX_CONFLICTS_PER_PATH:
            more = plural(group.height - MAX_CONFLICTS_PER_PATH, "more failure")
            lines.append(f"    ... {more} on this path")
    hidden = len(keys) - len(shown)
    if hidden:
        lines += [
            "",
            f"... and {plural(hidden, 'more path')} with conflicts: --limit 0 shows them all, "
            '--path "GLOB" picks some.',
        ]
    return lines


def _listed(items: list[dict[str, Any]], render: Any, what: str) -> list[str]:
    lines = [render(item) for item in items[:MAX_BLOCKERS_SHOWN]]
    if len(items) > MAX_BLOCKERS_SHOWN:
        lines.append(f"      ... and {plural(len(items) - MAX_BLOCKERS_SHOWN, 'more ' + what)}")
    return lines


def _retries(report: Report, limit: int | None) -> list[str]:
    chains = report.chains
    if chains.is_empty():
        return []
    probes = report.conflicts.filter(pl.col("kind") == "oplock")
    if probes.height:  # an oplock probe's fallback open is not a retry
        keys = ["trace", "conflict"] if "trace" in probes.columns else ["conflict"]
        chains = chains.join(
            probes.select(*keys).rename({"conflict": "first_conflict"}),
            on=[k if k != "conflict" else "first_conflict" for k in keys],
            how="anti",
        )
    if chains.is_empty():
        return []
    lines = ["", "Retries by the failing process:"]
    advice = {}
    if report.app_retries.height:
        advice = {
            (r["trace"], r["chain"]): r["advice"]
            for r in report.app_retries.select("trace", "chain", "advice").iter_rows(named=True)
        }
    retried = chains.filter(pl.col("attempts") > 1)
    shown = retried if not limit else retried.head(limit)
    pooled = len(report.traces) > 1 and "trace" in chains.columns
    for r in shown.iter_rows(named=True):
        delays = ", ".join(f"{d:,.0f}" for d in r["delays_ms"][:12])
        more = ", ..." if len(r["delays_ms"]) > 12 else ""
        outcome = "then succeeded" if r["succeeded"] else "then gave up"
        where = f"{r['trace']}: " if pooled else ""
        lines.append(
            f"  {where}{r['process']} ({r['pid']}) {r['operation']} {r['path']}: "
            f"{plural(r['attempts'], 'attempt')} over {fmt_ms(r['total_ms'])} "
            f"(delays {delays}{more} ms), {outcome}"
        )
        if advice.get((r.get("trace"), r["chain"])):
            lines.append(f"    {advice[(r.get('trace'), r['chain'])]}")
    if retried.height > shown.height:
        lines.append(
            f"  ... and {plural(retried.height - shown.height, 'more retried operation')} "
            "(--limit 0 shows them all)"
        )
    singles = chains.filter(pl.col("attempts") == 1).height
    if singles:
        lines.append(f"  {plural(singles, 'failure')} not retried.")
    return lines


def _table(title: str, table: pl.DataFrame, key: str, unit: str) -> list[str]:
    if table.is_empty() or table["count"][0] == 0:
        return []
    lines = ["", title]
    lines.append(
        f"  {key:<28} {unit:>8} {'censored':>9} {'p50':>11} {'p90':>11} {'p99':>11} {'max':>11}"
    )
    for r in table.head(MAX_TABLE_ROWS + 1).iter_rows(named=True):
        lines.append(
            f"  {str(r[key])[:28]:<28} {r['count']:>8,} {r['censored']:>9,} "
            f"{fmt_ms(r['p50_ms']):>11} {fmt_ms(r['p90_ms']):>11} {fmt_ms(r['p99_ms']):>11} "
            f"{fmt_ms(r['max_ms']):>11}"
        )
    if table.height > MAX_TABLE_ROWS + 1:
        more = plural(table.height - MAX_TABLE_ROWS - 1, "more process", "more processes")
        lines.append(f"  ... and {more}")
    return lines


def _times(report: Report) -> list[str]:
    return _table(
        "Blocked time (per lock episode: from the first failure until the operation could "
        "first have succeeded; what a retry policy must ride out):",
        report.blocked_windows,
        "holder",
        "episodes",
    ) + _table(
        "Hold time (per failure: how long the handles present at that instant stayed open):",
        report.windows,
        "blocker",
        "failures",
    )


def _advice(report: Report, snippets: bool) -> list[str]:
    policy = report.policy
    if policy is None:
        return []
    lines = ["", f"Suggested retry policy (to ride out {policy.target:.0%} of the lock episodes):"]
    lines.append(f"  {policy.describe()}")
    lines.append(
        f"  coverage {policy.coverage:.1%} of {plural(policy.n_windows or 0, 'lock episode')}; "
        f"expected added wait {fmt_ms(policy.expected_wait_ms)}, worst "
        f"{fmt_ms(policy.worst_wait_ms)}; retries Win32 errors "
        + ", ".join(str(c) for c in policy.error_codes)
    )
    for note in policy.notes:
        lines.append(f"  - {note}")
    lines += _replay(report)
    code = report.snippets()
    if code and snippets:
        lines += ["", "The suggested policy in code:"]
        for language, snippet in code.items():
            lines.append(f"  --- {language}")
            lines += [f"  {line}" for line in snippet.rstrip().splitlines()]
    elif code:
        lines += ["", "  (--snippets prints this policy as Rust, Python, Go and .NET code.)"]
    return lines


NOT_RETRIED = "does not retry this error"


def _replay(report: Report) -> list[str]:
    return replay_table(report.replay, "these lock episodes")


def replay_table(replay: pl.DataFrame, episodes_of: str) -> list[str]:
    """How known tools' policies would have fared on ``episodes_of``; a tool that retries
    none of these episodes' errors says so instead of 0% success and no wait."""
    if not replay.height:
        return []
    lines = ["", f"How real tools' retry policies would have fared on {episodes_of}:"]
    lines.append(
        f"  {'tool':<34} {'retries on':<10} {'retried':>9} {'success':>8} {'median wait':>12} "
        f"{'worst wait':>12}"
    )
    for r in replay.iter_rows(named=True):
        head = f"  {r['tool'][:34]:<34} {r['triggers']:<10}"
        triggered, episodes = r.get("triggered"), r.get("episodes")
        if triggered == 0:
            lines.append(f"{head} {NOT_RETRIED}")
            continue
        tried = "-" if triggered is None else f"{triggered:,}/{episodes:,}"
        rate = "-" if r["success_rate"] is None else f"{r['success_rate']:.0%}"
        lines.append(
            f"{head} {tried:>9} {rate:>8} {fmt_ms(r['median_wait_ms']):>12} "
            f"{fmt_ms(r['worst_wait_ms']):>12}"
        )
    return lines


def _minifilters(report: Report) -> list[str]:
    """The ``--filters`` listing: every minifilter below Procmon, what its altitude means."""
    listing = report.minifilters
    if listing is None:
        return []
    where = (
        f"{listing.procmon.name} at {listing.cutoff}"
        if listing.procmon is not None
        else f"{listing.cutoff}, PROCMON24's altitude; no Procmon line in the listing"
    )
    lines = ["", f"Minifilters below Procmon ({where}), from {listing.source}:"]
    below = listing.below
    if not below:
        lines.append("  none: every filter listed sits above Procmon, so Procmon sees their I/O")
    lines += [f"  - {f.describe()}" for f in below]
    if listing.unplaced:
        names = ", ".join(f.name for f in listing.unplaced)
        lines.append(f"  Listed without an altitude (legacy filters, position unknown): {names}")
    lines.append(
        "  A filter below Procmon can open, scan, hold or refuse a file without any process "
        "showing it; vendors from Microsoft's allocated-altitudes list (the bundled copy may be "
        "partial: see traceaudit.minifilters.bundled_source())."
    )
    return lines


def render_text(
    report: Report, *, limit: int | None = DEFAULT_LIMIT, snippets: bool = False
) -> str:
    """The report for a terminal (see the module docstring); ``limit`` None or 0: no cap."""
    lines = _header(report)
    lines += _answer(report)
    details = _conflict_groups(report, limit)
    details += _retries(report, limit)
    details += _times(report)
    details += _advice(report, snippets)
    details += _minifilters(report)
    if report.warnings:
        details += ["", "Warnings:"] + [f"  - {w}" for w in report.warnings]
    if details:
        lines += ["", "Details", "-------"] + details[1:]
    return "\n".join(lines) + "\n"
