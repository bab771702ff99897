"""The whole analysis, from trace files to a :class:`~traceaudit.report.model.Report`.

    trace ─► events ─► handles ─► completeness ─► conflicts (+ blockers, candidates,
    sections) ─► retry chains ─► hold times, lock episodes and their blocked times ─► advice

This module only wires the layers together (formats → analysis → policy → report) and
gathers diagnostics; each analysis stage is a frame-in, frame-out function in its own module
of :mod:`traceaudit.analysis`, the advice comes from :mod:`traceaudit.policy`, and the result
is a :class:`~traceaudit.report.model.Report`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime
from pathlib import Path

import polars as pl

from traceaudit.analysis.clock import times_in_zone, to_timezone, zone_name
from traceaudit.analysis.completeness import (
    MINOR_GAPS,
    Completeness,
    below_procmon_warning,
    completeness_of,
    ended_during_failure,
    explain_no_holders,
)
from traceaudit.analysis.conflicts import blocking_handles, conflicts, lock_failures
from traceaudit.analysis.episodes import blocked_table, blocked_times, lock_episodes
from traceaudit.analysis.event_pass import PASS_COLUMNS, EventPass
from traceaudit.analysis.handles import handles as build_handles
from traceaudit.analysis.hold_times import window_table
from traceaudit.analysis.retries import retry_chains
from traceaudit.analysis.sections import section_holders, sections
from traceaudit.analysis.tally import EventTally
from traceaudit.analysis.timeline import on_path
from traceaudit.analysis.timeline import timeline as path_timeline
from traceaudit.minifilters.fltmc import FltmcListing, read_fltmc
from traceaudit.policy.advice import retry_advice
from traceaudit.report.model import FilterOutcome, Report, TraceSummary
from traceaudit.schema import Trace, empty_events

__all__ = ["analyze", "analyze_trace", "diagnose", "timeline"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class _Parts:
    summary: TraceSummary
    events: pl.DataFrame
    handles: pl.DataFrame
    conflicts: pl.DataFrame
    blocking: pl.DataFrame
    chains: pl.DataFrame
    warnings: tuple[str, ...]
    headline: str | None = None
    last: datetime | None = None


def diagnose(
    trace: Trace, events: pl.DataFrame, completeness: Completeness | None = None
) -> list[str]:
    """Warnings about what the trace can and cannot show, the most serious first: gaps in
    the capture that limit the verdicts come before the reader's notes."""
    tally = EventTally.of(events)
    if completeness is None:
        completeness = completeness_of(tally, name=trace.name, format=trace.format)
    return _diagnose(trace, tally, completeness)[0]


def _diagnose(
    trace: Trace, tally: EventTally, completeness: Completeness
) -> tuple[list[str], str | None]:
    """The warnings, and the one about the capture itself that matters most (or None)."""
    if not tally.events:
        message = f"{trace.name}: the trace holds no events."
        return [*trace.warnings, message], message
    warnings: list[str] = []
    if not tally.file_system_events:
        warnings.append(
            f"{trace.name}: no file-system events: enable Show File System Activity in "
            "Process Monitor and capture again."
        )
    gaps = completeness.warning_items()
    warnings += [text for gap, text in gaps if gap not in MINOR_GAPS]
    if len(tally.processes) == 1:
        warnings.append(
            f"{trace.name}: only one process ({next(iter(tally.processes))}) is in the trace: "
            "the capture was filtered, so a process that held the file (an antivirus, an "
            "indexer) cannot be seen. Capture again with no process filter; filter on the "
            "path instead (Filter > Filter…: Path begins with <your directory>)."
        )
    warnings += [text for gap, text in gaps if gap in MINOR_GAPS]
    if trace.time_precision_lost:
        warnings.append(
            f"{trace.name}: the times were truncated (an Excel re-save keeps only mm:ss.f): "
            "event order, hold and blocked times are unreliable. Export from Process Monitor "
            "again."
        )
    headline = warnings[0] if warnings else None
    return warnings + list(trace.warnings), headline


def analyze_trace(trace: Trace) -> _Parts:
    """Run every stage on one trace that has been read."""
    with EventPass() as event_pass:
        event_pass.add(trace.events)
        kept = event_pass.kept()
    return _analyze_kept(trace, kept, event_pass.tally)


def _analyze_file(
    path: PathLike | Sequence[Path],
    *,
    format: str | None,
    date: Date | None,
    strict: bool,
    tz: str | None,
    batch_rows: int | None = None,
) -> _Parts:
    """Read a trace file in batches, in one pass, and run every stage on what it kept.

    ``path`` may be the files of one rolled-over PML capture, in order
    (:mod:`traceaudit.formats.pml.rollover`): they are read as one trace.
    """
    from traceaudit.formats.batches import BATCH_ROWS, TraceBatches
    from traceaudit.formats.load import open_batches, refuse_if_nothing_read
    from traceaudit.formats.pml.rollover import chain_batches

    def open_part(part: Path) -> TraceBatches:
        return open_batches(
            part,
            format=format,
            date=date,
            strict=strict,
            columns=PASS_COLUMNS,
            batch_rows=BATCH_ROWS if batch_rows is None else batch_rows,
        )

    if isinstance(path, (str, os.PathLike)):
        batches = open_part(Path(path))
    else:
        batches = chain_batches(list(path), open_part) if len(path) > 1 else open_part(path[0])
    zone = zone_name(tz) if tz is not None and batches.clock == "utc" else None
    with EventPass() as event_pass:
        for frame in batches.frames:
            event_pass.add(frame if zone is None or tz is None else times_in_zone(frame, zone, tz))
        kept = event_pass.kept()
    tally = event_pass.tally
    refuse_if_nothing_read(batches.name, tally.events, batches.skipped, batches.skipped_rows)
    trace = batches.trace(kept)
    if zone is not None and tz is not None:
        exits = trace.process_exits
        if exits is not None:
            exits = times_in_zone(exits, zone, tz, columns=("started", "exited"))
        trace = dataclasses.replace(trace, clock=zone, process_exits=exits)
    return _analyze_kept(trace, kept, tally)


def _analyze_kept(trace: Trace, events: pl.DataFrame, tally: EventTally) -> _Parts:
    """Every stage, on the events an :class:`EventPass` kept and what it counted."""
    handle_frame = build_handles(events)
    completeness = completeness_of(
        tally, name=trace.name, format=trace.format, truncated=trace.truncated
    )
    failures = lock_failures(events)
    blocking = blocking_handles(failures, handle_frame, completeness.visibility)
    holders = section_holders(failures, sections(events, trace.process_exits))
    single_process = len(tally.pids) <= 1
    conflict_frame = conflicts(failures, blocking, single_process=single_process, sections=holders)
    conflict_frame = explain_no_holders(conflict_frame, completeness)
    chains = retry_chains(events, conflict_frame)
    first, last, first_ns, last_ns = tally.span()
    completeness = dataclasses.replace(
        completeness, ended_during_failure=ended_during_failure(chains, last)
    )
    summary = TraceSummary(
        name=trace.name,
        format=trace.format,
        events=tally.events,
        processes=len(tally.pids),
        first=first,
        last=last,
        first_ns=first_ns,
        last_ns=last_ns,
        clock=trace.clock,
        skipped=dict(trace.skipped),
        completeness=completeness,
    )
    warnings, headline = _diagnose(trace, tally, completeness)
    unseen = below_procmon_warning(trace.name, conflict_frame)
    if unseen:
        warnings.insert(0, unseen)
    return _Parts(
        summary=summary,
        events=events,
        handles=handle_frame,
        conflicts=conflict_frame,
        blocking=blocking,
        chains=chains,
        warnings=tuple(warnings),
        headline=headline,
        last=last,
    )


def _captures(
    sources: Sequence[PathLike | Trace],
) -> tuple[dict[int, tuple[Path, ...]], dict[int, tuple[str, ...]]]:
    """The files each trace file reads (keyed by its position in ``sources``), and notes.

    Files of one rolled-over PML capture (``Log.PML``, ``Log-1.PML``…) are one trace, read
    at the position of the first of them given; the others map to nothing. Notes say that
    the files were joined, that files named like parts were kept apart and why, or that
    parts of a capture lie beside a file that was given alone.
    """
    from traceaudit.formats.pml.rollover import group_parts, sibling_parts

    at = [k for k, item in enumerate(sources) if not isinstance(item, Trace)]
    groups, _ = group_parts([sources[k] for k in at])  # type: ignore[misc]
    captures: dict[int, tuple[Path, ...]] = {}
    notes: dict[int, tuple[str, ...]] = {}
    for group in groups:
        first = at[group.positions[0]]
        captures[first] = group.paths
        said = [group.note()] if group.rolled_over else []
        said += [*group.kept_apart, *sibling_parts(group.paths)]
        if said:
            notes[first] = tuple(said)
    return captures, notes


def _distinct_names(parts: list[_Parts]) -> list[_Parts]:
    """Give traces with the same name (two ``Logfile.CSV``, in-memory traces) distinct ones,
    so that their results do not mix when stacked by name."""
    seen: dict[str, int] = {}
    out = []
    for part in parts:
        name = part.summary.name
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            summary = dataclasses.replace(part.summary, name=f"{name} #{seen[name]}")
            part = dataclasses.replace(part, summary=summary)
        out.append(part)
    return out


def _glob_regex(pattern: str) -> str:
    """A Windows-style, case-insensitive glob as a regex: ``*`` any run of characters
    (backslashes included), ``?`` one character; everything else literal."""
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return "(?i)^" + "".join(parts) + "$"


def _process_matches(process: str) -> pl.Expr:
    """The process name, case-insensitive, with or without ``.exe`` (``uv`` is ``uv.exe``)."""
    name = pl.col("process").str.to_lowercase()
    wanted = process.lower()
    return (name == wanted) | (name == wanted + ".exe")


def _select(frame: pl.DataFrame, path_glob: str | None, process: str | None) -> pl.DataFrame:
    if path_glob:
        frame = frame.filter(pl.col("path").str.contains(_glob_regex(path_glob)))
    if process:
        frame = frame.filter(_process_matches(process))
    return frame


def _filter_outcome(
    everything: pl.DataFrame, selected: pl.DataFrame, path_glob: str | None, process: str | None
) -> FilterOutcome | None:
    """How many conflicts the filters kept, and what there was to choose from."""
    if not (path_glob or process):
        return None
    by_process = (
        everything.group_by("process").len().sort(["len", "process"], descending=[True, False])
        if everything.height
        else pl.DataFrame(schema={"process": pl.String, "len": pl.UInt32})
    )
    by_path = (
        everything.group_by(pl.col("path").str.to_lowercase().alias("key"))
        .agg(pl.col("path").first(), pl.len())
        .sort(["len", "path"], descending=[True, False])
        if everything.height
        else pl.DataFrame(schema={"key": pl.String, "path": pl.String, "len": pl.UInt32})
    )
    return FilterOutcome(
        path=path_glob,
        process=process,
        matched=selected.height,
        total=everything.height,
        processes=tuple(by_process.select("process", "len").iter_rows()),
        paths=tuple(by_path.select("path", "len").iter_rows()),
    )


def _with_trace(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    return frame.select(pl.lit(name).alias("trace"), pl.all())


def analyze(
    source: PathLike | Trace | Sequence[PathLike | Trace],
    *,
    format: str | None = None,
    date: Date | None = None,
    strict: bool = False,
    path_glob: str | None = None,
    process: str | None = None,
    target: float = 0.99,
    max_wait_ms: float | None = None,
    tz: str | None = None,
    batch_rows: int | None = None,
    filters: PathLike | FltmcListing | None = None,
) -> Report:
    """Read one or more traces and analyse them; the same engine as ``traceaudit analyze``.

    ``filters`` is a file holding the output of ``fltmc filters`` (and/or ``fltmc
    instances``) from the machine of the capture, or one already read
    (:func:`traceaudit.minifilters.read_fltmc`): the report then lists the minifilters below
    Procmon's altitude (``report.minifilters``), which can hold a file without any process
    showing it. It is read before any trace.

    ``path_glob`` and ``process`` narrow which conflicts are reported (the failing path and
    the failing process, matched case-insensitively with or without ``.exe``); every
    process's handles still count as blockers. Several traces
    are analysed one by one and their results stacked with a ``trace`` column.

    A trace file is read in batches of ``batch_rows`` events (default: the reader's), in
    one pass that keeps only the events the analysis needs
    (:mod:`traceaudit.analysis.event_pass`), so memory follows the failures and the handles
    on the failing files, not the size of the trace. ``report.events`` holds those events.
    """
    listing = (
        None
        if filters is None
        else filters
        if isinstance(filters, FltmcListing)
        else read_fltmc(filters)
    )
    sources: Sequence[PathLike | Trace]
    sources = [source] if isinstance(source, (str, os.PathLike, Trace)) else list(source)
    captures, capture_notes = _captures(sources)
    parts: list[_Parts] = []
    for position, item in enumerate(sources):
        if isinstance(item, Trace):
            parts.append(analyze_trace(to_timezone(item, tz)))
            continue
        files = captures.get(position)
        if files is None:  # a later file of a rolled-over capture: read with the first
            continue
        part = _analyze_file(
            files, format=format, date=date, strict=strict, tz=tz, batch_rows=batch_rows
        )
        notes = capture_notes.get(position, ())
        if notes:
            part = dataclasses.replace(part, warnings=(*part.warnings, *notes))
        parts.append(part)

    parts = _distinct_names(parts)

    def stack(attr: str) -> pl.DataFrame:
        frames = [_with_trace(getattr(p, attr), p.summary.name) for p in parts]
        return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()

    every_conflict = stack("conflicts")
    conflict_frame = _select(every_conflict, path_glob, process)
    chains = _select(stack("chains"), path_glob, process)
    blocking = stack("blocking").join(
        conflict_frame.select("trace", "conflict"), on=["trace", "conflict"], how="semi"
    )
    trace_ends = pl.DataFrame(
        {"trace": [p.summary.name for p in parts], "last": [p.last for p in parts]},
        schema={"trace": pl.String, "last": pl.Datetime("ns")},
    )
    episodes, blocked = lock_episodes(conflict_frame, blocking, chains, trace_ends)
    advice = retry_advice(
        episodes,
        blocked,
        chains,
        target=target,
        max_wait_ms=max_wait_ms,
        conflicts=conflict_frame,
    )
    times = blocked_times(episodes, blocked)
    return Report(
        traces=tuple(p.summary for p in parts),
        events=stack("events"),
        handles=stack("handles"),
        conflicts=conflict_frame,
        blocking=blocking,
        chains=chains,
        windows=window_table(conflict_frame),
        episodes=episodes,
        blocked=blocked,
        blocked_times=times,
        blocked_windows=blocked_table(times),
        policy=advice.policy,
        policy_withheld=advice.withheld,
        replay=advice.replay,
        app_retries=advice.app_retries,
        warnings=tuple(w for p in parts for w in p.warnings),
        filters={"path": path_glob, "process": process},
        filter_outcome=_filter_outcome(every_conflict, conflict_frame, path_glob, process),
        headline_warning=next((p.headline for p in parts if p.headline), None),
        minifilters=listing,
    )


def timeline(
    source: PathLike | Sequence[PathLike] | Trace | pl.DataFrame,
    path: str,
    *,
    format: str | None = None,
    date: Date | None = None,
    strict: bool = False,
) -> pl.DataFrame:
    """Every event on ``path`` or below it (case-insensitive), in time order, with the
    handle each belongs to (:func:`traceaudit.analysis.timeline.timeline`).

    ``source`` is a trace file, read in batches and keeping only that path's events (so a
    trace of any size fits), the files of one rolled-over PML capture (read as one trace,
    in part order), a :class:`~traceaudit.schema.Trace`, or an event frame.
    """
    if isinstance(source, pl.DataFrame):
        return path_timeline(source, path)
    if isinstance(source, Trace):
        return path_timeline(source.events, path)
    from traceaudit.analysis.spill import detach
    from traceaudit.formats.batches import TraceBatches
    from traceaudit.formats.load import open_batches, refuse_if_nothing_read
    from traceaudit.formats.pml.rollover import chain_batches, one_capture

    def open_part(part: Path) -> TraceBatches:
        return open_batches(part, format=format, date=date, strict=strict)

    if isinstance(source, (str, os.PathLike)):
        batches = open_part(Path(source))
    else:
        batches = chain_batches(one_capture(source), open_part)
    wanted = on_path(path)
    read = 0
    frames = []
    for frame in batches.frames:
        read += frame.height
        frames.append(detach(frame.filter(wanted)))  # not the whole batch's strings
    refuse_if_nothing_read(batches.name, read, batches.skipped, batches.skipped_rows)
    events = pl.concat(frames) if frames else empty_events()
    return path_timeline(events.sort("time", "row"), path)
