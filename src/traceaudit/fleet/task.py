"""The per-trace task: one path in, the dataset's tables for that trace out.

:func:`analyse_file` is a plain function (no dask here), so a Dask worker, a process pool
or a plain loop can run it. It never raises for a trace: whatever goes wrong becomes a
:class:`TraceResult` with ``status="error"`` and a one-line message, so one bad file never
stops a fleet.

Steps, cheapest first: sniff the content (only for files found in a folder or by a glob:
a file that no reader recognises is ``not-a-trace`` and ignored), hash the bytes (sha256,
streamed: the trace's id), skip it when that id is already in the dataset (``skipped``),
analyse it with :func:`traceaudit.analyze` itself, and turn the report into the tables.
Pooling those tables later gives what ``analyze`` gives for the traces together, since
``analyze`` analyses each trace on its own and only then stacks the results. The tables
carry no ``trace_id`` column: the dataset's partition folders (``trace_id=<hash>``) give it.
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

__all__ = [
    "TraceResult",
    "analyse_file",
    "failed_result",
    "content_id",
    "path_id",
    "TABLES",
    "TRACE_SCHEMA",
]

TABLES = ("conflicts", "blockers", "episodes", "retries")
"""The per-trace tables, beside ``traces`` (one row per trace, written last)."""

_CHUNK = 1 << 20

TRACE_SCHEMA: dict[str, pl.DataType] = {
    "path": pl.String(),
    "name": pl.String(),
    "status": pl.String(),
    "error": pl.String(),
    "id_from": pl.String(),
    "size_bytes": pl.Int64(),
    "mtime_ns": pl.Int64(),
    "format": pl.String(),
    "events": pl.Int64(),
    "processes": pl.Int64(),
    "first": pl.Datetime("ns"),
    "last": pl.Datetime("ns"),
    "clock": pl.String(),
    "skipped_rows": pl.Int64(),
    "complete": pl.Boolean(),
    "gaps": pl.List(pl.String()),
    "warnings": pl.List(pl.String()),
    "headline": pl.String(),
    "conflicts": pl.Int64(),
    "blocked": pl.Int64(),
    "episodes": pl.Int64(),
    "policy": pl.String(),
    "policy_coverage": pl.Float64(),
    "policy_withheld": pl.String(),
    "date": pl.Date(),
    "strict": pl.Boolean(),
    "seconds": pl.Float64(),
    "analysed_at": pl.Datetime("us", "UTC"),
    "traceaudit": pl.String(),
}
"""Columns of the ``traces`` table (``trace_id`` comes from the partition folder)."""

_INTERVALS = pl.List(pl.Struct({"start_ms": pl.Float64(), "end_ms": pl.Float64()}))

_ASSESSMENT = {
    "episode": pl.UInt32(),
    "schedule": pl.String(),
    "needed_extra_ms": pl.Float64(),
    "assessment": pl.String(),
    "advice": pl.String(),
}


@dataclass
class TraceResult:
    """What the task found for one path.

    ``status``: ``ok`` (tables filled), ``error`` (``error`` says why; ``trace`` still
    holds the row to record), ``skipped`` (its content is already in the dataset) or
    ``not-a-trace`` (found in a folder, and no reader recognises it: ignored). ``written``:
    the worker committed the trace to the dataset itself (its ``tables`` are then left out
    here; ``trace``, one row, is kept).
    """

    path: str
    status: str
    trace_id: str | None = None
    error: str | None = None
    trace: pl.DataFrame | None = None
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    written: bool = False


def content_id(path: str | os.PathLike[str], *more: str | os.PathLike[str]) -> str:
    """The trace's id: sha256 of the file's bytes, read in 1 MiB pieces; for the files of
    a rolled-over capture, of each file's sha256 in part order."""
    if more:
        joined = "\n".join(content_id(p) for p in (path, *more))
        return hashlib.sha256(b"parts:" + joined.encode()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def path_id(path: str | os.PathLike[str]) -> str:
    """The id of a file whose bytes could not be read: sha256 of its path (retried on
    every run, since its content is unknown)."""
    return hashlib.sha256(b"path:" + os.fsencode(os.fspath(path))).hexdigest()


def _looks_like_trace(path: Path) -> bool:
    """Whether a reader recognises the content (gzip and zip unwrapped, as when reading)."""
    from traceaudit.errors import TraceauditError
    from traceaudit.formats.detection import is_trace
    from traceaudit.formats.input import open_input

    try:
        trace_input = open_input(path, sniff=is_trace)
    except TraceauditError:
        # A damaged archive may hold a trace: try it, and record why it cannot be read.
        with open(path, "rb") as handle:
            magic = handle.read(4)
        return magic.startswith((b"\x1f\x8b", b"PK"))
    return is_trace(trace_input.head)


def _error_text(exc: BaseException) -> str:
    from traceaudit._safe_text import error_text
    from traceaudit.errors import TraceauditError

    if isinstance(exc, TraceauditError):
        return error_text(str(exc))
    if isinstance(exc, OSError):
        return error_text(f"{exc.filename or 'file'}: {exc.strerror or exc}")
    if isinstance(exc, MemoryError):
        return "not enough memory for this trace on the worker"
    return error_text(f"internal error ({type(exc).__name__}: {exc}); please report it")


def _trace_row(values: dict[str, Any]) -> pl.DataFrame:
    from traceaudit._version import __version__

    row: dict[str, Any] = {name: None for name in TRACE_SCHEMA}
    row.update(values)
    row["traceaudit"] = __version__
    row["analysed_at"] = datetime.now(timezone.utc)
    # first and last arrive as epoch nanoseconds (a datetime would lose the last digits)
    schema = TRACE_SCHEMA | {"first": pl.Int64(), "last": pl.Int64()}
    return pl.DataFrame([row], schema=schema, orient="row").with_columns(
        pl.col("first", "last").cast(pl.Datetime("ns"))
    )


def failed_result(
    path: str, message: str, *, date: Date | None = None, strict: bool = False
) -> TraceResult:
    """A failure found outside the task (the worker died): recorded under the path's id,
    so that the next run tries the file again."""
    from traceaudit._safe_text import error_text

    message = error_text(message)
    values: dict[str, Any] = {"path": path, "name": Path(path).name, "date": date, "strict": strict}
    with contextlib.suppress(OSError):
        info = os.stat(path)
        values.update(size_bytes=info.st_size, mtime_ns=info.st_mtime_ns)
    row = _trace_row(values | {"status": "error", "error": message, "id_from": "path"})
    return TraceResult(path=path, status="error", trace_id=path_id(path), error=message, trace=row)


def analyse_file(
    path: str | os.PathLike[str],
    *,
    parts: Collection[str | os.PathLike[str]] = (),
    sniff: bool = False,
    known: Collection[str] = frozenset(),
    date: Date | None = None,
    strict: bool = False,
) -> TraceResult:
    """Analyse the trace at ``path`` for a fleet dataset (see the module docstring).

    ``parts``: every file of a rolled-over capture, ``path`` first (one trace, as
    :func:`traceaudit.analyze` reads them); ``sniff``: ignore the file unless a reader
    recognises it (files found in folders); ``known``: ids already in the dataset,
    skipped; ``date`` and ``strict`` as for :func:`traceaudit.analyze`.
    """
    start = time.perf_counter()
    source = Path(path)
    files = [Path(p) for p in parts] if len(parts) > 1 else [source]
    text = os.fspath(path)
    base: dict[str, Any] = {"path": text, "name": source.name, "date": date, "strict": strict}
    try:
        stats = [f.stat() for f in files]
        base.update(
            size_bytes=sum(s.st_size for s in stats), mtime_ns=max(s.st_mtime_ns for s in stats)
        )
        if sniff and not _looks_like_trace(source):
            return TraceResult(path=text, status="not-a-trace")
        trace_id = content_id(*files)
    except Exception as exc:  # unreadable: recorded under an id made from its path
        message = _error_text(exc)
        row = _trace_row(base | {"status": "error", "error": message, "id_from": "path"})
        return TraceResult(
            path=text, status="error", trace_id=path_id(text), error=message, trace=row
        )
    if trace_id in known:
        return TraceResult(path=text, status="skipped", trace_id=trace_id)
    base["id_from"] = "content"
    try:
        values, tables = _analyse(files, date=date, strict=strict)
    except Exception as exc:  # never stop the fleet: record why this one failed
        message = _error_text(exc)
        row = _trace_row(base | {"status": "error", "error": message})
        return TraceResult(path=text, status="error", trace_id=trace_id, error=message, trace=row)
    values["seconds"] = time.perf_counter() - start
    row = _trace_row(base | values | {"status": "ok"})
    return TraceResult(path=text, status="ok", trace_id=trace_id, trace=row, tables=tables)


def _ns(value: datetime | None, nanos: int | None) -> int | None:
    """A naive datetime and its nanoseconds within the second, as epoch nanoseconds."""
    if value is None:
        return None
    seconds = calendar.timegm(value.timetuple())
    return seconds * 1_000_000_000 + (nanos if nanos is not None else value.microsecond * 1000)


def _analyse(
    files: list[Path], *, date: Date | None, strict: bool
) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """Analyse one trace with :func:`traceaudit.analyze` itself (the same engine, whatever
    it becomes); its traces-row values and tables, without the ``trace`` name column."""
    from traceaudit.analysis.conflicts import BLOCKED_VERDICTS
    from traceaudit.pipeline import analyze

    report = analyze(files[0] if len(files) == 1 else files, date=date, strict=strict)
    summary = report.traces[0]
    intervals = report.blocked.group_by("episode", maintain_order=True).agg(
        blocked=pl.struct("start_ms", "end_ms")
    )
    conflict_times = report.conflicts.select("conflict", "time")
    episodes = (
        report.episodes.join(conflict_times, on="conflict", how="left", maintain_order="left")
        .join(
            report.blocked_times.select("episode", "blocked_ms", "censored"),
            on="episode",
            how="left",
            maintain_order="left",
        )
        .join(intervals, on="episode", how="left", maintain_order="left")
        .with_columns(pl.col("blocked").fill_null(pl.lit([], _INTERVALS)).cast(_INTERVALS))
        .drop("trace")
    )
    retries = report.chains.drop("trace")
    if report.app_retries.height:
        assessed = report.app_retries.select(
            "chain",
            "episode",
            schedule="schedule_text",
            needed_extra_ms="needed_extra_ms",
            assessment="verdict",
            advice="advice",
        )
        retries = retries.join(assessed, on="chain", how="left", maintain_order="left")
    else:
        retries = retries.with_columns(
            [pl.lit(None, dtype).alias(column) for column, dtype in _ASSESSMENT.items()]
        )
    retries = retries.with_columns(
        [pl.col(column).cast(dtype) for column, dtype in _ASSESSMENT.items()]
    )
    completeness = summary.completeness
    policy = report.policy
    values: dict[str, Any] = {
        "name": summary.name,
        "format": summary.format,
        "events": summary.events,
        "processes": summary.processes,
        "first": _ns(summary.first, summary.first_ns),
        "last": _ns(summary.last, summary.last_ns),
        "clock": summary.clock,
        "skipped_rows": sum(summary.skipped.values()),
        "complete": None if completeness is None else not completeness.gaps,
        "gaps": [] if completeness is None else list(completeness.gaps),
        "warnings": list(report.warnings),
        "headline": report.headline_warning,
        "conflicts": report.conflicts.height,
        "blocked": report.conflicts.filter(pl.col("verdict").is_in(list(BLOCKED_VERDICTS))).height,
        "episodes": report.episodes.height,
        "policy": None if policy is None else policy.describe(),
        "policy_coverage": None if policy is None else policy.coverage,
        "policy_withheld": report.policy_withheld,
    }
    tables = {
        "conflicts": report.conflicts.drop("trace"),
        "blockers": report.blocking.drop("trace"),
        "episodes": episodes,
        "retries": retries,
    }
    return values, tables
