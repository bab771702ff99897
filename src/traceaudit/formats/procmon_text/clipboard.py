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
from collections.abc import Sequence
from datetime import date as Date
from pathlib import Path

import polars as pl

from traceaudit.formats.input import TraceInput
from traceaudit.formats.procmon_text.decode import decode, decode_head, encoding_note
from traceaudit.formats.procmon_text.rows import RawRows, build_trace
from traceaudit.schema import Trace

__all__ = ["FORMAT_NAME", "COLUMNS", "sniff", "read", "read_text"]

FORMAT_NAME = "procmon-clipboard"

COLUMNS = ("tod", "process", "pid", "operation", "path", "result", "detail")
"""The seven fields of a copied row, as raw field names."""

_MARKER = r"(?:[AaPp]\.?\s?[Mm]\.?|上午|下午|午前|午後|오전|오후)"
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
    lines = pl.DataFrame({"text": re.split(r"\r\n|\r|\n", text.lstrip("\ufeff"))})
    stripped = pl.col("text").str.strip_chars()
    noise = (stripped == "") | stripped.str.starts_with("```") | stripped.str.starts_with("~~~")
    lines = lines.with_row_index("line", offset=1).filter(~noise)
    rows = (
        lines.with_columns((~pl.col("text").str.starts_with(";")).cum_sum().alias("row"))
        .group_by("row", maintain_order=True)
        .agg(pl.col("line").first(), pl.col("text").str.join("\r"))
    )
    fields = rows.select(
        pl.col("text").str.strip_chars_end(" \r\n").str.splitn("\t", len(COLUMNS)).alias("f")
    ).unnest("f")
    fields.columns = list(COLUMNS)
    frame = fields.with_columns(
        pl.col("detail").str.strip_chars_end(),
        pl.col("pid").str.strip_chars(),
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

    raw = RawRows(
        frame=frame,
        name=name,
        source=source,
        format=FORMAT_NAME,
        shape="the 7 tab-separated fields of a copied Procmon row",
        line_of=line_of,
        field_problem=problem if problem.is_not_null().any() else None,
        warnings=list(warnings),
    )
    return build_trace(raw, date=date, strict=strict)
