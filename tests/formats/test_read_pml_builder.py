"""A writer of small synthetic PML files, so the PML reader is tested without the corpus.

The layouts here are written out independently of ``traceaudit.formats.pml.layout``
(from procmon-parser's format notes and docs/formats.md §2), so a mistake in one is caught by the
other. ``pml_file(events, pointer=8)`` returns the bytes of a whole, cleanly closed log;
the ``*_event`` helpers make the events the analysis cares about.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pytest
from test_pml_kernels import both_paths  # noqa: F401  (every read: with and without kernels)

from traceaudit.formats.pml.reader import read_pml

pytestmark = pytest.mark.usefixtures("both_paths")

HEADER_SIZE = 0x3A8
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)
T0 = datetime(2020, 7, 12, 1, 18, 10, tzinfo=timezone.utc)

PROCESS, REGISTRY, FILE_SYSTEM, NETWORK = 1, 2, 3, 5


def filetime(moment: datetime, ticks: int = 0) -> int:
    """A FILETIME (100 ns since 1601, UTC) for ``moment`` plus ``ticks``."""
    delta = moment - FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10 + ticks


@dataclass
class Event:
    """One event to write: header fields, details and optional extra details."""

    event_class: int
    operation: int
    details: bytes
    ticks: int = 0  # after T0, in 100 ns
    process_index: int = 0
    tid: int = 100
    result: int = 0
    duration: int = 25
    stack: int = 2
    extra: bytes | None = None


@dataclass
class Process:
    index: int
    pid: int
    name: str
    parent_pid: int = 4
    user: str = r"HOST\user"
    image_path: str = ""
    command_line: str = ""
    extra_strings: dict[str, str] = field(default_factory=dict)


def counted(text: str, one_byte: bool = False) -> tuple[int, bytes]:
    """A PML counted string: its size word and bytes."""
    if one_byte:
        return 0x8000 | len(text), text.encode("cp1252")
    return len(text), text.encode("utf-16-le")


def fs_details(
    sub_operation: int,
    path: str,
    pointer: int,
    block: dict[int, bytes] | None = None,
    tail: bytes = b"",
    one_byte: bool = False,
) -> bytes:
    """File-system details: sub-operation, the IRP parameter block, the path, ``tail``."""
    raw_block = bytearray(5 * pointer + 0x14)
    for at, value in (block or {}).items():
        raw_block[at : at + len(value)] = value
    size_word, text = counted(path, one_byte)
    return (
        bytes([sub_operation, 0, 0, 0])
        + bytes(raw_block)
        + struct.pack("<HH", size_word, 0)
        + text
        + tail
    )


# Parameter-block offsets (from the block start) by pointer size.
CREATE_BLOCK = {
    8: {"options": 0x14, "attributes": 0x1C, "allocation": 0x34},
    4: {"options": 0x10, "attributes": 0x14, "allocation": 0x24},
}
READ_BLOCK = {
    8: {"flags": 4, "length": 12, "offset": 28},
    4: {"flags": 4, "length": 12, "offset": 20},
}


def create_event(
    path: str,
    *,
    access: int,
    share: int,
    options: int,
    disposition: int = 1,
    attributes: int = 0,
    allocation: int = 0,
    open_result: int | None = 1,
    sid: bytes = b"",
    pointer: int = 8,
    **kw,
) -> Event:
    offsets = CREATE_BLOCK[pointer]
    block = {
        offsets["options"]: struct.pack("<I", (disposition << 24) | options),
        offsets["attributes"]: struct.pack("<HH", attributes, share),
        offsets["allocation"]: struct.pack("<I", allocation),
    }
    tail = struct.pack("<IB3x", access, len(sid)) + sid
    extra = None if open_result is None else struct.pack("<I", open_result)
    return Event(FILE_SYSTEM, 20, fs_details(0, path, pointer, block, tail), extra=extra, **kw)


def read_write_event(
    path: str, *, write: bool, offset: int, length: int, flags: int = 0, pointer: int = 8, **kw
) -> Event:
    offsets = READ_BLOCK[pointer]
    block = {
        offsets["flags"]: struct.pack("<I", flags),
        offsets["length"]: struct.pack("<I", length),
        offsets["offset"]: struct.pack("<q", offset),
    }
    return Event(FILE_SYSTEM, 24 if write else 23, fs_details(0, path, pointer, block), **kw)


def rename_event(
    path: str,
    target: str,
    *,
    replace: bool,
    dos_target: str | None = None,
    sub_operation: int = 0x0A,
    flags: int | None = None,
    pointer: int = 8,
    **kw,
) -> Event:
    """SetRenameInformationFile: the caller's FILE_RENAME_INFORMATION buffer after the
    path (ReplaceIfExists, padding, RootDirectory, FileNameLength, name), then
    optionally the target as Procmon's DOS path."""
    name = target.encode("utf-16-le")
    head = struct.pack("<I", flags) if flags is not None else bytes([int(replace), 0, 0, 0])
    buffer = (
        head.ljust(pointer, b"\xff")
        + bytes(pointer)
        + struct.pack("<I", len(name))
        + name
        + b"\0\0"
    )
    block = {12: struct.pack("<I", len(buffer))}
    tail = buffer
    if dos_target is not None:
        size_word, text = counted(dos_target, one_byte=True)
        tail += struct.pack("<H", size_word) + text
    return Event(FILE_SYSTEM, 26, fs_details(sub_operation, path, pointer, block, tail), **kw)


def disposition_event(path: str, *, delete: bool, pointer: int = 8, **kw) -> Event:
    return Event(
        FILE_SYSTEM, 26, fs_details(0x0D, path, pointer, tail=bytes([int(delete), 0, 0, 0])), **kw
    )


def close_event(path: str, pointer: int = 8, **kw) -> Event:
    return Event(FILE_SYSTEM, 38, fs_details(0, path, pointer), **kw)


def registry_open_event(path: str, access: int = 0x20019, **kw) -> Event:
    size_word, text = counted(path)
    return Event(REGISTRY, 0, struct.pack("<HHI", size_word, 0, access) + text, **kw)


def thread_create_event(thread_id: int, **kw) -> Event:
    return Event(PROCESS, 3, struct.pack("<I", thread_id), **kw)


def tcp_send_event(length: int, **kw) -> Event:
    source = bytes([10, 0, 0, 1]) + bytes(12)
    dest = bytes([93, 184, 216, 34]) + bytes(12)
    pairs = "seqnum\x000\x00connid\x000\x00\x00".encode("utf-16-le")
    details = (
        struct.pack("<HHI", 1 | 2 | 4, 0, length) + source + dest + struct.pack("<HH", 50000, 443)
    )
    return Event(NETWORK, 2, details + pairs, **kw)


def _strings_table(strings: list[str]) -> bytes:
    count = len(strings)
    body = b""
    offsets = []
    for text in strings:
        offsets.append(4 + 4 * count + len(body))
        raw = text.encode("utf-16-le")
        body += struct.pack("<I", len(raw)) + raw
    return struct.pack("<I", count) + struct.pack(f"<{count}I", *offsets) + body


def _process_table(processes: list[Process], strings: list[str], pointer: int) -> bytes:
    def sid(text: str) -> int:
        if text not in strings:
            strings.append(text)
        return strings.index(text)

    records = []
    for p in processes:
        names = [sid(v) for v in ("High", p.user, p.name, p.image_path, p.command_line, "", "", "")]
        record = struct.pack("<IIII", p.index, p.pid, p.parent_pid, 0)
        record += struct.pack("<QII", 0x3E7, 1, 0)
        record += struct.pack("<QQII", filetime(T0), 0, 0, pointer == 8)
        record += struct.pack("<8I", *names) + struct.pack("<II", 0, 0) + bytes(pointer)
        record += struct.pack("<I", 0)  # no modules
        records.append(record)
    count = len(processes)
    head = 4 + 8 * count
    offsets, at = [], head
    for record in records:
        offsets.append(at)
        at += len(record)
    indexes = [p.index for p in processes]
    return (
        struct.pack("<I", count)
        + struct.pack(f"<{count}I", *indexes)
        + struct.pack(f"<{count}I", *offsets)
        + b"".join(records)
    )


def pml_file(
    events: list[Event],
    processes: list[Process] | None = None,
    *,
    pointer: int = 8,
    version: int = 9,
) -> bytes:
    """The bytes of a cleanly closed PML log holding ``events``."""
    processes = processes or [Process(0, 4242, "writer.exe")]
    body = b""
    offsets = []
    for event in events:
        offsets.append(HEADER_SIZE + len(body))
        before_extra = 52 + event.stack * pointer + len(event.details)
        extra_offset = before_extra if event.extra is not None else 0
        header = struct.pack(
            "<IIIHHIQQIHHII",
            event.process_index,
            event.tid,
            event.event_class,
            event.operation,
            0,
            len(offsets),
            event.duration,
            filetime(T0, event.ticks),
            event.result,
            event.stack,
            0,
            len(event.details),
            extra_offset,
        )
        body += header + bytes(event.stack * pointer) + event.details
        if event.extra is not None:
            body += struct.pack("<H", len(event.extra)) + event.extra
    index_at = HEADER_SIZE + len(body)
    index = b"".join(struct.pack("<IB", offset, 0) for offset in offsets)
    strings: list[str] = [""]
    processes_raw = _process_table(processes, strings, pointer)
    processes_at = index_at + len(index)
    strings_at = processes_at + len(processes_raw)
    strings_raw = _strings_table(strings)
    icons_at = strings_at + len(strings_raw)
    hosts_at = icons_at + 4
    header = bytearray(HEADER_SIZE)
    header[0:4] = b"PML_"
    struct.pack_into("<II", header, 4, version, pointer == 8)
    header[0xC : 0xC + 8] = "HOST".encode("utf-16-le")
    struct.pack_into("<I", header, 0x234, len(events))
    struct.pack_into(
        "<5Q", header, 0x240, HEADER_SIZE, index_at, processes_at, strings_at, icons_at
    )
    struct.pack_into("<QQ", header, 0x398, HEADER_SIZE, hosts_at)
    tail = bytes(4) + struct.pack("<II", 0, 0)  # icon table, no hosts, no ports
    return bytes(header) + body + index + processes_raw + strings_raw + tail


def write(tmp_path, name: str, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


# --- the builder round-trips through the reader ---------------------------------------


def test_an_empty_capture_reads_as_no_events(tmp_path):
    trace = read_pml(write(tmp_path, "empty.pml", pml_file([])))
    assert trace.events.height == 0
    assert trace.format == "procmon-pml"
    assert trace.clock == "utc"


def test_events_keep_their_order_and_times(tmp_path):
    events = [close_event(r"C:\a", ticks=t) for t in (0, 1, 7)]
    trace = read_pml(write(tmp_path, "t.pml", pml_file(events)))
    assert trace.events["row"].to_list() == [1, 2, 3]
    times = trace.events["time"].to_numpy()
    assert np.diff(times.astype(np.int64)).tolist() == [100, 600]  # 100 ns ticks kept
    assert trace.events["time"][0] == T0.replace(tzinfo=None)
