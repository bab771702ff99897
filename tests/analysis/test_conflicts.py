"""Conflicts and their blockers under the Windows rules stated in conflicts.py."""

from __future__ import annotations

import random

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import Story
from traceaudit.analysis.conflicts import find_conflicts
from traceaudit.analysis.handles import handles

TMP = r"C:\Users\me\AppData\Local\uv\cache\.tmpAbC123"
DLL = TMP + r"\numpy\libopenblas.dll"
TXT = r"C:\src\notes.txt"


def analyse(story: Story) -> pl.DataFrame:
    events = story.events()
    return find_conflicts(events, handles(events))


def blocker_paths(row: dict) -> list[str]:
    return [b["path"] for b in row["blockers"]]


def uv_rename_under_scanner() -> Story:
    return (
        Story()
        .open_(0, 10, DLL, access="w", share="rwd", process="uv.exe")
        .close(1, 10, DLL)
        .open_(2, 20, DLL, access="r", share="rwd", process="MsMpEng.exe")
        .open_(3, 10, TMP, access="ad", share="rwd")
        .rename(4, 10, TMP, r"C:\cache\numpy")
        .close(5, 10, TMP)
        .close(812, 20, DLL)
    )


def test_directory_rename_is_blocked_by_a_scanner_handle_below_it():
    row = analyse(uv_rename_under_scanner()).row(0, named=True)
    assert row["verdict"] == "blocked-by-other-process"
    assert blocker_paths(row) == [DLL]
    assert row["blockers"][0]["relation"] == "below"
    assert row["remaining_ms"] == 808.0
    assert row["decisive_process"] == "MsMpEng.exe"
    assert row["error_code"] == 5


def test_share_delete_does_not_save_a_directory_rename():
    # The scanner shares Read, Write, Delete and still blocks (the uv case).
    row = analyse(uv_rename_under_scanner()).row(0, named=True)
    assert row["blockers"][0]["share_mode"] == 7


def test_handles_closed_before_the_failure_or_on_a_sibling_are_not_blockers():
    story = (
        Story()
        .open_(0, 20, TMP + r"\old.pyd", process="MsMpEng.exe")
        .close(1, 20, TMP + r"\old.pyd")
        .open_(2, 20, TMP + r"2\other.dll")  # sibling directory .tmpAbC1232
        .open_(3, 10, TMP, access="ad", process="uv.exe")
        .rename(4, 10, TMP, r"C:\cache\numpy")
        .close(5, 10, TMP)
        .close(50, 20, TMP + r"2\other.dll")
    )
    row = analyse(story).row(0, named=True)
    assert row["n_blockers"] == 0
    assert row["verdict"] == "no-holder-permission"


def test_sharing_violation_names_the_incompatible_holder_only():
    story = (
        Story()
        .open_(0, 30, TXT, access="r", share="rw", process="SearchProtocolHost.exe")
        .open_(1, 40, TXT, access="a", share="", process="explorer.exe")  # attributes only
        .open_(2, 50, TXT, access="r", share="rwd", process="reader.exe")  # compatible
        .fail_open(3, 60, TXT, access="d", share="rwd", process="Code.exe")
        .close(9, 40, TXT)
        .close(10, 50, TXT)
        .close(120, 30, TXT)
    )
    row = analyse(story).row(0, named=True)
    assert [b["process"] for b in row["blockers"]] == ["SearchProtocolHost.exe"]
    assert row["remaining_ms"] == 117.0
    assert row["error_code"] == 32


def test_new_share_mode_that_excludes_an_existing_reader_conflicts():
    story = (
        Story()
        .open_(0, 1, TXT, access="r", share="rwd")
        .fail_open(1, 2, TXT, access="r", share="")  # exclusive open while someone reads
        .close(5, 1, TXT)
    )
    assert analyse(story)["n_blockers"].to_list() == [1]


def test_own_handle_is_a_blocker_flagged_as_own():
    story = (
        Story()
        .open_(0, 1, TXT, access="w", share="r", process="app.exe")
        .fail_open(1, 1, TXT, access="w", share="rw")
        .close(7, 1, TXT)
    )
    row = analyse(story).row(0, named=True)
    assert row["verdict"] == "blocked-by-own-handle"
    assert row["blockers"][0]["own"]


def test_permission_refusal_has_no_holder():
    story = (
        Story()
        .open_(0, 9, r"C:\x", process="other.exe")
        .fail_open(
            1, 1, r"C:\Windows\System32\drivers\etc\hosts", access="w", result="ACCESS DENIED"
        )
    )
    row = analyse(story).row(0, named=True)
    assert row["verdict"] == "no-holder-permission"
    assert row["remaining_ms"] is None


def test_sharing_violation_without_holder_in_a_filtered_capture():
    story = Story().fail_open(0, 1, TXT, process="app.exe").op(1, 1, "WriteFile", TXT)
    row = analyse(story).row(0, named=True)
    assert row["verdict"] == "no-holder-filtered"


def test_unexplained_rename_access_denied_in_single_process_capture_blames_the_filter():
    story = (
        Story()
        .open_(0, 1, TMP, access="ad", process="uv.exe")
        .rename(1, 1, TMP, r"C:\c\x")
        .close(2, 1, TMP)
    )
    assert analyse(story)["verdict"].to_list() == ["no-holder-filtered"]


def test_holder_still_open_at_end_censors_the_window():
    story = (
        Story()
        .open_(0, 20, DLL, process="CSFalconService.exe")
        .open_(1, 10, TMP, access="ad", process="uv.exe")
        .rename(2, 10, TMP, r"C:\c\x")
        .close(3, 10, TMP)
    )
    row = analyse(story).row(0, named=True)
    assert row["censored"] and row["remaining_ms"] is None
    assert row["decisive_process"] == "CSFalconService.exe"


def test_remaining_time_waits_for_the_last_blocker():
    story = (
        Story()
        .open_(0, 20, TMP + r"\a.dll", process="MsMpEng.exe")
        .open_(1, 21, TMP + r"\b.dll", process="SearchIndexer.exe")
        .open_(2, 10, TMP, access="ad", process="uv.exe")
        .rename(3, 10, TMP, r"C:\c\x")
        .close(4, 10, TMP)
        .close(30, 20, TMP + r"\a.dll")
        .close(500, 21, TMP + r"\b.dll")
    )
    row = analyse(story).row(0, named=True)
    assert row["n_blockers"] == 2
    assert row["remaining_ms"] == 497.0
    assert row["decisive_process"] == "SearchIndexer.exe"


def test_rename_onto_an_open_target_is_blocked_by_the_target_holder():
    story = (
        Story()
        .open_(0, 30, TXT, access="r", share="rwd", process="SearchProtocolHost.exe")
        .open_(1, 60, TXT + ".tmp", access="wd", process="Code.exe")
        .rename(2, 60, TXT + ".tmp", TXT)
        .close(3, 60, TXT + ".tmp")
        .close(40, 30, TXT)
    )
    row = analyse(story).row(0, named=True)
    assert row["blockers"][0]["relation"] == "target"
    assert row["remaining_ms"] == 38.0


def test_informational_results_and_registry_denials_are_not_conflicts():
    story = (
        Story()
        .op(0, 1, "CreateFileMapping", TXT, result="FILE LOCKED WITH ONLY READERS")
        .op(1, 1, "WriteFile", TXT, result="FAST IO DISALLOWED")
        .op(2, 1, "FileSystemControl", TXT, result="OPLOCK HANDLE CLOSED")
        .op(
            3,
            1,
            "RegOpenKey",
            r"HKLM\SOFTWARE\Policies",
            result="ACCESS DENIED",
            event_class="Registry",
        )
    )
    assert analyse(story).is_empty()


def test_the_handle_an_operation_is_issued_through_is_not_its_blocker():
    story = (
        Story()
        .open_(0, 1, TXT, access="d", share="rwd", process="del.exe")
        .op(1, 1, "SetDispositionInformationFile", TXT, result="CANNOT DELETE")
        .close(2, 1, TXT)
    )
    assert analyse(story)["n_blockers"].to_list() == [0]


def test_handle_open_before_capture_is_a_possible_blocker():
    story = (
        Story()
        .fail_open(0, 2, TXT, access="w", share="r", process="Code.exe")
        .close(80, 30, TXT, process="SearchProtocolHost.exe")
    )
    row = analyse(story).row(0, named=True)
    assert row["blockers"][0]["open_before_capture"]
    assert row["remaining_ms"] == 80.0


def _random_story(seed: int) -> Story:
    rng = random.Random(seed)
    story = Story()
    files = [TMP + r"\a.dll", TMP + r"\b.pyd", TXT]
    ms = 0.0
    for _ in range(25):
        ms += rng.uniform(0.1, 5)
        pid = rng.choice([1, 2, 3])
        path = rng.choice(files)
        kind = rng.random()
        if kind < 0.4:
            story.open_(
                ms,
                pid,
                path,
                access=rng.choice(["r", "w", "a", "rd"]),
                share=rng.choice(["r", "rw", "rwd", ""]),
            )
        elif kind < 0.7:
            story.close(ms, pid, path)
        elif kind < 0.85:
            story.fail_open(
                ms, pid, path, access=rng.choice(["r", "w"]), share=rng.choice(["r", "rwd"])
            )
        else:
            story.rename(ms, pid, TMP, r"C:\c\x")
    return story


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.randoms(use_true_random=False))
def test_shuffling_input_rows_changes_no_conflict(seed, shuffler):
    story = _random_story(seed)
    before = analyse(story)
    rows = list(story.rows)
    shuffler.shuffle(rows)
    events = Story(rows=rows).events(in_time_order=False)
    after = find_conflicts(events, handles(events))
    key = ["time", "pid", "operation", "path", "verdict", "remaining_ms", "n_blockers"]
    assert before.select(key).sort("time").equals(after.select(key).sort("time"))


def test_a_refused_open_is_a_permission_refusal_even_beside_an_exclusive_handle():
    # Share-mode clashes fail with SHARING VIOLATION; ACCESS DENIED on an open is an ACL or
    # read-only refusal (a real capture: a game opening its read-only Engine.ini for write).
    story = (
        Story()
        .open_(0, 1, TXT, access="r", share="r", process="game.exe")
        .fail_open(1, 1, TXT, access="w", share="r", result="ACCESS DENIED")
        .open_(2, 9, r"C:\other", process="x.exe")
    )
    row = analyse(story).row(0, named=True)
    assert row["verdict"] == "no-holder-permission" and row["n_blockers"] == 0
