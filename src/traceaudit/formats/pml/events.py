"""PML events in bulk: where they are, and their fixed headers as numpy columns.

:func:`locate_events` finds every event: from the event offset array when the file is
whole, else by walking the events from the first one (each event's size follows from
its header; the next one is looked for a few bytes on when it does not start exactly
there, see :func:`_walk`) until the data stops. That is how a capture cut short or not
closed cleanly is read up to its last intact event.

:class:`EventArrays` then holds every event's 52-byte header (one structured-dtype
gather, no Python object per event) as contiguous numpy columns, and where each event's
details and extra details are. Events whose parts lie outside the file are dropped and
counted (or, in strict mode, refused).

A batch reader takes the events part by part (:meth:`Located.part`): from a file whose
index is intact, each part's offsets are read from its slice of the index, so no offsets
array the size of the capture is ever built; damage found on the way accumulates in one
:class:`Damage`, reported as the whole-file reader reports it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from traceaudit._threads import in_two
from traceaudit.errors import DamagedRowError, TraceFormatError
from traceaudit.formats.pml.kernels import Kernels, compiled, words
from traceaudit.formats.pml.layout import (
    EVENT_HEADER_DTYPE,
    FILE_SYSTEM,
    IPC,
    OFFSET_ENTRY_DTYPE,
    PROCESS,
)
from traceaudit.formats.pml.tables import PmlHeader, gather_records

__all__ = [
    "STATUS_PENDING",
    "Damage",
    "Located",
    "EventArrays",
    "index_offsets",
    "locate_events",
    "read_u16",
    "read_u32",
    "walk_events",
]

STATUS_PENDING = 0x103
"""NTSTATUS of an event still pending when the capture stopped (empty Result)."""

_HEADER = EVENT_HEADER_DTYPE.itemsize
_MAX_LOCATIONS = 5
_TWO_CORES = 1 << 13
"""Events from which the header pass is split over two cores."""
_SLACK = 16
"""How many bytes past an event's computed end the walk looks for the next event."""
_WITHIN = 366 * 86_400 * 10_000_000
"""The most (100 ns ticks) an event's time may differ from the previous event's in a walk."""
_ADDRESSED = 1 << 33
"""Bytes an index entry's offset and bit 0 of its flags byte can address."""
_WALK = struct.Struct("<IIIHHIQQIHHII")  # EVENT_HEADER_DTYPE, for the one-by-one walk
_COLUMNS = (
    "process_index",
    "tid",
    "event_class",
    "operation",
    "duration",
    "time",
    "result",
    "details_size",
)


@dataclass
class Located:
    """Event offsets in display order, and what the search for them found lost.

    ``numbers`` is each event's 0-based position in the file's event list (``row - 1``).
    With ``in_index`` set (``locate_events(..., whole=False)`` on a file whose index is
    intact), ``offsets`` and ``numbers`` are empty and that many events are read from the
    index part by part (:meth:`part`).
    """

    offsets: np.ndarray
    numbers: np.ndarray
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False
    in_index: int = 0

    @property
    def count(self) -> int:
        """How many events were found (numbered)."""
        return self.in_index or len(self.offsets)

    def part(
        self, header: PmlHeader, data: np.ndarray, start: int, stop: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Offsets and numbers of the events ``start:stop`` (display order)."""
        if self.in_index:
            stop = min(stop, self.in_index)
            return index_offsets(header, data, start, stop), np.arange(start, stop, dtype=np.int64)
        return self.offsets[start:stop], self.numbers[start:stop]


@dataclass
class Damage:
    """Events skipped because their parts lie outside the file, over one or many parts."""

    count: int = 0
    where: list[str] = field(default_factory=list)  # the first few, "event N at 0x…"

    @property
    def skipped(self) -> dict[str, int]:
        """``Trace.skipped`` of the damage (empty when there is none)."""
        return {"damaged event": self.count} if self.count else {}

    def warnings(self, name: str) -> list[str]:
        """The warning that counts the damaged events (none when there are none)."""
        if not self.count:
            return []
        return [
            f"{name}: skipped {self.count} damaged events (header or details outside the "
            f"file), first {', '.join(self.where)}."
        ]


def _event_at(data: np.ndarray, pos: int, previous: int) -> tuple[int, int, int, int] | None:
    """(time, stack depth, details size, extra offset) of the event header at ``pos``, or
    None when the bytes there are not one: an event class Procmon does not have, no
    time, or a time more than :data:`_WITHIN` away from the previous event's (a header
    read a few bytes off its true start gets a time that is nowhere near)."""
    fields = _WALK.unpack_from(data, pos)  # type: ignore[arg-type]  # an ndarray is a buffer
    event_class, time = fields[2], fields[7]
    if not PROCESS <= event_class <= IPC or time == 0:
        return None
    if previous and abs(time - previous) > _WITHIN:
        return None
    return time, fields[9], fields[11], fields[12]


def _walk(header: PmlHeader, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Offsets and times of the events stored back to back from the first one, and
    where the last intact event ends. Stops at an event that is cut off, or where no
    event follows.

    An event is its header, stack and details, and its extra details block (u16 size and
    bytes) when that block follows them directly. Events are not always exactly back to
    back, so the next event is looked for a few bytes on (:data:`_SLACK`) when the bytes
    right after an event are not one: some Procmon builds write one byte more than the
    block's u16 size says when that size is 0xFFFF (a 64 KiB directory listing). Version 7
    may store an event's extra details after later events (its extra offset then points
    past its details): the walk steps over that block when it reaches it, and an event
    whose block lies beyond the end of the data is lost, not read incomplete.
    """
    pointer = header.pointer
    end = header.events_end
    pos = header.events_offset
    offsets: list[int] = []
    times: list[int] = []
    deferred: dict[int, int] = {}  # start -> end of extra blocks stored after later events
    previous = 0
    last = pos  # where the last intact event (or block stepped over) ends
    while pos + 2 <= end:
        if pos in deferred:
            pos = last = deferred.pop(pos)
            continue
        event = _event_at(data, pos, previous) if pos + _HEADER <= end else None
        if event is None:
            pos = _resync(data, pos, end, previous, deferred)
            if pos < 0:
                break
            continue
        time, depth, size, extra = event
        stop = pos + _HEADER + depth * pointer + size
        lost = False
        if extra:
            at = pos + extra
            if at + 2 > end:
                if at <= stop:
                    break  # the event's own extra details are cut off
                lost = True  # stored after later events, beyond the end of the data
            else:
                (extra_size,) = struct.unpack_from("<H", data, at)  # type: ignore[arg-type]
                if at <= stop:
                    stop = max(stop, at + 2 + extra_size)
                elif at + 2 + extra_size <= end:
                    deferred[at] = at + 2 + extra_size
                else:
                    lost = True
        if stop > end:
            break
        if not lost:
            offsets.append(pos)
            times.append(time)
        previous = time
        pos = last = stop
    return np.asarray(offsets, dtype=np.int64), np.asarray(times, dtype=np.uint64), last


def _resync(data: np.ndarray, pos: int, end: int, previous: int, deferred: dict[int, int]) -> int:
    """The first position within :data:`_SLACK` bytes after ``pos`` where an event or a
    deferred extra details block starts; -1 when there is none."""
    for at in range(pos + 1, min(pos + _SLACK, end - 1)):
        if at in deferred or (at + _HEADER <= end and _event_at(data, at, previous)):
            return at
    return -1


def walk_events(header: PmlHeader, data: np.ndarray) -> tuple[np.ndarray, int]:
    """The offsets of every event stored back to back from the first one, in file order,
    listed in the index or not, and where the last intact one ends (the walk that reads
    a damaged file; the redactor uses it to reach events the index does not list)."""
    offsets, _times, last = _walk(header, data)
    return offsets, last


def index_offsets(header: PmlHeader, data: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The offsets of events ``start:stop`` read from the event index (which must be
    intact: :meth:`PmlHeader.index_problem` is None).

    Bit 0 of an entry's flags byte is bit 32 of the offset (files over 4 GiB); in a file
    over 8 GiB, which 33 bits cannot address, the whole byte is read as bits 32 to 39
    (the entry as a 40-bit offset).
    """
    entries = np.frombuffer(
        data,
        dtype=OFFSET_ENTRY_DTYPE,
        count=max(stop - start, 0),
        offset=header.event_offsets_offset + start * OFFSET_ENTRY_DTYPE.itemsize,
    )
    high = 0xFF if header.size > _ADDRESSED else 1
    return np.asarray(
        entries["offset"].astype(np.int64) | ((entries["flags"].astype(np.int64) & high) << 32)
    )


def locate_events(
    header: PmlHeader, data: np.ndarray, *, strict: bool, whole: bool = True
) -> Located:
    """Every event's offset: from the index, or (damaged file) by walking the events.

    With ``whole=False`` an intact index is not read here but part by part
    (:meth:`Located.part`). Walking produces a warning that counts the events lost; in
    strict mode it raises :class:`TraceFormatError` instead.
    """
    problem = header.index_problem()
    if problem is None:
        count = header.number_of_events
        if not whole:
            empty = np.zeros(0, dtype=np.int64)
            return Located(empty, empty, in_index=count)
        return Located(index_offsets(header, data, 0, count), np.arange(count, dtype=np.int64))
    offsets, times, stop = _walk(header, data)
    # Procmon lists events by time (the index is in time order, and so are the events
    # stored, except version 7's network events, written when they complete).
    offsets = offsets[np.argsort(times, kind="stable")]
    promised = header.number_of_events
    if not promised:
        lost = "an unknown number of events were lost (the header does not count them)"
    elif promised >= len(offsets):
        lost = f"{promised - len(offsets)} of the {promised} events the header counts were lost"
    else:
        lost = (
            f"the header counts {promised} events, {len(offsets) - promised} fewer than were "
            "read (Procmon stores some events it does not list)"
        )
    message = (
        f"{header.name}: {problem}. Read {len(offsets)} events up to the last intact one, "
        f"which ends at 0x{stop:X}; {lost}."
    )
    if strict:
        raise TraceFormatError(
            f"{message} Read without strict mode to keep the intact events, or save the log "
            "again from Process Monitor if the original is still there."
        )
    return Located(
        offsets, np.arange(len(offsets), dtype=np.int64), warnings=[message], truncated=True
    )


def read_u16(data: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The little-endian u16 at each position (positions must be inside ``data``)."""
    return np.asarray(data[pos].astype(np.uint16) | (data[pos + 1].astype(np.uint16) << 8))


def read_u32(data: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The little-endian u32 at each position."""
    return gather_records(data, pos, np.dtype("<u4"))


@dataclass
class EventArrays:
    """Every event's header fields and the byte ranges of its parts, one row per event.

    ``fields`` holds contiguous numpy columns named as in :data:`EVENT_HEADER_DTYPE`.
    ``details``/``details_end`` bound the details; ``extra_at`` is where the extra
    details block starts (-1: none; read with :meth:`extra_of`); ``sub_operation`` is
    the first details byte of file-system and IPC events (0 for the other classes).
    """

    header: PmlHeader
    data: np.ndarray
    buf: pa.Buffer
    numbers: np.ndarray
    offsets: np.ndarray
    fields: dict[str, np.ndarray]
    details: np.ndarray
    details_end: np.ndarray
    extra_at: np.ndarray
    sub_operation: np.ndarray

    @property
    def count(self) -> int:
        return len(self.offsets)

    @property
    def event_class(self) -> np.ndarray:
        return self.fields["event_class"]

    @property
    def operation(self) -> np.ndarray:
        return self.fields["operation"]

    def take(self, index: np.ndarray) -> EventArrays:
        """The events at ``index`` (positions in this one), as their own EventArrays."""
        return EventArrays(
            self.header,
            self.data,
            self.buf,
            self.numbers[index],
            self.offsets[index],
            {name: values[index] for name, values in self.fields.items()},
            self.details[index],
            self.details_end[index],
            self.extra_at[index],
            self.sub_operation[index],
        )

    @property
    def span(self) -> tuple[int, int]:
        """The bytes these events lie in: from the first one's start to the end of the
        last details, or of the last extra details block's size word (its bytes, at most
        64 KiB, are not read here); (0, 0) when there are no events."""
        if not self.count:
            return 0, 0
        end = max(int(self.details_end.max()), int(self.extra_at.max()) + 2)
        return int(self.offsets.min()), min(end, self.header.size)

    def extra_of(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and size of the extra details of the events at ``index`` (size 0:
        none). Read only for the events that need them."""
        at = self.extra_at[index]
        size = np.zeros(len(index), dtype=np.int64)
        present = np.flatnonzero(at >= 0)
        size[present] = read_u16(self.data, at[present])
        start = at + 2
        size[start + size > self.header.size] = 0
        return start, size

    @classmethod
    def build(
        cls,
        header: PmlHeader,
        data: np.ndarray,
        buf: pa.Buffer,
        offsets: np.ndarray,
        numbers: np.ndarray,
        damage: Damage,
        *,
        strict: bool,
    ) -> EventArrays:
        """Gather the headers of the events at ``offsets`` (numbered ``numbers``); drop
        (or, strict, refuse) events that do not fit, counting them in ``damage``."""
        kernels = compiled()
        if kernels is not None:
            return cls._build_compiled(
                kernels, header, data, buf, offsets, numbers, damage, strict=strict
            )
        inside = (offsets >= header.events_offset) & (offsets + _HEADER <= header.size)
        safe = offsets if bool(inside.all()) else np.where(inside, offsets, header.events_offset)
        records = gather_records(data, safe, EVENT_HEADER_DTYPE)
        details = offsets + _HEADER + records["stack_depth"].astype(np.int64) * header.pointer
        details_end = details + records["details_size"]
        extra_at = offsets + records["extra_offset"]
        has_extra = extra_at > offsets
        valid = inside & (details_end <= header.size) & (records["event_class"] <= IPC)
        valid &= ~has_extra | (extra_at + 2 <= header.size)
        if not bool(valid.all()):
            _report_damaged(header, damage, offsets, numbers, valid, strict=strict)
            keep = np.flatnonzero(valid)
            offsets, records, details, details_end = (
                offsets[keep],
                records[keep],
                details[keep],
                details_end[keep],
            )
            has_extra, extra_at = has_extra[keep], extra_at[keep]
            numbers = numbers[keep]
        fields = {name: np.ascontiguousarray(records[name]) for name in _COLUMNS}
        extra_at[~has_extra] = -1
        sub_operation = np.zeros(len(offsets), dtype=np.uint8)
        event_class = fields["event_class"]
        fs = np.flatnonzero(
            ((event_class == FILE_SYSTEM) | (event_class == IPC)) & (fields["details_size"] > 0)
        )
        sub_operation[fs] = data[details[fs]]
        return cls(
            header,
            data,
            buf,
            numbers,
            offsets,
            fields,
            details,
            details_end,
            extra_at,
            sub_operation,
        )

    @classmethod
    def _build_compiled(
        cls,
        kernels: Kernels,
        header: PmlHeader,
        data: np.ndarray,
        buf: pa.Buffer,
        offsets: np.ndarray,
        numbers: np.ndarray,
        damage: Damage,
        *,
        strict: bool,
    ) -> EventArrays:
        """:meth:`build` in one compiled pass over the headers (the same arrays)."""
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        count = len(offsets)
        fields = {name: np.empty(count, dtype=EVENT_HEADER_DTYPE[name]) for name in _COLUMNS}
        details = np.empty(count, dtype=np.int64)
        details_end = np.empty(count, dtype=np.int64)
        extra_at = np.empty(count, dtype=np.int64)
        sub_operation = np.empty(count, dtype=np.uint8)
        valid = np.empty(count, dtype=bool)
        d16, d32, d64 = words(data)

        def headers(start: int, stop: int) -> int:
            part = slice(start, stop)
            return int(
                kernels.event_headers(
                    data,
                    d16,
                    d32,
                    d64,
                    offsets[part],
                    header.events_offset,
                    header.pointer,
                    fields["process_index"][part],
                    fields["tid"][part],
                    fields["event_class"][part],
                    fields["operation"][part],
                    fields["duration"][part],
                    fields["time"][part],
                    fields["result"][part],
                    fields["details_size"][part],
                    details[part],
                    details_end[part],
                    extra_at[part],
                    sub_operation[part],
                    valid[part],
                )
            )

        # Each half on its own core when there are many: the pass waits on memory (and,
        # on a file mapped without populating, on page faults), which two cores share.
        bad = sum(in_two(headers, count, minimum=_TWO_CORES))
        if bad:
            _report_damaged(header, damage, offsets, numbers, valid, strict=strict)
            keep = np.flatnonzero(valid)
            fields = {name: values[keep] for name, values in fields.items()}
            offsets, numbers = offsets[keep], numbers[keep]
            details, details_end = details[keep], details_end[keep]
            extra_at, sub_operation = extra_at[keep], sub_operation[keep]
        return cls(
            header,
            data,
            buf,
            numbers,
            offsets,
            fields,
            details,
            details_end,
            extra_at,
            sub_operation,
        )


def _report_damaged(
    header: PmlHeader,
    damage: Damage,
    offsets: np.ndarray,
    numbers: np.ndarray,
    valid: np.ndarray,
    *,
    strict: bool,
) -> None:
    """Count events whose header or details fall outside the file (or raise, strict)."""
    bad = np.flatnonzero(~valid)
    where = [f"event {int(numbers[i]) + 1} at 0x{int(offsets[i]):X}" for i in bad[:_MAX_LOCATIONS]]
    if strict:
        raise DamagedRowError(
            f"{header.name}: {where[0]}: the event's header or details lie outside the file "
            "or name no event class: the event is damaged. Read without strict mode to skip "
            "damaged events."
        )
    damage.count += len(bad)
    damage.where.extend(where[: _MAX_LOCATIONS - len(damage.where)])
