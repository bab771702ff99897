"""A retry schedule: the sleeps a policy makes between attempts, as plain numbers.

Every policy, a real tool's (:class:`~traceaudit.policy.KnownPolicy`) or a suggested one
(:class:`~traceaudit.policy.RetryPolicy`), turns into a :class:`Schedule` before it is
replayed. Time 0 is the first failure; retry *k* (1-based) happens after the first *k*
delays, at ``attempt_times[k - 1]``. The time the operations themselves take is left out,
as in docs/retry-policies.md's "worst case" column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["Schedule", "ReplayablePolicy", "stack_schedules"]


@dataclass(frozen=True)
class Schedule:
    """The delays (ms) a policy sleeps before each retry, and any sleep after the last failure.

    ``final_sleep_ms`` exists for the .NET SDK's ``FileAccessRetrier``, which sleeps after
    its last failed attempt too before it throws: that time is waited but buys no attempt.
    """

    delays: tuple[float, ...]
    final_sleep_ms: float = 0.0

    @classmethod
    def of(cls, delays: Sequence[float] | np.ndarray, final_sleep_ms: float = 0.0) -> Schedule:
        """Build from any sequence of delays (converted to floats)."""
        return cls(tuple(float(d) for d in delays), float(final_sleep_ms))

    @property
    def retries(self) -> int:
        """Number of retries (attempts after the first failure)."""
        return len(self.delays)

    @property
    def attempts(self) -> int:
        """Number of attempts in all, the first (failed) one included."""
        return len(self.delays) + 1

    @property
    def attempt_times(self) -> np.ndarray:
        """Time of each retry after the first failure (cumulative delays), in ms."""
        return np.cumsum(np.asarray(self.delays, dtype=np.float64))

    @property
    def last_attempt_ms(self) -> float:
        """When the last retry happens (0 when there is none)."""
        return float(np.sum(self.delays)) if self.delays else 0.0

    @property
    def total_ms(self) -> float:
        """Everything slept before giving up: the delays plus the final sleep."""
        return self.last_attempt_ms + self.final_sleep_ms


class ReplayablePolicy(Protocol):
    """What the replay engine needs from a policy (KnownPolicy and RetryPolicy both fit)."""

    @property
    def jittered(self) -> bool:
        """True when the delays are random and must be averaged over draws."""
        ...

    def retries_on(self, error_code: int | None) -> bool:
        """Whether the policy retries at all after a failure with this Win32 code."""
        ...

    def schedule(self, rng: np.random.Generator | None = None) -> Schedule:
        """One draw of the delays (the same every time for deterministic policies)."""
        ...


def stack_schedules(schedules: Sequence[Schedule]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack draws into a matrix for the replay engine.

    Returns ``(times, n_retries, total)``: ``times`` is (draws × max retries) of attempt
    times padded with +inf (never reached), ``n_retries`` the real length of each row and
    ``total`` the whole time slept before giving up in each draw.
    """
    n = np.array([s.retries for s in schedules], dtype=np.int64)
    width = int(n.max()) if len(n) else 0
    times = np.full((len(schedules), width), np.inf)
    for row, s in enumerate(schedules):
        if s.retries:
            times[row, : s.retries] = s.attempt_times
    total = np.array([s.total_ms for s in schedules], dtype=np.float64)
    return times, n, total
