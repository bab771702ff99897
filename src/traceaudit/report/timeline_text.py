"""Faces of a per-file timeline: text for the terminal, records for JSON."""

from __future__ import annotations

from typing import Any

import polars as pl

from traceaudit.display import access_text, clock_expr, iso_expr, share_text


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


def timeline_text(frame: pl.DataFrame, path: str) -> str:
    """One line per event: time, process, operation, result, handle and what matters."""
    if frame.is_empty():
        return f"No events on {path} or below it in this trace.\n"
    lines = [f"{frame.height:,} events on {path} and below:"]
    for r in frame.with_columns(time_text=clock_expr(pl.col("time"))).iter_rows(named=True):
        extras = []
        if r["access_mask"] is not None:
            extras.append(f"access {access_text(r['access_mask'])}")
        if r["share_mode"] is not None:
            extras.append(f"share {share_text(r['share_mode'])}")
        if r["rename_target"]:
            extras.append(f"-> {r['rename_target']}")
        if r["duration"] is not None:
            extras.append(f"{r['duration'].total_seconds() * 1000:.3f} ms")
        handle = f"h{r['handle']}" if r["handle"] is not None else "-"
        lines.append(
            f"{r['time_text']}  {r['process']} ({r['pid']})  {handle:>6}  "
            f"{r['operation']}  {r['path']}  {r['result']}"
            + (f"  [{'; '.join(extras)}]" if extras else "")
        )
    return "\n".join(lines) + "\n"
