"""Handle lifetimes from CreateFile/CloseFile pairs: the rule stated in handles.py."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import Story
from traceaudit.analysis.handles import handles

DLL = r"C:\t\a.dll"


def test_open_and_close_make_one_handle():
    story = Story().open_(0, 1, DLL, process="a.exe").close(5, 1, DLL)
    h = handles(story.events())
    assert h.height == 1
    row = h.row(0, named=True)
    assert (row["open_row"], row["close_row"]) == (1, 2)
    assert not row["open_before_capture"] and not row["open_at_end"]


def test_paths_compare_case_insensitively():
    story = Story().open_(0, 1, DLL).close(5, 1, DLL.upper())
    assert handles(story.events())["close_row"].to_list() == [2]


def test_nested_opens_close_last_in_first_out():
    story = (
        Story()
        .open_(0, 1, DLL, access="w", share="r")
        .open_(1, 1, DLL, access="a")
        .close(2, 1, DLL)
        .close(9, 1, DLL)
    )
    h = handles(story.events()).sort("open_row")
    assert h.select("open_row", "close_row").rows() == [(1, 4), (2, 3)]


def test_same_path_in_two_processes_pairs_per_process():
    story = Story().open_(0, 1, DLL).open_(1, 2, DLL).close(2, 1, DLL).close(3, 2, DLL)
    h = handles(story.events()).sort("pid")
    assert h.select("pid", "open_row", "close_row").rows() == [(1, 1, 3), (2, 2, 4)]


def test_close_without_open_is_a_handle_open_before_capture():
    story = Story().close(3, 7, DLL, process="MsMpEng.exe")
    row = handles(story.events()).row(0, named=True)
    assert row["opened"] is None and row["open_before_capture"]
    assert row["process"] == "MsMpEng.exe"


def test_open_without_close_is_still_open_at_end():
    row = handles(Story().open_(0, 1, DLL).events()).row(0, named=True)
    assert row["closed"] is None and row["open_at_end"]


def test_failed_open_makes_no_handle():
    story = Story().fail_open(0, 1, DLL).close(3, 2, DLL)
    h = handles(story.events())
    assert h["open_before_capture"].to_list() == [True]


def test_file_object_pairs_exactly_across_processes_and_names():
    # ETW: the same FILE_OBJECT pairs even when the close names the file differently.
    story = Story().open_(0, 1, DLL).close(5, 1, r"C:\t\renamed.dll")
    events = story.events().with_columns(file_object=pl.lit(0xFFFF8001, dtype=pl.UInt64))
    h = handles(events)
    assert h.select("open_row", "close_row").rows() == [(1, 2)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([1, 2]), st.sampled_from(["a", "b"]), st.booleans()), max_size=40
    )
)
def test_handles_never_close_before_they_open(steps):
    story = Story()
    for i, (pid, name, is_open) in enumerate(steps):
        path = rf"C:\d\{name}"
        story.open_(i, pid, path) if is_open else story.close(i, pid, path)
    if not steps:
        return
    h = handles(story.events())
    both = h.filter(pl.col("opened").is_not_null() & pl.col("closed").is_not_null())
    assert (both["closed"] >= both["opened"]).all()
    # every open and every close is used exactly once
    opens = sum(1 for s in steps if s[2])
    closes = len(steps) - opens
    assert h["open_row"].drop_nulls().len() == opens
    assert h["close_row"].drop_nulls().len() == closes
