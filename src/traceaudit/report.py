"""The result of an analysis, and its faces: plain data (JSON), terminal text, notebook HTML.

:class:`Report` holds polars frames (``events``, ``handles``, ``conflicts``, ``blocking``,
``chains``, ``windows``) and the warnings; ``to_dict()`` is the stable JSON document that
``traceaudit analyze --json`` prints (documented in the README), ``to_text()`` the report for
a person.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from traceaudit.policy import RetryPolicy, snippets
from traceaudit.schema import SHARE_DELETE, SHARE_READ, SHARE_WRITE, Trace

__all__ = ["Report", "TraceSummary", "iso_time", "share_text", "access_text"]


def iso_time(value: datetime | None, nanos: int | None = None) -> str | None:
    """ISO 8601 with the trace's 100 ns precision (7 fractional digits)."""
    if value is None:
        return None
    if nanos is None:
        nanos = value.microsecond * 1000
    return f"{value:%Y-%m-%dT%H:%M:%S}.{nanos // 100:07d}"


def _iso_expr(column: str) -> pl.Expr:
    col = pl.col(column)
    return pl.format(
        "{}.{}",
        col.dt.strftime("%Y-%m-%dT%H:%M:%S"),
        (col.dt.nanosecond() // 100).cast(pl.String).str.zfill(7),
    )


def share_text(bits: int | None) -> str:
    """``Read, Write, Delete`` style, as Procmon prints ShareMode; ``?`` when unknown."""
    if bits is None:
        return "?"
    names = [
        n
        for b, n in ((SHARE_READ, "Read"), (SHARE_WRITE, "Write"), (SHARE_DELETE, "Delete"))
        if bits & b
    ]
    return ", ".join(names) if names else "None"


def access_text(mask: int | None) -> str:
    """The sharing-relevant part of an access mask: ``read``, ``write``, ``delete``, or
    ``attributes`` for an attribute-only open; ``?`` when unknown."""
    from traceaudit._sharing import DELETE_BITS, READ_BITS, WRITE_BITS

    if mask is None:
        return "?"
    kinds = [
        n
        for bits, n in ((READ_BITS, "read"), (WRITE_BITS, "write"), (DELETE_BITS, "delete"))
        if mask & bits
    ]
    return "+".join(kinds) if kinds else "attributes"


@dataclass(frozen=True)
class TraceSummary:
    """What was analysed: one line of the report per trace."""

    name: str
    format: str
    events: int
    processes: int
    first: datetime | None
    last: datetime | None
    first_ns: int | None = None
    last_ns: int | None = None
    clock: str = "local"
    skipped: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, trace: Trace) -> TraceSummary:
        events = trace.events
        times = events["time"].drop_nulls()
        first = times.min() if len(times) else None
        last = times.max() if len(times) else None
        nanos = (
            events.select(
                first=pl.col("time").min().dt.nanosecond(),
                last=pl.col("time").max().dt.nanosecond(),
            ).row(0)
            if len(times)
            else (None, None)
        )
        return cls(
            name=trace.name,
            format=trace.format,
            events=events.height,
            processes=events["pid"].n_unique() if events.height else 0,
            first=first,
            last=last,
            first_ns=nanos[0],
            last_ns=nanos[1],
            clock=trace.clock,
            skipped=dict(trace.skipped),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": self.format,
            "events": self.events,
            "processes": self.processes,
            "first": iso_time(self.first, self.first_ns),
            "last": iso_time(self.last, self.last_ns),
            "clock": self.clock,
            "skipped_rows": sum(self.skipped.values()),
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class Report:
    """Everything one analysis found; frames for notebooks, ``to_dict``/``to_text`` for people."""

    traces: tuple[TraceSummary, ...]
    events: pl.DataFrame
    handles: pl.DataFrame
    conflicts: pl.DataFrame
    blocking: pl.DataFrame
    chains: pl.DataFrame
    windows: pl.DataFrame
    episodes: pl.DataFrame = field(default_factory=pl.DataFrame)
    blocked: pl.DataFrame = field(default_factory=pl.DataFrame)
    policy: RetryPolicy | None = None
    replay: pl.DataFrame = field(default_factory=pl.DataFrame)
    app_retries: pl.DataFrame = field(default_factory=pl.DataFrame)
    warnings: tuple[str, ...] = ()
    filters: dict[str, str | None] = field(default_factory=dict)

    # ----------------------------------------------------------------- plain data
    @property
    def blockers(self) -> pl.DataFrame:
        """One row per (conflict, blocking handle) open at the failure instant."""
        return self.blocking.filter(pl.col("at_failure"))

    def blocked_by_other(self) -> bool:
        """Whether any conflict was blocked by another process (``--check`` fails on it)."""
        return (
            bool((self.conflicts["verdict"] == "blocked-by-other-process").any())
            if self.conflicts.height
            else False
        )

    def _trace_dict(self) -> dict[str, Any]:
        if len(self.traces) == 1:
            return self.traces[0].to_dict()
        firsts = [t for t in self.traces if t.first is not None]
        lasts = [t for t in self.traces if t.last is not None]
        first = min(firsts, key=lambda t: (t.first, t.first_ns), default=None)
        last = max(lasts, key=lambda t: (t.last, t.last_ns), default=None)
        return {
            "name": ", ".join(t.name for t in self.traces),
            "format": ",".join(sorted({t.format for t in self.traces})),
            "events": sum(t.events for t in self.traces),
            "processes": sum(t.processes for t in self.traces),
            "first": iso_time(first.first, first.first_ns) if first else None,
            "last": iso_time(last.last, last.last_ns) if last else None,
            "clock": ",".join(sorted({t.clock for t in self.traces})),
            "skipped_rows": sum(sum(t.skipped.values()) for t in self.traces),
        }

    def conflict_records(self) -> list[dict[str, Any]]:
        frame = self.conflicts.with_columns(time_iso=_iso_expr("time")).with_columns(
            blockers=pl.col("blockers").list.eval(
                pl.struct(
                    pl.element().struct.field("pid"),
                    pl.element().struct.field("process"),
                    pl.element().struct.field("path"),
                    opened=pl.format(
                        "{}.{}",
                        pl.element().struct.field("opened").dt.strftime("%Y-%m-%dT%H:%M:%S"),
                        (pl.element().struct.field("opened").dt.nanosecond() // 100)
                        .cast(pl.String)
                        .str.zfill(7),
                    ),
                    closed=pl.format(
                        "{}.{}",
                        pl.element().struct.field("closed").dt.strftime("%Y-%m-%dT%H:%M:%S"),
                        (pl.element().struct.field("closed").dt.nanosecond() // 100)
                        .cast(pl.String)
                        .str.zfill(7),
                    ),
                    access=pl.element().struct.field("access_mask"),
                    share_mode=pl.element().struct.field("share_mode"),
                    relation=pl.element().struct.field("relation"),
                    own=pl.element().struct.field("own"),
                    open_before_capture=pl.element().struct.field("open_before_capture"),
                )
            )
        )
        records = []
        for row in frame.iter_rows(named=True):
            blockers = [
                {
                    "pid": b["pid"],
                    "process": b["process"],
                    "path": b["path"],
                    "opened": b["opened"],
                    "closed": b["closed"],
                    "access": access_text(b["access"]),
                    "share_mode": share_text(b["share_mode"]),
                    "relation": b["relation"],
                    "own": b["own"],
                    "open_before_capture": b["open_before_capture"],
                }
                for b in row["blockers"]
            ]
            records.append(
                {
                    "trace": row["trace"],
                    "row": row["row"],
                    "time": row["time_iso"],
                    "pid": row["pid"],
                    "process": row["process"],
                    "operation": row["operation"],
                    "path": row["path"],
                    "rename_target": row["rename_target"],
                    "result": row["result"],
                    "error_code": row["error_code"],
                    "verdict": row["verdict"],
                    "reason": row["verdict_reason"],
                    "blockers": blockers,
                    "remaining_ms": _round(row["remaining_ms"]),
                    "censored": row["censored"],
                }
            )
        return records

    def window_dict(self) -> dict[str, Any]:
        rows = self.windows.to_dicts()
        clean = [
            {k: (_round(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows
        ]
        overall = {k: v for k, v in clean[0].items() if k != "blocker"} if clean else {}
        return {"overall": overall, "by_process": clean[1:]}

    def retry_records(self) -> list[dict[str, Any]]:
        frame = self.chains
        if self.app_retries.height:
            assessed = self.app_retries.select(
                "trace", "chain", "schedule_text", "needed_extra_ms", "verdict", "advice"
            ).rename({"schedule_text": "schedule", "verdict": "assessment"})
            frame = frame.join(assessed, on=["trace", "chain"], how="left")
        else:
            frame = frame.with_columns(
                schedule=pl.lit(None, pl.String),
                needed_extra_ms=pl.lit(None, pl.Float64),
                assessment=pl.lit(None, pl.String),
                advice=pl.lit(None, pl.String),
            )
        frame = frame.with_columns(
            first_failure=_iso_expr("first_failure"), last_attempt=_iso_expr("last_attempt")
        )
        return [
            {
                "trace": r["trace"],
                "pid": r["pid"],
                "process": r["process"],
                "operation": r["operation"],
                "path": r["path"],
                "error_code": r["error_code"],
                "attempts": r["attempts"],
                "failures": r["failures"],
                "first_failure": r["first_failure"],
                "last_attempt": r["last_attempt"],
                "delays_ms": [_round(d) for d in r["delays_ms"]],
                "total_ms": _round(r["total_ms"]),
                "succeeded": r["succeeded"],
                "schedule": r["schedule"],
                "assessment": r["assessment"],
                "needed_extra_ms": _round(r["needed_extra_ms"]),
                "advice": r["advice"],
            }
            for r in frame.iter_rows(named=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON document (see the README's "JSON output" section)."""
        return {
            "trace": self._trace_dict(),
            "traces": [t.to_dict() for t in self.traces],
            "filters": {k: v for k, v in self.filters.items() if v},
            "warnings": list(self.warnings),
            "conflicts": self.conflict_records(),
            "windows": self.window_dict(),
            "retries": self.retry_records(),
            "policy": None if self.policy is None else self.policy.to_dict(),
            "replay": self.replay_records(),
            "snippets": self.snippets(),
        }

    def snippets(self) -> dict[str, str]:
        """The suggested policy as Rust, Python, Go and .NET code (empty with no policy)."""
        return {} if self.policy is None else snippets(self.policy)

    def replay_records(self) -> list[dict[str, Any]]:
        return [
            {k: (_round(v) if isinstance(v, float) else v) for k, v in r.items()}
            for r in self.replay.to_dicts()
        ]

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    # ----------------------------------------------------------------- text
    def to_text(self) -> str:
        from traceaudit._text import render_text

        return render_text(self)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        t = self._trace_dict()
        verdicts = (
            self.conflicts["verdict"].value_counts(sort=True).to_dicts()
            if self.conflicts.height
            else []
        )
        items = "".join(f"<li>{html.escape(v['verdict'])}: {v['count']}</li>" for v in verdicts)
        warn = "".join(f"<li>{html.escape(w)}</li>" for w in self.warnings)
        table = self.windows.to_pandas().to_html(index=False) if self.windows.height else ""
        return (
            f"<div><b>traceaudit</b>: {html.escape(t['name'])} ({html.escape(t['format'])}, "
            f"{t['events']:,} events, {t['processes']} processes)<br>"
            f"{self.conflicts.height} conflicts<ul>{items}</ul>{table}"
            + (f"<b>Warnings</b><ul>{warn}</ul>" if warn else "")
            + "</div>"
        )
