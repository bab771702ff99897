"""A Process Monitor configuration (``.pmc``) that captures what traceaudit needs.

``traceaudit capture-profile --procmon C:\\path\\to\\project`` writes one: Procmon loads it
with ``/LoadConfig`` and then keeps only file-system activity on that folder and below it,
from every process, and drops everything else while capturing.

**What it keeps, and why.** The filter is on the *path*, never on a process: the process
that holds the file (an antivirus, the search indexer, a build server) is not the one that
fails, and a capture filtered on the failing process cannot name it (the uv thread,
rust-lang/rustup#1912). Process Monitor ORs the rules on one column and ANDs the columns
(an event must match an Include rule of every column that has one), so the two Include
rules on Path (the folder itself, and everything below it) are the whole selection. Events
without a path do not pass them: Process Start/Exit and Thread Create/Exit are not in such a
capture as events. Nothing the analysis needs is lost with them. Handles a process still has
when it exits show up anyway, as the CloseFile events the kernel's cleanup of its handles
produces; and the PML's process table, which Process Monitor writes whatever the filter
kept, records each process's exit, which the analysis takes as the end of its mapped
sections (:mod:`traceaudit.formats.pml.exits`).

The Exclude rules are Process Monitor's own defaults, minus those that could hide a holder:
Procmon's own processes (its backing-file writes), the raw IRP/Fast I/O names shown only in
advanced output, NTFS metadata files and the page file (which matter only for a drive root),
and the registry, network and profiling event classes. Not the ``System`` process, which
Procmon's defaults exclude: System holds files too (the cache manager's lazy writer and the
mapped page writer, the SMB server serving a share, drivers' own opens), and not
``Procexp.exe`` or ``Autoruns.exe`` either, which open executables to check signatures. No
antivirus or indexer is ever excluded by name: they are the holders this capture is for.

Options: *Drop Filtered Events* on (``DestructiveFilter``: events the filter rejects are not
written, so a long capture stays small), *Enable Advanced Output* off (``AdvancedMode``:
operations keep the names traceaudit reads, CreateFile and CloseFile, not IRP_MJ_CREATE),
profiling events off; the columns a CSV export needs (:data:`COLUMNS`); failures highlighted.

**The layout.** There is no official description; procmon-parser (MIT) reverse-engineered it
(its ``docs/PMC Format.md``). A file is a sequence of records, each::

    u32 record size (= the next field + data size)
    u32 0x10 (the size of these four fields)
    u32 0x10 + the name's size in bytes
    u32 the data's size in bytes
    UTF-16LE name, NUL-terminated
    data

Data by record: integers are u32; ``Columns`` is 64 u16 widths in pixels; ``ColumnMap`` 64
u32 column ids (0 after the last); rule lists are u8 1, u32 count, then per rule: u32 column
id, u32 relation, u8 action (1 Include, 0 Exclude), u32 value size in bytes (with its NUL),
UTF-16LE value with NUL, u32 the value as an integer (digits only, else 0), u32 0.
All little-endian. This module writes only; the tests read its output back with
procmon-parser, which traceaudit does not import at run time.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from traceaudit._atomic import write_atomically
from traceaudit._outputs import check_output_file
from traceaudit._safe_text import printable
from traceaudit.errors import UsageError

__all__ = [
    "COLUMNS",
    "DEFAULT_OUTPUT",
    "Column",
    "ProcmonConfig",
    "Relation",
    "Rule",
    "folder_config",
    "procmon_folder",
    "write_procmon_config",
]

DEFAULT_OUTPUT = "traceaudit.pmc"
"""The file ``capture-profile --procmon`` writes without ``-o``, in the current folder."""


class Column(IntEnum):
    """Procmon's column ids (its resource ids; procmon-parser's ``consts.Column``)."""

    NONE = 0
    DATE_AND_TIME = 40052
    PROCESS_NAME = 40053
    PID = 40054
    OPERATION = 40055
    RESULT = 40056
    DETAIL = 40057
    PATH = 40071
    TID = 40072
    DURATION = 40077
    TIME_OF_DAY = 40078
    EVENT_CLASS = 40082


class Relation(IntEnum):
    """How a rule compares a column with its value (case-insensitively, in Procmon)."""

    IS = 0
    IS_NOT = 1
    LESS_THAN = 2
    MORE_THAN = 3
    BEGINS_WITH = 4
    ENDS_WITH = 5
    CONTAINS = 6
    EXCLUDES = 7


@dataclass(frozen=True)
class Rule:
    """One filter (or highlight) rule: if ``column`` ``relation`` ``value``, include or
    exclude the event."""

    column: Column
    relation: Relation
    value: str
    include: bool


COLUMNS: tuple[tuple[Column, int], ...] = (
    (Column.TIME_OF_DAY, 100),
    (Column.PROCESS_NAME, 120),
    (Column.PID, 50),
    (Column.OPERATION, 130),
    (Column.PATH, 420),
    (Column.RESULT, 130),
    (Column.DETAIL, 300),
    (Column.TID, 50),
    (Column.DURATION, 70),
    (Column.DATE_AND_TIME, 140),
    (Column.EVENT_CLASS, 80),
)
"""The columns shown, with their widths: those traceaudit's CSV reader uses, so that
*File → Save… → CSV* exports what it needs (Date & Time gives the date; no ``--date``)."""

_COLUMN_SLOTS = 64  # Columns and ColumnMap always have 64 entries

_PROCMON_PROCESSES = ("Procmon.exe", "Procmon64.exe", "Procmon64a.exe")
_NTFS_METADATA = (
    "pagefile.sys",
    "$Mft",
    "$MftMirr",
    "$LogFile",
    "$Volume",
    "$AttrDef",
    "$Root",
    "$Bitmap",
    "$Boot",
    "$BadClus",
    "$Secure",
    "$UpCase",
)
_HIDDEN_EVENT_CLASSES = ("Registry", "Network", "Profiling")

EXCLUDE_RULES: tuple[Rule, ...] = (
    # Procmon itself: its writes to the backing file. Never "System" (it holds files: the
    # lazy writer, the mapped page writer, the SMB server, drivers) and never an
    # antivirus or indexer: the holders are what the capture is for.
    *(Rule(Column.PROCESS_NAME, Relation.IS, name, False) for name in _PROCMON_PROCESSES),
    # Raw IRP and Fast I/O names appear only where Procmon has no friendly name for an
    # operation; opens, closes, renames and deletes all have one.
    Rule(Column.OPERATION, Relation.BEGINS_WITH, "IRP_MJ_", False),
    Rule(Column.OPERATION, Relation.BEGINS_WITH, "FASTIO_", False),
    Rule(Column.RESULT, Relation.BEGINS_WITH, "FAST IO", False),
    # NTFS metadata and the page file: only ever under a drive root.
    *(Rule(Column.PATH, Relation.ENDS_WITH, name, False) for name in _NTFS_METADATA),
    Rule(Column.PATH, Relation.CONTAINS, "$Extend", False),
    *(Rule(Column.EVENT_CLASS, Relation.IS, name, False) for name in _HIDDEN_EVENT_CLASSES),
)
"""Procmon's default exclusions, less those that could hide a holder, plus the event
classes traceaudit does not read."""

HIGHLIGHT_RULES: tuple[Rule, ...] = (
    Rule(Column.RESULT, Relation.IS, "SHARING VIOLATION", True),
    Rule(Column.RESULT, Relation.IS, "ACCESS DENIED", True),
)
"""The failures traceaudit explains, highlighted in Procmon's window."""


@dataclass(frozen=True)
class ProcmonConfig:
    """The options a ``.pmc`` sets; :meth:`to_bytes` is the file."""

    filter_rules: tuple[Rule, ...]
    highlight_rules: tuple[Rule, ...] = HIGHLIGHT_RULES
    columns: tuple[tuple[Column, int], ...] = COLUMNS
    drop_filtered: bool = True
    advanced_output: bool = False
    profiling: bool = False

    def to_bytes(self) -> bytes:
        """The configuration file, records in the order Procmon itself exports them."""
        if len(self.columns) > _COLUMN_SLOTS:
            raise ValueError(f"at most {_COLUMN_SLOTS} columns, not {len(self.columns)}")
        padding = _COLUMN_SLOTS - len(self.columns)
        widths = [width for _, width in self.columns] + [0] * padding
        ids = [int(column) for column, _ in self.columns] + [0] * padding
        return b"".join(
            (
                _record("Columns", struct.pack(f"<{_COLUMN_SLOTS}H", *widths)),
                _record("ColumnCount", _u32(len(self.columns))),
                _record("ColumnMap", struct.pack(f"<{_COLUMN_SLOTS}I", *ids)),
                _record("AdvancedMode", _u32(int(self.advanced_output))),
                _record("Profiling", _u32(int(self.profiling))),
                _record("DestructiveFilter", _u32(int(self.drop_filtered))),
                _record("FilterRules", _rules(self.filter_rules)),
                _record("HighlightRules", _rules(self.highlight_rules)),
            )
        )


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _utf16z(text: str) -> bytes:
    """UTF-16LE with a NUL; nothing at all for an empty string (as Procmon writes it)."""
    return (text + "\0").encode("utf-16-le") if text else b""


def _record(name: str, data: bytes) -> bytes:
    header_and_name = 0x10 + len(_utf16z(name))
    head = struct.pack("<4I", header_and_name + len(data), 0x10, header_and_name, len(data))
    return head + _utf16z(name) + data


def _rule(rule: Rule) -> bytes:
    value = _utf16z(rule.value)
    number = int(rule.value) if rule.value.isascii() and rule.value.isdigit() else 0
    return b"".join(
        (
            struct.pack("<IIBI", rule.column, rule.relation, int(rule.include), len(value)),
            value,
            struct.pack("<II", number, 0),
        )
    )


def _rules(rules: Iterable[Rule]) -> bytes:
    listed = list(rules)
    return struct.pack("<BI", 1, len(listed)) + b"".join(_rule(r) for r in listed)


# -- the folder ---------------------------------------------------------------------------

_DRIVE = re.compile(r"[A-Za-z]:")
_BAD_CHARACTERS = re.compile(r'[<>"|?*\x00-\x1f]')
_EXAMPLE = r"C:\path\to\project or \\server\share\project"


def _shown(text: str) -> str:
    """The user's text in a message: quoted as typed (no doubled backslashes), escaped, cut."""
    shown = printable(text, newlines=False)
    return f"'{shown if len(shown) <= 120 else shown[:119] + '…'}'"


def procmon_folder(text: str) -> str:
    """``text`` as Procmon shows paths: ``C:\\...`` or ``\\\\server\\share\\...``,
    backslashes, no trailing one (except a drive root), the drive letter upper case.

    Raises :class:`UsageError` for an empty, relative or malformed path.
    """
    option = f"--procmon {_shown(text)}"
    path = text.strip()
    if not path:
        raise UsageError(
            f"--procmon: the folder is empty. Give the folder the failing tool works in, in "
            f"full: {_EXAMPLE}."
        )
    if path.endswith('"'):
        raise UsageError(
            f'{option}: ends with a quote: a backslash before a closing quote (\\") escapes '
            "it on Windows. Leave out the trailing backslash."
        )
    for prefix, replacement in (("\\\\?\\UNC\\", "\\\\"), ("\\\\?\\", ""), ("\\\\.\\", "")):
        if path.startswith(prefix):
            path = replacement + path[len(prefix) :]
            break
    path = path.replace("/", "\\")
    if _DRIVE.match(path):
        if path[2:3] != "\\":
            raise UsageError(
                f"{option}: a drive without a folder after it ({path[:2]} alone is relative "
                f"to that drive's current folder). Give the path in full: {_EXAMPLE}."
            )
        root, rest = path[:2].upper() + "\\", path[3:]
    elif path.startswith("\\\\"):
        parts = path[2:].split("\\")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise UsageError(
                f"{option}: a network path needs a server and a share: \\\\server\\share\\folder."
            )
        root, rest = "\\\\" + parts[0] + "\\" + parts[1], "\\".join(parts[2:])
    else:
        raise UsageError(
            f"{option}: not a full Windows path. Give the folder the failing tool works in, "
            f"in full: {_EXAMPLE}."
        )
    parts = [p for p in rest.split("\\") if p]
    bad = _BAD_CHARACTERS.search(root + rest) or re.search(":", rest)
    if bad:
        raise UsageError(
            f"{option}: '{printable(bad.group(), newlines=False)}' cannot be in a Windows "
            f"path. Give the folder in full: {_EXAMPLE}."
        )
    if any(p in (".", "..") for p in parts):
        raise UsageError(
            f"{option}: holds '.' or '..' parts, which Procmon never shows in a path. Give "
            "the folder without them."
        )
    if root.endswith("\\"):  # a drive root: C:\ and what follows
        return root + "\\".join(parts)
    return "\\".join([root, *parts])


def folder_config(folder: str) -> ProcmonConfig:
    """The configuration for a capture of ``folder`` (already :func:`procmon_folder`)."""
    selection: tuple[Rule, ...]
    if folder.endswith("\\"):  # a drive root: everything on it
        selection = (Rule(Column.PATH, Relation.BEGINS_WITH, folder, True),)
    else:
        selection = (
            Rule(Column.PATH, Relation.IS, folder, True),  # the folder itself (its rename)
            Rule(Column.PATH, Relation.BEGINS_WITH, folder + "\\", True),
        )
    return ProcmonConfig(filter_rules=selection + EXCLUDE_RULES)


def _is_pmc(path: Path) -> bool:
    """Whether ``path`` starts like a configuration file (its first record's header)."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if len(head) < 16:
        return False
    size, header, header_and_name, data = struct.unpack("<4I", head)
    return bool(header == 0x10 and header_and_name > 0x10 and size == header_and_name + data)


def write_procmon_config(
    folder: str, output: str | os.PathLike[str] = DEFAULT_OUTPUT
) -> tuple[Path, str]:
    """Write the configuration for a capture of ``folder`` to ``output``; return the file
    and the folder as the filter has it.

    The file is written atomically. An existing file is replaced only if it is empty or a
    configuration file already: a trace or anything else named by mistake is kept.
    """
    where = procmon_folder(folder)
    target = check_output_file(output, (), "Procmon configuration")
    if target.is_file() and target.stat().st_size and not _is_pmc(target):
        raise UsageError(
            f"{target}: exists and is not a Process Monitor configuration; refusing to "
            "replace it. Give another file name with -o."
        )
    write_atomically(target, folder_config(where).to_bytes())
    return target, where
