"""Faces of a per-file timeline: text for the terminal, records for JSON."""

from __future__ import annotations

from typing import Any

import polars as pl

from traceaudit.display import access_text, clock_expr, iso_expr, plural, share_text


def timeline_records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """The timeline as JSON-ready dicts, times in ISO 8601 with 100 ns precision."""
    out = frame.with_columns(
        time=iso_expr(pl.col("time")),
        duration_ms=pl.col("duration").dt.total_nanoseconds() / 1_000_000,
    ).drop("duration")
    records = out.to_dicts()
    for record in records:
        mask, share = record.pop("access_mask"), record.pop("share_mode")
        record["access"] = None if mask is None else access_text(mask)
        record["share_mode"] = None if share is None else share_text(share)
    return records


_MAX_WIDTH = {"process": 32, "operation": 28, "result": 26}
LEGEND = (
    "Handles: h5 is the 5th handle opened on these paths in the trace, numbered in the "
    "order they were opened; the same id marks its open, every operation made through it "
    "and its close. '-': no handle (a failed open, or an operation the trace cannot tie "
    "to one)."
)


def _cut(text: str, width: int) -> str:
    """``text`` at most ``width`` characters, cut in the middle: ``SearchPro…Host.exe``."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def _cells(r: dict[str, Any]) -> dict[str, str]:
    extras = []
    if r["access_mask"] is not None:
        extras.append(f"access {access_text(r['access_mask'])}")
    if r["share_mode"] is not None:
        extras.append(f"share {share_text(r['share_mode'])}")
    if r["rename_target"]:
        extras.append(f"-> {r['rename_target']}")
    if r["duration"] is not None:
        extras.append(f"{r['duration'].total_seconds() * 1000:,.3f} ms")
    return {
        "time": r["time_text"] or "-",
        "process": f"{r['process'] or '?'} ({r['pid']})",
        "handle": f"h{r['handle']}" if r["handle"] is not None else "-",
        "operation": r["operation"] or "?",
        "result": r["result"] or "?",
        "path": r["path"] or "?",
        "extras": f"  [{'; '.join(extras)}]" if extras else "",
    }


def timeline_text(frame: pl.DataFrame, path: str) -> str:
    """One line per event, in aligned columns: time, process (pid), handle, operation,
    result, path and what matters (access, share mode, rename target, duration); a
    legend for the handle ids first. ``/`` in ``path`` is shown as ``\\``."""
    path = path.replace("/", "\\")
    if frame.is_empty():
        return f"No events on {path} or below it in this trace.\n"
    rows = [
        _cells(r)
        for r in frame.with_columns(time_text=clock_expr(pl.col("time"))).iter_rows(named=True)
    ]
    header = {
        "time": "time",
        "process": "process (pid)",
        "handle": "handle",
        "operation": "operation",
        "result": "result",
    }
    width = {
        key: min(max(len(r[key]) for r in [*rows, header]), _MAX_WIDTH.get(key, 1_000))
        for key in header
    }

    def line(cells: dict[str, str], tail: str) -> str:
        return (
            f"{_cut(cells['time'], width['time']):<{width['time']}}  "
            f"{_cut(cells['process'], width['process']):<{width['process']}}  "
            f"{cells['handle']:>{width['handle']}}  "
            f"{_cut(cells['operation'], width['operation']):<{width['operation']}}  "
            f"{_cut(cells['result'], width['result']):<{width['result']}}  {tail}"
        ).rstrip()

    lines = [
        f"{plural(frame.height, 'event')} on {path} and below it.",
        LEGEND,
        "",
        line(header, "path"),
    ]
    lines += [line(r, r["path"] + r["extras"]) for r in rows]
    return "\n".join(lines) + "\n"
