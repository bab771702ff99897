"""Build a big Procmon PML by tiling a real capture, to measure readers on multi-GB logs.

Run ``python benchmarks/make_big_pml.py --events 10M [--source LOG.pml[.gz]] [--out PATH]``
(default source: the corpus capture ``procmon-pairs/Tests64bit.pml.gz``, 53,214 events;
default output: ``benchmarks/data/<source>-<events>.pml``, a git-ignored folder). The
corpus files are read where they are, never copied into the project.

The source's events section is written again and again, each copy's event times shifted
by the source's time span plus a millisecond so that times keep increasing; the last copy
is cut short to give exactly the number of events asked for. A new event index lists
every copy's events; the header's event count and table offsets are rewritten, and the
process, strings, icon, hosts and ports tables are kept as they are (every copy refers to
the same processes and strings). With ``--strip-stacks`` the events' call stacks are left
out (stack depth 0, extra-details offsets moved back), which makes the events of
Tests64bit 2.6 times smaller: 100M events take 17 GB instead of 44.

An index entry is a u32 offset and a byte; bit 0 of that byte is bit 32 of the offset
(files up to 8 GiB). Past 8 GiB the byte holds bits 32 to 39, which is how
:mod:`traceaudit.formats.pml` reads a file that big (procmon-parser reads 32-bit offsets
only, so it can check the events of the first 4 GiB).

``--check`` reads the result back: the first and last events with traceaudit's reader
and, for events in the first 4 GiB, a sample with procmon-parser (the test oracle, in the
dev extra) compared field by field: a proof that the output is a valid PML.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
DEFAULT_SOURCE = CORPUS / "procmon-pairs" / "Tests64bit.pml.gz"
DATA = ROOT / "benchmarks" / "data"

HEADER_SIZE = 0x3A8
EVENT_HEADER = 52
ENTRY = np.dtype([("offset", "<u4"), ("high", "u1")])
GAP_TICKS = 10_000  # 1 ms between the last event of a copy and the first of the next
PARSER_LIMIT = 20_000_000
HEADROOM = 2 << 30  # free space left on the disk after writing
_COUNT_AT, _OFFSETS_AT, _HOSTS_AT = 0x234, 0x240, 0x3A0


@dataclass
class Source:
    """A cleanly closed PML: its bytes, layout and every listed event's offset and time."""

    name: str
    content: bytes
    pointer: int
    events_at: int
    index_at: int
    tables_at: int  # the process table: the tables follow the index up to the end
    offsets: np.ndarray  # absolute, in display order
    times: np.ndarray

    @property
    def count(self) -> int:
        return len(self.offsets)

    def period_ticks(self) -> int:
        """How far each copy's times are shifted from the previous copy's."""
        return int(self.times.max()) - int(self.times.min()) + GAP_TICKS


def load_source(path: Path) -> Source:
    """Read ``path`` (a ``.gz`` is decompressed) and check that it can be tiled."""
    raw = path.read_bytes()
    content = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    if content[:4] != b"PML_":
        sys.exit(f"error: {path.name} is not a PML file")
    pointer = 8 if struct.unpack_from("<I", content, 8)[0] else 4
    count = struct.unpack_from("<I", content, _COUNT_AT)[0]
    events_at, index_at, tables_at = struct.unpack_from("<3Q", content, _OFFSETS_AT)
    if not index_at or index_at + 5 * count != tables_at or tables_at > len(content):
        sys.exit(
            f"error: {path.name}: the event index and tables are not whole; give a log "
            "that Process Monitor closed cleanly"
        )
    entries = np.frombuffer(content, dtype=ENTRY, count=count, offset=index_at)
    offsets = entries["offset"].astype(np.int64) | (entries["high"].astype(np.int64) & 1) << 32
    if count > 1 and not bool(np.all(np.diff(offsets) > 0)):
        sys.exit(f"error: {path.name}: its events are not stored in display order")
    positions = offsets[:, None] + 28 + np.arange(8)
    data = np.frombuffer(content, dtype=np.uint8)
    times = data[positions].copy().view("<u8").ravel()
    return Source(
        path.name.removesuffix(".gz"),
        content,
        pointer,
        events_at,
        index_at,
        tables_at,
        offsets,
        times,
    )


def _event_fields(region: np.ndarray, starts: np.ndarray, at: int, dtype: str) -> np.ndarray:
    """The little-endian field at ``starts + at`` of every event in ``region``."""
    size = np.dtype(dtype).itemsize
    return region[starts[:, None] + at + np.arange(size)].copy().view(dtype).ravel()


def _set_fields(region: np.ndarray, starts: np.ndarray, at: int, values: np.ndarray) -> None:
    size = values.dtype.itemsize
    region[starts[:, None] + at + np.arange(size)] = values.view(np.uint8).reshape(-1, size)


def _events_region(source: Source, strip_stacks: bool) -> tuple[np.ndarray, np.ndarray]:
    """The events section to repeat (a writable copy) and each event's start in it."""
    data = np.frombuffer(source.content, dtype=np.uint8)
    region = data[source.events_at : source.index_at].copy()
    starts = source.offsets - source.events_at
    if not strip_stacks:
        return region, starts
    depth = _event_fields(region, starts, 40, "<u2").astype(np.int64)
    size = _event_fields(region, starts, 44, "<u4").astype(np.int64)
    extra = _event_fields(region, starts, 48, "<u4").astype(np.int64)
    stack = depth * source.pointer
    inline = (extra == 0) | (extra == EVENT_HEADER + stack + size)
    if not bool(inline.all()):
        sys.exit(
            f"error: {source.name}: some extra details are stored away from their event; "
            "tile it without --strip-stacks"
        )
    # Drop the stack bytes: mark [start + 52, start + 52 + stack) of every event.
    edges = np.zeros(len(region) + 1, dtype=np.int64)
    np.add.at(edges, starts + EVENT_HEADER, 1)
    np.add.at(edges, starts + EVENT_HEADER + stack, -1)
    in_stack = np.cumsum(edges[:-1]) > 0
    removed_before = np.concatenate([[0], np.cumsum(stack)[:-1]])
    region = region[~in_stack]
    starts = starts - removed_before
    _set_fields(region, starts, 40, np.zeros(len(starts), dtype="<u2"))
    _set_fields(region, starts, 48, np.where(extra > 0, extra - stack, 0).astype("<u4"))
    return region, starts


@dataclass
class Tiled:
    events: int
    copies: int
    size: int
    period_ticks: int


def tile(source: Source, events: int, out: BinaryIO, *, strip_stacks: bool = False) -> Tiled:
    """Write a PML of ``events`` events tiled from ``source`` to ``out`` (seekable)."""
    region, starts = _events_region(source, strip_stacks)
    per_copy = source.count
    copies = max(-(-events // per_copy), 1)
    last = events - (copies - 1) * per_copy
    section = len(region)
    period = source.period_ticks()
    cut = int(starts[last]) if last < per_copy else section
    events_at = source.events_at
    index_at = events_at + (copies - 1) * section + cut
    tables = source.content[source.tables_at :]
    tables_at = index_at + 5 * events
    if tables_at + len(tables) > 1 << 40:
        sys.exit("error: the event index addresses 40 bits: that many events do not fit")
    shift = tables_at - source.tables_at
    header = bytearray(source.content[:events_at])
    struct.pack_into("<I", header, _COUNT_AT, events)
    process_at, strings_at, icons_at = struct.unpack_from("<3Q", header, _OFFSETS_AT + 16)
    struct.pack_into(
        "<5Q",
        header,
        _OFFSETS_AT,
        events_at,
        index_at,
        process_at + shift,
        strings_at + shift,
        icons_at + shift,
    )
    hosts_at = struct.unpack_from("<Q", header, _HOSTS_AT)[0]
    if hosts_at:
        struct.pack_into("<Q", header, _HOSTS_AT, hosts_at + shift)
    out.write(header)
    times_at = starts[:, None] + 28 + np.arange(8)
    for copy in range(copies):
        region[times_at] = (source.times + np.uint64(copy * period)).view(np.uint8).reshape(-1, 8)
        out.write(memoryview(region)[: cut if copy == copies - 1 else section])
    entries = np.zeros(per_copy, dtype=ENTRY)
    for copy in range(copies):
        count = last if copy == copies - 1 else per_copy
        absolute = events_at + copy * section + starts[:count]
        entries["offset"][:count] = absolute & 0xFFFFFFFF
        entries["high"][:count] = absolute >> 32
        out.write(entries[:count].tobytes())
    out.write(tables)
    return Tiled(events, copies, tables_at + len(tables), period)


def parse_count(text: str) -> int:
    text = text.strip().upper().replace("_", "").replace(",", "")
    scale = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def _label(events: int) -> str:
    for scale, suffix in ((1_000_000, "M"), (1_000, "K")):
        if events % scale == 0:
            return f"{events // scale}{suffix}"
    return str(events)


def default_output(source: Path, events: int, strip_stacks: bool) -> Path:
    stem = source.name.removesuffix(".gz").removesuffix(".pml").removesuffix(".PML")
    return DATA / f"{stem}{'-nostack' if strip_stacks else ''}-{_label(events)}.pml"


def estimated_size(source: Source, events: int, strip_stacks: bool) -> int:
    region, _ = _events_region(source, strip_stacks)
    per_event = len(region) / source.count
    return int(
        source.events_at + per_event * events + 5 * events + len(source.content) - source.tables_at
    )


def build(source_path: Path, events: int, out: Path, *, strip_stacks: bool = False) -> Tiled:
    """Tile ``source_path`` into ``out`` (refused when the disk would be left too full)."""
    source = load_source(source_path)
    expected = estimated_size(source, events, strip_stacks)
    out.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out.parent).free
    if expected + HEADROOM > free:
        sys.exit(
            f"error: {out} would take {expected / 1e9:.1f} GB; {free / 1e9:.1f} GB are free "
            f"and {HEADROOM / 2**30:.0f} GiB must stay free"
        )
    partial = out.with_name(out.name + ".part")
    with partial.open("wb") as handle:
        tiled = tile(source, events, handle, strip_stacks=strip_stacks)
    partial.replace(out)
    return tiled


def check(path: Path, *, samples: int = 2000) -> None:
    """Read ``path`` back: traceaudit's batch reader on every event, and procmon-parser on
    a sample of the events it can address (the first 4 GiB) compared with it: PID, TID,
    time exactly, paths (procmon-parser leaves some empty or spells them differently)."""
    import polars as pl

    sys.path.insert(0, str(ROOT / "src"))
    from traceaudit.formats.input import open_input
    from traceaudit.formats.pml.reader import batches, sniff_pml

    content = np.memmap(path, dtype=np.uint8, mode="r")
    count = struct.unpack_from("<I", content, _COUNT_AT)[0]
    index_at = struct.unpack_from("<Q", content, _OFFSETS_AT + 8)[0]
    high = np.frombuffer(content, dtype=ENTRY, count=count, offset=index_at)["high"]
    reachable = int(np.searchsorted(high, 1))  # entries in order: offsets below 4 GiB
    rng = np.random.default_rng(7)
    head = np.arange(min(samples, reachable))
    picks = np.unique(np.concatenate([head, rng.integers(0, max(reachable, 1), samples)]))
    picks = picks[picks < reachable]
    wanted = (picks + 1).tolist()
    ours: list[pl.DataFrame] = []
    started = time.perf_counter()
    read = batches(open_input(path, sniff=sniff_pml), columns=["row", "time", "pid", "tid", "path"])
    events = 0
    for frame in read.frames:
        events += frame.height
        ours.append(frame.filter(pl.col("row").is_in(wanted)))
    seconds = time.perf_counter() - started
    print(f"traceaudit: {events:,} events read in {seconds:.1f} s; warnings: {read.warnings}")
    del content
    try:
        from procmon_parser import ProcmonLogsReader
    except ImportError:
        print("procmon-parser is not installed (pip install -e '.[dev]'): not checked")
        return
    if count > PARSER_LIMIT:
        print(
            f"procmon-parser: not run (it reads the whole index into Python integers, "
            f"{count:,} of them); check a log of at most {PARSER_LIMIT:,} events instead"
        )
        return
    mine = pl.concat(ours).sort("row")
    filetime = (pl.col("time").cast(pl.Int64) // 100 + 116_444_736_000_000_000).alias("ft")
    mine = mine.with_columns(filetime)
    with path.open("rb") as handle:
        reader = ProcmonLogsReader(handle, should_get_stacktrace=False)
        theirs = [reader[int(i)] for i in picks]
    same = sum(
        (e.process.pid, e.tid, e.date_filetime) == (pid, tid, ft)
        for e, pid, tid, ft in zip(theirs, mine["pid"], mine["tid"], mine["ft"], strict=True)
    )
    paths = sum(e.path == p for e, p in zip(theirs, mine["path"], strict=True))
    print(
        f"procmon-parser: {len(reader):,} events in the index, {len(theirs):,} sampled among "
        f"the {reachable:,} it can address: PID, TID and time equal for {same:,}, path for "
        f"{paths:,}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument(
        "--events",
        type=parse_count,
        default=1_000_000,
        help="events to write: 1000000, 1M, 10M, 100M",
    )
    parser.add_argument("--out", type=Path, help="default: benchmarks/data/<source>-<events>.pml")
    parser.add_argument(
        "--strip-stacks", action="store_true", help="leave the call stacks out (smaller events)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="read the result back with traceaudit and procmon-parser",
    )
    parser.add_argument(
        "--check-only", type=Path, metavar="PML", help="check a log built before, build nothing"
    )
    args = parser.parse_args(argv)
    if args.check_only:
        check(args.check_only)
        return
    if not args.source.is_file():
        sys.exit(f"error: {args.source} not found; give a PML log with --source.")
    out = args.out or default_output(args.source, args.events, args.strip_stacks)
    started = time.perf_counter()
    tiled = build(args.source, args.events, out, strip_stacks=args.strip_stacks)
    seconds = time.perf_counter() - started
    print(
        f"{out}: {tiled.events:,} events ({tiled.copies:,} copies of {args.source.name}), "
        f"{tiled.size / 1e9:.2f} GB in {seconds:.1f} s"
    )
    if args.check:
        check(out)


if __name__ == "__main__":
    main()
