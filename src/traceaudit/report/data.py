"""The result of an analysis as plain data: frames, summaries and the stable JSON document.

:class:`ReportData` holds polars frames (``events``, ``handles``, ``conflicts``,
``blocking``, ``chains``, ``windows``, ``blocked_times``) and the warnings; ``to_dict()`` is
the stable JSON document that ``traceaudit analyze --json`` prints (documented in the
README). Its faces (terminal text, HTML, plots) read it; :mod:`traceaudit.report.model`
joins the two in :class:`~traceaudit.report.model.Report`, what the analysis returns.

Two measures of time, named the same everywhere:

* **hold time** (per failure; ``remaining_ms``, the ``windows`` table): how long the handles
  present at that failure stayed open;
* **blocked time** (per lock episode; ``blocked_times``, the ``blocked`` table): how long
  the operation stayed blocked until it could first have succeeded, which is what a retry
  policy must ride out.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from traceaudit.analysis.completeness import GAPS, Completeness
from traceaudit.analysis.conflicts import CHECK_VERDICTS
from traceaudit.display import access_text, iso_expr, iso_time, share_text
from traceaudit.minifilters.fltmc import FltmcListing
from traceaudit.policy import RetryPolicy, snippets
from traceaudit.schema import Trace

__all__ = ["ReportData", "TraceSummary", "FilterOutcome"]


def _iso_expr(column: str) -> pl.Expr:
    return iso_expr(pl.col(column))


def _handle_records(column: str) -> pl.Expr:
    """A list of handle structs (blockers, candidates) with ISO times, for JSON."""
    field = pl.element().struct.field
    return pl.col(column).list.eval(
        pl.struct(
            field("pid"),
            field("process"),
            field("path"),
            opened=iso_expr(field("opened")),
            closed=iso_expr(field("closed")),
            access=field("access_mask"),
            share_mode=field("share_mode"),
            relation=field("relation"),
            own=field("own"),
            open_before_capture=field("open_before_capture"),
        )
    )


def _section_records(column: str) -> pl.Expr:
    field = pl.element().struct.field
    return pl.col(column).list.eval(
        pl.struct(
            field("pid"),
            field("process"),
            field("path"),
            mapped=iso_expr(field("mapped")),
            row=field("row"),
            source=field("source"),
            own=field("own"),
            ended=iso_expr(field("ended")),
        )
    )


def _handle_dict(b: dict[str, Any]) -> dict[str, Any]:
    return {
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
    completeness: Completeness | None = None

    @classmethod
    def of(cls, trace: Trace, completeness: Completeness | None = None) -> TraceSummary:
        events = trace.events
        times = events["time"].drop_nulls()
        first: datetime | None = times.min() if len(times) else None  # type: ignore[assignment]
        last: datetime | None = times.max() if len(times) else None  # type: ignore[assignment]
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
            completeness=completeness,
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
            "completeness": None if self.completeness is None else self.completeness.to_dict(),
        }


@dataclass(frozen=True)
class FilterOutcome:
    """What ``--path`` / ``--process`` kept: how many conflicts matched of how many, and
    which processes and paths had conflicts (most first), to show when nothing matched."""

    path: str | None
    process: str | None
    matched: int
    total: int
    processes: tuple[tuple[str, int], ...] = ()
    paths: tuple[tuple[str, int], ...] = ()


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class ReportData:
    """Everything one analysis found, as data: frames for notebooks, ``to_dict`` for JSON.

    :class:`traceaudit.report.model.Report` adds the faces (``to_text``, Jupyter's HTML);
    the faces themselves only read this data.
    """

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
    blocked_times: pl.DataFrame = field(default_factory=pl.DataFrame)
    blocked_windows: pl.DataFrame = field(default_factory=pl.DataFrame)
    policy_withheld: str | None = None
    filter_outcome: FilterOutcome | None = None
    headline_warning: str | None = None
    minifilters: FltmcListing | None = None
    """The ``fltmc`` listing given with ``--filters`` (``filters=``), or None."""

    # ----------------------------------------------------------------- plain data
    @property
    def blockers(self) -> pl.DataFrame:
        """One row per (conflict, blocking handle) open at the failure instant, among the
        handles whose lifetime the capture shows (candidates are left out)."""
        frame = self.blocking.filter(pl.col("at_failure"))
        if "candidate" in frame.columns:
            frame = frame.filter(~pl.col("candidate"))
        return frame

    @property
    def candidates(self) -> pl.DataFrame:
        """One row per (conflict, handle) that looks open at the failure only because the
        capture cannot show its close (or open): possible holders, not evidence."""
        if "candidate" not in self.blocking.columns:
            return self.blocking.clear()
        return self.blocking.filter(pl.col("at_failure") & pl.col("candidate"))

    def blocked_by_other(self) -> bool:
        """Whether another process's handle or mapped section was in the way of a conflict
        (``--check`` fails on it); oplock probes and candidates never count."""
        return (
            bool(self.conflicts["verdict"].is_in(list(CHECK_VERDICTS)).any())
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
            "completeness": self._pooled_completeness(),
        }

    def _pooled_completeness(self) -> dict[str, Any]:
        """Several traces: complete when each is; the gaps of any, in GAPS order."""
        found = {
            gap for t in self.traces if t.completeness is not None for gap in t.completeness.gaps
        }
        gaps = [g for g in GAPS if g in found]
        return {"complete": not gaps, "gaps": gaps}

    def conflict_records(self) -> list[dict[str, Any]]:
        """One JSON record per failed operation (``conflicts`` in the JSON document)."""
        return list(self.iter_conflict_records())

    def iter_conflict_records(self) -> Iterator[dict[str, Any]]:
        """:meth:`conflict_records` a slice at a time, for output that streams."""
        for part in _slices(self.conflicts):
            frame = part.with_columns(
                time_iso=_iso_expr("time"),
                blockers=_handle_records("blockers"),
                candidates=_handle_records("candidates"),
                sections=_section_records("sections"),
            )
            for row in frame.iter_rows(named=True):
                yield {
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
                    "kind": row["kind"],
                    "verdict": row["verdict"],
                    "reason": row["verdict_reason"],
                    "unseen_holder": row.get("unseen_holder"),
                    "blockers": [_handle_dict(b) for b in row["blockers"]],
                    "candidates": [_handle_dict(b) for b in row["candidates"]],
                    "sections": row["sections"],
                    "remaining_ms": _round(row["remaining_ms"]),
                    "censored": row["censored"],
                }

    def window_dict(self) -> dict[str, Any]:
        rows = self.windows.to_dicts()
        clean = [
            {k: (_round(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows
        ]
        overall = {k: v for k, v in clean[0].items() if k != "blocker"} if clean else {}
        return {"overall": overall, "by_process": clean[1:]}

    def blocked_dict(self) -> dict[str, Any]:
        """Blocked times of the lock episodes: the table (overall, by holder) and each one."""
        return self._blocked_dict(list(self.iter_episode_records()))

    def _blocked_dict(self, episodes: Any) -> dict[str, Any]:
        rows = [
            {k: (_round(v) if isinstance(v, float) else v) for k, v in r.items()}
            for r in self.blocked_windows.to_dicts()
        ]
        overall = {k: v for k, v in rows[0].items() if k != "holder"} if rows else {}
        return {"overall": overall, "by_process": rows[1:], "episodes": episodes}

    def iter_episode_records(self) -> Iterator[dict[str, Any]]:
        """One JSON record per lock episode with its blocked time (``blocked.episodes``)."""
        if not self.blocked_times.height:
            return
        joined = (
            self.blocked_times.join(
                self.conflicts.select(
                    "trace", "conflict", "time", "pid", "process", "operation", "path", "error_code"
                ),
                on=["trace", "conflict"],
                how="left",
            )
            .with_columns(time=_iso_expr("time"))
            .sort("trace", "episode")
        )
        for part in _slices(joined):
            for r in part.iter_rows(named=True):
                yield {
                    "trace": r["trace"],
                    "episode": r["episode"],
                    "time": r["time"],
                    "pid": r["pid"],
                    "process": r["process"],
                    "operation": r["operation"],
                    "path": r["path"],
                    "error_code": r["error_code"],
                    "holder": r["holder"],
                    "blocked_ms": _round(r["blocked_ms"]),
                    "censored": r["censored"],
                }

    def filters_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v for k, v in self.filters.items() if v}
        if self.filter_outcome is not None:
            out["matched"] = self.filter_outcome.matched
            out["total"] = self.filter_outcome.total
        return out

    def retry_records(self) -> list[dict[str, Any]]:
        """One JSON record per retry chain, with its assessment (``retries``)."""
        return list(self.iter_retry_records())

    def iter_retry_records(self) -> Iterator[dict[str, Any]]:
        """:meth:`retry_records` a slice at a time."""
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
        for part in _slices(frame):
            for r in part.iter_rows(named=True):
                yield {
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

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON document (see the README's "JSON output" section)."""
        return self._document(
            self.conflict_records(), list(self.iter_episode_records()), self.retry_records()
        )

    def _document(self, conflicts: Any, episodes: Any, retries: Any) -> dict[str, Any]:
        """The JSON document around its three long lists (given, or stand-ins for them)."""
        document = {
            "trace": self._trace_dict(),
            "traces": [t.to_dict() for t in self.traces],
            "filters": self.filters_dict(),
            "warnings": list(self.warnings),
            "conflicts": conflicts,
            "windows": self.window_dict(),
            "blocked": self._blocked_dict(episodes),
            "retries": retries,
            "policy": None if self.policy is None else self.policy.to_dict(),
            "policy_withheld": self.policy_withheld,
            "replay": self.replay_records(),
            "snippets": self.snippets(),
        }
        if self.minifilters is not None:
            document["minifilters"] = self.minifilters.to_dict()
        return document

    def write_json(self, write: Callable[[str], object], indent: int | None = 2) -> None:
        """Write the JSON document (:meth:`to_dict`) through ``write``, piece by piece.

        The three lists that grow with the trace (conflicts, lock episodes, retry chains)
        are encoded a record at a time, one record per line, so a report of a million
        conflicts never exists as one string or one list of dicts, and each record is
        one line to ``grep``. Everything else is laid out with ``indent``.
        """
        token = secrets.token_hex(8)
        streams = {
            f"stream:{name}:{token}": records
            for name, records in (
                ("conflicts", self.iter_conflict_records()),
                ("episodes", self.iter_episode_records()),
                ("retries", self.iter_retry_records()),
            )
        }
        text = json.dumps(self._document(*streams), indent=indent, ensure_ascii=False)
        for placeholder, records in streams.items():
            quoted = json.dumps(placeholder)
            at = text.index(quoted)
            write(text[:at])
            line_start = text.rfind("\n", 0, at) + 1
            margin = len(text[line_start:at]) - len(text[line_start:at].lstrip(" "))
            _write_list(write, records, indent, margin)
            text = text[at + len(quoted) :]
        write(text)

    def snippets(self) -> dict[str, str]:
        """The suggested policy as Rust, Python, Go and .NET code (empty with no policy)."""
        return {} if self.policy is None else snippets(self.policy)

    def replay_records(self) -> list[dict[str, Any]]:
        return [
            {k: (_round(v) if isinstance(v, float) else v) for k, v in r.items()}
            for r in self.replay.to_dicts()
        ]

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON document as :meth:`write_json` writes it."""
        pieces: list[str] = []
        self.write_json(pieces.append, indent=indent)
        return "".join(pieces)


STREAM_SLICE = 10_000
"""Rows turned into records at a time when the JSON document streams."""


def _slices(frame: pl.DataFrame) -> Iterator[pl.DataFrame]:
    size = STREAM_SLICE
    for offset in range(0, frame.height, size):
        yield frame.slice(offset, size)


def _write_list(
    write: Callable[[str], object],
    records: Iterable[dict[str, Any]],
    indent: int | None,
    margin: int,
) -> None:
    """A JSON list at ``margin`` spaces of indentation: one compact record per line
    (compact records use the C encoder, several times faster than an indented one)."""
    if indent is None:
        opening, separator, closing = "[", ", ", "]"
    else:
        inner = "\n" + " " * (margin + indent)
        opening, separator, closing = "[" + inner, "," + inner, "\n" + " " * margin + "]"
    first = True
    for record in records:
        write((opening if first else separator) + json.dumps(record, ensure_ascii=False))
        first = False
    write("[]" if first else closing)
