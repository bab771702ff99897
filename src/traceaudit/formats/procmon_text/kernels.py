"""Compiled byte loops for the hot columns of a Procmon text export: Time of Day, Detail
and Duration (through numba, see :mod:`traceaudit._jit`).

The polars parsers in :mod:`.times` and :mod:`.detail` make ten or more passes over each
string (splits, slices, lookups); the loops here read each row's bytes once, straight
from the column's Arrow buffers. They only decide what they are sure of: Procmon's own
shapes, spelled exactly (``7:19:37.0147934 AM``, ``Offset: 57,344``, ``Desired Access:
Generic Read, Synchronize``, known words and flag names). Anything else (a localized
number, an unknown access name, a hexadecimal value, a stray space, bytes the fast shape
does not expect) is marked *unsure*, and those rows go through the polars parser, so
both paths give the same frames: the loops return exactly what the polars parser
returns on the rows they accept (``tests/formats/test_csv_kernels.py`` compares the two
on the corpus and on generated strings).

numba is imported, and the loops compiled or loaded from its cache, at the first call of
:func:`available` (the first text trace read), not at import.

Without numba (or with ``TRACEAUDIT_NO_JIT=1``) :func:`available` is False and the
callers use their polars paths only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import numpy as np
import polars as pl
import pyarrow as pa

from traceaudit._jit import kernel, plain

__all__ = [
    "StringBuffers",
    "available",
    "string_buffers",
    "arrow_series",
    "time_of_day",
    "durations",
    "integers",
    "codes",
    "padded",
    "NameTable",
    "KeyCut",
    "Cut",
    "cut",
    "strings",
]

UNSURE = 2
"""A status: the loop did not decide this row; the polars parser must."""

# Kinds of value (see detail._Family): cut at the next other key, at the next ", ", or
# running to the end of the Detail.
GENERAL, WORD, LAST = 0, 1, 2

_COMMA, _SPACE, _COLON, _DOT, _ZERO, _APOSTROPHE = 44, 32, 58, 46, 48, 39
_ZERO8 = np.uint8(_ZERO)  # a byte minus this wraps above 9 unless it is an ASCII digit


# ----------------------------------------------------------------------------- buffers


@dataclass(frozen=True)
class StringBuffers:
    """A string column's Arrow buffers as numpy arrays: row ``i`` is
    ``data[offsets[i]:offsets[i + 1]]`` (UTF-8; a null row reads as empty)."""

    offsets: np.ndarray
    data: np.ndarray


def string_buffers(values: pl.Series) -> StringBuffers:
    """The bytes of ``values`` (a String column), in one contiguous buffer.

    polars keeps strings as views into many buffers; the Arrow export with the oldest
    compatibility level copies them into one (``large_string``: 64-bit offsets), at
    memory speed (≈ 7 ms for 75 MB).
    """
    array = values.rechunk().to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(array, pa.ChunkedArray):  # pragma: no cover - one chunk after rechunk
        array = array.combine_chunks()
    if array.type != pa.large_string():  # pragma: no cover - polars exports large_string
        array = array.cast(pa.large_string())
    _, offsets_buffer, data_buffer = array.buffers()
    assert offsets_buffer is not None
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
        array.offset : array.offset + len(array) + 1
    ]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, dtype=np.uint8)
    )
    return StringBuffers(offsets, data)


def arrow_series(values: np.ndarray, null: np.ndarray) -> pl.Series:
    """``values`` (numbers or booleans), null where ``null``, built from Arrow buffers
    (a packed validity bitmap: ``pa.array(values, mask=...)`` costs several times more)."""
    n = len(values)
    valid = pa.py_buffer(np.packbits(~null, bitorder="little"))
    if values.dtype == np.bool_:
        data = pa.py_buffer(np.packbits(values, bitorder="little"))
        array = pa.Array.from_buffers(pa.bool_(), n, [valid, data])
    else:
        data = pa.py_buffer(np.ascontiguousarray(values))
        array = pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), n, [valid, data])
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series


# ------------------------------------------------------------------------- time of day


def _time_of_day(
    offsets: np.ndarray, data: np.ndarray, marker: bool, out: np.ndarray, status: np.ndarray
) -> None:
    """``H:MM:SS.fffffff`` (or ``,``), with `` AM``/`` PM`` when ``marker``, to ns since
    midnight in ``out`` (``status`` 0); anything else ``status`` UNSURE.

    As :func:`.times._fast_time` reads the rows it accepts: a 12-hour clock for hours 1
    to 12 (12 AM is 0), other hours as they are; hours above 23, minutes or seconds
    above 59 are left UNSURE (the polars parser makes them null).
    """
    for i in range(len(offsets) - 1):
        start = offsets[i]
        end = offsets[i + 1]
        status[i] = UNSURE
        pm = 0
        if marker:
            if end - start != 18 and end - start != 19:
                continue
            if data[end - 1] != 77 or data[end - 3] != _SPACE:  # "M", " "
                continue
            if data[end - 2] == 80:  # "P"
                pm = 12
            elif data[end - 2] != 65:  # "A"
                continue
            end -= 3
        length = end - start
        if length != 15 and length != 16:
            continue
        p = end - 14  # the second ":" is at p + 3 (H:MM:SS or HH:MM:SS before it)
        # Digits as bytes minus "0": a byte that is no digit comes out above 9 (uint8).
        h1 = data[start] - _ZERO8
        h2 = (data[p - 1] - _ZERO8) if length == 16 else np.uint8(0)
        m1, m2 = (data[p + 1] - _ZERO8), (data[p + 2] - _ZERO8)
        s1, s2 = (data[p + 4] - _ZERO8), (data[p + 5] - _ZERO8)
        bad = (h1 > 9) | (h2 > 9) | (m1 > 9) | (m2 > 9) | (s1 > 9) | (s2 > 9)
        fraction = np.int64(0)
        for q in range(p + 7, p + 14):
            d = data[q] - _ZERO8
            bad |= d > 9
            fraction = fraction * 10 + np.int64(d)
        if bad or data[p] != _COLON or data[p + 3] != _COLON:
            continue
        if data[p + 6] != _DOT and data[p + 6] != _COMMA:
            continue
        hour = np.int64(h1) * 10 + np.int64(h2) if length == 16 else np.int64(h1)
        minute = np.int64(m1) * 10 + np.int64(m2)
        second = np.int64(s1) * 10 + np.int64(s2)
        if marker and 1 <= hour <= 12:
            hour = hour % 12 + pm
        if hour > 23 or minute > 59 or second > 59:
            continue
        out[i] = ((hour * 60 + minute) * 60 + second) * 1_000_000_000 + fraction * 100
        status[i] = 0


def time_of_day(values: pl.Series, *, marker: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Nanoseconds since midnight of each of ``values`` (Procmon's fixed shape, with or
    without AM/PM) and each row's status (0 read, :data:`UNSURE` not), or None without
    numba. Null rows are UNSURE."""
    compiled = _kernels()
    if compiled is None:
        return None
    buffers = string_buffers(values)
    n = values.len()
    out = np.zeros(n, dtype=np.int64)
    status = np.empty(n, dtype=np.uint8)
    compiled.time_of_day(buffers.offsets, buffers.data, marker, out, status)
    if values.null_count():
        status[values.is_null().to_numpy()] = UNSURE
    return out, status


# ---------------------------------------------------------------------------- Duration


def _duration(offsets: np.ndarray, data: np.ndarray, out: np.ndarray, status: np.ndarray) -> None:
    """Seconds as Procmon prints them, ``0.0000112`` or ``0,0000112`` (1 to 9 digits, a
    dot or comma, 1 to 9 digits), to nanoseconds in ``out`` (``status`` 0); an empty
    value null (status 1); anything else UNSURE (:func:`.times.parse_duration` reads
    it)."""
    for i in range(len(offsets) - 1):
        start = offsets[i]
        end = offsets[i + 1]
        if end == start:  # empty: no number (polars' to_decimal gives null)
            status[i] = 1
            continue
        status[i] = UNSURE
        whole = np.int64(0)
        q = start
        while q < end and q - start < 10:
            d = data[q] - _ZERO8
            if d > 9:
                break
            whole = whole * 10 + np.int64(d)
            q += 1
        digits = q - start
        if digits == 0 or digits > 9 or q >= end or (data[q] != _DOT and data[q] != _COMMA):
            continue
        q += 1
        if end - q < 1 or end - q > 9:
            continue
        fraction = np.int64(0)
        bad = False
        for k in range(9):
            if q + k < end:
                d = data[q + k] - _ZERO8
                bad |= d > 9
                fraction = fraction * 10 + np.int64(d)
            else:
                fraction *= 10
        if bad:
            continue
        out[i] = whole * 1_000_000_000 + fraction
        status[i] = 0


def durations(values: pl.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """Nanoseconds of each of ``values`` (Procmon's Duration) and each row's status (0
    read, 1 null, :data:`UNSURE`), or None without numba."""
    compiled = _kernels()
    return None if compiled is None else _per_value(compiled.duration, values)


def _per_value(loop: Callable[..., None], values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """``loop(offsets, data, out, status)`` over the strings of ``values``: their int64
    values and status (0 read, 1 null, :data:`UNSURE`)."""
    buffers = string_buffers(values)
    n = values.len()
    out = np.zeros(n, dtype=np.int64)
    status = np.empty(n, dtype=np.uint8)
    loop(buffers.offsets, buffers.data, out, status)
    if values.null_count():
        status[values.is_null().to_numpy()] = 1
    return out, status


# ------------------------------------------------------------------- whole numbers, text


def _integer(offsets: np.ndarray, data: np.ndarray, out: np.ndarray, status: np.ndarray) -> None:
    """1 to 18 ASCII digits (a PID, a TID) to their value in ``out`` (``status`` 0);
    anything else UNSURE (polars' ``str.to_integer`` reads it)."""
    for i in range(len(offsets) - 1):
        start = offsets[i]
        end = offsets[i + 1]
        status[i] = UNSURE
        if end - start < 1 or end - start > 18:
            continue
        number = np.int64(0)
        bad = False
        for q in range(start, end):
            d = data[q] - _ZERO8
            bad |= d > 9
            number = number * 10 + np.int64(d)
        if not bad:
            out[i] = number
            status[i] = 0


def integers(values: pl.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """The value of each of ``values`` (whole numbers as Procmon prints them) and each
    row's status (0 read, 1 null, :data:`UNSURE`), or None without numba."""
    compiled = _kernels()
    return None if compiled is None else _per_value(compiled.integer, values)


def _padded(offsets: np.ndarray, data: np.ndarray) -> bool:
    """Whether some value starts or ends with a byte that may be white space (ASCII
    white space, or any byte of a multi-byte character)."""
    for i in range(len(offsets) - 1):
        start = offsets[i]
        end = offsets[i + 1]
        if end > start:
            first = data[start]
            last = data[end - 1]
            if first <= _SPACE or last <= _SPACE or first >= 0x80 or last >= 0x80:
                return True
    return False


def padded(values: pl.Series) -> bool | None:
    """Whether ``str.strip_chars`` might change some of ``values`` (False: it would not),
    or None without numba."""
    compiled = _kernels()
    if compiled is None:
        return None
    buffers = string_buffers(values)
    return bool(compiled.padded(buffers.offsets, buffers.data))


# ------------------------------------------------------------------------ name codes

_CODE_NAMES = 4096  # distinct names the loop keeps (more: the caller's polars path)
_CODE_BYTES = 256 * 1024  # their bytes


def _codes(
    offsets: np.ndarray,
    data: np.ndarray,
    heads: np.ndarray,
    chain: np.ndarray,
    names: np.ndarray,
    bounds: np.ndarray,
    codes: np.ndarray,
) -> int:
    """Each value's index among the distinct values in order of first sight (``codes``),
    the distinct values packed in ``names`` (value ``t`` is ``names[bounds[t]:bounds[t +
    1]]``); returns how many, or -1 when ``chain`` or ``names`` is full. Values are
    found by their bucket (length and end bytes, 256 of them: ``heads``, ``chain``)."""
    count = 0
    used = 0
    capacity = len(chain)
    room = len(names)
    bounds[0] = 0
    for i in range(len(offsets) - 1):
        start = offsets[i]
        end = offsets[i + 1]
        length = end - start
        bucket = length * 31
        if length > 0:
            bucket += np.int64(data[start]) * 7 + np.int64(data[end - 1])
        bucket &= 255
        t = heads[bucket]
        while t >= 0:
            low = bounds[t]
            if bounds[t + 1] - low == length:
                same = True
                for q in range(length):
                    if data[start + q] != names[low + q]:
                        same = False
                        break
                if same:
                    break
            t = chain[t]
        if t < 0:
            if count >= capacity or used + length > room:
                return -1
            t = count
            for q in range(length):
                names[used + q] = data[start + q]
            used += length
            bounds[t + 1] = used
            chain[t] = heads[bucket]
            heads[bucket] = t
            count += 1
        codes[i] = t
    return count


def codes(values: pl.Series) -> tuple[pl.Series, pl.Series] | None:
    """The distinct values of ``values`` (a String column) in order of first sight, and
    each row's index among them (UInt32); None without numba, when some value is null or
    with more distinct values than the loop keeps."""
    compiled = _kernels()
    if compiled is None or values.null_count():
        return None
    buffers = string_buffers(values)
    n = values.len()
    heads = np.full(256, -1, dtype=np.int64)
    chain = np.full(_CODE_NAMES, -1, dtype=np.int64)
    names = np.zeros(_CODE_BYTES, dtype=np.uint8)
    bounds = np.zeros(_CODE_NAMES + 1, dtype=np.int64)
    out = np.zeros(n, dtype=np.uint32)
    count = compiled.codes(buffers.offsets, buffers.data, heads, chain, names, bounds, out)
    if count < 0:
        return None
    text = names.tobytes()
    found = pl.Series(
        [text[bounds[t] : bounds[t + 1]].decode("utf-8") for t in range(count)], dtype=pl.String
    )
    return found, arrow_series(out, np.zeros(n, dtype=np.bool_))


# ------------------------------------------------------------------------------ Detail


def _buckets(keys: Sequence[int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Chained buckets: ``heads[key]`` is the first entry with that bucket key (-1: none)
    and ``chain[entry]`` the next one."""
    heads = np.full(size, -1, dtype=np.int64)
    chain = np.full(max(len(keys), 1), -1, dtype=np.int64)
    for entry in reversed(range(len(keys))):
        chain[entry] = heads[keys[entry]]
        heads[keys[entry]] = entry
    return heads, chain


def _bucket(length: int, first: int, last: int) -> int:
    """A name's bucket in a :class:`NameTable` (from its length and end bytes)."""
    return (length * 31 + first * 7 + last) & 255


@dataclass(frozen=True)
class NameTable:
    """Names (not empty) with a value each, for the loops to look up by their bytes."""

    names: tuple[str, ...]
    values: tuple[int, ...]

    @classmethod
    def of(cls, table: Mapping[str, int] | Sequence[str]) -> NameTable:
        """From a mapping of names to values, or a sequence of names (value: index)."""
        names = tuple(table)
        assert all(names), "names are not empty"
        if isinstance(table, Mapping):
            return cls(names, tuple(table[name] for name in names))
        return cls(names, tuple(range(len(names))))


# How a wanted value is read (see KeyCut): its bytes only, a thousands-grouped number,
# the OR of the bits of a list of names, or the index of its first word in a table.
SPAN, NUMBER, BITS, NAME = 0, 1, 2, 3


@dataclass(frozen=True)
class KeyCut:
    """One operation family's keys and how its wanted values are read, packed for the
    loop (:func:`cut`).

    Keys: each key's pattern ``", Key: "`` in ``patterns[bounds[k]:bounds[k + 1]]``,
    found by the first byte of its name (``heads``, ``chain``: see :func:`_buckets`).
    Wanted values: the index of each key, its kind (:data:`GENERAL`, :data:`WORD`,
    :data:`LAST`), how it is read (:data:`SPAN`, :data:`NUMBER`, :data:`BITS`,
    :data:`NAME`) and with which of the tables. Tables: all names packed one after the
    other (``names``, ``name_bounds``, ``name_values``), each table's buckets a row of
    ``name_heads``, one ``name_chain``.
    """

    patterns: np.ndarray
    bounds: np.ndarray
    heads: np.ndarray
    chain: np.ndarray
    wanted: np.ndarray
    kinds: np.ndarray
    reads: np.ndarray
    tables: np.ndarray
    names: np.ndarray
    name_bounds: np.ndarray
    name_heads: np.ndarray
    name_chain: np.ndarray
    name_values: np.ndarray

    @classmethod
    def of(
        cls,
        keys: Sequence[str],
        wanted: Sequence[str],
        words: Sequence[str] = (),
        last: Sequence[str] = (),
        reads: Mapping[str, tuple[int, NameTable | None]] | None = None,
    ) -> KeyCut:
        every = list(dict.fromkeys([*keys, *wanted]))
        encoded = [f", {key}: ".encode() for key in every]
        heads, chain = _buckets([pattern[2] for pattern in encoded], 256)
        kinds = [WORD if k in words else LAST if k in last else GENERAL for k in wanted]
        how = [(reads or {}).get(key, (SPAN, None)) for key in wanted]
        tables = list(dict.fromkeys(table for _, table in how if table is not None))
        names: list[bytes] = []
        values: list[int] = []
        chain_of: list[int] = []
        name_heads = np.full((max(len(tables), 1), 256), -1, dtype=np.int64)
        for t, table in enumerate(tables):
            first = len(names)
            encoded_names = [name.encode() for name in table.names]
            names.extend(encoded_names)
            values.extend(table.values)
            # Each table's entries chain among themselves only.
            table_heads, table_chain = _buckets(
                [_bucket(len(n), n[0], n[-1]) for n in encoded_names], 256
            )
            name_heads[t] = np.where(table_heads >= 0, table_heads + first, -1)
            local = table_chain[: len(encoded_names)]
            chain_of.extend(np.where(local >= 0, local + first, -1).tolist())
        return cls(
            np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(),
            np.cumsum([0, *map(len, encoded)]).astype(np.int64),
            heads,
            chain,
            np.array([every.index(k) for k in wanted], dtype=np.int64),
            np.array(kinds, dtype=np.int64),
            np.array([read for read, _ in how], dtype=np.int64),
            np.array([-1 if t is None else tables.index(t) for _, t in how], dtype=np.int64),
            np.frombuffer(b"".join(names) or b"\0", dtype=np.uint8).copy(),
            np.cumsum([0, *map(len, names)]).astype(np.int64),
            name_heads,
            np.array(chain_of or [-1], dtype=np.int64),
            np.array(values or [0], dtype=np.int64),
        )


def _cut_py(
    offsets: np.ndarray,
    data: np.ndarray,
    rows: np.ndarray,
    patterns: np.ndarray,
    bounds: np.ndarray,
    heads: np.ndarray,
    chain: np.ndarray,
    wanted: np.ndarray,
    kinds: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
) -> None:
    """Where each wanted key's value is in each of ``rows`` (row ``r`` of ``starts`` and
    ``ends`` for ``rows[r]``; ``starts`` -1 where the key is absent), as
    :func:`.detail._cut` cuts it.

    The Detail is read as if ``", "`` came before it. A value starts after the first
    ``", Key: "``; a GENERAL value ends at the first ``", Other: "`` of another key of
    the family after its start, a WORD at the first ``", "`` after its start, a LAST at
    the end. One pass over the ``", "`` of the Detail finds the keys in order; it stops
    once every wanted value is placed. (One loop over the rows with the row's work
    written out in it: numba compiles that several times faster than a call per row,
    even an inlined one.)
    """
    n_wanted = len(wanted)
    for r in range(len(rows)):
        row = rows[r]
        begin = offsets[row]
        end = offsets[row + 1]
        placed = 0
        for w in range(n_wanted):
            starts[r, w] = -1
            ends[r, w] = -1
        at = begin - 2  # the ", " put in front of the Detail
        while placed < n_wanted:
            if at >= begin:  # on to the next ", " (a tight loop: most bytes are skipped here)
                while at < end - 2 and (data[at] != _COMMA or data[at + 1] != _SPACE):
                    at += 1
            if at >= end - 2:
                break
            name = at + 2  # where a key's name would start
            k = heads[data[name]]
            while k >= 0:
                low = bounds[k] + 2
                high = bounds[k + 1]
                found = end - name >= high - low
                if found:
                    for q in range(high - low):
                        if data[name + q] != patterns[low + q]:
                            found = False
                            break
                if found:
                    break
                k = chain[k]
            if k >= 0:
                for w in range(n_wanted):  # an open GENERAL value of another key ends here
                    if (
                        kinds[w] == GENERAL
                        and starts[r, w] >= 0
                        and ends[r, w] < 0
                        and wanted[w] != k
                        and at >= starts[r, w]
                    ):
                        ends[r, w] = at
                        placed += 1
                for w in range(n_wanted):  # the first occurrence of a wanted key
                    if wanted[w] != k or starts[r, w] >= 0:
                        continue
                    value = name + bounds[k + 1] - bounds[k] - 2
                    starts[r, w] = value
                    if kinds[w] == LAST:
                        ends[r, w] = end
                        placed += 1
                    elif kinds[w] == WORD:
                        stop = end
                        for q in range(value, end - 1):
                            if data[q] == _COMMA and data[q + 1] == _SPACE:
                                stop = q
                                break
                        ends[r, w] = stop
                        placed += 1
            at = begin if at < begin else at + 2
        for w in range(n_wanted):
            if starts[r, w] >= 0 and ends[r, w] < 0:
                ends[r, w] = end


# The loops call these by name: :func:`_kernels` puts their compiled versions here
# before it compiles the loops.
_cut: Callable[..., None] = _cut_py


def _family(
    offsets: np.ndarray,
    data: np.ndarray,
    rows: np.ndarray,
    patterns: np.ndarray,
    bounds: np.ndarray,
    heads: np.ndarray,
    chain: np.ndarray,
    wanted: np.ndarray,
    kinds: np.ndarray,
    reads: np.ndarray,
    tables: np.ndarray,
    names: np.ndarray,
    name_bounds: np.ndarray,
    name_heads: np.ndarray,
    name_chain: np.ndarray,
    name_values: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    values: np.ndarray,
    status: np.ndarray,
) -> None:
    """Each wanted value of each of ``rows``: where it is (``starts``, ``ends``, see
    :func:`_cut_py`), what it reads as (``values``) and ``status`` (0 read, 1 absent,
    UNSURE)."""
    _cut(offsets, data, rows, patterns, bounds, heads, chain, wanted, kinds, starts, ends)
    # Written out in one loop: numba compiles a helper call per value (even an inlined
    # one) into several times the work of the value itself.
    n_wanted = len(wanted)
    for r in range(len(rows)):
        for w in range(n_wanted):
            values[r, w] = 0
            start = starts[r, w]
            if start < 0:
                status[r, w] = 1
                continue
            status[r, w] = 0
            read = reads[w]
            if read == SPAN:
                continue
            end = ends[r, w]
            if read == NUMBER:
                # ``5,242,880`` → 5242880: 1 to 18 ASCII digits with any of the thousands
                # separators detail._number removes between them (, . space ' U+00A0
                # U+202F U+2019); anything else UNSURE.
                number = np.int64(0)
                digits = 0
                q = start
                while q < end:
                    byte = data[q]
                    q += 1
                    # (Plain compares: numba compiles them best.)
                    if byte == _COMMA or byte == _DOT or byte == _SPACE or byte == _APOSTROPHE:  # noqa: SIM109
                        continue
                    if byte == 0xC2 and q < end and data[q] == 0xA0:  # U+00A0
                        q += 1
                        continue
                    if (
                        byte == 0xE2
                        and q + 1 < end
                        and data[q] == 0x80
                        and (data[q + 1] == 0xAF or data[q + 1] == 0x99)  # U+202F, U+2019
                    ):
                        q += 2
                        continue
                    d = np.int64(byte) - _ZERO
                    if d < 0 or d > 9 or digits == 18:
                        digits = -1
                        break
                    number = number * 10 + d
                    digits += 1
                if digits <= 0:
                    status[r, w] = UNSURE
                else:
                    values[r, w] = number
                continue
            # BITS: the OR of the values of a ", "-separated list of names, each spelled
            # exactly as in the table, or empty (no bits, as in polars). NAME: the value
            # of the first name. Anything else UNSURE.
            table = tables[w]
            bits = np.int64(0)
            token = start
            q = start
            while True:
                if q == end or (q < end - 1 and data[q] == _COMMA and data[q + 1] == _SPACE):
                    length = q - token
                    if length > 0:
                        bucket = (
                            length * 31 + np.int64(data[token]) * 7 + np.int64(data[q - 1])
                        ) & 255
                        t = name_heads[table, bucket]
                        while t >= 0:
                            low = name_bounds[t]
                            if name_bounds[t + 1] - low == length:
                                same = True
                                for i in range(length):
                                    if data[token + i] != names[low + i]:
                                        same = False
                                        break
                                if same:
                                    break
                            t = name_chain[t]
                        if t < 0:
                            status[r, w] = UNSURE
                            break
                        bits |= name_values[t]
                    elif read == NAME:
                        status[r, w] = UNSURE  # an empty first word is polars' business
                        break
                    if q == end or read == NAME:
                        values[r, w] = bits
                        break
                    q += 2
                    token = q
                    continue
                q += 1


def _copy(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, offsets: np.ndarray, out: np.ndarray
) -> None:
    """The values packed one after the other (``offsets`` already summed)."""
    for r in range(len(starts)):
        start = starts[r]
        if start < 0:
            continue
        at = offsets[r]
        for q in range(ends[r] - start):
            out[at + q] = data[start + q]


# ---------------------------------------------------------------------------- wrappers

# name → inlined into its callers; in order: each calls only those before it.
_HELPERS = {"_cut": False}


@dataclass(frozen=True)
class _Compiled:
    time_of_day: Callable[..., None]
    duration: Callable[..., None]
    integer: Callable[..., None]
    padded: Callable[..., bool]
    codes: Callable[..., int]
    family: Callable[..., None]
    copy: Callable[..., None]


def _kernels() -> _Compiled | None:
    """The compiled loops, or None without numba or inside :func:`traceaudit._jit.plain_paths`
    (a one-shot command on a small trace: loading them would cost more than they save)."""
    return None if plain() else _load_kernels()


@cache
def _load_kernels() -> _Compiled | None:
    """The compiled loops, or None without numba (numba is imported at the first call)."""
    module = globals()
    for helper, inline in _HELPERS.items():
        compiled = kernel(module[f"{helper}_py"], inline=inline)
        if compiled is None:
            return None
        module[helper] = compiled
    loops = [
        kernel(fn) for fn in (_time_of_day, _duration, _integer, _padded, _codes, _family, _copy)
    ]
    if any(fn is None for fn in loops):  # pragma: no cover - kernel() answers alike
        return None
    return _Compiled(*cast(list[Callable[..., Any]], loops))


def available() -> bool:
    """Whether the compiled loops are in use (numba importable and not switched off)."""
    return _kernels() is not None


@dataclass(frozen=True)
class Cut:
    """A family's rows cut by :func:`cut`, one column per wanted key: where each value
    is (byte offsets into the Detail's buffer), what it reads as, and its status (0
    read, 1 absent, :data:`UNSURE`)."""

    buffers: StringBuffers
    starts: np.ndarray
    ends: np.ndarray
    values: np.ndarray
    status: np.ndarray

    def value(self, column: int) -> tuple[np.ndarray, np.ndarray]:
        """One wanted key's values and status."""
        return self.values[:, column], self.status[:, column]

    def unsure(self) -> np.ndarray:
        """Rows where some value is :data:`UNSURE`."""
        # Column by column: numpy's any(axis=1) over a few columns is ten times slower.
        unsure: np.ndarray = self.status[:, 0] == UNSURE
        for column in range(1, self.status.shape[1]):
            unsure |= self.status[:, column] == UNSURE
        return unsure


def cut(buffers: StringBuffers, rows: np.ndarray, keys: KeyCut) -> Cut:
    """The wanted values of ``rows`` (indices into the column), see :func:`_family`."""
    compiled = _kernels()
    assert compiled is not None
    shape = (len(rows), len(keys.wanted))
    starts = np.empty(shape, dtype=np.int64)
    ends = np.empty(shape, dtype=np.int64)
    values = np.empty(shape, dtype=np.int64)
    status = np.empty(shape, dtype=np.uint8)
    compiled.family(
        buffers.offsets,
        buffers.data,
        rows.astype(np.int64, copy=False),
        keys.patterns,
        keys.bounds,
        keys.heads,
        keys.chain,
        keys.wanted,
        keys.kinds,
        keys.reads,
        keys.tables,
        keys.names,
        keys.name_bounds,
        keys.name_heads,
        keys.name_chain,
        keys.name_values,
        starts,
        ends,
        values,
        status,
    )
    return Cut(buffers, starts, ends, values, status)


def strings(cut: Cut, column: int) -> pl.Series:
    """One wanted key's values as a String column (empty where absent)."""
    compiled = _kernels()
    assert compiled is not None
    starts = np.ascontiguousarray(cut.starts[:, column])
    ends = np.ascontiguousarray(cut.ends[:, column])
    lengths = np.where(starts >= 0, ends - starts, 0)
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    compiled.copy(cut.buffers.data, starts, ends, offsets, out)
    array = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(out))
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series
