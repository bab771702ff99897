"""Reading a trace for redaction and writing it back in its own format and dialect.

Redaction works on the raw fields, not on the analysis's normalised events, so that the
output is the same kind of file as the input, only with other names in it:

* **Procmon CSV**: the same columns in the same order, the same delimiter, the same
  quoting (every field quoted, as Procmon writes, or only where needed, as Excel
  writes), the same line ends, the same encoding (UTF-8 with or without BOM, UTF-16, or
  the legacy code page it came in). Python's :mod:`csv` with ``newline=""`` keeps the
  line breaks inside quoted fields, including Procmon's bare-CR environment blocks.
* **Pasted rows** (``procmon-clipboard``): line by line, tab-separated, no quoting;
  lines continuing an environment block, blank lines and Markdown fences kept in place.
* **Procmon XML**: rewritten in place, element text only (:mod:`._redact_xml`).
* **gzip / zip**: the same compression around the redacted content (a zip keeps only
  the trace member: other members were not redacted, so they are left out, with a note).

* **Procmon PML**: the same bytes with same-length pseudonyms written over the names
  (:mod:`.pml`); gzip and zip wrapping kept as for the text formats.

traceaudit's own Parquet (and the other formats) are refused with what to do instead.

Each format has a handler with two passes over the same text: ``discover()`` runs the
rewriters so the context learns every secret, ``write(stream)`` writes the result.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import sys
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from traceaudit.display import plural
from traceaudit.errors import TraceFormatError, UnknownFormatError
from traceaudit.formats import (
    decode,
    find_header,
    is_trace,
    open_input,
    sniff_format,
    unknown_format_message,
)
from traceaudit.redaction.context import Context
from traceaudit.redaction.pml import PmlHandler
from traceaudit.redaction.rows import CLIPBOARD_COLUMNS, RowRewriter
from traceaudit.redaction.xml_handler import XmlHandler

__all__ = ["PML", "Handler", "Source", "handler_for", "open_source", "write_binary", "write_output"]

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_LINE_END = re.compile(r"\r\n|\r|\n")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_NOISE = re.compile(r"\s*(?:```|~~~).*|\s*")
_FIELD_LIMIT = 2**31 - 1
_CSV = "procmon-csv"
_CLIPBOARD = "procmon-clipboard"
_XML = "procmon-xml"
PML = "procmon-pml"


@dataclass
class Source:
    """A trace opened for redaction: its text and how to write it back."""

    path: Path
    name: str
    format: str
    text: str
    encoding: str
    bom: bytes
    compression: str | None = None
    member: zipfile.ZipInfo | None = None
    notes: list[str] = field(default_factory=list)
    data: bytes = b""
    """The whole (decompressed) content of a binary format (PML); empty for text."""

    @property
    def label(self) -> str:
        """``UTF-8 with BOM``, ``cp1251``…, for the result."""
        names = {"utf-8": "UTF-8", "utf-16-le": "UTF-16 LE", "utf-16-be": "UTF-16 BE"}
        label = names.get(self.encoding, self.encoding)
        return label + (" with BOM" if self.bom else "")


def open_source(path: Path) -> Source:
    """Open ``path`` (plain, gzip or zip) and decode it; refuse what cannot be redacted."""
    trace_input = open_input(path, sniff=is_trace)
    name = trace_input.name
    head = trace_input.head
    if head.startswith(b"PML_"):
        source = Source(path, name, PML, "", "binary", b"", data=trace_input.read_bytes())
        _compression(source)
        return source
    trace_format = sniff_format(head)
    if trace_format is None:
        raise UnknownFormatError(unknown_format_message(name, head))
    if trace_format.name not in (_CSV, _CLIPBOARD, _XML):
        advice = (
            "Redact the trace it was converted from, then convert the redacted one."
            if trace_format.name == "parquet" or "parquet" in trace_format.label.lower()
            else "In Process Monitor, save the events with File > Save > CSV and redact that."
        )
        raise TraceFormatError(
            f"{name}: a {trace_format.label}, which redact cannot rewrite. {advice}"
        )
    data = trace_input.read_bytes()
    decoded = decode(data)
    encoding, bom = _codec(data, decoded.encoding)
    source = Source(path, name, trace_format.name, decoded.text, encoding, bom)
    _compression(source)
    if decoded.replaced:
        source.notes.append(
            f"{name}: {plural(decoded.replaced, 'undecodable byte')} in the input "
            f"{'was' if decoded.replaced == 1 else 'were'} written as replacement characters."
        )
    return source


def _compression(source: Source) -> None:
    """Note the gzip or zip wrapping of ``source`` (and a zip's other members)."""
    path = source.path
    with path.open("rb") as raw:
        magic = raw.read(4)
    if magic.startswith(_GZIP_MAGIC):
        source.compression = "gzip"
    elif magic.startswith(_ZIP_MAGIC):
        source.compression = "zip"
        source.member, others = _member(path, source.name)
        if others:
            source.notes.append(
                f"{path.name}: only the trace {source.member.filename} was redacted and "
                f"written; left out: {', '.join(others)}."
            )


def _codec(data: bytes, encoding: str) -> tuple[str, bytes]:
    """The codec to write with, and the byte-order mark to put first."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8", codecs.BOM_UTF8
    if data.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", codecs.BOM_UTF16_LE
    if data.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", codecs.BOM_UTF16_BE
    if encoding == "utf-16":
        return "utf-16-le", b""
    return encoding, b""


def _member(path: Path, name: str) -> tuple[zipfile.ZipInfo, list[str]]:
    """The zip member holding the trace, and the names of the other members."""
    member_name = name[len(path.name) + 1 :]
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member_name)
        others = [i.filename for i in archive.infolist() if i.filename != member_name]
    return info, others


# --------------------------------------------------------------------------- passes


class _Csv:
    """A Procmon CSV: header row, then rows of the header's columns."""

    def __init__(self, text: str, ctx: Context, name: str = "trace") -> None:
        self.name = name
        header = find_header(text)
        if header is None:  # pragma: no cover - sniffing guarantees a header
            raise TraceFormatError("no CSV header found")
        self.text = text
        self.delimiter = header.delimiter
        self.quoted = header.quoted
        found = _LINE_END.search(text)
        self.line_end = found.group(0) if found else "\r\n"
        columns: list[str | None] = [None] * len(header.names)
        for column, index in header.canonical().items():
            columns[index] = column
        self.rewriter = RowRewriter(ctx, columns)

    def reset(self) -> None:
        """Forget the discovery pass (after :meth:`Context.freeze`)."""
        self.rewriter.reset()

    def _rows(self) -> Iterator[list[str]]:
        if csv.field_size_limit() < _FIELD_LIMIT:
            csv.field_size_limit(min(_FIELD_LIMIT, sys.maxsize))
        # Lines as ``open(newline="")`` gives them (split at CR, LF, CRLF only, ends kept),
        # lazily: an io.StringIO copy of a large trace would take four bytes a character.
        lines = (m.group(0) for m in _LINE.finditer(self.text))
        return _checked(csv.reader(lines, delimiter=self.delimiter), self.name)

    def discover(self) -> None:
        """Run the rewriters over every row once, so the context notes every secret."""
        header_seen = False
        for fields in self._rows():
            if not fields:
                continue
            if header_seen:
                self.rewriter.row(fields)
            header_seen = True

    def _formatter(self) -> Callable[[list[str]], str]:
        """Fields → one line, terminator included, in this file's dialect."""
        end = self.line_end
        if self.quoted:
            return lambda fields: _quote_all(fields, self.delimiter) + end
        if end != "\r\n":
            # csv's minimal quoting quotes CR/LF only when they are in its terminator
            return lambda fields: _minimal(fields, self.delimiter) + end
        buffer = io.StringIO(newline="")
        writer = csv.writer(
            buffer,
            delimiter=self.delimiter,
            quoting=csv.QUOTE_MINIMAL,
            lineterminator=end,
        )

        def format_row(fields: list[str]) -> str:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow(fields)
            return buffer.getvalue()

        return format_row

    def write(self, stream: IO[str]) -> int:
        """Write the rewritten rows to ``stream``; return the number of data rows."""
        rewriter = self.rewriter
        end = self.line_end
        format_row = self._formatter()
        rows = 0
        header_seen = False
        previous: str | None = None
        for fields in self._rows():
            if previous is not None:
                stream.write(previous)
            if not fields:
                previous = end
            elif not header_seen:
                previous = format_row(fields)
                header_seen = True
            else:
                previous = format_row(rewriter.row(fields))
                rows += 1
        if previous is not None:
            if not self.text.endswith(("\n", "\r")) and previous.endswith(end):
                previous = previous[: -len(end)]
            stream.write(previous)
        return rows


def _quote_all(fields: list[str], delimiter: str) -> str:
    """Every field quoted, embedded quotes doubled, as Procmon writes (``csv.QUOTE_ALL``)."""
    if not fields:
        return ""
    separator = '"' + delimiter + '"'
    joined = separator.join(fields)
    if joined.count('"') != 2 * (len(fields) - 1):  # some field holds a quote itself
        joined = separator.join(f.replace('"', '""') for f in fields)
    return '"' + joined + '"'


def _minimal(fields: list[str], delimiter: str) -> str:
    """Fields quoted only when they hold the delimiter, a quote or a line break."""
    if fields == [""]:
        return '""'
    special = (delimiter, '"', "\r", "\n")
    return delimiter.join(
        '"' + f.replace('"', '""') + '"' if any(s in f for s in special) else f for f in fields
    )


class _Clipboard:
    """Pasted Procmon rows: one event per line, tab-separated, no header, no quoting."""

    def __init__(self, text: str, ctx: Context) -> None:
        self.parts = _LINE_END.split(text)
        self.ends = _LINE_END.findall(text)
        self.rewriter = RowRewriter(ctx, CLIPBOARD_COLUMNS)

    def reset(self) -> None:
        """Forget the discovery pass (after :meth:`Context.freeze`)."""
        self.rewriter.reset()

    def _lines(self) -> Iterator[tuple[str, bool]]:
        rewriter = self.rewriter
        for line in self.parts:
            if _NOISE.fullmatch(line):
                yield rewriter.text(line), False
            elif line.startswith(";"):
                yield rewriter.env_line(line), False
            elif line.count("\t") < 5:  # not an event: text around the pasted rows
                yield rewriter.free_text(line), False
            else:
                yield "\t".join(rewriter.row(line.split("\t", len(CLIPBOARD_COLUMNS) - 1))), True

    def discover(self) -> None:
        """Run the rewriters over every line once, so the context notes every secret."""
        for _ in self._lines():
            pass

    def write(self, stream: IO[str]) -> int:
        """Write the rewritten lines to ``stream``; return the number of event rows."""
        rows = 0
        for index, (line, is_row) in enumerate(self._lines()):
            stream.write(line)
            if index < len(self.ends):
                stream.write(self.ends[index])
            rows += is_row
        return rows


class Handler(Protocol):
    """Reads and writes one format: a discovery pass, then the writing pass."""

    def discover(self) -> None: ...

    def reset(self) -> None: ...

    def write(self, stream: IO[str]) -> int: ...


def handler_for(source: Source, ctx: Context) -> Handler | PmlHandler:
    """The reader/writer for the source's format."""
    if source.format == PML:
        return PmlHandler(source.data, source.name, ctx)
    if source.format == _CSV:
        return _Csv(source.text, ctx, source.name)
    if source.format == _XML:
        return XmlHandler(source.text, ctx)
    return _Clipboard(source.text, ctx)


# --------------------------------------------------------------------------- output


@contextmanager
def write_output(raw: IO[bytes], source: Source, member_name: str) -> Iterator[IO[str]]:
    """A text stream that encodes, compresses and writes to ``raw`` as the source was."""
    if source.compression == "gzip":
        packed = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
        with packed, _text(packed, source) as stream:
            yield stream
    elif source.compression == "zip":
        assert source.member is not None
        info = zipfile.ZipInfo(member_name, date_time=source.member.date_time)
        info.compress_type = zipfile.ZIP_DEFLATED
        with (
            zipfile.ZipFile(raw, "w") as archive,
            archive.open(info, "w") as member,
            _text(member, source) as stream,
        ):
            yield stream
    else:
        with _text(raw, source) as stream:
            yield stream


@contextmanager
def write_binary(raw: IO[bytes], source: Source, member_name: str) -> Iterator[IO[bytes]]:
    """A binary stream that compresses and writes to ``raw`` as the source was."""
    if source.compression == "gzip":
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as packed:
            yield packed  # type: ignore[misc]
    elif source.compression == "zip":
        assert source.member is not None
        info = zipfile.ZipInfo(member_name, date_time=source.member.date_time)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(raw, "w") as archive, archive.open(info, "w") as member:
            yield member
    else:
        yield raw


@contextmanager
def _text(binary: IO[bytes] | gzip.GzipFile, source: Source) -> Iterator[IO[str]]:
    binary.write(source.bom)
    stream = io.TextIOWrapper(
        binary, encoding=source.encoding, errors="replace", newline="", write_through=False
    )
    try:
        yield stream
        stream.flush()
    finally:
        stream.detach()


def _checked(rows: Iterator[list[str]], name: str) -> Iterator[list[str]]:
    """Rows from ``csv.reader``, its refusals as one clear error (Python 3.10's csv refuses
    NUL bytes, which only a damaged export holds)."""
    try:
        yield from rows
    except csv.Error as exc:
        raise TraceFormatError(
            f"{name}: a damaged row the redactor cannot rewrite ({exc}). Export the trace "
            "from Process Monitor again, or analyse it as it is (analysis skips damaged rows)."
        ) from None
