"""PML events in bulk: where they are, and their fixed headers as numpy columns.

:func:`locate_events` finds every event: from the event offset array when the file is
whole, else by walking the events from the first one (each event's size follows from
its header) until the data stops. That is how a capture cut short or not closed cleanly
is read up to its last intact event.

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
from traceaudit.formats._pml_layout import (
    EVENT_HEADER_DTYPE,
    FILE_SYSTEM,
    IPC,
    OFFSET_ENTRY_DTYPE,
    PROCESS,
)
from traceaudit.formats._pml_tables import PmlHeader, gather_records

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


def _walk(header: PmlHeader, data: np.ndarray) -> tuple[np.ndarray, int]:
    """Offsets of the events stored back to back from the first one, and where the last
    intact event ends. Stops at the first event that is cut off or is not an event."""
    pointer = header.pointer
    end = header.events_end
    pos = header.events_offset
    offsets: list[int] = []
    while pos + _HEADER <= end:
        fields = _WALK.unpack_from(data, pos)
        event_class, time, depth, size, extra = (
            fields[2],
            fields[7],
            fields[9],
            fields[11],
            fields[12],
        )
        if not PROCESS <= event_class <= IPC or time == 0:
            break
        stop = pos + _HEADER + depth * pointer + size
        if extra:
            if pos + extra + 2 > end:
                break
            (extra_size,) = struct.unpack_from("<H", data, pos + extra)
            stop = max(stop, pos + extra + 2 + extra_size)
        if stop > end:
            break
        offsets.append(pos)
        pos = stop
    return np.asarray(offsets, dtype=np.int64), pos


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
    offsets, stop = _walk(header, data)
    promised = header.number_of_events
    if promised >= len(offsets) and promised:
        lost = f"{promised - len(offsets)} of the {promised} events the header counts were lost"
    else:
        lost = "an unknown number of events were lost (the header does not count them)"
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
    return data[pos].astype(np.uint16) | (data[pos + 1].astype(np.uint16) << 8)


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
