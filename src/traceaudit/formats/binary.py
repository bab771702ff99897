"""Shared pieces of the binary readers (PML, ETL): layouts as numpy dtypes, FILETIME."""

from __future__ import annotations

import numpy as np

__all__ = ["FILETIME_UNIX_EPOCH", "struct_dtype"]

FILETIME_UNIX_EPOCH = 116_444_736_000_000_000
"""1970-01-01 as a FILETIME (100 ns ticks since 1601-01-01, UTC)."""


def struct_dtype(fields: list[tuple[str, str, int]], itemsize: int | None = None) -> np.dtype:
    """A little-endian structured dtype from ``(name, format, offset)`` rows: a binary
    layout declared as data."""
    spec: dict = {
        "names": [f[0] for f in fields],
        "formats": [f[1] for f in fields],
        "offsets": [f[2] for f in fields],
    }
    if itemsize is not None:
        spec["itemsize"] = itemsize
    return np.dtype(spec)
