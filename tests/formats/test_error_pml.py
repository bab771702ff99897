"""Damaged and foreign PML input: clear errors with byte offsets, or warnings and counts.

Files are named after their defect. Whole messages are asserted: they are the interface
a user sees.
"""

from __future__ import annotations

import struct

import pytest
from test_pml_kernels import both_paths  # noqa: F401  (every read: with and without kernels)
from test_read_pml_builder import HEADER_SIZE, close_event, create_event, pml_file, write

from traceaudit.errors import DamagedRowError, TraceFormatError
from traceaudit.formats.pml.reader import read_pml, read_pml_processes

pytestmark = pytest.mark.usefixtures("both_paths")

EVENT_SIZE = 52 + 2 * 8 + len(close_event("C:\\a").details)


def three_events() -> bytes:
    return pml_file(
        [close_event("C:\\a"), close_event("C:\\b", ticks=1), close_event("C:\\c", ticks=2)]
    )


def test_error_not_a_pml_file(tmp_path):
    path = write(tmp_path, "trace.pml", b"XXXX" + bytes(2000))
    with pytest.raises(TraceFormatError) as caught:
        read_pml(path)
    assert str(caught.value) == (
        "trace.pml: header at 0x0: not a Procmon PML file (magic b'XXXX', expected b'PML_'). "
        "Give a log saved by Process Monitor (File > Save, format PML), or read this file "
        "with the reader of its own format."
    )
    assert isinstance(caught.value, ValueError)


def test_error_empty_file(tmp_path):
    with pytest.raises(
        TraceFormatError, match=r"^empty\.pml: header at 0x0: not a Procmon PML file \(magic b''"
    ):
        read_pml(write(tmp_path, "empty.pml", b""))


def test_error_header_cut_short(tmp_path):
    with pytest.raises(TraceFormatError) as caught:
        read_pml(write(tmp_path, "short.pml", three_events()[:100]))
    assert str(caught.value) == (
        "short.pml: header at 0x0: the file is only 100 bytes, a PML header takes 0x3A8. The "
        "file was cut short; copy it again from the machine that captured it."
    )


def test_error_unsupported_version(tmp_path):
    content = bytearray(three_events())
    struct.pack_into("<I", content, 4, 8)
    with pytest.raises(TraceFormatError) as caught:
        read_pml(write(tmp_path, "v8.pml", bytes(content)))
    assert str(caught.value) == (
        "v8.pml: header at 0x4: PML version 8 is not supported (readable: 7, 9). Open the log "
        "in Process Monitor and save it again (File > Save, PML) to write the current "
        "version, or export it as CSV."
    )


def test_error_damaged_bitness_flag(tmp_path):
    content = bytearray(three_events())
    struct.pack_into("<I", content, 8, 5)
    with pytest.raises(
        TraceFormatError, match=r"^bits\.pml: header at 0x8: the 32/64-bit flag is 5"
    ):
        read_pml(write(tmp_path, "bits.pml", bytes(content)))


def test_truncated_log_reads_up_to_the_last_intact_event(tmp_path):
    content = three_events()
    cut = 0x3A8 + 2 * EVENT_SIZE + 10  # inside the third event
    trace = read_pml(write(tmp_path, "truncated.pml", content[:cut]))
    assert trace.events["path"].to_list() == ["C:\\a", "C:\\b"]
    assert trace.events["process"].to_list() == [None, None]
    end = 0x3A8 + 2 * EVENT_SIZE
    assert trace.warnings[0] == (
        f"truncated.pml: the event index at 0x{0x3A8 + 3 * EVENT_SIZE:X} ends at "
        f"0x{0x3A8 + 3 * EVENT_SIZE + 15:X}, past the end of the file (0x{cut:X}): the file "
        f"was cut short. Read 2 events up to the last intact one, which ends at 0x{end:X}; "
        "1 of the 3 events the header counts were lost."
    )
    assert "process names and PIDs are unknown (null)" in trace.warnings[1]
    assert trace.truncated


def test_walk_finds_the_event_after_a_byte_past_a_full_extra_block(tmp_path):
    """Some Procmon builds store a 64 KiB extra details block (a directory listing) one
    byte longer than its u16 size (0xFFFF) says: the next event starts a byte later."""
    first = close_event("C:\\a", pointer=4, extra=bytes(0xFFFF))
    others = [close_event("C:\\b", pointer=4, ticks=1), close_event("C:\\c", pointer=4, ticks=2)]
    content = pml_file([first, *others], pointer=4)
    after_block = HEADER_SIZE + 52 + 2 * 4 + len(first.details) + 2 + 0xFFFF
    content = content[:after_block] + b"\x01" + content[after_block:]
    size = 52 + 2 * 4 + len(others[0].details)
    trace = read_pml(write(tmp_path, "listing.pml", content[: after_block + 1 + size + 10]))
    assert trace.events["path"].to_list() == ["C:\\a", "C:\\b"]
    assert trace.warnings[0].endswith(
        f"Read 2 events up to the last intact one, which ends at 0x{after_block + 1 + size:X}; "
        "1 of the 3 events the header counts were lost."
    )
    assert trace.truncated


def test_walk_steps_over_extra_details_stored_after_later_events(tmp_path):
    """Version 7 may write an event's extra details (CreateFile's OpenResult) after later
    events; an event whose block is cut off is lost, not read without it."""
    create = create_event("C:\\a", access=0x80, share=7, options=0, open_result=None)
    later = [close_event("C:\\b", ticks=1), close_event("C:\\c", ticks=2)]
    content = bytearray(pml_file([create, *later], version=7))
    sizes = [52 + 2 * 8 + len(e.details) for e in (create, *later)]
    struct.pack_into("<I", content, HEADER_SIZE + 48, sizes[0] + sizes[1])
    block_at = HEADER_SIZE + sizes[0] + sizes[1]
    content[block_at:block_at] = struct.pack("<HI", 4, 1)  # OpenResult: Opened
    trace = read_pml(write(tmp_path, "v7.pml", bytes(content[: block_at + 6 + 20])))
    assert trace.events["path"].to_list() == ["C:\\a", "C:\\b"]
    assert trace.events["open_result"].to_list() == ["Opened", None]
    assert trace.events["row"].to_list() == [1, 2]
    trace = read_pml(write(tmp_path, "v7.pml", bytes(content[: block_at + 3])))
    assert trace.events["path"].to_list() == ["C:\\b"]
    assert "2 of the 3 events the header counts were lost" in trace.warnings[0]


def test_truncated_log_in_strict_mode_is_an_error(tmp_path):
    path = write(tmp_path, "truncated.pml", three_events()[: 0x3A8 + EVENT_SIZE + 3])
    with pytest.raises(
        TraceFormatError, match=r"^truncated\.pml: the event index .* Read 1 events"
    ):
        read_pml(path, strict=True)


def test_log_cut_inside_its_tables_keeps_every_event(tmp_path):
    content = three_events()
    strings_at = struct.unpack_from("<Q", content, 0x258)[0]
    trace = read_pml(write(tmp_path, "tables.pml", content[: strings_at + 2]))
    assert trace.events.height == 3
    assert trace.warnings == (
        f"tables.pml: the process and strings tables end at "
        f"0x{struct.unpack_from('<Q', content, 0x260)[0]:X}, past the end of the file "
        f"(0x{strings_at + 2:X}): the file was cut short; process names and PIDs are unknown "
        "(null) for every event.",
    )
    assert trace.truncated
    with pytest.raises(TraceFormatError, match=r"^tables\.pml: process table at 0x"):
        read_pml_processes(tmp_path / "tables.pml")


@pytest.mark.parametrize(("back", "verb"), [(3, "run"), (4, "run"), (8, "lie"), (12, "lie")])
def test_log_cut_in_its_last_tables_says_so(tmp_path, back, verb):
    """The hosts and ports tables end the file: a cut there (or in the icon table before
    them) keeps every event and process, and still says that the file was cut short."""
    content = three_events()
    hosts_at = struct.unpack_from("<Q", content, 0x3A0)[0]
    cut = len(content) - back
    path = write(tmp_path, "end.pml", content[:cut])
    trace = read_pml(path)
    assert trace.events.height == 3
    assert trace.events["pid"].to_list() == [4242] * 3
    message = (
        f"end.pml: the hosts and ports tables at 0x{hosts_at:X} {verb} past the end of the "
        f"file (0x{cut:X}): the file was cut short; network paths show IP addresses and port "
        "numbers instead of the host and service names lost."
    )
    assert trace.warnings == (message,)
    assert trace.truncated
    with pytest.raises(TraceFormatError) as caught:
        read_pml(path, strict=True)
    assert str(caught.value) == f"{message} Read without strict mode to keep the events anyway."
    assert read_pml_processes(path).height == 1


def test_capture_not_closed_cleanly(tmp_path):
    content = bytearray(three_events())
    struct.pack_into("<I", content, 0x234, 0)
    struct.pack_into("<5Q", content, 0x248, 0, 0, 0, 0, 0)
    trace = read_pml(write(tmp_path, "unclean.pml", bytes(content)))
    assert trace.events.height == 3
    assert trace.warnings[0].startswith(
        "unclean.pml: the header has no event index (the capture was not closed cleanly). "
        "Read 3 events up to the last intact one"
    )
    assert trace.warnings[0].endswith(
        "an unknown number of events were lost (the header does not count them)."
    )


def test_damaged_event_is_skipped_and_counted(tmp_path):
    content = bytearray(three_events())
    index_at = struct.unpack_from("<Q", content, 0x248)[0]
    struct.pack_into("<I", content, index_at + 5, len(content) + 100)  # 2nd event: nowhere
    trace = read_pml(write(tmp_path, "damaged.pml", bytes(content)))
    assert trace.events["row"].to_list() == [1, 3]
    assert trace.skipped == {"damaged event": 1}
    assert trace.skipped_rows == (f"event 2 at 0x{len(content) + 100:X}",)
    with pytest.raises(DamagedRowError) as caught:
        read_pml(tmp_path / "damaged.pml", strict=True)
    assert str(caught.value) == (
        f"damaged.pml: event 2 at 0x{len(content) + 100:X}: the event's header or details lie "
        "outside the file or name no event class: the event is damaged. Read without strict "
        "mode to skip damaged events."
    )


def test_error_no_files(tmp_path):
    with pytest.raises(TraceFormatError, match=r"^read_pml: no files given"):
        read_pml([])


def test_error_missing_file(tmp_path):
    with pytest.raises(TraceFormatError, match=r"^nothing\.pml: no such file"):
        read_pml(tmp_path / "nothing.pml")
