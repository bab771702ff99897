"""The pooled summary of a fleet dataset: who held files across machines, for how long, and
which retry policy would have ridden out the locks of the whole fleet.

:func:`summarize` reads the dataset and pools it exactly as :func:`traceaudit.analyze`
pools several traces given together: traces in path order, named as ``analyze`` names them
(the file name; ``name #2``… for repeats), episodes numbered across the fleet in
(trace, time, conflict) order, and the same functions for hold times
(:func:`~traceaudit.analysis.hold_times.window_table`), blocked times
(:func:`~traceaudit.analysis.episodes.blocked_times`) and the advice
(:func:`~traceaudit.policy.advice.retry_advice`: the suggested policy and the replay of
known tools). The policy, replay, hold-time and blocked-time tables therefore equal those
of ``traceaudit.analyze(paths)`` for the same traces in path order.

A *machine* is a trace: each capture counts as one machine.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import polars as pl

from traceaudit.display import fmt_ms, plural
from traceaudit.fleet.dataset import known_traces, read_table
from traceaudit.policy.suggestion import RetryPolicy

__all__ = ["FleetRun", "FleetSummary", "summarize"]

_HELD = (
    "blocked-by-other-process",
    "blocked-by-own-handle",
    "mapped-by-other-process",
    "mapped-by-own-process",
)
_OWN = ("blocked-by-own-handle", "mapped-by-own-process")
_CONFLICT_COLUMNS: dict[str, pl.DataType] = {
    "conflict": pl.UInt32(),
    "process": pl.String(),
    "path": pl.String(),
    "verdict": pl.String(),
    "remaining_ms": pl.Float64(),
    "censored": pl.Boolean(),
    "decisive_process": pl.String(),
}
_EPISODE_EXTRAS = ("trace_id", "time", "blocked_ms", "censored", "blocked")
"""Columns the fleet adds to ``analyze``'s episodes (see :mod:`.task`)."""
_EPISODE_SCHEMA: dict[str, pl.DataType] = {
    "episode": pl.UInt32(),
    "trace": pl.String(),
    "conflict": pl.UInt32(),
    "chain": pl.UInt32(),
    "process": pl.String(),
    "operation": pl.String(),
    "path": pl.String(),
    "error_code": pl.Int64(),
    "decisive_process": pl.String(),
    "horizon_ms": pl.Float64(),
}
_LABEL = 11
_LOCK_LABELS = ("Held by", "Blocked", "Held for", "Advice")
MAX_HOLDERS = 3
MAX_ROWS = 10


@dataclass(frozen=True)
class FleetRun:
    """What one run did: files found, traces analysed, failed, skipped, ignored.

    ``found`` counts files; ``rolled_over`` of them are parts of ``captures`` rolled-over
    PML captures, each read as one trace."""

    found: int = 0
    analysed: int = 0
    failed: int = 0
    skipped: int = 0
    ignored: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    workers: int | None = None
    scheduler: str | None = None
    rolled_over: int = 0
    captures: int = 0

    def line(self) -> str:
        """``fleet: 200 files: 195 analysed, 3 failed, 2 skipped … in 12.3 s``"""
        parts = [f"{self.analysed:,} analysed", f"{self.failed:,} failed"]
        if self.skipped:
            parts.append(f"{self.skipped:,} skipped (already in the dataset)")
        if self.duplicates:
            parts.append(f"{self.duplicates:,} duplicate{'s' if self.duplicates != 1 else ''}")
        if self.ignored:
            parts.append(f"{self.ignored:,} not traces (ignored)")
        where = f" on {self.scheduler}" if self.scheduler else ""
        if self.workers and not self.scheduler:
            where = f" on {plural(self.workers, 'worker')}"
        joined = (
            f" ({self.rolled_over:,} of them in {plural(self.captures, 'rolled-over capture')}, "
            f"each one trace)"
            if self.captures
            else ""
        )
        return (
            f"fleet: {plural(self.found, 'file')}{joined}: {', '.join(parts)} in "
            f"{self.seconds:,.1f} s{where}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "analysed": self.analysed,
            "failed": self.failed,
            "skipped": self.skipped,
            "ignored": self.ignored,
            "duplicates": self.duplicates,
            "rolled_over": self.rolled_over,
            "captures": self.captures,
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            "scheduler": self.scheduler,
        }


def _round(value: Any, digits: int = 4) -> Any:
    return round(value, digits) if isinstance(value, float) else value


@dataclass(frozen=True)
class FleetSummary:
    """A fleet dataset pooled: frames for notebooks, ``to_text`` for people, ``to_dict``
    for machines.

    ``traces``: every trace in the dataset (``trace``, the name the pooled frames use;
    ``trace_id``, ``path``, ``status``, ``error`` and the counts). ``holders``: one row per
    holding process across the fleet. ``windows`` (hold time, per failure) and
    ``blocked_windows`` (blocked time, per lock episode) are the tables ``analyze`` prints;
    ``blocked_times`` has one row per episode; ``episodes`` and ``blocked`` are the pooled
    frames the policy was learned from; ``policy`` (or ``policy_withheld``) and ``replay``
    the advice.
    """

    dataset: str
    traces: pl.DataFrame
    holders: pl.DataFrame
    windows: pl.DataFrame
    blocked_windows: pl.DataFrame
    blocked_times: pl.DataFrame
    episodes: pl.DataFrame
    blocked: pl.DataFrame
    policy: RetryPolicy | None = None
    policy_withheld: str | None = None
    replay: pl.DataFrame = field(default_factory=pl.DataFrame)
    target: float = 0.99
    max_wait_ms: float | None = None
    run: FleetRun | None = None

    @property
    def failures(self) -> pl.DataFrame:
        """The traces that could not be read: ``trace_id``, ``path``, ``error``."""
        return self.traces.filter(pl.col("status") == "error").select("trace_id", "path", "error")

    @property
    def analysed(self) -> int:
        return self.traces.filter(pl.col("status") == "ok").height

    def snippets(self) -> dict[str, str]:
        from traceaudit.policy import snippets

        return {} if self.policy is None else snippets(self.policy)

    # ------------------------------------------------------------------ data
    def to_dict(self) -> dict[str, Any]:
        """One JSON-ready document (``traceaudit fleet --json``)."""
        windows = [{k: _round(v) for k, v in r.items()} for r in self.windows.to_dicts()]
        blocked = [{k: _round(v) for k, v in r.items()} for r in self.blocked_windows.to_dicts()]
        return {
            "dataset": self.dataset,
            "traces": {
                "total": self.traces.height,
                "analysed": self.analysed,
                "failed": self.failures.height,
            },
            "failures": self.failures.to_dicts(),
            "run": None if self.run is None else self.run.to_dict(),
            "holders": [{k: _round(v) for k, v in r.items()} for r in self.holders.to_dicts()],
            "windows": {
                "overall": {k: v for k, v in windows[0].items() if k != "blocker"}
                if windows
                else {},
                "by_process": windows[1:],
            },
            "blocked": {
                "overall": {k: v for k, v in blocked[0].items() if k != "holder"}
                if blocked
                else {},
                "by_process": blocked[1:],
            },
            "policy": None if self.policy is None else self.policy.to_dict(),
            "policy_withheld": self.policy_withheld,
            "replay": [{k: _round(v) for k, v in r.items()} for r in self.replay.to_dicts()],
            "snippets": self.snippets(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)

    # ------------------------------------------------------------------ text
    def to_text(self) -> str:
        """The fleet report for a person: the answer first, then the tables behind it."""
        lines = [
            f"Fleet {self.dataset}: {plural(self.traces.height, 'trace')}, "
            f"{self.analysed:,} analysed, {self.failures.height:,} could not be read"
        ]
        lines += ["", "Answer:"]
        answer = self._answer()
        if not any(label in _LOCK_LABELS for label, _ in answer):
            lines.append(
                f"  {'':<{_LABEL}} No failed file operation in these traces can be explained "
                "by a lock."
            )
        lines += [f"  {label:<{_LABEL}} {text}" for label, text in answer]
        details = self._holder_table() + self._times() + self._advice() + self._failed()
        if details:
            lines += ["", "Details", "-------"] + details[1:]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_text()

    def _answer(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for r in self.holders.head(MAX_HOLDERS).iter_rows(named=True):
            victims = ", ".join(r["failing"][:3]) + (", …" if len(r["failing"]) > 3 else "")
            blocked = (
                f"; blocked {fmt_ms(r['blocked_p50_ms'])} median, {fmt_ms(r['blocked_max_ms'])} "
                "at most"
                if r["blocked_p50_ms"] is not None
                else "; still blocking when the capture ended"
                if r["blocked_censored"]
                else ""
            )
            out.append(
                (
                    "Held by",
                    f"{r['holder']}, blocking {victims}: {plural(r['failures'], 'failure')} on "
                    f"{plural(r['machines'], 'machine')}{blocked}",
                )
            )
        if self.holders.height > MAX_HOLDERS:
            more = self.holders.height - MAX_HOLDERS
            out.append(("Held by", f"... and {plural(more, 'more process', 'more processes')}"))
        overall = self.blocked_windows.row(0, named=True) if self.blocked_windows.height else None
        if overall and overall["count"]:
            machines = self.blocked_times["trace"].n_unique()
            done = overall["count"] - overall["censored"]
            figure = (
                "unknown: every episode was still blocked when its capture ended"
                if done == 0
                else f"{fmt_ms(overall['p50_ms'])} median, {fmt_ms(overall['p90_ms'])} p90, "
                f"{fmt_ms(overall['max_ms'])} at most"
            )
            extra = (
                f"; {overall['censored']:,} still blocked at the end" if overall["censored"] else ""
            )
            out.append(
                (
                    "Blocked",
                    f"{figure} until the operation could first have succeeded (blocked time over "
                    f"{plural(overall['count'], 'lock episode')} on "
                    f"{plural(machines, 'machine')}{extra})",
                )
            )
        hold = self.windows.row(0, named=True) if self.windows.height else None
        if hold and hold["count"]:
            done = hold["count"] - hold["censored"]
            figure = (
                "unknown: the handles were still open when the captures ended"
                if done == 0
                else f"{fmt_ms(hold['p50_ms'])} median, {fmt_ms(hold['max_ms'])} at most"
            )
            extra = f"; {hold['censored']:,} still open at the end" if hold["censored"] else ""
            out.append(
                (
                    "Held for",
                    f"{figure}: how long the handles present at a failure stayed open (hold "
                    f"time over {plural(hold['count'], 'failure')}{extra})",
                )
            )
        if self.policy is not None:
            n = self.policy.n_windows or 0
            coverage = self.policy.coverage or 0.0
            out.append(
                (
                    "Advice",
                    f"retry {self.policy.describe()}: would have ridden out "
                    f"{round(coverage * n):,} of {plural(n, 'lock episode')} ({coverage:.0%}) "
                    "across the fleet",
                )
            )
        elif self.policy_withheld:
            out.append(("Advice", self.policy_withheld.removeprefix("No retry advice: ")))
        caveat = self._incomplete()
        if caveat:
            out.append(("Caveat", caveat))
        groups = self._failure_groups()
        if groups:
            total = sum(len(paths) for _, paths, _ in groups)
            reasons = ", ".join(f"{reason} ({len(paths):,})" for reason, paths, _ in groups[:3])
            others = f", {plural(len(groups) - 3, 'other reason')}" if len(groups) > 3 else ""
            out.append(
                (
                    "Unread",
                    f"{plural(total, 'trace')} could not be read: {reasons}{others}; each one's "
                    "error is below and in the traces table",
                )
            )
        return out

    def _incomplete(self) -> str | None:
        """A caveat when analysed traces are incomplete captures (a Procmon filter that
        dropped the closes or the other processes…): they can hide holders and hold times.
        The minor gaps (a capture that stopped during a failure…) are left out, as
        ``analyze`` ranks them last."""
        from traceaudit.analysis.completeness import GAPS, MINOR_GAPS

        ok = self.traces.filter(pl.col("status") == "ok")
        serious = pl.col("gaps").list.set_difference(pl.lit(sorted(MINOR_GAPS)))
        incomplete = ok.with_columns(gaps=serious).filter(pl.col("gaps").list.len() > 0)
        if incomplete.is_empty():
            return None
        found = incomplete["gaps"].explode().drop_nulls().value_counts()
        rank = {gap: k for k, gap in enumerate(GAPS)}  # ties: the most serious first
        counts = sorted(found.iter_rows(), key=lambda r: (-r[1], rank.get(r[0], len(rank))))
        gaps = ", ".join(f"{g} {n:,}" for g, n in counts[:4])
        more = ", …" if len(counts) > 4 else ""
        are = "is an incomplete capture" if incomplete.height == 1 else "are incomplete captures"
        return (
            f"{incomplete.height:,} of {plural(ok.height, 'analysed trace')} {are} "
            f"({gaps}{more}): such captures can miss holders and hold times; the traces "
            "table's gaps and headline columns say what to change in the capture"
        )

    def _failure_groups(self) -> list[tuple[str, list[str], str]]:
        """The unread traces grouped by the gist of their error, the commonest first:
        (reason, paths, the first one's full error without its file name)."""
        groups: dict[str, tuple[list[str], str]] = {}
        for r in self.failures.iter_rows(named=True):
            detail = _without_file(r["error"] or "unknown error", r["path"])
            reason = _gist(detail)
            groups.setdefault(reason, ([], detail))[0].append(r["path"])
        ordered = sorted(groups.items(), key=lambda item: -len(item[1][0]))
        return [(reason, paths, detail) for reason, (paths, detail) in ordered]

    def _holder_table(self) -> list[str]:
        if self.holders.is_empty():
            return []
        lines = [
            "",
            "Holders across machines (failures: operations they blocked; blocked time per lock "
            "episode, hold time per failure):",
            f"  {'holder':<28} {'failures':>8} {'machines':>8} {'episodes':>8} "
            f"{'blocked p50':>11} {'blocked max':>11} {'held p50':>11} {'held max':>11}",
        ]
        for r in self.holders.head(MAX_ROWS).iter_rows(named=True):
            lines.append(
                f"  {str(r['holder'])[:28]:<28} {r['failures']:>8,} {r['machines']:>8,} "
                f"{r['episodes']:>8,} {fmt_ms(r['blocked_p50_ms']):>11} "
                f"{fmt_ms(r['blocked_max_ms']):>11} {fmt_ms(r['hold_p50_ms']):>11} "
                f"{fmt_ms(r['hold_max_ms']):>11}"
            )
        if self.holders.height > MAX_ROWS:
            more = plural(self.holders.height - MAX_ROWS, "more process", "more processes")
            lines.append(f"  ... and {more}")
        return lines

    @staticmethod
    def _table(title: str, table: pl.DataFrame, key: str, unit: str) -> list[str]:
        if table.is_empty() or table["count"][0] == 0:
            return []
        lines = [
            "",
            title,
            f"  {key:<28} {unit:>8} {'censored':>9} {'p50':>11} {'p90':>11} {'p99':>11} "
            f"{'max':>11}",
        ]
        for r in table.head(MAX_ROWS + 1).iter_rows(named=True):
            lines.append(
                f"  {str(r[key])[:28]:<28} {r['count']:>8,} {r['censored']:>9,} "
                f"{fmt_ms(r['p50_ms']):>11} {fmt_ms(r['p90_ms']):>11} {fmt_ms(r['p99_ms']):>11} "
                f"{fmt_ms(r['max_ms']):>11}"
            )
        if table.height > MAX_ROWS + 1:
            more = plural(table.height - MAX_ROWS - 1, "more process", "more processes")
            lines.append(f"  ... and {more}")
        return lines

    def _times(self) -> list[str]:
        return self._table(
            "Blocked time (per lock episode: from the first failure until the operation could "
            "first have succeeded; what a retry policy must ride out):",
            self.blocked_windows,
            "holder",
            "episodes",
        ) + self._table(
            "Hold time (per failure: how long the handles present at that instant stayed open):",
            self.windows,
            "blocker",
            "failures",
        )

    def _advice(self) -> list[str]:
        policy = self.policy
        if policy is None:
            return []
        lines = [
            "",
            f"Suggested retry policy (to ride out {policy.target:.0%} of the fleet's lock "
            "episodes):",
            f"  {policy.describe()}",
            f"  coverage {(policy.coverage or 0.0):.1%} of "
            f"{plural(policy.n_windows or 0, 'lock episode')}; expected added wait "
            f"{fmt_ms(policy.expected_wait_ms)}, worst {fmt_ms(policy.worst_wait_ms)}; retries "
            "Win32 errors " + ", ".join(str(c) for c in policy.error_codes),
        ]
        lines += [f"  - {note}" for note in policy.notes]
        from traceaudit.report.text import replay_table

        return lines + replay_table(self.replay, "the fleet's lock episodes")

    def _failed(self) -> list[str]:
        """Each reason once, with what to do (the first trace's full error), then its
        traces: six ETW traces without file I/O print one paragraph of advice, not six."""
        groups = self._failure_groups()
        if not groups:
            return []
        total = sum(len(paths) for _, paths, _ in groups)
        lines = ["", f"Traces that could not be read ({total:,}), by reason:"]
        for reason, paths, detail in groups:
            lines.append(f"  {reason} ({plural(len(paths), 'trace')}):")
            lines += [f"    {path}" for path in paths[:MAX_ROWS]]
            if len(paths) > MAX_ROWS:
                lines.append(f"    ... and {len(paths) - MAX_ROWS:,} more (the traces table)")
            lines.append(f"    {'error' if len(paths) == 1 else 'the first one'}: {detail}")
        return lines


_GIST_END = re.compile(r": |\. | \(|; ")
_GIST_CHARS = 80


def _without_file(error: str, path: str) -> str:
    """An error without the file it names first (the path, the file name, or a member of
    an archive: ``logs.zip/Logfile.PML: …``), since the report prints the path beside it."""
    name = PurePath(path).name
    for prefix in (path, name):
        if prefix and error.startswith(prefix):
            rest = error[len(prefix) :]
            if rest.startswith(": "):
                return rest[2:]
            if rest[:1] in ("/", "\\") and ": " in rest:
                return rest.split(": ", 1)[1]
    return error


def _gist(error: str) -> str:
    """The first clause of an error (``damaged gzip file``, ``an ETW trace without file
    I/O``): what the traces of a group have in common."""
    match = _GIST_END.search(error)
    gist = error[: match.start()] if match else error.rstrip(".")
    return gist if len(gist) <= _GIST_CHARS else gist[: _GIST_CHARS - 1] + "…"


def _distinct(names: list[str]) -> list[str]:
    """``analyze``'s names for traces given together: a repeated name gets `` #2``, `` #3``…"""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out


def _holders(
    conflicts: pl.DataFrame,
    windows: pl.DataFrame,
    blocked_windows: pl.DataFrame,
    times: pl.DataFrame,
) -> pl.DataFrame:
    """One row per holding process: what it blocked, where, and for how long."""
    held = conflicts.filter(pl.col("verdict").is_in(list(_HELD)))
    grouped = held.group_by(holder=pl.col("decisive_process").fill_null("?")).agg(
        failures=pl.len().cast(pl.Int64),
        machines=pl.col("trace_id").n_unique().cast(pl.Int64),
        paths=pl.col("path").str.to_lowercase().n_unique().cast(pl.Int64),
        own=pl.col("verdict").is_in(list(_OWN)).sum().cast(pl.Int64),
        failing=pl.col("process").fill_null("?").unique().sort(),
    )
    episodes = times.group_by("holder").agg(episodes=pl.len().cast(pl.Int64))
    blocked = blocked_windows.filter(pl.col("holder") != "all").select(
        "holder",
        blocked_censored="censored",
        blocked_p50_ms="p50_ms",
        blocked_p90_ms="p90_ms",
        blocked_max_ms="max_ms",
    )
    hold = windows.filter(pl.col("blocker") != "all").select(
        holder="blocker", hold_censored="censored", hold_p50_ms="p50_ms", hold_max_ms="max_ms"
    )
    return (
        grouped.join(episodes, on="holder", how="left")
        .join(blocked, on="holder", how="left")
        .join(hold, on="holder", how="left")
        .with_columns(pl.col("episodes", "blocked_censored", "hold_censored").fill_null(0))
        .sort(["failures", "holder"], descending=[True, False])
        .select(
            "holder",
            "failures",
            "machines",
            "paths",
            "own",
            "failing",
            "episodes",
            "blocked_censored",
            "blocked_p50_ms",
            "blocked_p90_ms",
            "blocked_max_ms",
            "hold_censored",
            "hold_p50_ms",
            "hold_max_ms",
        )
    )


def summarize(
    dataset: str | os.PathLike[str],
    *,
    target: float = 0.99,
    max_wait_ms: float | None = None,
    run: FleetRun | None = None,
) -> FleetSummary:
    """Pool every successfully analysed trace of the dataset (see the module docstring)."""
    from traceaudit.analysis.episodes import blocked_table, blocked_times
    from traceaudit.analysis.hold_times import window_table
    from traceaudit.policy.advice import retry_advice

    every = known_traces(dataset).sort("path")
    ok = every.filter(pl.col("status") == "ok")
    names = pl.DataFrame(
        {"trace_id": ok["trace_id"], "trace": _distinct(ok["name"].to_list())},
        schema={"trace_id": pl.String, "trace": pl.String},
    )
    traces = every.join(names, on="trace_id", how="left", maintain_order="left").select(
        "trace", "trace_id", pl.exclude("trace", "trace_id")
    )
    if ok.height:
        conflicts = read_table(dataset, "conflicts", list(_CONFLICT_COLUMNS), known=every)
        stored = read_table(dataset, "episodes", known=every)
    else:
        conflicts = pl.DataFrame(schema={"trace_id": pl.String(), **_CONFLICT_COLUMNS})
        stored = pl.DataFrame(
            schema={
                "trace_id": pl.String(),
                **{k: v for k, v in _EPISODE_SCHEMA.items() if k != "trace"},
                "time": pl.Datetime("ns"),
                "blocked": pl.List(pl.Struct({"start_ms": pl.Float64, "end_ms": pl.Float64})),
            }
        )
    conflicts = conflicts.join(names, on="trace_id", how="left", maintain_order="left")
    windows = window_table(conflicts)

    # Episodes numbered across the fleet exactly as analyze() numbers them.
    pooled = (
        stored.join(names, on="trace_id", how="inner", maintain_order="left")
        .sort("trace", "time", "conflict")
        .with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.UInt32).alias("episode"),
            pl.col("episode").alias("source_episode"),
        )
    )
    # analyze()'s own episode columns, as stored, with the fleet's additions left out
    kept = [c for c in stored.columns if c not in _EPISODE_EXTRAS and c != "episode"]
    episodes = pooled.select(pl.col("episode").cast(pl.UInt32), "trace", *kept)
    blocked = (
        pooled.filter(pl.col("blocked").list.len() > 0)
        .select("episode", "blocked")
        .explode("blocked")
        .unnest("blocked")
        .select(
            pl.col("episode").cast(pl.UInt32),
            pl.col("start_ms").cast(pl.Float64),
            pl.col("end_ms").cast(pl.Float64),
        )
        .sort("episode", "start_ms")
    )
    no_chains = pl.DataFrame(schema={"trace": pl.String, "chain": pl.UInt32})
    advice = retry_advice(
        episodes,
        blocked,
        no_chains,
        target=target,
        max_wait_ms=max_wait_ms,
        conflicts=conflicts.select("verdict"),
    )
    times = blocked_times(episodes, blocked)
    blocked_windows = blocked_table(times)
    return FleetSummary(
        dataset=os.fspath(dataset),
        traces=traces,
        holders=_holders(conflicts, windows, blocked_windows, times),
        windows=windows,
        blocked_windows=blocked_windows,
        blocked_times=times,
        episodes=episodes,
        blocked=blocked,
        policy=advice.policy,
        policy_withheld=advice.withheld,
        replay=advice.replay,
        target=target,
        max_wait_ms=max_wait_ms,
        run=run,
    )
