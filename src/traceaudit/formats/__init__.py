"""Trace readers: one module per input format, a table of formats, and detection.

::

    >>> from traceaudit.formats import load_trace
    >>> trace = load_trace("Logfile.CSV")          # format sniffed from the content
    >>> trace.events                                # polars, schema.EVENT_SCHEMA
    >>> trace.warnings, trace.skipped               # what the reader had to work around

Formats (:data:`FORMATS`, a table of name, label, description, sniffer and reader; add
one with :func:`register_format`): ``procmon-csv`` (Process Monitor's CSV export, any
columns, encodings and Excel re-saves) and ``procmon-clipboard`` (rows copied with
Ctrl+C). :func:`detect` names the format from the content; ``.gz`` and ``.zip`` inputs are
opened transparently. Unreadable input raises the errors of :mod:`traceaudit.errors`,
each message starting with the file name and saying what to do.

Building blocks, usable on their own: :func:`parse_detail` (Detail → typed columns),
:func:`parse_time_of_day`, :func:`parse_date_time` and :func:`parse_duration` (Procmon's
locale-dependent time strings).
"""

from traceaudit.formats.detection import detect, sniff_format
from traceaudit.formats.load import load_text, load_trace
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

__all__ = [
    "DETAIL_SCHEMA",
    "FORMATS",
    "PLACEHOLDER_DATE",
    "Decoded",
    "TraceFormat",
    "decode",
    "detect",
    "event_class",
    "get_format",
    "load_text",
    "load_trace",
    "parse_date_time",
    "parse_detail",
    "parse_duration",
    "parse_time_of_day",
    "register_format",
    "sniff_format",
    "supported_formats",
]
