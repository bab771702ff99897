"""Every byte into or out of a trace file: the format table, detection, and one package per
family of formats.

::

    >>> from traceaudit.formats import load_trace
    >>> trace = load_trace("Logfile.CSV")          # format sniffed from the content
    >>> trace.events                                # polars, schema.EVENT_SCHEMA
    >>> trace.warnings, trace.skipped               # what the reader had to work around
    >>> scan_trace("huge.pml").filter(...)          # lazily, in batches (:mod:`.scan`)

Formats (:data:`FORMATS`, a table of name, label, description, sniffer and reader; add
one with :func:`register_format`): ``procmon-pml`` (Process Monitor's native log,
:mod:`.pml`), ``etw-etl`` (Event Tracing for Windows, :mod:`.etl`), ``procmon-csv``,
``procmon-clipboard`` and ``procmon-xml`` (Procmon's text exports, :mod:`.procmon_text`)
and ``parquet`` (traceaudit's own normalised events, :mod:`.parquet`). :func:`detect` names
the format from the content; ``.gz`` and ``.zip`` inputs and standard input are opened
transparently (:mod:`.input`). Unreadable input raises the errors of
:mod:`traceaudit.errors`, each message starting with the file name and saying what to do.

The API for tools that rewrite traces (redaction uses exactly this): :func:`open_input` and
:class:`TraceInput` (the decompressed content and its name), :func:`sniff_format`,
:func:`is_trace` and :func:`unknown_format_message` (what a file is, or what it looks like
instead), :func:`decode` (text of any encoding Procmon or Excel writes),
:func:`find_header` (a CSV export's header and dialect), and
:mod:`.procmon_text.columns` (Procmon's column names).

Building blocks, usable on their own: :func:`parse_detail` (Detail → typed columns),
:func:`parse_time_of_day`, :func:`parse_date_time` and :func:`parse_duration` (Procmon's
locale-dependent time strings); :mod:`.convert` writes events as Parquet or CSV.
"""

from traceaudit.formats.detection import detect, is_trace, sniff_format, unknown_format_message
from traceaudit.formats.input import TraceInput, open_input
from traceaudit.formats.load import load_text, load_trace, open_batches
from traceaudit.formats.procmon_text.csv_read import find_header
from traceaudit.formats.procmon_text.decode import Decoded, decode
from traceaudit.formats.procmon_text.detail import DETAIL_SCHEMA, parse_detail
from traceaudit.formats.procmon_text.rows import event_class
from traceaudit.formats.procmon_text.times import (
    PLACEHOLDER_DATE,
    parse_date_time,
    parse_duration,
    parse_time_of_day,
)
from traceaudit.formats.registry import (
    FORMATS,
    TraceFormat,
    get_format,
    register_format,
    supported_formats,
)
from traceaudit.formats.scan import scan_trace

__all__ = [
    "DETAIL_SCHEMA",
    "FORMATS",
    "PLACEHOLDER_DATE",
    "Decoded",
    "TraceFormat",
    "decode",
    "detect",
    "find_header",
    "is_trace",
    "open_input",
    "TraceInput",
    "unknown_format_message",
    "event_class",
    "get_format",
    "load_text",
    "load_trace",
    "open_batches",
    "scan_trace",
    "parse_date_time",
    "parse_detail",
    "parse_duration",
    "parse_time_of_day",
    "register_format",
    "sniff_format",
    "supported_formats",
]
