"""Tests of the simulator at scale: ids that never run out, and traces streamed to disk.

``simulate_mix`` used to hand every process and thread a never-used id out of 15,700 and
spun forever once they ran out (about 1.67 million events). Now ids are recycled after
that point only, as Windows does once a process has exited: a pid comes back at least
``REUSE_GAP_NS`` after every event of its earlier process. Smaller traces stay exactly
what they were. ``write_mix_csv`` writes traces of any size chunk by chunk.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from traceaudit import read_trace
from traceaudit.errors import SimulationBug, UsageError
from traceaudit.pipeline import analyze
from traceaudit.schema import Trace
from traceaudit.simulation import generate, write_mix_csv
from traceaudit.simulation.generate import (
    DEFAULT_DATE,
    _assemble,
    _base_ns,
    _finish,
    _mix_part,
    simulate_mix,
)
from traceaudit.simulation.noise import NOISE_PROCESSES
from traceaudit.simulation.story import (
    EV_SCHEMA,
    FOREVER,
    ID_HIGH,
    ID_LOW,
    REUSE_GAP_NS,
    Identities,
    IdPool,
    Proc,
    TraceBuilder,
    ms,
)
from traceaudit.simulation.truth import LOCK_RESULTS, compute_truth

# simulate_mix(100_000, seed=11): the CSV and the truth as made before ids were recycled
PINNED_CSV = "f36a0bf6dca7b425747f73b527d459a29671de1332015e147df3d6e91d82ad0a"
PINNED_TRUTH = "d185d78d31b93225e5d97389a615f75e60bd1e00e948c1e930464a26689b8afb"
SECOND = 1_000_000_000


def exhausted_pool(recycle_from: int = ID_LOW) -> Identities:
    """Identities whose original id range is used up (as after ~1.67M events); ids are
    recycled from ``4 * recycle_from`` up (a few, to make them pass on often)."""
    identities = Identities()
    identities.ids.used.update(4 * k for k in range(ID_LOW, ID_HIGH))
    identities.ids.low = recycle_from
    return identities


def id_owner_changes(frame: pl.DataFrame) -> pl.DataFrame:
    """Every place where an id (as pid or as tid) passes from one process to another:
    its usages in time order, where the owner (pid, process name) differs from the
    previous usage's; ``gap`` is the time since that previous usage."""
    usages = pl.concat(
        [
            frame.select(pl.col("pid").alias("id"), "pid", "process", "time"),
            frame.select(pl.col("tid").alias("id"), "pid", "process", "time"),
        ]
    )
    return (
        usages.sort("id", "time")
        .with_columns(
            changed=(
                (pl.col("pid") != pl.col("pid").shift(1))
                | (pl.col("process") != pl.col("process").shift(1))
            ).over("id"),
            gap=pl.col("time").diff().over("id"),
        )
        .filter(pl.col("changed"))
    )


def check_recycled_ids(frame: pl.DataFrame) -> int:
    """No id is carried by two processes less than the reuse gap apart (so never by two
    live ones); the shared processes keep one pid each. Returns how often ids passed on."""
    changes = id_owner_changes(frame)
    assert changes.filter(pl.col("gap") < REUSE_GAP_NS - SECOND).is_empty(), changes.head()
    for name in set(NOISE_PROCESSES) - {"svchost.exe"}:
        assert frame.filter(pl.col("process") == name)["pid"].n_unique() <= 1, name
    return changes.height


# --------------------------------------------------------------------------- the id pool


def test_pool_draws_as_before_until_the_range_runs_out() -> None:
    """The original draws (reject a used id, draw again) until all 15,700 are out; then
    the pool says so instead of spinning."""
    pool, rng, reference = IdPool(), np.random.default_rng(3), np.random.default_rng(3)
    seen = {4}
    for _ in range(ID_HIGH - ID_LOW):
        while True:
            expected = int(reference.integers(ID_LOW, ID_HIGH)) * 4
            if expected not in seen:
                seen.add(expected)
                break
        assert pool.draw(rng) == expected
    assert pool.draw(rng) is None and pool.draw(rng) is None


def test_pool_recycles_only_outside_the_gap() -> None:
    pool = IdPool()
    pool.register(1200, 100 * SECOND, 110 * SECOND)
    assert not pool.is_free(1200, 150 * SECOND, 160 * SECOND)  # within a minute after
    assert not pool.is_free(1200, 20 * SECOND, 50 * SECOND)  # within a minute before
    assert pool.is_free(1200, 171 * SECOND, 200 * SECOND)
    assert pool.is_free(1200, 0, 39 * SECOND)
    pool.register(1200, 171 * SECOND, 200 * SECOND)
    assert not pool.is_free(1200, 120 * SECOND, 130 * SECOND)
    pool.register(1204, 0, FOREVER)  # a handle open to the end: never again
    assert 1204 in pool.permanent and not pool.is_free(1204, 10**15, 10**15 + 1)
    assert not pool.is_free(4, 0, 1)  # System
    pool.prune(500 * SECOND)
    assert 1200 not in pool.busy


def test_pool_grows_when_every_id_is_busy() -> None:
    """With every id of the range busy the pool hands out fresh ids above it: it never
    loops forever and never gives a busy id."""
    pool, rng = IdPool(), np.random.default_rng(0)
    for k in range(ID_LOW, ID_HIGH):
        pool.register(4 * k, 0, 10 * SECOND)
    got = [pool.find(rng, 5 * SECOND, 6 * SECOND, avoid_exited=False) for _ in range(3)]
    assert got == [4 * ID_HIGH, 4 * (ID_HIGH + 1), 4 * (ID_HIGH + 2)]
    pool.exited.add(1200)
    pool.top = ID_LOW + 1  # only 1200 to probe
    assert pool.find(rng, 100 * SECOND, 101 * SECOND, avoid_exited=False) == 1200
    assert pool.find(rng, 100 * SECOND, 101 * SECOND, avoid_exited=True) != 1200


def test_recycled_pid_that_exited_may_act_as_a_new_process() -> None:
    """The truth engine accepts a pid acting after its Process Exit only as a process that
    began after that exit (``restarts``)."""
    b = TraceBuilder(np.random.default_rng(0))
    mapper = b.spawn("dllhost.exe")
    b.emit(ms(1), mapper, "QueryStandardInformationFile", "C:\\a.bin")
    b.exit_process(ms(2), mapper)
    heir = Proc("notepad.exe", mapper.pid, mapper.tids)
    h = b.open(ms(90_000), heir, "C:\\b.txt", ("Generic Read",), ("Read",))
    b.close(ms(90_001), h)
    frame = _assemble(b, pl.DataFrame(schema=EV_SCHEMA), np.random.default_rng(1))
    with pytest.raises(SimulationBug, match="after its Process Exit"):
        compute_truth(frame, b.expectations, b.leave_open, b.mapped_by)
    compute_truth(frame, b.expectations, b.leave_open, b.mapped_by, {mapper.pid: [ms(90_000)]})
    with pytest.raises(SimulationBug, match="after its Process Exit"):  # began before the exit
        compute_truth(frame, b.expectations, b.leave_open, b.mapped_by, {mapper.pid: [ms(1)]})


def test_a_mix_after_the_range_ran_out_recycles_ids() -> None:
    """A mix made with the original ids used up (and few to recycle, so they pass on
    often): placeholders are replaced everywhere, the truth engine accepts the model (a
    pid that exited comes back only as a new process), no two processes share an id
    within the gap, and the analysis finds exactly the truth's conflicts."""
    part = _mix_part(
        300_000, seed=5, index=0, base=_base_ns(DEFAULT_DATE), scenario_share=0.25,
        identities=exhausted_pool(ID_HIGH - 40), user=None,
    )  # fmt: skip
    sim = _finish("mix", 5, {}, part.builder, part.noise, part.noise_rng)
    frame = sim.rows.frame
    assert frame["pid"].min() >= 0 and frame["tid"].min() >= 0
    assert all(p >= 0 for pids in part.builder.mapped_by.values() for p in pids)
    assert check_recycled_ids(frame) > 100
    recycled = {pid for pid, starts in part.builder.restarts.items() if len(starts) > 1}
    assert recycled & set(part.builder.exited), "no pid that exited came back"
    # the shared processes were made after the range ran out: fresh ids above it
    shared = frame.filter(pl.col("process") == "lsass.exe")["pid"].unique().to_list()
    assert len(shared) == 1 and shared[0] >= 4 * ID_HIGH

    report = analyze(Trace(events=sim.to_frame(), format="simulated"))
    got = dict(report.conflicts.select("row", "verdict").iter_rows())
    assert got == {c["row"]: c["verdict"] for c in sim.truth["conflicts"]}
    blockers = report.conflicts.select(
        "row", pl.col("blockers").list.eval(pl.element().struct.field("pid")).list.sort()
    )
    assert dict(blockers.iter_rows()) == {
        c["row"]: sorted(b["pid"] for b in c["blockers"]) for c in sim.truth["conflicts"]
    }
    chains = report.chains.filter(pl.col("attempts") > 0)
    assert set(chains.select("first_row", "last_row", "attempts").iter_rows()) == {
        (c["first_row"], c["last_row"], c["attempts"]) for c in sim.truth["retry_chains"]
    }


# --------------------------------------------------------------------------- simulate_mix


def test_small_mixes_are_unchanged(tmp_path: Path) -> None:
    """Up to the size where ids ran out, a mix is byte for byte what it was (the
    committed samples and golden reports depend on it)."""
    sim = simulate_mix(100_000, seed=11)
    path = sim.write_csv(tmp_path / "mix.csv")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PINNED_CSV
    truth = json.dumps(sim.truth, sort_keys=True).encode()
    assert hashlib.sha256(truth).hexdigest() == PINNED_TRUTH


@pytest.mark.slow
def test_a_3m_event_mix_returns_and_recycles_ids_safely() -> None:
    """simulate_mix(3_000_000) used to spin forever at ~1.67M events. It returns, exact in
    size, with a truth the engine checked (no pid acts after its exit unless a new
    process carries it, every expected blocker found) and ids passed on only between
    processes a minute apart."""
    sim = simulate_mix(3_000_000, seed=7)
    frame = sim.rows.frame
    assert frame.height == 3_000_000
    assert frame["time"].is_sorted() and frame["time"].n_unique() == frame.height
    assert check_recycled_ids(frame) > 0
    assert all(n > 0 for n in sim.params["scenarios"].values())
    assert len(sim.truth["conflicts"]) > 30_000


# --------------------------------------------------------------------------- write_mix_csv


def test_streamed_mix_of_one_chunk_is_simulate_mix(tmp_path: Path) -> None:
    """Up to one chunk, the streamed file and truth are simulate_mix's."""
    sim = simulate_mix(5000, seed=4)
    expected = sim.write_csv(tmp_path / "a.csv").read_bytes()
    for n_chunk in (5000, 10_000):
        out = write_mix_csv(
            tmp_path / "b.csv", 5000, seed=4, chunk_events=n_chunk, truth_path=tmp_path / "b.jsonl"
        )
        assert out.read_bytes() == expected
        (line,) = (tmp_path / "b.jsonl").read_text(encoding="utf-8").splitlines()
        truth = json.loads(line)
        assert (truth.pop("chunk"), truth.pop("first_row"), truth.pop("n_events")) == (0, 1, 5000)
        assert truth == sim.truth
    columns = ("Time of Day", "Relative Time", "PID", "Completion Time", "Event Class")
    expected = sim.write_csv(tmp_path / "a.csv", columns=columns, clock_12h=False).read_bytes()
    path = write_mix_csv(tmp_path / "b.csv", 5000, seed=4, columns=columns, clock_12h=False)
    assert path.read_bytes() == expected


def test_streamed_mix_reads_back_with_continuous_time(tmp_path: Path) -> None:
    path, truth_path = tmp_path / "big.csv", tmp_path / "big.jsonl"
    write_mix_csv(path, 61_001, seed=3, chunk_events=8_000, truth_path=truth_path)
    events = read_trace(path)
    assert events.height == 61_001
    times = events["time"]
    assert times.is_sorted() and times.n_unique() == events.height
    # 8 chunks of ~7,600 events over a minute each: never a silence of seconds
    assert times.diff().max() < timedelta(seconds=3)
    lines = [json.loads(line) for line in truth_path.read_text(encoding="utf-8").splitlines()]
    assert [line["chunk"] for line in lines] == list(range(8))
    assert sum(line["n_events"] for line in lines) == 61_001
    assert [line["first_row"] for line in lines] == [
        1 + sum(x["n_events"] for x in lines[:i]) for i in range(8)
    ]
    rows = events.select("row", "pid", "process", "path", "result").rows_by_key(
        "row", named=True, unique=True
    )
    for line in lines:
        end = line["first_row"] + line["n_events"]
        assert line["conflicts"]
        for c in line["conflicts"]:
            assert line["first_row"] <= c["row"] < end
            r = rows[c["row"]]
            assert (r["pid"], r["process"], r["path"], r["result"]) == (
                c["pid"], c["process"], c["path"], c["result"],
            )  # fmt: skip
            assert c["result"] in LOCK_RESULTS
            for b in c["blockers"]:
                assert (rows[b["open_row"]]["pid"], rows[b["open_row"]]["path"]) == (
                    b["pid"], b["path"],
                )  # fmt: skip
        for chain in line["retry_chains"]:
            assert line["first_row"] <= chain["first_row"] <= chain["last_row"] < end
    # scenario paths never repeat across chunks: every created file or folder is new
    created = events.filter(
        (pl.col("operation") == "CreateFile")
        & (pl.col("detail").str.contains("OpenResult: Created"))
    )["path"].str.to_lowercase()
    assert created.len() > 1000 and created.n_unique() == created.len()
    check_recycled_ids(events.select("pid", "tid", "process", pl.col("time").dt.epoch("ns")))


def test_streamed_mix_recycles_ids_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks made after the original ids ran out take ids back from earlier chunks."""
    path = tmp_path / "r.csv"
    monkeypatch.setattr(generate, "Identities", lambda: exhausted_pool(ID_HIGH - 60))
    write_mix_csv(path, 160_000, seed=8, chunk_events=40_000)
    events = read_trace(path).select("pid", "tid", "process", pl.col("time").dt.epoch("ns"))
    assert events.height == 160_000
    assert check_recycled_ids(events) > 100
    # ids pass from processes of one chunk to those of a later one
    starts = events["time"].gather([0, 40_000, 80_000, 120_000])
    changes = id_owner_changes(events)
    before = changes["time"] - changes["gap"]
    crossing = sum(
        ((before < start) & (changes["time"] >= start)).sum() for start in starts.to_list()
    )
    assert crossing > 10


def test_write_mix_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="chunk_events"):
        write_mix_csv(tmp_path / "x.csv", 10, seed=1, chunk_events=0)
    with pytest.raises(UsageError, match="n_events"):
        write_mix_csv(tmp_path / "x.csv", -1, seed=1)
    with pytest.raises(UsageError, match="cannot write column"):
        write_mix_csv(tmp_path / "x.csv", 10, seed=1, columns=("Nope",))
    assert not list(tmp_path.iterdir())
    path = write_mix_csv(tmp_path / "empty.csv", 0, seed=1)
    assert read_trace(path).height == 0
