"""Retry advice for a report: replay of known tools, a suggested policy, the app's own retries.

Glue between the analysis frames and :mod:`traceaudit.policy`; with no lock episode (no
failure with a holder in the trace) there is nothing to learn from and every part is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from traceaudit import policy as _policy

__all__ = ["Advice", "retry_advice"]


@dataclass(frozen=True)
class Advice:
    policy: _policy.RetryPolicy | None
    replay: pl.DataFrame
    app_retries: pl.DataFrame


def retry_advice(
    episodes: pl.DataFrame,
    blocked: pl.DataFrame,
    chains: pl.DataFrame,
    *,
    target: float = 0.99,
    max_wait_ms: float | None = None,
) -> Advice:
    """Everything :mod:`traceaudit.policy` can say about these episodes."""
    if episodes.is_empty():
        return Advice(policy=None, replay=pl.DataFrame(), app_retries=pl.DataFrame())
    suggestion = _policy.suggest(episodes, blocked, target=target, max_wait_ms=max_wait_ms)
    replay = _policy.replay_table(episodes, blocked)
    linked = chains.join(episodes.select("trace", "chain"), on=["trace", "chain"], how="semi")
    app = _policy.assess_app_retries(linked, episodes, blocked) if linked.height else pl.DataFrame()
    return Advice(policy=suggestion, replay=replay, app_retries=app)
