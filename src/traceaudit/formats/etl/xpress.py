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

:func:`decompress` is pure Python, written for CPython's speed: runs of literals are
copied as one slice and non-overlapping matches as one slice, so the cost is one small
loop step per match (about 0.4 µs). On Windows ``ntdll.RtlDecompressBuffer`` does the
same job natively and is used when it is there (its output is checked; any failure falls
back to the Python decoder).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

__all__ = ["XpressError", "decompress"]


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
    """Expand one compressed buffer body to ``size`` bytes; :class:`XpressError` if damaged."""
    if _NATIVE is not None:  # pragma: no cover - Windows only
        try:
            return _NATIVE(src, size)
        except (XpressError, OSError, ValueError):
            pass
    return decompress_python(src, size)
