"""Cut a cleanly closed PML into the files of a rolled-over capture, for tests.

No public capture rolled over, so the tests make one the way Process Monitor does: each
part is a whole PML (the original header, its events ``start:stop``, an index of them,
and the original process, strings, icon, hosts and ports tables), the header's event
count and table offsets rewritten. Events are stored in display order in the corpus
captures, so a part's events are one contiguous slice of the original's.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

_COUNT_AT, _OFFSETS_AT, _HOSTS_AT = 0x234, 0x240, 0x3A0
_ENTRY = np.dtype([("offset", "<u4"), ("high", "u1")])


def pml_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def split_pml(content: bytes, cuts: list[int]) -> list[bytes]:
    """The parts of ``content`` cut before each event number in ``cuts`` (ascending)."""
    count = struct.unpack_from("<I", content, _COUNT_AT)[0]
    events_at, index_at, tables_at = struct.unpack_from("<3Q", content, _OFFSETS_AT)
    assert index_at + 5 * count == tables_at, "give a cleanly closed PML"
    entries = np.frombuffer(content, dtype=_ENTRY, count=count, offset=index_at)
    offsets = entries["offset"].astype(np.int64) | (entries["high"].astype(np.int64) & 1) << 32
    assert bool(np.all(np.diff(offsets) > 0)), "events must be stored in display order"
    bounds = [0, *cuts, count]
    parts = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        begin = int(offsets[start])
        end = int(offsets[stop]) if stop < count else index_at
        events = content[begin:end]
        new_index_at = events_at + len(events)
        new_tables_at = new_index_at + 5 * (stop - start)
        shift = new_tables_at - tables_at
        header = bytearray(content[:events_at])
        struct.pack_into("<I", header, _COUNT_AT, stop - start)
        process_at, strings_at, icons_at = struct.unpack_from("<3Q", header, _OFFSETS_AT + 16)
        struct.pack_into(
            "<5Q",
            header,
            _OFFSETS_AT,
            events_at,
            new_index_at,
            process_at + shift,
            strings_at + shift,
            icons_at + shift,
        )
        hosts_at = struct.unpack_from("<Q", header, _HOSTS_AT)[0]
        if hosts_at:
            struct.pack_into("<Q", header, _HOSTS_AT, hosts_at + shift)
        moved = offsets[start:stop] - begin + events_at
        index = np.zeros(stop - start, dtype=_ENTRY)
        index["offset"] = moved & 0xFFFFFFFF
        index["high"] = moved >> 32
        parts.append(bytes(header) + events + index.tobytes() + content[tables_at:])
    return parts


def write_parts(content: bytes, cuts: list[int], folder: Path, stem: str = "Log") -> list[Path]:
    """Write the parts as ``Log.PML``, ``Log-1.PML``… into ``folder``; their paths."""
    paths = []
    for number, part in enumerate(split_pml(content, cuts)):
        path = folder / (f"{stem}.PML" if number == 0 else f"{stem}-{number}.PML")
        path.write_bytes(part)
        paths.append(path)
    return paths
