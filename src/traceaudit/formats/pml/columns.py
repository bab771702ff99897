"""The event schema's common columns, built for all events at once.

Operations, results, event classes and processes are stored as numbers. Each column is
made by naming every *distinct* number once (a few dozen Python calls) and gathering the
names for all events (:class:`Named`), so the cost follows the number of distinct values,
not of events. Paths are read by :mod:`.paths`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from traceaudit.formats.pml.events import STATUS_PENDING, EventArrays
from traceaudit.formats.pml.layout import FILE_SYSTEM, IPC, NETWORK
from traceaudit.formats.pml.names import (
    EVENT_CLASS_NAMES,
    NETWORK_PROTOCOLS,
    OPERATION_NAMES,
    RESULT_NAMES,
    SUB_OPERATION_NAMES,
    SUB_OPERATION_NAMES_BY_VERSION,
    UNKNOWN_OPERATION,
    result_name,
)
from traceaudit.formats.pml.tables import filetimes_to_datetimes

__all__ = [
    "BASE_COLUMNS",
    "Named",
    "factorize",
    "gathered_strings",
    "nullable",
    "operation_names",
    "base_columns",
]


_FEW = 4096
"""Fewer keys than this are factorized by sorting (unless the keys themselves are small)."""


def factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys (sorted) and each key's position among them.

    Linear time (``bincount``) when the keys are small non-negative numbers (operation
    keys) and many (a batch of a few events is cheaper sorted than counted over every
    possible key), ``np.unique`` otherwise.
    """
    if len(keys) == 0:
        return keys[:0], np.zeros(0, dtype=np.int64)
    low, high = int(keys.min()), int(keys.max())
    many = len(keys) >= _FEW or high < _FEW
    if low >= 0 and many and high < (1 << 18) + 4 * len(keys):
        distinct = np.flatnonzero(np.bincount(keys.astype(np.intp), minlength=high + 1))
        lookup = np.zeros(high + 1, dtype=np.int64)
        lookup[distinct] = np.arange(len(distinct))
        return distinct, lookup[keys]
    distinct, inverse = np.unique(keys, return_inverse=True)
    return distinct, inverse.astype(np.int64)


@dataclass(frozen=True)
class Named:
    """A string column made by naming each distinct key once: ``names[codes[i]]``."""

    names: list[str | None]
    codes: np.ndarray
    keys: tuple[int, ...] = ()  # the key each name was made from, when made by :meth:`of`

    @classmethod
    def of(cls, keys: np.ndarray, namer: Callable[[int], str | None]) -> Named:
        """Name ``keys`` with ``namer``, called once per distinct key."""
        distinct, codes = factorize(keys)
        keys_list = distinct.tolist()
        return cls([namer(k) for k in keys_list], codes, tuple(keys_list))

    def take(self, index: np.ndarray) -> Named:
        """The names of the keys at ``index`` only (the same names, fewer codes)."""
        return Named(self.names, self.codes[index], self.keys)

    def series(self, name: str) -> pl.Series:
        """The column: the names gathered by code (one gather, no per-event Python)."""
        return gathered_strings(name, self.names, self.codes)


_VIEW = np.dtype([("head", "<u8"), ("tail", "<u8")])
"""An Arrow ``string_view`` entry: length and prefix (or the whole string up to 12
bytes), then buffer index and offset."""


def gathered_strings(name: str, names: Sequence[str | None], codes: np.ndarray) -> pl.Series:
    """``names[codes[i]]`` for every ``i`` as a String series (``codes`` must index
    ``names``).

    Each name becomes one 16-byte Arrow ``string_view`` entry and the entries are
    gathered by numpy; polars adopts the array without copying it (a polars gather of
    a String series costs about twice as much, most of it fixed per call)."""
    table = np.zeros(len(names), dtype=_VIEW)
    raw = table.view(np.uint8).reshape(len(names), 16)
    data = bytearray()
    valid = np.ones(len(names), dtype=bool)
    for i, text in enumerate(names):
        if text is None:
            valid[i] = False
            continue
        encoded = text.encode()
        size = len(encoded)
        raw[i, :4] = np.frombuffer(size.to_bytes(4, "little"), dtype=np.uint8)
        if size <= 12:
            raw[i, 4 : 4 + size] = np.frombuffer(encoded, dtype=np.uint8)
        else:  # buffer 0, at the end of the names so far
            raw[i, 4:8] = np.frombuffer(encoded[:4], dtype=np.uint8)
            raw[i, 12:16] = np.frombuffer(len(data).to_bytes(4, "little"), dtype=np.uint8)
            data += encoded
    views = np.take(table, codes)
    validity = None
    if not bool(valid.all()):
        validity = pa.py_buffer(np.packbits(np.take(valid, codes), bitorder="little"))
    array = pa.Array.from_buffers(
        pa.string_view(), len(views), [validity, pa.py_buffer(views), pa.py_buffer(bytes(data))]
    )
    return pl.Series(name, array)


def nullable(
    values: np.ndarray, null: np.ndarray, dtype: pl.DataType | type[pl.DataType], name: str
) -> pl.Series:
    """A series of ``values`` with nulls where ``null`` holds (no per-value Python).

    Built as an Arrow array over the numpy buffers plus a validity bitmap.
    """
    values = np.ascontiguousarray(values)
    validity = pa.py_buffer(np.packbits(~null, bitorder="little"))
    if values.dtype == np.bool_:
        data, kind = np.packbits(values, bitorder="little"), pa.bool_()
    else:
        data, kind = values, pa.from_numpy_dtype(values.dtype)
    array = pa.Array.from_buffers(kind, len(values), [validity, pa.py_buffer(data)])
    series: pl.Series = pl.Series(name, array).cast(dtype)
    return series


_KNOWN_RESULTS = np.array(sorted(RESULT_NAMES), dtype=np.uint32)


def _results(codes: np.ndarray) -> Named:
    """The Result column: known NTSTATUS codes by binary search, the rest by factorizing."""
    names: list[str | None] = [RESULT_NAMES[int(c)] for c in _KNOWN_RESULTS]
    position = np.minimum(np.searchsorted(_KNOWN_RESULTS, codes), len(_KNOWN_RESULTS) - 1)
    unknown = np.flatnonzero(_KNOWN_RESULTS[position] != codes)
    if len(unknown):
        distinct, inverse = factorize(codes[unknown])
        position[unknown] = len(names) + inverse
        names.extend(result_name(int(c)) for c in distinct)
    return Named(names, position)


def operation_keys(events: EventArrays) -> np.ndarray:
    """One small int per event: class, operation (7 bits) and the sub-operation byte
    (file system) or the TCP bit (network). Operation numbers past 127 name nothing
    Procmon knows and share key 127 ("<Unknown: 127>")."""
    operation = np.minimum(events.operation, 0x7F).astype(np.int64)
    keys = (events.event_class.astype(np.int64) << 15) | (operation << 8) | events.sub_operation
    net = np.flatnonzero((events.event_class == NETWORK) & (events.fields["details_size"] >= 2))
    keys[net] |= (events.data[events.details[net]] >> 2) & 1
    return np.asarray(keys)


def split_key(key: int) -> tuple[int, int, int]:
    """(event class, operation, sub-operation byte or TCP bit) of an operation key."""
    return key >> 15, (key >> 8) & 0x7F, key & 0xFF


def operation_namer(version: int) -> Callable[[int], str]:
    """The namer of operation keys for a PML version (older Procmons named a few
    sub-operations differently)."""
    overrides = SUB_OPERATION_NAMES_BY_VERSION.get(version, {})

    def name(key: int) -> str:
        event_class, operation, sub = split_key(key)
        base = OPERATION_NAMES.get((event_class, operation), f"<Unknown: {operation}>")
        if event_class in (FILE_SYSTEM, IPC) and sub:  # a zero byte keeps the main name
            if (operation, sub) in overrides:
                return overrides[(operation, sub)]
            subs = SUB_OPERATION_NAMES.get(operation)
            if subs is not None:
                return subs.get(sub, UNKNOWN_OPERATION)
        if event_class == NETWORK:
            return f"{NETWORK_PROTOCOLS[sub & 1]} {base}"
        return base

    return name


def _process_rows(process_index: np.ndarray, processes: pl.DataFrame) -> np.ndarray:
    """Row of each event's process in the process table; ``processes.height`` (a null
    row the caller appends) when the index is not in the table."""
    indexes = processes["process_index"].to_numpy().astype(np.int64)
    lookup = np.full(int(indexes.max(initial=0)) + 2, processes.height, dtype=np.int64)
    lookup[indexes] = np.arange(len(indexes))
    return lookup[np.minimum(process_index.astype(np.int64), len(lookup) - 1)]


BASE_COLUMNS = (
    "row",
    "time",
    "process",
    "pid",
    "tid",
    "operation",
    "result",
    "duration",
    "event_class",
)
"""The columns :func:`base_columns` makes: those every event has before its details."""


def operation_names(events: EventArrays) -> Named:
    """Each event's operation name (the Detail renderer and the path locator use them)."""
    return Named.of(operation_keys(events), operation_namer(events.header.version))


def base_columns(
    events: EventArrays,
    processes: pl.DataFrame | None,
    operations: Named | None = None,
    names: Collection[str] = BASE_COLUMNS,
) -> dict[str, pl.Series]:
    """row, time, process, pid, tid, operation, result, duration and event_class (only
    ``names`` of them); ``operations`` are the events' :func:`operation_names` when
    already made."""
    fields = events.fields
    count = events.count
    result = fields["result"]
    makers: dict[str, Callable[[], pl.Series]] = {
        "row": lambda: pl.Series("row", events.numbers + 1, dtype=pl.UInt32),
        "time": lambda: pl.Series("time", filetimes_to_datetimes(fields["time"])),
        "tid": lambda: pl.Series("tid", fields["tid"].astype(np.int64)),
        "operation": lambda: (operations or operation_names(events)).series("operation"),
        "result": lambda: _results(result).series("result"),
        "duration": lambda: nullable(
            fields["duration"].astype(np.int64) * 100,
            result == STATUS_PENDING,
            pl.Duration("ns"),
            "duration",
        ),
        "event_class": lambda: Named.of(
            fields["event_class"], lambda c: EVENT_CLASS_NAMES.get(c, f"<Unknown: {c}>")
        ).series("event_class"),
    }
    columns = {name: make() for name, make in makers.items() if name in names}
    if "process" not in names and "pid" not in names:
        return columns
    if processes is None or processes.height == 0:
        unknown = np.full(count, 0, dtype=np.int64)
        columns["process"] = Named([None], unknown).series("process")
        columns["pid"] = nullable(unknown, np.ones(count, dtype=bool), pl.Int64, "pid")
    else:
        rows = _process_rows(fields["process_index"], processes)
        process_names = [*processes["name"].to_list(), None]
        pids = [*processes["pid"].to_list(), None]
        columns["process"] = gathered_strings("process", process_names, rows)
        columns["pid"] = pl.Series("pid", pids, dtype=pl.Int64).gather(rows)
    return columns
