"""Shared pieces of the binary readers (PML, ETL): the file mapped into memory, layouts as
numpy dtypes, FILETIME."""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np

from traceaudit.errors import TraceFormatError
from traceaudit.formats.input import TraceInput

__all__ = ["FILETIME_UNIX_EPOCH", "mapped_content", "struct_dtype"]

FILETIME_UNIX_EPOCH = 116_444_736_000_000_000
"""1970-01-01 as a FILETIME (100 ns ticks since 1601-01-01, UTC)."""


def struct_dtype(fields: list[tuple[str, str, int]], itemsize: int | None = None) -> np.dtype[Any]:
    """A little-endian structured dtype from ``(name, format, offset)`` rows: a binary
    layout declared as data."""
    spec: dict[str, Any] = {
        "names": [f[0] for f in fields],
        "formats": [f[1] for f in fields],
        "offsets": [f[2] for f in fields],
    }
    if itemsize is not None:
        spec["itemsize"] = itemsize
    dtype: np.dtype[Any] = np.dtype(spec)  # type: ignore[call-overload]
    return dtype


def _map(fileno: int) -> mmap.mmap:
    """Map a whole file read-only. Pages are not loaded up front (no MAP_POPULATE): the
    first pass faults them in as it goes, the kernel mapping the cached pages around
    each fault, and a pass split over two cores faults its halves in at once (measured
    on a 395 MB PML: populating took 30 ms before the pass could start, faulting adds
    about 13 ms to a pass on two cores)."""
    return mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)


def _no_release(start: int = 0, end: int | None = None) -> None:
    """Nothing to give back: the content is an in-memory bytes object."""


@contextmanager
def mapped_content(
    trace_input: TraceInput,
) -> Iterator[tuple[bytes | mmap.mmap, Callable[..., None]]]:
    """The content of a binary trace, and a function that gives pages back to the system.

    A plain file is memory-mapped read-only: pages are read as they are touched and never
    copied as a whole, and ``release(start, end)`` drops the pages wholly inside that range
    from the process's memory once a pass over them is done (later reads fault back only
    what they need). Decompressed content (a ``.gz``, a zip member, standard input) is used
    from memory and ``release`` does nothing. Views of the content must not outlive the
    ``with`` block.
    """
    if trace_input.path is None:
        yield trace_input.read_bytes(), _no_release
        return
    try:
        handle = open(trace_input.path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise TraceFormatError(
            f"{trace_input.name}: cannot open the file ({exc.strerror or exc}). Check the path "
            "and permissions."
        ) from None
    with handle:
        if os.fstat(handle.fileno()).st_size == 0:
            yield b"", _no_release
            return
        mapping = _map(handle.fileno())

        def release(start: int = 0, end: int | None = None) -> None:
            """Drop the pages wholly inside ``[start, end)`` from memory."""
            if not hasattr(mmap, "MADV_DONTNEED"):
                return
            first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
            last = len(mapping) if end is None else min(end, len(mapping))
            last = last if last == len(mapping) else last // mmap.PAGESIZE * mmap.PAGESIZE
            if last > first:
                with suppress(OSError, ValueError):
                    mapping.madvise(mmap.MADV_DONTNEED, first, last - first)

        try:
            yield mapping, release
        finally:
            with suppress(BufferError):  # a view still alive: the mapping closes with it
                mapping.close()
