"""Buffers and records of an ETL file: the logfile header, decompression, the record walk.

:func:`read_log_header` checks the first buffer and parses the logfile header event
(clock, start time, pointer size). :func:`iter_chunks` then walks every buffer (sizes
come from each buffer's own header: since Windows 8 buffers are written trimmed, so they
differ), expands compressed ones (:mod:`._etl_xpress`) and walks the records of each
buffer body. Bodies are gathered into chunks of about :data:`CHUNK_BYTES` so the decoding
that follows works on whole numpy columns while memory stays bounded whatever the file
size. Every record gets its 1-based number in the file (``row``): buffer order, then
record order, which is stable and is what messages quote.

A damaged buffer (a header that does not fit, a body that does not decompress, a record
whose size runs past the body) is skipped from the damage on and counted; the caller
reports the count. A file cut short ends the walk at the last whole buffer.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from traceaudit.errors import TraceFormatError
from traceaudit.formats.etl.layout import (
    BUFFER_FLAG_COMPRESSED,
    BUFFER_HEADER_DTYPE,
    BUFFER_HEADER_SIZE,
    BUFFER_TYPE_HEADER,
    HEADER_SIZES,
    POINTER_SIZE,
    SIZE_AT_4,
    logfile_header_dtype,
)
from traceaudit.formats.etl.xpress import XpressError, decompress

__all__ = [
    "CHUNK_BYTES",
    "LogHeader",
    "Chunk",
    "Damage",
    "sniff_etl",
    "read_log_header",
    "iter_chunks",
]

CHUNK_BYTES = 32 * 1024 * 1024
"""Decompressed bytes of buffer bodies decoded together."""

_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_END_OF_RECORDS = 0xFFFFFFFF


def sniff_etl(head: bytes) -> bool:
    """True when ``head`` starts an ETL file: a HEADER buffer whose first record is the
    logfile header event (a SYSTEM trace header of group 0, type 0)."""
    if len(head) < BUFFER_HEADER_SIZE + 0x20:
        return False
    buffer_type = _U16(head, 0x36)[0]
    marker = head[BUFFER_HEADER_SIZE + 3]
    header_type = head[BUFFER_HEADER_SIZE + 2]
    hook = _U16(head, BUFFER_HEADER_SIZE + 6)[0]
    return (
        buffer_type == BUFFER_TYPE_HEADER and marker == 0xC0 and header_type in (1, 2) and hook == 0
    )


@dataclass(frozen=True)
class LogHeader:
    """What the logfile header event says about the whole trace.

    ``clock`` is TRACE_LOGFILE_HEADER.ReservedFlags (1 QPC, 2 system time, 3 CPU
    cycles). Raw event timestamps become FILETIMEs (UTC) as ``start_time + (t -
    header_time) × 10^7 / frequency``, as TraceEvent does: ``start_time`` is the FILETIME
    of the header event, whose raw timestamp is ``header_time``.
    """

    name: str
    pointer: int
    clock: int
    frequency: int
    start_time: int
    end_time: int
    header_time: int
    buffers_written: int
    events_lost: int
    buffers_lost: int
    buffer_size: int
    version: int
    provider_version: int
    processors: int
    logger_name: str
    log_file_name: str

    def filetimes(self, raw: np.ndarray) -> np.ndarray:
        """Raw record timestamps → FILETIMEs (int64, 100 ns since 1601, UTC).

        Integer arithmetic (quotient and remainder by the frequency) keeps 100 ns
        precision without overflowing over days of QPC ticks.
        """
        delta = np.asarray(raw, dtype=np.int64) - np.int64(self.header_time)
        if self.frequency == 10_000_000:
            ticks = delta
        else:
            whole, part = np.divmod(delta, np.int64(self.frequency))
            ticks = whole * 10_000_000 + (part * 10_000_000) // self.frequency
        out: np.ndarray = ticks + np.int64(self.start_time)
        return out


@dataclass
class Damage:
    """Damaged buffers met during the walk: count and the first few locations."""

    buffers: int = 0
    where: list[str] = field(default_factory=list)
    cut_short: str | None = None

    def add(self, text: str) -> None:
        self.buffers += 1
        if len(self.where) < 5:
            self.where.append(text)


@dataclass
class Chunk:
    """Records of consecutive buffers: bodies joined in ``data``, one entry per record."""

    data: bytes
    positions: np.ndarray  # int64: record start within data
    sizes: np.ndarray  # int64: record size (header + payload)
    header_types: np.ndarray  # uint8
    rows: np.ndarray  # int64: 1-based record number in the file

    @property
    def count(self) -> int:
        return len(self.positions)


def _string_at(payload: bytes, start: int) -> tuple[str, int]:
    """The NUL-terminated UTF-16 string at ``start`` and the position after it."""
    end = start
    while end + 1 < len(payload) and payload[end : end + 2] != b"\0\0":
        end += 2
    return payload[start:end].decode("utf-16-le", "replace"), end + 2


def read_log_header(name: str, data: bytes | memoryview | mmap.mmap) -> LogHeader:
    """Parse the first buffer's logfile header event; :class:`TraceFormatError` if absent."""
    if len(data) < BUFFER_HEADER_SIZE + 0x20:
        raise TraceFormatError(
            f"{name}: {len(data)} bytes is too short for an ETW trace (an .etl file starts "
            "with a 72-byte buffer header and the logfile header event). The file is "
            "truncated or empty: record it again."
        )
    if not sniff_etl(bytes(data[: BUFFER_HEADER_SIZE + 0x20])):
        raise TraceFormatError(
            f"{name}: at 0x0: not an ETW trace: the first buffer does not start with the "
            "logfile header event. Give the .etl file written by xperf, WPR, logman or "
            "PerfView."
        )
    record = BUFFER_HEADER_SIZE
    header_type = data[record + 2]
    size = _U16(data, record + 4)[0]
    pointer = POINTER_SIZE[header_type]
    dtype = logfile_header_dtype(pointer)
    payload_at = record + HEADER_SIZES[header_type]
    if size < HEADER_SIZES[header_type] + dtype.itemsize or record + size > len(data):
        raise TraceFormatError(
            f"{name}: at 0x{record:X}: the logfile header event is cut short ({size} bytes). "
            "The trace is damaged: record it again."
        )
    fields = np.frombuffer(bytes(data[payload_at : payload_at + dtype.itemsize]), dtype=dtype)[0]
    payload = bytes(data[payload_at + dtype.itemsize : record + size])
    logger_name, after = _string_at(payload, 0)
    log_file_name, _ = _string_at(payload, after)
    clock = int(fields["reserved_flags"])
    if clock == 2:
        frequency = 10_000_000
    elif clock == 3:
        frequency = int(fields["cpu_speed_mhz"]) * 1_000_000
    else:
        frequency = int(fields["perf_freq"])
    if frequency <= 0:
        raise TraceFormatError(
            f"{name}: at 0x{payload_at:X}: the logfile header gives no clock frequency "
            f"(clock type {clock}), so event times cannot be computed. The trace is damaged."
        )
    return LogHeader(
        name=name,
        pointer=int(fields["pointer_size"]) or pointer,
        clock=clock,
        frequency=frequency,
        start_time=int(fields["start_time"]),
        end_time=int(fields["end_time"]),
        header_time=int(np.frombuffer(bytes(data[record + 0x10 : record + 0x18]), "<u8")[0]),
        buffers_written=int(fields["buffers_written"]),
        events_lost=int(fields["events_lost"]),
        buffers_lost=int(fields["buffers_lost"]),
        buffer_size=int(fields["buffer_size"]),
        version=int(fields["version"]),
        provider_version=int(fields["provider_version"]),
        processors=int(fields["processors"]),
        logger_name=logger_name,
        log_file_name=log_file_name,
    )


def _body(data: memoryview, offset: int, header: np.void, damage: Damage) -> bytes | None:
    """The record bytes of the buffer at ``offset`` (expanded when compressed)."""
    size = int(header["buffer_size"])
    filled = int(header["filled_bytes"])
    if header["flags"] & BUFFER_FLAG_COMPRESSED:
        if filled < BUFFER_HEADER_SIZE:
            damage.add(f"buffer at 0x{offset:X}: compressed, {filled} bytes filled")
            return None
        try:
            return decompress(
                bytes(data[offset + BUFFER_HEADER_SIZE : offset + size]),
                filled - BUFFER_HEADER_SIZE,
            )
        except XpressError as exc:
            damage.add(f"buffer at 0x{offset:X}: does not decompress ({exc})")
            return None
    end = filled if BUFFER_HEADER_SIZE <= filled <= size else int(header["saved_offset"])
    if not BUFFER_HEADER_SIZE <= end <= size:
        end = size
    return bytes(data[offset + BUFFER_HEADER_SIZE : offset + end])


def _walk(
    body: bytes, base: int, out: tuple[list[int], list[int], list[int]], where: str, damage: Damage
) -> int:
    """Append each record of ``body`` (position + ``base``, size, header type) to ``out``.

    Returns the number of records. A record that does not fit stops the walk of this
    buffer, which is counted as damaged.
    """
    positions, sizes, types = out
    pos, end, count = 0, len(body), 0
    while pos + 8 <= end:
        marker = _U32(body, pos)[0]
        if marker == _END_OF_RECORDS:
            break
        flags = marker >> 24
        header_type = (marker >> 16) & 0xFF
        if flags & 0xC0 == 0xC0:
            size = _U16(body, pos + 4)[0] if header_type in SIZE_AT_4 else marker & 0xFFFF
            minimum = HEADER_SIZES.get(header_type, 8)
        elif flags & 0x80:  # a WPP message header: size in the low word
            size, header_type, minimum = marker & 0xFFFF, 0, 8
        else:
            size, minimum = 0, 8
        if size < minimum or pos + size > end:
            damage.add(
                f"{where}, record at body offset 0x{pos:X}: marker 0x{marker:08X}, size {size}"
            )
            break
        positions.append(pos + base)
        sizes.append(size)
        types.append(header_type)
        count += 1
        pos += (size + 7) & ~7
    return count


def _chunk(
    parts: list[bytes], records: tuple[list[int], list[int], list[int]], first_row: int
) -> Chunk:
    positions, sizes, types = records
    count = len(positions)
    return Chunk(
        data=b"".join(parts),
        positions=np.array(positions, dtype=np.int64),
        sizes=np.array(sizes, dtype=np.int64),
        header_types=np.array(types, dtype=np.uint8),
        rows=np.arange(first_row, first_row + count, dtype=np.int64),
    )


def iter_chunks(
    name: str, data: bytes | memoryview | mmap.mmap, damage: Damage, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[Chunk]:
    """Walk every buffer of the file and yield its records, chunk by chunk."""
    view = memoryview(data)
    total = len(view)
    offset = 0
    parts: list[bytes] = []
    records: tuple[list[int], list[int], list[int]] = ([], [], [])
    base = 0
    first_row = 1
    while offset + BUFFER_HEADER_SIZE <= total:
        header = np.frombuffer(
            view[offset : offset + BUFFER_HEADER_SIZE], dtype=BUFFER_HEADER_DTYPE
        )[0]
        size = int(header["buffer_size"])
        if size < BUFFER_HEADER_SIZE:
            if not any(view[offset:]):  # zero padding after the last buffer
                break
            damage.cut_short = (
                f"buffer header at 0x{offset:X} gives a size of {size} bytes, so the "
                f"{total - offset:,} bytes from there on could not be read"
            )
            break
        if offset + size > total:
            damage.cut_short = (
                f"the file ends inside the buffer at 0x{offset:X} ({size:,} bytes long, "
                f"{total - offset:,} present): the trace was cut short"
            )
            break
        body = _body(view, offset, header, damage)
        if body is not None:
            _walk(body, base, records, f"buffer at 0x{offset:X}", damage)
            parts.append(body)
            base += len(body)
        offset += size
        if base >= chunk_bytes:
            chunk = _chunk(parts, records, first_row)
            first_row += chunk.count
            yield chunk
            parts, records, base = [], ([], [], []), 0
    if parts:
        yield _chunk(parts, records, first_row)
