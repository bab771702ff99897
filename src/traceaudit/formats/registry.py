"""The table of trace formats: name, one-line description, sniffer and reader.

A new format is a subpackage of :mod:`traceaudit.formats` plus one more
:class:`TraceFormat` in :data:`FORMATS` (or a call to :func:`register_format`); detection
and loading need no other change. Sniffers look at the first bytes of the (decompressed)
content only. (Redaction keeps its own per-format handlers in
:mod:`traceaudit.redaction.handlers`; a format it cannot rewrite is refused there.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date as Date
from typing import Protocol

from traceaudit.errors import UsageError
from traceaudit.formats import parquet
from traceaudit.formats.batches import BatchReader, whole_trace_batches
from traceaudit.formats.etl import reader as etl
from traceaudit.formats.input import TraceInput
from traceaudit.formats.pml import reader as pml
from traceaudit.formats.procmon_text import clipboard
from traceaudit.formats.procmon_text import csv_read as procmon_csv
from traceaudit.formats.procmon_text import xml_read as procmon_xml
from traceaudit.schema import Trace

__all__ = ["TraceFormat", "FORMATS", "register_format", "get_format", "supported_formats"]


class Reader(Protocol):
    """Reads one format: ``reader(trace_input, date=..., strict=...) -> Trace``."""

    def __call__(
        self, trace_input: TraceInput, *, date: Date | None = None, strict: bool = False
    ) -> Trace: ...


@dataclass(frozen=True)
class TraceFormat:
    """One readable format.

    ``batches`` reads the format as a stream of event frames with bounded memory
    (:mod:`traceaudit.formats.batches`); formats without their own are read whole and
    sliced.

    ``name`` is what ``format=`` takes (``traceaudit.read_trace(path, format=...)``) and
    what :func:`~traceaudit.formats.detection.detect` returns;
    ``label`` names it in messages ("Supported: …"); ``description`` is one line for help
    text; ``sniff`` gets the first bytes of the content.
    """

    name: str
    label: str
    description: str
    sniff: Callable[[bytes], bool]
    read: Reader
    batches: BatchReader | None = None

    def batch_reader(self) -> BatchReader:
        """This format's batch reader, or one that reads the trace whole and slices it."""
        return self.batches if self.batches is not None else whole_trace_batches(self.read)


FORMATS: list[TraceFormat] = [
    TraceFormat(
        name=pml.FORMAT_NAME,
        label="Procmon PML capture",
        description="Process Monitor's native log (.PML, versions 7 and 9, 32- and 64-bit; "
        "truncated captures read up to the last intact event)",
        sniff=pml.sniff_pml,
        read=pml.read,
        batches=getattr(pml, "batches", None),
    ),
    TraceFormat(
        name=etl.FORMAT_NAME,
        label="ETW trace (.etl)",
        description="Event Tracing for Windows file I/O: NT Kernel Logger FileIo or "
        "Microsoft-Windows-Kernel-File events (xperf, WPR, logman, PerfView; compressed too), "
        "paired exactly by FILE_OBJECT",
        sniff=etl.sniff,
        read=etl.read,
        batches=getattr(etl, "batches", None),
    ),
    TraceFormat(
        name=procmon_csv.FORMAT_NAME,
        label="Procmon CSV export",
        description="Process Monitor File > Save > CSV (any columns and order, UTF-8 or a "
        "legacy code page, comma or tab; Excel re-saves too)",
        sniff=procmon_csv.sniff,
        read=procmon_csv.read,
        batches=getattr(procmon_csv, "batches", None),
    ),
    TraceFormat(
        name=clipboard.FORMAT_NAME,
        label="Procmon rows pasted from the clipboard",
        description="rows copied from Process Monitor with Ctrl+C: tab-separated, no header, "
        "the 7 default columns",
        sniff=clipboard.sniff,
        read=clipboard.read,
        batches=getattr(clipboard, "batches", None),
    ),
    TraceFormat(
        name=procmon_xml.FORMAT_NAME,
        label="Procmon XML export",
        description="Process Monitor File > Save > XML (streamed; localized exports too)",
        sniff=procmon_xml.sniff,
        read=procmon_xml.read,
        batches=getattr(procmon_xml, "batches", None),
    ),
    TraceFormat(
        name=parquet.FORMAT_NAME,
        label="traceaudit Parquet",
        description="normalised events written by 'traceaudit convert' (exact round trip)",
        sniff=parquet.sniff,
        read=parquet.read,
        batches=getattr(parquet, "batches", None),
    ),
]
"""Formats in detection order: the first whose sniffer accepts the content reads it."""


def register_format(trace_format: TraceFormat, *, first: bool = False) -> None:
    """Add a format to :data:`FORMATS` (replacing one of the same name)."""
    FORMATS[:] = [f for f in FORMATS if f.name != trace_format.name]
    if first:
        FORMATS.insert(0, trace_format)
    else:
        FORMATS.append(trace_format)


def get_format(name: str) -> TraceFormat:
    """The format called ``name``; :class:`UsageError` listing the choices if none is."""
    for trace_format in FORMATS:
        if trace_format.name == name:
            return trace_format
    choices = ", ".join(f"'{f.name}'" for f in FORMATS)
    raise UsageError(f"format {name!r}: unknown format. Choose one of {choices}.")


def supported_formats() -> str:
    """``"Procmon CSV export, Procmon rows pasted from the clipboard"`` for messages."""
    return ", ".join(f.label for f in FORMATS)
