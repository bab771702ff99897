"""Ground truth of a simulation, computed from the simulator's own handle model.

The rules are the analysis contract (see ``samples/README.md``), applied here to the
model rather than to parsed Detail strings, so the analysis can be checked against an
independent implementation:

* a handle lives from the CreateFile that opened it to its CloseFile (IRP_MJ_CLEANUP);
  a blocker is a handle open at the failure instant (opened strictly before, closed
  strictly after); the failing process's own handles count;
* failed CreateFile: handles on the same path (case-insensitive) whose access and share
  mode are incompatible with the new open in either direction; opens asking only for
  attributes (``Read Attributes``, ``Synchronize``…) never conflict;
* failed rename/delete of a directory: every handle on a path strictly below it,
  whatever its share mode; a rename with ReplaceIfExists onto an existing file: every
  handle on the target path;
* ``OPLOCK NOT GRANTED`` / ``CANNOT BREAK OPLOCK`` (whatever the operation): every
  handle on the same path that reads, writes or deletes (attribute-only handles do
  not), any process's; verdict ``oplock-probe`` (a probe that yielded, not a window);
* ``USER MAPPED FILE``: no handle blockers; the *sections* on the same path instead. A
  section is a ``CreateFileMapping`` (SUCCESS, ``FILE LOCKED WITH ONLY READERS`` or
  ``… WITH WRITERS``) or ``Load Image`` (SUCCESS) row of process P on that path; it
  lives from that row until P's ``Process Exit`` (or the end of the trace). A conflict
  lists one section per pid, that pid's earliest mapping row still alive at the failure
  (mapped on an earlier row, its process not exited on an earlier row); verdict
  ``mapped-by-other-process`` if any belongs to another pid, ``mapped-by-own-process``
  if all are the failing process's, ``no-holder-filtered`` if there is none;
* every file-system row with a lock-type result is a conflict; registry rows are not;
* ``windows`` counts the ``blocked-by-…`` conflicts (and which of them are censored).

While walking the events in time order this module also checks the model: CloseFiles
pair with opens as a per-(pid, path) stack (LIFO), every handle is closed unless the
story said otherwise, and every conflict's blockers are exactly the ones its story
expected (for ``USER MAPPED FILE``: exactly the processes whose sections it expected),
and no process opens, closes, maps or fails after its ``Process Exit`` or exits with a
handle still open. A mismatch is a simulator bug and raises :class:`SimulationBug`. (Once
a long simulation recycles ids, a pid that exited may come back as a new process; the
simulator says when each process carrying a pid began, ``restarts``.)
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import polars as pl

from traceaudit.errors import SimulationBug
from traceaudit.formats.procmon_text.csv_write import format_iso_time
from traceaudit.schema import SHARE_DELETE, SHARE_READ, SHARE_WRITE
from traceaudit.simulation.story import CLOSE, OPEN

__all__ = [
    "LOCK_RESULTS",
    "OPLOCK_RESULTS",
    "MAPPED_RESULT",
    "MAPPING_RESULTS",
    "SimulationBug",
    "compute_truth",
    "shares_conflict",
]

LOCK_RESULTS = frozenset(
    {
        "SHARING VIOLATION",
        "ACCESS DENIED",
        "DELETE PENDING",
        "CANNOT DELETE",
        "FILE LOCK CONFLICT",
        "NOT GRANTED",
        "OPLOCK NOT GRANTED",
        "CANNOT BREAK OPLOCK",
        "USER MAPPED FILE",
    }
)
"""Results that make a file-system row a conflict."""

OPLOCK_RESULTS = frozenset({"OPLOCK NOT GRANTED", "CANNOT BREAK OPLOCK"})
"""Conflicts of an oplock probe: verdict ``oplock-probe``, blockers = handles in use."""
MAPPED_RESULT = "USER MAPPED FILE"
"""The conflict a mapped section causes: no handle blockers, ``sections`` instead."""
MAPPING_RESULTS = frozenset(
    {"SUCCESS", "FILE LOCKED WITH ONLY READERS", "FILE LOCKED WITH WRITERS"}
)
"""Results of a ``CreateFileMapping`` row that created (or found) a section."""

RENAME_OPS = frozenset({"SetRenameInformationFile", "SetRenameInformationEx"})
DELETE_OPS = frozenset({"SetDispositionInformationFile", "SetDispositionInformationEx"})
RETRY_GAP_NS = 30 * 1_000_000_000

_READ = 0x0001 | 0x0020 | 0x80000000 | 0x20000000 | 0x10000000
_WRITE = 0x0002 | 0x0004 | 0x40000000 | 0x10000000
_DELETE = 0x00010000 | 0x10000000


def _needs(mask: int) -> tuple[bool, bool, bool]:
    """(read, write, delete) that an access mask takes part in sharing with."""
    return bool(mask & _READ), bool(mask & _WRITE), bool(mask & _DELETE)


def shares_conflict(old_access: int, old_share: int, new_access: int, new_share: int) -> bool:
    """Whether a new open is refused by an existing handle's access/share (either way).

    Windows records share access only for opens that read, write or delete; an
    attribute-only open on either side never conflicts.
    """
    old, new = _needs(old_access), _needs(new_access)
    if not any(old) or not any(new):
        return False
    bits = (SHARE_READ, SHARE_WRITE, SHARE_DELETE)
    refused_new = any(n and not old_share & b for n, b in zip(new, bits, strict=True))
    refused_old = any(o and not new_share & b for o, b in zip(old, bits, strict=True))
    return refused_new or refused_old


@dataclass
class _Open:
    hid: int
    pid: int
    process: str
    path: str
    path_cf: str
    access: int
    share: int
    open_row: int
    close_row: int | None = None
    close_time: int | None = None


@dataclass
class _Section:
    pid: int
    process: str
    path: str
    row: int


@dataclass
class _Failure:
    row: int
    time: int
    seq: int
    pid: int
    process: str
    operation: str
    path: str
    result: str
    blockers: list[_Open]
    sections: list[_Section]


class _Walker:
    """Replays the model's opens, closes, sections, exits and failures in row order."""

    def __init__(
        self,
        expectations: dict[int, tuple[int, ...]],
        leave_open: set[int],
        mapped_by: dict[int, tuple[int, ...]] | None = None,
        restarts: dict[int, list[int]] | None = None,
    ) -> None:
        self.expectations = expectations
        self.mapped_by = mapped_by or {}
        self.leave_open = leave_open
        self.restarts = {pid: sorted(times) for pid, times in (restarts or {}).items()}
        self.open: dict[int, _Open] = {}
        self.by_path: dict[str, dict[int, _Open]] = defaultdict(dict)
        self.by_pid: dict[int, set[int]] = defaultdict(set)
        # handles left open to the end pile up in a long trace: they are kept sorted by
        # path, so a directory's rename finds those below it without a scan; the others
        # (``brief``) are few at any one time
        self.kept: list[tuple[str, int]] = []
        self.brief: dict[int, _Open] = {}
        self.stacks: dict[tuple[int, str], list[int]] = defaultdict(list)
        self.failures: list[_Failure] = []
        # live sections: path_cf → pid → that pid's earliest live mapping row
        self.sections: dict[str, dict[int, _Section]] = defaultdict(dict)
        self.mapped_paths: dict[int, set[str]] = defaultdict(set)
        self.exited: dict[int, tuple[int, int]] = {}

    def alive(self, ev: dict[str, Any]) -> None:
        """A process acts: it must not have exited on an earlier row (unless the pid now
        belongs to a new process that began after that exit)."""
        pid = ev["pid"]
        if pid not in self.exited:
            return
        row, time = self.exited[pid]
        starts = self.restarts.get(pid, ())
        i = bisect.bisect_right(starts, ev["time"])
        if i and starts[i - 1] > time:
            del self.exited[pid]
            return
        raise SimulationBug(
            f"row {ev['row']}: {ev['process']} ({pid}) {ev['operation']} after its "
            f"Process Exit (row {row})"
        )

    def on_section(self, ev: dict[str, Any]) -> None:
        """A mapping row: the pid's section on the path, unless it already has a live one."""
        self.sections[ev["path_cf"]].setdefault(
            ev["pid"], _Section(ev["pid"], ev["process"], ev["path"], ev["row"])
        )
        self.mapped_paths[ev["pid"]].add(ev["path_cf"])

    def on_exit(self, ev: dict[str, Any]) -> None:
        """Process Exit: the pid's sections end; it must hold no open handle any more."""
        pid = ev["pid"]
        held = sorted(self.by_pid.get(pid, ()))
        if held:
            rec = self.open[held[0]]
            raise SimulationBug(
                f"row {ev['row']}: {ev['process']} ({pid}) exits with {len(held)} handle(s) "
                f"open, first {rec.path} opened at row {rec.open_row}"
            )
        for path_cf in self.mapped_paths.pop(pid, set()):
            self.sections[path_cf].pop(pid, None)
        self.exited[pid] = (ev["row"], ev["time"])

    def on_open(self, ev: dict[str, Any]) -> None:
        rec = _Open(
            ev["_handle"], ev["pid"], ev["process"], ev["path"], ev["path_cf"],
            ev["access_mask"] or 0, ev["share_mode"] or 0, ev["row"],
        )  # fmt: skip
        self.open[rec.hid] = rec
        self.by_path[rec.path_cf][rec.hid] = rec
        self.by_pid[rec.pid].add(rec.hid)
        if rec.hid in self.leave_open:
            bisect.insort(self.kept, (rec.path_cf, rec.hid))
        else:
            self.brief[rec.hid] = rec
        self.stacks[(rec.pid, rec.path_cf)].append(rec.hid)

    def on_close(self, ev: dict[str, Any]) -> None:
        stack = self.stacks.get((ev["pid"], ev["path_cf"]))
        if not stack:
            raise SimulationBug(f"row {ev['row']}: CloseFile of {ev['path']} with no open handle")
        hid = stack.pop()
        if hid != ev["_handle"]:
            raise SimulationBug(
                f"row {ev['row']}: CloseFile of {ev['path']} closes handle {ev['_handle']} but "
                f"the per-(pid, path) stack says {hid}: opens do not nest"
            )
        rec = self.open.pop(hid)
        del self.by_path[rec.path_cf][hid]
        self.by_pid[rec.pid].discard(hid)
        if hid in self.leave_open:
            self.kept.remove((rec.path_cf, hid))
        else:
            del self.brief[hid]
        rec.close_row, rec.close_time = ev["row"], ev["time"]

    def below(self, prefix: str) -> dict[int, _Open]:
        """The open handles on paths starting with ``prefix``."""
        found = {h: r for h, r in self.brief.items() if r.path_cf.startswith(prefix)}
        i = bisect.bisect_left(self.kept, (prefix, -1))
        while i < len(self.kept) and self.kept[i][0].startswith(prefix):
            found[self.kept[i][1]] = self.open[self.kept[i][1]]
            i += 1
        return found

    def blockers(self, ev: dict[str, Any]) -> list[_Open]:
        """The handles that block the failing event ``ev`` under the contract rules."""
        found: dict[int, _Open] = {}
        op = ev["operation"]
        if ev["result"] == MAPPED_RESULT:
            return []
        if ev["result"] in OPLOCK_RESULTS:
            for rec in self.by_path.get(ev["path_cf"], {}).values():
                if any(_needs(rec.access)):
                    found[rec.hid] = rec
        elif op == "CreateFile":
            for rec in self.by_path.get(ev["path_cf"], {}).values():
                if shares_conflict(
                    rec.access, rec.share, ev["access_mask"] or 0, ev["share_mode"] or 0
                ):
                    found[rec.hid] = rec
        elif op in RENAME_OPS or op in DELETE_OPS:
            if ev["_m_dir"]:
                prefix = ev["path_cf"] + "\\"
                found.update(self.below(prefix))
            if op in RENAME_OPS and ev["replace_if_exists"] and ev["_m_target_exists"]:
                found.update(self.by_path.get(ev["target_cf"], {}))
        return sorted(found.values(), key=lambda r: r.open_row)

    def on_failure(self, ev: dict[str, Any]) -> None:
        blockers = self.blockers(ev)
        expected = self.expectations.get(ev["seq"])
        if expected is None:
            raise SimulationBug(f"row {ev['row']}: unplanned {ev['result']} on {ev['path']}")
        if sorted(expected) != sorted(r.hid for r in blockers):
            raise SimulationBug(
                f"row {ev['row']}: {ev['operation']} {ev['result']} on {ev['path']}: story expected "
                f"handles {sorted(expected)}, the rules find {[r.hid for r in blockers]}"
            )
        sections = []
        if ev["result"] == MAPPED_RESULT:
            sections = sorted(self.sections.get(ev["path_cf"], {}).values(), key=lambda s: s.row)
        expected_pids = self.mapped_by.get(ev["seq"], ())
        if sorted(expected_pids) != sorted(s.pid for s in sections):
            raise SimulationBug(
                f"row {ev['row']}: {ev['operation']} {ev['result']} on {ev['path']}: story "
                f"expected sections of pids {sorted(expected_pids)}, the rules find "
                f"{[s.pid for s in sections]}"
            )
        self.failures.append(
            _Failure(
                ev["row"], ev["time"], ev["seq"], ev["pid"], ev["process"], ev["operation"],
                ev["path"], ev["result"], blockers, sections,
            )
        )  # fmt: skip

    def finish(self) -> None:
        stray = sorted(h for h in self.open if h not in self.leave_open)
        if stray:
            rec = self.open[stray[0]]
            raise SimulationBug(
                f"{len(stray)} handle(s) never closed, first {rec.path} opened at row {rec.open_row}"
            )


def _relevant(frame: pl.DataFrame) -> pl.DataFrame:
    """Only the rows the walk needs: opens, closes, lock-type file-system failures,
    section-creating rows (CreateFileMapping, Load Image) and Process Exit."""
    lock = pl.col("result").is_in(list(LOCK_RESULTS)) & (pl.col("event_class") == "File System")
    op, result = pl.col("operation"), pl.col("result")
    path_cf = pl.col("path").str.to_lowercase()
    section = ((op == "CreateFileMapping") & result.is_in(list(MAPPING_RESULTS))) | (
        (op == "Load Image") & (result == "SUCCESS")
    )
    exit_ = op == "Process Exit"
    return frame.filter((pl.col("_kind") != 0) | lock | section | exit_).select(
        "row", "time", "seq", "process", "pid", "operation", "path", "result",
        "access_mask", "share_mode", "replace_if_exists", "_kind", "_handle", "_m_dir",
        "_m_target_exists",
        path_cf.alias("path_cf"),
        pl.col("rename_target").str.to_lowercase().alias("target_cf"),
        lock.alias("is_lock"),
        section.alias("is_section"),
        exit_.alias("is_exit"),
    )  # fmt: skip


def _conflict_dict(f: _Failure) -> dict[str, Any]:
    """One conflict in the truth JSON's shape."""
    blockers = [
        {
            "pid": b.pid,
            "process": b.process,
            "path": b.path,
            "open_row": b.open_row,
            "close_row": b.close_row,
        }
        for b in f.blockers
    ]
    sections = [
        {"pid": s.pid, "process": s.process, "path": s.path, "row": s.row} for s in f.sections
    ]
    closes = [b.close_time for b in f.blockers]
    known = [c for c in closes if c is not None]
    remaining = (
        None if not closes or len(known) < len(closes) else round((max(known) - f.time) / 1e6, 4)
    )
    if f.result in OPLOCK_RESULTS:
        verdict = "oplock-probe"
    elif f.result == MAPPED_RESULT:
        if not f.sections:
            verdict = "no-holder-filtered"
        elif all(s.pid == f.pid for s in f.sections):
            verdict = "mapped-by-own-process"
        else:
            verdict = "mapped-by-other-process"
    elif not f.blockers:
        verdict = "no-holder-permission" if f.result == "ACCESS DENIED" else "no-holder-filtered"
    else:
        own = all(b.pid == f.pid for b in f.blockers)
        verdict = "blocked-by-own-handle" if own else "blocked-by-other-process"
    return {
        "row": f.row,
        "time": format_iso_time(f.time),
        "pid": f.pid,
        "process": f.process,
        "operation": f.operation,
        "path": f.path,
        "result": f.result,
        "verdict": verdict,
        "blockers": blockers,
        "sections": sections,
        "remaining_ms": remaining,
    }


def _retry_chains(frame: pl.DataFrame, failures: list[_Failure]) -> list[dict[str, Any]]:
    """Retry chains: from a conflict, the following attempts of the same (pid, op, path).

    A chain starts at a conflict row and takes every later row of the same process,
    operation and path (case-insensitive) while consecutive rows are less than 30 s
    apart; it ends at the first SUCCESS (``succeeded``) or at the last such row.
    """
    if not failures:
        return []
    keys = pl.DataFrame(
        {
            "pid": [f.pid for f in failures],
            "operation": [f.operation for f in failures],
            "path_cf": [f.path.lower() for f in failures],
        },
        schema={"pid": pl.Int64, "operation": pl.String, "path_cf": pl.String},
    ).unique()
    rows = (
        frame.select("row", "time", "pid", "operation", "path", "result")
        .with_columns(pl.col("path").str.to_lowercase().alias("path_cf"))
        .join(keys, on=["pid", "operation", "path_cf"], how="semi")
        .sort("row")
    )
    conflict_rows = {f.row for f in failures}
    grouped: dict[tuple[int, str, str], list[tuple[int, int, str, str]]] = defaultdict(list)
    for row, time, pid, op, path, result, path_cf in rows.iter_rows():
        grouped[(pid, op, path_cf)].append((row, time, result, path))
    chains = []
    for (pid, op, _), attempts in grouped.items():
        i = 0
        while i < len(attempts):
            if attempts[i][0] not in conflict_rows:
                i += 1
                continue
            j = i
            while (
                attempts[j][2] != "SUCCESS"
                and j + 1 < len(attempts)
                and attempts[j + 1][1] - attempts[j][1] < RETRY_GAP_NS
            ):
                j += 1
            chains.append(
                {
                    "pid": pid,
                    "operation": op,
                    "path": attempts[i][3],
                    "attempts": j - i + 1,
                    "first_row": attempts[i][0],
                    "last_row": attempts[j][0],
                    "succeeded": attempts[j][2] == "SUCCESS",
                }
            )
            i = j + 1
    return sorted(chains, key=lambda c: c["first_row"])


def compute_truth(
    frame: pl.DataFrame,
    expectations: dict[int, tuple[int, ...]],
    leave_open: set[int],
    mapped_by: dict[int, tuple[int, ...]] | None = None,
    restarts: dict[int, list[int]] | None = None,
) -> dict[str, Any]:
    """``conflicts``, ``retry_chains`` and ``windows`` of a sorted, numbered event frame.

    ``expectations``: failure seq → the handle ids the story expects to block it;
    ``mapped_by``: failure seq → the pids whose sections it expects (``USER MAPPED FILE``);
    ``restarts``: pid → when each process carrying it began (recycled pids).
    """
    walker = _Walker(expectations, leave_open, mapped_by, restarts)
    for ev in _relevant(frame).iter_rows(named=True):
        walker.alive(ev)
        if ev["_kind"] == OPEN:
            walker.on_open(ev)
        elif ev["_kind"] == CLOSE:
            walker.on_close(ev)
        if ev["is_section"]:
            walker.on_section(ev)
        if ev["is_lock"]:
            walker.on_failure(ev)
        if ev["is_exit"]:
            walker.on_exit(ev)
    walker.finish()
    planned = set(expectations)
    seen = {f.seq for f in walker.failures}
    if planned - seen:
        raise SimulationBug(f"{len(planned - seen)} planned failure(s) lost their lock-type result")
    conflicts = [_conflict_dict(f) for f in walker.failures]
    windows = [c for c in conflicts if c["verdict"].startswith("blocked-by-")]
    return {
        "conflicts": conflicts,
        "retry_chains": _retry_chains(frame, walker.failures),
        "windows": {
            "count": len(windows),
            "censored": sum(1 for c in windows if c["remaining_ms"] is None),
        },
    }
