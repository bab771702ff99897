"""The compiled reader of Procmon-shaped CSV bodies (procmon_text.quoted) against polars.

Whenever :func:`read_quoted` reads a body (it gives None for any other shape, and the
reader then uses polars), its columns must be what ``polars.read_csv`` reads with the
reader's options: on every corpus CSV (through ``load_trace``, with the fast path and
without it), on generated bodies (fields with quotes, delimiters, CRs and non-ASCII text,
any delimiter and line end), and on bodies damaged in the ways Procmon exports get
damaged, which it must refuse. The body is read in two or more parts on two cores; the
tests also force many small parts.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal, assert_series_equal

from locations import CORPUS_CSVS
from same import assert_same_trace
from threads import record_thread_starts
from traceaudit.formats import load_trace, open_batches
from traceaudit.formats.procmon_text import csv_read, quoted
from traceaudit.formats.procmon_text.quoted import read_quoted

pytestmark = pytest.mark.skipif(not quoted.available(), reason="numba missing or switched off")


def polars_columns(body: bytes, width: int, delimiter: str, columns: list[int]) -> pl.DataFrame:
    """What the CSV reader's polars path reads from ``body`` (after a header line)."""
    return pl.read_csv(
        b"header\n" + body,
        has_header=False,
        skip_rows=1,
        separator=delimiter,
        quote_char='"',
        schema={f"c{i}": pl.String for i in range(width)},
        empty_string_is_null=True,
        raise_if_empty=False,
        columns=columns,
    )


def fast_columns(
    body: bytes, width: int, delimiter: str, columns: list[int]
) -> pl.DataFrame | None:
    data = np.frombuffer(b"header\n" + body, dtype=np.uint8)
    read = read_quoted(data, len(b"header\n"), width, delimiter, columns)
    if read is None:
        return None
    return pl.DataFrame(
        {f"c{i}": read[i] for i in columns}, schema={f"c{i}": pl.String for i in columns}
    )


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Bodies of any size read in parts of about 64 bytes, the parts on two cores."""
    monkeypatch.setattr(quoted, "_TWO_HALVES", 1)
    monkeypatch.setattr(quoted, "_PART_BYTES", 64)
    monkeypatch.setattr(quoted, "cores", lambda: 2)
    yield


def quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def body_of(rows: list[list[str]], delimiter: str, line_end: str, last_end: bool) -> bytes:
    lines = [delimiter.join(quote(field) for field in row) for row in rows]
    text = line_end.join(lines) + (line_end if last_end and lines else "")
    return text.encode("utf-8")


_FIELD = st.text(
    alphabet=st.sampled_from(list('abcXYZ019 ."",;\t\r\\:é日\U0001f600') + ["\x00"]), max_size=30
)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, int, str, list[int]]:
    width = draw(st.integers(1, 6))
    rows = draw(st.lists(st.lists(_FIELD, min_size=width, max_size=width), max_size=25))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    body = body_of(rows, delimiter, draw(st.sampled_from(["\r\n", "\n"])), draw(st.booleans()))
    columns = sorted(draw(st.sets(st.integers(0, width - 1), min_size=1)))
    return body, width, delimiter, columns


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bodies())
@example(case=(b'"a","b"\r\n"c","d"\r\n', 2, ",", [0, 1]))
@example(case=(b'"","x"\r\n"""","y""z"\r\n', 2, ",", [0, 1]))
@example(case=(b'"exactly twelve","thirteen byte"\n', 2, ",", [0, 1]))
def test_a_procmon_shaped_body_reads_as_polars_reads_it(
    case: tuple[bytes, int, str, list[int]],
) -> None:
    body, width, delimiter, columns = case
    fast = fast_columns(body, width, delimiter, columns)
    assert fast is not None
    assert_frame_equal(fast, polars_columns(body, width, delimiter, columns))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bodies())
def test_many_small_parts_on_two_cores_read_the_same(
    case: tuple[bytes, int, str, list[int]],
) -> None:
    body, width, delimiter, columns = case
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quoted, "_TWO_HALVES", 1)
        patch.setattr(quoted, "_PART_BYTES", 64)
        patch.setattr(quoted, "cores", lambda: 2)
        fast = fast_columns(body, width, delimiter, columns)
    assert fast is not None
    assert_frame_equal(fast, polars_columns(body, width, delimiter, columns))


_DAMAGE = st.lists(
    st.tuples(st.integers(0, 1 << 16), st.sampled_from(list(b'",;\t\r\n\x00\x80\xc3\xffa'))),
    max_size=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bodies(), damage=_DAMAGE, cut=st.none() | st.integers(0, 1 << 16))
def test_a_damaged_body_is_refused_or_read_as_polars_reads_it(
    case: tuple[bytes, int, str, list[int]], damage: list[tuple[int, int]], cut: int | None
) -> None:
    """Bytes flipped and the body cut anywhere: the reader never reads outside it (the
    tests run it bounds-checked) and what it accepts, polars reads the same."""
    body, width, delimiter, columns = case
    data = bytearray(body)
    for at, byte in damage:
        if data:
            data[at % len(data)] = byte
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    fast = fast_columns(bytes(data), width, delimiter, columns)
    if fast is not None:
        assert_frame_equal(fast, polars_columns(bytes(data), width, delimiter, columns))


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'"a",b\r\n', "a field not quoted"),
        (b'"a","b"x\r\n', "text after a closing quote"),
        (b'"a","b\nc"\r\n', "a line feed inside a field"),
        (b'"a","b"\r"c","d"\r\n', "a lone CR ends a row"),
        (b'"a","b"\r\n\r\n"c","d"\r\n', "a blank line"),
        (b'"a","b","c"\r\n', "a row with more fields"),
        (b'"a"\r\n', "a row with fewer fields"),
        (b'"a","b"\r\n"c","d', "cut inside a field"),
        (b'"a","b"\r\n"c",', "cut after a delimiter"),
        (b'"a","\xff"\r\n', "bytes that are not UTF-8"),
        (b'"a","\xed\xa0\x80"\r\n', "an encoded surrogate"),
        (b'"a","\xc0\xaf"\r\n', "an overlong form"),
        (b'"a","\xe6\x97"\r\n', "a character cut short"),
    ],
)
def test_a_body_in_another_shape_is_left_to_polars(body: bytes, why: str) -> None:
    assert fast_columns(body, 2, ",", [0, 1]) is None, why


def test_a_split_inside_a_field_is_refused_not_misread(small_parts: None) -> None:
    rows = [["x" * 40, "first\nline"], ["y", "z"]] * 4
    body = "\r\n".join(",".join(quote(f) for f in row) for row in rows).encode()
    assert fast_columns(body, 2, ",", [0, 1]) is None


def test_rows_past_the_first_guess_grow_the_views() -> None:
    # Long rows first (the guess is made from the first 64 KiB), then very many short ones.
    rows = [["L" * 2000, "x"]] * 40 + [["s", ""]] * 50_000
    body = body_of(rows, ",", "\r\n", True)
    fast = fast_columns(body, 2, ",", [0, 1])
    assert fast is not None and fast.height == 50_040
    assert_frame_equal(fast, polars_columns(body, 2, ",", [0, 1]))


def test_an_empty_body_has_no_rows() -> None:
    fast = fast_columns(b"", 3, ",", [0, 2])
    assert fast is not None and fast.height == 0
    assert fast.schema == pl.Schema({"c0": pl.String, "c2": pl.String})


def test_a_long_body_is_read_on_two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    started = record_thread_starts(monkeypatch)
    monkeypatch.setattr(quoted, "cores", lambda: 2)
    rows = [
        [f"{i}", f"C:\\dir\\file{i}.txt", "Desired Access: Read, Disposition: Open"]
        for i in range(30_000)
    ]
    body = body_of(rows, ",", "\r\n", True)
    assert len(body) >= quoted._TWO_HALVES
    fast = fast_columns(body, 3, ",", [0, 1, 2])
    assert started
    assert fast is not None
    assert_series_equal(fast["c1"], polars_columns(body, 3, ",", [0, 1, 2])["c1"])


# --- whole reads ----------------------------------------------------------------------


def _without_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_read._Table, "_quoted", lambda self, projection: None)


def test_every_corpus_csv_reads_the_same_with_and_without_it(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[str] = []
    real = csv_read._Table._quoted

    def spy(self: csv_read._Table, projection: list[int]) -> pl.DataFrame | None:
        frame = real(self, projection)
        if frame is not None:
            taken.append(self.input.name)
        return frame

    for name in CORPUS_CSVS:
        source = corpus / name
        paths = [source]
        if source.suffix == ".gz":  # and decompressed: the memory-mapped path
            plain = tmp_path / source.name.removesuffix(".gz")
            with gzip.open(source) as packed, plain.open("wb") as out:
                shutil.copyfileobj(packed, out)
            paths.append(plain)
        for path in paths:
            with monkeypatch.context() as patch:
                patch.setattr(csv_read._Table, "_quoted", spy)
                fast = load_trace(path)
            with monkeypatch.context() as patch:
                _without_fast_path(patch)
                slow = load_trace(path)
            assert_same_trace(fast, slow, name)
    # Procmon's own exports take it; Excel re-saves and damaged files do not.
    assert {"Tests64bit.csv", "Tests64bit.csv.gz", "UTC64Process.csv"} <= set(taken)
    assert "excel-resaved.csv" not in taken


def test_a_damaged_row_is_reported_at_its_line_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    header = '"Time of Day","Process Name","PID","Operation","Path","Result","Detail"'
    row = '"10:00:0{n}.0000000 AM","a.exe","{pid}","CreateFile","C:\\\\x","SUCCESS",""'
    lines = [header] + [row.format(n=n, pid="12" if n != 3 else "x1") for n in range(6)]
    path = tmp_path / "one-bad-pid.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8-sig"))
    fast = load_trace(path)
    _without_fast_path(monkeypatch)
    slow = load_trace(path)
    assert fast.skipped_rows == slow.skipped_rows == ("line 5",)
    assert_frame_equal(fast.events, slow.events)


def test_every_corpus_csv_reads_the_same_in_batches_with_and_without_it(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def batches_of(path: Path) -> tuple[pl.DataFrame, list[str], dict[str, int]]:
        reading = open_batches(path, batch_rows=2_000)
        frames = list(reading.frames)
        return pl.concat(frames), list(reading.warnings), dict(reading.skipped)

    taken: list[str] = []
    real = csv_read._RangeTable._quoted

    def spy(self: csv_read._RangeTable, projection: list[int]) -> pl.DataFrame | None:
        frame = real(self, projection)
        if frame is not None:
            taken.append(self.input.name)
        return frame

    for name in CORPUS_CSVS:
        with monkeypatch.context() as patch:
            patch.setattr(csv_read._RangeTable, "_quoted", spy)
            fast = batches_of(corpus / name)
        with monkeypatch.context() as patch:
            _without_fast_path(patch)
            slow = batches_of(corpus / name)
        assert_frame_equal(fast[0], slow[0])
        assert fast[1:] == slow[1:], name
    assert taken.count("Tests64bit.csv.gz") > 1  # every batch of Procmon's own export
