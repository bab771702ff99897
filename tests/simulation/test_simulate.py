"""Tests of the scenario simulator and its ground truth.

The truth is checked against the rows alone (what a CSV reader sees): handles pair as
per-(pid, path) stacks, every blocker is open across its conflict, remaining times and
window counts follow from the rows, retry chains are runs of the same (pid, operation,
path). Families are checked for the verdicts they promise, the mix for its exact size.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locations import ROOT
from traceaudit import read_trace
from traceaudit.errors import UsageError
from traceaudit.formats.procmon_text.csv_write import format_iso_time, format_time_of_day
from traceaudit.schema import EVENT_SCHEMA
from traceaudit.simulation.generate import (
    FAMILY_NAMES,
    LOCK_RESULTS,
    RetrySchedule,
    Simulation,
    SimulationBug,
    _assemble,
    simulate,
    simulate_mix,
)
from traceaudit.simulation.story import EV_SCHEMA as EV_SCHEMA_SIM
from traceaudit.simulation.story import TraceBuilder, ms
from traceaudit.simulation.truth import compute_truth

ROOT = ROOT
SEEDS = range(4)
OPEN_REQUIRING_OPLOCK = 0x00010000
CONFLICT_KEYS = [
    "row", "time", "pid", "process", "operation", "path", "result", "verdict", "blockers",
    "sections", "remaining_ms",
]  # fmt: skip
OPLOCK = {"OPLOCK NOT GRANTED", "CANNOT BREAK OPLOCK"}
MAPPING_RESULTS = ["SUCCESS", "FILE LOCKED WITH ONLY READERS", "FILE LOCKED WITH WRITERS"]
# read data/execute, write/append data, delete, and the generic rights that imply them
SHARING_BITS = 0x0001 | 0x0020 | 0x0002 | 0x0004 | 0x00010000 | 0xF0000000
INFORMATIONAL = {
    "FILE LOCKED WITH ONLY READERS",
    "FAST IO DISALLOWED",
    "OPLOCK HANDLE CLOSED",
    "BUFFER OVERFLOW",
    "NAME NOT FOUND",
    "REPARSE",
}


def _rows(sim: Simulation) -> pl.DataFrame:
    return sim.rows.frame


def pair_handles(frame: pl.DataFrame) -> tuple[dict[int, int | None], list[int]]:
    """Pair CreateFile SUCCESS with CloseFile per (pid, path) as a stack, from rows only.

    Returns open_row → close_row (None if never closed) and the CloseFile rows that had
    nothing to close.
    """
    stacks: dict[tuple[int, str], list[int]] = defaultdict(list)
    pairs: dict[int, int | None] = {}
    orphans = []
    events = frame.filter(
        ((pl.col("operation") == "CreateFile") & (pl.col("result") == "SUCCESS"))
        | (pl.col("operation") == "CloseFile")
    ).select("row", "pid", "operation", "path")
    for row, pid, op, path in events.iter_rows():
        key = (pid, path.lower())
        if op == "CreateFile":
            stacks[key].append(row)
            pairs[row] = None
        elif stacks[key]:
            pairs[stacks[key].pop()] = row
        else:
            orphans.append(row)
    return pairs, orphans


def live_sections(frame: pl.DataFrame, conflict: dict[str, Any]) -> list[dict[str, Any]]:
    """The sections a USER MAPPED FILE conflict should list, from the rows alone: per pid,
    its earliest mapping row on the path before the failure, unless it exited before."""
    if conflict["result"] != "USER MAPPED FILE":
        return []
    exits = dict(
        frame.filter(pl.col("operation") == "Process Exit")
        .group_by("pid")
        .agg(pl.col("row").min())
        .iter_rows()
    )
    mapped = frame.filter(
        (
            (pl.col("operation") == "CreateFileMapping") & pl.col("result").is_in(MAPPING_RESULTS)
            | ((pl.col("operation") == "Load Image") & (pl.col("result") == "SUCCESS"))
        )
        & (pl.col("path").str.to_lowercase() == conflict["path"].lower())
        & (pl.col("row") < conflict["row"])
    ).sort("row")
    out: dict[int, dict[str, Any]] = {}
    for row, pid, process, path in mapped.select("row", "pid", "process", "path").iter_rows():
        if exits.get(pid, conflict["row"] + 1) > conflict["row"]:
            out.setdefault(pid, {"pid": pid, "process": process, "path": path, "row": row})
    return sorted(out.values(), key=lambda s: s["row"])


def sharing_handles_open_at(
    sim: Simulation, pairs: dict[int, int | None], conflict: dict[str, Any]
) -> list[int]:
    """Open rows of the handles on the conflict's path, open at its row, that read, write
    or delete (what an oplock probe's blockers are)."""
    events = sim.to_frame().filter(
        pl.col("row").is_in(list(pairs))
        & (pl.col("path").str.to_lowercase() == conflict["path"].lower())
        & (pl.col("access_mask") & SHARING_BITS != 0)
    )
    return sorted(
        r
        for r in events["row"].to_list()
        if r < conflict["row"] and (pairs[r] is None or pairs[r] > conflict["row"])
    )


def check_truth(sim: Simulation) -> None:
    """Everything the truth claims must follow from the rows."""
    frame = _rows(sim)
    by_row = {r["row"]: r for r in frame.iter_rows(named=True)}
    pairs, orphans = pair_handles(frame)
    assert not orphans
    truth = sim.truth
    assert list(truth) == ["family", "seed", "params", "conflicts", "retry_chains", "windows"]
    rows = [c["row"] for c in truth["conflicts"]]
    assert rows == sorted(rows)
    expected_conflicts = [
        r["row"]
        for r in by_row.values()
        if r["result"] in LOCK_RESULTS and r["event_class"] == "File System"
    ]
    assert rows == expected_conflicts
    for c in truth["conflicts"]:
        row = by_row[c["row"]]
        for key in ("pid", "process", "operation", "path", "result"):
            assert c[key] == row[key]
        assert c["time"] == format_iso_time(row["time"])
        opens = [b["open_row"] for b in c["blockers"]]
        assert opens == sorted(opens)
        closes = []
        for b in c["blockers"]:
            opened = by_row[b["open_row"]]
            assert (opened["operation"], opened["result"]) == ("CreateFile", "SUCCESS")
            assert (opened["pid"], opened["process"], opened["path"]) == (
                b["pid"],
                b["process"],
                b["path"],
            )
            assert pairs[b["open_row"]] == b["close_row"]
            assert b["open_row"] < c["row"]
            if b["close_row"] is not None:
                assert c["row"] < b["close_row"]
                closes.append(by_row[b["close_row"]]["time"])
        assert list(c) == CONFLICT_KEYS
        assert c["sections"] == live_sections(frame, c)
        if c["result"] in OPLOCK:
            assert c["verdict"] == "oplock-probe"
            assert opens == sharing_handles_open_at(sim, pairs, c)
        elif c["result"] == "USER MAPPED FILE":
            assert c["blockers"] == []
            pids = {s["pid"] for s in c["sections"]}
            assert c["verdict"] == (
                "no-holder-filtered" if not pids
                else "mapped-by-own-process" if pids == {c["pid"]}
                else "mapped-by-other-process"
            )  # fmt: skip
        elif not c["blockers"]:
            expected = (
                "no-holder-permission" if c["result"] == "ACCESS DENIED" else "no-holder-filtered"
            )
            assert c["verdict"] == expected
        else:
            own = all(b["pid"] == c["pid"] for b in c["blockers"])
            assert c["verdict"] == ("blocked-by-own-handle" if own else "blocked-by-other-process")
        if c["blockers"] and len(closes) == len(c["blockers"]):
            assert c["remaining_ms"] == pytest.approx((max(closes) - row["time"]) / 1e6, abs=1e-4)
        else:
            assert c["remaining_ms"] is None
    windows = [c for c in truth["conflicts"] if c["verdict"].startswith("blocked-by-")]
    assert all(c["blockers"] for c in windows)
    assert truth["windows"] == {
        "count": len(windows),
        "censored": sum(c["remaining_ms"] is None for c in windows),
    }
    conflict_rows = set(rows)
    for chain in truth["retry_chains"]:
        assert chain["first_row"] in conflict_rows
        first, last = by_row[chain["first_row"]], by_row[chain["last_row"]]
        assert (first["pid"], first["operation"], first["path"].lower()) == (
            chain["pid"], chain["operation"], chain["path"].lower(),
        )  # fmt: skip
        same = [
            r for r in by_row.values()
            if (r["pid"], r["operation"], r["path"].lower()) == (chain["pid"], chain["operation"], chain["path"].lower())
            and chain["first_row"] <= r["row"] <= chain["last_row"]
        ]  # fmt: skip
        assert len(same) == chain["attempts"]
        assert chain["succeeded"] == (last["result"] == "SUCCESS")
        assert all(r["result"] != "SUCCESS" for r in same[:-1])
        gaps = [b["time"] - a["time"] for a, b in zip(same, same[1:], strict=False)]
        assert all(g < 30 * 10**9 for g in gaps)


def check_rows(sim: Simulation) -> None:
    """Unique, ordered, 100 ns times; numbered rows; every handle closed but censored ones."""
    frame = _rows(sim)
    times = frame["time"]
    assert frame["row"].to_list() == list(range(1, frame.height + 1))
    assert times.is_sorted() and times.n_unique() == frame.height
    assert (times % 100 == 0).all()
    pairs, _ = pair_handles(frame)
    unclosed = [o for o, c in pairs.items() if c is None]
    censored_opens = {
        b["open_row"]
        for c in sim.truth["conflicts"]
        for b in c["blockers"]
        if b["close_row"] is None
    }
    assert set(unclosed) <= censored_opens
    if sim.family != "censored" and sim.family != "mix":
        assert not unclosed


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_same_seed_same_simulation(family: str) -> None:
    a, b = simulate(family, seed=7), simulate(family, seed=7)
    assert a == b
    assert a.truth == b.truth
    assert simulate(family, seed=8).rows != a.rows


def test_mix_is_deterministic() -> None:
    assert simulate_mix(3000, seed=5) == simulate_mix(3000, seed=5)
    assert simulate_mix(3000, seed=5).rows != simulate_mix(3000, seed=6).rows


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("seed", SEEDS)
def test_family_rows_and_truth_are_consistent(family: str, seed: int) -> None:
    sim = simulate(family, seed=seed)
    check_rows(sim)
    check_truth(sim)


@pytest.mark.parametrize("n_events", [0, 1, 37, 600, 5000, 20_000])
def test_mix_reaches_the_exact_event_count(n_events: int) -> None:
    sim = simulate_mix(n_events, seed=1)
    assert len(sim.rows) == n_events
    check_rows(sim)
    check_truth(sim)


def test_mix_has_every_family_and_noise() -> None:
    sim = simulate_mix(30_000, seed=2)
    assert all(n > 0 for n in sim.params["scenarios"].values())
    results = set(sim.rows.frame["result"].unique())
    assert results >= INFORMATIONAL
    verdicts = {c["verdict"] for c in sim.truth["conflicts"]}
    every = {
        "blocked-by-other-process",
        "blocked-by-own-handle",
        "no-holder-permission",
        "no-holder-filtered",
        "oplock-probe",
    }
    mapped = {"mapped-by-own-process", "mapped-by-other-process"}
    assert every <= verdicts <= every | mapped and verdicts & mapped
    assert sim.truth["windows"]["censored"] > 0


def test_noise_never_makes_conflicts() -> None:
    sim = simulate_mix(20_000, seed=4, scenario_share=0.0)
    frame = sim.rows.frame
    assert sim.truth["conflicts"] == [] and sim.truth["retry_chains"] == []
    denied = frame.filter(pl.col("result") == "ACCESS DENIED")
    assert denied.height > 0 and set(denied["event_class"]) == {"Registry"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    family=st.sampled_from(FAMILY_NAMES), seed=st.integers(0, 2**32 - 1), noise=st.integers(0, 200)
)
def test_property_any_seed_gives_consistent_truth(family: str, seed: int, noise: int) -> None:
    sim = simulate(family, seed=seed, noise_events=noise)
    check_rows(sim)
    check_truth(sim)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_events=st.integers(0, 4000), seed=st.integers(0, 2**32 - 1), share=st.floats(0.0, 1.0))
def test_property_mix_size_and_truth(n_events: int, seed: int, share: float) -> None:
    sim = simulate_mix(n_events, seed=seed, scenario_share=share)
    assert len(sim.rows) == n_events
    check_rows(sim)
    check_truth(sim)


# --------------------------------------------------------------------------- family promises


def _under(path: str, folder: str) -> bool:
    return path.lower().startswith(folder.lower() + "\\")


@pytest.mark.parametrize("seed", SEEDS)
def test_extract_rename_is_the_uv_case(seed: int) -> None:
    sim = simulate("extract-rename", seed=seed, scanner="MsMpEng.exe")
    conflicts = sim.truth["conflicts"]
    assert conflicts, "the first rename attempt should fail"
    frame = sim.rows.frame
    for c in conflicts:
        assert (c["process"], c["operation"], c["result"]) == (
            "uv.exe",
            "SetRenameInformationFile",
            "ACCESS DENIED",
        )
        assert c["verdict"] == "blocked-by-other-process"
        assert all(
            b["process"] == "MsMpEng.exe" and _under(b["path"], c["path"]) for b in c["blockers"]
        )
    # decoys exist: a scanner handle on a sibling .tmp dir and on the <pkg>.tar.gz,
    # both open during the first failure, neither a blocker
    first = conflicts[0]
    pairs, _ = pair_handles(frame)
    opens = frame.filter(pl.col("row").is_in(list(pairs))).select("row", "process", "path")
    open_at_first = [
        (p, path) for row, p, path in opens.iter_rows()
        if row < first["row"] and (pairs[row] is None or pairs[row] > first["row"])
    ]  # fmt: skip
    tmp_dir = first["path"].rsplit("\\", 1)[0]
    decoys = [
        path for p, path in open_at_first if p == "MsMpEng.exe" and not _under(path, first["path"])
    ]
    assert any(path.endswith(".tar.gz") and path.startswith(first["path"]) for path in decoys)
    assert any(".tmp" in path and not path.startswith(tmp_dir) for path in decoys)
    assert any(p == "explorer.exe" for p, _ in open_at_first)
    (chain,) = sim.truth["retry_chains"]
    assert chain["attempts"] == len(conflicts) + chain["succeeded"]


def test_extract_rename_scanners_and_give_up() -> None:
    sim = simulate(
        "extract-rename",
        seed=3,
        scanner="CSFalconService.exe",
        lock_median_ms=3000,
        retry={"initial_ms": 10, "factor": 2, "max_retries": 2},
    )
    (chain,) = sim.truth["retry_chains"]
    assert chain == {**chain, "attempts": 3, "succeeded": False}
    assert {b["process"] for c in sim.truth["conflicts"] for b in c["blockers"]} == {
        "CSFalconService.exe"
    }
    check_truth(sim)


@pytest.mark.parametrize("mode", ["rename", "write", "delete"])
@pytest.mark.parametrize("seed", SEEDS)
def test_replace_under_indexer(mode: str, seed: int) -> None:
    sim = simulate("replace-under-indexer", seed=seed, mode=mode, case_variant=seed == 1)
    conflicts = sim.truth["conflicts"]
    assert conflicts
    for c in conflicts:
        assert c["process"] == "Code.exe"
        assert c["verdict"] == "blocked-by-other-process"
        assert [b["process"] for b in c["blockers"]] == ["SearchProtocolHost.exe"]
        if mode == "rename":
            assert (c["operation"], c["result"]) == ("SetRenameInformationFile", "ACCESS DENIED")
            assert c["path"].endswith("file.txt.tmp")
        else:
            assert (c["operation"], c["result"]) == ("CreateFile", "SHARING VIOLATION")
            assert c["path"].endswith("file.txt")
        blocker = c["blockers"][0]["path"]
        assert blocker.lower().endswith("file.txt") and (blocker.isupper() == (seed == 1))
    assert [ch["succeeded"] for ch in sim.truth["retry_chains"]] == [True]
    # the attribute-only reader is open during the first failure and is not a blocker
    frame = sim.rows.frame
    reader = frame.filter(
        (pl.col("process") == "explorer.exe")
        & (pl.col("operation") == "CreateFile")
        & pl.col("path").str.contains("\\Documents\\", literal=True)
    )
    assert reader["detail"].str.starts_with("Desired Access: Read Attributes, Disposition").all()
    assert reader.height == 1 and reader["row"][0] < conflicts[0]["row"]


def test_permission_denied_has_no_holder() -> None:
    for seed in SEEDS:
        sim = simulate("permission-denied", seed=seed, attempts=3)
        conflicts = sim.truth["conflicts"]
        assert len(conflicts) == 3
        assert {(c["verdict"], c["result"], c["operation"]) for c in conflicts} == {
            ("no-holder-permission", "ACCESS DENIED", "CreateFile")
        }
        assert all(c["path"] == "C:\\Windows\\System32\\drivers\\etc\\hosts" for c in conflicts)
        assert sim.truth["retry_chains"][0]["succeeded"] is False
        registry = sim.rows.frame.filter(
            (pl.col("result") == "ACCESS DENIED") & (pl.col("event_class") == "Registry")
        )
        assert registry.height >= 1


def test_own_handle() -> None:
    for seed in SEEDS:
        sim = simulate("own-handle", seed=seed)
        conflicts = sim.truth["conflicts"]
        assert len(conflicts) == 3
        for c in conflicts:
            assert c["verdict"] == "blocked-by-own-handle" and c["result"] == "SHARING VIOLATION"
            assert [b["pid"] for b in c["blockers"]] == [c["pid"]]
            assert c["remaining_ms"] > 0


def test_filtered_holder_trace_has_one_process() -> None:
    for seed in SEEDS:
        sim = simulate("filtered-holder", seed=seed)
        assert sim.rows.frame["pid"].n_unique() == 1
        assert {c["verdict"] for c in sim.truth["conflicts"]} == {"no-holder-filtered"}
        assert sim.truth["windows"] == {"count": 0, "censored": 0}


def test_filtered_holder_other_lock_result() -> None:
    sim = simulate("filtered-holder", seed=1, result="DELETE PENDING")
    assert {c["result"] for c in sim.truth["conflicts"]} == {"DELETE PENDING"}
    check_truth(sim)


def test_censored_blocker_never_closes() -> None:
    for seed in SEEDS:
        sim = simulate("censored", seed=seed)
        conflicts = sim.truth["conflicts"]
        assert conflicts and all(c["remaining_ms"] is None for c in conflicts)
        assert all(
            b["close_row"] is None and b["process"] == "OneDrive.exe"
            for c in conflicts
            for b in c["blockers"]
        )
        assert sim.truth["windows"] == {"count": len(conflicts), "censored": len(conflicts)}
        # the sync client reads (and closes) other files of the same folder
        frame = sim.rows.frame
        sync = frame.filter(pl.col("process") == "OneDrive.exe")
        folder = conflicts[0]["path"].rsplit("\\", 1)[0]
        closed = sync.filter(pl.col("operation") == "CloseFile")["path"].to_list()
        assert len(closed) >= sim.params["siblings"] >= 1
        assert any(p.rsplit("\\", 1)[0] == folder and p != conflicts[0]["path"] for p in closed)


def _silent_openers(sim: Simulation) -> set[str]:
    frame = sim.rows.frame
    opened = frame.filter((pl.col("operation") == "CreateFile") & (pl.col("result") == "SUCCESS"))
    closed = set(frame.filter(pl.col("operation") == "CloseFile")["pid"])
    return {f"{p} ({pid})" for pid, p in opened.select("pid", "process").unique().iter_rows()
            if pid not in closed}  # fmt: skip


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_complete_capture_shows_every_opening_process_closing_something(family: str) -> None:
    """The analysis reads "a process with opens but no CloseFile at all" as a capture that
    filtered its closes out; a complete simulated capture never looks like that."""
    for seed in range(8):
        sim = simulate(family, seed=seed)
        assert not _silent_openers(sim), (family, seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_complete_mixed_capture_shows_every_opening_process_closing_something(
    seed: int,
) -> None:
    assert not _silent_openers(simulate_mix(20_000, seed=seed))


def _row(frame: pl.DataFrame, row: int) -> dict[str, Any]:
    return frame.filter(pl.col("row") == row).row(0, named=True)


@pytest.mark.parametrize("seed", range(6))
def test_oplock_probe_yields_to_the_writer(seed: int) -> None:
    sim = simulate("oplock-probe", seed=seed, probes=1 + seed % 3)
    frame = sim.to_frame()
    conflicts = sim.truth["conflicts"]
    assert len(conflicts) == sim.params["probes"]
    writer = sim.params["process"]
    for c in conflicts:
        assert (c["process"], c["operation"], c["result"], c["verdict"]) == (
            "MsMpEng.exe", "CreateFile", "OPLOCK NOT GRANTED", "oplock-probe",
        )  # fmt: skip
        probe = _row(frame, c["row"])
        assert probe["create_options"] & OPEN_REQUIRING_OPLOCK
        assert probe["detail"].startswith("Desired Access: Read Attributes, Disposition: Open")
        (blocker,) = c["blockers"]
        opened = _row(frame, blocker["open_row"])
        assert (blocker["process"], opened["path"]) == (writer, c["path"])
        assert opened["detail"].startswith("Desired Access: Generic Write, Read Attributes")
        assert c["remaining_ms"] > 0 and c["sections"] == []
        # the fallback: the same open without Open Requiring Oplock, 50-150 µs later
        after = frame.filter(
            (pl.col("row") > c["row"]) & (pl.col("pid") == c["pid"]) & (pl.col("path") == c["path"])
        )
        fallback = after.row(0, named=True)
        assert (fallback["operation"], fallback["result"]) == ("CreateFile", "SUCCESS")
        assert not fallback["create_options"] & OPEN_REQUIRING_OPLOCK
        gap = (fallback["time"] - probe["time"]).total_seconds() * 1e6
        assert 50 <= gap < 200
        assert after["operation"].to_list()[2] == "CloseFile"
    assert sim.truth["windows"] == {"count": 0, "censored": 0}
    chains = sim.truth["retry_chains"]
    assert [(ch["attempts"], ch["succeeded"]) for ch in chains] == [(2, True)] * len(conflicts)
    # the attribute-only explorer.exe handle is open at the first probe, never a blocker
    first = conflicts[0]
    decoy = frame.filter(
        (pl.col("process") == "explorer.exe") & (pl.col("path") == first["path"])
        & (pl.col("operation") == "CreateFile")
    )  # fmt: skip
    assert decoy.height == 1 and decoy["row"][0] < first["row"]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("holder", ["own", "other"])
def test_mapped_section_is_no_handle(holder: str, seed: int) -> None:
    sim = simulate("mapped-section", seed=seed, holder=holder)
    frame = sim.rows.frame
    conflicts = sim.truth["conflicts"]
    assert conflicts
    verdict = "mapped-by-own-process" if holder == "own" else "mapped-by-other-process"
    for c in conflicts:
        assert c["result"] == "USER MAPPED FILE" and c["verdict"] == verdict
        assert c["blockers"] == [] and c["remaining_ms"] is None
        (section,) = c["sections"]
        mapping = _row(frame, section["row"])
        assert mapping["operation"] == "CreateFileMapping"
        assert mapping["result"] in MAPPING_RESULTS
        assert (mapping["pid"], mapping["path"]) == (section["pid"], c["path"])
        assert (section["pid"] == c["pid"]) == (holder == "own")
    assert sim.truth["windows"] == {"count": 0, "censored": 0}
    (chain,) = sim.truth["retry_chains"]
    exits = frame.filter(pl.col("operation") == "Process Exit")
    if holder == "own":
        c = conflicts[0]
        assert (c["process"], c["operation"]) == ("explorer.exe", "WriteFile")
        assert "Paging I/O" in _row(frame, c["row"])["detail"]
        assert (chain["attempts"], chain["succeeded"]) == (2, True)
        assert exits.height == 0
    else:
        assert {c["operation"] for c in conflicts} <= {
            "SetEndOfFileInformationFile", "SetAllocationInformationFile",
        }  # fmt: skip
        (exit_,) = exits.iter_rows(named=True)
        assert exit_["pid"] == conflicts[0]["sections"][0]["pid"]
        assert exit_["event_class"] == "Process" and exit_["path"] == ""
        assert all(c["row"] < exit_["row"] for c in conflicts)
        assert chain["succeeded"] == (exit_["row"] < chain["last_row"])


def _truth_of(story: Any) -> dict[str, Any]:
    """The truth of a hand-written story (no noise), by the simulator's own engine."""
    b = TraceBuilder(np.random.default_rng(0))
    story(b)
    frame = _assemble(b, pl.DataFrame(schema=EV_SCHEMA_SIM), np.random.default_rng(1))
    return compute_truth(frame, b.expectations, b.leave_open, b.mapped_by)


def _mapped_story(*, exit_ms: float | None, expect_mapper: bool, close_first: bool = True) -> Any:
    def story(b: TraceBuilder) -> None:
        mapper, writer = b.spawn("dllhost.exe"), b.spawn("python.exe")
        path = "C:\\Users\\a\\m.bin"
        h = b.open(ms(1), mapper, path, ("Generic Read",), ("Read", "Write"))
        b.emit(ms(2), mapper, "CreateFileMapping", path, detail="SyncType: SyncTypeOther")
        if close_first:
            b.close(ms(3), h)
        if exit_ms is not None:
            b.exit_process(ms(exit_ms), mapper)
        mine = b.open(ms(10), writer, path, ("Generic Write",), ("Read",))
        b.fail(ms(20), writer, "SetEndOfFileInformationFile", path, "USER MAPPED FILE",
               "EndOfFile: 0", mapped_by=[mapper] if expect_mapper else [])  # fmt: skip
        b.close(ms(30), mine)
        if not close_first:
            b.close(ms(40), h)

    return story


def test_truth_engine_sections_and_exits() -> None:
    (c,) = _truth_of(_mapped_story(exit_ms=None, expect_mapper=True))["conflicts"]
    assert (c["verdict"], c["blockers"], c["remaining_ms"]) == ("mapped-by-other-process", [], None)
    assert [s["process"] for s in c["sections"]] == ["dllhost.exe"]
    # the mapper exited before the failure: its section is gone, nobody is in the trace
    truth = _truth_of(_mapped_story(exit_ms=15, expect_mapper=False))
    assert [(c["verdict"], c["sections"]) for c in truth["conflicts"]] == [
        ("no-holder-filtered", [])
    ]
    assert truth["windows"] == {"count": 0, "censored": 0}
    with pytest.raises(SimulationBug, match="expected sections of pids"):
        _truth_of(_mapped_story(exit_ms=None, expect_mapper=False))
    with pytest.raises(SimulationBug, match="exits with 1 handle"):
        _truth_of(_mapped_story(exit_ms=15, expect_mapper=False, close_first=False))
    with pytest.raises(SimulationBug, match="after its Process Exit"):
        _truth_of(_late_actor)


def _late_actor(b: TraceBuilder) -> None:
    proc = b.spawn("dllhost.exe")
    b.exit_process(ms(1), proc)
    h = b.open(ms(2), proc, "C:\\x.bin", ("Generic Read",), ("Read",))
    b.close(ms(3), h)


def test_new_families_read_back_from_csv(tmp_path: Path) -> None:
    """The Procmon CSV of the new families reads back with the oplock bit and results."""
    for family, params in (
        ("oplock-probe", {}), ("mapped-section", {"holder": "other"}),
        ("mapped-section", {"holder": "own"}),
    ):  # fmt: skip
        sim = simulate(family, seed=3, **params)
        path = sim.write_csv(tmp_path / f"{family}.csv")
        events = read_trace(path)
        assert events.height == len(sim.rows)
        assert events["result"].to_list() == sim.rows.frame["result"].to_list()
        assert events["operation"].to_list() == sim.rows.frame["operation"].to_list()
        for c in sim.truth["conflicts"]:
            row = events.row(c["row"] - 1, named=True)
            assert (row["operation"], row["result"], row["path"]) == (
                c["operation"], c["result"], c["path"],
            )  # fmt: skip
            if family == "oplock-probe":
                assert row["create_options"] & OPEN_REQUIRING_OPLOCK
                fallback = events.row(c["row"], named=True)
                assert fallback["result"] == "SUCCESS"
                assert not fallback["create_options"] & OPEN_REQUIRING_OPLOCK
        classes = dict(events.select("operation", "event_class").unique().iter_rows())
        assert classes.get("Process Exit", "Process") == "Process"
        assert classes.get("CreateFileMapping", "File System") == "File System"


# --------------------------------------------------------------------------- outputs


def test_csv_rows_match_truth_rows(tmp_path: Path) -> None:
    sim = simulate("extract-rename", seed=2)
    path = sim.write_csv(tmp_path / "t.csv")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        records = list(csv.DictReader(handle))
    assert list(records[0]) == [
        "Time of Day",
        "Process Name",
        "PID",
        "Operation",
        "Path",
        "Result",
        "Detail",
        "TID",
        "Date & Time",
        "Duration",
    ]
    assert len(records) == len(sim.rows)
    for c in sim.truth["conflicts"]:
        rec = records[c["row"] - 1]
        assert (rec["Operation"], rec["Path"], rec["Result"], int(rec["PID"])) == (
            c["operation"],
            c["path"],
            c["result"],
            c["pid"],
        )
        row = sim.rows[c["row"] - 1]
        assert rec["Time of Day"] == format_time_of_day(row.time) and c["time"] == format_iso_time(
            row.time
        )


def test_truth_json_round_trip(tmp_path: Path) -> None:
    sim = simulate("own-handle", seed=1)
    path = sim.write_truth(tmp_path / "t.json")
    assert json.loads(path.read_text(encoding="utf-8")) == sim.truth
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_to_frame_has_the_event_schema() -> None:
    sim = simulate("replace-under-indexer", seed=0)
    frame = sim.to_frame()
    assert frame.schema == pl.Schema(EVENT_SCHEMA)
    creates = frame.filter(pl.col("operation") == "CreateFile")
    assert creates["access_mask"].null_count() == 0 and creates["share_mode"].null_count() == 0
    renames = frame.filter(pl.col("operation") == "SetRenameInformationFile")
    assert renames["rename_target"].str.ends_with("file.txt").all()
    assert frame["time"].dt.date().unique().to_list()[0].isoformat() == "2024-07-15"


def test_rows_sequence_api() -> None:
    sim = simulate("censored", seed=0, noise_events=5)
    rows = sim.rows
    assert len(list(rows)) == len(rows)
    assert rows[0] == next(iter(rows))
    assert rows[-1].time == rows.frame["time"][-1]
    assert len(rows[2:5]) == 3


def test_params_are_recorded_and_date_is_used() -> None:
    sim = simulate("own-handle", seed=3, date="2025-01-02", attempts=2, user="bob")
    assert (
        sim.params["date"] == "2025-01-02"
        and sim.params["attempts"] == 2
        and sim.params["user"] == "bob"
    )
    assert sim.truth["params"] == sim.params
    assert sim.truth["conflicts"][0]["time"].startswith("2025-01-02T11:27:")


def test_errors() -> None:
    with pytest.raises(UsageError, match="unknown family 'nope'; choose one of: extract-rename"):
        simulate("nope", seed=1)
    with pytest.raises(UsageError, match="takes no parameter\\(s\\) colour; it takes: user, mode"):
        simulate("replace-under-indexer", seed=1, colour="red")
    with pytest.raises(UsageError, match="date '15/07/2024' is not a date"):
        simulate("own-handle", seed=1, date="15/07/2024")
    with pytest.raises(UsageError, match="seed must be a non-negative integer"):
        simulate("own-handle", seed=-1)
    with pytest.raises(UsageError, match="mode must be"):
        simulate("replace-under-indexer", seed=1, mode="append")
    with pytest.raises(UsageError, match="n_events must be"):
        simulate_mix(-5, seed=1)


def test_retry_schedule() -> None:
    uv = RetrySchedule(10, 2, max_retries=10)
    assert uv.delays_ms() == [10 * 2**i for i in range(10)] and sum(uv.delays_ms()) == 10230
    linear = RetrySchedule(10, 1, 10, cap_ms=100, max_retries=None, budget_ms=1000)
    assert linear.delays_ms()[:11] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 100]
    assert sum(linear.delays_ms()) <= 1000
    with pytest.raises(ValueError, match="never ends"):
        RetrySchedule(max_retries=None)


def _make_samples() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_samples", ROOT / "samples" / "make_samples.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_samples_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert _make_samples().main(["--check"]) == 0, capsys.readouterr().err
