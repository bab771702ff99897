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


@dataclass
class _Checkpoint:
    events: int
    handles: int
    leave_open: set[int] = field(default_factory=set)
    exited: set[int] = field(default_factory=set)


class TraceBuilder:
    """Collects one simulation's events and the handle model behind them."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.events: list[tuple[Any, ...]] = []
        self.handles: list[Handle] = []
        self.expectations: dict[int, tuple[int, ...]] = {}
        self.mapped_by: dict[int, tuple[int, ...]] = {}
        self.leave_open: set[int] = set()
        self.exited: set[int] = set()
        self._shared: dict[str, Proc] = {}
        self._ids: set[int] = {4}
        self._tokens: set[str] = set()

    # ------------------------------------------------------------------ identities

    def _new_id(self, low: int = 300, high: int = 16_000) -> int:
        while True:
            value = int(self.rng.integers(low, high)) * 4
            if value not in self._ids:
                self._ids.add(value)
                return value

    def spawn(self, name: str, threads: int = 2) -> Proc:
        """A new process instance (fresh pid) of ``name``."""
        pid = 4 if name == "System" else self._new_id()
        return Proc(name, pid, tuple(self._new_id() for _ in range(threads)))

    def shared(self, name: str, threads: int = 6) -> Proc:
        """The one instance of a system-wide process (``MsMpEng.exe``, ``explorer.exe``…)."""
        if name not in self._shared:
            self._shared[name] = self.spawn(name, threads)
        return self._shared[name]

    def token(self, length: int = 6, alphabet: str = _TOKEN_ALPHABET) -> str:
        """A random name part never handed out before in this simulation."""
        while True:
            chars = self.rng.choice(list(alphabet), size=length)
            value = "".join(chars)
            if value not in self._tokens:
                self._tokens.add(value)
                return value

    def unique(self, base: str) -> str:
        """``base`` the first time, then ``base-2``, ``base-3``… (unique names per trace)."""
        value, n = base, 1
        while value.lower() in self._tokens:
            n += 1
            value = f"{base}-{n}"
        self._tokens.add(value.lower())
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
        self.leave_open.add(handle.hid)

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
        """Remember the current size, to undo a story that does not fit (see rollback)."""
        return _Checkpoint(
            len(self.events), len(self.handles), set(self.leave_open), set(self.exited)
        )

    def rollback(self, point: _Checkpoint) -> None:
        """Forget every event and handle appended since ``point``."""
        del self.events[point.events :]
        del self.handles[point.handles :]
        for seq in [s for s in self.expectations if s >= point.events]:
            del self.expectations[seq]
            self.mapped_by.pop(seq, None)
        self.leave_open = point.leave_open
        self.exited = point.exited

    def frame(self) -> pl.DataFrame:
        """The events as a frame with :data:`EV_SCHEMA` (append order)."""
        columns: Iterator[tuple[Any, ...]] = (
            zip(*self.events, strict=True) if self.events else iter(())
        )
        data = dict(zip(EV_SCHEMA, columns, strict=False))
        if not data:
            return pl.DataFrame(schema=EV_SCHEMA)
        return pl.DataFrame(data, schema=EV_SCHEMA)
