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
* every file-system row with a lock-type result is a conflict; registry rows are not.

While walking the events in time order this module also checks the model: CloseFiles
pair with opens as a per-(pid, path) stack (LIFO), every handle is closed unless the
story said otherwise, and every conflict's blockers are exactly the ones its story
expected. A mismatch is a simulator bug and raises :class:`SimulationBug`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import polars as pl

from traceaudit._simulate_story import CLOSE, OPEN
from traceaudit.formats.procmon_csv_write import format_iso_time
from traceaudit.schema import SHARE_DELETE, SHARE_READ, SHARE_WRITE

__all__ = ["LOCK_RESULTS", "SimulationBug", "compute_truth", "shares_conflict"]

LOCK_RESULTS = frozenset(
    {
        "SHARING VIOLATION",
        "ACCESS DENIED",
        "DELETE PENDING",
        "CANNOT DELETE",
        "FILE LOCK CONFLICT",
        "NOT GRANTED",
        "OPLOCK NOT GRANTED",
    }
)
"""Results that make a file-system row a conflict."""

RENAME_OPS = frozenset({"SetRenameInformationFile", "SetRenameInformationEx"})
DELETE_OPS = frozenset({"SetDispositionInformationFile", "SetDispositionInformationEx"})
RETRY_GAP_NS = 30 * 1_000_000_000

_READ = 0x0001 | 0x0020 | 0x80000000 | 0x20000000 | 0x10000000
_WRITE = 0x0002 | 0x0004 | 0x40000000 | 0x10000000
_DELETE = 0x00010000 | 0x10000000


class SimulationBug(RuntimeError):
    """The simulator's events contradict its own model (a bug in the simulator)."""


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


class _Walker:
    """Replays the model's opens, closes and failures in row order."""

    def __init__(self, expectations: dict[int, tuple[int, ...]], leave_open: set[int]) -> None:
        self.expectations = expectations
        self.leave_open = leave_open
        self.open: dict[int, _Open] = {}
        self.by_path: dict[str, dict[int, _Open]] = defaultdict(dict)
        self.stacks: dict[tuple[int, str], list[int]] = defaultdict(list)
        self.failures: list[_Failure] = []

    def on_open(self, ev: dict[str, Any]) -> None:
        rec = _Open(
            ev["_handle"], ev["pid"], ev["process"], ev["path"], ev["path_cf"],
            ev["access_mask"] or 0, ev["share_mode"] or 0, ev["row"],
        )  # fmt: skip
        self.open[rec.hid] = rec
        self.by_path[rec.path_cf][rec.hid] = rec
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
        rec.close_row, rec.close_time = ev["row"], ev["time"]

    def blockers(self, ev: dict[str, Any]) -> list[_Open]:
        """The handles that block the failing event ``ev`` under the contract rules."""
        found: dict[int, _Open] = {}
        op = ev["operation"]
        if op == "CreateFile":
            for rec in self.by_path.get(ev["path_cf"], {}).values():
                if shares_conflict(
                    rec.access, rec.share, ev["access_mask"] or 0, ev["share_mode"] or 0
                ):
                    found[rec.hid] = rec
        elif op in RENAME_OPS or op in DELETE_OPS:
            if ev["_m_dir"]:
                prefix = ev["path_cf"] + "\\"
                found.update({h: r for h, r in self.open.items() if r.path_cf.startswith(prefix)})
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
        self.failures.append(
            _Failure(
                ev["row"], ev["time"], ev["seq"], ev["pid"], ev["process"], ev["operation"],
                ev["path"], ev["result"], blockers,
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
    """Only the rows the walk needs: opens, closes and lock-type file-system failures."""
    lock = pl.col("result").is_in(list(LOCK_RESULTS)) & (pl.col("event_class") == "File System")
    return frame.filter((pl.col("_kind") != 0) | lock).select(
        "row", "time", "seq", "process", "pid", "operation", "path", "result",
        "access_mask", "share_mode", "replace_if_exists", "_kind", "_handle", "_m_dir",
        "_m_target_exists",
        pl.col("path").str.to_lowercase().alias("path_cf"),
        pl.col("rename_target").str.to_lowercase().alias("target_cf"),
        lock.alias("is_lock"),
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
    if not f.blockers:
        verdict = "no-holder-permission" if f.result == "ACCESS DENIED" else "no-holder-filtered"
        remaining = None
    else:
        own = all(b.pid == f.pid for b in f.blockers)
        verdict = "blocked-by-own-handle" if own else "blocked-by-other-process"
        closes = [b.close_time for b in f.blockers]
        remaining = None if None in closes else round((max(closes) - f.time) / 1e6, 4)
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
) -> dict[str, Any]:
    """``conflicts``, ``retry_chains`` and ``windows`` of a sorted, numbered event frame."""
    walker = _Walker(expectations, leave_open)
    for ev in _relevant(frame).iter_rows(named=True):
        if ev["_kind"] == OPEN:
            walker.on_open(ev)
        elif ev["_kind"] == CLOSE:
            walker.on_close(ev)
        if ev["is_lock"]:
            walker.on_failure(ev)
    walker.finish()
    planned = set(expectations)
    seen = {f.seq for f in walker.failures}
    if planned - seen:
        raise SimulationBug(f"{len(planned - seen)} planned failure(s) lost their lock-type result")
    conflicts = [_conflict_dict(f) for f in walker.failures]
    with_blockers = [c for c in conflicts if c["blockers"]]
    return {
        "conflicts": conflicts,
        "retry_chains": _retry_chains(frame, walker.failures),
        "windows": {
            "count": len(with_blockers),
            "censored": sum(1 for c in with_blockers if c["remaining_ms"] is None),
        },
    }
