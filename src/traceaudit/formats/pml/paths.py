"""The Path column of PML events: where each path lies, then its text, on a second core.

Reading the paths is two passes. :func:`path_spans` reads each event's size word (a
u16 at an offset that depends on the event class and operation: top bit set for one
byte per character, the rest the character count) and works out where the text lies
and where it ends; the operation's own fields follow it, so the typed details need
these ends (:attr:`PathSpans.after`) but not the text. :func:`decode_paths` then
decodes the text of every event, chunk by chunk, giving each chunk's file pages back
when asked to.

Decoding is the larger pass (about a quarter of a big read) and nothing but the final
frame needs its result, so :func:`start_decoding` runs it on a worker thread while the
caller makes the other columns and the typed details: the compiled decoder releases the
GIL, so on a machine with two cores the two overlap. Small batches, a single core or no
compiled kernels decode in place (a thread costs more than it saves there). The column
is the same either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from traceaudit._threads import Background, cores
from traceaudit.formats.pml.columns import Named, split_key
from traceaudit.formats.pml.events import EventArrays, read_u16
from traceaudit.formats.pml.kernels import Kernels, compiled, words
from traceaudit.formats.pml.layout import (
    PROCESS,
    PROCESS_CREATE,
    PROCESS_CREATE_PATH,
    PROCESS_DEFINED,
    path_offsets,
)
from traceaudit.formats.pml.text import CHUNK, StringViews, decode_strings

__all__ = ["PathSpans", "decode_paths", "path_spans", "start_decoding"]

_DECODE_CHUNK = 4 * CHUNK
"""Events whose paths the compiled decoder reads per call (and between two releases)."""

_BACKGROUND_EVENTS = 1 << 13
"""Fewer events than this decode their paths in place: starting a thread and handing the
GIL back and forth costs more than the overlap saves (Procmon's 53,214-event Tests64bit
reads 15-20 % faster on two cores, a 2,000-event log would not)."""


@dataclass(frozen=True)
class PathSpans:
    """Where each event's path text lies: ``begin`` (an in-file position even when there
    is no text), ``chars`` (0: no path, or one that does not fit in the details),
    ``one_byte`` (one byte per character, else UTF-16LE) and ``after`` (where the path
    ends; the end of the details when there is none)."""

    begin: np.ndarray
    chars: np.ndarray
    one_byte: np.ndarray
    after: np.ndarray

    def paths(self, buf: pa.Buffer, index: np.ndarray) -> pl.Series:
        """The paths of the events at ``index`` only (decoded here, for a few events)."""
        return decode_strings(buf, self.begin[index], self.chars[index], self.one_byte[index])


def _locate(events: EventArrays, operations: Named) -> tuple[np.ndarray, np.ndarray]:
    """Each event's size word position (-1: its operation has no path) and text start."""
    data, details, end = events.data, events.details, events.details_end
    pointer = events.header.pointer
    # Where the path is, per distinct operation key; -1 where the operation has none.
    info_at = np.full(len(operations.keys), -1, dtype=np.int64)
    text_at = np.zeros(len(operations.keys), dtype=np.int64)
    moving = np.zeros(len(operations.keys), dtype=bool)  # Process Create: path moves
    for code, key in enumerate(operations.keys):
        event_class, operation, _ = split_key(key)
        layout = path_offsets(event_class, operation, pointer)
        if layout is not None:
            info_at[code], text_at[code] = layout
        moving[code] = event_class == PROCESS and operation in (PROCESS_DEFINED, PROCESS_CREATE)
    info = info_at[operations.codes]
    start = details + text_at[operations.codes]
    created = np.flatnonzero(moving[operations.codes])
    created = created[end[created] >= details[created] + PROCESS_CREATE_PATH + 6]
    if len(created):  # two variable-size SIDs precede the path
        skip = data[details[created] + 0x2C].astype(np.int64) + data[details[created] + 0x2D]
        info[created] = PROCESS_CREATE_PATH
        start[created] = details[created] + PROCESS_CREATE_PATH + 6 + skip
    has_path = info >= 0
    return np.where(has_path, info + details, -1), start


def path_spans(events: EventArrays, operations: Named) -> PathSpans:
    """Where every event's path lies (file-system, registry and process events; the
    others have none: network paths are built by the renderer)."""
    info, start = _locate(events, operations)
    end, offsets = events.details_end, events.offsets
    count = events.count
    after = end.copy()
    begin = np.empty(count, dtype=np.int64)
    chars = np.empty(count, dtype=np.int64)
    one_byte = np.empty(count, dtype=bool)
    kernels = compiled()
    if kernels is not None:
        kernels.path_spans(
            words(events.data)[0], info, start, end, offsets, begin, chars, one_byte, after
        )
        return PathSpans(begin, chars, one_byte, after)
    data = events.data
    for first in range(0, count, CHUNK):
        part = slice(first, first + CHUNK)
        has_path = (info[part] >= 0) & (info[part] + 2 <= end[part])
        size_word = np.zeros(len(info[part]), dtype=np.int64)
        at = np.flatnonzero(has_path)
        size_word[at] = read_u16(data, info[part][at])
        narrow = (size_word >> 15).astype(bool)
        count_part = size_word & 0x7FFF
        stop = start[part] + np.where(narrow, count_part, 2 * count_part)
        fits = has_path & (stop <= end[part])
        count_part[~fits] = 0
        after[part][fits] = stop[fits]
        text = count_part > 0
        begin[part] = np.where(text, start[part], offsets[part])
        chars[part] = count_part
        one_byte[part] = narrow & text
    return PathSpans(begin, chars, one_byte, after)


def decode_paths(
    events: EventArrays,
    spans: PathSpans,
    release: Callable[[int, int], None] | None = None,
    *,
    kernels: Kernels | None = None,
) -> pl.Series:
    """The Path column: every event's path text ("" where it has none). After each
    chunk of events, ``release(start, end)`` may give that chunk's file pages back, so
    a memory-mapped file is never resident all at once here. ``kernels``: the compiled
    decoder (found by the caller: a worker thread must not look it up itself, as
    :func:`~traceaudit.formats.pml.kernels.compiled` answers for the calling thread's
    context); None decodes with the numpy path."""
    count, offsets, end = events.count, events.offsets, events.details_end
    if kernels is None:
        parts = []
        for first in range(0, count, CHUNK):
            part = slice(first, first + CHUNK)
            parts.append(
                decode_strings(
                    events.buf, spans.begin[part], spans.chars[part], spans.one_byte[part]
                )
            )
            if release is not None:
                release(int(offsets[part].min()), int(end[part].max()))
        if not parts:
            return pl.Series("path", [], dtype=pl.String)
        return (parts[0] if len(parts) == 1 else pl.concat(parts, rechunk=False)).alias("path")
    views = StringViews(kernels, events.data, count)
    for first in range(0, count, _DECODE_CHUNK):
        part = slice(first, first + _DECODE_CHUNK)
        views.add(first, spans.begin[part], spans.chars[part], spans.one_byte[part])
        if release is not None:
            release(int(offsets[part].min()), int(end[part].max()))
    return views.series().alias("path")


def start_decoding(
    events: EventArrays,
    spans: PathSpans,
    release: Callable[[int, int], None] | None = None,
) -> Background[pl.Series]:
    """:func:`decode_paths` on a worker thread when it pays (compiled kernels, at least
    :data:`_BACKGROUND_EVENTS` events and a second core), else at once. The caller must
    keep the file mapped until the result is in."""
    kernels = compiled()
    background = kernels is not None and events.count >= _BACKGROUND_EVENTS and cores() > 1
    return Background(
        lambda: decode_paths(events, spans, release, kernels=kernels), background=background
    )
