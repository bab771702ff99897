"""Lock windows → retry advice: replay real tools' policies, suggest one, judge the app's own.

Frames in (float milliseconds, each episode's clock starting at its first failure):

- ``episodes``: ``episode``, ``trace``, ``error_code`` (5 ACCESS_DENIED, 32
  SHARING_VIOLATION, 33 LOCK_VIOLATION), ``horizon_ms`` (time left in the trace);
- ``blocked``: ``episode``, ``start_ms``, ``end_ms`` (null = still open at trace end): the
  operation fails iff retried inside one of these intervals;
- ``retry_chains``: the app's own observed retries (see :func:`assess_app_retries`).

What this module answers:

- :data:`KNOWN_POLICIES`: what uv, npm's graceful-fs, Go, pip, rustup, Git, MSBuild, the
  .NET SDK, conda, rimraf, Chromium and Node's ``fs.rm`` actually do (docs/retry-policies.md),
  each a :class:`KnownPolicy` with its trigger codes and a delay schedule;
- :func:`replay` / :func:`replay_table`: would each of them have ridden out these locks,
  with how much added wait; outcomes past the trace's end are *censored*, counted, never
  dropped; jittered policies are averaged over seeded draws;
- :func:`suggest`: the cheapest exponential backoff reaching a target coverage, as a
  :class:`RetryPolicy` with a fitted tail model and honest notes on sample size;
- :func:`assess_app_retries`: which schedule the app used and how long it gave up too early;
- :func:`snippets`: the policy as Rust (backon), Python (tenacity), Go and .NET (Polly);
- :func:`pool`: pool several traces' frames; :func:`frames_from_windows` builds frames
  from bare window lengths (simulations, notebooks, tests).
"""

from __future__ import annotations

from traceaudit.policy.app_retries import ScheduleFit, assess_app_retries, infer_schedule
from traceaudit.policy.code_snippets import snippets
from traceaudit.policy.known import KNOWN_POLICIES, KnownPolicy, known_policy
from traceaudit.policy.replay_engine import (
    frames_from_windows,
    pool,
    replay,
    replay_table,
    window_lengths,
)
from traceaudit.policy.schedule import Schedule
from traceaudit.policy.suggestion import RetryPolicy, suggest
from traceaudit.policy.tail import TailModel, fit_tail

__all__ = [
    "KNOWN_POLICIES",
    "KnownPolicy",
    "RetryPolicy",
    "Schedule",
    "ScheduleFit",
    "TailModel",
    "assess_app_retries",
    "fit_tail",
    "frames_from_windows",
    "infer_schedule",
    "known_policy",
    "pool",
    "replay",
    "replay_table",
    "snippets",
    "suggest",
    "window_lengths",
]
