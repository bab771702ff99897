"""A quiet progress line on stderr for long reads.

Nothing is printed unless the work takes more than about a second **and** stderr is a
terminal: redirected output, CI logs and pipes stay clean. The line is redrawn in place
(carriage return) and erased at the end, so the report that follows starts on a clean line.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

DELAY_S = 1.0
INTERVAL_S = 0.5
_SPINNER = "|/-\\"


@contextmanager
def progress(label: str, *, stream: TextIO | None = None, force: bool = False) -> Iterator[None]:
    """Show ``label`` with a spinner and the elapsed time while the block runs."""
    out = stream if stream is not None else sys.stderr
    if not (force or (hasattr(out, "isatty") and out.isatty())):
        yield
        return
    done = threading.Event()
    start = time.monotonic()
    shown = [False]

    def draw() -> None:
        if done.wait(DELAY_S):
            return
        tick = 0
        while not done.is_set():
            elapsed = time.monotonic() - start
            out.write(f"\r{_SPINNER[tick % 4]} {label} {elapsed:4.1f} s")
            out.flush()
            shown[0] = True
            tick += 1
            done.wait(INTERVAL_S)

    thread = threading.Thread(target=draw, name="traceaudit-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        if shown[0]:
            out.write("\r" + " " * (len(label) + 12) + "\r")
            out.flush()
