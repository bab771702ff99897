"""Rows copied from Process Monitor (Ctrl+C) and pasted into an issue, chat or file.

Procmon copies the selected rows without a header, one line per event, fields separated
by tabs, in the default column order: Time of Day, Process Name, PID, Operation, Path,
Result, Detail. For example (from astral-sh/uv#1491)::

    11:27:28.2285886 AM<TAB>uv.exe<TAB>11604<TAB>SetRenameInformationFile<TAB>C:\\…<TAB>ACCESS DENIED<TAB>ReplaceIfExists: True, FileName: C:\\…

Pasted text picks up noise that is ignored: blank lines, Markdown code fences (```` ``` ````)
and trailing spaces. Detail may be empty (``CloseFile``), and editors often drop its
trailing tab, so six fields are accepted; fewer are a damaged row. Detail keeps any
further tabs (environment blocks), and a line starting with ``;`` continues the previous
row's environment block. There is no date: times get ``date=`` or the placeholder day.

Each line stands on its own (quotes mean nothing here), so a damaged line never takes
its neighbours with it: a row with too few fields, NUL bytes, or an unreadable time or
PID is skipped, counted and named by its line (strict mode stops at the first one).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import date as Date
from pathlib import Path

import polars as pl

from traceaudit.formats.batches import BATCH_ROWS, TraceBatches
from traceaudit.formats.input import TraceInput
from traceaudit.formats.procmon_text.decode import decode, decode_head, encoding_note
from traceaudit.formats.procmon_text.rows import BatchBuilder, RawRows, build_trace
from traceaudit.schema import Trace

__all__ = ["FORMAT_NAME", "COLUMNS", "sniff", "read", "read_text", "batches"]

FORMAT_NAME = "procmon-clipboard"

COLUMNS = ("tod", "process", "pid", "operation", "path", "result", "detail")
"""The seven fields of a copied row, as raw field names."""

_MARKER = r"(?:[AaPp]\.?\s?[Mm]\.?|上午|下午|午前|午後|오전|오후)"
_SHAPE = "the 7 tab-separated fields of a copied Procmon row"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ROW_START = re.compile(
    r"^\s*(?:" + _MARKER + r"\s*)?\d{1,2}[:.]\d{2}(?:[:.]\d{2})?(?:[.,]\d+)?"
    r"(?:\s*" + _MARKER + r")?\t[^\t]*\t\s*\d+\s*\t"
)


def _is_noise(line: str) -> bool:
    """Blank lines and Markdown code fences around pasted rows."""
    stripped = line.strip()
    return not stripped or stripped.startswith(("```", "~~~"))


def sniff(head: bytes) -> bool:
    """True when the first meaningful line looks like a copied Procmon row."""
    for line in decode_head(head).lstrip("\ufeff").splitlines():
        if _is_noise(line):
            continue
        return bool(_ROW_START.match(line))
    return False


def read(trace_input: TraceInput, *, date: Date | None = None, strict: bool = False) -> Trace:
    """Read a file of pasted Procmon rows."""
    decoded = decode(trace_input.read_bytes())
    warnings = list(trace_input.warnings)
    note = encoding_note(trace_input.name, decoded)
    if note:
        warnings.append(note)
    return read_text(
        decoded.text,
        name=trace_input.name,
        source=trace_input.source,
        date=date,
        strict=strict,
        warnings=warnings,
    )


def read_text(
    text: str,
    *,
    name: str = "<pasted>",
    source: Path | None = None,
    date: Date | None = None,
    strict: bool = False,
    warnings: Sequence[str] = (),
) -> Trace:
    """Read pasted Procmon rows from a string."""
    frame, problem, line_of = _raw_rows(text.lstrip("\ufeff"), 0)
    raw = RawRows(
        frame=frame,
        name=name,
        source=source,
        format=FORMAT_NAME,
        shape=_SHAPE,
        line_of=line_of,
        field_problem=problem,
        warnings=list(warnings),
    )
    return build_trace(raw, date=date, strict=strict)


def _raw_rows(
    text: str, lines_before: int, *, detail: bool = True
) -> tuple[pl.DataFrame, pl.Series | None, Callable[[Sequence[int]], list[int]]]:
    """The raw fields of the rows in ``text`` (whose first line is line
    ``lines_before + 1``), each row's problem, and the line of each 1-based row.

    ``detail=False`` leaves the Detail out of the frame: a batch read that wants neither
    the text nor the columns drawn from it should not carry the longest field along.
    """
    lines = pl.DataFrame({"text": re.split(r"\r\n|\r|\n", text)})
    stripped = pl.col("text").str.strip_chars()
    noise = (stripped == "") | stripped.str.starts_with("```") | stripped.str.starts_with("~~~")
    lines = lines.with_row_index("line", offset=lines_before + 1).filter(~noise)
    rows = (
        lines.with_columns((~pl.col("text").str.starts_with(";")).cum_sum().alias("row"))
        .group_by("row", maintain_order=True)
        .agg(pl.col("line").first(), pl.col("text").str.join("\r"))
    )
    fields = rows.select(
        pl.col("text").str.strip_chars_end(" \r\n").str.splitn("\t", len(COLUMNS)).alias("f")
    ).unnest("f")
    fields.columns = list(COLUMNS)
    frame = (
        fields.with_columns(pl.col("detail").str.strip_chars_end(), pl.col("pid").str.strip_chars())
        if detail
        else fields.drop("detail").with_columns(pl.col("pid").str.strip_chars())
    )
    # NUL bytes are binary junk (a damaged file), never part of a copied row.
    flags = pl.DataFrame(
        {"nul": rows["text"].str.contains("\x00", literal=True), "short": frame["result"].is_null()}
    )
    problem = flags.select(
        pl.when(pl.col("nul"))
        .then(pl.lit("nul"))
        .when(pl.col("short"))
        .then(pl.lit("fewer"))
        .alias("problem")
    )["problem"]
    line_numbers = rows["line"]

    def line_of(numbers: Sequence[int]) -> list[int]:
        return [int(line_numbers[n - 1]) for n in numbers]

    return frame, (problem if problem.is_not_null().any() else None), line_of


def batches(
    trace_input: TraceInput,
    *,
    date: Date | None = None,
    strict: bool = False,
    columns: Sequence[str] | None = None,
    keep: pl.Expr | None = None,
    batch_rows: int = BATCH_ROWS,
) -> TraceBatches:
    """Read pasted Procmon rows in batches (:mod:`traceaudit.formats.batches`).

    The content is decoded whole (as :func:`read` does: the encoding is guessed from all
    of it), then read about ``batch_rows`` rows at a time: a batch ends before a line
    that starts a row (not noise, not a ``;`` line continuing an environment block),
    so a row never spans two. Each batch goes through :class:`~.rows.BatchBuilder`, which
    numbers rows on, carries the midnight rollover over and counts damaged rows, with
    their lines, as :func:`read` does. With ``columns=None, keep=None`` the frames put
    together equal :func:`read`'s events sorted by row, and the warnings and skipped rows
    equal its own once the frames are exhausted.
    """
    builder = BatchBuilder(
        trace_input.name,
        date=date,
        strict=strict,
        columns=columns,
        keep=keep,
        has_time_of_day=True,
        has_date=False,
    )
    out = TraceBatches(
        frames=iter(()),
        format=FORMAT_NAME,
        name=trace_input.name,
        source=trace_input.source,
        warnings=list(trace_input.warnings),
    )
    out.frames = _batch_frames(trace_input, builder, out, max(batch_rows, 1))
    return out


def _batch_frames(
    trace_input: TraceInput, builder: BatchBuilder, out: TraceBatches, batch_rows: int
) -> Iterator[pl.DataFrame]:
    decoded = decode(trace_input.read_bytes())
    note = encoding_note(trace_input.name, decoded)
    text = decoded.text.lstrip("\ufeff")
    del decoded
    lines_before = 0
    for part in _parts(text, batch_rows):
        frame, problem, line_of = _raw_rows(part, lines_before, detail=builder.wants_detail)
        lines_before += len(_LINE_BREAK.findall(part))
        raw = RawRows(
            frame=frame,
            name=trace_input.name,
            source=trace_input.source,
            format=FORMAT_NAME,
            shape=_SHAPE,
            line_of=line_of,
            field_problem=problem,
        )
        frames = builder.add(raw)
        out.skipped.clear()
        out.skipped.update(builder.skipped)
        out.skipped_rows[:] = builder.skipped_rows
        yield from frames
    yield from builder.finish()
    out.warnings.extend([*([note] if note else []), *builder.warnings()])
    out.skipped.clear()
    out.skipped.update(builder.skipped)
    out.skipped_rows[:] = builder.skipped_rows
    out.time_precision_lost = builder.time_precision_lost


def _parts(text: str, batch_rows: int) -> Iterator[str]:
    """``text`` in parts of about ``batch_rows`` lines, each ending right before a line
    that starts a row (or at the end)."""
    sample = text[: 64 * 1024]
    per_line = len(sample) / max(len(_LINE_BREAK.findall(sample)), 1)
    span = max(int(batch_rows * per_line), 1)
    start = 0
    while start < len(text):
        end = _row_start_after(text, start + span)
        yield text[start:end]
        start = end


def _row_start_after(text: str, position: int) -> int:
    """The start of the first line after ``position`` that starts a row, or the end."""
    while position < len(text):
        found = _LINE_BREAK.search(text, position)
        if found is None:
            break
        start = found.end()
        following = _LINE_BREAK.search(text, start)
        line = text[start : following.start() if following else len(text)]
        if not _is_noise(line) and not line.startswith(";"):
            return start
        position = start
    return len(text)
