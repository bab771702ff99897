"""The answer a person needs first, as plain data: who held what, for how long, what to do.

Every face (terminal text, HTML) opens with the same few lines, built here from a
:class:`~traceaudit.report.model.Report`: the holders (the processes whose handles or mapped
sections were in the way, most failures first), the failures no holder explains, how
long operations stayed blocked (blocked time, per lock episode) and how long the handles
present at each failure stayed open (hold time, per failure), the retry advice with its
coverage or the reason there is none, and the warning that matters most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from traceaudit.display import fmt_ms, plural

if TYPE_CHECKING:
    from traceaudit.minifilters.fltmc import FltmcListing
    from traceaudit.report.data import ReportData as Report

__all__ = ["Answer", "Holder", "answer", "MAX_HOLDERS"]

MAX_HOLDERS = 3


@dataclass(frozen=True)
class Holder:
    """One process whose handle (or mapped section) was in the way."""

    process: str
    failing: tuple[str, ...]
    failures: int
    paths: int
    own: bool
    section: bool

    def text(self) -> str:
        what = (
            "its own mapped section"
            if self.own and self.section
            else ("a mapped section" if self.section else ("its own handle" if self.own else ""))
        )
        victims = ", ".join(self.failing)
        if self.own:
            head = f"{self.process}, {what}"
        else:
            head = f"{self.process}" + (f" ({what})" if what else "") + f", blocking {victims}"
        return f"{head}: {plural(self.failures, 'failure')} on {plural(self.paths, 'path')}"


@dataclass(frozen=True)
class Answer:
    """The first lines of a report (see the module docstring)."""

    conflicts: int
    holders: tuple[Holder, ...]
    more_holders: int
    others: tuple[tuple[str, str], ...]
    blocked: str | None
    hold: str | None
    advice: str
    warning: str | None
    filter_note: str | None

    def lines(self) -> list[tuple[str, str]]:
        """(label, text) pairs in reading order."""
        out: list[tuple[str, str]] = []
        if self.filter_note:
            out.append(("Filters", self.filter_note))
        for holder in self.holders:
            out.append(("Held by", holder.text()))
        if self.more_holders:
            out.append(
                (
                    "Held by",
                    f"... and {plural(self.more_holders, 'more process', 'more processes')}",
                )
            )
        out.extend(self.others)
        if self.blocked:
            out.append(("Blocked", self.blocked))
        if self.hold:
            out.append(("Held for", self.hold))
        if self.conflicts or self.filter_note:
            out.append(("Advice", self.advice))
        if self.warning:
            out.append(("Warning", self.warning))
        return out


_HELD = (
    "blocked-by-other-process",
    "blocked-by-own-handle",
    "mapped-by-other-process",
    "mapped-by-own-process",
)


def _holders(conflicts: pl.DataFrame) -> tuple[list[Holder], int]:
    held = conflicts.filter(pl.col("verdict").is_in(list(_HELD)))
    if held.is_empty():
        return [], 0
    grouped = (
        held.group_by(
            pl.col("decisive_process").fill_null("?").alias("holder"),
            pl.col("verdict")
            .str.ends_with("own-handle")
            .or_(pl.col("verdict") == "mapped-by-own-process")
            .alias("own"),
            pl.col("verdict").str.starts_with("mapped-").alias("section"),
        )
        .agg(
            failures=pl.len(),
            paths=pl.col("path").str.to_lowercase().n_unique(),
            failing=pl.col("process").fill_null("?").unique().sort(),
        )
        .sort(["failures", "holder"], descending=[True, False])
    )
    holders = [
        Holder(
            process=r["holder"],
            failing=tuple(r["failing"]),
            failures=r["failures"],
            paths=r["paths"],
            own=r["own"],
            section=r["section"],
        )
        for r in grouped.head(MAX_HOLDERS).iter_rows(named=True)
    ]
    return holders, max(grouped.height - MAX_HOLDERS, 0)


def _candidate_owners(frame: pl.DataFrame) -> str:
    owners = (
        frame.select(pl.col("candidates").explode().struct.field("process"))
        .drop_nulls()
        .group_by("process")
        .len()
        .sort(["len", "process"], descending=[True, False])
    )
    return ", ".join(f"{plural(n, 'handle')} of {p}" for p, n in owners.head(3).iter_rows())


def _what(frame: pl.DataFrame) -> str:
    """The most common failures in ``frame``: ``uv.exe SetRenameInformationFile ACCESS DENIED``."""
    common = (
        frame.with_columns(pl.col("process", "operation", "result").fill_null("?"))
        .group_by("process", "operation", "result")
        .len()
        .sort(["len", "process", "operation"], descending=[True, False, False])
    )
    shown = [f"{p} {o} {r}" for p, o, r, _ in common.head(2).iter_rows()]
    more = common.height - len(shown)
    return "; ".join(shown) + (f"; {plural(more, 'other kind')}" if more > 0 else "")


def _others(report: Report) -> list[tuple[str, str]]:
    """(label, line) per kind of failure no holder explains, and for oplock probes."""
    conflicts = report.conflicts
    out: list[tuple[str, str]] = []
    incomplete = conflicts.filter(pl.col("verdict") == "incomplete-capture")
    if incomplete.height:
        out.append(
            (
                "Cannot tell",
                f"{plural(incomplete.height, 'failure')} ({_what(incomplete)}) whose holder this "
                f"capture cannot show: the handles in the way ({_candidate_owners(incomplete)}) "
                "may only look open because the capture cannot show them close (candidates, "
                "not holders)",
            )
        )
    below = _below_procmon(conflicts)
    filtered = conflicts.filter(pl.col("verdict") == "no-holder-filtered").filter(~below)
    if filtered.height:
        out.append(
            (
                "No holder",
                f"{plural(filtered.height, 'failure')} ({_what(filtered)}) with no holder in the "
                "capture: the holder was most likely filtered out",
            )
        )
    unseen = conflicts.filter(below & (pl.col("verdict") == "no-holder-filtered"))
    if unseen.height:
        out.append(
            (
                "No holder",
                f"{plural(unseen.height, 'failure')} ({_what(unseen)}) with no holder in a "
                "capture that shows other processes' opens and closes: most likely a "
                "minifilter below Procmon (antivirus or EDR), unless a filter on the capture "
                "left the holding process out; fltmc filters (as administrator) lists the "
                "minifilters",
            )
        )
    permission = conflicts.filter(pl.col("verdict") == "no-holder-permission")
    if permission.height:
        maybe_filter = (
            ", or a security minifilter below Procmon refusing the open"
            if permission.filter(below).height
            else ""
        )
        out.append(
            (
                "No holder",
                f"{plural(permission.height, 'failure')} ({_what(permission)}) with nothing "
                f"holding the file: most likely permission (ACL or read-only) refusals"
                + maybe_filter,
            )
        )
    listing = report.minifilters
    if listing is not None and conflicts.filter(below).height:
        out.append(("Below", _below_line(listing)))
    probes = conflicts.filter(pl.col("verdict") == "oplock-probe")
    if probes.height:
        by = ", ".join(sorted(set(probes["process"].fill_null("?").to_list())))
        preventing = sorted(set(probes["decisive_process"].drop_nulls().to_list()))
        because = f" ({', '.join(preventing)} had the file open)" if preventing else ""
        out.append(
            (
                "Not a lock",
                f"{plural(probes.height, 'oplock probe')} by {by} declined by design{because}: "
                "an open that asks for an oplock is refused while others have the file open, "
                "and the caller opens again without it; not a failure anyone suffers",
            )
        )
    return out


def _below_procmon(conflicts: pl.DataFrame) -> pl.Expr:
    """Failures with no holder in a capture that could have shown one."""
    if "unseen_holder" not in conflicts.columns:
        return pl.lit(False)
    return (pl.col("unseen_holder") == "below-procmon").fill_null(False)


def _below_line(listing: FltmcListing) -> str:
    """The minifilters below Procmon in the ``fltmc`` listing, antivirus first."""
    below = listing.below
    if not below:
        return f"{listing.source} lists no minifilter below Procmon ({listing.cutoff})"
    first = list(listing.antivirus) + [f for f in below if f not in listing.antivirus]
    shown = []
    for f in first[:3]:
        owner = f.allocations[0].company if f.allocations else None
        group = f.group.name if f.group else "no load order group"
        shown.append(f"{f.name} ({f.altitude}, {group}" + (f", {owner})" if owner else ")"))
    more = len(below) - len(shown)
    return (
        f"{plural(len(below), 'minifilter')} below Procmon in {listing.source}: "
        + ", ".join(shown)
        + (f" and {more} more" if more > 0 else "")
    )


def _blocked_line(report: Report) -> str | None:
    table = report.blocked_windows
    if table.is_empty() or table["count"][0] == 0:
        return None
    r = table.row(0, named=True)
    n, censored = r["count"], r["censored"]
    done = n - censored
    if done == 0:
        return (
            f"{plural(n, 'lock episode')}, all still blocked when the capture ended "
            "(blocked time unknown)"
        )
    if done == 1:
        figure = f"{fmt_ms(r['max_ms'])} until the operation could first have succeeded"
    else:
        figure = (
            f"{fmt_ms(r['p50_ms'])} median, {fmt_ms(r['max_ms'])} at most, until the operation "
            "could first have succeeded"
        )
    extra = f"; {censored:,} still blocked when the capture ended" if censored else ""
    return f"{figure} (blocked time over {plural(n, 'lock episode')}{extra})"


def _hold_line(report: Report) -> str | None:
    table = report.windows
    if table.is_empty() or table["count"][0] == 0:
        return None
    r = table.row(0, named=True)
    n, censored = r["count"], r["censored"]
    done = n - censored
    if done == 0:
        return (
            f"the handles in the way were still open when the capture ended "
            f"({plural(n, 'failure')}; hold time unknown)"
        )
    figure = (
        f"{fmt_ms(r['max_ms'])}"
        if done == 1
        else f"{fmt_ms(r['p50_ms'])} median, {fmt_ms(r['max_ms'])} at most"
    )
    extra = f"; {censored:,} still open when the capture ended" if censored else ""
    return (
        f"{figure}: how long the handles present at a failure stayed open (hold time over "
        f"{plural(n, 'failure')}{extra})"
    )


def _advice_line(report: Report) -> str:
    policy = report.policy
    if policy is not None:
        n = policy.n_windows or 0
        covered = round((policy.coverage or 0.0) * n)
        return (
            f"retry {policy.describe()}: would have ridden out {covered:,} of "
            f"{plural(n, 'lock episode')} ({(policy.coverage or 0.0):.0%}) in this capture"
        )
    if report.policy_withheld:
        return report.policy_withheld.removeprefix("No retry advice: ")
    if report.filter_outcome is not None and not report.filter_outcome.matched:
        return "none: no conflict matches the filters"
    return "none: no failure in this capture calls for a retry"


def _filter_note(report: Report) -> str | None:
    outcome = report.filter_outcome
    if outcome is None or outcome.matched:
        return None
    asked = " and ".join(
        part
        for part in (
            f"--process {outcome.process}" if outcome.process else "",
            f'--path "{outcome.path}"' if outcome.path else "",
        )
        if part
    )
    if not outcome.total:
        return f"no conflict matches {asked}: the trace has no conflicts at all"
    processes = ", ".join(f"{p} ({n:,})" for p, n in outcome.processes[:5])
    paths = "; ".join(f"{p} ({n:,})" for p, n in outcome.paths[:3])
    more = len(outcome.paths) - 3
    return (
        f"no conflict matches {asked}: the trace has {plural(outcome.total, 'conflict')}, "
        f"by {processes}, on {paths}" + (f" and {more:,} more paths" if more > 0 else "")
    )


def answer(report: Report) -> Answer:
    """The first lines of ``report`` (see the module docstring)."""
    holders, more = _holders(report.conflicts) if report.conflicts.height else ([], 0)
    return Answer(
        conflicts=report.conflicts.height,
        holders=tuple(holders),
        more_holders=more,
        others=tuple(_others(report)) if report.conflicts.height else (),
        blocked=_blocked_line(report),
        hold=_hold_line(report),
        advice=_advice_line(report),
        warning=report.headline_warning,
        filter_note=_filter_note(report),
    )
