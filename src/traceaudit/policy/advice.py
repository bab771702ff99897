"""Retry advice for a report: replay of known tools, a suggested policy, the app's own retries.

Glue between the analysis frames and :mod:`traceaudit.policy`. Advice has to be earned by
what the trace shows: a policy is suggested only when at least one lock episode was seen
to end (its blockers closed, or the same request succeeded) and the policy would have
ridden out some of them. Otherwise there is no policy, and :attr:`Advice.withheld` says in
one sentence why and what to capture instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from traceaudit.display import fmt_ms
from traceaudit.policy.app_retries import assess_app_retries
from traceaudit.policy.replay_engine import replay_table, window_lengths
from traceaudit.policy.suggestion import RetryPolicy, suggest

__all__ = ["Advice", "retry_advice"]


@dataclass(frozen=True)
class Advice:
    policy: RetryPolicy | None
    replay: pl.DataFrame
    app_retries: pl.DataFrame
    withheld: str | None = None


def _why_no_episode(conflicts: pl.DataFrame | None) -> str | None:
    """Why there is no lock episode to learn from, or None when nothing failed at all."""
    if conflicts is None or conflicts.is_empty():
        return None
    verdicts = set(conflicts["verdict"].to_list())
    if "incomplete-capture" in verdicts:
        return (
            "No retry advice: no failure has a holder whose release this capture shows (the "
            "handles in the way are candidates only). Capture the whole system, with "
            "CreateFile and CloseFile, until the operation succeeds, and analyse that."
        )
    if verdicts <= {"oplock-probe"}:
        return (
            "No retry advice: the only refusals are oplock probes, which their callers "
            "handle by design by opening again without the oplock."
        )
    if verdicts <= {"no-holder-permission", "oplock-probe"}:
        return (
            "No retry advice: ACCESS DENIED with nothing holding the file is most likely a "
            "permission refusal, which retrying does not fix: check the file's ACL and its "
            "read-only attribute."
        )
    if verdicts & {"mapped-by-other-process", "mapped-by-own-process"}:
        return (
            "No retry advice: the failures come from mapped sections, whose end no event "
            "shows, so how long to retry cannot be read from this capture."
        )
    if (
        "unseen_holder" in conflicts.columns
        and conflicts.filter(pl.col("unseen_holder") == "outside-capture").is_empty()
        and not conflicts.filter(pl.col("unseen_holder") == "below-procmon").is_empty()
    ):
        return (
            "No retry advice: no process in the capture held the file, although the capture "
            "could have shown one, so no release can be timed: the holder is most likely a "
            "minifilter below Procmon (antivirus or EDR). An ETW capture alongside Procmon "
            "('traceaudit capture-profile') or the program's own retry log shows how long it "
            "lasted."
        )
    return (
        "No retry advice: no failure has a holder in the capture whose release could be "
        "timed. Capture again without a process filter (filter on the path instead) so "
        "the process that holds the file is in the trace."
    )


def retry_advice(
    episodes: pl.DataFrame,
    blocked: pl.DataFrame,
    chains: pl.DataFrame,
    *,
    target: float = 0.99,
    max_wait_ms: float | None = None,
    conflicts: pl.DataFrame | None = None,
) -> Advice:
    """Everything :mod:`traceaudit.policy` can say about these episodes.

    ``conflicts`` (the report's conflict frame) only serves to say why there is no advice.
    """
    if episodes.is_empty():
        return Advice(
            policy=None,
            replay=pl.DataFrame(),
            app_retries=pl.DataFrame(),
            withheld=_why_no_episode(conflicts),
        )
    replay = replay_table(episodes, blocked)
    linked = chains.join(episodes.select("trace", "chain"), on=["trace", "chain"], how="semi")
    app = assess_app_retries(linked, episodes, blocked) if linked.height else pl.DataFrame()
    windows = window_lengths(episodes, blocked)
    if bool(windows["censored"].all()):
        longest = float(windows["window_ms"].max() or 0.0)  # type: ignore[arg-type]
        return Advice(
            policy=None,
            replay=replay,
            app_retries=app,
            withheld=(
                f"No retry advice: every lock episode ({windows.height}) was still blocked "
                f"when the capture ended (observed up to {fmt_ms(longest)}), so no release was "
                "seen to time. Capture for longer, until the operation succeeds."
            ),
        )
    suggestion = suggest(episodes, blocked, target=target, max_wait_ms=max_wait_ms)
    if not suggestion.coverage:
        budget = "" if max_wait_ms is None else f" within the {fmt_ms(max_wait_ms)} budget"
        return Advice(
            policy=None,
            replay=replay,
            app_retries=app,
            withheld=(
                f"No retry advice: no retry policy{budget} would have ridden out "
                + (
                    "the one lock episode"
                    if windows.height == 1
                    else f"any of the {windows.height:,} lock episodes"
                )
                + ". Allow a longer wait (--max-wait), or capture more failures."
            ),
        )
    return Advice(policy=suggestion, replay=replay, app_retries=app)
