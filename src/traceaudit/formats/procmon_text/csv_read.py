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

A damaged row never sinks the file. When polars cannot read the body whole (a quote
missing, replaced or stray, a line cut inside a quoted field), when some row has the
wrong number of fields (a stray quote may have swallowed the line breaks after it), or
when decoded text holds NUL bytes, the body is read again line by line (``_resync``):
lines whose quotes do not pair up, lines polars still refuses and lines with NUL bytes
are set aside as damaged rows (keeping their row numbers, named by their line), and the
rest is read by polars in one call. Quoted fields with line breaks still read whole.
Sound files never take that path, so it costs them nothing.
"""

from __future__ import annotations

import codecs
import csv
import inspect
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl

from traceaudit.errors import MissingColumnsError, TraceFormatError
from traceaudit.formats.batches import BATCH_ROWS, TraceBatches
from traceaudit.formats.binary import mapped_content
from traceaudit.formats.input import NotThisFormat, TraceInput
from traceaudit.formats.procmon_text.columns import PROCMON_COLUMNS
from traceaudit.formats.procmon_text.decode import (
    Decoded,
    decode,
    decode_head,
    encoding_note,
    head_is_utf8,
)
from traceaudit.formats.procmon_text.quoted import available as quoted_available
from traceaudit.formats.procmon_text.quoted import read_quoted
from traceaudit.formats.procmon_text.rows import BatchBuilder, RawRows, build_trace
from traceaudit.schema import Trace

__all__ = [
    "FORMAT_NAME",
    "PROCMON_COLUMNS",
    "REQUIRED_COLUMNS",
    "Header",
    "find_header",
    "sniff",
    "read",
    "batches",
]

FORMAT_NAME = "procmon-csv"


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
_EXTRA_COLUMNS_OPTION = "extra_columns" in inspect.signature(pl.read_csv).parameters
_NUL = "\x00"
_QUOTED = re.compile(r'"(?:[^"]|"")*"')
_MAX_SPAN = 10_000  # lines a quoted field with line breaks may span in the resync
# A row's problem from its fields: set aside by the resync, too many, too few.
_PROBLEM = (
    pl.when(pl.col("damage").is_not_null())
    .then(pl.col("damage"))
    .when(pl.col("more"))
    .then(pl.lit("more"))
    .when(pl.col("fewer"))
    .then(pl.lit("fewer"))
)


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
    # Python 3.10's csv refuses NUL bytes (3.11 reads them); a header never holds one.
    names = next(csv.reader([line.replace("\x00", "")], delimiter=delimiter), [])
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
        raise NotThisFormat(
            f"{name}: not a Process Monitor CSV export (no header row with its column names)."
        )
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
        self.skip = header.line + 1  # lines before the body in self.source
        self.text: str | None = None  # the decoded content, once decoded
        self.kept: pl.Series | None = None  # polars row index of each data row, if blanks
        self.resynced = False
        self.row_lines: pl.Series | None = None  # line of each data row, after a resync

    def _options(self, projection: Sequence[int] | None, *, ragged: bool) -> dict[str, Any]:
        """polars options; ``ragged`` reads one column more than the header (its values
        mark rows with too many fields) and lets rows have any number of fields."""
        width = self.width + 1 if ragged else self.width
        options: dict[str, Any] = {
            "has_header": False,
            "skip_rows": self.skip,
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
        if ragged and _EXTRA_COLUMNS_OPTION:
            # Without it polars refuses a first row longer than the schema.
            options["extra_columns"] = "ignore"
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
        except pl.exceptions.PolarsError:
            raise self._error() from None

    def _error(self) -> TraceFormatError:
        return TraceFormatError(
            f"{self.input.name}: cannot read the CSV: its quotes are damaged in a way that "
            "cannot be set aside row by row. Export it again from Process Monitor with "
            "File > Save > CSV."
        )

    def read(self) -> tuple[pl.DataFrame, pl.Series | None]:
        """The raw string columns (named for _events) and each row's problem."""
        projection = sorted({*self.wanted.values(), self.width - 1})
        frame, problem = self._rows(self._read_body(projection))
        if problem is not None and not self.resynced:
            # A row with the wrong number of fields may be a stray quote that swallowed
            # the line breaks of the rows after it (quoted-where-needed exports): read
            # again line by line, which gives the same rows when it was not.
            frame, problem = self._rows(self._resync(projection))
        return frame, problem

    def _rows(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series | None]:
        """Name the columns for _events, drop blank lines, and find each row's problem:
        set aside by the resync (``__damage``), or too many or too few fields."""
        last, extra = self.width - 1, self.width
        names = {f"c{index}": _FIELDS[column] for column, index in self.wanted.items()}
        names.setdefault(f"c{last}", "__last")
        if f"c{extra}" in frame.columns:
            names[f"c{extra}"] = "__extra"
        frame = frame.rename(names)
        fields = [c for c in frame.columns if c not in ("__damage", "__line")]
        self.kept = None
        # A column without nulls (its count is known without a pass) rules out blank rows.
        if all(frame[c].null_count() for c in fields):
            blank = frame.select(pl.all_horizontal(pl.col(fields).is_null())).to_series()
            if "__damage" in frame.columns:
                blank = blank & frame["__damage"].is_null()
        else:
            blank = None
        if blank is not None and blank.any():  # empty lines between rows: not rows at all
            self.kept = (~blank).arg_true()
            frame = frame.filter(~blank)
        if "__line" in frame.columns:
            self.row_lines = frame["__line"]
        last_name = names[f"c{last}"]
        fewer = frame[last_name].is_null()
        if not self.header.quoted:
            # Excel leaves empty fields unquoted, so a null last field is usually just an
            # empty Detail; the row is short only if a field that is never empty is null.
            required = [
                f for f in ("tod", "dt", "process", "pid", "operation") if f in frame.columns
            ]
            fewer = fewer & frame.select(pl.any_horizontal(pl.col(required).is_null())).to_series()
        keep = [c for c in frame.columns if not c.startswith("__")]
        problem: pl.Series | None = None
        if "__extra" in frame.columns or "__damage" in frame.columns or fewer.any():
            more = (
                frame["__extra"].is_not_null()
                if "__extra" in frame.columns
                else pl.repeat(False, frame.height, eager=True)
            )
            damage = (
                frame["__damage"]
                if "__damage" in frame.columns
                else pl.repeat(None, frame.height, dtype=pl.String, eager=True)
            )
            problem = (
                pl.DataFrame({"damage": damage, "more": more, "fewer": fewer})
                .select(_PROBLEM)
                .to_series()
            )
            if not problem.is_not_null().any():
                problem = None
        # One chunk per column: polars re-aligns mismatched chunks on every later select.
        frame = frame.select(keep).rechunk()
        return frame, problem

    def _read_body(self, projection: Sequence[int]) -> pl.DataFrame:
        """The body in one polars read; the resync when that fails or finds NUL bytes."""
        trace_input = self.input
        if head_is_utf8(trace_input.head):
            # The common case: UTF-8 as Procmon writes it; polars validates it as it reads.
            path = trace_input.path
            self.source = path if path is not None else trace_input.read_bytes()
            quoted = self._quoted(projection)
            if quoted is not None:
                return quoted
            try:
                frame = self._columns(projection)
            except pl.exceptions.PolarsError as exc:
                if "utf-8" not in str(exc).lower() and "utf8" not in str(exc).lower():
                    return self._resync(projection)
            else:
                # NUL bytes are not looked for here: a scan of every sound file would
                # cost more than the read's noise. They reach the resync through the
                # damage they do to quotes and fields, or through the decoded path.
                return frame
        text = self._text()
        self.source = text.encode("utf-8")
        try:
            frame = self._columns(projection)
        except pl.exceptions.PolarsError:
            return self._resync(projection)
        return self._resync(projection) if _NUL in text else frame

    def _quoted(self, projection: Sequence[int]) -> pl.DataFrame | None:
        """The body read by the compiled reader of Procmon's own shape (every field
        quoted, one line per row: :mod:`.quoted`), as :meth:`_columns` would read it; None
        when the body is in another shape (or the compiled loops are not in use)."""
        if not self.header.quoted or self.header.line != 0 or not quoted_available():
            return None
        assert self.source is not None
        if isinstance(self.source, bytes):
            return self._quoted_columns(np.frombuffer(self.source, dtype=np.uint8), projection)
        with mapped_content(self.input) as (content, _release):
            data = np.frombuffer(content, dtype=np.uint8)
            try:
                return self._quoted_columns(data, projection)
            finally:
                del data  # no view may outlive the mapping

    def _holds_header(self) -> bool:
        """Whether the source starts with the BOM and header line (a batch's range past
        the first holds rows only)."""
        return True

    def _quoted_columns(self, data: np.ndarray, projection: Sequence[int]) -> pl.DataFrame | None:
        """:meth:`_quoted` on ``data``: the source from its start."""
        start = 0
        if self._holds_header():
            start = len(codecs.BOM_UTF8) if bytes(data[:3]) == codecs.BOM_UTF8 else 0
            ends = np.flatnonzero(data[start : start + 65536] == ord("\n"))
            if not len(ends) or b"\r" in bytes(data[start : start + int(ends[0]) - 1]):
                return None  # a header line without LF, or with a lone CR: not Procmon's
            start += int(ends[0]) + 1
        columns = read_quoted(data, start, self.width, self.header.delimiter, projection)
        if columns is None:
            return None
        return pl.DataFrame({f"c{index}": columns[index] for index in projection})

    def _text(self) -> str:
        """The whole content decoded (once), noting a guessed or damaged encoding."""
        if self.text is None:
            decoded = decode(self.input.read_bytes())
            note = encoding_note(self.input.name, decoded)
            if note:
                self.warnings.append(note)
            self.text = decoded.text.lstrip("\ufeff")
        return self.text

    def _resync(self, projection: Sequence[int]) -> pl.DataFrame:
        """Read the body again with its damaged lines set aside.

        The body is split at line feeds (bare CRs stay inside their lines, as polars
        reads them). A line with an odd number of quotes either opens a record that
        the next such line closes (a quoted field with line breaks), or is damaged; the
        two are told apart by whether the lines between them parse as one record and
        none of them looks like a row of its own. Damaged lines and lines with NUL bytes
        become placeholder rows (``__damage``) that keep their row numbers; the other
        records are read by polars in one call, and any record it still refuses is found
        (:meth:`_read_records`). Each row carries its line number (``__line``).
        """
        self.resynced = True
        body = self._body_lines()
        lines = body.text
        starts, damage = self._record_starts(body)
        record = np.cumsum(starts) - 1
        first_line = np.flatnonzero(starts)
        codes = np.full(len(first_line), None, dtype=object)
        for line, code in damage.items():
            codes[record[line]] = code
        codes[np.unique(record[body.nul])] = "nul"
        frame = self._read_records(projection, lines, record, codes)
        kept = np.flatnonzero(_no_code(codes))
        bad = np.flatnonzero(~_no_code(codes))
        placeholders = pl.DataFrame(
            {"__rec": bad, "__damage": pl.Series(codes[bad].tolist(), dtype=pl.String)},
            schema={"__rec": pl.Int64, "__damage": pl.String},
        )
        frame = pl.concat(
            [frame.with_columns(__rec=pl.Series(kept, dtype=pl.Int64)), placeholders],
            how="diagonal_relaxed",
        ).sort("__rec")
        return frame.with_columns(
            __line=pl.Series(body.number[first_line], dtype=pl.Int64).gather(frame["__rec"])
        ).drop("__rec")

    def _body_lines(self) -> _Lines:
        """The body's lines (for the resync and line numbers)."""
        return _Lines.of(self._text(), self.header.line + 1, self.header.line + 2)

    def _first_data_line(self) -> int:
        """The line number of the body's first line."""
        return self.header.line + 2

    def _record_starts(self, body: _Lines) -> tuple[np.ndarray, dict[int, str]]:
        """Which body lines start a record, and the lines set aside (see :func:`_records`)."""
        starts, damage, _ = _records(body.text, body.odd, self.header.delimiter, self.width)
        return starts, damage

    def _read_records(
        self, projection: Sequence[int], lines: pl.Series, record: np.ndarray, codes: np.ndarray
    ) -> pl.DataFrame:
        """polars' read of the records without a code, one row each.

        Records polars refuses although their quotes pair up (text after a closing
        quote…) get ``"misquoted"`` in ``codes``: first the one-line records whose
        quoting is not strictly well formed are tried one by one, then, if the rest still
        fails, the records are bisected.
        """
        self.skip = 0
        frame = self._try_records(projection, lines, record, codes)
        for find in (self._misquoted_lines, self._misquoted_records):
            if frame is not None:
                return frame
            for index in find(projection, lines, record, codes):
                codes[index] = "misquoted"
            frame = self._try_records(projection, lines, record, codes)
        if frame is None:
            raise self._error()
        return frame

    def _try_records(
        self, projection: Sequence[int], lines: pl.Series, record: np.ndarray, codes: np.ndarray
    ) -> pl.DataFrame | None:
        """The records without a code read in one call, or None if polars refuses them
        or reads another number of rows."""
        keep = _no_code(codes)
        expected = int(keep.sum())
        if not expected:
            return pl.DataFrame(schema={f"c{i}": pl.String for i in projection})
        self.source = _joined(lines.filter(pl.Series(keep[record])))
        try:
            frame = self._columns(projection)
        except pl.exceptions.PolarsError:
            return None
        return frame if frame.height == expected else None

    def _misquoted_lines(
        self, projection: Sequence[int], lines: pl.Series, record: np.ndarray, codes: np.ndarray
    ) -> list[int]:
        """Records of one line, not yet coded, with quotes that are not strictly well
        placed and that polars refuses on their own."""
        single = np.bincount(record, minlength=len(codes))[record] == 1
        candidate = pl.Series(_no_code(codes)[record] & single)
        sep = re.escape(self.header.delimiter)
        field = f'(?:"(?:[^"]|"")*"|[^"{sep}]*)'
        suspect = (
            pl.DataFrame({"line": lines, "at": np.arange(len(lines))})
            .filter(candidate)
            .filter(
                pl.col("line").str.contains('"', literal=True)
                & ~pl.col("line").str.contains(f"^{field}(?:{sep}{field})*\r?$")
            )
        )
        texts = suspect["line"].to_list()
        found = [i for i, text in enumerate(texts) if self._unreadable([text], projection)]
        return [int(record[suspect["at"][i]]) for i in found]

    def _misquoted_records(
        self, projection: Sequence[int], lines: pl.Series, record: np.ndarray, codes: np.ndarray
    ) -> list[int]:
        """Records polars cannot read, found by bisecting all those not yet coded."""
        texts = (
            pl.DataFrame({"record": record, "line": lines})
            .filter(pl.Series(_no_code(codes)[record]))
            .group_by("record", maintain_order=True)
            .agg(pl.col("line").str.join("\n"))
        )
        ids = texts["record"].to_numpy()
        return [int(ids[i]) for i in self._unreadable(texts["line"].to_list(), projection)]

    def _unreadable(self, records: list[str], projection: Sequence[int]) -> list[int]:
        """Indices of the records polars cannot read as one row each (bisection)."""
        options = self._options(sorted({*projection, self.width}), ragged=True)
        found: list[int] = []
        pending = [(0, len(records))]
        while pending:
            low, high = pending.pop()
            data = ("\n".join(records[low:high]) + "\n").encode("utf-8")
            try:
                readable = pl.read_csv(data, **options).height == high - low
            except pl.exceptions.PolarsError:
                readable = False
            if readable:
                continue
            if high - low == 1:
                found.append(low)
            else:
                middle = (low + high) // 2
                pending.extend([(middle, high), (low, middle)])
        return sorted(found)

    def line_numbers(self, rows: Sequence[int]) -> list[int]:
        """Line numbers (1-based, as an editor counts them) of 1-based data rows.

        After a resync each row knows its line. Otherwise every column is re-read to
        count line breaks inside quoted fields; only used when rows are damaged.
        """
        if self.row_lines is not None:
            return [int(self.row_lines[row - 1]) for row in rows]
        positions = [row - 1 for row in rows]
        if self.kept is not None:
            positions = self.kept.gather(positions).to_list()
        try:
            frame = self._polars(None)
        except TraceFormatError:
            # A quoting error in a column the read skipped: count lines instead, ending
            # a record at each line feed outside quotes.
            body = self._body_lines()
            starts = (np.cumsum(body.odd) - body.odd) % 2 == 0
            numbers = body.number[starts]
            return [int(numbers[min(p, len(numbers) - 1)]) for p in positions]
        breaks = frame.select(
            pl.sum_horizontal(pl.all().str.count_matches(_LINE_BREAK).fill_null(0)).alias("n")
        )["n"]
        before = breaks.cum_sum().shift(1, fill_value=0)
        first_data_line = self._first_data_line()
        return [first_data_line + p + int(before[p]) for p in positions]


def _no_code(codes: np.ndarray) -> np.ndarray:
    """True where an object array of codes holds None."""
    return np.asarray(np.equal(codes, None))  # type: ignore[call-overload]


@dataclass(frozen=True)
class _Lines:
    """The body of a CSV split at line feeds only (bare CRs stay inside their lines, as
    polars reads them), with what the resync needs to know of each line."""

    text: pl.Series  # each line without its line feed
    odd: np.ndarray  # has an odd number of quotes
    nul: np.ndarray  # has NUL bytes
    number: np.ndarray  # 1-based line number as an editor counts them (bare CRs too)

    @classmethod
    def of(cls, text: str, skip: int, first_number: int) -> _Lines:
        """The lines of ``text`` after its first ``skip`` (the header), numbered from
        ``first_number``."""
        lines = pl.Series("line", [text], dtype=pl.String).str.split("\n").explode()
        if text.endswith("\n"):  # nothing follows the last line break
            lines = lines.head(len(lines) - 1)
        lines = lines.slice(skip).rechunk()
        stats = pl.DataFrame({"line": lines}).select(
            odd=pl.col("line").str.count_matches('"', literal=True) % 2 == 1,
            nul=pl.col("line").str.contains(_NUL, literal=True),
            bare_cr=pl.col("line").str.count_matches("\r", literal=True).cast(pl.Int64)
            - pl.col("line").str.ends_with("\r").cast(pl.Int64),
        )
        bare_cr = stats["bare_cr"].to_numpy()
        number = first_number + np.arange(len(lines)) + np.cumsum(bare_cr) - bare_cr
        return cls(lines, stats["odd"].to_numpy(), stats["nul"].to_numpy(), number)


def _joined(lines: pl.Series) -> bytes:
    """Lines joined back into CSV content."""
    if lines.is_empty():
        return b""
    return bytes((lines.str.join("\n").item() + "\n").encode("utf-8"))


def _records(
    lines: pl.Series, odd: np.ndarray, delimiter: str, width: int, *, complete: bool = True
) -> tuple[np.ndarray, dict[int, str], int | None]:
    """Which lines start a record, the lines set aside as ``"quotes"``, and the first
    line left undecided (None when all are decided).

    Lines with an even number of quotes are records of their own. A line with an odd
    number opens a quoted field with line breaks only if the lines up to the next odd
    line (at most :data:`_MAX_SPAN` on) read as exactly one CSV record with strict
    quoting and none between them looks like a row of its own; otherwise it is damaged,
    and the next odd line is judged in its turn. Python only loops over the odd lines
    (and the lines between two of them that might pair up).

    With ``complete=False`` more lines may follow ``lines``: an odd line that might pair
    up with one of them is left undecided, and so is everything after it (their starts
    and damage are not set).
    """
    starts = np.ones(len(lines), dtype=bool)
    damage: dict[int, str] = {}
    odd_at = np.flatnonzero(odd)
    k = 0
    while k < len(odd_at):
        first = int(odd_at[k])
        if k + 1 < len(odd_at) and odd_at[k + 1] - first < _MAX_SPAN:
            last = int(odd_at[k + 1])
            span = lines.slice(first, last - first + 1).to_list()
            if _one_record(span, delimiter) and not any(
                _row_like(line, delimiter, width) for line in span[1:-1]
            ):
                starts[first + 1 : last + 1] = False
                k += 2
                continue
        elif not complete and k + 1 == len(odd_at) and len(lines) - first < _MAX_SPAN:
            return starts, damage, first
        damage[first] = "quotes"
        k += 1
    return starts, damage, None


def _row_like(line: str, delimiter: str, width: int) -> bool:
    """Whether a line reads as a row of the header's width on its own."""
    return line.count('"') % 2 == 0 and _QUOTED.sub("", line).count(delimiter) == width - 1


def _one_record(lines: list[str], delimiter: str) -> bool:
    """Whether ``lines`` read as exactly one CSV record with strict quoting (stops at the
    first error or at a second record)."""
    reader = csv.reader((line + "\n" for line in lines), delimiter=delimiter, strict=True)
    try:
        return next(reader, None) is not None and next(reader, None) is None
    except csv.Error:
        return False


# ------------------------------------------------------------------ reading in batches

_RANGE_BYTES = 64 << 20  # the most a byte range (one batch) may span, whatever batch_rows says
_BLOCK = 8 << 20  # bytes scanned at a time (quotes, line breaks, validation)
_LOOKAHEAD_BLOCK = 1 << 20


def batches(
    trace_input: TraceInput,
    *,
    date: Date | None = None,
    strict: bool = False,
    columns: Sequence[str] | None = None,
    keep: pl.Expr | None = None,
    batch_rows: int = BATCH_ROWS,
) -> TraceBatches:
    """Read a Procmon CSV export in batches (:mod:`traceaudit.formats.batches`).

    The content is read one byte range at a time (a file on disk with plain reads,
    never whole) and each range is one batch: about ``batch_rows`` rows (estimated from
    the bytes per row so far), at most 64 MiB. A range ends after a line feed where no
    record is open: an even number of quotes from its start (one count over its bytes),
    else the last line where the resync (:func:`_records`) leaves no quoted field with
    line breaks open. Each range is read exactly as :func:`read` reads the whole body
    (one ``pl.read_csv`` on sound data; the line-by-line resync when rows are damaged,
    looking past the range's end so that a quoted field that continues there moves the
    cut back before it), then normalised by :class:`~.rows.BatchBuilder`, which carries
    row numbers, day and hour rollovers and the damaged-row accounting over. Line
    numbers in messages are counted (lazily, only when a row is damaged) over the bytes
    before the range.

    Encodings: UTF-8 with a BOM (Procmon's own) is streamed; a range polars refuses as
    UTF-8 is decoded on its own, undecodable bytes replaced and counted, as :func:`read`
    does for the whole file. UTF-8 without a BOM is checked block by block first (no
    more than a block in memory) and streamed if it is UTF-8 throughout. Everything else
    (UTF-16, legacy code pages, and UTF-8 without a BOM that has bytes that are not) is
    decoded whole, exactly as :func:`read` decodes it (the code page is guessed from the
    whole content), re-encoded as UTF-8, and that is read range by range: memory then
    holds the decoded content, not its events. gzip and zip members are already in memory
    (decompressed whole by :func:`~traceaudit.formats.input.open_input`); only their
    events are read range by range.

    With ``columns=None, keep=None`` the frames put together equal :func:`read`'s events
    sorted by row, and once they are exhausted the warnings, skipped rows and time
    precision equal its own; strict mode raises the same first error (when its batch is
    read). A Date & Time column empty in the first rows holds those rows back until a
    date comes (all of them if none does), since they take the first date of the trace.
    """
    name = trace_input.name
    header = find_header(decode_head(trace_input.head))
    if header is None or len(header.canonical()) < 2:
        raise NotThisFormat(
            f"{name}: not a Process Monitor CSV export (no header row with its column names)."
        )
    found = header.canonical()
    _check_columns(name, header, found)
    bom = trace_input.head.startswith(codecs.BOM_UTF8)
    # What read() ends up decoding whole in Python: content that does not start as UTF-8,
    # and UTF-8 without a BOM that is not UTF-8 throughout (polars refuses it wherever the
    # bad bytes are, and read() then guesses the encoding from the whole content).
    utf8 = head_is_utf8(trace_input.head) and (bom or _valid_utf8(trace_input))
    builder = BatchBuilder(
        name,
        date=date,
        strict=strict,
        columns=columns,
        keep=keep,
        has_time_of_day="Time of Day" in found,
        has_date="Date & Time" in found,
    )
    wanted = {
        column: index
        for column, index in found.items()
        if column in _FIELDS and (column != "Detail" or builder.wants_detail)
    }
    out = TraceBatches(
        frames=iter(()),
        format=FORMAT_NAME,
        name=name,
        source=trace_input.source,
        warnings=list(trace_input.warnings),
    )
    out.frames = _batch_frames(
        trace_input, header, wanted, builder, out, utf8=utf8, bom=bom, batch_rows=batch_rows
    )
    return out


def _batch_frames(
    trace_input: TraceInput,
    header: Header,
    wanted: dict[str, int],
    builder: BatchBuilder,
    out: TraceBatches,
    *,
    utf8: bool,
    bom: bool,
    batch_rows: int,
) -> Iterator[pl.DataFrame]:
    """The frames of :func:`batches`, noting what was learned in ``out``."""
    note: str | None = None
    if utf8:
        content = _Content.of(trace_input)
    else:
        raw = trace_input.path.read_bytes() if trace_input.path else trace_input.read_bytes()
        decoded = decode(raw)
        del raw
        note = encoding_note(trace_input.name, decoded)
        content = _Content(decoded.text.lstrip("\ufeff").encode("utf-8"))
        del decoded
    try:
        reading = _Reading(
            trace_input, header, wanted, content, decoded=not utf8, bom=bom, batch_rows=batch_rows
        )
        for raw_rows in reading.raw_rows():
            frames = builder.add(raw_rows)
            del raw_rows
            out.skipped.clear()
            out.skipped.update(builder.skipped)
            out.skipped_rows[:] = builder.skipped_rows
            yield from frames
            del frames
        yield from builder.finish()
        if utf8:
            note = reading.encoding_note()
    finally:
        content.close()
    out.warnings.extend([*([note] if note else []), *builder.warnings()])
    out.skipped.clear()
    out.skipped.update(builder.skipped)
    out.skipped_rows[:] = builder.skipped_rows
    out.time_precision_lost = builder.time_precision_lost


def _valid_utf8(trace_input: TraceInput) -> bool:
    """Whether the whole content is UTF-8 (read a block at a time)."""
    content = _Content.of(trace_input)
    try:
        decoder = codecs.getincrementaldecoder("utf-8")()
        for start in range(0, content.size, _BLOCK):
            block = content.read(start, start + _BLOCK)
            if block.isascii() and not decoder.getstate()[0]:
                continue
            decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    finally:
        content.close()
    return True


class _Content:
    """The bytes of the content, read range by range: a file on disk (never read whole)
    or bytes in memory."""

    def __init__(self, data: bytes | None = None, path: Path | None = None) -> None:
        self.data = data
        self.file: BinaryIO | None = None
        if data is not None:
            self.size = len(data)
        else:
            assert path is not None
            self.file = path.open("rb")
            self.size = os.fstat(self.file.fileno()).st_size

    @classmethod
    def of(cls, trace_input: TraceInput) -> _Content:
        if trace_input.path is not None:
            return cls(path=trace_input.path)
        return cls(trace_input.read_bytes())

    def read(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if start >= end:
            return b""
        if self.data is not None:
            return self.data[start:end]
        assert self.file is not None
        self.file.seek(start)
        return self.file.read(end - start)

    def blocks(self, start: int, end: int) -> Iterator[bytes]:
        """``[start, end)`` in blocks that end after a line feed (or at ``end``)."""
        while start < end:
            block = self.read(start, min(end, start + _BLOCK))
            if start + len(block) < end:
                cut = block.rfind(b"\n")
                if cut >= 0:
                    block = block[: cut + 1]
            if not block:
                return
            start += len(block)
            yield block

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class _CutBefore(Exception):
    """A range's resync found a quoted field with line breaks that goes on past the
    range's end: the range must end before ``line`` (of its body) instead."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Reading:
    """One CSV read in byte ranges: where they are cut, and what crosses them."""

    def __init__(
        self,
        trace_input: TraceInput,
        header: Header,
        wanted: dict[str, int],
        content: _Content,
        *,
        decoded: bool,
        bom: bool,
        batch_rows: int,
    ) -> None:
        self.input = trace_input
        self.header = header
        self.wanted = wanted
        self.content = content
        self.decoded = decoded  # content is text decoded in Python and re-encoded
        self.bom = bom and not decoded
        self.batch_rows = max(batch_rows, 1)
        self.width = len(header.names)
        self.size = content.size
        self.body_start = self._body_start()
        sample = content.read(self.body_start, self.body_start + 64 * 1024)
        self.row_bytes = len(sample) / max(sample.count(b"\n"), 1)
        self._body_bytes = 0
        self._rows = 0
        self._line_at = (self.body_start, header.line + 2)  # (offset, its line number)
        self._errors = False  # some range was not UTF-8
        self._replaced = 0  # U+FFFD in the ranges decoded
        self._decoded_ranges: list[tuple[int, int]] = []

    def _body_start(self) -> int:
        """The offset after the header's line (``header.line + 1`` line feeds)."""
        wanted, seen, at = self.header.line + 1, 0, 0
        for block in self.content.blocks(0, self.size):
            count = block.count(b"\n")
            if seen + count >= wanted:
                position = -1
                for _ in range(wanted - seen):
                    position = block.index(b"\n", position + 1)
                return at + position + 1
            seen += count
            at += len(block)
        return self.size

    def raw_rows(self) -> Iterator[RawRows]:
        """Each range's raw rows, in order."""
        pos = 0
        while True:
            body = self.body_start if pos == 0 else pos
            if body >= self.size:
                return
            end, data = self._range(pos, body)
            while True:
                table = _RangeTable(self, data, pos, body, end)
                try:
                    frame, problem = table.read()
                except _CutBefore as cut:
                    if cut.line > 0:
                        end = pos + _line_offset(data, body - pos, cut.line)
                        data = data[: end - pos]
                    else:
                        end = self._line_end(end, end + max(end - body, 4096))
                        data = self.content.read(pos, end)
                    continue
                break
            self._rows += frame.height
            self._body_bytes += end - body
            if self._rows:
                self.row_bytes = self._body_bytes / self._rows
            if table.text is not None and not self.decoded:
                self._decoded_ranges.append((pos, end))
                self._replaced += table.text.count("\ufffd")
                self._errors = self._errors or table.undecodable
            yield RawRows(
                frame=frame,
                name=self.input.name,
                source=self.input.source,
                format=FORMAT_NAME,
                shape=f"the header's {self.width} columns",
                line_of=table.line_numbers,
                field_problem=problem,
            )
            del table, frame, problem, data
            pos = end

    def _range(self, pos: int, body: int) -> tuple[int, bytes]:
        """The next range, ``[pos, end)``, and its bytes (``body``: where its rows start)."""
        span = min(max(int(self.batch_rows * self.row_bytes), 1), _RANGE_BYTES)
        end = self.size if body + span >= self.size else self._line_end(body, body + span)
        data = self.content.read(pos, end)
        while end < self.size and _quotes(data, body - pos) % 2:
            # A quoted field with line breaks (or a damaged quote) is open at the end.
            cut = self._closed(data, body - pos)
            if cut is not None:
                return pos + cut, data[:cut]
            end = self._line_end(end, end + max(end - body, 4096))
            data = self.content.read(pos, end)
        return end, data

    def _closed(self, data: bytes, body: int) -> int | None:
        """Where to end a range whose quotes do not pair up: before the line that opens
        a record the resync cannot close within ``data`` (None if that is its first line,
        ``len(data)`` if every line is decided)."""
        lines = _Lines.of(data[body:].decode("utf-8", errors="replace"), 0, 0)
        _, _, undecided = _records(
            lines.text, lines.odd, self.header.delimiter, self.width, complete=False
        )
        if undecided is None:
            return len(data)
        if undecided == 0:
            return None
        return _line_offset(data, body, undecided)

    def _line_end(self, low: int, high: int) -> int:
        """The offset after the last line feed in ``[low, high)``; if there is none, after
        the first one from ``high`` on; the end of the content if none follows."""
        high = min(high, self.size)
        at = high
        while at > low:
            start = max(low, at - 64 * 1024)
            found = self.content.read(start, at).rfind(b"\n")
            if found >= 0:
                return start + found + 1
            at = start
        at = high
        while at < self.size:
            found = self.content.read(at, at + 64 * 1024).find(b"\n")
            if found >= 0:
                return at + found + 1
            at += 64 * 1024
        return self.size

    def lookahead(self, end: int) -> tuple[str, bool]:
        """The text of the lines after ``end`` that a record opened before it might
        span (:data:`_MAX_SPAN`), and whether they run to the end of the content."""
        parts: list[bytes] = []
        lines, at = 0, end
        while lines < _MAX_SPAN and at < self.size:
            block = self.content.read(at, at + _LOOKAHEAD_BLOCK)
            count = block.count(b"\n")
            if lines + count >= _MAX_SPAN:
                block = block[: _line_offset(block, 0, _MAX_SPAN - lines)]
                count = _MAX_SPAN - lines
            parts.append(block)
            lines += count
            at += len(block)
        return b"".join(parts).decode("utf-8", errors="replace"), at >= self.size

    def line_number(self, offset: int) -> int:
        """The line number (as an editor counts: CRLF, CR and LF each end a line) of
        the line starting at ``offset`` (counted on from the last one asked for)."""
        at, number = self._line_at
        if offset < at:
            at, number = self.body_start, self.header.line + 2
        for block in self.content.blocks(at, offset):
            number += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
        self._line_at = (offset, number)
        return number

    def encoding_note(self) -> str | None:
        """The warning :func:`read` gives for undecodable bytes, once every range is read:
        their count, with the U+FFFD the content holds anyway (as a whole decode counts)."""
        if not self._errors:
            return None
        replaced = self._replaced
        at = len(codecs.BOM_UTF8) if self.bom else 0
        for start, end in [*self._decoded_ranges, (self.size, self.size)]:
            for block in self.content.blocks(at, start):
                replaced += block.count("\ufffd".encode())
            at = max(at, end)
        return encoding_note(self.input.name, Decoded("", "utf-8", replaced))


def _quotes(data: bytes, start: int) -> int:
    """The number of ``"`` in ``data[start:]``."""
    view = np.frombuffer(data, dtype=np.uint8)
    return sum(
        int(np.count_nonzero(view[i : i + _BLOCK] == ord('"')))
        for i in range(start, len(view), _BLOCK)
    )


def _line_offset(data: bytes, start: int, line: int) -> int:
    """The offset in ``data`` after the ``line``-th line feed from ``start`` (line > 0)."""
    feeds = np.flatnonzero(np.frombuffer(data, dtype=np.uint8)[start:] == ord("\n"))
    return start + int(feeds[line - 1]) + 1


class _RangeTable(_Table):
    """:class:`_Table` for one byte range of the content (see :func:`batches`)."""

    def __init__(self, reading: _Reading, data: bytes, start: int, body: int, end: int) -> None:
        super().__init__(reading.input, reading.header, reading.wanted)
        self.reading = reading
        self.data = data
        self.first = start == 0
        self.body = body  # the offset where the range's rows start
        self.end = end
        self.skip = self.header.line + 1 if self.first else 0
        self.undecodable = False

    def _holds_header(self) -> bool:
        return self.first

    def _read_body(self, projection: Sequence[int]) -> pl.DataFrame:
        """As :meth:`_Table._read_body`, on the range."""
        if not self.reading.decoded:
            self.source = self.data
            quoted = self._quoted(projection)
            if quoted is not None:
                return quoted
            try:
                frame = self._columns(projection)
            except pl.exceptions.PolarsError as exc:
                if "utf-8" not in str(exc).lower() and "utf8" not in str(exc).lower():
                    return self._resync(projection)
            else:
                return frame
        text = self._text()
        self.source = self.data if self.reading.decoded else text.encode("utf-8")
        try:
            frame = self._columns(projection)
        except pl.exceptions.PolarsError:
            return self._resync(projection)
        return self._resync(projection) if _NUL in text else frame

    def _text(self) -> str:
        """The range decoded (UTF-8; undecodable bytes replaced, as a whole decode does)."""
        if self.text is None:
            data = self.data[3:] if self.first and self.reading.bom else self.data
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = data.decode("utf-8", errors="replace")
                self.undecodable = True
            self.text = text.lstrip("\ufeff") if self.first else text
        return self.text

    def _body_lines(self) -> _Lines:
        return _Lines.of(self._text(), self.skip, self._first_data_line())

    def _first_data_line(self) -> int:
        return self.reading.line_number(self.body)

    def _record_starts(self, body: _Lines) -> tuple[np.ndarray, dict[int, str]]:
        """The resync's records of the range, decided with the lines after it in view: a
        record that would go on past the range's end raises :class:`_CutBefore`."""
        delimiter = self.header.delimiter
        if self.end >= self.reading.size:
            starts, damage, _ = _records(body.text, body.odd, delimiter, self.width)
            return starts, damage
        text, complete = self.reading.lookahead(self.end)
        after = _Lines.of(text, 0, 0)
        n = len(body.text)
        lines = pl.concat([body.text, after.text])
        odd = np.concatenate([body.odd, after.odd])
        starts, damage, undecided = _records(lines, odd, delimiter, self.width, complete=complete)
        if undecided is not None and undecided < n:
            raise _CutBefore(undecided)
        if len(after.text) and not starts[n]:
            raise _CutBefore(int(np.flatnonzero(starts[:n])[-1]))
        return starts[:n], {line: code for line, code in damage.items() if line < n}
