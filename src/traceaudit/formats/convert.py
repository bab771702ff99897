"""``traceaudit convert``: normalised events out to Parquet (exact round trip) or CSV.

Parquet keeps every type of the event schema and reads back with ``traceaudit analyze``
(or ``polars.read_parquet``) as the very same frame. CSV is for spreadsheets and other
tools: one column per schema field, times in ISO 8601 with 100 ns precision, durations in
milliseconds; it is not a Procmon export.

CSV is what a spreadsheet opens, and a trace is untrusted input: a path or Detail may read
``=HYPERLINK(…)`` or ``+cmd|' /C calc'!A0``, which Excel and LibreOffice would run as a
formula. Text cells that start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
are written with a leading apostrophe (the OWASP advice for CSV injection); ``raw=True``
(``--raw``) writes them as they are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date as Date
from pathlib import Path

import polars as pl

from traceaudit._atomic import atomic_output
from traceaudit.display import format_expr
from traceaudit.errors import UsageError
from traceaudit.formats.parquet import write_parquet
from traceaudit.schema import Trace

__all__ = ["OUTPUT_FORMATS", "FORMULA_START", "convert", "output_format", "write_events"]

OUTPUT_FORMATS = ("parquet", "csv")

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is a formula to a spreadsheet."""


def output_format(out: str | os.PathLike[str], format: str | None) -> str:
    """``parquet`` or ``csv``, from ``format`` or the extension of ``out``."""
    out = Path(out)
    if format is not None:
        if format not in OUTPUT_FORMATS:
            raise UsageError(f"--to {format!r}: choose one of {', '.join(OUTPUT_FORMATS)}.")
        return format
    suffix = out.suffix.lower().lstrip(".")
    if suffix in ("parquet", "pq"):
        return "parquet"
    if suffix == "csv":
        return "csv"
    raise UsageError(
        f"{out.name}: cannot tell the output format from the extension; name it .parquet or "
        ".csv, or pass --to parquet|csv."
    )


def _refuse_inputs(out: Path, inputs: tuple[Path, ...]) -> None:
    for source in inputs:
        if out.exists() and source.exists() and os.path.samefile(out, source):
            raise UsageError(f"{out}: this is the input trace; write the output to another file.")


def _defused(frame: pl.DataFrame) -> pl.DataFrame:
    """Text cells a spreadsheet would run as a formula, with a leading apostrophe."""
    starts = "^[" + "".join("\\" + c if c in "-+" else c for c in FORMULA_START) + "]"
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(starts))
        .then(pl.lit("'") + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name, dtype in frame.schema.items()
        if dtype == pl.String
    )


def write_events(
    trace: Trace, out: str | os.PathLike[str], *, format: str | None = None, raw: bool = False
) -> Path:
    """Write ``trace``'s events to ``out`` (atomically) as Parquet or CSV; return the path.

    CSV cells that a spreadsheet would run as a formula are defused unless ``raw`` (see the
    module docstring); Parquet is always exact."""
    target = Path(out)
    kind = output_format(target, format)
    if trace.source is not None:
        _refuse_inputs(target, (trace.source,))
    events = trace.events
    with atomic_output(target) as handle:
        if kind == "parquet":
            write_parquet(trace, handle)
        else:
            flat = events.with_columns(
                time=format_expr(
                    "{}.{}",
                    pl.col("time").dt.strftime("%Y-%m-%dT%H:%M:%S"),
                    (pl.col("time").dt.nanosecond() // 100).cast(pl.String).str.zfill(7),
                ),
                duration=pl.col("duration").dt.total_nanoseconds() / 1_000_000,
            ).rename({"duration": "duration_ms"})
            if not raw:
                flat = _defused(flat)
            flat.write_csv(handle, include_bom=True)
    return target


def convert(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    to: str | None = None,
    date: Date | None = None,
    strict: bool = False,
    raw: bool = False,
) -> tuple[Trace, Path]:
    """Read any supported trace and write its normalised events; returns (trace, path).

    ``source`` may be the files of one rolled-over PML capture (``Log.PML``,
    ``Log-1.PML``…): they are written as one trace, rows numbered on across them.
    """
    from traceaudit.formats import load_trace

    output_format(out, to)  # a wrong --to or extension is reported before reading
    if isinstance(source, (str, os.PathLike)):
        trace = load_trace(Path(source), date=date, strict=strict)
    else:
        from traceaudit.formats.pml.reader import read_pml
        from traceaudit.formats.pml.rollover import one_capture

        parts = one_capture(source)
        if len(parts) == 1:
            trace = load_trace(parts[0], date=date, strict=strict)
        else:
            trace = read_pml(parts, strict=strict)
    return trace, write_events(trace, out, format=to, raw=raw)
