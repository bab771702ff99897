"""Write an event frame as an ETW ``.etl`` trace of Microsoft-Windows-Kernel-File events.

A test helper, not part of the package: it lets the ETL reader be checked against the
simulator's ground truth (the same scenario analysed from its CSV and from its ETL must
give the same conflicts) and lets tests build small traces with a chosen defect.

What is written, in uncompressed 64 KiB buffers (64-bit pointers by default, 32-bit with
``pointer=4``), one processor, QPC clock at 10 MHz:

* the HEADER buffer's logfile header event (TRACE_LOGFILE_HEADER with its names);
* a KernelTraceControl VolumeMapping (``\\Device\\HarddiskVolume3\\`` → ``C:\\``) unless
  ``volumes=False``;
* a kernel Process DCStart per process (image name) and Thread DCStart per thread;
* a Kernel-File NameCreate (10) per distinct path, naming its FileKey;
* per file-system row of the frame (in time order): CreateFile → Create (12, v1);
  CloseFile → Cleanup (13) then Close (14); ReadFile/WriteFile → Read/Write (15/16);
  SetRenameInformationFile → Rename (19) + RenamePath (27, the target);
  SetDispositionInformationFile → SetDelete (18) + DeletePath (26); Query*InformationFile
  → QueryInformation (22); FileSystemControl → FSCTL (23); each followed by its
  OperationEnd (24) with the row's status at ``time + duration``. Rows ETW has no event
  for (CreateFileMapping, registry, process…) are left out.

File objects come from the frame's own handle pairing (:func:`traceaudit.analysis.handles`), so
each CloseFile is the Cleanup of the very FILE_OBJECT its CreateFile opened; addresses
are reused after Close, as Windows does.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from traceaudit.analysis.handles import handles
from traceaudit.formats.pml.names import DISPOSITION_NAMES, RESULT_NAMES, SUB_OPERATION_NAMES

FILETIME_UNIX_EPOCH = 116_444_736_000_000_000
BUFFER_SIZE = 0x10000
HEADER_SIZE = 0x48
QPC_BASE = 5_000_000_000
KERNEL_FILE = bytes.fromhex("2789d0edc49c654eb970c2560fb5c289")
SYSCONFIG_EX = bytes.fromhex("91ee799bfdb5c041a2434248e266e9d0")
DEVICE = "\\Device\\HarddiskVolume3\\"
STATUS = {name: code for code, name in RESULT_NAMES.items()}
QUERY_CLASSES = {name: code for code, name in SUB_OPERATION_NAMES[25].items()}
FILEIO_OPCODES = {10: 0, 12: 64, 13: 65, 14: 66, 15: 67, 16: 68, 18: 70, 19: 71}
FILEIO_OPCODES |= {22: 74, 23: 75, 24: 76, 26: 79, 27: 80}
"""Kernel-File event id → NT Kernel Logger FileIo opcode of the same operation."""


def status_of(result: str | None) -> int:
    """NTSTATUS for Procmon's Result text (``0xC000046F`` for unnamed ones)."""
    if result is None or result == "":
        return 0
    if result.startswith("0x"):
        return int(result, 16)
    return STATUS[result]


def device_path(path: str) -> str:
    """``C:\\x`` → ``\\Device\\HarddiskVolume3\\x`` (other paths unchanged)."""
    if len(path) >= 3 and path[1:3] == ":\\" and path[0].upper() == "C":
        return DEVICE + path[3:]
    return path


def compress(data: bytes) -> bytes:
    """Plain LZ77 Xpress ([MS-XCA] 2.3), greedy, for writing compressed test buffers.

    Exercises what the decoder must handle: literal runs, overlapping matches, lengths
    in the shared half byte, the extra byte, and the 16-bit form.
    """
    out = bytearray(4)
    flag_at, flags, count = 0, 0, 0
    half_at = -1
    seen: dict[bytes, int] = {}
    i = 0

    def bit(value: int) -> None:
        """Flag the next item; a full flag word is stored and a new one begun first."""
        nonlocal flag_at, flags, count
        if count == 32:
            out[flag_at : flag_at + 4] = struct.pack("<I", flags)
            flag_at, flags, count = len(out), 0, 0
            out.extend(bytes(4))
        flags = (flags << 1) | value
        count += 1

    while i < len(data):
        key = data[i : i + 3]
        j = seen.get(key, -1)
        seen[key] = i
        length = 0
        if len(key) == 3 and j >= 0 and i - j <= 8192:
            while (
                i + length < len(data) and data[j + length] == data[i + length] and length < 70000
            ):
                length += 1
        if length < 3:
            bit(0)
            out.append(data[i])
            i += 1
            continue
        bit(1)
        rest = length - 3
        word = (i - j - 1) << 3
        if rest < 7:
            out += struct.pack("<H", word | rest)
        else:
            out += struct.pack("<H", word | 7)
            rest -= 7
            nibble = min(rest, 15)
            if half_at < 0:
                half_at = len(out)
                out.append(nibble)
            else:
                out[half_at] |= nibble << 4
                half_at = -1
            if rest >= 15:
                rest -= 15
                if rest < 255:
                    out.append(rest)
                else:
                    out.append(255)
                    total = length - 3
                    out += (
                        struct.pack("<H", total)
                        if total < 0x10000
                        else struct.pack("<HI", 0, total)
                    )
        i += length
    flags = (flags << (32 - count)) | ((1 << (32 - count)) - 1)
    out[flag_at : flag_at + 4] = struct.pack("<I", flags)
    return bytes(out)


def wstr(text: str) -> bytes:
    return text.encode("utf-16-le") + b"\0\0"


@dataclass
class Record:
    """One record to write: its sort time (FILETIME) and its bytes (header included)."""

    filetime: int
    order: int
    data: bytes


@dataclass
class EtlWriter:
    """Builds records and lays them out in buffers (see the module docstring)."""

    pointer: int = 8
    start_filetime: int = 0
    compressed: bool = False
    mof: bool | str = False
    records: list[Record] = field(default_factory=list)
    _order: int = 0

    def qpc(self, filetime: int) -> int:
        return QPC_BASE + (filetime - self.start_filetime)

    def ptr(self, value: int) -> bytes:
        return struct.pack(
            "<Q" if self.pointer == 8 else "<I", value & ((1 << (8 * self.pointer)) - 1)
        )

    def _add(self, filetime: int, data: bytes) -> None:
        self._order += 1
        self.records.append(Record(filetime, self._order, data))

    def system(
        self,
        filetime: int,
        group: int,
        opcode: int,
        version: int,
        payload: bytes,
        tid: int = 0,
        pid: int = 0,
    ) -> None:
        """A SYSTEM trace header (kernel MOF event)."""
        header_type = 0x02 if self.pointer == 8 else 0x01
        size = 0x20 + len(payload)
        head = struct.pack(
            "<HBBHBBIIQII",
            version,
            header_type,
            0xC0,
            size,
            opcode,
            group,
            tid & 0xFFFFFFFF,
            pid & 0xFFFFFFFF,
            self.qpc(filetime),
            0,
            0,
        )
        self._add(filetime, head + payload)

    def event(
        self,
        filetime: int,
        provider: bytes,
        event_id: int,
        version: int,
        payload: bytes,
        tid: int,
        pid: int,
        keywords: int = 0,
    ) -> None:
        """An EVENT_HEADER record (manifest provider), without extended data."""
        header_type = 0x13 if self.pointer == 8 else 0x12
        flags = 0x40 if self.pointer == 8 else 0x20  # EVENT_HEADER_FLAG_64/32_BIT_HEADER
        size = 0x50 + len(payload)
        head = struct.pack(
            "<HBBHHIIQ", size, header_type, 0xC0, flags, 0, tid, pid, self.qpc(filetime)
        )
        head += (
            provider
            + struct.pack("<HBBBBHQQ", event_id, version, 0, 4, 0, event_id, keywords, 0)
            + bytes(16)
        )
        self._add(filetime, head + payload)

    def file(self, filetime: int, event_id: int, payload: bytes, tid: int, pid: int) -> None:
        """A Kernel-File event (id, v1 layout), or with ``mof`` the NT Kernel Logger FileIo
        event of the same operation (v3 has the same field order), whose header says
        PID -1 as real MOF FileIo headers may: the reader must find the process from the
        issuing thread."""
        if self.mof in (False, "both"):
            version = 0 if event_id in (10, 24) else 1
            self.event(filetime, KERNEL_FILE, event_id, version, payload, tid, pid)
        if self.mof in (True, "both"):  # "both": a trace that recorded the two sources
            self.system(filetime, 4, FILEIO_OPCODES[event_id], 3, payload, tid=tid, pid=0xFFFFFFFF)

    def trace(self, filetime: int, guid: bytes, class_type: int, payload: bytes) -> None:
        """An EVENT_TRACE_HEADER record (classic provider with a GUID)."""
        header_type = 0x14 if self.pointer == 8 else 0x0A
        size = 0x30 + len(payload)
        head = struct.pack(
            "<HBBBBHIIQ", size, header_type, 0xC0, class_type, 0, 0, 0, 0, self.qpc(filetime)
        )
        self._add(filetime, head + guid + bytes(8) + payload)

    def logfile_header(self, buffers: int, end_filetime: int) -> bytes:
        """The logfile header event (record bytes) for ``buffers`` buffers."""
        p = self.pointer
        fields = struct.pack(
            "<IIIIQIIIIIIII",
            BUFFER_SIZE,
            0x0A000006,  # Windows 10-ish OS version word
            19041,
            1,
            end_filetime,
            156250,
            0,
            0x00000001,
            buffers,
            1,
            p,
            0,
            3000,
        )
        fields += bytes(2 * p) + bytes(0xB0)  # LoggerName/LogFileName pointers, time zone
        fields += struct.pack("<QQQII", self.start_filetime, 10_000_000, self.start_filetime, 1, 0)
        payload = fields + wstr("traceaudit test") + wstr("C:\\traces\\test.etl")
        header_type = 0x02 if p == 8 else 0x01
        size = 0x20 + len(payload)
        head = struct.pack("<HBBHBBIIQII", 2, header_type, 0xC0, size, 0, 0, 0, 0, QPC_BASE, 0, 0)
        return head + payload

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Lay the records out in buffers, time order, and write the file."""
        records = sorted(self.records, key=lambda r: (r.filetime, r.order))
        bodies: list[bytearray] = []
        body = bytearray()
        for record in records:
            aligned = record.data + bytes(-len(record.data) % 8)
            if HEADER_SIZE + len(body) + len(aligned) > BUFFER_SIZE:
                bodies.append(body)
                body = bytearray()
            body += aligned
        bodies.append(body)
        end = records[-1].filetime if records else self.start_filetime
        first = bytearray(self.logfile_header(len(bodies) + 1, end))
        first += bytes(-len(first) % 8)
        out = bytearray(self._buffer(first, buffer_type=4, sequence=0))
        for index, chunk in enumerate(bodies, start=1):
            out += self._buffer(chunk, buffer_type=0, sequence=index)
        target = Path(path)
        target.write_bytes(bytes(out))
        return target

    def _buffer(self, body: bytes | bytearray, buffer_type: int, sequence: int) -> bytes:
        filled = HEADER_SIZE + len(body)
        if self.compressed and buffer_type != 4:
            packed = compress(bytes(body))
            size = HEADER_SIZE + len(packed)
            header = struct.pack(
                "<IIIiQqQHHIIHH",
                size,
                filled,
                filled,
                0,
                QPC_BASE,
                sequence,
                0,
                0,
                0,
                5,
                filled,
                0x40,
                0,
            )
            return header + bytes(HEADER_SIZE - len(header)) + packed
        header = struct.pack(
            "<IIIiQqQHHIIHH",
            BUFFER_SIZE,
            filled,
            filled,
            0,
            QPC_BASE,
            sequence,
            0,
            0,
            0,
            2,
            filled,
            0,
            buffer_type,
        )
        header += bytes(HEADER_SIZE - len(header))
        return header + bytes(body) + b"\xff" * (BUFFER_SIZE - filled)


def _ns_filetime(ns: int) -> int:
    return ns // 100 + FILETIME_UNIX_EPOCH


@dataclass
class _Objects:
    """FILE_OBJECT addresses, reused after Close like the kernel's pool."""

    free: list[int] = field(default_factory=list)
    next: int = 0xFFFFA80000100000

    def take(self) -> int:
        if self.free:
            return self.free.pop()
        self.next += 0x150
        return self.next

    def give(self, value: int) -> None:
        self.free.append(value)


def write_etl(
    events: pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    pointer: int = 8,
    volumes: bool = True,
    op_end: bool = True,
    skip_rows: Iterable[int] = (),
    compressed: bool = False,
    mof: bool | str = False,
) -> Path:
    """Write the file-system rows of ``events`` (event schema) as Kernel-File events.

    ``op_end=False`` leaves out every OperationEnd (as a trace recorded without the
    OP_END keyword); ``skip_rows`` drops the given source rows (to make gaps);
    ``compressed=True`` writes the event buffers LZ77-Xpress compressed and trimmed, as
    ``xperf -merge -compress`` and PerfView do; ``mof=True`` writes NT Kernel Logger
    FileIo events (version 3, header PID -1) instead of Kernel-File ones.
    """
    skip = set(skip_rows)
    frame = events.sort("time", "row")
    times_ns = frame["time"].cast(pl.Int64).to_list()
    writer = EtlWriter(
        pointer=pointer,
        start_filetime=_ns_filetime(min(times_ns)) - 10_000,
        compressed=compressed,
        mof=mof,
    )
    start = writer.start_filetime
    file_rows = frame.filter(pl.col("event_class") == "File System")
    pairs = handles(frame)
    close_of_open = {
        o: c
        for o, c in zip(pairs["open_row"].to_list(), pairs["close_row"].to_list(), strict=True)
        if o is not None
    }
    open_of_close = {c: o for o, c in close_of_open.items() if c is not None}

    if volumes:
        writer.trace(start, SYSCONFIG_EX, 35, wstr(DEVICE) + wstr("C:\\"))
    for pid, name in frame.select("pid", "process").unique().drop_nulls("pid").iter_rows():
        image = (name or "").encode("cp1252", "replace") + b"\0"
        payload = writer.ptr(0xFFFFFA8000000000 + pid) + struct.pack("<IIIi", pid, 4, 1, 259)
        payload += writer.ptr(0x1AA000) + struct.pack("<I", 0)  # DirectoryTableBase, Flags
        # UserSID: TOKEN_USER (two pointers) then S-1-5-18 (LocalSystem).
        payload += (
            writer.ptr(0xFFFFF8A000001000)
            + writer.ptr(0)
            + bytes.fromhex("010100000000000512000000")
        )
        writer.system(
            start, 3, 3, 4, payload + image + wstr("") + wstr("") + wstr(""), tid=0, pid=pid
        )
    for pid, tid in frame.select("pid", "tid").unique().drop_nulls().iter_rows():
        payload = struct.pack("<II", pid, tid) + bytes(7 * pointer + 8)
        writer.system(start, 5, 3, 3, payload, tid=tid, pid=pid)

    keys: dict[str, int] = {}
    for path_text in file_rows["path"].drop_nulls().unique().sort().to_list():
        keys[path_text.lower()] = 0xFFFFC00000000000 + 0x1000 * (len(keys) + 1)
        payload = writer.ptr(keys[path_text.lower()]) + wstr(device_path(path_text))
        writer.file(start, 10, payload, 0, 4)

    objects = _Objects()
    object_of_open: dict[int, int] = {}
    live: dict[tuple[int, str], list[int]] = {}  # (pid, path) → file objects open
    irp = 0xFFFFA80001000000
    for row in file_rows.with_columns(time_ns=pl.col("time").cast(pl.Int64)).iter_rows(named=True):
        if row["row"] in skip:
            continue
        irp += 0x28
        ft = _ns_filetime(row["time_ns"])
        pid, tid = row["pid"] or 0, row["tid"] or 0
        op = row["operation"]
        path_text = row["path"] or ""
        key = keys.get(path_text.lower(), 0)
        status = status_of(row["result"])
        duration = row["duration"]
        end_ft = ft + (
            max(1, round(duration.total_seconds() * 10_000_000)) if duration is not None else 1
        )
        own = live.get((pid, path_text.lower()), [])
        if op == "CreateFile":
            file_object = objects.take()
            if status == 0:
                object_of_open[row["row"]] = file_object
                live.setdefault((pid, path_text.lower()), []).append(file_object)
            disposition = (
                DISPOSITION_NAMES.index(row["disposition"])
                if row["disposition"] in DISPOSITION_NAMES
                else 1
            )
            options = (disposition << 24) | (row["create_options"] or 0)
            payload = writer.ptr(irp) + writer.ptr(file_object)
            payload += struct.pack("<IIII", tid, options, 0, row["share_mode"] or 0) + wstr(
                device_path(path_text)
            )
            writer.file(ft, 12, payload, tid, pid)
            extra = 1
            if status != 0:
                objects.give(file_object)
        elif op == "CloseFile":
            opened = open_of_close.get(row["row"])
            file_object = object_of_open.get(opened) if opened is not None else None
            if file_object is None:  # open before the capture: an object never created here
                file_object = objects.take()
            elif file_object in own:
                own.remove(file_object)
            payload = (
                writer.ptr(irp) + writer.ptr(file_object) + writer.ptr(key) + struct.pack("<I", tid)
            )
            writer.file(ft, 13, payload, tid, pid)
            close_irp = irp + 0x10
            payload = (
                writer.ptr(close_irp)
                + writer.ptr(file_object)
                + writer.ptr(key)
                + struct.pack("<I", tid)
            )
            writer.file(end_ft, 14, payload, tid, pid)
            if op_end:
                writer.file(
                    end_ft,
                    24,
                    writer.ptr(close_irp) + writer.ptr(0) + struct.pack("<I", 0),
                    tid,
                    pid,
                )
            objects.give(file_object)
            extra = 0
        else:
            file_object = own[-1] if own else 0xFFFFA80000F00000 + key % 0x100000
            common = writer.ptr(irp) + writer.ptr(file_object) + writer.ptr(key)
            if op in ("ReadFile", "WriteFile"):
                payload = struct.pack("<Q", row["offset"] or 0) + common
                payload += struct.pack("<IIII", tid, row["length"] or 0, 0, 0)
                writer.file(ft, 15 if op == "ReadFile" else 16, payload, tid, pid)
                extra = row["length"] or 0
            elif op.startswith("SetRenameInformation"):
                info = writer.ptr(0) + struct.pack("<II", tid, 10)
                writer.file(ft, 19, common + info, tid, pid)
                if row["rename_target"] is not None:
                    writer.file(
                        ft,
                        27,
                        common + info + wstr(device_path(row["rename_target"])),
                        tid,
                        pid,
                    )
                extra = 0
            elif op.startswith("SetDispositionInformation"):
                info = writer.ptr(1 if row["delete_flag"] is not False else 0) + struct.pack(
                    "<II", tid, 13
                )
                writer.file(ft, 18, common + info, tid, pid)
                writer.file(ft, 26, common + info + wstr(device_path(path_text)), tid, pid)
                extra = 0
            elif op in QUERY_CLASSES:
                writer.file(
                    ft,
                    22,
                    common + writer.ptr(0) + struct.pack("<II", tid, QUERY_CLASSES[op]),
                    tid,
                    pid,
                )
                extra = 0
            elif op == "FileSystemControl":
                writer.file(
                    ft,
                    23,
                    common + writer.ptr(0x90000) + struct.pack("<II", tid, 0),
                    tid,
                    pid,
                )
                extra = 0
            else:
                continue
        if op_end and op != "CloseFile":
            writer.file(
                end_ft,
                24,
                writer.ptr(irp) + writer.ptr(extra) + struct.pack("<I", status),
                tid,
                pid,
            )
    return writer.write(path)
