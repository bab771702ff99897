"""The terminal report: what was analysed, conflicts by blocked path, windows, warnings.

Plain ASCII apart from the trace's own strings, so it prints on any Windows console.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import polars as pl

from traceaudit.report import access_text, share_text

if TYPE_CHECKING:
    from traceaudit.report import Report

MAX_CONFLICTS_PER_PATH = 5
MAX_BLOCKERS_SHOWN = 5

VERDICT_WORDS = {
    "blocked-by-other-process": "blocked by another process",
    "blocked-by-own-handle": "blocked by its own handle",
    "no-holder-permission": "no holder in the trace (permission refusal?)",
    "no-holder-filtered": "no holder in the trace (filtered out of the capture?)",
}


def _clock(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%H:%M:%S}.{value.microsecond:06d}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:,.1f} s"
    return f"{value:,.1f} ms"


def _header(report: Report) -> list[str]:
    lines = []
    for t in report.traces:
        span = (
            f"{t.first:%Y-%m-%d %H:%M:%S} to {t.last:%H:%M:%S}"
            if t.first and t.last
            else "no events"
        )
        lines.append(
            f"Trace {t.name}: {t.format}, {t.events:,} events, {t.processes} processes, {span} ({t.clock} time)"
        )
    return lines


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _summary(conflicts: pl.DataFrame) -> list[str]:
    if conflicts.is_empty():
        return ["No failed file operation in this trace can be explained by a lock."]
    counts = dict(conflicts.group_by("verdict").len().iter_rows())
    paths = conflicts["path"].str.to_lowercase().n_unique()
    parts = [f"{counts[v]} {VERDICT_WORDS[v]}" for v in VERDICT_WORDS if counts.get(v)]
    return [
        f"{_plural(conflicts.height, 'conflict')} on {_plural(paths, 'path')}: "
        + "; ".join(parts)
        + "."
    ]


def _blocker_line(b: dict) -> str:
    opened = "before capture" if b["opened"] is None else _clock(b["opened"])
    closed = "still open at end" if b["closed"] is None else _clock(b["closed"])
    own = ", its own" if b["own"] else ""
    return (
        f"      held by {b['process']} ({b['pid']}){own}: {b['path']}\n"
        f"        open {opened} -> {closed}; access {access_text(b['access_mask'])}, "
        f"share {share_text(b['share_mode'])}; {b['relation']}"
    )


def _conflict_groups(report: Report) -> list[str]:
    lines: list[str] = []
    frame = report.conflicts.with_columns(key=pl.col("path").str.to_lowercase())
    groups = frame.group_by("key", maintain_order=True)
    for _, group in groups:
        first = group.row(0, named=True)
        ops = ", ".join(sorted(set(group["operation"])))
        lines.append("")
        lines.append(f"{first['path']}")
        target = f" -> {first['rename_target']}" if first["rename_target"] else ""
        lines.append(
            f"  {ops}{target}: {_plural(group.height, 'failed attempt')} by {', '.join(sorted(set(group['process'])))}"
        )
        for row in group.head(MAX_CONFLICTS_PER_PATH).iter_rows(named=True):
            remaining = (
                "holder still open at end of trace"
                if row["censored"]
                else (
                    f"released {_ms(row['remaining_ms'])} later"
                    if row["remaining_ms"] is not None
                    else ""
                )
            )
            lines.append(
                f"    {_clock(row['time'])}  {row['process']} ({row['pid']}) {row['operation']}: "
                f"{row['result']} - {VERDICT_WORDS[row['verdict']]}"
                + (f"; {remaining}" if remaining else "")
            )
            blockers = row["blockers"]
            for b in blockers[:MAX_BLOCKERS_SHOWN]:
                lines.append(_blocker_line(b))
            if len(blockers) > MAX_BLOCKERS_SHOWN:
                lines.append(f"      ... and {len(blockers) - MAX_BLOCKERS_SHOWN} more handles")
            if not blockers or row["verdict"] == "blocked-by-own-handle":
                lines.append(f"      {row['verdict_reason']}")
        if group.height > MAX_CONFLICTS_PER_PATH:
            lines.append(
                f"    ... {group.height - MAX_CONFLICTS_PER_PATH} more failures on this path"
            )
    return lines


def _retries(report: Report) -> list[str]:
    if report.chains.is_empty():
        return []
    lines = ["", "Retries by the failing process:"]
    advice = {}
    if report.app_retries.height:
        advice = {
            (r["trace"], r["chain"]): r["advice"]
            for r in report.app_retries.select("trace", "chain", "advice").iter_rows(named=True)
        }
    for r in report.chains.filter(pl.col("attempts") > 1).iter_rows(named=True):
        delays = ", ".join(f"{d:.0f}" for d in r["delays_ms"][:12])
        more = ", ..." if len(r["delays_ms"]) > 12 else ""
        outcome = "then succeeded" if r["succeeded"] else "then gave up"
        lines.append(
            f"  {r['process']} ({r['pid']}) {r['operation']} {r['path']}: {r['attempts']} attempts "
            f"over {_ms(r['total_ms'])} (delays {delays}{more} ms), {outcome}"
        )
        if advice.get((r["trace"], r["chain"])):
            lines.append(f"    {advice[(r['trace'], r['chain'])]}")
    singles = report.chains.filter(pl.col("attempts") == 1).height
    if singles:
        lines.append(f"  {_plural(singles, 'failure')} not retried.")
    return lines


def _windows(report: Report) -> list[str]:
    if report.windows.is_empty() or report.windows["count"][0] == 0:
        return []
    lines = ["", "Lock windows (time from a failure until its holders let go):"]
    lines.append(
        f"  {'blocker':<28} {'count':>6} {'censored':>9} {'p50':>11} {'p90':>11} {'p99':>11} {'max':>11}"
    )
    for r in report.windows.iter_rows(named=True):
        lines.append(
            f"  {r['blocker'][:28]:<28} {r['count']:>6} {r['censored']:>9} {_ms(r['p50_ms']):>11} "
            f"{_ms(r['p90_ms']):>11} {_ms(r['p99_ms']):>11} {_ms(r['max_ms']):>11}"
        )
    return lines


def _advice(report: Report) -> list[str]:
    policy = report.policy
    if policy is None:
        return []
    lines = ["", f"Suggested retry policy (to ride out {policy.target:.0%} of these locks):"]
    lines.append(f"  {policy.describe()}")
    lines.append(
        f"  coverage {policy.coverage:.1%} of {policy.n_windows} lock episodes; "
        f"expected added wait {_ms(policy.expected_wait_ms)}, worst {_ms(policy.worst_wait_ms)}"
    )
    for note in policy.notes:
        lines.append(f"  - {note}")
    if report.replay.height:
        lines += ["", "How real tools' retry policies would have fared on these locks:"]
        lines.append(
            f"  {'tool':<34} {'retries on':<10} {'success':>8} {'median wait':>12} {'worst wait':>12}"
        )
        for r in report.replay.iter_rows(named=True):
            rate = "-" if r["success_rate"] is None else f"{r['success_rate']:.0%}"
            lines.append(
                f"  {r['tool'][:34]:<34} {r['triggers']:<10} {rate:>8} "
                f"{_ms(r['median_wait_ms']):>12} {_ms(r['worst_wait_ms']):>12}"
            )
    code = report.snippets()
    if code:
        lines += ["", "The suggested policy in code:"]
        for language, snippet in code.items():
            lines.append(f"  --- {language}")
            lines += [f"  {line}" for line in snippet.rstrip().splitlines()]
    return lines


def render_text(report: Report) -> str:
    lines = _header(report)
    lines += _summary(report.conflicts)
    lines += _conflict_groups(report)
    lines += _retries(report)
    lines += _windows(report)
    lines += _advice(report)
    if report.warnings:
        lines += ["", "Warnings:"] + [f"  - {w}" for w in report.warnings]
    return "\n".join(lines) + "\n"
