"""The binary layout of an ETW ``.etl`` file, declared as numpy structured dtypes and tables.

An ETL file is a sequence of trace buffers::

    buffer:  WMI_BUFFER_HEADER (0x48 bytes, BUFFER_HEADER_DTYPE)
             records, each 8-byte aligned, up to SavedOffset/FilledBytes
             (the body is LZ77-Xpress compressed when the header's flags have 0x40)
    record:  a trace header, then the event's payload ("user data")

The first buffer (type HEADER) starts with the logfile header event: a SYSTEM header of
group 0, type 0, whose payload is TRACE_LOGFILE_HEADER (:func:`logfile_header_dtype`)
followed by the logger and log file names. It holds the clock (``ReservedFlags``: 1 QPC,
2 system time, 3 CPU cycles, with ``PerfFreq``/``CpuSpeedInMHz``), ``StartTime``
(FILETIME of the header event's timestamp) and ``PointerSize``.

Record headers, told apart by the byte at +2 (header type) when the byte at +3 has its two
top bits set (a byte with only the top bit set starts a WPP message header):

==================  ====  =====================================================
type                size  layout
==================  ====  =====================================================
SYSTEM32/64 1/2     0x20  :data:`SYSTEM_HEADER_DTYPE` (kernel MOF events)
COMPACT32/64 3/4    0x18  the same without the CPU times
PERFINFO32/64       0x10  :data:`PERFINFO_HEADER_DTYPE` (no thread or process id)
0x10/0x11
FULL_HEADER 0x0A    0x30  :data:`TRACE_HEADER_DTYPE` (EVENT_TRACE_HEADER, MOF with GUID)
/0x14
INSTANCE 0x0B/0x15  0x48  EVENT_INSTANCE_GUID_HEADER (skipped)
EVENT_HEADER        0x50  :data:`EVENT_HEADER_DTYPE` (manifest providers)
0x12/0x13
==================  ====  =====================================================

The system family keeps its total size in the u16 at +4 and carries extra 8-byte items
after the header when its version word has TRACE_HEADER_PEBS_INDEX_FLAG (0x8000) or a PMC
counter count (bits 8-10); the others keep the size in the u16 at +0. An EVENT_HEADER
with EVENT_HEADER_FLAG_EXTENDED_INFO (0x01) is followed by extended data items (stack
traces, SIDs…) before the payload: ``u16 size, u16 type, u16 linkage (bit 0: another item
follows), u16 data size``, each item ``size`` bytes long. The odd header types are 32-bit
(4-byte pointers in the payload), the even ones 64-bit.

Sources: Geoff Chappell's studies of WMI_BUFFER_HEADER, SYSTEM_TRACE_HEADER,
PERFINFO_TRACE_HEADER and EVENT_TRACE_HEADER; Microsoft's EVENT_HEADER and
TRACE_LOGFILE_HEADER documentation; checked byte by byte on the corpus traces.

Payload layouts of the events this reader decodes are in :data:`PAYLOADS`, as field lists
(:func:`payload_dtype` turns one into a packed dtype for a pointer size): the NT Kernel
Logger's FileIo, Process and Thread MOF classes (versions 2 and 3 of FileIo differ in
field order) and the manifest provider Microsoft-Windows-Kernel-File (versions 0 and 1),
from the providers' manifests (docs/formats.md §3).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from traceaudit.formats.binary import FILETIME_UNIX_EPOCH, struct_dtype

__all__ = [
    "BUFFER_HEADER_SIZE",
    "BUFFER_HEADER_DTYPE",
    "BUFFER_FLAG_COMPRESSED",
    "BUFFER_TYPE_HEADER",
    "MAX_BUFFER_SIZE",
    "SYSTEM_HEADER_DTYPE",
    "PERFINFO_HEADER_DTYPE",
    "TRACE_HEADER_DTYPE",
    "EVENT_HEADER_DTYPE",
    "HEADER_SIZES",
    "SIZE_AT_4",
    "SYSTEM_FAMILY",
    "EVENT_HEADERS",
    "TRACE_HEADERS",
    "POINTER_SIZE",
    "EVENT_HEADER_FLAG_EXTENDED_INFO",
    "logfile_header_dtype",
    "GROUP_HEADER",
    "GROUP_PROCESS",
    "GROUP_FILE",
    "GROUP_THREAD",
    "KERNEL_FILE_GUID",
    "KERNEL_PROCESS_GUID",
    "SYSCONFIG_EX_GUID",
    "VOLUME_MAPPING_TYPE",
    "FILEIO_KINDS",
    "KERNEL_FILE_KINDS",
    "PAYLOADS",
    "layout_generation",
    "payload_dtype",
    "FILETIME_UNIX_EPOCH",
]


# ----------------------------------------------------------------------------- buffers

BUFFER_HEADER_SIZE = 0x48
BUFFER_FLAG_COMPRESSED = 0x40
BUFFER_TYPE_HEADER = 4
MAX_BUFFER_SIZE = 16 * 1024 * 1024
"""ETW's largest buffer (EVENT_TRACE_PROPERTIES.BufferSize: 16,384 KB since Windows 8):
a compressed buffer claiming to fill more is damaged."""

BUFFER_HEADER_DTYPE = struct_dtype(
    [
        ("buffer_size", "<u4", 0x00),  # bytes this buffer takes in the file
        ("saved_offset", "<u4", 0x04),
        ("current_offset", "<u4", 0x08),
        ("timestamp", "<u8", 0x10),
        ("sequence", "<i8", 0x18),
        ("processor", "<u2", 0x28),
        ("logger_id", "<u2", 0x2A),
        ("state", "<u4", 0x2C),
        ("filled_bytes", "<u4", 0x30),  # end of the records (uncompressed), from the start
        ("flags", "<u2", 0x34),
        ("buffer_type", "<u2", 0x36),
    ],
    itemsize=BUFFER_HEADER_SIZE,
)

# ----------------------------------------------------------------------------- records

SYSTEM_HEADER_DTYPE = struct_dtype(
    [
        ("version", "<u2", 0x00),  # low byte: class version; 0x8000 / 0x0700: extra items
        ("header_type", "u1", 0x02),
        ("marker", "u1", 0x03),
        ("size", "<u2", 0x04),
        ("opcode", "u1", 0x06),  # HookId low byte: the event type
        ("group", "u1", 0x07),  # HookId high byte: EVENT_TRACE_GROUP_* >> 8
        ("tid", "<u4", 0x08),
        ("pid", "<u4", 0x0C),
        ("time", "<u8", 0x10),
    ],
    itemsize=0x18,
)
"""SYSTEM_TRACE_HEADER (0x20 bytes) and its compact form (0x18): the common 0x18 bytes."""

PERFINFO_HEADER_DTYPE = struct_dtype(
    [
        ("version", "<u2", 0x00),
        ("header_type", "u1", 0x02),
        ("marker", "u1", 0x03),
        ("size", "<u2", 0x04),
        ("opcode", "u1", 0x06),
        ("group", "u1", 0x07),
        ("time", "<u8", 0x08),
    ],
    itemsize=0x10,
)

TRACE_HEADER_DTYPE = struct_dtype(
    [
        ("size", "<u2", 0x00),
        ("header_type", "u1", 0x02),
        ("marker", "u1", 0x03),
        ("class_type", "u1", 0x04),  # the MOF event type (opcode)
        ("level", "u1", 0x05),
        ("version", "<u2", 0x06),
        ("tid", "<u4", 0x08),
        ("pid", "<u4", 0x0C),
        ("time", "<u8", 0x10),
        ("guid", "V16", 0x18),
    ],
    itemsize=0x30,
)
"""EVENT_TRACE_HEADER: classic (MOF) events of user-mode providers, with their GUID."""

EVENT_HEADER_DTYPE = struct_dtype(
    [
        ("size", "<u2", 0x00),
        ("header_type", "u1", 0x02),
        ("marker", "u1", 0x03),
        ("flags", "<u2", 0x04),  # EVENT_HEADER_FLAG_*: 0x01 extended data items follow
        ("property", "<u2", 0x06),
        ("tid", "<u4", 0x08),
        ("pid", "<u4", 0x0C),
        ("time", "<u8", 0x10),
        ("provider", "V16", 0x18),  # GUID, Windows byte order
        ("id", "<u2", 0x28),
        ("version", "u1", 0x2A),
        ("channel", "u1", 0x2B),
        ("level", "u1", 0x2C),
        ("opcode", "u1", 0x2D),
        ("task", "<u2", 0x2E),
        ("keywords", "<u8", 0x30),
    ],
    itemsize=0x50,
)

EVENT_HEADER_FLAG_EXTENDED_INFO = 0x01

SYSTEM_FAMILY = frozenset({0x01, 0x02, 0x03, 0x04, 0x10, 0x11})
TRACE_HEADERS = frozenset({0x0A, 0x14})
EVENT_HEADERS = frozenset({0x12, 0x13})
SIZE_AT_4 = SYSTEM_FAMILY
"""Header types whose total size is the u16 at +4 (all others: the u16 at +0)."""

HEADER_SIZES: dict[int, int] = {
    0x01: 0x20,
    0x02: 0x20,
    0x03: 0x18,
    0x04: 0x18,
    0x10: 0x10,
    0x11: 0x10,
    0x0A: 0x30,
    0x14: 0x30,
    0x0B: 0x48,
    0x15: 0x48,
    0x12: 0x50,
    0x13: 0x50,
}
"""Fixed header size of each header type (before extra items and the payload)."""

POINTER_SIZE: dict[int, int] = {
    0x01: 4,
    0x02: 8,
    0x03: 4,
    0x04: 8,
    0x10: 4,
    0x11: 8,
    0x0A: 4,
    0x14: 8,
    0x0B: 4,
    0x15: 8,
    0x12: 4,
    0x13: 8,
}


@cache
def logfile_header_dtype(pointer: int) -> np.dtype:
    """TRACE_LOGFILE_HEADER as the logfile header event carries it (0x118 bytes for
    64-bit pointers, 0x110 for 32-bit): two name pointers and the 0xB0-byte time-zone
    block move the fields after ``cpu_speed_mhz``."""
    tail = 0x48 + 0xB0 if pointer == 8 else 0x40 + 0xB0
    return struct_dtype(
        [
            ("buffer_size", "<u4", 0x00),
            ("version", "<u4", 0x04),
            ("provider_version", "<u4", 0x08),
            ("processors", "<u4", 0x0C),
            ("end_time", "<u8", 0x10),
            ("timer_resolution", "<u4", 0x18),
            ("max_file_size", "<u4", 0x1C),
            ("log_file_mode", "<u4", 0x20),
            ("buffers_written", "<u4", 0x24),
            ("start_buffers", "<u4", 0x28),
            ("pointer_size", "<u4", 0x2C),
            ("events_lost", "<u4", 0x30),
            ("cpu_speed_mhz", "<u4", 0x34),
            ("boot_time", "<u8", tail),
            ("perf_freq", "<u8", tail + 0x08),
            ("start_time", "<u8", tail + 0x10),
            ("reserved_flags", "<u4", tail + 0x18),  # the clock type
            ("buffers_lost", "<u4", tail + 0x1C),
        ],
        itemsize=tail + 0x20,
    )


# ----------------------------------------------------------------------------- providers

GROUP_HEADER = 0x00
GROUP_PROCESS = 0x03
GROUP_FILE = 0x04
GROUP_THREAD = 0x05

KERNEL_FILE_GUID = bytes.fromhex("2789d0edc49c654eb970c2560fb5c289")
"""Microsoft-Windows-Kernel-File {EDD08927-9CC4-4E65-B970-C2560FB5C289}, as stored."""
KERNEL_PROCESS_GUID = bytes.fromhex("d62cfb227b0e2b42a0c72fad1fd0e716")
"""Microsoft-Windows-Kernel-Process {22FB2CD6-0E7B-422B-A0C7-2FAD1FD0E716}, as stored."""
SYSCONFIG_EX_GUID = bytes.fromhex("91ee799bfdb5c041a2434248e266e9d0")
"""KernelTraceControl's SysConfigEx {9B79EE91-B5FD-41C0-A243-4248E266E9D0}: the
VolumeMapping, SystemPaths and BuildInfo events xperf/WPR/PerfView add on merge."""
VOLUME_MAPPING_TYPE = 35
"""SysConfigEx event type of VolumeMapping: NtPath (wstring), DosPath (wstring)."""

# Kinds, named after the operation they describe. Each maps to a payload layout name.
FILEIO_KINDS: dict[int, str] = {
    0: "name",
    32: "file_create",
    35: "file_delete",
    36: "rundown",
    64: "create",
    65: "cleanup",
    66: "close",
    67: "read",
    68: "write",
    69: "setinfo",
    70: "delete",
    71: "rename",
    72: "direnum",
    73: "flush",
    74: "queryinfo",
    75: "fsctl",
    76: "opend",
    77: "dirnotify",
    79: "delete_path",
    80: "rename_path",
    81: "setlink_path",
}
"""NT Kernel Logger FileIo event types (opcodes) → kind."""

KERNEL_FILE_KINDS: dict[int, str] = {
    10: "name",
    11: "file_delete",
    12: "create",
    13: "cleanup",
    14: "close",
    15: "read",
    16: "write",
    17: "setinfo",
    18: "delete",
    19: "rename",
    20: "direnum",
    21: "flush",
    22: "queryinfo",
    23: "fsctl",
    24: "opend",
    25: "dirnotify",
    26: "delete_path",
    27: "rename_path",
    28: "setlink_path",
    29: "rename",
    30: "create",
}
"""Microsoft-Windows-Kernel-File event ids → kind (29 is "Rename29", 30 CreateNewFile)."""

# Field types: "ptr" (4 or 8 bytes), "u32", "u64", "wstr" (NUL-terminated UTF-16, last).
_NAME = [("file_key", "ptr"), ("name", "wstr")]
_OPEND = [("irp", "ptr"), ("extra", "ptr"), ("status", "u32")]
_CREATE_OLD = [
    ("irp", "ptr"),
    ("ttid", "ptr"),
    ("file_object", "ptr"),
    ("create_options", "u32"),
    ("attributes", "u32"),
    ("share", "u32"),
    ("name", "wstr"),
]
_CREATE_NEW = [
    ("irp", "ptr"),
    ("file_object", "ptr"),
    ("ttid", "u32"),
    ("create_options", "u32"),
    ("attributes", "u32"),
    ("share", "u32"),
    ("name", "wstr"),
]
_SIMPLE_OLD = [("irp", "ptr"), ("ttid", "ptr"), ("file_object", "ptr"), ("file_key", "ptr")]
_SIMPLE_NEW = [("irp", "ptr"), ("file_object", "ptr"), ("file_key", "ptr"), ("ttid", "u32")]
_RW_OLD = [
    ("offset", "u64"),
    ("irp", "ptr"),
    ("ttid", "ptr"),
    ("file_object", "ptr"),
    ("file_key", "ptr"),
    ("io_size", "u32"),
    ("io_flags", "u32"),
]
_RW_NEW = [
    ("offset", "u64"),
    ("irp", "ptr"),
    ("file_object", "ptr"),
    ("file_key", "ptr"),
    ("ttid", "u32"),
    ("io_size", "u32"),
    ("io_flags", "u32"),
]
_INFO_OLD = [
    ("irp", "ptr"),
    ("ttid", "ptr"),
    ("file_object", "ptr"),
    ("file_key", "ptr"),
    ("extra", "ptr"),
    ("info_class", "u32"),
]
_INFO_NEW = [
    ("irp", "ptr"),
    ("file_object", "ptr"),
    ("file_key", "ptr"),
    ("extra", "ptr"),
    ("ttid", "u32"),
    ("info_class", "u32"),
]
_DIR_OLD = [
    ("irp", "ptr"),
    ("ttid", "ptr"),
    ("file_object", "ptr"),
    ("file_key", "ptr"),
    ("io_size", "u32"),
    ("info_class", "u32"),
    ("file_index", "u32"),
    ("name", "wstr"),
]
_DIR_NEW = [
    ("irp", "ptr"),
    ("file_object", "ptr"),
    ("file_key", "ptr"),
    ("ttid", "u32"),
    ("io_size", "u32"),
    ("info_class", "u32"),
    ("file_index", "u32"),
    ("name", "wstr"),
]
_PATH_OLD = [*_INFO_OLD, ("name", "wstr")]
_PATH_NEW = [*_INFO_NEW, ("name", "wstr")]

_OLD = {
    "name": _NAME,
    "file_create": _NAME,
    "file_delete": _NAME,
    "rundown": _NAME,
    "opend": _OPEND,
    "create": _CREATE_OLD,
    "cleanup": _SIMPLE_OLD,
    "close": _SIMPLE_OLD,
    "flush": _SIMPLE_OLD,
    "read": _RW_OLD,
    "write": _RW_OLD,
    "setinfo": _INFO_OLD,
    "delete": _INFO_OLD,
    "rename": _INFO_OLD,
    "queryinfo": _INFO_OLD,
    "fsctl": _INFO_OLD,
    "direnum": _DIR_OLD,
    "dirnotify": _DIR_OLD,
    "delete_path": _PATH_OLD,
    "rename_path": _PATH_OLD,
    "setlink_path": _PATH_OLD,
}
_NEW = {
    **_OLD,
    "create": _CREATE_NEW,
    "cleanup": _SIMPLE_NEW,
    "close": _SIMPLE_NEW,
    "flush": _SIMPLE_NEW,
    "read": _RW_NEW,
    "write": _RW_NEW,
    "setinfo": _INFO_NEW,
    "delete": _INFO_NEW,
    "rename": _INFO_NEW,
    "queryinfo": _INFO_NEW,
    "fsctl": _INFO_NEW,
    "direnum": _DIR_NEW,
    "dirnotify": _DIR_NEW,
    "delete_path": _PATH_NEW,
    "rename_path": _PATH_NEW,
    "setlink_path": _PATH_NEW,
}

PAYLOADS: dict[tuple[str, int], dict[str, list[tuple[str, str]]]] = {
    # (source, layout generation) → kind → fields. FileIo versions 0-2 and Kernel-File
    # version 0 put the thread id second, pointer-sized; FileIo 3+ and Kernel-File 1+
    # move it after the pointers as a u32 (Kernel-File Read/Write v1 add ExtraFlags,
    # which is not read).
    ("fileio", 0): _OLD,
    ("fileio", 1): _NEW,
    ("kernel-file", 0): _OLD,
    ("kernel-file", 1): _NEW,
}


def layout_generation(source: str, version: int) -> int:
    """0 for the old field order, 1 for the new one (see :data:`PAYLOADS`)."""
    if source == "fileio":
        return 1 if version >= 3 else 0
    return 1 if version >= 1 else 0


_SIZES = {"u32": 4, "u64": 8}
_FORMATS = {"u32": "<u4", "u64": "<u8"}


@cache
def _payload_dtype(fields: tuple[tuple[str, str], ...], pointer: int) -> tuple[np.dtype, int]:
    rows, offset = [], 0
    for name, kind in fields:
        if kind == "wstr":
            break
        size = pointer if kind == "ptr" else _SIZES[kind]
        fmt = ("<u8" if pointer == 8 else "<u4") if kind == "ptr" else _FORMATS[kind]
        rows.append((name, fmt, offset))
        offset += size
    return struct_dtype(rows, itemsize=max(offset, 1)), offset


def payload_dtype(fields: list[tuple[str, str]], pointer: int) -> tuple[np.dtype, int]:
    """The packed dtype of a payload's fixed fields and where its string starts (or its
    fixed size when it has none). ETW payloads have no alignment padding."""
    return _payload_dtype(tuple(fields), pointer)
