"""Which format a file is, judged by content; and a useful refusal when none fits.

:func:`detect` unwraps gzip/zip, then asks each format in
:data:`~traceaudit.formats.registry.FORMATS` whether it recognises the first bytes. When
none does, :func:`unknown_format_message` says what the file looks like instead (a Procmon
stack export, Sysmon output, a PML log, binary data…) and what to do about it.
"""

from __future__ import annotations

import csv
import os
import re

from traceaudit.errors import UnknownFormatError
from traceaudit.formats.input import open_input
from traceaudit.formats.procmon_text.decode import decode_head, looks_binary
from traceaudit.formats.registry import FORMATS, TraceFormat, supported_formats

__all__ = ["detect", "sniff_format", "is_trace", "unknown_format_message"]

_EXPORT_CSV = "In Process Monitor, save the events with File > Save > CSV."
_SYSMON = re.compile(
    r"Sysmon|^\s*TimeCreated\s*:|ProcessGuid\s*[:=]|<Provider Name=\"Microsoft-Windows-Sysmon",
    re.MULTILINE,
)


def sniff_format(head: bytes) -> TraceFormat | None:
    """The first registered format that recognises ``head``, or None."""
    for trace_format in FORMATS:
        if trace_format.sniff(head):
            return trace_format
    return None


def is_trace(head: bytes) -> bool:
    """Whether any registered format recognises ``head`` (picks zip members)."""
    return sniff_format(head) is not None


def detect(path: str | os.PathLike[str]) -> str:
    """The name of the format of the trace at ``path`` (e.g. ``"procmon-csv"``).

    Raises :class:`UnknownFormatError` saying what the file looks like when no reader
    recognises it.
    """
    trace_input = open_input(path, sniff=is_trace)
    trace_format = sniff_format(trace_input.head)
    if trace_format is None:
        raise UnknownFormatError(unknown_format_message(trace_input.name, trace_input.head))
    return trace_format.name


def unknown_format_message(name: str, head: bytes) -> str:
    """``trace.bin: not a trace traceaudit can read (looks like …). Supported: …. <advice>``"""
    looks_like, advice = _describe(name, head)
    return (
        f"{name}: not a trace traceaudit can read (looks like {looks_like}). "
        f"Supported: {supported_formats()}. {advice}"
    )


def _describe(name: str, head: bytes) -> tuple[str, str]:
    """What the content looks like, and what the user should do instead."""
    lower_name = name.lower()
    if not head.strip():
        return "an empty file", _EXPORT_CSV
    if looks_binary(head):
        if lower_name.endswith(".etl"):
            return (
                "binary data named .etl, but without an ETW log header: a damaged or partial trace",
                "Stop the trace session cleanly (wpr -stop / xperf -d) and try the file it writes.",
            )
        return "binary data", _EXPORT_CSV
    text = decode_head(head).lstrip("\ufeff")
    stripped = text.lstrip()
    if not stripped:
        return "an empty file", _EXPORT_CSV
    if stripped.startswith("<"):
        return "an XML or HTML document", _EXPORT_CSV
    if _SYSMON.search(text):
        return (
            "Sysmon event output, which traceaudit does not support",
            "Record the file activity with Process Monitor and save it with File > Save > CSV.",
        )
    first = next((line for line in text.splitlines() if line.strip()), "")
    names = _header_names(first)
    folded = {n.casefold() for n in names}
    if {"frame", "module", "location", "address"} <= folded:
        return (
            "a Procmon stack export with columns Frame, Module, Location, Address, Path, "
            "not an event list",
            "Export the event list instead: in Process Monitor, File > Save > CSV.",
        )
    if len(names) >= 2:
        # Column names help the user see what the file is; anything that does not look like
        # a column name (a data row, a password hash) is never quoted back.
        if all(_COLUMN_NAME.fullmatch(n) for n in names[:6]):
            shown = ", ".join(f"'{n}'" for n in names[:6]) + (", ..." if len(names) > 6 else "")
            return f"a table with columns {shown}, not Process Monitor's", _EXPORT_CSV
        return f"a table of {len(names)} columns, not Process Monitor's", _EXPORT_CSV
    # The content itself is never echoed: a file given by mistake may hold secrets.
    return "plain text with no header traceaudit knows", _EXPORT_CSV


_COLUMN_NAME = re.compile(r"[A-Za-z][A-Za-z &/()._-]{0,29}")


def _header_names(line: str) -> list[str]:
    for delimiter in (",", "\t", ";"):
        if line.count(delimiter) >= 1:
            clean = line.replace("\x00", "")  # Python 3.10's csv refuses NUL bytes
            return [n.strip() for n in next(csv.reader([clean], delimiter=delimiter), [])]
    return []
