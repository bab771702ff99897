"""Decompress the LZ77 "Xpress" buffers of compressed ETL files ([MS-XCA] 2.3/2.4).

Since Windows 8 a session (or ``xperf -merge -compress``, PerfView's merge, WPR with
compression on) may write each trace buffer compressed: the buffer header keeps its 0x48
bytes, ``ETW_BUFFER_FLAG_COMPRESSED`` (0x40) is set in its flags, and the rest of the
buffer is the **plain LZ77** variant of Xpress (``COMPRESSION_FORMAT_XPRESS``, not the
Huffman one), expanding to ``FilledBytes - 0x48`` bytes. Checked on the PerfView corpus
traces: every compressed buffer decodes to exactly that size.

The format: a 32-bit flag word (read MSB first) says, for each of the next 32 items,
whether it is one literal byte (0) or a match (1). A match is a 16-bit word, offset - 1
in its top 13 bits and length - 3 in its low 3; length 7 continues in a half byte (shared
by two consecutive long matches), then a byte, then 16 or 32 bits.

Three decoders give the same bytes and the same errors (the tests compare them):

* ``ntdll.RtlDecompressBuffer`` on Windows, when it is there (its output is checked; any
  failure falls back to the decoders below);
* a numba kernel (:func:`traceaudit._jit.kernel`), compiled at first use, that writes into
  a preallocated numpy array; the buffer walk (:mod:`.buffers`) runs it over every buffer
  of a chunk in one compiled call, so no Python step is taken per buffer or per match;
* :func:`decompress_python`, pure Python for where numba is missing or switched off
  (``TRACEAUDIT_NO_JIT=1``): runs of literals are copied as one slice and non-overlapping
  matches as one slice, so the cost is one small loop step per match (about 0.4 µs).

:func:`decompress` picks the first available one for a single buffer.

The guarantees on hostile input, in every decoder: a match length is capped at the output
size (a 41-byte body cannot make gigabytes), a match reaching before the start of the
output and data ending inside an item raise :class:`XpressError` with a message saying so,
and so does an output shorter than announced.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from functools import cache
from typing import cast

import numpy as np

from traceaudit._jit import kernel

__all__ = [
    "XpressError",
    "compiled_decoder",
    "decompress",
    "decompress_kernel",
    "decompress_python",
    "error_message",
]


class XpressError(ValueError):
    """The compressed data is damaged (it ends inside an item or expands to the wrong size)."""


def decompress_python(src: bytes, size: int) -> bytes:
    """Expand ``src`` (plain LZ77 Xpress) to exactly ``size`` bytes, in pure Python."""
    out = bytearray()
    n = len(src)
    ip = 0
    half = -1  # position of the half byte a second long match will use, or -1
    try:
        while ip + 4 <= n and len(out) < size:
            flags = src[ip] | (src[ip + 1] << 8) | (src[ip + 2] << 16) | (src[ip + 3] << 24)
            ip += 4
            bits = 32
            while bits:
                rest = flags & ((1 << bits) - 1)
                literals = bits - rest.bit_length()  # leading zero flags: literal bytes
                if literals:
                    out += src[ip : ip + literals]
                    ip += literals
                    bits -= literals
                    if not bits:
                        break
                bits -= 1
                if ip >= n:
                    break
                word = src[ip] | (src[ip + 1] << 8)
                ip += 2
                length = word & 7
                offset = (word >> 3) + 1
                if length == 7:
                    if half < 0:
                        length = src[ip] & 15
                        half = ip
                        ip += 1
                    else:
                        length = src[half] >> 4
                        half = -1
                    if length == 15:
                        length = src[ip]
                        ip += 1
                        if length == 255:
                            length = src[ip] | (src[ip + 1] << 8)
                            ip += 2
                            if length == 0:
                                length = int.from_bytes(src[ip : ip + 4], "little")
                                ip += 4
                            if length < 22:
                                raise XpressError(f"match length {length} below 22")
                            # Bytes past ``size`` are dropped: a hostile 32-bit length
                            # must not make this copy gigabytes first.
                            length = min(length - 22, size)
                        length += 15
                    length += 7
                length += 3
                start = len(out) - offset
                if start < 0:
                    raise XpressError(f"match offset {offset} before the start of the output")
                if offset >= length:
                    out += out[start : start + length]
                else:  # the match overlaps what it writes: repeat the period
                    out += (out[start:] * (length // offset + 1))[:length]
            if ip >= n:
                break
    except IndexError:
        raise XpressError("the data ends inside an item") from None
    if len(out) < size:
        raise XpressError(f"expands to {len(out)} bytes, not {size}")
    return bytes(out[:size])


# Error codes of the compiled decoder (its ``detail`` is the value the message quotes).
_TRUNCATED = -1  # the data ends inside an item
_OFFSET = -2  # a match reaches before the start of the output (detail: the offset)
_SHORT_LENGTH = -3  # a 16/32-bit match length below 22 (detail: the length)
_SHORT_OUTPUT = -4  # the data expands to fewer bytes than announced (detail: how many)


def error_message(code: int, detail: int, size: int) -> str:
    """What :func:`decompress_python` says for the compiled decoder's error ``code``."""
    if code == _OFFSET:
        return f"match offset {detail} before the start of the output"
    if code == _SHORT_LENGTH:
        return f"match length {detail} below 22"
    if code == _SHORT_OUTPUT:
        return f"expands to {detail} bytes, not {size}"
    return "the data ends inside an item"


def _xpress_into(
    src: np.ndarray,
    start: int,
    count: int,
    out: np.ndarray,
    out_start: int,
    size: int,
    detail: np.ndarray,
) -> int:
    """Expand ``src[start:start + count]`` into ``out[out_start:out_start + size]``.

    Returns ``size``, or a negative error code with its value in ``detail[0]``. A step for
    step transcription of :func:`decompress_python`, compiled by numba: ``length`` is the
    length the Python decoder's output would have (it goes on decoding the flag group it
    is in after the output is full; bytes past ``size`` are counted, never stored), so
    both give the same bytes and the same errors on any input.
    """
    n = count
    ip = 0
    length = 0  # the Python decoder's len(out)
    half = -1
    while ip + 4 <= n and length < size:
        at = start + ip
        flags = (
            np.int64(src[at])
            | (np.int64(src[at + 1]) << 8)
            | (np.int64(src[at + 2]) << 16)
            | (np.int64(src[at + 3]) << 24)
        )
        ip += 4
        bit = 31
        while bit >= 0:
            if (flags >> bit) & 1 == 0:  # a literal (past the end of the data: nothing)
                if ip < n:
                    if length < size:
                        out[out_start + length] = src[start + ip]
                    length += 1
                ip += 1
                bit -= 1
                continue
            bit -= 1
            if ip >= n:
                break
            if ip + 2 > n:
                return _TRUNCATED
            word = np.int64(src[start + ip]) | (np.int64(src[start + ip + 1]) << 8)
            ip += 2
            match = word & 7
            offset = (word >> 3) + 1
            if match == 7:
                if half < 0:
                    if ip >= n:
                        return _TRUNCATED
                    match = np.int64(src[start + ip]) & 15
                    half = ip
                    ip += 1
                else:
                    match = np.int64(src[start + half]) >> 4
                    half = -1
                if match == 15:
                    if ip >= n:
                        return _TRUNCATED
                    match = np.int64(src[start + ip])
                    ip += 1
                    if match == 255:
                        if ip + 2 > n:
                            return _TRUNCATED
                        match = np.int64(src[start + ip]) | (np.int64(src[start + ip + 1]) << 8)
                        ip += 2
                        if match == 0:  # 32 bits; as int.from_bytes, of the bytes present
                            for k in range(min(4, n - ip)):
                                match |= np.int64(src[start + ip + k]) << (8 * k)
                            ip += 4
                        if match < 22:
                            detail[0] = match
                            return _SHORT_LENGTH
                        match = min(match - 22, size)
                    match += 15
                match += 7
            match += 3
            source = length - offset
            if source < 0:
                detail[0] = offset
                return _OFFSET
            end = min(length + match, size)
            target = length
            while target < end:  # byte by byte: an overlapping match repeats its period
                out[out_start + target] = out[out_start + source]
                target += 1
                source += 1
            length += match
        if ip >= n:
            break
    if length < size:
        detail[0] = length
        return _SHORT_OUTPUT
    return size


_XpressInto = Callable[[np.ndarray, int, int, np.ndarray, int, int, np.ndarray], int]


@cache
def compiled_decoder() -> _XpressInto | None:
    """The numba-compiled decoder (:func:`_xpress_into`), or None without numba. numba is
    imported at the first call, not with this module; the machine code comes from numba's
    cache after the first compilation."""
    return cast("_XpressInto | None", kernel(_xpress_into))


def decompress_kernel(src: bytes, size: int) -> bytes:
    """:func:`decompress_python`'s result through the compiled decoder (numba must be
    available: see :func:`compiled_decoder`)."""
    decoder = compiled_decoder()
    if decoder is None:
        raise RuntimeError("the compiled Xpress decoder needs numba")
    if size <= 0:
        return decompress_python(src, size)
    out = np.empty(size, dtype=np.uint8)
    detail = np.zeros(1, dtype=np.int64)
    code = decoder(np.frombuffer(src, dtype=np.uint8), 0, len(src), out, 0, size, detail)
    if code < 0:
        raise XpressError(error_message(code, int(detail[0]), size))
    return out.tobytes()


def _native() -> Callable[[bytes, int], bytes] | None:
    """``ntdll.RtlDecompressBuffer`` wrapped for XPRESS, or None off Windows."""
    if sys.platform != "win32":  # pragma: no cover - exercised on Windows only
        return None
    try:  # pragma: no cover - Windows only
        function = ctypes.WinDLL("ntdll").RtlDecompressBuffer  # type: ignore[attr-defined,unused-ignore]
    except (OSError, AttributeError):  # pragma: no cover
        return None
    function.restype = ctypes.c_long  # pragma: no cover
    function.argtypes = [  # pragma: no cover
        ctypes.c_ushort,
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.POINTER(ctypes.c_ulong),
    ]
    compression_format_xpress = 3

    def run(src: bytes, size: int) -> bytes:  # pragma: no cover - Windows only
        output = ctypes.create_string_buffer(size)
        source = ctypes.create_string_buffer(src, len(src))
        final = ctypes.c_ulong(0)
        status = function(
            compression_format_xpress, output, size, source, len(src), ctypes.byref(final)
        )
        if status != 0 or final.value != size:
            raise XpressError(f"RtlDecompressBuffer status 0x{status & 0xFFFFFFFF:08X}")
        return output.raw

    return run  # pragma: no cover


_NATIVE = _native()


def decompress(src: bytes, size: int) -> bytes:
    """Expand one compressed buffer body to ``size`` bytes; :class:`XpressError` if damaged.

    ``RtlDecompressBuffer`` on Windows, else the compiled decoder, else pure Python.
    """
    if _NATIVE is not None:  # pragma: no cover - Windows only
        try:
            return _NATIVE(src, size)
        except (XpressError, OSError, ValueError):
            pass
    if compiled_decoder() is not None:
        return decompress_kernel(src, size)
    return decompress_python(src, size)
