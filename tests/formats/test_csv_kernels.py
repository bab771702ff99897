"""The compiled Time of Day and Detail loops (procmon_text.kernels) give the same frames as
the polars parsers they stand in for: on every corpus CSV, on odd and localized values,
and on generated strings.

Each comparison runs the reader twice in one process, once with the loops and once with
``kernels.available`` switched off (what ``TRACEAUDIT_NO_JIT=1`` does for the whole
process). Without numba the comparisons are skipped; the rest of the suite then covers
the polars path alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal, assert_series_equal

from locations import CORPUS_CSVS
from traceaudit.formats import load_trace, parse_detail
from traceaudit.formats.procmon_text import kernels
from traceaudit.formats.procmon_text.detail import CREATE_OPERATIONS, IO_OPERATIONS, Operations
from traceaudit.formats.procmon_text.rows import _integers
from traceaudit.formats.procmon_text.times import parse_durations, parse_time_of_day
from traceaudit.schema import ACCESS_BITS, CREATE_OPTION_BITS

T = TypeVar("T")

needs_jit = pytest.mark.skipif(not kernels.available(), reason="numba missing or switched off")
pytestmark = needs_jit


@contextmanager
def polars_only() -> Iterator[None]:
    """The readers with the compiled loops switched off."""
    available = kernels.available
    kernels.available = lambda: False  # type: ignore[assignment]
    try:
        yield
    finally:
        kernels.available = available  # type: ignore[assignment]


def both(run: Callable[[], T]) -> tuple[T, T]:
    """``run()`` with the compiled loops, then without."""
    compiled = run()
    with polars_only():
        plain = run()
    return compiled, plain


def same_detail(operations: list[str], details: list[str | None]) -> None:
    frame = pl.DataFrame(
        {"operation": operations, "detail": details},
        schema={"operation": pl.String, "detail": pl.String},
    )
    compiled, plain = both(lambda: parse_detail(frame))
    assert_frame_equal(compiled, plain)


def same_times(values: list[str | None], sample: list[str]) -> None:
    series = pl.Series(values, dtype=pl.String)
    compiled, plain = both(lambda: parse_time_of_day(series, sample=sample))
    assert_frame_equal(compiled, plain)


# --------------------------------------------------------------------------- corpus


@pytest.mark.parametrize("name", CORPUS_CSVS)
def test_corpus_csv_reads_alike(corpus: Path, name: str) -> None:
    path = corpus / name
    if not path.exists():
        pytest.skip(f"{name} not in the corpus")
    compiled, plain = both(lambda: load_trace(path))
    assert_frame_equal(compiled.events, plain.events)
    assert compiled.warnings == plain.warnings
    assert compiled.skipped == plain.skipped


# ------------------------------------------------------------------------ time of day

AM_PM = ["7:19:37.0147934 AM", "12:00:00.0000000 PM"]
DOT_24H = ["19:19:37.0147934", "07:00:00.0000000"]
COMMA_24H = ["21:26:00,8032648", "9:00:00,0000000"]

ODD_TIMES = [
    "12:00:00.0000001 AM",  # 12 AM is hour 0
    "12:59:59.9999999 PM",
    "0:05:00.0000000 PM",  # hour 0 with a marker stays 0
    "13:00:00.0000000 PM",  # hours above 12 are kept as they are
    "23:59:59.9999999 AM",
    "24:00:00.0000000 AM",  # no such hour: null
    "7:60:00.0000000 AM",
    "7:00:60.0000000 AM",
    "7:19:37x0147934 AM",  # any character before the fraction (the fast path's rule)
    "7:19:37.0147934xAM",
    "7:19:37.014793a AM",
    "7:19:37.0147934 am",
    "7:19:37.0147934  AM",
    " 7:19:37.0147934 AM",
    "7:19:37.01479345 AM",
    "7:19:37.014793 AM",
    "7:19:37,0147934 PM",
    "07:19:37.0147934 PM",
    "7:19:37 AM",
    "19:19:37.0147934",
    "19:19:37,0147934",
    "47:57.9",
    "",
    None,
    "٧:19:37.0147934 AM",  # a non-ASCII digit
    "上午 01:09:44.8222664",
]


@pytest.mark.parametrize("sample", [AM_PM, DOT_24H, COMMA_24H], ids=["ampm", "dot", "comma"])
def test_odd_times_read_alike(sample: list[str]) -> None:
    same_times([*sample, *ODD_TIMES], sample)


_TIME_CHARS = st.sampled_from(list("0123456789:.,; APMapm\u00a0٧上午"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.one_of(
            st.text(_TIME_CHARS, max_size=22),
            st.builds(
                lambda h, m, s, sep, f, mark: f"{h}:{m:02d}:{s:02d}{sep}{f:07d}{mark}",
                st.integers(0, 30),
                st.integers(0, 70),
                st.integers(0, 70),
                st.sampled_from([".", ",", ":"]),
                st.integers(0, 9_999_999),
                st.sampled_from(["", " AM", " PM", "AM", " XM"]),
            ),
            st.none(),
        ),
        max_size=30,
    ),
    sample=st.sampled_from([AM_PM, DOT_24H, COMMA_24H]),
)
def test_generated_times_read_alike(values: list[str | None], sample: list[str]) -> None:
    same_times(values, sample)


# --------------------------------------------------------------------------- Duration

ODD_DURATIONS = [
    "0.0000112",
    "0,0000112",
    "12",
    "1.5",
    "1.",
    ".5",
    "-0.1",
    "+0.1",
    " 0.1",
    "0.1 ",
    "0.123456789",
    "0.1234567891",
    None,
    "",
    "1e3",
    "999999999.999999999",
    "1000000000.0",
    "9223372036.0",
    "9223372037.0",  # too long for nanoseconds: null
    "1,5,3",
    "0.1.2",
    "٣.5",
    "00001.5",
]


def test_odd_durations_read_alike() -> None:
    values = pl.Series("duration", ODD_DURATIONS, dtype=pl.String)
    compiled, plain = both(lambda: parse_durations(values))
    assert_series_equal(compiled, plain)
    assert compiled[0] == timedelta(microseconds=11.2)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.text(st.sampled_from(list("0123456789.,- e")), max_size=14), st.none()))
)
def test_generated_durations_read_alike(values: list[str | None]) -> None:
    series = pl.Series("duration", values, dtype=pl.String)
    compiled, plain = both(lambda: parse_durations(series))
    assert_series_equal(compiled, plain)


# ----------------------------------------------------------------------------- Detail

CREATE = (
    "Desired Access: Generic Read, Synchronize, Disposition: Open, Options: Synchronous IO "
    "Non-Alert, Non-Directory File, Attributes: n/a, ShareMode: Read, Write, "
    "AllocationSize: n/a, OpenResult: Opened"
)

ODD_DETAILS: list[tuple[str, str | None]] = [
    ("CreateFile", CREATE),
    ("CreateFile", CREATE.replace("Opened", "<unknown>")),
    ("CreateFile", CREATE.replace(", OpenResult: Opened", "")),
    (
        "CreateFile",
        CREATE.replace("Options: Synchronous IO Non-Alert, Non-Directory File", "Options: "),
    ),
    ("CreateFile", CREATE.replace("Generic Read, Synchronize", "")),
    ("CreateFile", CREATE.replace("Generic Read", "0x1F01FF")),
    ("CreateFile", CREATE.replace("Generic Read", "Read Data/List Directory")),
    ("CreateFile", CREATE.replace("Generic Read", "Read Data/Something Else")),
    ("CreateFile", CREATE.replace("Generic Read", " Generic Read ")),
    ("CreateFile", CREATE.replace("Generic Read", "Generic Read, ")),
    ("CreateFile", CREATE.replace("Generic Read", "Unheard Of Right")),
    ("CreateFile", CREATE.replace("ShareMode: Read, Write", "ShareMode: None")),
    ("CreateFile", CREATE.replace("ShareMode: Read, Write", "ShareMode: Read, Write, Delete")),
    ("CreateFile", CREATE.replace("Disposition: Open", "Disposition: OpenIf")),
    ("CreateFile", CREATE.replace("Disposition: Open", "Disposition:  Open")),
    ("CreateFile", CREATE.replace("Disposition: Open", "Disposition: ")),
    ("CreateFile", CREATE.replace("Disposition: Open", "Disposition: Weird")),
    ("CreateFile", CREATE + ", Impersonating: HOST\\user"),
    ("CreateFile", CREATE + ", Disposition: Create"),  # a key twice: the first counts
    ("CreateFile", "Disposition: Open, Desired Access: Read Data, OpenResult: Created"),
    ("CreateFile", "Desired Access: Read Data, Extra: Thing, ShareMode: Read"),
    ("CreateFile", "Desired Access:Read Data"),
    ("CreateFile", "Options: Directory, Delete On Close, Disposition: Open"),
    ("CreateFile", ", Desired Access: Read Data"),
    ("CreateFile", ""),
    ("CreateFile", None),
    ("CreatePipe", CREATE),
    ("ReadFile", "Offset: 57,344, Length: 4,096, Priority: Normal"),
    ("ReadFile", "Offset: 13 372 416, Length: 16 384, I/O Flags: Non-cached"),
    ("ReadFile", "Offset: 18\u00a0716, Length: 4\u00a0642"),
    ("ReadFile", "Offset: 18\u202f716, Length: 4\u2019642"),
    ("ReadFile", "Offset: 1'234, Length: 4.096"),
    ("ReadFile", "Offset: +5, Length: -1"),
    ("ReadFile", "Offset: 12345678901234567890, Length: 123456789012345678"),
    ("ReadFile", "Offset: 1234567890123456789, Length: 999999999999999999"),
    ("ReadFile", "Offset: , Length: ,"),
    ("ReadFile", "Offset: ٣, Length: 4"),
    ("ReadFile", "Length: 4,096, Offset: 8,192"),
    ("ReadFile", "Offset: 8,192"),
    ("WriteFile", "Offset: 0, Length: 4,096, I/O Flags: Write Through, Priority: Normal"),
    ("LockFile", "Exclusive: True, Offset: 2,147,483,538, Length: 1, Fail Immediately: True"),
    ("UnlockFileSingle", "Offset: 0, Length: 1"),
    ("SetRenameInformationFile", "ReplaceIfExists: False, FileName: C:\\a\\b, c.txt"),
    ("SetRenameInformationFile", "ReplaceIfExists: True, FileName: C:\\x, FileName: y"),
    ("SetRenameInformationFile", "ReplaceIfExists: Maybe, FileName: C:\\x"),
    ("SetRenameInformationFile", "FileName: C:\\x"),
    ("SetRenameInformationFile", "ReplaceIfExists: True, FileName: "),
    (
        "SetRenameInformationEx",
        "Flags: FILE_RENAME_REPLACE_IF_EXISTS | FILE_RENAME_POSIX_SEMANTICS, FileName: C:\\x",
    ),
    ("SetRenameInformationEx", "Flags: 0x3, FileName: C:\\é\u00a0ü"),
    ("SetLinkInformationFile", "ReplaceIfExists: True, FileName: C:\\link"),
    ("SetDispositionInformationFile", "Delete: True"),
    ("SetDispositionInformationFile", "Delete: False"),
    ("SetDispositionInformationFile", "Delete: true"),
    (
        "SetDispositionInformationEx",
        "Flags: FILE_DISPOSITION_DELETE, FILE_DISPOSITION_POSIX_SEMANTICS",
    ),
    ("SetDispositionInformationEx", "Flags: 0x0"),
    ("CloseFile", ""),
    ("RegOpenKey", "Desired Access: Read"),
]


def test_odd_details_read_alike() -> None:
    operations = [operation for operation, _ in ODD_DETAILS]
    details = [detail for _, detail in ODD_DETAILS]
    same_detail(operations, details)
    # Many rows of each, so every family takes its per-distinct and its per-row path.
    same_detail(operations * 40, details * 40)


_KEYS = [
    "Desired Access",
    "Disposition",
    "Options",
    "Attributes",
    "ShareMode",
    "AllocationSize",
    "Impersonating",
    "OpenResult",
    "Offset",
    "Length",
    "I/O Flags",
    "Priority",
    "Exclusive",
    "ReplaceIfExists",
    "FileName",
    "Flags",
    "Delete",
    "Unknown",
]
_WORDS = [
    *ACCESS_BITS,
    *CREATE_OPTION_BITS,
    "Read",
    "Write",
    "Delete",
    "None",
    "Open",
    "OpenIf",
    "Opened",
    "Created",
    "True",
    "False",
    "0x10",
    "n/a",
    "57,344",
    "4.096",
    "1\u00a0024",
    "",
    " ",
    ",",
    ", ",
    ": ",
    "é",
    "FILE_RENAME_REPLACE_IF_EXISTS",
    "FILE_DISPOSITION_DELETE",
]
_VALUE = st.lists(st.sampled_from(_WORDS), max_size=3).map(", ".join)
_PAIR = st.tuples(st.sampled_from(_KEYS), _VALUE).map(lambda kv: f"{kv[0]}: {kv[1]}")
_DETAIL = st.one_of(
    st.lists(_PAIR, max_size=6).map(", ".join),
    st.text(st.sampled_from(list("Offset: Length,0123456789 .\u00a0ReplaceIfExists")), max_size=40),
    st.none(),
)
_OPERATION = st.sampled_from(
    [
        *CREATE_OPERATIONS,
        *IO_OPERATIONS,
        "SetRenameInformationFile",
        "SetRenameInformationEx",
        "SetDispositionInformationFile",
        "SetDispositionInformationEx",
        "QueryOpen",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(_OPERATION, _DETAIL), max_size=40), repeat=st.sampled_from([1, 70]))
@example(rows=[("CreateFile", CREATE)], repeat=70)
def test_generated_details_read_alike(rows: list[tuple[str, str | None]], repeat: int) -> None:
    same_detail([op for op, _ in rows] * repeat, [detail for _, detail in rows] * repeat)


# ------------------------------------------------------ PIDs, Event Class, operations


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(st.sampled_from(list("0123456789+- _\u0663")), max_size=21),
            st.none(),
        )
    )
)
def test_generated_integers_read_alike(values: list[str | None]) -> None:
    series = pl.Series("pid", values, dtype=pl.String)
    assert_series_equal(_integers(series), series.str.to_integer(strict=False))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=6), st.none())))
def test_generated_event_classes_padded(values: list[str | None]) -> None:
    """``padded`` is False only where stripping would change nothing."""
    series = pl.Series("event_class", values, dtype=pl.String)
    if kernels.padded(series) is False:
        assert_series_equal(series.str.strip_chars(), series)


def test_odd_columns_read_alike(tmp_path: Path) -> None:
    """PIDs, TIDs and Event Classes the loops do not read (signs, spaces, padded or
    empty classes, a PID too long) read as in polars."""
    header = '"Time of Day","Process Name","PID","Operation","Path","Result","Detail","TID","Event Class"'
    rows = [
        ("+12", "7", " File System "),
        ("-3", "0012", "Registry"),
        ("1234567890123456789", " 5", ""),
        ("42", "\u0663", "\u00a0Network"),
        ("7", "9", "File System"),
    ]
    lines = [header] + [
        f'"7:19:37.0147934 AM","a.exe","{pid}","CreateFile","C:\\x","SUCCESS","","{tid}","{cls}"'
        for pid, tid, cls in rows
    ]
    path = tmp_path / "odd.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    compiled, plain = both(lambda: load_trace(path))
    assert_frame_equal(compiled.events, plain.events)
    assert compiled.skipped == plain.skipped


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from(["CreateFile", "ReadFile", "", "é"]), st.text()), max_size=60
    )
)
def test_generated_operation_codes(values: list[str]) -> None:
    """The loop's names are the distinct values in order of first sight, and each row's
    code names its value; Operations answers as on the polars path."""
    series = pl.Series("operation", values, dtype=pl.String)
    found = kernels.codes(series)
    assert found is not None
    names, codes = found
    assert names.to_list() == series.unique(maintain_order=True).to_list()
    assert names.gather(codes).to_list() == values
    compiled, plain = both(lambda: Operations.of(series))
    tests = [lambda op: op.is_in(CREATE_OPERATIONS), lambda op: op.str.starts_with("Read")]
    for one, other in zip(compiled.rows_of(tests, None), plain.rows_of(tests, None), strict=True):
        assert one.to_list() == other.to_list()


def test_operation_codes_leave_many_names_and_nulls_to_polars() -> None:
    many = pl.Series([f"Op{i}" for i in range(5000)], dtype=pl.String)
    assert kernels.codes(many) is None
    assert kernels.codes(pl.Series(["CreateFile", None], dtype=pl.String)) is None
    compiled, plain = both(lambda: Operations.of(many))
    assert compiled.names.to_list() == plain.names.to_list()
