"""Process Monitor's CSV export (File > Save > CSV), and Excel re-saves of it.

Columns are found by header name, in any order and any subset of Procmon's 27, because
the export follows the user's column setup. Required: ``Time of Day`` or ``Date & Time``,
``Process Name``, ``PID``, ``Operation``, ``Path``, ``Result``; ``Detail`` is optional.

The dialect is sniffed from the header line: comma, tab (Excel "Text") or semicolon
(Excel in comma-decimal locales); quoted (Procmon) or quoted only where needed (Excel).
Embedded line breaks, including Procmon's bare-CR environment blocks, stay inside their
quoted fields.

Reading is one ``polars.read_csv`` call with every column as String, then vectorised
normalisation (:mod:`._events`). UTF-8 files are handed to polars by path (memory-mapped,
multi-threaded); other encodings are decoded in Python (:mod:`._decode`) and re-encoded
first, which is slower but rare. To count fields, polars reads with the header's width
and refuses longer rows; only when some row is longer is the body read again with one
column more than the header, where a value means the row had too many fields. In a fully
quoted export a missing last value means too few.
"""

from __future__ import annotations

import csv
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path
from typing import Any

import polars as pl

from traceaudit.errors import MissingColumnsError, TraceFormatError, UnknownFormatError
from traceaudit.formats._decode import decode, decode_head, encoding_note, head_is_utf8
from traceaudit.formats._events import RawRows, build_trace
from traceaudit.formats._input import TraceInput
from traceaudit.schema import Trace

__all__ = [
    "FORMAT_NAME",
    "PROCMON_COLUMNS",
    "REQUIRED_COLUMNS",
    "Header",
    "find_header",
    "sniff",
    "read",
]

FORMAT_NAME = "procmon-csv"

PROCMON_COLUMNS = (
    "Time of Day",
    "Process Name",
    "PID",
    "Operation",
    "Path",
    "Result",
    "Detail",
    "Date & Time",
    "Relative Time",
    "Duration",
    "Completion Time",
    "Event Class",
    "Sequence",
    "Image Path",
    "Company",
    "Description",
    "Version",
    "User",
    "Authentication ID",
    "Session",
    "Command Line",
    "TID",
    "Virtualized",
    "Integrity",
    "Category",
    "Parent PID",
    "Architecture",
)
"""Every column Procmon can export (``procmon_parser/consts.py``)."""

REQUIRED_COLUMNS = ("Process Name", "PID", "Operation", "Path", "Result")
"""Needed besides a time column (``Time of Day`` or ``Date & Time``)."""

# Procmon column → raw field name understood by _events.build_trace.
_FIELDS = {
    "Time of Day": "tod",
    "Date & Time": "dt",
    "Process Name": "process",
    "PID": "pid",
    "Operation": "operation",
    "Path": "path",
    "Result": "result",
    "Detail": "detail",
    "TID": "tid",
    "Duration": "duration",
    "Event Class": "event_class",
}
_CANONICAL = {" ".join(name.split()).casefold(): name for name in PROCMON_COLUMNS}
_DELIMITERS = (",", "\t", ";")
_LINE_BREAK = r"\r\n|\r|\n"
_MISSING_COLUMNS_OPTION = "missing_columns" in inspect.signature(pl.read_csv).parameters


@dataclass(frozen=True)
class Header:
    """The header line of a CSV: where it is, its names, its delimiter and quoting."""

    line: int
    names: tuple[str, ...]
    delimiter: str
    quoted: bool

    def canonical(self) -> dict[str, int]:
        """Procmon column name → index, for the columns this header has (first wins)."""
        found: dict[str, int] = {}
        for index, name in enumerate(self.names):
            canonical = _CANONICAL.get(" ".join(name.split()).casefold())
            if canonical is not None and canonical not in found:
                found[canonical] = index
        return found


def find_header(text: str) -> Header | None:
    """The first non-blank line of ``text`` parsed as a CSV header, or None.

    ``quoted`` is set when the header and the first data line are both quoted, as in
    Procmon's own export, where every field is quoted (so an unquoted empty field can only
    be a missing one).
    """
    lines = [(n, line) for n, line in enumerate(text.lstrip("\ufeff").splitlines()) if line.strip()]
    if not lines:
        return None
    number, line = lines[0]
    delimiter = max(_DELIMITERS, key=line.count)
    if line.count(delimiter) == 0:
        return None
    names = next(csv.reader([line], delimiter=delimiter), [])
    quoted = line.startswith('"') and (len(lines) < 2 or lines[1][1].startswith('"'))
    return Header(number, tuple(n.strip() for n in names), delimiter, quoted)


def sniff(head: bytes) -> bool:
    """True when the content starts with a header naming at least two Procmon columns."""
    header = find_header(decode_head(head))
    return header is not None and len(header.canonical()) >= 2


def read(trace_input: TraceInput, *, date: Date | None = None, strict: bool = False) -> Trace:
    """Read a Procmon CSV export into a :class:`~traceaudit.schema.Trace`."""
    name = trace_input.name
    header = find_header(decode_head(trace_input.head))
    if header is None or len(header.canonical()) < 2:
        from traceaudit.formats._detect import unknown_format_message

        raise UnknownFormatError(unknown_format_message(name, trace_input.head))
    columns = header.canonical()
    _check_columns(name, header, columns)
    wanted = {column: index for column, index in columns.items() if column in _FIELDS}
    table = _Table(trace_input, header, wanted)
    frame, field_problem = table.read()
    raw = RawRows(
        frame=frame,
        name=name,
        source=trace_input.source,
        format=FORMAT_NAME,
        shape=f"the header's {len(header.names)} columns",
        line_of=table.line_numbers,
        field_problem=field_problem,
        warnings=table.warnings,
    )
    return build_trace(raw, date=date, strict=strict)


def _check_columns(name: str, header: Header, columns: dict[str, int]) -> None:
    missing = []
    if "Time of Day" not in columns and "Date & Time" not in columns:
        missing.append("Time of Day")
    missing.extend(column for column in REQUIRED_COLUMNS if column not in columns)
    if missing:
        found = ", ".join(f"'{n}'" for n in header.names if n)
        raise MissingColumnsError(
            f"{name}: missing columns {', '.join(repr(m) for m in missing)} (found: {found}). "
            "Re-export from Process Monitor with these columns."
        )


class _Table:
    """One polars read of the CSV body, plus what is needed to locate rows afterwards."""

    def __init__(self, trace_input: TraceInput, header: Header, wanted: dict[str, int]):
        self.input = trace_input
        self.header = header
        self.wanted = wanted
        self.width = len(header.names)
        self.warnings: list[str] = list(trace_input.warnings)
        self.source: Path | bytes | None = None
        self.kept: pl.Series | None = None  # polars row index of each data row, if blanks

    def _options(self, projection: Sequence[int] | None, *, ragged: bool) -> dict[str, Any]:
        """polars options; ``ragged`` reads one column more than the header (its values
        mark rows with too many fields) and lets rows have any number of fields."""
        width = self.width + 1 if ragged else self.width
        options: dict[str, Any] = {
            "has_header": False,
            "skip_rows": self.header.line + 1,
            "separator": self.header.delimiter,
            "quote_char": '"',
            "schema": {f"c{i}": pl.String for i in range(width)},
            "truncate_ragged_lines": ragged,
            "empty_string_is_null": True,
            "raise_if_empty": False,
        }
        if projection is not None:
            options["columns"] = list(projection)
        if _MISSING_COLUMNS_OPTION:
            options["missing_columns"] = "insert"
        return options

    def _columns(self, projection: Sequence[int]) -> pl.DataFrame:
        """The ``projection`` columns of the body, plus ``c{width}`` if some row has more
        fields than the header (polars errors are raised as they are).

        The first read has the header's width and refuses longer rows: a well-formed
        export (the common case) then costs no extra column. If it fails for any reason,
        the ragged read decides, as if it had been the only one.
        """
        assert self.source is not None
        try:
            return pl.read_csv(self.source, **self._options(projection, ragged=False))
        except pl.exceptions.PolarsError:
            pass
        ragged = sorted({*projection, self.width})
        return pl.read_csv(self.source, **self._options(ragged, ragged=True))

    def _polars(self, projection: Sequence[int] | None) -> pl.DataFrame:
        assert self.source is not None
        try:
            return pl.read_csv(self.source, **self._options(projection, ragged=True))
        except pl.exceptions.PolarsError as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> TraceFormatError:
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        return TraceFormatError(
            f"{self.input.name}: cannot read the CSV ({reason}). Export it again from "
            "Process Monitor with File > Save > CSV."
        )

    def read(self) -> tuple[pl.DataFrame, pl.Series | None]:
        """The raw string columns (named for _events) and each row's field-count problem."""
        last, extra = self.width - 1, self.width
        frame = self._read_body(sorted({*self.wanted.values(), last}))
        names = {f"c{index}": _FIELDS[column] for column, index in self.wanted.items()}
        names.setdefault(f"c{last}", "__last")
        if f"c{extra}" in frame.columns:
            names[f"c{extra}"] = "__extra"
        frame = frame.rename(names)
        blank = frame.select(pl.all_horizontal(pl.all().is_null())).to_series()
        if blank.any():  # empty lines between rows: not rows at all
            self.kept = (~blank).arg_true()
            frame = frame.filter(~blank)
        last_name = names[f"c{last}"]
        more = (
            frame["__extra"].is_not_null()
            if "__extra" in frame.columns
            else pl.repeat(False, frame.height, eager=True)
        )
        fewer = frame[last_name].is_null()
        if not self.header.quoted:
            # Excel leaves empty fields unquoted, so a null last field is usually just an
            # empty Detail; the row is short only if a field that is never empty is null.
            required = [
                f for f in ("tod", "dt", "process", "pid", "operation") if f in frame.columns
            ]
            fewer = fewer & frame.select(pl.any_horizontal(pl.col(required).is_null())).to_series()
        problem = pl.select(
            pl.when(pl.lit(more)).then(pl.lit("more")).when(pl.lit(fewer)).then(pl.lit("fewer"))
        ).to_series()
        keep = [c for c in frame.columns if not c.startswith("__")]
        # One chunk per column: polars re-aligns mismatched chunks on every later select.
        frame = frame.select(keep).rechunk()
        return frame, (problem if problem.is_not_null().any() else None)

    def _read_body(self, projection: Sequence[int]) -> pl.DataFrame:
        trace_input = self.input
        if head_is_utf8(trace_input.head):
            # The common case: UTF-8 as Procmon writes it; polars validates it as it reads.
            path = trace_input.path
            self.source = path if path is not None else trace_input.read_bytes()
            try:
                return self._columns(projection)
            except pl.exceptions.ComputeError as exc:
                if "utf-8" not in str(exc).lower() and "utf8" not in str(exc).lower():
                    raise self._error(exc) from None
            except pl.exceptions.PolarsError as exc:
                raise self._error(exc) from None
        decoded = decode(trace_input.read_bytes())
        note = encoding_note(trace_input.name, decoded)
        if note:
            self.warnings.append(note)
        self.source = decoded.text.encode("utf-8")
        try:
            return self._columns(projection)
        except pl.exceptions.PolarsError as exc:
            raise self._error(exc) from None

    def line_numbers(self, rows: Sequence[int]) -> list[int]:
        """Line numbers (1-based, as an editor counts them) of 1-based data rows.

        Re-reads every column to count line breaks inside quoted fields; only used when
        rows are damaged.
        """
        frame = self._polars(None)
        breaks = frame.select(
            pl.sum_horizontal(pl.all().str.count_matches(_LINE_BREAK).fill_null(0)).alias("n")
        )["n"]
        before = breaks.cum_sum().shift(1, fill_value=0)
        positions = [row - 1 for row in rows]
        if self.kept is not None:
            positions = self.kept.gather(positions).to_list()
        first_data_line = self.header.line + 2
        return [first_data_line + p + int(before[p]) for p in positions]
