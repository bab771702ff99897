"""Which worker threads a piece of work started (test helper for the two-core readers)."""

from __future__ import annotations

import threading

import pytest


def record_thread_starts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on (until ``monkeypatch`` undoes it), the name of every thread started,
    in order, is added to the list returned."""
    started: list[str] = []
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    return started
