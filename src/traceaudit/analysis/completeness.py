"""What a capture can show: the gaps that decide which verdicts a trace can support.

A Procmon capture keeps only what its filters let through, and rows pasted from Procmon's
window keep only what someone selected. A missing ``CloseFile`` is evidence that a handle
stayed open **only where the capture could have shown the close**: in a paste, in a capture
filtered to one thread, or one whose CloseFiles were filtered out, handles without a close
are expected and prove nothing. This module measures, per trace and per process, what the
capture holds, and turns each gap into a warning that says what it means for the verdicts
and how to capture again.

Measures (all in :class:`Completeness`, ``trace.completeness`` in the JSON report)
-------------------------------------------------------------------------------
* successful ``CreateFile`` and ``CloseFile`` events, and the processes that open files but
  never close one in the capture (their closes were filtered out, or they are not there);
* **I/O without an open**: handles (process, path) used by ReadFile, WriteFile, Query…,
  Set… that have neither a CreateFile nor a CloseFile anywhere in the trace. A complete
  capture has some (handles open through the whole capture: logs, page files); an excerpt
  has mostly these. Paging I/O, directory listings and NTFS metadata files are not counted:
  they use no handle of the process, or show a path that is not the handle's;
* a paste from Procmon's window (the ``procmon-clipboard`` format): an excerpt by nature;
* one process, or one thread, only;
* a file cut short (the reader said so), and a capture that stopped while an operation
  was still failing.

Visibility
----------
:meth:`Completeness.visibility` gives, per process id, whether the capture could show its
handles **close** (``closes_visible``) and **open** (``opens_visible``). The conflict analysis
uses it to tell *blockers* (handles whose lifetime the capture shows) from *candidates*
(handles that may only look open because the capture cannot show their close, or their
open). Both are false for every process in an excerpt or a one-thread capture, closes are
false for a process that opened files but never closed one, opens for every process when
the capture holds no CreateFile at all; a complete capture has both true for every process, so its attribution is
exactly as if this module did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from traceaudit.analysis.tally import EventTally
from traceaudit.display import fmt_ms

__all__ = [
    "Completeness",
    "GAPS",
    "capture_completeness",
    "completeness_of",
    "EXCERPT_SHARE",
    "EXCERPT_MIN_HANDLES",
    "UNSEEN_HOLDER",
    "explain_no_holders",
    "below_procmon_warning",
]

PASTED_FORMAT = "procmon-clipboard"

# An excerpt: at least this share of the handles used for I/O (and at least this many) have
# neither an open nor a close in the trace. Complete real captures measure 0.00-0.30 (the
# corpus: Tests64bit 0.20, prsp0007 0.30); the pasted uv rows 0.69.
EXCERPT_SHARE = 0.5
EXCERPT_MIN_HANDLES = 5

GAPS: dict[str, str] = {
    "no-opens-or-closes": "no CreateFile or CloseFile events at all",
    "no-closes": "CreateFile events but no CloseFile",
    "process-without-closes": "a process opens files but never closes one",
    "pasted-excerpt": "rows pasted from Procmon's window",
    "io-without-open": "most handles used for I/O were never opened or closed in the trace",
    "single-process": "one process only",
    "single-thread": "one thread only",
    "cut-short": "the file was cut short",
    "ended-during-failure": "the capture stopped while an operation was still failing",
}
"""Machine-readable gap names (``trace.completeness.gaps``) and what each means."""


@dataclass(frozen=True)
class ProcessGap:
    """A process that opened files but closed none in the capture."""

    process: str
    pid: int
    opens: int

    def to_dict(self) -> dict[str, Any]:
        return {"process": self.process, "pid": self.pid, "opens": self.opens}


@dataclass(frozen=True, eq=False)
class Completeness:
    """What one capture holds, and so what its verdicts can rest on.

    ``visibility`` is a frame (``pid``, ``closes_visible``, ``opens_visible``) over every
    process with file-system events; see the module docstring.
    """

    trace: str
    file_system_events: int = 0
    create_events: int = 0
    opens: int = 0
    closes: int = 0
    processes_without_closes: tuple[ProcessGap, ...] = ()
    io_handles: int = 0
    io_without_open: int = 0
    io_example: str | None = None
    pasted: bool = False
    single_process: bool = False
    single_thread: int | None = None
    truncated: bool = False
    handles_open_before_capture: int = 0
    handles_open_at_end: int = 0
    ended_during_failure: tuple[str, float] | None = None
    visibility: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(
            schema={"pid": pl.Int64, "closes_visible": pl.Boolean, "opens_visible": pl.Boolean}
        )
    )

    # ------------------------------------------------------------------ derived facts
    @property
    def io_share(self) -> float:
        return self.io_without_open / self.io_handles if self.io_handles else 0.0

    @property
    def io_excerpt(self) -> bool:
        """Most handles used for I/O have neither an open nor a close in the trace."""
        return (
            self.io_without_open >= EXCERPT_MIN_HANDLES
            and self.io_share >= EXCERPT_SHARE
            # With no open or close at all, that is the gap to report, not this.
            and not self.no_opens_or_closes
        )

    @property
    def excerpt(self) -> bool:
        """Rows are missing between the ones the trace holds: no edge of a handle is sure."""
        return self.pasted or self.io_excerpt

    @property
    def no_opens_or_closes(self) -> bool:
        return self.file_system_events > 0 and self.create_events == 0 and self.closes == 0

    @property
    def no_closes(self) -> bool:
        return self.opens > 0 and self.closes == 0

    @property
    def gaps(self) -> list[str]:
        """The names (keys of :data:`GAPS`) of every gap found, most serious first."""
        found = [
            ("no-opens-or-closes", self.no_opens_or_closes),
            ("no-closes", self.no_closes),
            ("pasted-excerpt", self.pasted),
            ("io-without-open", self.io_excerpt),
            ("single-thread", self.single_thread is not None),
            ("single-process", self.single_process),
            ("process-without-closes", bool(self.processes_without_closes) and not self.no_closes),
            ("cut-short", self.truncated),
            ("ended-during-failure", self.ended_during_failure is not None),
        ]
        return [name for name, present in found if present]

    @property
    def holders_visible(self) -> bool:
        """Whether a process holding a file would show in this capture.

        True when nothing found limits which processes or which opens and closes the
        capture holds: not an excerpt, not one process or one thread, CreateFile and
        CloseFile kept. A Procmon filter that keeps several processes but not the holder
        cannot be seen from the trace; the wording that uses this says "as far as the
        trace shows".
        """
        return not (
            self.excerpt
            or self.no_opens_or_closes
            or self.no_closes
            or self.single_thread is not None
            or self.single_process
        )

    @property
    def handles_reliable(self) -> bool:
        """Whether every handle's edges the trace lacks are truly outside the capture."""
        return not (
            self.excerpt
            or self.no_closes
            or self.no_opens_or_closes
            or self.single_thread is not None
            or self.processes_without_closes
        )

    def to_dict(self) -> dict[str, Any]:
        ended = self.ended_during_failure
        return {
            "complete": not self.gaps,
            "gaps": self.gaps,
            "holders_visible": self.holders_visible,
            "file_system_events": self.file_system_events,
            "create_file": self.create_events,
            "create_file_succeeded": self.opens,
            "close_file": self.closes,
            "processes_without_closes": [p.to_dict() for p in self.processes_without_closes],
            "io_handles": self.io_handles,
            "io_without_open": self.io_without_open,
            "pasted": self.pasted,
            "excerpt": self.excerpt,
            "single_process": self.single_process,
            "single_thread": self.single_thread,
            "cut_short": self.truncated,
            "ended_during_failure": None
            if ended is None
            else {"path": ended[0], "after_ms": round(ended[1], 4)},
            "handles_open_before_capture": self.handles_open_before_capture,
            "handles_open_at_end": self.handles_open_at_end,
        }

    # ------------------------------------------------------------------ warnings
    def warnings(self) -> list[str]:
        """One warning per gap, most serious first: what it means, and how to capture again."""
        return [text for _, text in self.warning_items()]

    def warning_items(self) -> list[tuple[str, str]]:
        """(gap name, warning) pairs, most serious first."""
        out: list[tuple[str, str]] = []
        self._warn_filtered_edges(out)
        self._warn_excerpt(out)
        self._warn_unseen_closes(out)
        self._warn_cut_end(out)
        return out

    def _warn_filtered_edges(self, out: list[tuple[str, str]]) -> None:
        """No CreateFile/CloseFile at all, or no CloseFile: a filter on the operation.

        Without them no handle lifetime can be rebuilt, so no holder can be named.
        """
        name = self.trace
        if self.no_opens_or_closes:
            _add(
                out,
                "no-opens-or-closes",
                f"{name}: the capture holds no CreateFile or CloseFile event at all (they were "
                "filtered out), so no handle can be rebuilt and no process can be named as the "
                "holder of a file. Capture again without excluding operations (Filter > "
                "Filter…: no 'Operation is' rule), or save all events.",
            )
        elif self.no_closes:
            _add(
                out,
                "no-closes",
                f"{name}: {self.create_events:,} CreateFile and no CloseFile: the closes were "
                "filtered "
                "out of the capture, so when handles closed cannot be rebuilt. Handles without "
                "a close are listed as candidates, never as holders, and feed no hold or "
                "blocked time and no advice. Capture again with CloseFile included.",
            )

    def _warn_excerpt(self, out: list[tuple[str, str]]) -> None:
        """Rows missing between the ones the trace holds: a paste, or what looks like one."""
        name = self.trace
        if self.pasted:
            _add(
                out,
                "pasted-excerpt",
                f"{name}: rows pasted from Procmon's window are an excerpt"
                + (
                    f": {self.io_without_open:,} of the {self.io_handles:,} files it reads or "
                    f"writes (e.g. {self.io_example}) have no open or close in it"
                    if self.io_without_open
                    else ""
                )
                + ", so a missing CloseFile is expected and is no evidence that a handle was "
                "still open. Handles without a close are candidates only. Save the whole "
                "capture (File > Save… > All events, as PML or CSV) and analyse that.",
            )
        elif self.io_excerpt:
            _add(
                out,
                "io-without-open",
                f"{name}: {self.io_without_open:,} of the {self.io_handles:,} files read or "
                f"written in this trace (e.g. {self.io_example}) are never opened or closed in "
                "it: it looks like an excerpt, with rows missing between the ones it holds. "
                "Handles without a close are candidates only. Save all events of the capture "
                "and analyse that.",
            )

    def _warn_unseen_closes(self, out: list[tuple[str, str]]) -> None:
        """Closes the capture cannot show: a one-thread filter, or processes never closing.

        A handle's CloseFile comes from whichever thread closes it, so a thread filter
        loses closes as surely as a filter on CloseFile does.
        """
        name = self.trace
        if self.single_thread is not None:
            _add(
                out,
                "single-thread",
                f"{name}: only thread {self.single_thread} is in the capture: opens and closes "
                "made by the process's other threads are missing, so its handles are "
                "candidates only. Capture again without a thread filter.",
            )
        if self.processes_without_closes and not self.no_closes:
            shown = ", ".join(
                f"{p.process} ({p.pid}, {p.opens:,} opens)"
                for p in self.processes_without_closes[:3]
            )
            more = len(self.processes_without_closes) - 3
            _add(
                out,
                "process-without-closes",
                f"{name}: {shown}{f' and {more} more' if more > 0 else ''} opened files but "
                "closed none in the capture: their CloseFiles were not captured, so their "
                "handles without a close are candidates, not holders.",
            )

    def _warn_cut_end(self, out: list[tuple[str, str]]) -> None:
        """The end of the trace is not the end of the story: cut short, or stopped mid-retry."""
        name = self.trace
        if self.truncated:
            _add(
                out,
                "cut-short",
                f"{name}: the file was cut short (the reader's warning says what was lost): "
                "handles may look open at the end only because their closes were cut off. "
                "Copy the capture again in full.",
            )
        if self.ended_during_failure is not None:
            path, after = self.ended_during_failure
            _add(
                out,
                "ended-during-failure",
                f"{name}: the capture stopped {fmt_ms(max(after, 0.0))} after the last failed attempt "
                f"on {path}, sooner than the process had been waiting between its retries: it "
                "may still have been retrying, and how the operation ended is not in the trace. "
                "Keep capturing until the operation completes or fails for good.",
            )


MINOR_GAPS = frozenset({"process-without-closes", "cut-short", "ended-during-failure"})
"""Gaps that limit fewer verdicts than a capture filtered to one process."""


def _add(out: list[tuple[str, str]], gap: str, text: str) -> None:
    out.append((gap, text))


def capture_completeness(
    events: pl.DataFrame,
    *,
    name: str,
    format: str,
    handles: pl.DataFrame | None = None,
    truncated: bool = False,
) -> Completeness:
    """Measure what the capture holds (see the module docstring).

    ``handles`` is accepted for callers of earlier versions and not needed: the handles
    open before and after the capture are counted from the events.
    """
    del handles
    return completeness_of(EventTally.of(events), name=name, format=format, truncated=truncated)


def completeness_of(
    tally: EventTally, *, name: str, format: str, truncated: bool = False
) -> Completeness:
    """What the capture holds, from the counts of a whole trace (:class:`EventTally`)."""
    per_process = tally.per_process
    orphan_io = tally.io_without_open
    example = f"{orphan_io['operation'][0]} {orphan_io['path'][0]}" if orphan_io.height else None
    creates = int(per_process["creates"].sum()) if per_process.height else 0
    opens = int(per_process["opens"].sum()) if per_process.height else 0
    closes = int(per_process["closes"].sum()) if per_process.height else 0
    gaps = per_process.filter((pl.col("opens") > 0) & (pl.col("closes") == 0)).sort(
        "opens", "process", descending=[True, False]
    )
    draft = Completeness(
        trace=name,
        file_system_events=tally.file_system_events,
        create_events=creates,
        opens=opens,
        closes=closes,
        processes_without_closes=tuple(
            ProcessGap(r["process"], r["pid"], r["opens"]) for r in gaps.iter_rows(named=True)
        ),
        io_handles=tally.io_handles,
        io_without_open=orphan_io.height,
        io_example=example,
        pasted=format == PASTED_FORMAT,
        single_process=len(tally.pids - {None}) == 1,
        single_thread=tally.single_thread,
        truncated=truncated,
        handles_open_before_capture=tally.orphan_closes,
        handles_open_at_end=tally.handles_open_at_end,
    )
    unreliable = draft.excerpt or tally.single_thread is not None
    visibility = _visibility(per_process, any_opens=opens > 0, unreliable=unreliable)
    return Completeness(**{**_fields(draft), "visibility": visibility})


def _visibility(per_process: pl.DataFrame, *, any_opens: bool, unreliable: bool) -> pl.DataFrame:
    """Per pid, whether the capture could show its handles close and open.

    Nothing is visible in an excerpt or a one-thread capture (``unreliable``); closes are
    visible for a process with at least one CloseFile.
    """
    return per_process.select(
        pl.col("pid").cast(pl.Int64),
        closes_visible=(pl.col("closes") > 0) & pl.lit(not unreliable),
        # Opens are filtered for a whole capture, not per process in practice: a process
        # whose only events are closes had its handles open before the capture started.
        opens_visible=pl.lit(any_opens and not unreliable),
    )


UNSEEN_HOLDER = {
    "outside-capture": "the holder was most likely filtered out of the capture",
    "below-procmon": "the capture shows other processes' opens and closes but no holder: most "
    "likely a minifilter below Procmon's altitude (antivirus or EDR), unless a filter on the "
    "capture left the holding process out",
}
"""Values of the ``unseen_holder`` column of conflicts with no holder, and what each means."""

_MINIFILTER_REASON = (
    "no process in this capture held it, though the capture keeps other processes' opens "
    "and closes: most likely a file-system minifilter below Procmon's altitude (antivirus or "
    "EDR, in the FSFilter Anti-Virus range) opened, scanned or refused it with requests "
    "Procmon never sees; or a filter on the capture left the holding process out (the trace "
    "cannot tell), or a process opened it before the capture started and did nothing with "
    "it during the capture"
)
_PERMISSION_OR_FILTER = (
    "; in a capture that shows other processes' activity, a security minifilter below Procmon "
    "(antivirus or EDR) refusing the open gives the same ACCESS DENIED"
)


def explain_no_holders(conflicts: pl.DataFrame, completeness: Completeness) -> pl.DataFrame:
    """Conflicts with an ``unseen_holder`` column, and reasons that say what the capture shows.

    For each failure no holder explains (``no-holder-filtered``/``no-holder-permission``,
    never a missing mapped section): ``outside-capture`` where the capture could not show
    the holder (an excerpt, one process, one thread, no opens or closes: the existing
    "filtered out" stays), ``below-procmon`` where it could (:attr:`Completeness.holders_visible`):
    then the reason names the layer it most likely came from. Null for every other verdict.
    """
    if "verdict" not in conflicts.columns:
        return conflicts
    no_holder = pl.col("verdict").is_in(["no-holder-filtered", "no-holder-permission"]) & (
        pl.col("kind") != "section"
    )
    layer = "below-procmon" if completeness.holders_visible else "outside-capture"
    out = conflicts.with_columns(
        unseen_holder=pl.when(no_holder).then(pl.lit(layer)).otherwise(pl.lit(None, pl.String))
    )
    if not completeness.holders_visible or "verdict_reason" not in out.columns:
        return out
    return out.with_columns(
        verdict_reason=pl.when(no_holder & (pl.col("verdict") == "no-holder-filtered"))
        .then(pl.lit(_MINIFILTER_REASON))
        .when(no_holder & (pl.col("verdict") == "no-holder-permission"))
        .then(pl.col("verdict_reason") + pl.lit(_PERMISSION_OR_FILTER))
        .otherwise(pl.col("verdict_reason"))
    )


def below_procmon_warning(name: str, conflicts: pl.DataFrame) -> str | None:
    """The warning for failures with no holder in a capture that could have shown one."""
    if "unseen_holder" not in conflicts.columns:
        return None
    unseen = conflicts.filter(
        (pl.col("unseen_holder") == "below-procmon") & (pl.col("verdict") == "no-holder-filtered")
    )
    if unseen.is_empty():
        return None
    kinds = (
        unseen.with_columns(pl.col("operation", "result").fill_null("?"))
        .group_by("operation", "result")
        .len()
        .sort(["len", "operation"], descending=[True, False])
    )
    what = ", ".join(f"{o} {r}" for o, r, _ in kinds.head(2).iter_rows())
    n = unseen.height
    return (
        f"{name}: {n:,} failure{'s' if n != 1 else ''} ({what}) with no holder, although the "
        "capture keeps other processes' opens and closes: the usual cause is a file-system "
        "minifilter below Procmon's altitude (385200), typically antivirus or EDR in the "
        "FSFilter Anti-Virus range (320000-329999), which opens, scans or refuses files with "
        "requests Procmon never sees; the other is a filter on the capture that left the "
        "holding process out, which the trace cannot tell apart. To see it: run 'fltmc "
        "filters' as administrator, save the output and pass it with --filters; record an ETW "
        "trace alongside Procmon ('traceaudit capture-profile' shows how), with no filter on "
        "processes."
    )


def _fields(value: Completeness) -> dict[str, Any]:
    return {f: getattr(value, f) for f in value.__dataclass_fields__}


def ended_during_failure(chains: pl.DataFrame, trace_last: Any) -> tuple[str, float] | None:
    """The path of a retry chain still going when the capture stopped, and how long before.

    Only a chain that was retrying gives evidence: its last attempt failed, and the trace
    ends sooner after it than twice the longest delay it had used, so another attempt was
    most likely due after the capture stopped. A single failure says nothing either way.
    """
    if chains.is_empty() or trace_last is None:
        return None
    failing = (
        chains.filter(~pl.col("succeeded") & (pl.col("attempts") > 1))
        .with_columns(
            after_ms=(pl.lit(trace_last, dtype=pl.Datetime("ns")) - pl.col("last_attempt"))
            .dt.total_nanoseconds()
            .truediv(1_000_000),
            longest=pl.col("delays_ms").list.max(),
        )
        .filter(pl.col("after_ms") < 2 * pl.col("longest"))
        .sort("last_attempt")
    )
    if failing.is_empty():
        return None
    last = failing.row(-1, named=True)
    return last["path"], float(last["after_ms"])
