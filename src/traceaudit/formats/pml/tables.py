"""PML header and tables: the header, the strings, process, hosts and ports tables.

The header says where every table is; :class:`PmlHeader` reads it with
:data:`HEADER_DTYPE` and checks it, raising :class:`TraceFormatError` with the byte
offset of the bad field. :meth:`PmlHeader.index_problem` and
:meth:`PmlHeader.tables_problem` say whether the event index and the tables at the end of
the file are all there: a capture that was not closed cleanly, or a copy cut short, loses
them first, and the event reader then walks the events one by one instead. The hosts and
ports tables end the file, so :func:`read_hosts_and_ports` tells a cut past everything
else.

The strings table is decoded in bulk (:func:`decode_strings`); the process table is read
with one structured-dtype gather. Hosts and ports are small and read with ``struct``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from traceaudit.errors import TraceFormatError
from traceaudit.formats.pml.layout import (
    FILETIME_UNIX_EPOCH,
    HEADER_DTYPE,
    HEADER_SIZE,
    OFFSET_ENTRY_DTYPE,
    SUPPORTED_VERSIONS,
    process_record_dtype,
)
from traceaudit.formats.pml.text import decode_strings

__all__ = [
    "PmlHeader",
    "gather_records",
    "read_strings_table",
    "read_process_table",
    "read_hosts_and_ports",
    "filetimes_to_datetimes",
    "PROCESS_SCHEMA",
]

MAGIC = b"PML_"

PROCESS_SCHEMA: dict[str, pl.DataType] = {
    "process_index": pl.UInt32(),
    "pid": pl.Int64(),
    "parent_pid": pl.Int64(),
    "name": pl.String(),
    "image_path": pl.String(),
    "command_line": pl.String(),
    "user": pl.String(),
    "integrity": pl.String(),
    "session": pl.Int64(),
    "start_time": pl.Datetime("ns"),
    "end_time": pl.Datetime("ns"),
    "authentication_id": pl.UInt64(),
    "is_64bit": pl.Boolean(),
    "virtualized": pl.Boolean(),
    "company": pl.String(),
    "version": pl.String(),
    "description": pl.String(),
}
"""Columns of :func:`read_pml_processes`. ``authentication_id`` is the logon-session LUID
(Procmon shows it as ``high:low`` in hex, ``00000000:0000fde3``); ``end_time`` is null
while the process was still running when the capture stopped."""


def _utf16_field(raw: bytes) -> str:
    """A fixed-size, NUL-padded UTF-16LE header field."""
    return raw.decode("utf-16-le", "replace").split("\x00", 1)[0]


@dataclass(frozen=True)
class PmlHeader:
    """The fields of the 0x3A8-byte header that the reader uses."""

    name: str
    size: int
    version: int
    pointer: int
    computer_name: str
    number_of_events: int
    events_offset: int
    event_offsets_offset: int
    process_table_offset: int
    strings_table_offset: int
    icon_table_offset: int
    hosts_and_ports_offset: int

    @classmethod
    def parse(cls, name: str, data: np.ndarray) -> PmlHeader:
        """Read and check the header of ``data`` (the whole file as uint8)."""
        size = len(data)
        if size < 4 or bytes(data[:4]) != MAGIC:
            magic = bytes(data[:4])
            raise TraceFormatError(
                f"{name}: header at 0x0: not a Procmon PML file (magic {magic!r}, expected "
                f"{MAGIC!r}). Give a log saved by Process Monitor (File > Save, format PML), "
                "or read this file with the reader of its own format."
            )
        if size < HEADER_SIZE:
            raise TraceFormatError(
                f"{name}: header at 0x0: the file is only {size} bytes, a PML header takes "
                f"0x{HEADER_SIZE:X}. The file was cut short; copy it again from the machine "
                "that captured it."
            )
        raw = data[:HEADER_SIZE].view(HEADER_DTYPE)[0]
        version = int(raw["version"])
        if version not in SUPPORTED_VERSIONS:
            readable = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
            raise TraceFormatError(
                f"{name}: header at 0x4: PML version {version} is not supported (readable: "
                f"{readable}). Open the log in Process Monitor and save it again (File > Save, "
                "PML) to write the current version, or export it as CSV."
            )
        is_64bit = int(raw["is_64bit"])
        if is_64bit not in (0, 1):
            raise TraceFormatError(
                f"{name}: header at 0x8: the 32/64-bit flag is {is_64bit}, not 0 or 1: the "
                "header is damaged. Save the log from Process Monitor again."
            )
        header_size = int(raw["header_size"])
        if header_size not in (0, HEADER_SIZE):
            raise TraceFormatError(
                f"{name}: header at 0x398: header size 0x{header_size:X}, expected "
                f"0x{HEADER_SIZE:X}: the header is damaged. Save the log from Process Monitor "
                "again."
            )
        return cls(
            name=name,
            size=size,
            version=version,
            pointer=8 if is_64bit else 4,
            computer_name=_utf16_field(bytes(raw["computer_name"])),
            number_of_events=int(raw["number_of_events"]),
            events_offset=int(raw["events_offset"]) or HEADER_SIZE,
            event_offsets_offset=int(raw["event_offsets_offset"]),
            process_table_offset=int(raw["process_table_offset"]),
            strings_table_offset=int(raw["strings_table_offset"]),
            icon_table_offset=int(raw["icon_table_offset"]),
            hosts_and_ports_offset=int(raw["hosts_and_ports_offset"]),
        )

    def index_problem(self) -> str | None:
        """Why the event offset array cannot be used, or None when it can."""
        if self.event_offsets_offset == 0:
            return "the header has no event index (the capture was not closed cleanly)"
        end = self.event_offsets_offset + self.number_of_events * OFFSET_ENTRY_DTYPE.itemsize
        if self.event_offsets_offset < self.events_offset or end > self.size:
            return (
                f"the event index at 0x{self.event_offsets_offset:X} ends at 0x{end:X}, past "
                f"the end of the file (0x{self.size:X}): the file was cut short"
            )
        return None

    def tables_problem(self) -> str | None:
        """Why the process and strings tables cannot be read, or None when they can."""
        bounds = (
            self.process_table_offset,
            self.strings_table_offset,
            self.icon_table_offset,
        )
        if 0 in bounds:
            return "the header has no process table (the capture was not closed cleanly)"
        if not (self.process_table_offset < self.strings_table_offset < self.icon_table_offset):
            return "the header's table offsets are out of order: the header is damaged"
        if self.icon_table_offset > self.size:
            return (
                f"the process and strings tables end at 0x{self.icon_table_offset:X}, past the "
                f"end of the file (0x{self.size:X}): the file was cut short"
            )
        return None

    @property
    def tables_cut(self) -> bool:
        """Whether the process and strings tables are missing from the end of the file
        (never written, or cut off)."""
        return self.process_table_offset == 0 or self.icon_table_offset > self.size

    @property
    def events_end(self) -> int:
        """Where event data stops: the event index when there is one, else end of file."""
        if 0 < self.event_offsets_offset <= self.size:
            return self.event_offsets_offset
        return self.size


def gather_records(data: np.ndarray, positions: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Copy the ``dtype`` records starting at ``positions`` of ``data`` (uint8) into one
    structured array. Every ``position + dtype.itemsize`` must be within ``data``."""
    width = dtype.itemsize
    if len(data) < width:
        return np.zeros(0, dtype=dtype)
    # Every byte offset as the start of a ``width``-byte opaque record (stride 1, records
    # overlapping): one 1-D take copies each record whole, 2-3x faster than indexing a
    # (n, width) byte matrix, which copies byte by byte.
    records = np.ndarray(
        shape=(len(data) - width + 1,),
        dtype=np.dtype((np.void, width)),
        buffer=np.ascontiguousarray(data),
        strides=(1,),
    )
    picked: np.ndarray = records[np.asarray(positions, dtype=np.int64)]
    return picked.view(dtype)


def read_strings_table(header: PmlHeader, data: np.ndarray, buf: pa.Buffer) -> pl.Series:
    """The strings table as a String series (index = string id)."""
    start = header.strings_table_offset
    end = header.icon_table_offset
    count = int(data[start : start + 4].view("<u4")[0])
    if start + 4 + 4 * count > end:
        raise TraceFormatError(
            f"{header.name}: strings table at 0x{start:X}: {count} strings do not fit before "
            f"0x{end:X}: the table is damaged. Save the log from Process Monitor again."
        )
    offsets = data[start + 4 : start + 4 + 4 * count].view("<u4").astype(np.int64) + start
    valid = offsets + 4 <= end
    offsets = np.where(valid, offsets, start)
    sizes = gather_records(data, offsets, np.dtype("<u4")).astype(np.int64)
    sizes = np.where(valid & (offsets + 4 + sizes <= end), sizes, 0)
    return decode_strings(buf, offsets + 4, sizes // 2)


def filetimes_to_datetimes(filetimes: np.ndarray) -> np.ndarray:
    """FILETIMEs (100 ns since 1601, UTC) → naive UTC ``datetime64[ns]``, 100 ns kept."""
    ticks = np.asarray(filetimes).astype(np.int64) - FILETIME_UNIX_EPOCH
    return (ticks * 100).view("datetime64[ns]")


def read_process_table(header: PmlHeader, data: np.ndarray, strings: pl.Series) -> pl.DataFrame:
    """The process table, one row per process (see :data:`PROCESS_SCHEMA`)."""
    start = header.process_table_offset
    end = header.strings_table_offset
    count = int(data[start : start + 4].view("<u4")[0])
    table_end = start + 4 + 8 * count
    if table_end > end:
        raise TraceFormatError(
            f"{header.name}: process table at 0x{start:X}: {count} processes do not fit "
            f"before 0x{end:X}: the table is damaged. Save the log from Process Monitor again."
        )
    dtype = process_record_dtype(header.pointer)
    offsets = data[start + 4 + 4 * count : table_end].view("<u4").astype(np.int64) + start
    offsets = offsets[offsets + dtype.itemsize <= end]
    records = gather_records(data, offsets, dtype)
    if len(strings) == 0:
        strings = pl.Series([""], dtype=pl.String)
    # Every string field in one gather: ids of all fields end to end, then split.
    ids = np.concatenate([records[field].astype(np.int64) for field in _STRING_FIELDS])
    texts = strings.gather(np.where(ids < len(strings), ids, 0))
    count = len(records)
    end_times = records["end_time"]
    frame = pl.DataFrame(
        {
            "process_index": records["process_index"],
            "pid": records["pid"].astype(np.int64),
            "parent_pid": records["parent_pid"].astype(np.int64),
            "session": records["session"].astype(np.int64),
            "start_time": filetimes_to_datetimes(records["start_time"]),
            "end_time": filetimes_to_datetimes(end_times),
            "ended": end_times != 0,
            "authentication_id": records["authentication_id"],
            "is_64bit": records["is_64bit"] != 0,
            "virtualized": records["virtualized"] == 1,
            **{field: texts.slice(i * count, count) for i, field in enumerate(_STRING_FIELDS)},
        }
    )
    return frame.select(
        pl.when(pl.col("ended")).then(pl.col(c)).cast(t).alias(c)
        if c == "end_time"
        else pl.col(c).cast(t)
        for c, t in PROCESS_SCHEMA.items()
    )


_STRING_FIELDS = (
    "name",
    "image_path",
    "command_line",
    "user",
    "integrity",
    "company",
    "version",
    "description",
)


def read_hosts_and_ports(
    header: PmlHeader, data: np.ndarray
) -> tuple[dict[bytes, str], dict[tuple[int, bool], str], str | None]:
    """Host names by 16-byte IP address, service names by (port, is_tcp), and why the
    tables are incomplete (None when they are whole).

    These tables close the file (they end exactly at its end), so they are the first
    thing a copy cut short loses: their end is how a cut past the process and strings
    tables shows. A damaged or missing table only costs names (the network paths then
    show numeric addresses and ports, as Procmon would); the names read before the cut
    are kept.
    """
    hosts: dict[bytes, str] = {}
    ports: dict[tuple[int, bool], str] = {}
    pos = header.hosts_and_ports_offset
    if pos == 0:
        return hosts, ports, None

    def cut(verb: str) -> str:
        return (
            f"the hosts and ports tables at 0x{pos:X} {verb} past the end of the file "
            f"(0x{header.size:X}): the file was cut short"
        )

    if pos >= header.size:
        return hosts, ports, cut("lie")
    raw = data[pos:].tobytes()
    try:
        (count,) = struct.unpack_from("<I", raw, 0)
        cursor = 4
        for _ in range(count):
            ip = raw[cursor : cursor + 16]
            (size,) = struct.unpack_from("<I", raw, cursor + 16)
            if cursor + 20 + size > len(raw):
                raise struct.error
            hosts[ip] = _utf16_field(raw[cursor + 20 : cursor + 20 + size])
            cursor += 20 + size
        (count,) = struct.unpack_from("<I", raw, cursor)
        cursor += 4
        for _ in range(count):
            port, is_tcp, size = struct.unpack_from("<HHI", raw, cursor)
            if cursor + 8 + size > len(raw):
                raise struct.error
            ports[(port, bool(is_tcp))] = _utf16_field(raw[cursor + 8 : cursor + 8 + size])
            cursor += 8 + size
    except struct.error:  # the names read before the cut are kept
        return hosts, ports, cut("run")
    return hosts, ports, None
