"""Buffers and records of an ETL file: the logfile header, decompression, the record walk.

:func:`read_log_header` checks the first buffer and parses the logfile header event
(clock, start time, pointer size). :func:`iter_chunks` then walks every buffer (sizes
come from each buffer's own header: since Windows 8 buffers are written trimmed, so they
differ), expands compressed ones (:mod:`.xpress`) and walks the records of each
buffer body. Bodies are gathered into chunks of about :data:`CHUNK_BYTES` so the decoding
that follows works on whole numpy columns while memory stays bounded whatever the file
size. The bodies of a chunk are expanded into one preallocated array and walked in one
compiled call each (numba, :mod:`traceaudit._jit`), or buffer by buffer in Python where
numba is missing. Every record gets its 1-based number in the file (``row``): buffer order, then
record order, which is stable and is what messages quote.

A damaged buffer (a header that does not fit, a body that does not decompress, a record
whose size runs past the body) is skipped from the damage on and counted; the caller
reports the count. A file cut short ends the walk at the last whole buffer.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import cast

import numpy as np

from traceaudit._jit import kernel
from traceaudit.errors import TraceFormatError
from traceaudit.formats.etl.layout import (
    BUFFER_FLAG_COMPRESSED,
    BUFFER_HEADER_SIZE,
    BUFFER_TYPE_HEADER,
    HEADER_SIZES,
    MAX_BUFFER_SIZE,
    POINTER_SIZE,
    SIZE_AT_4,
    logfile_header_dtype,
)
from traceaudit.formats.etl.xpress import (
    XpressError,
    compiled_decoder,
    decompress,
    error_message,
)

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

    data: np.ndarray  # uint8: the bodies, one after the other
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


@dataclass
class _Plan:
    """The buffers of one chunk, before their bodies are expanded: per buffer, its offset
    in the file, where its body starts and how many bytes it takes there, whether it is
    compressed, and where its (expanded) body goes in the chunk."""

    offsets: list[int] = field(default_factory=list)
    src_at: list[int] = field(default_factory=list)
    src_count: list[int] = field(default_factory=list)
    modes: list[int] = field(default_factory=list)
    out_at: list[int] = field(default_factory=list)
    out_size: list[int] = field(default_factory=list)
    base: int = 0  # bytes of the chunk so far

    def add(self, offset: int, src_count: int, mode: int, size: int) -> None:
        self.offsets.append(offset)
        self.src_at.append(offset + BUFFER_HEADER_SIZE)
        self.src_count.append(src_count)
        self.modes.append(mode)
        self.out_at.append(self.base)
        self.out_size.append(size)
        self.base += size


def _plan_body(offset: int, header: tuple[int, ...], plan: _Plan, damage: Damage) -> None:
    """Add the body of the buffer at ``offset`` to ``plan`` (expanded when compressed)."""
    size, saved_offset, filled, flags = header
    if flags & BUFFER_FLAG_COMPRESSED:
        if filled < BUFFER_HEADER_SIZE:
            damage.add(f"buffer at 0x{offset:X}: compressed, {filled} bytes filled")
            return
        if filled > MAX_BUFFER_SIZE:  # its expanded body would be allocated up front
            damage.add(
                f"buffer at 0x{offset:X}: compressed, {filled:,} bytes filled, more than "
                f"ETW's largest buffer ({MAX_BUFFER_SIZE:,} bytes)"
            )
            return
        plan.add(offset, size - BUFFER_HEADER_SIZE, MODE_XPRESS, filled - BUFFER_HEADER_SIZE)
        return
    end = filled if BUFFER_HEADER_SIZE <= filled <= size else saved_offset
    if not BUFFER_HEADER_SIZE <= end <= size:
        end = size
    plan.add(offset, end - BUFFER_HEADER_SIZE, MODE_COPY, end - BUFFER_HEADER_SIZE)


def _walk(
    body: bytes, base: int, out: tuple[list[int], list[int], list[int]], where: str, damage: Damage
) -> int:
    """Append each record of ``body`` (position + ``base``, size, header type) to ``out``.

    Returns the number of records. A record that does not fit stops the walk of this
    buffer, which is counted as damaged. (The pure-Python walk; :func:`_walk_body` is the
    compiled one.)
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
            damage.add(_record_damage(where, pos, marker, size))
            break
        positions.append(pos + base)
        sizes.append(size)
        types.append(header_type)
        count += 1
        pos += (size + 7) & ~7
    return count


def _record_damage(where: str, pos: int, marker: int, size: int) -> str:
    return f"{where}, record at body offset 0x{pos:X}: marker 0x{marker:08X}, size {size}"


_SIZE_AT_4 = np.array([t in SIZE_AT_4 for t in range(256)], dtype=np.bool_)
_MINIMUM = np.array([HEADER_SIZES.get(t, 8) for t in range(256)], dtype=np.int64)
MODE_COPY = 0
"""A body stored as it is."""
MODE_XPRESS = 1
"""A body stored LZ77 Xpress compressed."""


def _walk_body(
    data: np.ndarray,
    base: int,
    end: int,
    size_at_4: np.ndarray,
    minimum: np.ndarray,
    positions: np.ndarray,
    sizes: np.ndarray,
    types: np.ndarray,
    count: int,
    stop: np.ndarray,
) -> int:
    """:func:`_walk` compiled: the records of ``data[base:base + end]`` go to
    ``positions``/``sizes``/``types`` from index ``count`` on; returns the new count.
    ``stop`` gets ``(body offset, marker, size)`` of a record that does not fit."""
    pos = 0
    while pos + 8 <= end:
        at = base + pos
        marker = (
            np.int64(data[at])
            | (np.int64(data[at + 1]) << 8)
            | (np.int64(data[at + 2]) << 16)
            | (np.int64(data[at + 3]) << 24)
        )
        if marker == _END_OF_RECORDS:
            break
        flags = marker >> 24
        header_type = (marker >> 16) & 0xFF
        if flags & 0xC0 == 0xC0:
            if size_at_4[header_type]:
                size = np.int64(data[at + 4]) | (np.int64(data[at + 5]) << 8)
            else:
                size = marker & 0xFFFF
            least = minimum[header_type]
        elif flags & 0x80:  # a WPP message header: size in the low word
            size = marker & 0xFFFF
            header_type = 0
            least = 8
        else:
            size = 0
            least = 8
        if size < least or pos + size > end:
            stop[0] = pos
            stop[1] = marker
            stop[2] = size
            break
        positions[count] = at
        sizes[count] = size
        types[count] = header_type
        count += 1
        pos += (size + 7) & ~7
    return count


def _read_bodies(
    src: np.ndarray,
    src_at: np.ndarray,
    src_count: np.ndarray,
    modes: np.ndarray,
    data: np.ndarray,
    out_at: np.ndarray,
    out_size: np.ndarray,
    size_at_4: np.ndarray,
    minimum: np.ndarray,
    positions: np.ndarray,
    sizes: np.ndarray,
    types: np.ndarray,
    status: np.ndarray,
    stops: np.ndarray,
) -> int:
    """Expand (or copy) every body of a chunk and walk its records, compiled by numba.

    Body ``i`` is ``src[src_at[i]:src_at[i] + src_count[i]]`` and goes to
    ``data[out_at[i]:out_at[i] + out_size[i]]``; it is walked right after it is expanded,
    while it is still in the CPU cache. ``status[i]``: 0, or the decoder's negative error
    code (``stops[i, 0]`` then holds its detail). ``stops[i]``: ``(body offset, marker,
    size)`` of the record that stopped the walk, offset -1 when none did. Returns the
    number of records (``positions`` has room for one per 8 bytes).
    """
    count = 0
    detail = np.zeros(1, dtype=np.int64)
    for i in range(len(src_at)):
        stops[i, 0] = -1
        status[i] = 0
        if modes[i] == MODE_XPRESS:
            code = _expand_body(src, src_at[i], src_count[i], data, out_at[i], out_size[i], detail)
            if code < 0:
                status[i] = code
                stops[i, 0] = detail[0]
                continue
        else:
            target = out_at[i]
            begin = src_at[i]
            for k in range(out_size[i]):
                data[target + k] = src[begin + k]
        count = _walk_compiled(
            data,
            out_at[i],
            out_size[i],
            size_at_4,
            minimum,
            positions,
            sizes,
            types,
            count,
            stops[i],
        )
    return count


_ReadBodies = Callable[
    [
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
        np.ndarray,
    ],
    int,
]
# The names _read_bodies calls: its compiled callees, set by _kernel() before it compiles.
_expand_body: Callable[..., int] = _walk_body
_walk_compiled: Callable[..., int] = _walk_body


@cache
def _kernel() -> _ReadBodies | None:
    """The compiled :func:`_read_bodies`, or None without numba (numba is imported here,
    at the first read, not when the module is; the machine code comes from its cache)."""
    global _expand_body, _walk_compiled
    decoder = compiled_decoder()
    walk = kernel(_walk_body)
    if decoder is None or walk is None:
        return None
    _expand_body, _walk_compiled = decoder, walk
    return cast("_ReadBodies | None", kernel(_read_bodies))


def _read_python(
    src: np.ndarray, plan: _Plan, data: np.ndarray, damage: Damage
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_read_bodies` in Python, buffer by buffer (:func:`~.xpress.decompress` and
    :func:`_walk`): where numba is missing, and as the reference the tests compare with."""
    records: tuple[list[int], list[int], list[int]] = ([], [], [])
    for begin, count, mode, offset, at, size in zip(
        plan.src_at,
        plan.src_count,
        plan.modes,
        plan.offsets,
        plan.out_at,
        plan.out_size,
        strict=True,
    ):
        if mode == MODE_XPRESS:
            try:
                body = decompress(src[begin : begin + count].tobytes(), size)
            except XpressError as exc:
                damage.add(f"buffer at 0x{offset:X}: does not decompress ({exc})")
                continue
            data[at : at + size] = np.frombuffer(body, dtype=np.uint8)
        else:
            data[at : at + size] = src[begin : begin + size]
            body = data[at : at + size].tobytes()
        _walk(body, at, records, f"buffer at 0x{offset:X}", damage)
    return (
        np.array(records[0], dtype=np.int64),
        np.array(records[1], dtype=np.int64),
        np.array(records[2], dtype=np.uint8),
    )


def _chunk(src: np.ndarray, plan: _Plan, first_row: int, damage: Damage, kernels: bool) -> Chunk:
    """Expand and walk the bodies of ``plan``; damaged ones are counted and left out."""
    data = np.empty(plan.base, dtype=np.uint8)
    read = _kernel() if kernels else None
    if read is None:
        positions, sizes, types = _read_python(src, plan, data, damage)
    else:
        buffers = len(plan.offsets)
        room = plan.base // 8 + 1
        positions = np.empty(room, dtype=np.int64)
        sizes = np.empty(room, dtype=np.int64)
        types = np.empty(room, dtype=np.uint8)
        status = np.empty(buffers, dtype=np.int64)
        stops = np.empty((buffers, 3), dtype=np.int64)
        out_size = np.array(plan.out_size, dtype=np.int64)
        count = read(
            src,
            np.array(plan.src_at, dtype=np.int64),
            np.array(plan.src_count, dtype=np.int64),
            np.array(plan.modes, dtype=np.uint8),
            data,
            np.array(plan.out_at, dtype=np.int64),
            out_size,
            _SIZE_AT_4,
            _MINIMUM,
            positions,
            sizes,
            types,
            status,
            stops,
        )
        positions, sizes, types = (
            positions[:count].copy(),
            sizes[:count].copy(),
            types[:count].copy(),
        )
        for i in np.flatnonzero((status < 0) | (stops[:, 0] >= 0)).tolist():
            where = f"buffer at 0x{plan.offsets[i]:X}"
            pos, marker, size = stops[i].tolist()
            if status[i] < 0:
                message = error_message(int(status[i]), pos, int(out_size[i]))
                damage.add(f"{where}: does not decompress ({message})")
            else:
                damage.add(_record_damage(where, pos, marker, size))
    count = len(positions)
    return Chunk(
        data=data,
        positions=positions,
        sizes=sizes,
        header_types=types,
        rows=np.arange(first_row, first_row + count, dtype=np.int64),
    )


_BUFFER_HEADER = struct.Struct("<II40xIH")  # buffer_size, saved_offset, filled_bytes, flags


def iter_chunks(
    name: str,
    data: bytes | memoryview | mmap.mmap,
    damage: Damage,
    chunk_bytes: int = CHUNK_BYTES,
    *,
    kernels: bool | None = None,
) -> Iterator[Chunk]:
    """Walk every buffer of the file and yield its records, chunk by chunk.

    The buffer headers are read one by one (each gives the next one's offset); the bodies
    of a chunk's buffers are then expanded and walked together, in one compiled call each
    when numba is available (:func:`_read_bodies`); ``kernels=False`` reads them in Python
    (:func:`_read_python`; the tests compare the two).
    """
    src = np.frombuffer(data, dtype=np.uint8)
    if kernels is None:
        kernels = _kernel() is not None
    total = len(src)
    offset = 0
    plan = _Plan()
    first_row = 1
    while offset + BUFFER_HEADER_SIZE <= total:
        header = _BUFFER_HEADER.unpack_from(data, offset)
        size = header[0]
        if size < BUFFER_HEADER_SIZE:
            if not src[offset:].any():  # zero padding after the last buffer
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
        _plan_body(offset, header, plan, damage)
        offset += size
        if plan.base >= chunk_bytes:
            chunk = _chunk(src, plan, first_row, damage, kernels)
            first_row += chunk.count
            yield chunk
            plan = _Plan()
    if plan.offsets:
        yield _chunk(src, plan, first_row, damage, kernels)
