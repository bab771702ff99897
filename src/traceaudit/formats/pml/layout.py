"""The binary layout of a Process Monitor PML file, declared as numpy structured dtypes.

A PML file (versions 7 and 9 share this layout) is::

    0x000  header (0x3A8 bytes, HEADER_DTYPE)
    0x3A8  events, back to back: EVENT_HEADER_DTYPE, stack (depth × pointer), details,
           and optionally an "extra details" block (u16 size + bytes) at extra_offset
    ...    event offset array: number_of_events × OFFSET_ENTRY_DTYPE, in display order
    ...    process table:  u32 count, u32 index[count], u32 offset[count], records
    ...    strings table:  u32 count, u32 offset[count], strings (u32 byte size + UTF-16LE)
    ...    icon table (not read)
    ...    hosts table (u32 count; 16-byte IP, u32 size, UTF-16 name) and ports table
           (u32 count; u16 port, u16 is_tcp, u32 size, UTF-16 name), to the end of file

Pointers are 4 or 8 bytes (``is_64bit`` in the header), which moves some fields: those
layouts are functions of the pointer size below. Offsets and field meanings follow
procmon-parser's ``docs/PML Format.md`` (MIT) and procmon-reader (MIT), and were checked
against Procmon's own CSV export of the same captures.

Within an event's details, the first bytes depend on the event class (path offsets:
:func:`file_system_path_info`, :data:`REGISTRY_PATH_PREFIX`, …); typed fields of the
file-system operations the analysis needs are declared in :func:`create_file_dtype` and
its neighbours, relative to the start of the details.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from traceaudit.formats.binary import FILETIME_UNIX_EPOCH, struct_dtype

__all__ = [
    "PROCESS",
    "REGISTRY",
    "FILE_SYSTEM",
    "PROFILING",
    "NETWORK",
    "IPC",
    "PROCESS_CREATE_PATH",
    "path_offsets",
    "HEADER_SIZE",
    "HEADER_DTYPE",
    "EVENT_HEADER_DTYPE",
    "OFFSET_ENTRY_DTYPE",
    "SUPPORTED_VERSIONS",
    "process_record_dtype",
    "file_system_path_info",
    "REGISTRY_PATH_PREFIX",
    "create_file_dtype",
    "read_write_dtype",
    "lock_dtype",
    "NETWORK_DTYPE",
    "FILETIME_UNIX_EPOCH",
]

HEADER_SIZE = 0x3A8
SUPPORTED_VERSIONS = (7, 9)
"""Header versions read: 9 (current Procmon 3.x) and 7 (Procmon 2.x, as in the 2013
corpus capture), which has the same file layout (checked against Procmon's CSV of it)."""


HEADER_DTYPE = struct_dtype(
    [
        ("magic", "S4", 0x000),
        ("version", "<u4", 0x004),
        ("is_64bit", "<u4", 0x008),
        ("computer_name", "V32", 0x00C),  # UTF-16LE, NUL padded
        ("system_root", "V520", 0x02C),  # UTF-16LE, NUL padded
        ("number_of_events", "<u4", 0x234),
        ("events_offset", "<u8", 0x240),
        ("event_offsets_offset", "<u8", 0x248),
        ("process_table_offset", "<u8", 0x250),
        ("strings_table_offset", "<u8", 0x258),
        ("icon_table_offset", "<u8", 0x260),
        ("windows_major", "<u4", 0x274),
        ("windows_minor", "<u4", 0x278),
        ("windows_build", "<u4", 0x27C),
        ("windows_revision", "<u4", 0x280),
        ("service_pack", "V50", 0x284),
        ("logical_processors", "<u4", 0x38C),
        ("ram_bytes", "<u8", 0x390),
        ("header_size", "<u8", 0x398),
        ("hosts_and_ports_offset", "<u8", 0x3A0),
    ],
    itemsize=HEADER_SIZE,
)

EVENT_HEADER_DTYPE = struct_dtype(
    [
        ("process_index", "<u4", 0),
        ("tid", "<u4", 4),
        ("event_class", "<u4", 8),
        ("operation", "<u2", 12),
        ("duration", "<u8", 20),  # 100 ns ticks
        ("time", "<u8", 28),  # FILETIME, UTC
        ("result", "<u4", 36),  # NTSTATUS
        ("stack_depth", "<u2", 40),  # number of pointers that follow the header
        ("details_size", "<u4", 44),
        ("extra_offset", "<u4", 48),  # from the event start; 0 = no extra details
    ],
    itemsize=52,
)

OFFSET_ENTRY_DTYPE = struct_dtype([("offset", "<u4", 0), ("flags", "u1", 4)], itemsize=5)
"""One entry of the event offset array. Bit 0 of ``flags`` is bit 32 of the offset
(files over 4 GiB), as procmon-reader reads it; in a file over 8 GiB the whole byte is
read as bits 32 to 39 (see :func:`~traceaudit.formats.pml.events.index_offsets`)."""


@cache
def process_record_dtype(pointer: int) -> np.dtype:
    """The fixed part of a process-table record; modules follow it (not read).

    String fields are indexes into the strings table. ``authentication_id`` is the
    logon session LUID (shown ``00000000:0000fde3``).
    """
    return struct_dtype(
        [
            ("process_index", "<u4", 0),
            ("pid", "<u4", 4),
            ("parent_pid", "<u4", 8),
            ("parent_index", "<u4", 12),
            ("authentication_id", "<u8", 16),
            ("session", "<u4", 24),
            ("start_time", "<u8", 32),
            ("end_time", "<u8", 40),
            ("virtualized", "<u4", 48),
            ("is_64bit", "<u4", 52),
            ("integrity", "<u4", 56),
            ("user", "<u4", 60),
            ("name", "<u4", 64),
            ("image_path", "<u4", 68),
            ("command_line", "<u4", 72),
            ("company", "<u4", 76),
            ("version", "<u4", 80),
            ("description", "<u4", 84),
        ],
        itemsize=100 + pointer,
    )


PROCESS, REGISTRY, FILE_SYSTEM, PROFILING, NETWORK, IPC = 1, 2, 3, 4, 5, 6
"""Event class numbers."""

LOAD_IMAGE, PROCESS_DEFINED, PROCESS_CREATE = 5, 0, 1
PROCESS_CREATE_PATH = 0x2E
"""Process Create details: u32 ?, u32 PID, 0x24 bytes, u8 and u8 sizes of two SIDs, then
the path's size word at 0x2E, the command line's at 0x30, 2 bytes, the two SIDs, the path
and the command line."""


def path_offsets(event_class: int, operation: int, pointer: int) -> tuple[int, int] | None:
    """Where an event's path is, relative to its details: (size word, first character).

    None for events without a stored path (network paths are built from addresses;
    Process Create's path moves with the SID sizes, see :data:`PROCESS_CREATE_PATH`).
    """
    if event_class in (FILE_SYSTEM, IPC):
        at = file_system_path_info(pointer)
        return at, at + 4
    if event_class == REGISTRY:
        return 0, 2 + REGISTRY_PATH_PREFIX.get(operation, 0)
    if event_class == PROCESS and operation == LOAD_IMAGE:  # image base, u32 size, path
        return pointer + 4, pointer + 8
    return None


def file_system_path_info(pointer: int) -> int:
    """Offset of the path's u16 size word in file-system (and IPC) details.

    Details start with the sub-operation byte, 3 bytes of padding and a block of
    ``5 * pointer + 0x14`` bytes copied from the IRP's parameters; then the u16 size word,
    2 bytes of padding, and the path.
    """
    return 4 + 5 * pointer + 0x14


# Registry details start with the path's size word; these operations put fields between
# it and the path (bytes after the size word).
REGISTRY_PATH_PREFIX: dict[int, int] = {
    0: 6,  # RegOpenKey: u16 ?, u32 desired access
    1: 6,  # RegCreateKey
    3: 10,  # RegQueryKey: u16 ?, u32 length, u32 information class
    4: 14,  # RegSetValue: u16 ?, u32 type, u32 length, u32 data length
    5: 10,  # RegQueryValue
    6: 14,  # RegEnumValue: u16 ?, u32 length, u32 index, u32 information class
    7: 14,  # RegEnumKey
    8: 14,  # RegSetInfoKey: u16 ?, u32 class, u32 ?, u16 length, u16 ?
    12: 2,  # RegLoadKey: u16 size word of the hive path, which follows the key path
    14: 2,  # RegRenameKey: u16 size word of the new name
}


# Typed file-system detail fields, relative to the start of the details. ``block`` is the
# IRP-parameter block at offset 4; 64-bit captures pad ULONGs that precede a pointer.


@cache
def create_file_dtype(pointer: int) -> np.dtype:
    """CreateFile: Create.Options (disposition in the top byte), FileAttributes,
    ShareAccess and AllocationSize from the parameter block."""
    wide = pointer == 8
    block = 4
    options = block + (0x14 if wide else 0x10)
    attributes = options + (8 if wide else 4)
    return struct_dtype(
        [
            ("sub_operation", "u1", 0),
            ("options", "<u4", options),
            ("attributes", "<u2", attributes),
            ("share_mode", "<u2", attributes + 2),
            ("allocation", "<u4", attributes + 4 + 4 + 2 * pointer),
        ],
        itemsize=file_system_path_info(pointer),
    )


@cache
def read_write_dtype(pointer: int) -> np.dtype:
    """ReadFile / WriteFile: I/O flags and priority, Length and ByteOffset."""
    wide = pointer == 8
    block = 4
    return struct_dtype(
        [
            ("sub_operation", "u1", 0),
            ("flags", "<u4", block + 4),
            ("length", "<u4", block + 12),
            ("offset", "<i8", block + (28 if wide else 20)),
        ],
        itemsize=file_system_path_info(pointer),
    )


@cache
def lock_dtype(pointer: int) -> np.dtype:
    """LockFile / UnlockFile*: ByteOffset, FailImmediately and ExclusiveLock bytes.

    The Length follows the path, pointer-sized (a 32-bit capture shows only the low
    32 bits, as Procmon does)."""
    block = 4
    return struct_dtype(
        [
            ("sub_operation", "u1", 0),
            ("offset", "<i8", block + 12 + 2 * pointer),
            ("fail_immediately", "u1", block + 20 + 3 * pointer),
            ("exclusive", "u1", block + 21 + 3 * pointer),
        ],
        itemsize=file_system_path_info(pointer),
    )


NETWORK_DTYPE = struct_dtype(
    [
        ("flags", "<u2", 0),  # bit 0: source IPv4, bit 1: destination IPv4, bit 2: TCP
        ("length", "<u4", 4),
        ("source_ip", "V16", 8),
        ("dest_ip", "V16", 24),
        ("source_port", "<u2", 40),
        ("dest_port", "<u2", 42),
    ],
    itemsize=44,
)
"""Network details; a UTF-16 multi-string of ``key, value`` pairs follows (shown after
Length in Detail)."""
