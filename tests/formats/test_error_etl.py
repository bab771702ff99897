"""Damaged, truncated and unsuitable ETL files: clear errors and counted warnings.

Fixtures are written by ``tests/etl_writer.py`` and then damaged at a known place; the
messages are asserted whole where they are the user's only guide.
"""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import Story
from etl_writer import BUFFER_SIZE, EtlWriter, compress, write_etl
from traceaudit.errors import DamagedRowError, TraceFormatError
from traceaudit.formats import load_trace
from traceaudit.formats.etl.reader import read_etl
from traceaudit.formats.etl.xpress import XpressError, decompress_python


def story_file(tmp_path, name="trace.etl", **options):
    story = Story()
    for i in range(400):  # enough events for several buffers
        story.open_(ms=i, pid=3, process="a.exe", path=rf"C:\data\file{i % 7}.txt")
        story.close(ms=i + 0.5, pid=3, process="a.exe", path=rf"C:\data\file{i % 7}.txt")
    return write_etl(story.events(), tmp_path / name, **options)


def test_error_not_an_etl_when_forced(tmp_path):
    path = tmp_path / "notes.etl"
    path.write_bytes(b"this is not a trace" * 20)
    with pytest.raises(TraceFormatError) as caught:
        load_trace(path, format="etw-etl")
    assert str(caught.value) == (
        "notes.etl: at 0x0: not an ETW trace: the first buffer does not start with the "
        "logfile header event. Give the .etl file written by xperf, WPR, logman or PerfView."
    )


def test_error_too_short(tmp_path):
    path = tmp_path / "tiny.etl"
    path.write_bytes(bytes(40))
    with pytest.raises(TraceFormatError) as caught:
        load_trace(path, format="etw-etl")
    assert str(caught.value) == (
        "tiny.etl: 40 bytes is too short for an ETW trace (an .etl file starts with a 72-byte "
        "buffer header and the logfile header event). The file is truncated or empty: record "
        "it again."
    )


def test_error_trace_without_file_io(tmp_path):
    writer = EtlWriter(start_filetime=133_000_000_000_000_000)
    writer.system(
        writer.start_filetime + 10, 5, 3, 3, struct.pack("<II", 4, 8) + bytes(64), tid=8, pid=4
    )
    path = writer.write(tmp_path / "threads.etl")
    with pytest.raises(TraceFormatError) as caught:
        read_etl(path)
    assert str(caught.value) == (
        "threads.etl: an ETW trace without file I/O: it holds 2 events from logger "
        "'traceaudit test' and none of them is a FileIo (NT Kernel Logger) or "
        "Microsoft-Windows-Kernel-File event, so there is no open, close, rename or delete to "
        "analyse. Record file activity with its operation starts and completions, as "
        "administrator: 'xperf -on PROC_THREAD+LOADER+FILE_IO+FILE_IO_INIT+DISK_IO' … 'xperf -d "
        "trace.etl'; or 'traceaudit capture-profile --wpr > traceaudit.wprp', 'wpr -start "
        "traceaudit.wprp' … 'wpr -stop trace.etl'; or, without the kernel logger, "
        "Microsoft-Windows-Kernel-File with keywords 0xCF0 (FILENAME, FILEIO, OP_END, CREATE, "
        "DELETE_PATH, RENAME_SETLINK_PATH) through logman. 'traceaudit capture-profile "
        "--xperf/--logman' prints each setup in full."
    )


def _damage_record(path, buffer_index: int) -> int:
    """Give the first record of a buffer an impossible size; returns the buffer offset."""
    data = bytearray(path.read_bytes())
    offset = BUFFER_SIZE * buffer_index
    data[offset + 0x48 : offset + 0x4A] = struct.pack("<H", 0xFFF0)  # EVENT_HEADER size
    path.write_bytes(bytes(data))
    return offset


def test_damaged_buffer_is_skipped_with_a_warning(tmp_path):
    path = story_file(tmp_path)
    whole = read_etl(path).events.height
    offset = _damage_record(path, 2)
    trace = read_etl(path)
    assert 0 < trace.events.height < whole
    assert trace.skipped == {"damaged buffer": 1}
    assert trace.warnings[0] == (
        f"trace.etl: 1 damaged buffer skipped (first: buffer at 0x{offset:X}, record at "
        "body offset 0x0: marker 0xC013FFF0, size 65520); the events in it are lost."
    )
    with pytest.raises(DamagedRowError, match=r"damaged trace: buffer at 0x20000, record"):
        read_etl(path, strict=True)


def test_trace_cut_short_keeps_the_whole_buffers(tmp_path):
    path = story_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: 3 * BUFFER_SIZE + 1000])
    trace = read_etl(path)
    assert trace.events.height > 0
    assert any(
        "the file ends inside the buffer at 0x30000 (65,536 bytes long, 1,000 present): the "
        "trace was cut short; the events after it are lost." in w
        for w in trace.warnings
    )


def test_buffer_that_does_not_decompress_is_skipped(tmp_path):
    path = story_file(tmp_path, compressed=True)
    data = bytearray(path.read_bytes())
    first = struct.unpack_from("<I", data, 0)[0]
    second = struct.unpack_from("<I", data, first)[0]
    data[first + 0x48 : first + second] = b"\xff" * (second - 0x48)  # garbage body
    path.write_bytes(bytes(data))
    trace = read_etl(path)
    assert trace.skipped == {"damaged buffer": 1}
    assert f"buffer at 0x{first:X}: does not decompress" in trace.warnings[0]


def test_xpress_decoder_refuses_damaged_data():
    packed = compress(b"abcabcabcabc" * 50)
    with pytest.raises(XpressError, match="expands to"):
        decompress_python(packed, 10_000)
    with pytest.raises(XpressError):
        decompress_python(b"\xff\xff\xff\xff\x08\x00", 100)  # a match before any output


def test_xpress_decoder_does_not_expand_a_hostile_length():
    """A 41-byte body whose 32-bit match length is 2 GiB gives its 100 bytes at once
    (it used to build the whole 2 GiB copy first: 4.3 GB peak, seconds)."""
    flags = (1 << 30) | ((1 << 30) - 1)  # a literal, a match, then end-of-data matches
    body = struct.pack("<I", flags) + b"a" + struct.pack("<HBBHI", 7, 15, 255, 0, 0x7FFFFFF0)
    tracemalloc.start()
    try:
        assert decompress_python(body, 100) == b"a" * 100
        assert tracemalloc.get_traced_memory()[1] < 10_000_000
    finally:
        tracemalloc.stop()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=5000))
def test_xpress_decoder_on_random_bytes_gives_the_size_or_xpress_error(body, size):
    try:
        out = decompress_python(body, size)
    except XpressError:
        return
    assert len(out) == size


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=4))
def test_xpress_decoder_on_damaged_compressed_data(data, cut):
    packed = bytearray(compress(data))
    if packed and cut:
        packed[len(packed) // (cut + 1)] ^= 0x5A  # flip bits in one byte
    try:
        out = decompress_python(bytes(packed), len(data))
    except XpressError:
        return
    assert len(out) == len(data)
