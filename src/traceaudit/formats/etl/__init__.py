"""Event Tracing for Windows traces (``.etl``): the NT Kernel Logger's FileIo events and the
Microsoft-Windows-Kernel-File provider.

``reader`` reads a trace (:func:`read_etl`); ``buffers`` walks its buffers (``xpress``
decompresses them), ``layout`` declares the event structures, ``events`` decodes them,
``columns`` builds the event schema with exact FILE_OBJECT handles, and ``profile`` prints
how to record a trace the analysis can use (``traceaudit capture-profile``).
"""

from traceaudit.formats.etl.profile import capture_profile
from traceaudit.formats.etl.reader import (
    FORMAT_NAME,
    read,
    read_etl,
    read_etl_file_events,
    read_etl_header,
    read_etl_processes,
    sniff,
)

__all__ = [
    "FORMAT_NAME",
    "capture_profile",
    "read",
    "read_etl",
    "read_etl_file_events",
    "read_etl_header",
    "read_etl_processes",
    "sniff",
]
