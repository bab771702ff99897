"""The simulator's event builder: scenario stories append events and model handles here.

A :class:`TraceBuilder` collects the events of one simulation as plain tuples (cheap to
append, turned into one polars frame at the end) together with the *model* the ground
truth is computed from: which event opened which handle with which access and share
bits, which event closed it, which failing event the story expects to be blocked by
which handles (and, for ``USER MAPPED FILE``, by which processes' mapped sections), and
which handles are meant to stay open to the end of the trace.

Stories give times as integer nanoseconds on the trace clock; every time is rounded down
to Procmon's 100 ns tick. Events need not be appended in time order: the simulation
sorts them by (time, append order) at the end, so a story must give causally ordered
events distinct times or append them in causal order.
"""

from __future__ import annotations

import bisect
import string
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from traceaudit.formats.procmon_text.csv_write import (
    event_class_of,
    format_detail_createfile,
    format_detail_process_exit,
    format_detail_readwrite,
    format_detail_rename,
)
from traceaudit.schema import (
    ACCESS_BITS,
    CREATE_OPTION_BITS,
    DETAIL_COLUMNS,
    EVENT_SCHEMA,
    SHARE_DELETE,
    SHARE_READ,
    SHARE_WRITE,
)

__all__ = [
    "OTHER",
    "OPEN",
    "CLOSE",
    "EV_SCHEMA",
    "Proc",
    "Handle",
    "RetrySchedule",
    "TraceBuilder",
    "ms",
    "us",
    "tick",
    "access_mask",
    "share_bits",
]

OTHER, OPEN, CLOSE = 0, 1, 2
"""Model kinds of an event: no handle effect, opens a handle, closes one."""

EV_SCHEMA: dict[str, pl.DataType] = {
    "time": pl.Int64(),  # integer ns on the trace's wall clock
    "seq": pl.Int64(),
    **{
        n: EVENT_SCHEMA[n]
        for n in ("process", "pid", "tid", "operation", "path", "result", "detail")
    },
    "duration": pl.Int64(),  # ns
    "event_class": EVENT_SCHEMA["event_class"],
    **{name: EVENT_SCHEMA[name] for name in DETAIL_COLUMNS},
    "_kind": pl.Int8(),
    "_handle": pl.Int64(),
    "_m_dir": pl.Boolean(),
    "_m_target_exists": pl.Boolean(),
}
"""Columns of the simulator's internal event frame. Underscored columns are the model
(never written to a trace); the rest mirror :data:`traceaudit.schema.EVENT_SCHEMA`."""

_SHARE_NAMES = {"Read": SHARE_READ, "Write": SHARE_WRITE, "Delete": SHARE_DELETE}
_TOKEN_ALPHABET = string.ascii_letters + string.digits
NANOID_ALPHABET = string.ascii_letters + string.digits + "_-"


def tick(ns: float) -> int:
    """``ns`` rounded down to Procmon's 100 ns tick."""
    return int(ns) // 100 * 100


def ms(value: float) -> int:
    """Milliseconds → nanoseconds on the 100 ns grid (at least one tick for value > 0)."""
    ns = tick(value * 1_000_000)
    return max(ns, 100) if value > 0 else ns


def us(value: float) -> int:
    """Microseconds → nanoseconds on the 100 ns grid (at least one tick for value > 0)."""
    ns = tick(value * 1_000)
    return max(ns, 100) if value > 0 else ns


def access_mask(names: Sequence[str]) -> int:
    """NT access mask of Procmon's ``Desired Access`` names (``schema.ACCESS_BITS``)."""
    mask = 0
    for name in names:
        mask |= ACCESS_BITS[name]
    return mask


def share_bits(names: Sequence[str]) -> int:
    """FILE_SHARE_* bits of Procmon's ``ShareMode`` names (empty = ``None`` = 0)."""
    bits = 0
    for name in names:
        bits |= _SHARE_NAMES[name]
    return bits


def _option_bits(names: Sequence[str]) -> int:
    bits = 0
    for name in names:
        bits |= CREATE_OPTION_BITS[name]
    return bits


@dataclass(frozen=True)
class Proc:
    """A simulated process: image name, pid and the thread ids its events use."""

    name: str
    pid: int
    tids: tuple[int, ...]

    @property
    def main_tid(self) -> int:
        return self.tids[0]


@dataclass
class Handle:
    """A modelled open handle: who opened what, with which rights, from when to when."""

    hid: int
    proc: Proc
    path: str
    access: int
    share: int
    open_ns: int
    close_ns: int | None = None

    def open_at(self, t: int) -> bool:
        """Open at instant ``t``: opened strictly before and not closed at or before."""
        return self.open_ns < t and (self.close_ns is None or self.close_ns > t)


@dataclass(frozen=True)
class RetrySchedule:
    """How a simulated process retries a failed operation.

    Delay *n* (ms, 1-based) is ``initial·factor^(n-1)`` plus ``increment·(n-1)`` worth of
    linear growth, clamped to ``cap_ms``; retries stop after ``max_retries`` or once the
    summed delays would exceed ``budget_ms``. uv's rename retry is ``RetrySchedule(10, 2,
    max_retries=10)``: 10, 20, …, 5120 ms.
    """

    initial_ms: float = 10.0
    factor: float = 2.0
    increment_ms: float = 0.0
    cap_ms: float | None = None
    max_retries: int | None = 10
    budget_ms: float | None = None

    def __post_init__(self) -> None:
        if self.max_retries is None and self.budget_ms is None:
            raise ValueError("RetrySchedule needs max_retries or budget_ms, or it never ends")
        if self.initial_ms < 0 or self.factor < 0 or self.increment_ms < 0:
            raise ValueError(f"RetrySchedule delays cannot shrink below zero: {self}")
        for name in ("initial_ms", "factor", "increment_ms", "cap_ms", "budget_ms"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))

    def delays_ms(self) -> list[float]:
        """The delays before retry 1, 2, … (ms)."""
        delays: list[float] = []
        delay, total = self.initial_ms, 0.0
        while self.max_retries is None or len(delays) < self.max_retries:
            step = min(delay, self.cap_ms) if self.cap_ms is not None else delay
            if self.budget_ms is not None and total + step > self.budget_ms:
                break
            delays.append(step)
            total += step
            delay = delay * self.factor + self.increment_ms
        return delays

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def coerce(
        cls, value: RetrySchedule | dict[str, Any] | None, default: RetrySchedule
    ) -> RetrySchedule:
        """Accept a schedule, its ``to_dict()`` form, or ``None`` for ``default``."""
        if value is None:
            return default
        if isinstance(value, RetrySchedule):
            return value
        return cls(**value)


ID_LOW, ID_HIGH = 300, 16_000
"""Process and thread ids are ``4 * k`` for ``k`` drawn from ``[ID_LOW, ID_HIGH)`` (15,700
values) until every one of them has been handed out; then ids are recycled."""
REUSE_GAP_NS = 60 * 1_000_000_000
"""How long an id stays unused between two processes that carry it: longer than the
truth's 30 s retry gap, so two processes with one pid never join one retry chain."""
FOREVER = 2**62
"""An interval end for ids that stay busy to the end of the trace (trace ns)."""
_PROBES = 64
_SECTION_RESULTS = frozenset(
    {"SUCCESS", "FILE LOCKED WITH ONLY READERS", "FILE LOCKED WITH WRITERS"}
)


class IdPool:
    """The process and thread ids of one trace (one space for both, as on Windows).

    Until the first 15,700 ids run out, ids are drawn at random from ``4 * [300, 16000)``
    and never repeat (the draws are exactly those of earlier versions, so traces of that
    size are unchanged). From then on the pool *recycles*, as Windows does once a process
    has exited: a new process gets an id none of whose earlier processes is anywhere near
    (no event of theirs within :data:`REUSE_GAP_NS` before the new process's first event
    or after its last), falling back to a fresh id above everything handed out so far
    (the range grows: Windows pids go up to ``4 * 2**20`` and beyond). Ids stay out of
    reach for good when their process is system-wide (a shared process), keeps a handle
    open to the end of the trace, or keeps a mapped section it never ends by exiting.

    Busy intervals are kept per id (``busy``: sorted, disjoint ``(first, last)`` trace
    times); :meth:`prune` forgets those that cannot matter any more when a trace is made
    in time order (chunk by chunk), so the pool stays small.
    """

    def __init__(self) -> None:
        self.used: set[int] = {4}
        self.recycling = False
        self.low = ID_LOW  # recycled ids are probed in 4 * [low, top)
        self.top = ID_HIGH
        self.permanent: set[int] = {4}
        self.busy: dict[int, list[tuple[int, int]]] = {}
        self.exited: set[int] = set()

    def draw(self, rng: np.random.Generator) -> int | None:
        """A never-used id from the original range, or None once all are handed out."""
        if len(self.used) > ID_HIGH - ID_LOW:
            return None
        while True:
            value = int(rng.integers(ID_LOW, ID_HIGH)) * 4
            if value not in self.used:
                self.used.add(value)
                return value

    def fresh(self) -> int:
        """An id above every id handed out so far."""
        value = self.top * 4
        self.top += 1
        return value

    def is_free(self, value: int, first: int, last: int) -> bool:
        """No process carrying ``value`` comes within the reuse gap of ``[first, last]``."""
        if value in self.permanent:
            return False
        intervals = self.busy.get(value)
        if not intervals:
            return True
        i = bisect.bisect_right(intervals, (last + REUSE_GAP_NS, FOREVER))
        return i == 0 or intervals[i - 1][1] + REUSE_GAP_NS < first

    def find(self, rng: np.random.Generator, first: int, last: int, *, avoid_exited: bool) -> int:
        """A recycled id free over ``[first, last]`` (random probes), else a fresh one.

        ``avoid_exited``: not an id whose process ever exited (for a process that maps a
        file: readers end a pid's sections at its first Process Exit in the trace).
        """
        for _ in range(_PROBES):
            value = int(rng.integers(self.low, self.top)) * 4
            if avoid_exited and value in self.exited:
                continue
            if self.is_free(value, first, last):
                return value
        return self.fresh()

    def register(self, value: int, first: int, last: int) -> None:
        """``value`` is carried by a process from ``first`` to ``last`` (trace ns)."""
        if value in self.permanent:
            return
        if last >= FOREVER:
            self.permanent.add(value)
            self.busy.pop(value, None)
            return
        bisect.insort(self.busy.setdefault(value, []), (first, last))

    def prune(self, before: int) -> None:
        """Forget busy intervals that end more than the reuse gap before ``before``."""
        horizon = before - REUSE_GAP_NS
        for value in list(self.busy):
            kept = [iv for iv in self.busy[value] if iv[1] >= horizon]
            if kept:
                self.busy[value] = kept
            else:
                del self.busy[value]


@dataclass
class Identities:
    """What stays the same across the parts of one trace made by several builders (the
    chunks of a streamed trace): ids, the shared processes, the names handed out."""

    ids: IdPool = field(default_factory=IdPool)
    shared: dict[str, Proc] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    suffix: dict[str, int] = field(default_factory=dict)


@dataclass
class _Checkpoint:
    events: int
    handles: int
    expectations: int
    leave_open: int
    exited: int
    procs: int


@dataclass
class _Activity:
    """What one process did in a stretch of events: first and last time, whether it
    created a section and whether it exited."""

    first: int
    last: int
    section: bool = False
    exit: bool = False


class TraceBuilder:
    """Collects one simulation's events and the handle model behind them.

    ``identities`` carries ids, shared processes and names over from the builder of the
    previous part of the same trace (default: a trace of its own).
    """

    def __init__(self, rng: np.random.Generator, identities: Identities | None = None) -> None:
        self.rng = rng
        self.identities = identities if identities is not None else Identities()
        self.events: list[tuple[Any, ...]] = []
        self.handles: list[Handle] = []
        self.expectations: dict[int, tuple[int, ...]] = {}
        self.mapped_by: dict[int, tuple[int, ...]] = {}
        self.leave_open: set[int] = set()
        self.exited: set[int] = set()
        self.restarts: dict[int, list[int]] = {}
        """Once ids are recycled: pid → the first event time of each process that carried
        it (for the truth engine: a pid that exited may come back as a new process)."""
        self._leave_log: list[int] = []
        self._exit_log: list[int] = []
        self._procs: list[Proc] = []  # spawned in the current story
        self._finished: list[Proc] = []  # of finished stories, ids not yet registered
        self._story_events = 0
        self._story_leave = 0
        self._story_exit = 0
        self._placeholder = 0
        self._bound: dict[int, int] = {}

    # ------------------------------------------------------------------ identities

    def _new_id(self) -> int:
        """The next id: drawn at random while the original range lasts; once it has run
        out, a placeholder (negative) that :meth:`finish_story` replaces by a recycled id
        when the story's times are known."""
        pool = self.identities.ids
        value = pool.draw(self.rng)
        if value is not None:
            return value
        if not pool.recycling:
            self._register_finished()
            pool.recycling = True
        self._placeholder -= 1
        return self._placeholder

    def _permanent_id(self) -> int:
        pool = self.identities.ids
        value = pool.draw(self.rng)
        if value is None:
            value = pool.fresh()
        pool.permanent.add(value)
        return value

    def spawn(self, name: str, threads: int = 2) -> Proc:
        """A new process instance (fresh pid) of ``name``."""
        pid = 4 if name == "System" else self._new_id()
        proc = Proc(name, pid, tuple(self._new_id() for _ in range(threads)))
        self._procs.append(proc)
        return proc

    def shared(self, name: str, threads: int = 6) -> Proc:
        """The one instance of a system-wide process (``MsMpEng.exe``, ``explorer.exe``…):
        one pid for the whole trace, never handed to another process."""
        known = self.identities.shared
        if name not in known:
            pid = 4 if name == "System" else self._permanent_id()
            known[name] = Proc(name, pid, tuple(self._permanent_id() for _ in range(threads)))
        return known[name]

    def token(self, length: int = 6, alphabet: str = _TOKEN_ALPHABET) -> str:
        """A random name part never handed out before in this simulation."""
        tokens = self.identities.tokens
        while True:
            chars = self.rng.choice(list(alphabet), size=length)
            value = "".join(chars)
            if value not in tokens:
                tokens.add(value)
                return value

    def unique(self, base: str) -> str:
        """``base`` the first time, then ``base-2``, ``base-3``… (unique names per trace)."""
        tokens, suffix = self.identities.tokens, self.identities.suffix
        key = base.lower()
        # every name below the remembered suffix is taken: start there, not at 1
        n = suffix.get(key, 1)
        value = base if n == 1 else f"{base}-{n}"
        while value.lower() in tokens:
            n += 1
            value = f"{base}-{n}"
        tokens.add(value.lower())
        suffix[key] = n
        return value

    def choice(self, options: Sequence[Any]) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def lognormal_ms(self, median: float, sigma: float) -> float:
        return float(median * np.exp(sigma * self.rng.standard_normal()))

    # ------------------------------------------------------------------ raw events

    def emit(
        self,
        t: int,
        proc: Proc,
        operation: str,
        path: str,
        result: str = "SUCCESS",
        detail: str = "",
        *,
        tid: int | None = None,
        kind: int = OTHER,
        handle: int = -1,
        access: int | None = None,
        share: int | None = None,
        disposition: str | None = None,
        options: int | None = None,
        is_directory: bool | None = None,
        open_result: str | None = None,
        rename_target: str | None = None,
        replace_if_exists: bool | None = None,
        delete_flag: bool | None = None,
        offset: int | None = None,
        length: int | None = None,
        m_dir: bool = False,
        m_target_exists: bool = False,
        duration: int | None = None,
    ) -> int:
        """Append one event; return its sequence number (append order)."""
        seq = len(self.events)
        delete_on_close = (
            None if options is None else bool(options & CREATE_OPTION_BITS["Delete On Close"])
        )
        self.events.append(
            (
                tick(t),
                seq,
                proc.name,
                proc.pid,
                proc.main_tid if tid is None else tid,
                operation,
                path,
                result,
                detail,
                duration,
                event_class_of(operation),
                access,
                share,
                disposition,
                options,
                is_directory,
                delete_on_close,
                open_result,
                rename_target,
                replace_if_exists,
                delete_flag,
                offset,
                length,
                kind,
                handle,
                m_dir,
                m_target_exists,
            )
        )
        return seq

    # ------------------------------------------------------------------ file operations

    def _create_fields(
        self,
        access_names: Sequence[str],
        share_names: Sequence[str],
        disposition: str,
        options: Sequence[str],
    ) -> dict[str, Any]:
        opts = _option_bits(options)
        is_dir = (
            True if "Directory" in options else False if "Non-Directory File" in options else None
        )
        return {
            "access": access_mask(access_names),
            "share": share_bits(share_names),
            "disposition": disposition,
            "options": opts,
            "is_directory": is_dir,
        }

    def open(
        self,
        t: int,
        proc: Proc,
        path: str,
        access_names: Sequence[str],
        share_names: Sequence[str],
        *,
        disposition: str = "Open",
        options: Sequence[str] = ("Synchronous IO Non-Alert", "Non-Directory File"),
        open_result: str = "Opened",
        attributes: str = "n/a",
        allocation_size: int | str = "n/a",
        tid: int | None = None,
    ) -> Handle:
        """A successful CreateFile: emit it and model the handle it opens."""
        t = tick(t)
        fields = self._create_fields(access_names, share_names, disposition, options)
        handle = Handle(len(self.handles), proc, path, fields["access"], fields["share"], t)
        self.handles.append(handle)
        detail = format_detail_createfile(
            access_names,
            disposition,
            options,
            share_names,
            open_result,
            attributes=attributes,
            allocation_size=allocation_size,
        )
        self.emit(
            t, proc, "CreateFile", path, "SUCCESS", detail, tid=tid, kind=OPEN,
            handle=handle.hid, open_result=open_result, **fields,
        )  # fmt: skip
        return handle

    def fail_open(
        self,
        t: int,
        proc: Proc,
        path: str,
        access_names: Sequence[str],
        share_names: Sequence[str],
        result: str,
        *,
        expect: Sequence[Handle] = (),
        disposition: str = "Open",
        options: Sequence[str] = ("Synchronous IO Non-Alert", "Non-Directory File"),
        attributes: str = "n/a",
        allocation_size: int | str = "n/a",
        tid: int | None = None,
    ) -> int:
        """A failed CreateFile (no OpenResult, no handle); ``expect`` = modelled blockers."""
        fields = self._create_fields(access_names, share_names, disposition, options)
        detail = format_detail_createfile(
            access_names, disposition, options, share_names, None,
            attributes=attributes, allocation_size=allocation_size,
        )  # fmt: skip
        seq = self.emit(t, proc, "CreateFile", path, result, detail, tid=tid, **fields)
        return self.expect(seq, expect)

    def expect(
        self, seq: int, blockers: Sequence[Handle] = (), *, mapped_by: Sequence[Proc] = ()
    ) -> int:
        """Plan event ``seq`` as a failure: ``blockers`` are the modelled handles the story
        expects to block it; ``mapped_by`` the processes whose mapped sections it expects
        to be in the way of a ``USER MAPPED FILE`` failure. Returns ``seq``."""
        self.expectations[seq] = tuple(h.hid for h in blockers)
        self.mapped_by[seq] = tuple(sorted({p.pid for p in mapped_by}))
        return seq

    def fail(
        self,
        t: int,
        proc: Proc,
        operation: str,
        path: str,
        result: str,
        detail: str = "",
        *,
        expect: Sequence[Handle] = (),
        mapped_by: Sequence[Proc] = (),
        tid: int | None = None,
    ) -> int:
        """A failed operation other than CreateFile or rename (e.g. SetEndOfFile → USER
        MAPPED FILE), planned with :meth:`expect`."""
        seq = self.emit(t, proc, operation, path, result, detail, tid=tid)
        return self.expect(seq, expect, mapped_by=mapped_by)

    def exit_process(self, t: int, proc: Proc, *, tid: int | None = None) -> int:
        """``Process Exit`` of ``proc`` (event class Process, no path): its mapped sections
        end here. Its handles must be closed before; it must not act afterwards."""
        if proc.pid in self.exited:
            raise RuntimeError(f"simulator bug: {proc.name} ({proc.pid}) exits twice")
        self.exited.add(proc.pid)
        self._exit_log.append(proc.pid)
        rng = self.rng
        private = int(rng.integers(2_000, 60_000)) * 4096
        working = int(rng.integers(4_000, 90_000)) * 4096
        detail = format_detail_process_exit(
            0,
            user_ns=int(rng.integers(1, 400)) * 156_250 * 100,
            kernel_ns=int(rng.integers(1, 200)) * 156_250 * 100,
            private_bytes=private,
            peak_private_bytes=private + int(rng.integers(0, 4_000)) * 4096,
            working_set=working,
            peak_working_set=working + int(rng.integers(0, 8_000)) * 4096,
        )
        return self.emit(t, proc, "Process Exit", "", "SUCCESS", detail, tid=tid)

    def close(self, t: int, handle: Handle, *, tid: int | None = None) -> int:
        """CloseFile (IRP_MJ_CLEANUP) of ``handle``: its share-mode lock ends here."""
        if handle.close_ns is not None:
            raise RuntimeError(f"simulator bug: handle {handle.hid} closed twice")
        handle.close_ns = tick(t)
        if handle.close_ns <= handle.open_ns:
            raise RuntimeError(f"simulator bug: handle {handle.hid} closes before it opens")
        return self.emit(
            t, handle.proc, "CloseFile", handle.path, tid=tid, kind=CLOSE, handle=handle.hid
        )

    def keep_open(self, handle: Handle) -> None:
        """Mark ``handle`` as deliberately open until the end of the trace (censored)."""
        if handle.hid not in self.leave_open:
            self.leave_open.add(handle.hid)
            self._leave_log.append(handle.hid)

    def rename(
        self,
        t: int,
        proc: Proc,
        path: str,
        target: str,
        *,
        replace: bool,
        result: str,
        is_dir: bool,
        target_exists: bool,
        expect: Sequence[Handle] = (),
        tid: int | None = None,
    ) -> int:
        """SetRenameInformationFile of ``path`` to ``target`` with the given result."""
        seq = self.emit(
            t, proc, "SetRenameInformationFile", path, result,
            format_detail_rename(target, replace), tid=tid, rename_target=target,
            replace_if_exists=replace, m_dir=is_dir, m_target_exists=target_exists,
        )  # fmt: skip
        if result != "SUCCESS":
            self.expect(seq, expect)
        return seq

    def readwrite(
        self,
        t: int,
        handle: Handle,
        operation: str,
        offset: int,
        length: int,
        *,
        result: str = "SUCCESS",
        io_flags: Sequence[str] = (),
        tid: int | None = None,
    ) -> int:
        """ReadFile/WriteFile on ``handle``; FAST IO DISALLOWED rows carry no Priority."""
        priority = None if result == "FAST IO DISALLOWED" else "Normal"
        detail = format_detail_readwrite(offset, length, io_flags=io_flags, priority=priority)
        return self.emit(
            t, handle.proc, operation, handle.path, result, detail, tid=tid,
            offset=offset, length=length,
        )  # fmt: skip

    # ------------------------------------------------------------------ scenario helpers

    def avoid(self, t: int, handles: Sequence[Handle]) -> int:
        """``t`` moved forward tick by tick until no handle opens or closes at it.

        Keeps "open at the failure instant" unambiguous: the simulator never puts a
        decisive event on the same tick as a relevant open or close.
        """
        t = tick(t)
        edges = {h.open_ns for h in handles} | {
            h.close_ns for h in handles if h.close_ns is not None
        }
        while t in edges:
            t += 100
        return t

    def checkpoint(self) -> _Checkpoint:
        """Remember the current size, to undo a story that does not fit (see rollback).

        Ends the story before it (:meth:`finish_story`): a checkpoint starts a story.
        """
        self.finish_story()
        return _Checkpoint(
            len(self.events), len(self.handles), len(self.expectations),
            len(self._leave_log), len(self._exit_log), len(self._procs),
        )  # fmt: skip

    def rollback(self, point: _Checkpoint) -> None:
        """Forget every event, handle and process appended since ``point``."""
        if point.events < self._story_events:
            raise RuntimeError("simulator bug: rollback past a finished story")
        del self.events[point.events :]
        del self.handles[point.handles :]
        # expectations are added in event order: the newer ones are the last
        while len(self.expectations) > point.expectations:
            seq, _ = self.expectations.popitem()
            self.mapped_by.pop(seq, None)
        for hid in self._leave_log[point.leave_open :]:
            self.leave_open.discard(hid)
        del self._leave_log[point.leave_open :]
        for pid in self._exit_log[point.exited :]:
            self.exited.discard(pid)
        del self._exit_log[point.exited :]
        del self._procs[point.procs :]

    # ------------------------------------------------------------------ recycling ids

    def finish_story(self) -> None:
        """The current story is complete: its processes' ids are settled.

        Before the original id range runs out this only remembers the processes; after,
        each process of the story gets its ids for good (placeholders replaced in its
        events, expectations and exits) and the pool learns when they are busy.
        """
        procs, self._procs = self._procs, []
        if procs and self.identities.ids.recycling:
            self._settle(procs, self._story_events)
        else:
            self._finished.extend(procs)
        self._story_events = len(self.events)
        self._story_leave = len(self._leave_log)
        self._story_exit = len(self._exit_log)

    def retire(self) -> None:
        """This builder is done (the last part of a trace was made with it): every id it
        handed out is registered with the pool, for the builders of later parts."""
        self.finish_story()
        self._register_finished()

    def _activity(self, start: int, stop: int) -> dict[int, _Activity]:
        """Per pid, what its process did in events ``start:stop``."""
        acts: dict[int, _Activity] = {}
        for event in self.events[start:stop]:
            t, pid, op = event[0], event[3], event[5]
            act = acts.get(pid)
            if act is None:
                act = acts[pid] = _Activity(t, t)
            elif t < act.first:
                act.first = t
            elif t > act.last:
                act.last = t
            if op == "Process Exit":
                act.exit = True
            elif (op == "CreateFileMapping" and event[7] in _SECTION_RESULTS) or (
                op == "Load Image" and event[7] == "SUCCESS"
            ):
                act.section = True
        return acts

    def _held_pids(self, start: int, stop: int) -> set[int]:
        """Pids of processes with handles left open to the end (logged in start:stop)."""
        return {self.handles[hid].proc.pid for hid in self._leave_log[start:stop]}

    def _last_time(self, act: _Activity, pid: int, held: set[int]) -> int:
        """Until when a process's ids are busy: its last event, or for good when it keeps
        a handle open or a section it never ends by exiting."""
        return FOREVER if pid in held or (act.section and not act.exit) else act.last

    def _register_finished(self) -> None:
        """Register the ids of the finished stories' processes with the pool."""
        procs, self._finished = self._finished, []
        if not procs:
            return
        pool = self.identities.ids
        acts = self._activity(0, self._story_events)
        held = self._held_pids(0, self._story_leave)
        for proc in procs:
            act = acts.get(proc.pid)
            if act is None:  # never acted (or its story was undone): its ids stay free
                continue
            last = self._last_time(act, proc.pid, held)
            for value in (proc.pid, *proc.tids):
                pool.register(value, act.first, last)
            self.restarts.setdefault(proc.pid, []).append(act.first)
            if act.exit:
                pool.exited.add(proc.pid)

    def _settle(self, procs: list[Proc], start: int) -> None:
        """Give the story's processes (events ``start:``) their recycled ids."""
        pool = self.identities.ids
        acts = self._activity(start, len(self.events))
        held = self._held_pids(self._story_leave, len(self._leave_log))
        settled = []
        for proc in procs:
            act = acts.get(proc.pid)
            if act is None:  # never acted: nothing carries its ids
                continue
            first, last = act.first, self._last_time(act, proc.pid, held)
            settled.append((proc, act, first, last))
            # ids drawn for good before the range ran out (in this very story) go first
            for value in (proc.pid, *proc.tids):
                if value >= 0:
                    pool.register(value, first, last)
        mapping: dict[int, int] = {}
        for proc, act, first, last in settled:
            for value in (proc.pid, *proc.tids):
                if value < 0:
                    real = pool.find(self.rng, first, last, avoid_exited=act.section)
                    pool.register(real, first, last)
                    mapping[value] = real
            pid = mapping.get(proc.pid, proc.pid)
            self.restarts.setdefault(pid, []).append(first)
            if act.exit:
                pool.exited.add(pid)
        if mapping:
            self._rename_ids(mapping, start)

    def _rename_ids(self, mapping: dict[int, int], start: int) -> None:
        """Replace placeholder ids by real ones in events ``start:`` and the model."""
        events = self.events
        for i in range(start, len(events)):
            event = events[i]
            pid, tid = event[3], event[4]
            if pid < 0 or tid < 0:
                events[i] = (
                    *event[:3], mapping.get(pid, pid), mapping.get(tid, tid), *event[5:]
                )  # fmt: skip
        for seq in reversed(self.mapped_by):  # the newest first: those of this story
            if seq < start:
                break
            pids = self.mapped_by[seq]
            if any(p < 0 for p in pids):
                self.mapped_by[seq] = tuple(sorted(mapping.get(p, p) for p in pids))
        for i in range(self._story_exit, len(self._exit_log)):
            pid = self._exit_log[i]
            if pid < 0:
                self.exited.discard(pid)
                self._exit_log[i] = mapping.get(pid, pid)
                self.exited.add(self._exit_log[i])
        self._bound.update(mapping)

    def resolve(self, proc: Proc) -> Proc:
        """``proc`` with the ids its events carry (placeholders replaced), story ended."""
        self.finish_story()
        bound = self._bound
        return Proc(
            proc.name, bound.get(proc.pid, proc.pid), tuple(bound.get(t, t) for t in proc.tids)
        )

    def frame(self) -> pl.DataFrame:
        """The events as a frame with :data:`EV_SCHEMA` (append order); ends the story."""
        self.finish_story()
        columns: Iterator[tuple[Any, ...]] = (
            zip(*self.events, strict=True) if self.events else iter(())
        )
        data = dict(zip(EV_SCHEMA, columns, strict=False))
        if not data:
            return pl.DataFrame(schema=EV_SCHEMA)
        return pl.DataFrame(data, schema=EV_SCHEMA)
