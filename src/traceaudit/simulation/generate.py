"""Simulated Process Monitor traces with ground truth, for tests, samples and benchmarks.

Why: real captures of file-lock conflicts are rare, private, and come without an
answer key. The simulator writes traces that look like Procmon's own CSV export and,
next to them, the answer the analysis must find: every conflict with its verdict and
blockers, how long the blockers still held on, and the retry chains.

Three entry points:

* :func:`simulate` builds one scenario *family* (``extract-rename``, the uv case;
  ``replace-under-indexer``; ``permission-denied``; ``own-handle``; ``filtered-holder``;
  ``censored``; ``oplock-probe``, an antivirus probe that yields to a writer;
  ``mapped-section``, USER MAPPED FILE from a mapped section of another process or the
  failing one) with its decoys, plus a little background noise;
* :func:`simulate_mix` interleaves many scenarios of every family with background noise
  up to an exact event count (a million events take seconds);
* :func:`write_mix_csv` writes such a mix of any size (a hundred million events) straight
  to a Procmon CSV, chunk by chunk, in time linear in its size and bounded memory.

Process and thread ids are drawn from 15,700 values and, once those have all been handed
out (about 1.67 million events into a mix), recycled as Windows does: a pid comes back
only when every event of its earlier process is a minute or more away (see
:class:`~traceaudit.simulation.story.IdPool`). Until then nothing changed: smaller mixes
are exactly what earlier versions made.

Everything is deterministic per ``seed``. Times are integer nanoseconds on the trace's
local wall clock, unique, on Procmon's 100 ns grid, starting at 11:27:00 on ``date``.

The truth is computed from the simulator's own model of which handle is open when
(never from the Detail text it prints) by the rules spelled out in
``samples/README.md``; the shape of the truth JSON is the contract with the analysis::

    {"family", "seed", "params",
     "conflicts": [{"row", "time", "pid", "process", "operation", "path", "result",
                    "verdict", "blockers": [{"pid", "process", "path", "open_row",
                    "close_row"}], "sections": [{"pid", "process", "path", "row"}],
                    "remaining_ms"}],
     "retry_chains": [{"pid", "operation", "path", "attempts", "first_row", "last_row",
                       "succeeded"}],
     "windows": {"count", "censored"}}

``verdict`` is one of ``blocked-by-other-process``, ``blocked-by-own-handle``,
``no-holder-permission``, ``no-holder-filtered``, ``oplock-probe`` (OPLOCK NOT GRANTED /
CANNOT BREAK OPLOCK), ``mapped-by-other-process`` and ``mapped-by-own-process`` (USER
MAPPED FILE). ``sections`` is empty except on USER MAPPED FILE conflicts: one entry per
mapping pid, its earliest mapping row still alive at the failure. ``windows`` counts the
``blocked-by-…`` conflicts only.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime
from pathlib import Path
from typing import Any, overload

import numpy as np
import polars as pl

from traceaudit.errors import UsageError
from traceaudit.formats.procmon_text.csv_write import (
    SIMULATION_COLUMNS,
    ProcmonRow,
    _check_columns,
    _column_expr,
    _relative_expr,
    _rows_frame,
    atomic_output,
    to_ns,
    write_clipboard_rows,
    write_procmon_csv,
)
from traceaudit.schema import conform_events
from traceaudit.simulation.families import FAMILIES, USERS, Story
from traceaudit.simulation.noise import NOISE_PROCESSES, generate_noise
from traceaudit.simulation.story import EV_SCHEMA, Identities, RetrySchedule, TraceBuilder, ms
from traceaudit.simulation.truth import LOCK_RESULTS, SimulationBug, compute_truth

__all__ = [
    "FAMILY_NAMES",
    "DEFAULT_DATE",
    "LOCK_RESULTS",
    "EventRows",
    "RetrySchedule",
    "Simulation",
    "SimulationBug",
    "simulate",
    "simulate_mix",
    "write_mix_csv",
]

FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)
"""The scenario families :func:`simulate` knows."""

DEFAULT_DATE = "2024-07-15"
"""The day simulated traces are captured on (the day of the uv issue's Procmon rows)."""

_MIX_WEIGHTS = {
    "extract-rename": 0.27,
    "replace-under-indexer": 0.27,
    "permission-denied": 0.09,
    "own-handle": 0.09,
    "filtered-holder": 0.09,
    "censored": 0.09,
    "oplock-probe": 0.05,
    "mapped-section": 0.05,
}
_MIX_EVENTS_PER_SECOND = 2000
_MIX_SCENARIO_SHARE = 0.25
_WRITER_COLUMNS = (
    "time",
    "process",
    "pid",
    "tid",
    "operation",
    "path",
    "result",
    "detail",
    "duration",
    "event_class",
)


class EventRows(Sequence[ProcmonRow]):
    """The events of a simulation, in time order, as a read-only sequence of rows.

    Backed by one polars frame (``.frame``: ``row``, ``time`` as int ns, ``process``,
    ``pid``, ``tid``, ``operation``, ``path``, ``result``, ``detail``, ``duration`` ns,
    ``event_class``) so a million rows cost no Python objects until indexed; ``rows[i]``
    is the :class:`ProcmonRow` of CSV data row ``i + 1``.
    """

    def __init__(self, frame: pl.DataFrame) -> None:
        self._full = frame

    @property
    def frame(self) -> pl.DataFrame:
        return self._full.select("row", *_WRITER_COLUMNS)

    def __len__(self) -> int:
        return self._full.height

    @overload
    def __getitem__(self, index: int) -> ProcmonRow: ...
    @overload
    def __getitem__(self, index: slice) -> EventRows: ...
    def __getitem__(self, index: int | slice) -> ProcmonRow | EventRows:
        if isinstance(index, slice):
            return EventRows(self._full[index])
        values = self._full.select(_WRITER_COLUMNS).row(index)
        time, process, pid, tid, operation, path, result, detail, duration, cls = values
        return ProcmonRow(
            time, process, pid, operation, path, result, detail,
            tid=tid, duration=duration, event_class=cls,
        )  # fmt: skip

    def __iter__(self) -> Iterator[ProcmonRow]:
        for t, proc, pid, tid, op, path, result, detail, dur, cls in self._full.select(
            _WRITER_COLUMNS
        ).iter_rows():
            yield ProcmonRow(t, proc, pid, op, path, result, detail, tid, dur, cls)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EventRows) and self.frame.equals(other.frame)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EventRows({len(self)} events)"


@dataclass(frozen=True, eq=True)
class Simulation:
    """A simulated trace: its events (``rows``) and the answer key (``truth``).

    ``truth`` is the JSON-ready dict :meth:`write_truth` writes; treat it as read-only.
    """

    family: str
    seed: int
    params: dict[str, Any]
    rows: EventRows
    truth: dict[str, Any]

    def write_csv(
        self,
        path: str | os.PathLike[str],
        *,
        columns: Sequence[str] = SIMULATION_COLUMNS,
        clock_12h: bool = True,
    ) -> Path:
        """Write the events as Procmon's CSV export (default: the 7 default columns +
        TID, Date & Time, Duration); data row *n* is truth row *n*."""
        return write_procmon_csv(self.rows, path, columns=columns, clock_12h=clock_12h)

    def write_clipboard(self, path: str | os.PathLike[str], *, newline: str = "\r\n") -> Path:
        """Write the events as Procmon's clipboard text (7 tab-separated fields, no header)."""
        return write_clipboard_rows(self.rows, path, newline=newline)

    def write_truth(self, path: str | os.PathLike[str]) -> Path:
        """Write :attr:`truth` as UTF-8 JSON (indented, atomic)."""
        text = json.dumps(self.truth, indent=2, ensure_ascii=False) + "\n"
        with atomic_output(path) as handle:
            handle.write(text.encode("utf-8"))
        return Path(path)

    def to_frame(self) -> pl.DataFrame:
        """The events in :data:`traceaudit.schema.EVENT_SCHEMA`, as a correct reader of
        :meth:`write_csv`'s file should produce them (Detail fields filled from the model)."""
        frame = self.rows._full.with_columns(
            pl.col("time").cast(pl.Datetime("ns")),
            pl.col("duration").cast(pl.Duration("ns")),
        )
        return conform_events(frame)


# ---------------------------------------------------------------------------- assembly


def _base_ns(day: str | Date) -> int:
    """11:27:00 local on ``day`` as trace nanoseconds."""
    try:
        parsed = day if isinstance(day, Date) else Date.fromisoformat(day)
    except (TypeError, ValueError):
        raise UsageError(
            f"date {day!r} is not a date; give it as YYYY-MM-DD (e.g. {DEFAULT_DATE})"
        ) from None
    return to_ns(datetime(parsed.year, parsed.month, parsed.day, 11, 27, 0))


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, not {seed!r}")


def _durations(frame: pl.DataFrame, rng: np.random.Generator) -> pl.Series:
    """Operation durations (ns) for the events that have none: tens of microseconds."""
    ops = frame["operation"].to_numpy()
    median = np.where(ops == "CreateFile", 35_000.0, np.where(ops == "CloseFile", 6_000.0, 9_000.0))
    drawn = (
        np.maximum((median * rng.lognormal(0.0, 0.7, len(ops))).astype(np.int64) // 100, 1) * 100
    )
    return frame["duration"].fill_null(pl.Series(drawn))


def _assemble(builder: TraceBuilder, noise: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Merge story and noise events, sort, make times unique, number the rows."""
    frame = pl.concat([builder.frame(), noise], how="vertical").sort(["time", "seq"])
    step = np.arange(frame.height, dtype=np.int64) * 100
    times = np.maximum.accumulate(frame["time"].to_numpy() - step) + step
    return frame.with_columns(
        pl.Series("time", times, dtype=pl.Int64),
        _durations(frame, rng).alias("duration"),
        pl.int_range(1, frame.height + 1, dtype=pl.UInt32).alias("row"),
    ).select("row", *EV_SCHEMA)


def _finish(
    family: str,
    seed: int,
    params: dict[str, Any],
    builder: TraceBuilder,
    noise: pl.DataFrame,
    rng: np.random.Generator,
) -> Simulation:
    frame = _assemble(builder, noise, rng)
    truth = {"family": family, "seed": seed, "params": params}
    truth.update(_truth(frame, builder))
    return Simulation(family, seed, params, EventRows(frame), truth)


def _truth(frame: pl.DataFrame, builder: TraceBuilder) -> dict[str, Any]:
    return compute_truth(
        frame, builder.expectations, builder.leave_open, builder.mapped_by, builder.restarts
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, RetrySchedule):
        return value.to_dict()
    if isinstance(value, Date):
        return value.isoformat()
    return value


def _story_params(family: str, params: dict[str, Any]) -> None:
    """Refuse parameters the family does not take, naming the ones it does."""
    accepted = [
        n
        for n, p in inspect.signature(FAMILIES[family]).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    ]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UsageError(
            f"family {family!r} takes no parameter(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted)}, plus date and noise_events"
        )


def simulate(
    family: str,
    *,
    seed: int,
    date: str | Date = DEFAULT_DATE,
    noise_events: int = 60,
    **params: Any,
) -> Simulation:
    """One scenario of ``family`` with its decoys and ``noise_events`` background events.

    ``params`` are the family's own parameters (see the story functions in
    ``traceaudit.simulation.families``; ``None`` or omitted means chosen from the seed);
    the truth records every parameter as actually used. A filtered-holder trace holds
    only the failing process's events, as a capture filtered to it would.
    """
    if family not in FAMILIES:
        raise UsageError(f"unknown family {family!r}; choose one of: {', '.join(FAMILY_NAMES)}")
    _check_seed(seed)
    _story_params(family, params)
    if noise_events < 0:
        raise UsageError(f"noise_events must be >= 0, not {noise_events}")
    base = _base_ns(date)
    builder = TraceBuilder(np.random.default_rng([seed, 0]))
    try:
        story: Story = FAMILIES[family](
            builder, base + ms(builder.rng.uniform(600, 1000)), **params
        )
    except ValueError as exc:
        raise UsageError(f"family {family!r}: {exc}") from None
    builder.finish_story()
    times = [event[0] for event in builder.events]
    noise_rng = np.random.default_rng([seed, 1])
    procs = (
        [builder.resolve(story.filtered_to)]
        if story.filtered_to
        else [builder.shared(n) for n in NOISE_PROCESSES]
    )
    noise = generate_noise(
        noise_rng, noise_events, procs=procs, homes=[f"C:\\Users\\{story.user}"],
        start_ns=min(base, min(times)), end_ns=max(times) + ms(noise_rng.uniform(50, 400)),
        seq_start=len(builder.events), hid_start=len(builder.handles),
    )  # fmt: skip
    all_params = {"date": _jsonable(_date_of(date)), "noise_events": noise_events}
    all_params.update({k: _jsonable(v) for k, v in story.params.items()})
    return _finish(family, seed, all_params, builder, noise, noise_rng)


def _date_of(day: str | Date) -> Date:
    return day if isinstance(day, Date) else Date.fromisoformat(day)


def _check_mix(n_events: int, seed: int, scenario_share: float) -> None:
    _check_seed(seed)
    if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 0:
        raise UsageError(f"n_events must be a non-negative integer, not {n_events!r}")
    if not 0.0 <= scenario_share <= 1.0:
        raise UsageError(f"scenario_share must be between 0 and 1, not {scenario_share!r}")


def simulate_mix(
    n_events: int,
    *,
    seed: int,
    date: str | Date = DEFAULT_DATE,
    scenario_share: float = _MIX_SCENARIO_SHARE,
) -> Simulation:
    """Exactly ``n_events`` events: scenarios of every family (``scenario_share`` of the
    events, a quarter by default) interleaved at random times, and background noise for
    the rest.

    The trace spans about ``n_events / 2000`` seconds (at least a minute), the rate of a
    busy desktop. All scenario paths are unique, so the truth is the union of the
    scenarios' truths; it is still recomputed from the merged events, not assumed.

    Beyond about 1.6 million events the 15,700 original process and thread ids are all
    handed out and ids are recycled (see :class:`~traceaudit.simulation.story.IdPool`):
    a pid comes back only a minute or more after every event of its earlier process.
    The whole trace is held in memory (about a gigabyte per million events); for larger
    traces write them with :func:`write_mix_csv`.
    """
    _check_mix(n_events, seed, scenario_share)
    part = _mix_part(
        n_events, seed=seed, index=0, base=_base_ns(date), scenario_share=scenario_share,
        identities=Identities(), user=None,
    )  # fmt: skip
    params = {
        "n_events": n_events, "date": _date_of(date).isoformat(), "scenario_share": scenario_share,
        "user": part.user, "scenarios": part.counts,
    }  # fmt: skip
    return _finish("mix", seed, params, part.builder, part.noise, part.noise_rng)


@dataclass
class _MixPart:
    """One mix (a whole trace, or one chunk of a streamed one) before assembly."""

    builder: TraceBuilder
    noise: pl.DataFrame
    noise_rng: np.random.Generator
    user: str
    counts: dict[str, int]


def _mix_part(
    n_events: int,
    *,
    seed: int,
    index: int,
    base: int,
    scenario_share: float,
    identities: Identities,
    user: str | None,
) -> _MixPart:
    """Scenarios and noise for ``n_events`` events from ``base`` on.

    Part 0 draws from the seed's streams ``[seed, 0]`` (stories) and ``[seed, 1]``
    (noise) and picks the user; part ``k`` of a streamed trace from ``[seed, 0, k]`` and
    ``[seed, 1, k]``, with the user, ids, shared processes and names of the parts before.
    """
    keys = ([seed, 0], [seed, 1]) if index == 0 else ([seed, 0, index], [seed, 1, index])
    builder = TraceBuilder(np.random.default_rng(keys[0]), identities)
    rng = builder.rng
    span = ms(max(60_000.0, 1000.0 * n_events / _MIX_EVENTS_PER_SECOND))
    if user is None:
        user = builder.choice(USERS)
    families, weights = list(_MIX_WEIGHTS), np.array(list(_MIX_WEIGHTS.values()))
    counts = dict.fromkeys(families, 0)
    budget, misses = int(n_events * scenario_share), 0
    latest = base + span
    while len(builder.events) < budget and misses < 20:
        family = families[int(rng.choice(len(families), p=weights / weights.sum()))]
        point = builder.checkpoint()
        t0 = base + ms(1000) + int(rng.integers(0, max(span - ms(25_000), ms(1000)) // 100)) * 100
        FAMILIES[family](builder, t0, **_mix_params(family, user, rng))
        if len(builder.events) > n_events:
            builder.rollback(point)
            misses += 1
            continue
        counts[family] += 1
        latest = max(latest, *(event[0] for event in builder.events[point.events :]))
    noise_rng = np.random.default_rng(keys[1])
    noise = generate_noise(
        noise_rng, n_events - len(builder.events), procs=[builder.shared(n) for n in NOISE_PROCESSES],
        homes=[f"C:\\Users\\{user}"], start_ns=base, end_ns=latest,
        seq_start=len(builder.events), hid_start=len(builder.handles),
    )  # fmt: skip
    return _MixPart(builder, noise, noise_rng, user, counts)


def write_mix_csv(
    path: str | os.PathLike[str],
    n_events: int,
    *,
    seed: int,
    date: str | Date = DEFAULT_DATE,
    scenario_share: float = _MIX_SCENARIO_SHARE,
    chunk_events: int = 1_000_000,
    truth_path: str | os.PathLike[str] | None = None,
    columns: Sequence[str] = SIMULATION_COLUMNS,
    clock_12h: bool = True,
) -> Path:
    """Write a mixed trace of exactly ``n_events`` events as Procmon CSV, chunk by chunk.

    Memory and time per event stay flat whatever the size (a hundred million events make
    a 25 GB file): the trace is made as ``ceil(n_events / chunk_events)`` mixes of equal
    size, one after another, and only one is in memory at a time. Each chunk is a mix
    like :func:`simulate_mix`'s (about 2000 events a second): it starts where the previous
    one ended (time is continuous and every time unique), keeps the shared processes and
    the user, recycles process ids (never two live processes with one pid), and never
    repeats a scenario path. With ``n_events <= chunk_events`` the file is byte for byte
    ``simulate_mix(n_events, …).write_csv(path, …)``.

    ``truth_path``: also write the ground truth, as JSON lines, one per chunk: the truth
    of that chunk (the shape of :attr:`Simulation.truth`, rows numbered in the whole
    file) plus ``chunk``, ``first_row`` and ``n_events``. Scenarios never span chunks,
    so together the lines are the truth of the whole trace. Computing it costs about a
    third more time. Both files are written atomically (temporary file, then rename).
    """
    _check_mix(n_events, seed, scenario_share)
    if isinstance(chunk_events, bool) or not isinstance(chunk_events, int) or chunk_events < 1:
        raise UsageError(f"chunk_events must be a positive integer, not {chunk_events!r}")
    columns = tuple(columns)
    _check_columns(columns)
    chunks = max(1, -(-n_events // chunk_events))
    sizes = [n_events // chunks + (i < n_events % chunks) for i in range(chunks)]
    identities = Identities()
    base, user, first_row, origin = _base_ns(date), None, 1, None
    with ExitStack() as stack:
        out = stack.enter_context(atomic_output(path))
        truth_out = stack.enter_context(atomic_output(truth_path)) if truth_path else None
        for index, size in enumerate(sizes):
            part = _mix_part(
                size, seed=seed, index=index, base=base, scenario_share=scenario_share,
                identities=identities, user=user,
            )  # fmt: skip
            user = part.user
            frame = _assemble(part.builder, part.noise, part.noise_rng)
            if frame.height and frame["time"][0] < base:
                raise SimulationBug(f"chunk {index} starts before the chunk before it ends")
            if truth_out is not None:
                params = {
                    "n_events": size, "date": _date_of(date).isoformat(),
                    "scenario_share": scenario_share, "user": user, "scenarios": part.counts,
                }  # fmt: skip
                line = {"family": "mix", "seed": seed, "params": params}
                line.update(_shift_rows(_truth(frame, part.builder), first_row - 1))
                line.update(chunk=index, first_row=first_row, n_events=size)
                truth_out.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
            part.builder.retire()
            if origin is None and frame.height:
                origin = int(frame["time"][0])
            _write_chunk(out, frame, columns, clock_12h, header=index == 0, origin=origin)
            if frame.height:
                base = int(frame["time"][-1]) + 100
            identities.ids.prune(base)
            first_row += frame.height
            del part, frame
    return Path(path)


def _write_chunk(
    out: Any,
    frame: pl.DataFrame,
    columns: Sequence[str],
    clock_12h: bool,
    *,
    header: bool,
    origin: int | None,
) -> None:
    """Append ``frame``'s rows to an open Procmon CSV (the BOM and header first)."""
    rows = _rows_frame(frame.select(_WRITER_COLUMNS))
    exprs = [
        _relative_expr(pl.col("time") - origin).fill_null("").alias(c)
        if c == "Relative Time" and origin is not None
        else _column_expr(c, clock_12h)
        for c in columns
    ]
    rows.select(exprs).write_csv(
        out, include_header=header, include_bom=header, quote_style="always",
        line_terminator="\r\n",
    )  # fmt: skip


def _shift_rows(truth: dict[str, Any], offset: int) -> dict[str, Any]:
    """The truth of a chunk with its rows numbered in the whole file."""
    if not offset:
        return truth
    for c in truth["conflicts"]:
        c["row"] += offset
        for b in c["blockers"]:
            b["open_row"] += offset
            if b["close_row"] is not None:
                b["close_row"] += offset
        for section in c["sections"]:
            section["row"] += offset
    for chain in truth["retry_chains"]:
        chain["first_row"] += offset
        chain["last_row"] += offset
    return truth


def _mix_params(family: str, user: str, rng: np.random.Generator) -> dict[str, Any]:
    """Per-scenario variety in a mix: sizes, modes, the odd case-variant path, repeated
    oplock probes (mapped-section picks its holder itself)."""
    params: dict[str, Any] = {"user": user}
    if family == "extract-rename":
        params["n_files"] = int(rng.integers(4, 60))
    elif family == "replace-under-indexer":
        params["mode"] = ("rename", "write", "delete")[int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
        params["case_variant"] = bool(rng.random() < 0.1)
    elif family == "oplock-probe":
        params["probes"] = 1 + int(rng.random() < 0.25)
    return params
