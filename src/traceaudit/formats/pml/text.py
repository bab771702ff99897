"""Decode many strings stored inside a PML file into one polars String column, in bulk.

PML stores paths and names as counted strings, UTF-16LE or (with the top bit of the size
word set) one byte per character. Decoding them one Python object at a time is what
makes pure-Python readers slow, so :func:`decode_strings` never does that on its
normal path. Per chunk of :data:`CHUNK` strings:

1. **Gather.** The byte ranges are cut out of the file with one Arrow ``take`` over a
   binary array whose offsets interleave the wanted ranges with the gaps between them
   (no per-string Python work, and no index array the size of the text).
2. **Transcode.** All UTF-16 text is decoded with a single ``bytes.decode`` call and
   re-encoded to UTF-8 with a single ``str.encode``; one-byte strings that are ASCII are
   already UTF-8 and are used as they are.
3. **Re-split.** The UTF-8 offsets of each string are computed with numpy from the
   UTF-16 code units (1, 2 or 3 bytes per unit; 2 per surrogate), so the UTF-8 buffer
   and offsets become an Arrow string array that polars adopts.

Chunking bounds the temporary memory to a few chunks' worth of text whatever the size
of the file; Arrow's buffers come from the system allocator, which gives them back when
they are freed.

Like Procmon (and procmon-parser), a string ends at its first NUL character.

With numba (:mod:`.kernels`) all three steps are one compiled pass instead
(:class:`StringViews`): each string is read where it lies in the file and written as
UTF-8 straight into an Arrow ``string_view`` array, which polars takes over without a
copy. The steps above are the fallback, and give the same column.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from traceaudit.formats.pml.kernels import ANSI_CODE_POINTS, Kernels, compiled, words

__all__ = [
    "CHUNK",
    "StringViews",
    "decode_strings",
    "gather_bytes",
    "binary_values",
    "arrow_int64",
]

CHUNK = 16384
"""Strings decoded per step of :func:`decode_strings`."""

_ANSI = "cp1252"
"""Code page assumed for one-byte strings that are not ASCII (Procmon writes them from
ANSI APIs)."""

_POOL = pa.system_memory_pool()


def arrow_int64(values: np.ndarray) -> pa.Int64Array:
    """An Arrow int64 array over a numpy array's memory.

    Built from buffers: ``pa.array`` on numpy input would import pandas (0.2 s).
    """
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _variable(kind: pa.DataType, values: list[bytes]) -> pa.Array:
    """An Arrow binary or string array from Python bytes (slow paths only)."""
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in values], out=offsets[1:])
    data = pa.py_buffer(b"".join(values))
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(offsets), data])


def binary_values(array: pa.LargeBinaryArray) -> list[bytes]:
    """The values of a compact binary array as Python bytes (for small arrays)."""
    data, offsets = _binary_parts(array)
    raw = data.to_pybytes()
    bounds = offsets.tolist()
    return [raw[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _strings(values: list[str]) -> pa.LargeStringArray:
    return _variable(pa.large_utf8(), [v.encode("utf-8", "surrogatepass") for v in values])


def _inverse(order: np.ndarray) -> np.ndarray:
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.arange(len(order), dtype=np.int64)
    return inverse


def gather_bytes(buf: pa.Buffer, starts: np.ndarray, lengths: np.ndarray) -> pa.LargeBinaryArray:
    """The byte ranges ``[start, start + length)`` of ``buf`` as one compact binary array.

    Ranges may come in any order; they must not overlap each other (strings of distinct
    events never do). The result is in the order given.
    """
    count = len(starts)
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if count == 0:
        return _variable(pa.large_binary(), [])
    order = None
    if count > 1 and not bool(np.all(starts[1:] >= starts[:-1])):
        order = np.argsort(starts, kind="stable")
        starts, lengths = starts[order], lengths[order]
    ends = starts + lengths
    if count > 1 and not bool(np.all(starts[1:] >= ends[:-1])):
        return _gather_overlapping(buf, starts, lengths, order)
    # Element 2k is range k, element 2k+1 the gap up to range k+1.
    bounds = np.empty(2 * count, dtype=np.int64)
    bounds[0::2] = starts
    bounds[1::2] = ends
    spans = pa.Array.from_buffers(
        pa.large_binary(), 2 * count - 1, [None, pa.py_buffer(bounds), buf]
    )
    wanted = arrow_int64(np.arange(0, 2 * count - 1, 2, dtype=np.int64))
    picked = pc.take(spans, wanted, memory_pool=_POOL)
    if order is not None:
        picked = pc.take(picked, arrow_int64(_inverse(order)), memory_pool=_POOL)
    return picked


def _gather_overlapping(
    buf: pa.Buffer, starts: np.ndarray, lengths: np.ndarray, order: np.ndarray | None
) -> pa.LargeBinaryArray:
    """Slow path for overlapping ranges (only in damaged files): one slice per range."""
    view = memoryview(buf)
    values = [
        bytes(view[s : s + n]) for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)
    ]
    picked = _variable(pa.large_binary(), values)
    if order is not None:
        picked = pc.take(picked, arrow_int64(_inverse(order)), memory_pool=_POOL)
    return picked


def _binary_parts(array: pa.LargeBinaryArray) -> tuple[pa.Buffer, np.ndarray]:
    """The data bytes and the (zero-based) int64 offsets of a compact binary array."""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[
        array.offset : array.offset + len(array) + 1
    ]
    data = array.buffers()[2] or pa.py_buffer(b"")
    base = int(offsets[0])
    return data.slice(base, int(offsets[-1]) - base), offsets - base


def _extra_utf8_bytes(data: pa.Buffer, units_at: np.ndarray) -> np.ndarray:
    """Cumulative UTF-8 bytes beyond one per UTF-16 code unit, at each string boundary.

    A unit below 0x80 takes 1 byte, below 0x800 2, else 3; a surrogate pair takes 4 (2 per
    unit). Only the non-ASCII units are visited, so memory follows them, not the text.
    """
    units = np.frombuffer(data, dtype="<u2", count=data.size // 2)
    wide = np.flatnonzero(units >= 0x80)
    values = units[wide]
    extra = 1 + (values >= 0x800).astype(np.int64) - ((values & 0xF800) == 0xD800)
    owner = np.searchsorted(units_at, wide, side="right") - 1
    per_string = np.bincount(owner, weights=extra, minlength=len(units_at) - 1)
    cumulative = np.zeros(len(units_at), dtype=np.int64)
    np.cumsum(per_string.astype(np.int64), out=cumulative[1:])
    return cumulative


def _utf16_to_arrow(array: pa.LargeBinaryArray) -> tuple[pa.LargeStringArray, bool]:
    """UTF-16LE values → an Arrow UTF-8 string array (and whether any holds a NUL)."""
    data, offsets16 = _binary_parts(array)
    text = data.to_pybytes().decode("utf-16-le", "replace")
    has_nul = "\x00" in text
    utf8 = text.encode("utf-8")
    units_at = offsets16 // 2
    if len(utf8) * 2 == data.size:  # every code unit below 0x80: one byte each
        offsets8 = units_at
    else:
        offsets8 = units_at + _extra_utf8_bytes(data, units_at)
        if int(offsets8[-1]) != len(utf8):  # lone surrogates: decode one by one
            values = [v.decode("utf-16-le", "replace") for v in binary_values(array)]
            return _strings(values), has_nul
    strings = pa.Array.from_buffers(
        pa.large_utf8(), len(array), [None, pa.py_buffer(offsets8), pa.py_buffer(utf8)]
    )
    return strings, has_nul


def _ansi_to_arrow(array: pa.LargeBinaryArray) -> tuple[pa.LargeStringArray, bool]:
    """One-byte (ANSI) values → an Arrow UTF-8 string array (and whether any holds a NUL)."""
    data, offsets = _binary_parts(array)
    raw = np.frombuffer(data, dtype=np.uint8)
    has_nul = bool(len(raw)) and int(raw.min()) == 0
    if not len(raw) or int(raw.max()) < 0x80:  # ASCII is UTF-8 already
        strings = pa.Array.from_buffers(
            pa.large_utf8(), len(array), [None, pa.py_buffer(offsets), data]
        )
        return strings, has_nul
    values = [v.decode(_ANSI, "replace") for v in binary_values(array)]
    return _strings(values), has_nul


def _decode_chunk(
    buf: pa.Buffer, starts: np.ndarray, chars: np.ndarray, one_byte: np.ndarray | None
) -> tuple[pa.LargeStringArray, bool]:
    """One chunk of :func:`decode_strings`, as an Arrow string array."""
    if one_byte is None or not bool(one_byte.any()):
        return _utf16_to_arrow(gather_bytes(buf, starts, chars * 2))
    if bool(one_byte.all()):
        return _ansi_to_arrow(gather_bytes(buf, starts, chars))
    wide = np.flatnonzero(~one_byte)
    narrow = np.flatnonzero(one_byte)
    wide_strings, wide_nul = _utf16_to_arrow(gather_bytes(buf, starts[wide], chars[wide] * 2))
    narrow_strings, narrow_nul = _ansi_to_arrow(gather_bytes(buf, starts[narrow], chars[narrow]))
    inverse = _inverse(np.concatenate([wide, narrow]))
    joined = pa.concat_arrays([wide_strings, narrow_strings], memory_pool=_POOL)
    return pc.take(joined, arrow_int64(inverse), memory_pool=_POOL), wide_nul or narrow_nul


class StringViews:
    """A String column of ``count`` strings of ``data`` decoded part by part by the
    compiled decoder (:func:`~traceaudit.formats.pml.kernels.decode_views`) into one
    Arrow ``string_view`` array: 16 bytes of view per string (strings of up to 12 UTF-8
    bytes held in it) and one data buffer per part for the longer ones."""

    def __init__(self, kernels: Kernels, data: np.ndarray, count: int) -> None:
        self._decode = kernels.decode_views
        self._data = data
        self._d64 = words(data)[2]
        self._views = np.empty((count, 16), dtype=np.uint8)
        self._views32 = self._views.view(np.uint32)
        self._buffers: list[pa.Buffer] = []
        self._count = count
        self._state = np.zeros(2, dtype=np.int64)

    def add(self, first: int, starts: np.ndarray, chars: np.ndarray, one_byte: np.ndarray) -> None:
        """Decode strings ``first…first + len(starts)`` (which must lie inside the data:
        UTF-16LE, or one byte per character where ``one_byte``).

        Each part's buffer is first sized for ASCII (a byte per character, the bytes
        of the strings the views hold inline to spare); strings that do not fit then go
        to a buffer sized for the worst case (3 bytes per character).
        """
        done, total, worst = 0, len(starts), False
        while done < total:
            chars_left = int(chars[done:].sum())
            out = np.empty((3 if worst else 1) * chars_left + 64, dtype=np.uint8)
            self._decode(
                self._data,
                self._d64,
                starts[done:],
                chars[done:],
                one_byte[done:],
                ANSI_CODE_POINTS,
                len(self._buffers),
                self._views[first + done : first + total],
                self._views32[first + done : first + total],
                out,
                *words(out)[1:],
                self._state,
            )
            used, decoded = int(self._state[0]), int(self._state[1])
            if used:
                self._buffers.append(pa.py_buffer(out[:used]))
            if not decoded and worst:  # cannot happen: the worst case always fits
                raise RuntimeError("decode_views made no progress")
            done += decoded
            worst = True

    def series(self) -> pl.Series:
        """The column (once every string is added)."""
        array = pa.Array.from_buffers(
            pa.string_view(), self._count, [None, pa.py_buffer(self._views), *self._buffers]
        )
        return pl.Series(array)


def _decode_compiled(
    kernels: Kernels,
    buf: pa.Buffer,
    starts: np.ndarray,
    chars: np.ndarray,
    one_byte: np.ndarray | None,
) -> pl.Series | None:
    """:func:`decode_strings` by the compiled decoder; None when a range leaves ``buf``
    (the fallback then reports it as it always did)."""
    data = np.frombuffer(buf, dtype=np.uint8)
    narrow = np.zeros(len(starts), dtype=bool) if one_byte is None else one_byte
    stops = starts + np.where(narrow, chars, 2 * chars)
    if int(starts.min()) < 0 or int(chars.min()) < 0 or int(stops.max()) > len(data):
        return None
    views = StringViews(kernels, data, len(starts))
    for first in range(0, len(starts), CHUNK):
        part = slice(first, first + CHUNK)
        views.add(first, starts[part], chars[part], narrow[part])
    return views.series()


def decode_strings(
    buf: pa.Buffer,
    starts: np.ndarray,
    chars: np.ndarray,
    one_byte: np.ndarray | None = None,
) -> pl.Series:
    """Decode ``len(starts)`` strings of ``chars[i]`` characters at ``starts[i]``.

    ``one_byte[i]`` marks one-byte (ANSI) strings; the others are UTF-16LE (2 bytes per
    character). Returns a String series in the order given; text after a NUL is dropped.
    """
    count = len(starts)
    starts = np.asarray(starts, dtype=np.int64)
    chars = np.asarray(chars, dtype=np.int64)
    if count == 0:
        return pl.Series(values=[], dtype=pl.String)
    kernels = compiled()
    if kernels is not None:
        if one_byte is not None:
            one_byte = np.asarray(one_byte, dtype=bool)
        decoded = _decode_compiled(kernels, buf, starts, chars, one_byte)
        if decoded is not None:
            return decoded
    chunks, has_nul = [], False
    for first in range(0, count, CHUNK):
        part = slice(first, first + CHUNK)
        strings, nul = _decode_chunk(
            buf, starts[part], chars[part], None if one_byte is None else one_byte[part]
        )
        chunks.append(pl.Series(strings, dtype=pl.String))
        has_nul |= nul
    series = chunks[0] if len(chunks) == 1 else pl.concat(chunks, rechunk=False)
    if has_nul:
        series = series.str.replace(r"(?s)\x00.*", "")
    return series
