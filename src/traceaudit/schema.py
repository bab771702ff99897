"""The one event schema every reader produces, and the frames the analysis derives from it.

Every format (Procmon CSV, pasted clipboard rows, PML, XML, ETW) is read into a polars
DataFrame with exactly the columns of :data:`EVENT_SCHEMA`, in that order. Columns a
format cannot fill are null. The analysis never looks at a format-specific column.

Event columns
-------------
``row``              UInt32. 1-based number of the event in its source (data row of a CSV,
                     event index of a PML/ETW file). Stable identity of an event in messages.
``time``             Datetime(ns), no zone: the trace's own clock. Procmon CSV/XML exports are
                     local time of the capturing machine; PML and ETW are UTC. 100 ns precision
                     when the source has it.
``process``          Utf8. Process image name as the source shows it (``MsMpEng.exe``).
``pid``              Int64. Process id.
``tid``              Int64, nullable. Thread id, when the source has a TID column.
``operation``        Utf8. Procmon's operation name (``CreateFile``, ``CloseFile``,
                     ``SetRenameInformationFile``…). Other formats map to these names.
``path``             Utf8. The path operated on, verbatim.
``result``           Utf8. Procmon's display string for the status (``SUCCESS``,
                     ``SHARING VIOLATION``, ``0xC000046F``…), verbatim; empty when pending.
``detail``           Utf8. The raw Detail string, verbatim (unknown keys live on here).
``duration``         Duration(ns), nullable. How long the operation took, when exported.
``event_class``      Utf8. ``File System``, ``Registry``, ``Process``, ``Network`` or
                     ``Profiling``; from the source when it has the column, else derived from
                     the operation name.
``access_mask``      UInt32, nullable. CreateFile's Desired Access as an NT access mask
                     (``Read Attributes, Synchronize`` → 0x00100080). See :data:`ACCESS_BITS`.
``share_mode``       UInt8, nullable. CreateFile's ShareMode as FILE_SHARE_* bits
                     (1 read, 2 write, 4 delete; ``None`` → 0).
``disposition``      Utf8, nullable. CreateFile Disposition (``Open``, ``Create``, ``OpenIf``…).
``create_options``   UInt32, nullable. CreateFile Options as FILE_* create-option bits.
``is_directory``     Boolean, nullable. True for ``Options: Directory``, False for
                     ``Non-Directory File``, null when the open did not say.
``delete_on_close``  Boolean, nullable. ``Options: Delete On Close``.
``open_result``      Utf8, nullable. CreateFile OpenResult (``Opened``, ``Created``…).
``rename_target``    Utf8, nullable. SetRenameInformationFile(Ex) / SetLinkInformationFile
                     ``FileName``: where the path was being renamed to.
``replace_if_exists`` Boolean, nullable. The rename's ReplaceIfExists flag.
``delete_flag``      Boolean, nullable. SetDispositionInformationFile(Ex) ``Delete: True``.
``offset``           Int64, nullable. Read/WriteFile/LockFile Offset (thousands separators
                     removed).
``length``           Int64, nullable. Read/WriteFile/LockFile Length.
``file_object``      UInt64, nullable. The kernel FILE_OBJECT address (ETW only): exact
                     handle identity. Procmon never shows it.

The analysis frames (handles, conflicts, retry chains, windows, timelines) are documented
in the modules that build them and summarised in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

__all__ = [
    "READ_BITS",
    "WRITE_BITS",
    "DELETE_BITS",
    "EVENT_SCHEMA",
    "DETAIL_COLUMNS",
    "ACCESS_BITS",
    "GENERIC_BITS",
    "ATTRIBUTE_ONLY_MASK",
    "CREATE_OPTION_BITS",
    "SHARE_READ",
    "SHARE_WRITE",
    "SHARE_DELETE",
    "PROCESS_EXIT_SCHEMA",
    "Trace",
    "empty_events",
    "conform_events",
]

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.UInt32(),
    "time": pl.Datetime("ns"),
    "process": pl.String(),
    "pid": pl.Int64(),
    "tid": pl.Int64(),
    "operation": pl.String(),
    "path": pl.String(),
    "result": pl.String(),
    "detail": pl.String(),
    "duration": pl.Duration("ns"),
    "event_class": pl.String(),
    "access_mask": pl.UInt32(),
    "share_mode": pl.UInt8(),
    "disposition": pl.String(),
    "create_options": pl.UInt32(),
    "is_directory": pl.Boolean(),
    "delete_on_close": pl.Boolean(),
    "open_result": pl.String(),
    "rename_target": pl.String(),
    "replace_if_exists": pl.Boolean(),
    "delete_flag": pl.Boolean(),
    "offset": pl.Int64(),
    "length": pl.Int64(),
    "file_object": pl.UInt64(),
}

DETAIL_COLUMNS: tuple[str, ...] = (
    "access_mask",
    "share_mode",
    "disposition",
    "create_options",
    "is_directory",
    "delete_on_close",
    "open_result",
    "rename_target",
    "replace_if_exists",
    "delete_flag",
    "offset",
    "length",
)
"""The typed columns parsed out of Procmon's Detail (a slice of :data:`EVENT_SCHEMA`)."""

# FILE_SHARE_* (winnt.h)
SHARE_READ = 0x1
SHARE_WRITE = 0x2
SHARE_DELETE = 0x4

# The access-mask bits that take part in sharing, by kind (generic rights mapped the way the
# file system maps them; MAXIMUM_ALLOWED counts as everything). See analysis/rules.py.
READ_BITS = 0x0001 | 0x0020 | 0x80000000 | 0x20000000 | 0x10000000 | 0x02000000
WRITE_BITS = 0x0002 | 0x0004 | 0x40000000 | 0x10000000 | 0x02000000
DELETE_BITS = 0x00010000 | 0x10000000 | 0x02000000

# Procmon's names for access-mask bits, as it prints them in "Desired Access:".
# File-specific rights share bit values with directory rights; Procmon prints both names
# joined with "/" (e.g. "Read Data/List Directory"), so both spellings are listed.
ACCESS_BITS: dict[str, int] = {
    "Read Data/List Directory": 0x0001,
    "Read Data": 0x0001,
    "List Directory": 0x0001,
    "Write Data/Add File": 0x0002,
    "Write Data": 0x0002,
    "Add File": 0x0002,
    "Append Data/Add Subdirectory/Create Pipe Instance": 0x0004,
    "Append Data": 0x0004,
    "Add Subdirectory": 0x0004,
    "Read EA": 0x0008,
    "Write EA": 0x0010,
    "Execute/Traverse": 0x0020,
    "Execute": 0x0020,
    "Traverse": 0x0020,
    "Delete Child": 0x0040,
    "Read Attributes": 0x0080,
    "Write Attributes": 0x0100,
    "Delete": 0x00010000,
    "Read Control": 0x00020000,
    "Write DAC": 0x00040000,
    "Write Owner": 0x00080000,
    "Synchronize": 0x00100000,
    "Access System Security": 0x01000000,
    "Maximum Allowed": 0x02000000,
    "Generic All": 0x10000000,
    "Generic Execute": 0x20000000,
    "Generic Write": 0x40000000,
    "Generic Read": 0x80000000,
    # Procmon abbreviates the common combinations:
    "All Access": 0x001F01FF,
    "Generic Read/Write": 0xC0000000,
    "Generic Read/Execute": 0xA0000000,
    "Generic Write/Execute": 0x60000000,
    "Generic Read/Write/Execute": 0xE0000000,
}

GENERIC_BITS = {
    "read": 0x80000000,
    "write": 0x40000000,
    "execute": 0x20000000,
    "all": 0x10000000,
}

# Rights that never take part in share-mode checks (Windows checks sharing only for
# FILE_READ_DATA, FILE_WRITE_DATA, FILE_APPEND_DATA, FILE_EXECUTE and DELETE). An open that
# asks for nothing outside this mask is an "attribute-only" open and never conflicts.
ATTRIBUTE_ONLY_MASK = (
    0x0080  # Read Attributes
    | 0x0100  # Write Attributes
    | 0x0008  # Read EA
    | 0x0010  # Write EA
    | 0x00020000  # Read Control
    | 0x00040000  # Write DAC
    | 0x00080000  # Write Owner
    | 0x00100000  # Synchronize
    | 0x01000000  # Access System Security
)

# FILE_* create options (ntifs.h), by Procmon's display names.
CREATE_OPTION_BITS: dict[str, int] = {
    "Directory": 0x00000001,
    "Write Through": 0x00000002,
    "Sequential Access": 0x00000004,
    "No Buffering": 0x00000008,
    "Synchronous IO Alert": 0x00000010,
    "Synchronous IO Non-Alert": 0x00000020,
    "Non-Directory File": 0x00000040,
    "Create Tree Connection": 0x00000080,
    "Complete If Oplocked": 0x00000100,
    "No EA Knowledge": 0x00000200,
    "Open For Recovery": 0x00000400,
    "Random Access": 0x00000800,
    "Delete On Close": 0x00001000,
    "Open By ID": 0x00002000,
    "Open For Backup": 0x00004000,
    "No Compression": 0x00008000,
    "Open Requiring Oplock": 0x00010000,
    "Disallow Exclusive": 0x00020000,
    "Session Aware": 0x00040000,
    "Reserve OpFilter": 0x00100000,
    "Open Reparse Point": 0x00200000,
    "Open No Recall": 0x00400000,
    "Open For Free Space Query": 0x00800000,
}


def empty_events() -> pl.DataFrame:
    """An event frame with no rows and the full schema."""
    return pl.DataFrame(schema=EVENT_SCHEMA)


def conform_events(frame: pl.DataFrame) -> pl.DataFrame:
    """Add missing schema columns as nulls, cast to the schema's types, order the columns.

    Readers build whatever columns they can and call this last, so every format yields
    exactly :data:`EVENT_SCHEMA`.
    """
    exprs = []
    for name, dtype in EVENT_SCHEMA.items():
        if name in frame.columns:
            exprs.append(pl.col(name).cast(dtype))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return frame.select(exprs)


PROCESS_EXIT_SCHEMA: dict[str, pl.DataType] = {
    "pid": pl.Int64(),
    "process": pl.String(),
    "started": pl.Datetime("ns"),
    "exited": pl.Datetime("ns"),
}
"""Processes a capture's own process table says exited (:attr:`Trace.process_exits`):
``started`` (nullable: before the capture, or unknown) and ``exited``, on the events' clock."""


@dataclass(frozen=True)
class Trace:
    """Events read from one trace file, with what the reader learned along the way.

    ``skipped`` counts damaged rows by reason; ``skipped_rows`` keeps the first few
    locations (e.g. ``"line 1234"``) for the report. ``time_precision_lost`` is set when
    the times were truncated (Excel re-saves keep only ``mm:ss.f``): ordering and lock
    windows are then unreliable. ``clock`` is ``"local"`` or ``"utc"``. ``truncated`` is set
    when the reader found the file cut short (a PML not closed cleanly, an XML that ends
    abruptly, an ETL whose last buffer is missing): events after the cut are lost.

    ``process_exits`` (:data:`PROCESS_EXIT_SCHEMA`) holds the exits the capture's process
    table records, where the format has one (PML): Process Monitor notes every process's
    start and exit there even when a filter dropped the ``Process Exit`` events themselves,
    as a capture filtered on a path does. ``None`` for formats without such a table.
    """

    events: pl.DataFrame
    format: str
    source: Path | None = None
    clock: str = "local"
    warnings: tuple[str, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_rows: tuple[str, ...] = ()
    time_precision_lost: bool = False
    truncated: bool = False
    process_exits: pl.DataFrame | None = None

    @property
    def name(self) -> str:
        return self.source.name if self.source is not None else "<memory>"
