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
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from traceaudit.errors import DamagedRowError, TraceFormatError
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
    "Located",
    "EventArrays",
    "locate_events",
    "read_u16",
    "read_u32",
]

STATUS_PENDING = 0x103
"""NTSTATUS of an event still pending when the capture stopped (empty Result)."""

_HEADER = EVENT_HEADER_DTYPE.itemsize
_MAX_LOCATIONS = 5
_SLACK = 16
"""How many bytes past an event's computed end the walk looks for the next event."""
_WITHIN = 366 * 86_400 * 10_000_000
"""The most (100 ns ticks) an event's time may differ from the previous event's in a walk."""
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
    """Event offsets in display order, with what had to be skipped or was lost.

    ``numbers`` is each event's 0-based position in the file's event list (``row - 1``).
    """

    offsets: np.ndarray
    numbers: np.ndarray
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_rows: list[str] = field(default_factory=list)
    truncated: bool = False


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


def locate_events(header: PmlHeader, data: np.ndarray, *, strict: bool) -> Located:
    """Every event's offset: from the index, or (damaged file) by walking the events.

    Walking produces a warning that counts the events lost; in strict mode it raises
    :class:`TraceFormatError` instead.
    """
    problem = header.index_problem()
    if problem is None:
        entries = np.frombuffer(
            data,
            dtype=OFFSET_ENTRY_DTYPE,
            count=header.number_of_events,
            offset=header.event_offsets_offset,
        )
        offsets = entries["offset"].astype(np.int64) | (
            (entries["flags"].astype(np.int64) & 1) << 32
        )
        return Located(offsets, np.arange(len(offsets), dtype=np.int64))
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
        located: Located,
        *,
        strict: bool,
    ) -> EventArrays:
        """Gather the event headers; drop (or, strict, refuse) events that do not fit."""
        offsets = located.offsets
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
            _report_damaged(header, located, offsets, valid, strict=strict)
            keep = np.flatnonzero(valid)
            offsets, records, details, details_end = (
                offsets[keep],
                records[keep],
                details[keep],
                details_end[keep],
            )
            has_extra, extra_at = has_extra[keep], extra_at[keep]
            located.numbers = located.numbers[keep]
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
            located.numbers,
            offsets,
            fields,
            details,
            details_end,
            extra_at,
            sub_operation,
        )


def _report_damaged(
    header: PmlHeader, located: Located, offsets: np.ndarray, valid: np.ndarray, *, strict: bool
) -> None:
    """Count events whose header or details fall outside the file (or raise, strict)."""
    bad = np.flatnonzero(~valid)
    where = [
        f"event {int(located.numbers[i]) + 1} at 0x{int(offsets[i]):X}"
        for i in bad[:_MAX_LOCATIONS]
    ]
    if strict:
        raise DamagedRowError(
            f"{header.name}: {where[0]}: the event's header or details lie outside the file "
            "or name no event class: the event is damaged. Read without strict mode to skip "
            "damaged events."
        )
    located.skipped["damaged event"] = located.skipped.get("damaged event", 0) + len(bad)
    located.skipped_rows.extend(where[: _MAX_LOCATIONS - len(located.skipped_rows)])
    located.warnings.append(
        f"{header.name}: skipped {len(bad)} damaged events (header or details outside the "
        f"file), first {', '.join(where)}."
    )
