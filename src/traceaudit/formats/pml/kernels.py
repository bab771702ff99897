"""Compiled loops of the PML reader (numba, through :func:`traceaudit._jit.kernel`).

Three byte-level passes dominate a read once every table is a numpy column, and no numpy
or polars expression runs them at memory speed:

* :func:`event_headers`: every event's 52-byte header into contiguous columns, with
  where its details, details end and extra details are, whether it fits in the file,
  and its sub-operation byte (one pass instead of a structured gather, a copy per field
  and a dozen whole-column numpy expressions);
* :func:`path_spans`: each event's path size word, where the path text starts, how many
  characters it has and where it ends (the operation's own fields follow it);
* :func:`decode_views`: counted UTF-16LE or one-byte (cp1252) strings, read where they
  lie in the file and written as UTF-8 straight into an Arrow ``string_view`` array
  (16-byte views plus one data buffer per call), which polars adopts without a copy.

:func:`compiled` gives them compiled, or None when numba is missing or switched off
(``TRACEAUDIT_NO_JIT=1``); callers then take their numpy path, which gives the same
frames (the tests read every capture both ways). Nothing here imports numba until the
first read asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from time import perf_counter
from typing import Any

import numpy as np

from traceaudit._jit import jit_available, kernel, plain

__all__ = [
    "Kernels",
    "compiled",
    "switched_off",
    "compile_seconds",
    "words",
    "event_headers",
    "path_spans",
    "decode_views",
    "ANSI_CODE_POINTS",
]

ANSI_CODE_POINTS = np.array(
    [ord(c) for c in bytes(range(256)).decode("cp1252", "replace")], dtype=np.int32
)
"""The code point of each byte of a one-byte (cp1252) string, U+FFFD where cp1252 names
none (as ``bytes.decode("cp1252", "replace")``)."""

_FILE_SYSTEM, _IPC = 3, 6  # event classes (layout.FILE_SYSTEM, layout.IPC)
_HEADER = 52  # layout.EVENT_HEADER_DTYPE.itemsize
_INLINE = 12  # a string_view of up to 12 bytes holds them in the view itself
_BLOCK = 256  # event headers copied per block by event_headers
_AHEAD = 16  # how many events (strings) ahead the kernels ask for memory
_LOW16, _LOW32, _32 = np.uint64(0xFFFF), np.uint64(0xFFFFFFFF), np.uint64(32)


def words(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``data`` (uint8) seen as little-endian u16, u32 and u64 starting at every byte
    (stride 1, overlapping; element ``p`` is the word at byte ``p``): the kernels read
    an unaligned field with one load instead of composing it from bytes, 3-5x faster."""
    d16, d32, d64 = (
        np.ndarray(
            shape=(max(len(data) - width + 1, 0),),
            dtype=np.dtype(f"<u{width}"),
            buffer=data if len(data) >= width else np.zeros(width, dtype=np.uint8),
            strides=(1,),
        )
        for width in (2, 4, 8)
    )
    return d16, d32, d64


def event_headers(
    data: np.ndarray,
    d16: np.ndarray,
    d32: np.ndarray,
    d64: np.ndarray,
    offsets: np.ndarray,
    events_offset: int,
    pointer: int,
    process_index: np.ndarray,
    tid: np.ndarray,
    event_class: np.ndarray,
    operation: np.ndarray,
    duration: np.ndarray,
    times: np.ndarray,
    result: np.ndarray,
    details_size: np.ndarray,
    details: np.ndarray,
    details_end: np.ndarray,
    extra_at: np.ndarray,
    sub_operation: np.ndarray,
    valid: np.ndarray,
) -> int:
    """Fill the columns (one row per offset) from the event headers at ``offsets``;
    return how many events are not ``valid`` (header or details outside the file, an
    event class past IPC, an extra details block whose size word is outside the file).

    ``d16``/``d32``/``d64`` are :func:`words` of ``data``. ``extra_at`` is -1 where the
    event has no extra details; ``sub_operation`` is the first details byte of
    file-system and IPC events with details, else 0. The fields of an event whose
    header lies outside the file are 0.
    """
    size = len(data)
    bad = 0
    count = len(offsets)
    # Headers lie all over the file: copy a block of them first (a short loop of loads
    # only, many cache and TLB misses in flight), then decode the copies from L1.
    block = np.empty((_BLOCK, 7), dtype=np.uint64)
    inside = np.empty(_BLOCK, dtype=np.bool_)
    for first in range(0, count, _BLOCK):
        last = min(first + _BLOCK, count)
        for i in range(first, last):
            if i + _AHEAD < count:
                ahead = offsets[i + _AHEAD]
                if 0 <= ahead < size - 64:
                    prefetch(data, ahead)
                    prefetch(data, ahead + 63)
            at = offsets[i]
            row = i - first
            inside[row] = at >= events_offset and at + _HEADER <= size
            if inside[row]:
                u = np.uint64(at)  # unsigned indexes: no wraparound test per load
                for j in range(6):
                    block[row, j] = d64[u + np.uint64(8 * j)]
                block[row, 6] = d32[u + np.uint64(48)]
        for i in range(first, last):  # then the first details line of each
            row = i - first
            depth = np.int64(block[row, 5] & _LOW16)
            prefetch(data, offsets[i] + _HEADER + depth * pointer)
        for i in range(first, last):
            row = i - first
            at = offsets[i]
            if not inside[row]:
                process_index[i] = 0
                tid[i] = 0
                event_class[i] = 0
                operation[i] = 0
                duration[i] = 0
                times[i] = 0
                result[i] = 0
                details_size[i] = 0
                details[i] = at + _HEADER
                details_end[i] = at + _HEADER
                extra_at[i] = -1
                sub_operation[i] = 0
                valid[i] = False
                bad += 1
                continue
            q0, q1, q2, q3 = block[row, 0], block[row, 1], block[row, 2], block[row, 3]
            q4, q5, q6 = block[row, 4], block[row, 5], block[row, 6]
            klass = q1 & _LOW32
            dsize = q5 >> _32
            extra = np.int64(q6)
            process_index[i] = q0 & _LOW32
            tid[i] = q0 >> _32
            event_class[i] = klass
            operation[i] = (q1 >> _32) & _LOW16
            duration[i] = (q2 >> _32) | (q3 << _32)
            times[i] = (q3 >> _32) | (q4 << _32)
            result[i] = q4 >> _32
            details_size[i] = dsize
            start = at + _HEADER + np.int64(q5 & _LOW16) * pointer
            end = start + np.int64(dsize)
            details[i] = start
            details_end[i] = end
            ok = end <= size and klass <= _IPC
            if extra > 0:
                extra_at[i] = at + extra
                ok = ok and at + extra + 2 <= size
            else:
                extra_at[i] = -1
            sub = np.uint8(0)
            if (klass == _FILE_SYSTEM or klass == _IPC) and dsize > 0 and start < size:  # noqa: SIM109
                sub = data[np.uint64(start)]
            sub_operation[i] = sub
            valid[i] = ok
            if not ok:
                bad += 1
    return bad


def path_spans(
    d16: np.ndarray,
    info: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    fallback: np.ndarray,
    begin: np.ndarray,
    chars: np.ndarray,
    one_byte: np.ndarray,
    after: np.ndarray,
) -> None:
    """Each event's path: the size word at ``info`` (-1: the event has none; ``d16`` as
    from :func:`words`), text at ``start``, details ending at ``end``. Writes where the
    text to decode starts (``fallback`` when there is none), its characters (0: none or
    not within the details), whether it is one byte per character, and where it ends
    (``after``: the end of the text when it fits, else left as it is)."""
    count = len(info)
    size = len(d16)
    for i in range(count):
        if i + _AHEAD < count:
            ahead = info[i + _AHEAD]
            if 0 <= ahead < size:
                prefetch(d16, ahead)  # stride 1: the index is the byte offset
        # Branch-free: a branch on a word still on its way from memory would stall.
        at = info[i]
        stop_at = end[i]
        has = (at >= 0) & (at + 2 <= stop_at)
        word = np.int64(d16[np.uint64(at if has else 0)])
        narrow = (word >> 15) != 0
        count_i = word & 0x7FFF
        stop = start[i] + count_i * (2 - (word >> 15))
        fits = has & (stop <= stop_at)
        text = fits & (count_i > 0)
        after[i] = stop if fits else after[i]
        begin[i] = start[i] if text else fallback[i]
        chars[i] = count_i if text else 0
        one_byte[i] = narrow & text


_ASCII4 = np.uint64(0xFF80FF80FF80FF80)
_ONES4 = np.uint64(0x0001000100010001)
_HIGH4 = np.uint64(0x8000800080008000)
_ASCII8 = _HIGH8 = np.uint64(0x8080808080808080)
_ONES8 = np.uint64(0x0101010101010101)
_ONE, _EIGHT, _SIXTEEN = np.uint64(1), np.uint64(8), np.uint64(16)
_BYTE1, _BYTE2, _BYTE3 = np.uint64(0xFF00), np.uint64(0xFF0000), np.uint64(0xFF000000)


def decode_views(
    data: np.ndarray,
    d64: np.ndarray,
    starts: np.ndarray,
    chars: np.ndarray,
    one_byte: np.ndarray,
    ansi: np.ndarray,
    buffer_index: int,
    views: np.ndarray,
    views32: np.ndarray,
    out: np.ndarray,
    out32: np.ndarray,
    out64: np.ndarray,
    state: np.ndarray,
) -> None:
    """Decode string ``i`` (``chars[i]`` characters at ``starts[i]``: UTF-16LE, or one
    byte each in cp1252 where ``one_byte[i]``) into the 16-byte Arrow string view
    ``views[i]`` (``views32``: the same memory as (n, 4) u32), its bytes past 12 in
    ``out`` (``out32``, ``out64``: :func:`words` of it; data buffer number
    ``buffer_index``). ``d64`` is :func:`words`' u64 of ``data``.

    Stops before a string that might not fit in ``out`` (8 bytes are kept spare);
    ``state`` is set to [bytes of ``out`` used, strings decoded].

    As Python's ``decode(..., "replace")`` does, per string: an unpaired surrogate or a
    byte cp1252 does not define becomes U+FFFD; a string ends at its first NUL. ASCII
    strings without a NUL (nearly all paths) are copied 8 bytes (4 UTF-16 units) at a
    time with the checks folded into two words; the others, character by character.
    """
    size = len(data)
    room = len(out) - 8
    count = len(starts)
    pos = 0
    done = 0
    while done < count:
        i = done
        if i + _AHEAD < count:  # the strings lie all over the file: ask for them early
            ahead = starts[i + _AHEAD]
            prefetch(data, ahead)
            prefetch(data, ahead + 64)
        s = starts[i]
        n = chars[i]
        narrow = one_byte[i]
        words = (n + 7) // 8 if narrow else (n + 3) // 4
        if pos + 8 * words > room:
            break
        first = pos
        fast = False
        if narrow and s + 8 * words <= size:
            seen = np.uint64(0)
            zero = np.uint64(0)
            for j in range(0, n, 8):
                w = d64[np.uint64(s + j)]
                out64[np.uint64(pos + j)] = w
                if j + 8 > n:  # past the string: read as 0x01 bytes
                    keep = (_ONE << np.uint64(8 * (n - j))) - _ONE
                    w = (w & keep) | (_ONES8 & ~keep)
                seen |= w
                zero |= (w - _ONES8) & ~w & _HIGH8
            fast = (seen & _ASCII8) == 0 and zero == 0
        elif not narrow and s + 8 * words <= size:
            seen = np.uint64(0)
            zero = np.uint64(0)
            for j in range(0, n, 4):
                w = d64[np.uint64(s + 2 * j)]
                out32[np.uint64(pos + j)] = np.uint32(
                    (w & np.uint64(0xFF))
                    | ((w >> _EIGHT) & _BYTE1)
                    | ((w >> _SIXTEEN) & _BYTE2)
                    | ((w >> np.uint64(24)) & _BYTE3)
                )
                if j + 4 > n:  # past the string: read as 0x0001 units
                    keep = (_ONE << np.uint64(16 * (n - j))) - _ONE
                    w = (w & keep) | (_ONES4 & ~keep)
                seen |= w
                zero |= (w - _ONES4) & ~w & _HIGH4
            fast = (seen & _ASCII4) == 0 and zero == 0
        if fast:
            pos += n
        elif pos + 3 * n > room:
            break
        else:
            pos = _decode_slow(data, s, n, narrow, ansi, out, pos)
        length = pos - first
        views32[i, 0] = length
        if length <= _INLINE:
            view = views[i]
            for j in range(length):
                view[4 + j] = out[first + j]
            for j in range(length, _INLINE):
                view[4 + j] = 0
            pos = first
        else:
            views32[i, 1] = out32[np.uint64(first)]
            views32[i, 2] = buffer_index
            views32[i, 3] = first
        done += 1
    state[0] = pos
    state[1] = done


def _decode_slow_python(
    data: np.ndarray,
    s: int,
    n: int,
    narrow: bool,
    ansi: np.ndarray,
    out: np.ndarray,
    pos: int,
) -> int:
    """One string, character by character, as UTF-8 into ``out`` at ``pos``; returns
    where it ends (see :func:`decode_views`)."""
    k = 0
    while k < n:
        if narrow:
            b = data[s + k]
            if b == 0:
                break
            cp = np.int64(ansi[b])
            k += 1
        else:
            p = s + 2 * k
            cp = np.int64(data[p]) | (np.int64(data[p + 1]) << 8)
            if cp == 0:
                break
            k += 1
            if 0xD800 <= cp < 0xE000:
                if cp < 0xDC00 and k < n:
                    q = s + 2 * k
                    low = np.int64(data[q]) | (np.int64(data[q + 1]) << 8)
                    if 0xDC00 <= low < 0xE000:
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                        k += 1
                    else:
                        cp = 0xFFFD
                else:
                    cp = 0xFFFD
        if cp < 0x80:
            out[pos] = cp
            pos += 1
        elif cp < 0x800:
            out[pos] = 0xC0 | (cp >> 6)
            out[pos + 1] = 0x80 | (cp & 0x3F)
            pos += 2
        elif cp < 0x10000:
            out[pos] = 0xE0 | (cp >> 12)
            out[pos + 1] = 0x80 | ((cp >> 6) & 0x3F)
            out[pos + 2] = 0x80 | (cp & 0x3F)
            pos += 3
        else:
            out[pos] = 0xF0 | (cp >> 18)
            out[pos + 1] = 0x80 | ((cp >> 12) & 0x3F)
            out[pos + 2] = 0x80 | ((cp >> 6) & 0x3F)
            out[pos + 3] = 0x80 | (cp & 0x3F)
            pos += 4
    return pos


_decode_slow = _decode_slow_python


def prefetch(array: np.ndarray, index: int) -> None:
    """Ask for the cache line of ``array[index]`` (a no-op here; the compiled kernels
    get an LLVM ``prefetch`` intrinsic in its place, see :func:`_compile`)."""


_A = np.ndarray
EventHeaders = Callable[
    [_A, _A, _A, _A, _A, int, int, _A, _A, _A, _A, _A, _A, _A, _A, _A, _A, _A, _A, _A], int
]
PathSpans = Callable[[_A, _A, _A, _A, _A, _A, _A, _A, _A], None]
DecodeViews = Callable[[_A, _A, _A, _A, _A, _A, int, _A, _A, _A, _A, _A, _A], None]


@dataclass(frozen=True)
class Kernels:
    """The compiled passes (the signatures of the Python functions of this module)."""

    event_headers: EventHeaders
    path_spans: PathSpans
    decode_views: DecodeViews


_COMPILE_SECONDS: list[float] = []
_SWITCHED_OFF: list[bool] = []


def compiled() -> Kernels | None:
    """The compiled kernels, or None (numba missing, ``TRACEAUDIT_NO_JIT=1``, inside
    :func:`switched_off`, or inside :func:`traceaudit._jit.plain_paths`: a one-shot command
    on a small log, where loading them would cost more than they save)."""
    return None if _SWITCHED_OFF or plain() else _compile()


@contextmanager
def switched_off() -> Iterator[None]:
    """Read with the numpy paths only, within this block (the tests compare both)."""
    _SWITCHED_OFF.append(True)
    try:
        yield
    finally:
        _SWITCHED_OFF.pop()


@cache
def _compile() -> Kernels | None:
    if not jit_available():
        return None
    started = perf_counter()
    # The kernels call these two by their module names: compiled forms replace the
    # Python ones before the kernels are compiled (or loaded from numba's cache).
    globals()["prefetch"] = _prefetch_intrinsic()
    globals()["_decode_slow"] = kernel(_decode_slow_python)
    headers = kernel(event_headers)
    spans = kernel(path_spans)
    views = kernel(decode_views)
    if headers is None or spans is None or views is None:
        return None
    compiled = Kernels(headers, spans, views)
    try:
        _try(compiled)
    except Exception:  # numba or LLVM cannot build them here: the numpy path reads alike
        return None
    _COMPILE_SECONDS.append(perf_counter() - started)
    return compiled


def _try(compiled: Kernels) -> None:
    """Run each kernel once on a few bytes (read-only, as a mapped file is): compiles
    them (or loads them from numba's cache) now, so a failure falls back to numpy."""
    data = np.zeros(256, dtype=np.uint8)
    data.flags.writeable = False
    d16, d32, d64 = words(data)
    one = np.zeros(1, dtype=np.int64)
    byte, u2, u4, u8 = (np.zeros(1, dtype=t) for t in ("u1", "<u2", "<u4", "<u8"))
    flag = np.zeros(1, dtype=bool)
    compiled.event_headers(
        data, d16, d32, d64, one, 0, 8, u4, u4, u4, u2, u8, u8, u4, u4, one, one, one, byte, flag
    )
    compiled.path_spans(d16, one - 1, one, one, one, one.copy(), one.copy(), flag, one)
    views = np.zeros((1, 16), dtype=np.uint8)
    buffer = np.zeros(64, dtype=np.uint8)
    compiled.decode_views(
        data,
        d64,
        one,
        one,
        flag,
        ANSI_CODE_POINTS,
        0,
        views,
        views.view(np.uint32),
        buffer,
        *words(buffer)[1:],
        np.zeros(2, dtype=np.int64),
    )


def _prefetch_intrinsic() -> Any:
    """``prefetch(array, index)`` for numba: LLVM's ``llvm.prefetch`` (read, keep in all
    cache levels) on the address of ``array[index]`` (a 1-D uint8 array)."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    def typer(_context: Any, array: Any, index: Any) -> Any:
        if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            made = context.make_array(signature.args[0])(context, builder, args[0])
            offset = args[1]
            if offset.type.width < 64:
                offset = builder.sext(offset, ir.IntType(64))
            address = builder.add(builder.ptrtoint(made.data, ir.IntType(64)), offset)
            byte = ir.IntType(8).as_pointer()
            word = ir.IntType(32)
            name = "llvm.prefetch.p0" if str(byte) == "ptr" else "llvm.prefetch.p0i8"
            module = builder.module  # ^ LLVM's opaque pointers, or the older typed ones
            function = module.globals.get(name) or ir.Function(
                module, ir.FunctionType(ir.VoidType(), [byte, word, word, word]), name
            )
            read, keep, data_cache = (ir.Constant(word, v) for v in (0, 3, 1))
            builder.call(function, [builder.inttoptr(address, byte), read, keep, data_cache])
            return context.get_dummy_value()

        return types.void(array, index), codegen

    typer.__name__ = "prefetch"
    return intrinsic(typer)


def compile_seconds() -> float:
    """Seconds spent importing numba and wrapping the kernels (compiling happens at
    their first call, from numba's cache on disk after the first run)."""
    return sum(_COMPILE_SECONDS)
