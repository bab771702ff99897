"""Process Monitor's column names, written once for every reader, writer and redactor.

Procmon exports the columns its user chose, in their order, under these names (its own
``consts`` table); a fresh install shows the seven :data:`DEFAULT_COLUMNS`, which are also
the seven tab-separated fields of rows copied from its window.
"""

from __future__ import annotations

__all__ = ["PROCMON_COLUMNS", "DEFAULT_COLUMNS", "CLIPBOARD_COLUMNS"]

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
"""Every column Procmon can export."""

DEFAULT_COLUMNS: tuple[str, ...] = PROCMON_COLUMNS[:7]
"""The 7 columns a fresh Procmon install shows and exports: Time of Day, Process Name, PID,
Operation, Path, Result, Detail."""

CLIPBOARD_COLUMNS: tuple[str, ...] = DEFAULT_COLUMNS
"""The fields of a row copied from Procmon's window (Ctrl+C), in order."""
