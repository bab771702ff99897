"""The PML batch reader (``traceaudit.formats.pml.batches``) against the whole-file reader.

With no ``columns`` and no ``keep``, the frames put together must equal ``read``'s events
sorted by row (same dtypes, values and row numbers), and the warnings, skipped events and
cut must be ``read``'s own once the frames are exhausted: for every corpus log, for logs
cut short anywhere, for damaged synthetic logs, and whatever the batch size. With ``keep``
and ``columns``, the frames equal ``read``'s events filtered and projected
(:func:`~traceaudit.formats.batches.select_columns`). A log tiled by
``benchmarks/make_big_pml.py`` reads as its copies, times shifted. Corpus tests are
skipped when the corpus is absent.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import struct
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_error_pml import EVENT_SIZE, three_events
from test_pml_cut import HEADER_SIZE, LOGS, cut_point, whole_log
from test_read_pml_builder import (
    Process,
    close_event,
    create_event,
    disposition_event,
    pml_file,
    read_write_event,
    registry_open_event,
    rename_event,
    tcp_send_event,
    thread_create_event,
    write,
)

from locations import ROOT
from traceaudit.analysis.rules import LOCK_RESULTS
from traceaudit.errors import DamagedRowError, TraceFormatError
from traceaudit.formats import pml
from traceaudit.formats.batches import CHEAP_COLUMNS, TraceBatches, select_columns
from traceaudit.formats.input import open_input
from traceaudit.formats.load import open_batches
from traceaudit.formats.pml.events import index_offsets
from traceaudit.formats.pml.layout import OFFSET_ENTRY_DTYPE
from traceaudit.formats.pml.reader import batches, read, sniff_pml
from traceaudit.formats.pml.tables import PmlHeader
from traceaudit.formats.registry import get_format
from traceaudit.schema import EVENT_SCHEMA, Trace

ANALYSIS_COLUMNS = [
    "row",
    "time",
    "process",
    "pid",
    "tid",
    "operation",
    "path",
    "result",
    "event_class",
    "access_mask",
    "share_mode",
    "disposition",
    "create_options",
    "is_directory",
    "delete_on_close",
    "rename_target",
    "replace_if_exists",
    "delete_flag",
    "file_object",
    "duration",
]
ANALYSIS_KEEP = pl.col("operation").is_in(
    ["CreateFile", "CloseFile", "CreateFileMapping", "Load Image", "Process Exit"]
) | pl.col("result").is_in(sorted(LOCK_RESULTS))
SMALL_LOGS = ("procmon-pml/file-dump-renames.pml", "procmon-pml/noriben-2013-v7.pml")


def _make_big_pml():
    spec = importlib.util.spec_from_file_location(
        "make_big_pml", ROOT / "benchmarks" / "make_big_pml.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_big_pml", module)
    spec.loader.exec_module(module)
    return module


make_big_pml = _make_big_pml()


def eager(path: Path, *, strict: bool = False) -> Trace:
    return read(open_input(path, sniff=sniff_pml), strict=strict)


def batched(path: Path, **options) -> tuple[pl.DataFrame, TraceBatches, list[pl.DataFrame]]:
    """Every frame of the batch reader, put together, the reader, and the frames."""
    reading = batches(open_input(path, sniff=sniff_pml), **options)
    frames = list(reading.frames)
    columns = options.get("columns")
    schema = {c: t for c, t in EVENT_SCHEMA.items() if columns is None or c in columns}
    events = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    return events, reading, frames


def assert_same_as_read(path: Path, batch_rows: int) -> None:
    """The batch reader gives ``read``'s events (by row) and what it learned."""
    trace = eager(path)
    events, reading, frames = batched(path, batch_rows=batch_rows)
    assert_frame_equal(events, trace.events.sort("row"))
    assert all(0 < f.height <= batch_rows for f in frames)
    assert events["row"].is_sorted()
    assert tuple(reading.warnings) == trace.warnings
    assert reading.skipped == trace.skipped
    assert tuple(reading.skipped_rows) == trace.skipped_rows
    assert reading.truncated == trace.truncated
    assert (reading.format, reading.clock, reading.source) == (
        trace.format,
        trace.clock,
        trace.source,
    )


def assert_filtered_and_projected(path: Path, batch_rows: int, columns, keep) -> None:
    expected = select_columns(eager(path).events.sort("row"), columns, keep)
    events, _, frames = batched(path, batch_rows=batch_rows, columns=columns, keep=keep)
    assert_frame_equal(events, expected)
    assert all(f.columns == expected.columns for f in frames)


# --- synthetic logs: every event kind the reader decodes -------------------------------


def mixed_events(pointer: int = 8) -> list:
    """Events of every detail group, plus registry, process and network events."""
    kw = {"pointer": pointer}
    events = [
        create_event(r"C:\data\a.txt", access=0x12019F, share=1, options=0x60, **kw),
        read_write_event(r"C:\data\a.txt", write=True, offset=4096, length=512, **kw),
        rename_event(r"C:\data\a.txt", r"b.txt", replace=True, **kw),
        disposition_event(r"C:\data\b.txt", delete=True, **kw),
        close_event(r"C:\data\b.txt", **kw),
        registry_open_event(r"HKLM\Software\Vendor"),
        thread_create_event(4321),
        create_event(r"C:\locked.db", access=0x80, share=0, options=0x40, result=0xC0000043, **kw),
        tcp_send_event(1460),
        close_event(r"C:\locked.db", process_index=1, **kw),
    ]
    for number, event in enumerate(events):
        event.ticks = 10 * number
    return events


def mixed_log(tmp_path: Path, pointer: int = 8) -> Path:
    processes = [Process(0, 4242, "writer.exe"), Process(1, 77, "reader.exe")]
    content = pml_file(mixed_events(pointer), processes, pointer=pointer)
    return write(tmp_path, f"mixed{pointer}.pml", content)


@pytest.mark.parametrize("pointer", [8, 4])
@pytest.mark.parametrize("batch_rows", [1, 3, 7, 1000])
def test_synthetic_log_reads_as_read_does(tmp_path, pointer, batch_rows):
    assert_same_as_read(mixed_log(tmp_path, pointer), batch_rows)


COLUMN_SETS = [
    None,
    ANALYSIS_COLUMNS,
    ["row"],
    ["path"],  # network paths, QueryDirectory filters: no Detail rendered
    ["detail"],
    ["access_mask", "open_result"],  # typed details without decoding a path
    ["rename_target"],
    ["replace_if_exists", "delete_flag", "offset", "length"],
    ["file_object", "time", "row"],  # order given is not the order returned
]
KEEPS = [
    None,
    ANALYSIS_KEEP,
    pl.col("result") != "SUCCESS",
    pl.col("pid") == 77,
    pl.col("event_class") == "Network",
    pl.lit(False),
    pl.col("path").str.contains("locked", literal=True),  # not cheap: applied late
    pl.any_horizontal(pl.col("^(detail|path)$").str.contains("b.txt", literal=True)),
]


@pytest.mark.parametrize("columns", COLUMN_SETS, ids=lambda c: ",".join(c) if c else "all")
@pytest.mark.parametrize("keep", KEEPS, ids=str)
def test_synthetic_log_filtered_and_projected(tmp_path, columns, keep):
    assert_filtered_and_projected(mixed_log(tmp_path), 3, columns, keep)


def test_keep_is_applied_before_paths_are_decoded(tmp_path, monkeypatch):
    """Only the events kept reach the path and detail decoders."""
    from traceaudit.formats.pml import reader

    seen: list[int] = []
    original = reader.path_spans

    def spy(events, *args, **kwargs):
        seen.append(events.count)
        return original(events, *args, **kwargs)

    monkeypatch.setattr(reader, "path_spans", spy)
    _, _, frames = batched(mixed_log(tmp_path), keep=pl.col("pid") == 77)
    assert [f.height for f in frames] == [1]
    assert seen == [1]
    seen.clear()
    batched(mixed_log(tmp_path), columns=["row", "operation", "result"])
    assert seen == []  # cheap columns only: no path located at all


def test_an_empty_capture_gives_no_frames(tmp_path):
    path = write(tmp_path, "empty.pml", pml_file([]))
    events, reading, frames = batched(path)
    assert frames == []
    assert reading.warnings == [] and not reading.truncated


def test_a_damaged_event_is_counted_as_read_counts_it(tmp_path):
    content = bytearray(pml_file(mixed_events()))
    index_at = struct.unpack_from("<Q", content, 0x248)[0]
    for number in (1, 4, 8):  # events 2, 5 and 9 point nowhere
        struct.pack_into("<I", content, index_at + 5 * number, len(content) + 100 * number)
    path = write(tmp_path, "damaged.pml", bytes(content))
    for batch_rows in (1, 2, 4, 100):
        assert_same_as_read(path, batch_rows)
    _, reading, _ = batched(path, batch_rows=2)
    assert reading.skipped == {"damaged event": 3}
    with pytest.raises(DamagedRowError) as whole:
        eager(path, strict=True)
    reading = batches(open_input(path, sniff=sniff_pml), strict=True, batch_rows=1)
    assert next(reading.frames)["row"].to_list() == [1]  # found when its batch is read
    with pytest.raises(DamagedRowError) as caught:
        list(reading.frames)
    assert str(caught.value) == str(whole.value)


def test_damage_and_a_cut_are_reported_in_read_order(tmp_path):
    """A cut past the index (walked) plus a damaged event: warnings in read's order."""
    content = bytearray(three_events())
    struct.pack_into("<I", content, 0x234, 0)
    struct.pack_into("<5Q", content, 0x248, 0, 0, 0, 0, 0)
    path = write(tmp_path, "unclean.pml", bytes(content))
    for batch_rows in (1, 2, 5):
        assert_same_as_read(path, batch_rows)


@pytest.mark.parametrize(
    "case", ["walked", "tables cut", "hosts cut", "header only", "v7 deferred extra"]
)
@pytest.mark.parametrize("batch_rows", [1, 2, 1000])
def test_damaged_synthetic_logs_read_as_read_does(tmp_path, case, batch_rows):
    content = three_events()
    if case == "walked":
        content = content[: HEADER_SIZE + 2 * EVENT_SIZE + 9]
    elif case == "tables cut":
        content = content[: struct.unpack_from("<Q", content, 0x258)[0] + 2]
    elif case == "hosts cut":
        content = content[:-3]
    elif case == "header only":
        content = content[:HEADER_SIZE]
    else:
        create = create_event("C:\\a", access=0x80, share=7, options=0, open_result=None)
        later = [close_event("C:\\b", ticks=1), close_event("C:\\c", ticks=2)]
        raw = bytearray(pml_file([create, *later], version=7))
        sizes = [52 + 2 * 8 + len(e.details) for e in (create, *later)]
        struct.pack_into("<I", raw, HEADER_SIZE + 48, sizes[0] + sizes[1])
        block_at = HEADER_SIZE + sizes[0] + sizes[1]
        raw[block_at:block_at] = struct.pack("<HI", 4, 1)
        content = bytes(raw[: block_at + 6 + 20])
    assert_same_as_read(write(tmp_path, "damaged.pml", content), batch_rows)


def test_errors_are_raised_when_the_batches_are_opened(tmp_path):
    """A bad header, and in strict mode a cut, raise before any frame is asked for."""
    with pytest.raises(TraceFormatError, match=r"^short\.pml: header at 0x0: the file is only"):
        batches(open_input(write(tmp_path, "short.pml", three_events()[:100])))
    cut = write(tmp_path, "cut.pml", three_events()[: HEADER_SIZE + EVENT_SIZE + 3])
    with pytest.raises(TraceFormatError, match=r"^cut\.pml: the event index .* Read 1 events"):
        batches(open_input(cut), strict=True)


def mapped(path: Path) -> bool:
    """Whether this process maps ``path`` (Linux)."""
    return str(path) in Path("/proc/self/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps")
def test_the_file_is_mapped_only_while_frames_are_read(tmp_path):
    path = mixed_log(tmp_path)
    reading = batches(open_input(path, sniff=sniff_pml), batch_rows=2)
    assert not mapped(path)  # opening read the header and tables, and let go
    first = next(reading.frames)
    assert mapped(path)
    reading.frames.close()  # left half read
    assert first.height == 2
    assert not mapped(path)
    reading = batches(open_input(path, sniff=sniff_pml), batch_rows=3)
    frames = list(reading.frames)
    assert not mapped(path)
    assert sum(f.height for f in frames) == 10


def test_the_format_table_and_open_batches_use_this_reader(tmp_path):
    assert get_format("procmon-pml").batches is batches
    assert pml.batches is batches
    path = mixed_log(tmp_path)
    reading = open_batches(path, columns=ANALYSIS_COLUMNS, keep=ANALYSIS_KEEP, batch_rows=4)
    events = pl.concat(list(reading.frames))
    assert_frame_equal(events, select_columns(eager(path).events, ANALYSIS_COLUMNS, ANALYSIS_KEEP))
    assert set(ANALYSIS_KEEP.meta.root_names()) <= CHEAP_COLUMNS


def test_index_entries_address_40_bits_past_8_gib():
    """Bit 0 of an entry's fifth byte is bit 32 of the offset; past 8 GiB the whole byte
    is bits 32 to 39 (the files make_big_pml writes at 100M events)."""
    entries = np.zeros(3, dtype=OFFSET_ENTRY_DTYPE)
    entries["offset"] = [0x3A8, 0x10, 0x20]
    entries["flags"] = [0, 1, 3]
    data = np.frombuffer(bytes(HEADER_SIZE) + entries.tobytes(), dtype=np.uint8)
    header = PmlHeader("big.pml", len(data), 9, 8, "HOST", 3, HEADER_SIZE, HEADER_SIZE, 0, 0, 0, 0)
    assert index_offsets(header, data, 0, 3).tolist() == [0x3A8, (1 << 32) | 0x10, (1 << 32) | 0x20]
    big = dataclasses.replace(header, size=(1 << 33) + 1)
    assert index_offsets(big, data, 1, 3).tolist() == [(1 << 32) | 0x10, (3 << 32) | 0x20]


# --- tiled logs (benchmarks/make_big_pml.py) --------------------------------------------


def assert_reads_as_copies(tiled: Path, source: Path, events: int) -> None:
    """The tiled log's events are the source's, copy after copy: times shifted by one
    period per copy, rows numbered on."""
    original = eager(source).events.sort("row")
    count = original.height
    period_ns = 100 * make_big_pml.load_source(source).period_ticks()
    for batch_rows in (count - 1, 1000):
        tiled_events, reading, _ = batched(tiled, batch_rows=batch_rows)
        assert tiled_events.height == events
        assert reading.warnings == [] and not reading.truncated
        ticks = pl.col("time").cast(pl.Int64)
        for copy in range(-(-events // count)):
            part = tiled_events.slice(copy * count, count)
            back = part.with_columns(
                (ticks - copy * period_ns).cast(pl.Datetime("ns")), pl.col("row") - copy * count
            )
            assert_frame_equal(back, original.head(part.height))
    assert_frame_equal(eager(tiled).events.sort("row"), tiled_events)


@pytest.mark.parametrize("strip_stacks", [False, True])
def test_a_tiled_synthetic_log_reads_as_its_copies(tmp_path, strip_stacks):
    source = mixed_log(tmp_path)
    tiled = tmp_path / "tiled.pml"
    with tiled.open("wb") as handle:
        make_big_pml.tile(make_big_pml.load_source(source), 25, handle, strip_stacks=strip_stacks)
    assert_reads_as_copies(tiled, source, 25)


@pytest.mark.parametrize("strip_stacks", [False, True])
def test_a_tiled_corpus_log_reads_as_its_copies(corpus, tmp_path, strip_stacks):
    source = corpus / "procmon-pairs" / "UTC64Process.pml.gz"
    tiled = tmp_path / "tiled.pml"
    with tiled.open("wb") as handle:
        info = make_big_pml.tile(
            make_big_pml.load_source(source), 8500, handle, strip_stacks=strip_stacks
        )
    assert (info.copies, info.size) == (3, tiled.stat().st_size)
    assert_reads_as_copies(tiled, source, 8500)


def test_a_tiled_corpus_log_is_read_by_procmon_parser(corpus, tmp_path):
    procmon_parser = pytest.importorskip("procmon_parser")
    source = corpus / "procmon-pairs" / "Tests64bit.pml.gz"
    buffer = io.BytesIO()
    make_big_pml.tile(make_big_pml.load_source(source), 120_000, buffer, strip_stacks=True)
    path = write(tmp_path, "tiled.pml", buffer.getvalue())
    ours = eager(path).events.sort("row")
    with path.open("rb") as handle:
        oracle = procmon_parser.ProcmonLogsReader(handle, should_get_stacktrace=False)
        assert len(oracle) == 120_000
        picks = [0, 1, 53_213, 53_214, 60_000, 106_428, 119_999]
        theirs = [oracle[i] for i in picks]
    ticks = ours["time"].cast(pl.Int64) // 100 + 116_444_736_000_000_000
    for i, event in zip(picks, theirs, strict=True):
        assert (event.process.pid, event.tid, event.path) == tuple(
            ours.row(i)[j] for j in (3, 4, 6)
        )
        assert event.date_filetime == ticks[i]


# --- the corpus ---------------------------------------------------------------------------


@pytest.mark.parametrize("log", LOGS, ids=lambda log: Path(log).name)
def test_corpus_log_reads_as_read_does(corpus, log):
    for batch_rows in (1000, 100_000):
        assert_same_as_read(corpus / log, batch_rows)


@pytest.mark.parametrize("log", [*SMALL_LOGS, "procmon-pml/ron-crash-a.pml"])
def test_corpus_log_in_batches_of_one_and_seven(corpus, log):
    assert_same_as_read(corpus / log, 7)
    if log in SMALL_LOGS:
        assert_same_as_read(corpus / log, 1)


@pytest.mark.parametrize("log", LOGS[:5], ids=lambda log: Path(log).name)
@pytest.mark.parametrize("columns", [None, ANALYSIS_COLUMNS, ["path", "detail"], ["offset"]])
@pytest.mark.parametrize("keep", [None, ANALYSIS_KEEP], ids=["all", "analysis"])
def test_corpus_log_filtered_and_projected(corpus, log, columns, keep):
    if columns is None and keep is None:
        return  # test_corpus_log_reads_as_read_does
    assert_filtered_and_projected(corpus / log, 10_000, columns, keep)


CUTS = (Fraction(2, 11), Fraction(6, 11), "in the first event", "index", "tables")


@pytest.mark.parametrize("log", LOGS, ids=lambda log: Path(log).name)
def test_cut_corpus_log_reads_as_read_does(corpus, tmp_path_factory, tmp_path, log):
    whole = whole_log(corpus, tmp_path_factory, log)
    for where in CUTS:
        path = tmp_path / whole.name
        path.write_bytes(whole.content[: cut_point(whole, where)])
        assert_same_as_read(path, 5000)
    assert_same_as_read(path, 777)


def test_cut_corpus_log_in_the_header_is_refused_alike(corpus, tmp_path_factory, tmp_path):
    whole = whole_log(corpus, tmp_path_factory, LOGS[0])
    path = tmp_path / whole.name
    path.write_bytes(whole.content[: cut_point(whole, "in the header")])
    with pytest.raises(TraceFormatError) as expected:
        eager(path)
    with pytest.raises(TraceFormatError) as caught:
        batches(open_input(path, sniff=sniff_pml))
    assert str(caught.value) == str(expected.value)
